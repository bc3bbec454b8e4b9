"""Serving: the trained model uploaded with a serving container, a Vertex endpoint, the
model deployed on dedicated machines with autoscaling, chat through ``rawPredict``; and a
tuned Gemini model answered on the endpoint Vertex made for it.

Planned like the job, with placeholders for what is known only at deploy time:
``${endpoint}`` (the endpoint's ID: tunefleet's endpoint name), ``${model_id}`` (the
model's ID, derived from the endpoint, the version and the artifact), ``${artifact_uri}``
(the folder of the model the job wrote), ``${version}`` (the deployed model's display
name: the version label, ``primary`` for a plain deploy) and ``${deployed_model_id}``.

Every resource has an ID tunefleet chooses (``modelId``, ``endpointId`` and the deployed
model's ``id``: "If not provided upon deployment, Vertex AI will generate a value", the
discovery document), so a deploy killed anywhere is finished by the next: what exists is
adopted, what is missing is created, and every long-running operation is waited on. The
serving container is a vLLM OpenAI server (Model Garden's vLLM image reads the model from
``$(AIP_STORAGE_URI)``) or Hugging Face's TGI container for Vertex (whose entrypoint does),
both answering OpenAI chat at ``/v1/chat/completions``, the model's predict route.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import tenacity

from tunefleet.errors import (
    AlreadyExistsError,
    CapabilityError,
    ProviderError,
    ProviderNotFoundError,
    TransientProviderError,
)
from tunefleet.kit.chat import chat_body, chat_reply
from tunefleet.kit.gemini import gemini_reply, gemini_request
from tunefleet.kit.retry import wait_as_asked
from tunefleet.provider import (
    ArtifactRef,
    ChatReply,
    ChatRequest,
    EndpointRef,
    NativeRequest,
    Plan,
    Unmet,
    fill_placeholders,
)
from tunefleet.spec import EndpointSpec, RunSpec, TargetSpec
from tunefleet_vertex import pricing
from tunefleet_vertex._client import PROVIDER, Where, client, post, timeout, translated
from tunefleet_vertex.options import VertexOptions

__all__ = [
    "ARTIFACT_URI",
    "DEPLOYED_MODEL_ID",
    "ENDPOINT",
    "MODEL_ID",
    "PRIMARY",
    "SERVED_MODEL",
    "VERSION",
    "delete_endpoint",
    "deploy",
    "deployed_model_id",
    "endpoint_ref",
    "invoke",
    "requests",
    "unmet",
]

ENDPOINT = "${endpoint}"
MODEL_ID = "${model_id}"
ARTIFACT_URI = "${artifact_uri}"
VERSION = "${version}"
DEPLOYED_MODEL_ID = "${deployed_model_id}"
PRIMARY = "primary"
"""The version a plain deploy creates."""
SERVED_MODEL = "tunefleet"
"""The name the container serves the model under (the ``model`` of a chat request)."""
CHAT_ROUTE = "/v1/chat/completions"
PORT = 8080
"""The port Vertex sends requests to (``AIP_HTTP_PORT``'s default)."""
SERVABLE = frozenset({"adapter", "merged_model"})
DEPLOY_SECONDS = 3 * 3600.0
"""How long a deployment may take before tunefleet stops waiting (large models on GPUs
take tens of minutes; the container's own limit is 2 hours)."""
_METRIC = "aiplatform.googleapis.com/prediction/online/"


def model_id(name: str, version: str, artifact: str) -> str:
    """The model's ID: the endpoint's name and a digest of the version and the artifact
    ("up to 63 characters, and valid characters are [a-z0-9_-]. The first character cannot
    be a number or hyphen", ``models.upload``'s ``modelId``)."""
    digest = hashlib.sha256(f"{name}\n{version}\n{artifact}".encode()).hexdigest()[:16]
    return f"{name[:40]}-{digest}"


def deployed_model_id(name: str, version: str, artifact: str) -> str:
    """The deployed model's ID: "1-10 characters, and valid characters are /[0-9]/"
    (DeployedModel.id), a digest of the endpoint, the version and the artifact."""
    digest = hashlib.sha256(f"{name}\n{version}\n{artifact}".encode()).hexdigest()
    return str(int(digest[:15], 16) % 9_000_000_000 + 1_000_000_000)


def _autoscaling(spec: RunSpec, gpus: int) -> tuple[int, int, list[dict[str, Any]]]:
    endpoint = spec.endpoint or EndpointSpec()
    scaling = endpoint.autoscaling
    if scaling is None:
        return endpoint.instance_count, endpoint.instance_count, []
    metrics: list[dict[str, Any]] = []
    if scaling.target_invocations_per_instance is not None:
        metrics.append(
            {
                "metricName": _METRIC + "request_count",
                "target": scaling.target_invocations_per_instance,
            }
        )
    else:
        # The default Vertex applies (60 %), said explicitly so the plan shows it.
        metric = "accelerator/duty_cycle" if gpus else "cpu/utilization"
        metrics.append({"metricName": _METRIC + metric, "target": 60})
    return max(scaling.min_instances, 1), scaling.max_instances, metrics


def _container(options: VertexOptions, gpus: int, private: bool) -> dict[str, Any]:
    """The serving container. On a (public) dedicated endpoint the model is uploaded with
    the invoke route prefix ``/*``, so the endpoint and each deployed model answer the
    container's own ``/v1/chat/completions`` (a version asked directly); a Private Service
    Connect endpoint serves Predict and RawPredict only, so there the chat route is the
    predict route. "Only one of `predict_route` or `invoke_route_prefix` can be set ... If
    this field is set, the Model can only be deployed to dedicated endpoint"
    (ModelContainerSpec.invokeRoutePrefix, the discovery document)."""
    image = options.serving_image or "<options.serving_image>"
    spec: dict[str, Any] = {
        "imageUri": image,
        "ports": [{"containerPort": PORT}],
        "healthRoute": "/health",
        # Loading a large model takes a while; 2 hours is the most Vertex allows.
        "deploymentTimeout": "7200s",
    }
    if private:
        spec["predictRoute"] = CHAT_ROUTE
    else:
        spec["invokeRoutePrefix"] = "/*"
    if options.serving_framework == "vllm":
        spec["command"] = ["python3", "-m", "vllm.entrypoints.openai.api_server"]
        spec["args"] = [
            "--host=0.0.0.0",
            f"--port={PORT}",
            # Vertex copies the model's artifactUri and names the copy in AIP_STORAGE_URI;
            # $(VAR) is expanded in args (ModelContainerSpec.args).
            "--model=$(AIP_STORAGE_URI)",
            f"--served-model-name={SERVED_MODEL}",
            f"--tensor-parallel-size={max(gpus, 1)}",
        ]
    else:
        spec["env"] = [{"name": "NUM_SHARD", "value": str(max(gpus, 1))}]
    return spec


def requests(spec: RunSpec, target: TargetSpec, options: VertexOptions) -> list[NativeRequest]:
    """The deploy phase's requests of a custom-job target: planned whenever a serving
    image is known, so ``tunefleet deploy`` serves a run whose spec named no endpoint
    (with one replica)."""
    if options.mode != "custom" or (spec.endpoint is None and options.serving_image is None):
        return []
    from tunefleet_vertex._planning import vertex_labels

    machine, accelerator, count = _serving_machine(spec, options)
    low, high, metrics = _autoscaling(spec, count)
    private = spec.placement.require_private_network
    parent = f"projects/{options.project}/locations/{target.region}"
    labels = {k: v for k, v in vertex_labels(spec, target).items() if k != "tunefleet-run-key"}
    labels["tunefleet-endpoint"] = ENDPOINT
    encryption = (
        {"encryptionSpec": {"kmsKeyName": options.kms_key_name}} if options.kms_key_name else {}
    )
    model = {
        "displayName": f"{spec.name}-{VERSION}",
        "artifactUri": ARTIFACT_URI,
        "containerSpec": _container(options, count, private),
        "labels": labels,
        **encryption,
    }
    endpoint: dict[str, Any] = {"displayName": ENDPOINT, "labels": labels, **encryption}
    if private:
        psc: dict[str, Any] = {
            "enablePrivateServiceConnect": True,
            "projectAllowlist": [options.project],
        }
        if options.network:
            # Vertex makes the forwarding rule in your network itself.
            psc["pscAutomationConfigs"] = [
                {"projectId": options.project, "network": options.network}
            ]
        endpoint["privateServiceConnectConfig"] = psc
    else:
        # A dedicated endpoint: its own DNS name, isolated from other users' traffic, and
        # the only kind a model with invoke routes can be deployed to.
        endpoint["dedicatedEndpointEnabled"] = True
    machine_spec: dict[str, Any] = {"machineType": machine}
    if accelerator is not None:
        machine_spec.update(acceleratorType=accelerator, acceleratorCount=count)
    resources: dict[str, Any] = {
        "machineSpec": machine_spec,
        "minReplicaCount": low,
        "maxReplicaCount": high,
    }
    if metrics:
        resources["autoscalingMetricSpecs"] = metrics
    return [
        NativeRequest(
            phase="deploy",
            service="vertex",
            operation="models.upload",
            body={"parent": parent, "modelId": MODEL_ID, "model": model},
            purpose="register the trained model with its serving container (skipped when it is)",
        ),
        NativeRequest(
            phase="deploy",
            service="vertex",
            operation="endpoints.create",
            body={"parent": parent, "endpointId": ENDPOINT, "endpoint": endpoint},
            purpose="create the endpoint (skipped when it exists)",
        ),
        NativeRequest(
            phase="deploy",
            service="vertex",
            operation="endpoints.deployModel",
            body={
                "endpoint": f"{parent}/endpoints/{ENDPOINT}",
                "deployedModel": {
                    "id": DEPLOYED_MODEL_ID,
                    "model": f"{parent}/models/{MODEL_ID}",
                    "displayName": VERSION,
                    "dedicatedResources": resources,
                },
            },
            purpose="deploy the model on the endpoint's machines (all traffic for a plain "
            "deploy, none for a new version until the rollout shifts it)",
        ),
    ]


def _serving_machine(spec: RunSpec, options: VertexOptions) -> tuple[str, str | None, int]:
    """The serving machine: the endpoint's instance type, else options.serving_machine_type,
    with its GPUs."""
    machine = (spec.endpoint and spec.endpoint.instance_type) or options.serving_machine_type
    accelerator, count = pricing.accelerators(
        machine, options.serving_accelerator_type, options.serving_accelerator_count
    )
    return machine, accelerator, count


def unmet(spec: RunSpec, options: VertexOptions) -> list[Unmet]:
    """What serving ``spec`` lacks on this target, each with the setting."""
    if spec.endpoint is None or options.mode != "custom":
        return []
    found: list[Unmet] = []
    if options.serving_image is None:
        found.append(
            Unmet(
                requirement="options.serving_image",
                reason="an endpoint runs the model in a serving container: name a vLLM "
                "OpenAI server that loads a gs:// model (Vertex Model Garden's vLLM image) or "
                "Hugging Face's TGI container for Vertex (options.serving_framework: tgi)",
            )
        )
    scaling = spec.endpoint.autoscaling
    if spec.endpoint.canary is not None and spec.placement.require_private_network:
        found.append(
            Unmet(
                requirement="endpoint.canary",
                reason="a Private Service Connect endpoint serves Predict and RawPredict only "
                '("Use Private Service Connect endpoints", cloud.google.com/vertex-ai/docs/'
                "predictions/private-service-connect): one version cannot be asked alone, so "
                "the canary's shadow comparison is impossible",
            )
        )
    if (
        scaling is not None
        and scaling.target_invocations_per_instance is not None
        and scaling.target_invocations_per_instance > 100
    ):
        found.append(
            Unmet(
                requirement="endpoint.autoscaling.target_invocations_per_instance",
                reason="Vertex's autoscaling target is 1-100 (AutoscalingMetricSpec.target, "
                "the discovery document)",
            )
        )
    if scaling is not None and scaling.min_instances < 1:
        found.append(
            Unmet(
                requirement="endpoint.autoscaling.min_instances",
                reason="a Vertex deployment keeps at least one replica (minReplicaCount must "
                "be 1 or more); undeploy to stop paying",
            )
        )
    try:
        _serving_machine(spec, options)
    except ValueError as exc:
        found.append(Unmet(requirement="endpoint.instance_type", reason=str(exc)))
    return found


def endpoint_ref(
    where: Where,
    name: str,
    plan_region: str | None,
    kind: str,
    prediction_url: str | None = None,
) -> EndpointRef:
    """The ref of endpoint ``name`` (an endpoint ID, or a tuned model's endpoint's resource
    name for ``kind`` tuned). ``kind``: ``dedicated`` (a public dedicated endpoint, asked at
    its own DNS name), ``private`` (Private Service Connect, asked at the address your
    network gives it) or ``tuned``; ``prediction_url`` is where prediction requests go."""
    resource = name if name.startswith("projects/") else f"{where.parent}/endpoints/{name}"
    base = where.api_endpoint if kind == "tuned" else prediction_url
    scope = {**where.scope(), "kind": kind}
    if base:
        scope["prediction_url"] = base
    return EndpointRef(
        provider=PROVIDER,
        name=name.rsplit("/", 1)[-1],
        region=plan_region,
        url=f"{base}/v1/{resource}" if base else None,
        id=resource,
        scope=scope,
    )


def _wait(operation: Any, what: str, seconds: float) -> Any:
    from concurrent.futures import TimeoutError as Waited

    try:
        with translated(what):
            return operation.result(timeout=seconds)
    except Waited:
        raise TransientProviderError(
            PROVIDER,
            f"{what}: still going on after {seconds / 3600:.1f} h; asking again waits on",
            code="operation_running",
        ) from None


def _until(found: Callable[[], bool], what: str, seconds: float = 1800.0) -> None:
    """Wait (polling every 10 s) until ``found()``: a resource another attempt is still
    creating; ProviderError when it does not come within ``seconds``."""
    deadline = time.monotonic() + seconds
    while not found():
        if time.monotonic() > deadline:
            raise ProviderError(PROVIDER, f"{what} never appeared", code="operation_lost")
        time.sleep(10)


def _model_exists(where: Where, name: str) -> bool:
    try:
        with translated(f"read model {name}"):
            client(where, "model").get_model(name=name, timeout=timeout())
    except ProviderNotFoundError:
        return False
    return True


def _upload(where: Where, request: dict[str, Any]) -> None:
    from google.cloud import aiplatform_v1

    name = f"{request['parent']}/models/{request['modelId']}"
    if _model_exists(where, name):
        return
    model = aiplatform_v1.Model.from_json(json.dumps(request["model"]))
    try:
        with translated(f"upload model {request['modelId']}", creating=True):
            operation = client(where, "model").upload_model(
                request={
                    "parent": request["parent"],
                    "model": model,
                    "model_id": request["modelId"],
                },
                timeout=timeout(),
            )
    except AlreadyExistsError:
        # Uploaded by an attempt whose answer was lost, or still being uploaded by it.
        _until(lambda: _model_exists(where, name), f"model {name}")
        return
    _wait(operation, f"upload model {request['modelId']}", DEPLOY_SECONDS)


def get_endpoint(where: Where, resource: str) -> Any | None:
    """The endpoint as Vertex has it; None when there is none."""
    try:
        with translated(f"read endpoint {resource}"):
            return client(where, "endpoint").get_endpoint(name=resource, timeout=timeout())
    except ProviderNotFoundError:
        return None


def _create_endpoint(where: Where, request: dict[str, Any]) -> None:
    from google.cloud import aiplatform_v1

    resource = f"{request['parent']}/endpoints/{request['endpointId']}"
    existing = get_endpoint(where, resource)
    if existing is not None:
        _check_adopted(existing, request["endpoint"], resource)
        return
    body = aiplatform_v1.Endpoint.from_json(json.dumps(request["endpoint"]))
    try:
        with translated(f"create endpoint {request['endpointId']}", creating=True):
            operation = client(where, "endpoint").create_endpoint(
                parent=request["parent"],
                endpoint=body,
                endpoint_id=request["endpointId"],
                timeout=timeout(),
            )
    except AlreadyExistsError:
        _until(lambda: get_endpoint(where, resource) is not None, f"endpoint {resource}")
        return
    _wait(operation, f"create endpoint {request['endpointId']}", DEPLOY_SECONDS)


def _check_adopted(existing: Any, wanted: dict[str, Any], resource: str) -> None:
    """Refuse an endpoint of that ID that is not the one planned: another's (no
    ``tunefleet-endpoint`` label of this name), public where a private one is required,
    shared where a dedicated one is, or encrypted with another key."""
    problems = []
    labels = dict(existing.labels)
    if labels.get("tunefleet-endpoint") != wanted["labels"].get("tunefleet-endpoint"):
        problems.append("it was not made by tunefleet for this endpoint name")
    if "privateServiceConnectConfig" in wanted and not (
        existing.private_service_connect_config.enable_private_service_connect
    ):
        problems.append("it is not a Private Service Connect endpoint")
    if wanted.get("dedicatedEndpointEnabled") and not existing.dedicated_endpoint_enabled:
        problems.append("it is not a dedicated endpoint")
    key = (wanted.get("encryptionSpec") or {}).get("kmsKeyName")
    if key and existing.encryption_spec.kms_key_name != key:
        problems.append(f"it is not encrypted with {key}")
    if problems:
        raise ProviderError(
            PROVIDER,
            f"endpoint {resource} exists but {'; '.join(problems)}: delete it or choose "
            "another endpoint name",
            code="endpoint_mismatch",
        )


def deployed(where: Where, resource: str) -> dict[str, Any]:
    """The endpoint's deployed models by ID: (display name, model, traffic percent)."""
    endpoint = get_endpoint(where, resource)
    if endpoint is None:
        raise ProviderNotFoundError(PROVIDER, f"endpoint {resource} does not exist")
    split = dict(endpoint.traffic_split)
    return {
        str(model.id): (str(model.display_name), str(model.model), int(split.get(model.id, 0)))
        for model in endpoint.deployed_models
    }


def deploy_model(where: Where, request: dict[str, Any], traffic: dict[str, int] | None) -> None:
    """deployModel as planned, with ``traffic`` as the endpoint's new split (None leaves
    it, and the new model gets none); nothing when the deployed model is there."""
    from google.cloud import aiplatform_v1

    resource = request["endpoint"]
    wanted = str(request["deployedModel"]["id"])
    if wanted in deployed(where, resource):
        return
    body = aiplatform_v1.DeployedModel.from_json(json.dumps(request["deployedModel"]))
    try:
        with translated(f"deploy model {wanted} on {resource}", creating=True):
            operation = client(where, "endpoint").deploy_model(
                endpoint=resource,
                deployed_model=body,
                traffic_split=traffic or {},
                timeout=timeout(),
            )
    except ProviderError as exc:
        # The deployed model's ID is taken: an earlier attempt's deployment, still going on
        # (or done since we looked). Anything else is Google's refusal, raised as it is.
        if exc.code not in ("ALREADY_EXISTS", "ABORTED"):
            raise
        _until(lambda: wanted in deployed(where, resource), f"deployed model {wanted}")
        return
    _wait(operation, f"deploy model {wanted}", DEPLOY_SECONDS)


def undeploy(where: Where, resource: str, deployed_id: str, traffic: dict[str, int]) -> None:
    """Take deployed model ``deployed_id`` off the endpoint (``traffic``: the split of the
    others afterwards) and delete the model tunefleet uploaded for it."""
    models = deployed(where, resource)
    if deployed_id not in models:
        return
    with translated(f"undeploy {deployed_id} from {resource}"):
        operation = client(where, "endpoint").undeploy_model(
            endpoint=resource,
            deployed_model_id=deployed_id,
            traffic_split=traffic,
            timeout=timeout(),
        )
    _wait(operation, f"undeploy {deployed_id}", DEPLOY_SECONDS)
    _delete_model(where, models[deployed_id][1])


def _delete_model(where: Where, name: str) -> None:
    """Delete a model tunefleet uploaded (its label says so); a missing one is fine."""
    name = name.split("@", 1)[0]
    try:
        with translated(f"read model {name}"):
            model = client(where, "model").get_model(name=name, timeout=timeout())
        if "tunefleet-endpoint" not in dict(model.labels):
            return
        with translated(f"delete model {name}"):
            operation = client(where, "model").delete_model(name=name, timeout=timeout())
        _wait(operation, f"delete model {name}", 600.0)
    except ProviderNotFoundError:
        return


def planned(plan: Plan, values: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """The deploy requests of ``plan`` with ``values`` in place of the placeholders."""
    return [
        (request.operation, fill_placeholders(dict(request.body), values))
        for request in plan.requests_for("deploy")
    ]


def values_for(plan: Plan, artifact: ArtifactRef, name: str, version: str) -> dict[str, str]:
    """The placeholders' values for serving ``artifact`` as ``version`` of ``name``."""
    if artifact.kind not in SERVABLE:
        raise CapabilityError(PROVIDER, f"a {artifact.kind} cannot be served on an endpoint")
    # The trainer merges an adapter into its base model in merged/ (the serving containers
    # load whole models); a full fine-tune's folder is the model itself.
    uri = artifact.uri.rstrip("/")
    folder = uri if artifact.kind == "merged_model" else f"{uri}/merged"
    return {
        ENDPOINT: name,
        VERSION: version,
        MODEL_ID: model_id(name, version, artifact.uri),
        DEPLOYED_MODEL_ID: deployed_model_id(name, version, artifact.uri),
        ARTIFACT_URI: folder,
    }


def deploy(plan: Plan, artifact: ArtifactRef, name: str) -> EndpointRef:
    """Serve ``artifact`` on endpoint ``name`` with all its traffic, replacing what it
    served; returns once every operation succeeded. For a Gemini tuning target, the tuned
    model's own endpoint."""
    options = VertexOptions.model_validate(plan.options)
    where = Where.of(options, plan.region or "")
    if options.mode == "tuning":
        return _tuned_endpoint(where, plan, artifact)
    if not plan.requests_for("deploy"):
        raise CapabilityError(
            PROVIDER,
            f"the plan of target {plan.target!r} serves nothing: set options.serving_image",
        )
    values = values_for(plan, artifact, name, PRIMARY)
    sent = dict(planned(plan, values))
    _upload(where, sent["models.upload"])
    _create_endpoint(where, sent["endpoints.create"])
    request = sent["endpoints.deployModel"]
    resource = request["endpoint"]
    new = values[DEPLOYED_MODEL_ID]
    deploy_model(where, request, {"0": 100})
    # What the endpoint served before loses its traffic with the deploy: take it down.
    for old in [d for d in deployed(where, resource) if d != new]:
        undeploy(where, resource, old, {new: 100})
    if deployed(where, resource).get(new, ("", "", 0))[2] != 100:
        shift(where, resource, {new: 100})
    return _custom_ref(where, plan, options, name, resource)


def _custom_ref(
    where: Where, plan: Plan, options: VertexOptions, name: str, resource: str
) -> EndpointRef:
    """The ref of a custom model's endpoint: where its prediction requests go."""
    endpoint = get_endpoint(where, resource)
    if endpoint is None:
        raise ProviderNotFoundError(PROVIDER, f"endpoint {resource} does not exist")
    if endpoint.private_service_connect_config.enable_private_service_connect:
        return endpoint_ref(where, name, plan.region, "private", options.prediction_url)
    dns = str(endpoint.dedicated_endpoint_dns or "")
    url = options.prediction_url or (f"https://{dns}" if dns else None)
    return endpoint_ref(where, name, plan.region, "dedicated", url)


def shift(where: Where, resource: str, split: dict[str, int]) -> None:
    """Set the endpoint's traffic split (deployed model ID -> percent, adding up to 100):
    ``endpoints.patch`` with the ``traffic_split`` update mask, sending the endpoint's
    display name (a required field) and its etag, so a split someone changed since it
    was read is refused rather than overwritten."""
    current = get_endpoint(where, resource)
    if current is None:
        raise ProviderNotFoundError(PROVIDER, f"endpoint {resource} does not exist")
    endpoint: dict[str, Any] = {
        "name": resource,
        "display_name": current.display_name,
        "traffic_split": split,
    }
    if current.etag:
        endpoint["etag"] = current.etag
    with translated(f"split the traffic of {resource}"):
        client(where, "endpoint").update_endpoint(
            request={"endpoint": endpoint, "update_mask": {"paths": ["traffic_split"]}},
            timeout=timeout(),
        )


def _tuned_endpoint(where: Where, plan: Plan, artifact: ArtifactRef) -> EndpointRef:
    """A tuned Gemini model answers on the endpoint Vertex deployed it to when tuning
    ended; nothing is created, the endpoint is checked to be there."""
    _, _, endpoint = artifact.uri.partition("#endpoint=")
    if artifact.kind != "hosted_model" or not endpoint:
        raise CapabilityError(PROVIDER, f"{artifact.uri} is not a tuned Gemini model")
    if get_endpoint(where, endpoint) is None:
        raise ProviderNotFoundError(PROVIDER, f"the tuned model's endpoint {endpoint} is gone")
    return endpoint_ref(where, endpoint, plan.region, "tuned")


def delete_endpoint(endpoint: EndpointRef) -> None:
    """Undeploy every model from the endpoint, delete the models tunefleet uploaded for it,
    then the endpoint. A tuned Gemini model's endpoint is Vertex's, made with the model
    (billed per token, nothing while idle): it is left as it is."""
    if endpoint.scope.get("kind") == "tuned":
        return
    where = Where.from_scope(endpoint.scope)
    resource = str(endpoint.id)
    try:
        models = deployed(where, resource)
    except ProviderNotFoundError:
        return
    for deployed_id in sorted(models, key=lambda d: models[d][2]):
        remaining = {d: p for d, (_, _, p) in deployed(where, resource).items() if d != deployed_id}
        undeploy(where, resource, deployed_id, _rebalanced(remaining))
    try:
        with translated(f"delete endpoint {resource}"):
            operation = client(where, "endpoint").delete_endpoint(name=resource, timeout=timeout())
        _wait(operation, f"delete endpoint {resource}", 600.0)
    except ProviderNotFoundError:
        return


def _rebalanced(split: dict[str, int]) -> dict[str, int]:
    """``split`` scaled to add up to 100 (all on the first when none has any)."""
    if not split:
        return {}
    total = sum(split.values())
    if total == 0:
        first = sorted(split)[0]
        return {d: (100 if d == first else 0) for d in split}
    scaled = {d: p * 100 // total for d, p in split.items()}
    top = max(scaled, key=lambda d: scaled[d])
    scaled[top] += 100 - sum(scaled.values())
    return scaled


def _ask(base: str, path: str, body: dict[str, Any], what: str) -> Any:
    """POST ``body`` to ``{base}/v1/{path}``: a container's own answer (the REST client can
    only read it as an HttpBody), at the endpoint's own host."""
    return post(f"{base.rstrip('/')}/v1/{path}", body, what)


def invoke(endpoint: EndpointRef, request: ChatRequest, version_id: str | None = None) -> ChatReply:
    """Ask the model behind ``endpoint``: the container's chat route through the endpoint's
    invoke route (a version: its deployed model's), through ``rawPredict`` on a Private
    Service Connect endpoint, or a tuned Gemini model through ``generateContent``."""
    resource = str(endpoint.id)
    kind = endpoint.scope.get("kind")
    base = endpoint.scope.get("prediction_url")
    if kind == "tuned":
        where = Where.from_scope(endpoint.scope)
        body = gemini_request(request.messages, request.max_tokens, request.temperature)
        answer = _ask(where.api_endpoint, f"{resource}:generateContent", body, f"ask {resource}")
        return gemini_reply(answer, provider=PROVIDER, where=resource)
    if not base:
        raise ProviderError(
            PROVIDER,
            f"endpoint {endpoint.name} is private: it answers at the address your network "
            "gives its Private Service Connect endpoint; set options.prediction_url to it "
            "and ask from inside the network",
            code="private_endpoint",
        )
    chat = chat_body(request, model=SERVED_MODEL)
    if kind == "private":
        if version_id is not None:
            raise CapabilityError(
                PROVIDER, "a Private Service Connect endpoint cannot be asked one version"
            )
        answer = _ask(base, f"{resource}:rawPredict", chat, f"ask {resource}")
    elif version_id is None:
        answer = _ask(base, f"{resource}/invoke{CHAT_ROUTE}", chat, f"ask {resource}")
    else:
        path = f"{resource}/deployedModels/{version_id}/invoke{CHAT_ROUTE}"
        answer = _ask(base, path, chat, f"ask version {version_id} of {resource}")
    return chat_reply(PROVIDER, answer, resource)


def answer(
    options: Mapping[str, Any],
    model: str,
    requests: Sequence[ChatRequest],
    progress: Callable[[int, int], None] | None,
) -> list[ChatReply]:
    """A tuned Gemini model's reply to each request, through its endpoint's
    ``generateContent`` (``model``: the artifact's ``<model>#endpoint=<endpoint>``)."""
    _, _, endpoint = model.partition("#endpoint=")
    region = endpoint.split("/locations/", 1)[-1].split("/", 1)[0] if endpoint else ""
    if not region:
        raise CapabilityError(
            PROVIDER,
            f"{model} is not a tuned Gemini model; a custom job's model answers "
            "the golden set in its own job",
        )
    where = Where.of(VertexOptions.model_validate(dict(options)), region)
    ref = endpoint_ref(where, endpoint, region, "tuned")
    # Each request retried on its own when throttled (Gemini answers 429 "Resource
    # exhausted. Please try again later"), so one busy minute does not cost the answers
    # already had.
    ask = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(TransientProviderError),
        wait=wait_as_asked(backoff=2.0, cap=60.0),
        stop=tenacity.stop_after_attempt(6),
        reraise=True,
    )
    replies = []
    for done, request in enumerate(requests, start=1):
        replies.append(ask(invoke, ref, request))
        if progress is not None:
            progress(done, len(requests))
    return replies

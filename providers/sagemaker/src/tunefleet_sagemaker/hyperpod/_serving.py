"""Serving through HyperPod's inference operator (EKS clusters).

The operator (Helm chart ``hyperpod-inference-operator``, part of the sagemaker-hyperpod
CLI's chart) serves a model on the cluster's own nodes from an ``InferenceEndpointConfig``
(``inference.sagemaker.aws.amazon.com/v1``): it mounts the model from S3, runs the
inference container in a Deployment, fronts it with a load balancer and registers a
SageMaker endpoint named ``spec.endpointName`` that forwards to it. tunefleet sends the
resource as the CLI sends it for ``hyp create hyp-custom-endpoint --model-source-type s3``
(sagemaker-hyperpod-cli at 011ca92, ``hyperpod_custom_inference_template`` v1.2,
``FlatHPEndpoint.to_domain``), with the region's Hugging Face TGI container by default,
and invokes it as the CLI's ``hyp invoke`` does: SageMaker runtime's InvokeEndpoint on
that endpoint.

The resource is named after the endpoint, so the name is the idempotency key: a deploy
killed anywhere is found by the next (409 AlreadyExists, then adopted), and a new model
under the same name is a change of the resource's spec, which the operator rolls out.
Readiness is what the SDK's integration tests wait for: ``status.endpoints.sagemaker.state``
``CreationCompleted`` for the resource's current generation; failure is
``deploymentObjectOverallState`` ``DeploymentFailed``. Delete deletes the resource; the
operator's finalizer tears down what it made (Deployment, load balancer, SageMaker
endpoint), and delete returns once the resource is gone.

Slurm clusters have no such operator: a spec with an endpoint on one is refused at plan,
with the way to serve the model from S3 instead.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from tunefleet.errors import (
    AlreadyExistsError,
    CapabilityError,
    ProviderError,
    ProviderNotFoundError,
    TransientProviderError,
)
from tunefleet.provider import (
    ArtifactRef,
    ChatReply,
    ChatRequest,
    EndpointRef,
    Plan,
    Unmet,
    fill_placeholders,
)
from tunefleet.spec import RunSpec, TargetSpec
from tunefleet_sagemaker import _serving as sagemaker_serving
from tunefleet_sagemaker.hyperpod import _cluster
from tunefleet_sagemaker.hyperpod._client import (
    PROVIDER,
    kube_api,
    kube_request_options,
    kube_translated,
)
from tunefleet_sagemaker.hyperpod.options import HyperPodOptions
from tunefleet_sagemaker.hyperpod.pricing import resources
from tunefleet_sagemaker.pricing import TGI_IMAGE_DATE, TGI_IMAGE_SOURCE, tgi_image

__all__ = [
    "ENDPOINT",
    "GROUP",
    "KIND",
    "MODEL",
    "MODEL_BUCKET",
    "MODEL_LOCATION",
    "OPERATION",
    "PLURAL",
    "VERSION",
    "delete_endpoint",
    "deploy",
    "endpoint_config",
    "invoke",
    "model_location",
    "unmet",
]

GROUP = "inference.sagemaker.aws.amazon.com"
VERSION = "v1"
KIND = "InferenceEndpointConfig"
PLURAL = "inferenceendpointconfigs"
OPERATION = f"Create{KIND}"

ENDPOINT = "${endpoint}"
MODEL = "${model}"
MODEL_BUCKET = "${model_bucket}"
MODEL_LOCATION = "${model_location}"

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "tunefleet"
ARTIFACT_ANNOTATION = "tunefleet.dev/artifact"
"""The artifact a resource serves, so a later deploy of the same one changes nothing."""
MODEL_MOUNT = "/opt/ml/model"
"""Where the operator mounts the model (``worker.modelVolumeMount.mountPath``, the CRD's
default); TGI loads it from there (``HF_MODEL_ID``)."""
MODEL_PORT = 8080
"""TGI's port in SageMaker's containers, as the chart's S3 sample
(config/samples/v1_s3_modeldeployment.yaml) sets it."""
DEPLOY_SECONDS = 3600
"""``maxDeployTimeInSeconds``: the CRD's default, which the CLI sends."""
ENDPOINT_WAIT_SECONDS = DEPLOY_SECONDS + 20 * 60
"""How long deploy waits: the operator's deadline, then the SageMaker endpoint ("takes
~10 min to create", the CLI's ``hyp describe``)."""
DELETE_WAIT_SECONDS = 20 * 60
FIRST_POLL_SECONDS = 1.0
LAST_POLL_SECONDS = 15.0
_SAGEMAKER_READY = "CreationCompleted"
_SAGEMAKER_FAILED = {"CreationFailed", "UpdateFailed"}
"""``status.endpoints.sagemaker.state`` values: SageMakerEndpointRegistration's states
(its CRD's enum), which the CLI shows."""


def unmet(
    spec: RunSpec,
    target: TargetSpec,
    options: HyperPodOptions,
    facts: _cluster.ClusterFacts,
    region: str,
) -> list[Unmet]:
    """What the spec's endpoint asks that this cluster cannot serve."""
    endpoint = spec.endpoint
    if endpoint is None:
        return []
    if facts.orchestrator == "slurm":
        return [
            Unmet(
                requirement="endpoint",
                reason=f"cluster {facts.name} is orchestrated by Slurm, and HyperPod serves "
                "models only on EKS clusters (its inference operator). The trained model is "
                "in S3 (see `tunefleet artifacts`): serve it from a `sagemaker` target "
                "(docs/providers/hyperpod.md, Serving)",
            )
        ]
    found: list[Unmet] = []
    instance = serving_instance_type(spec, target, facts)
    groups = [g for g in facts.groups if g.instance_type == instance]
    if instance is None or not groups:
        have = ", ".join(sorted({g.instance_type for g in facts.groups})) or "none"
        found.append(
            Unmet(
                requirement="endpoint.instance_type",
                reason=f"the operator serves on the cluster's nodes, and cluster {facts.name} "
                f"has no {instance or 'accelerated'} nodes (it has {have})",
            )
        )
    else:
        running = sum(g.running for g in groups)
        if endpoint.instance_count > running:
            found.append(
                Unmet(
                    requirement="endpoint.instance_count",
                    reason=f"{endpoint.instance_count} replicas, one per node, and cluster "
                    f"{facts.name} has {running} {instance} nodes running",
                )
            )
        if options.serving_gpus is None and resources(instance) is None:
            found.append(
                Unmet(
                    requirement="options.serving_gpus",
                    reason=f"tunefleet's table does not know how many GPUs {instance} has; "
                    "set options.serving_gpus to the GPUs each replica asks for",
                )
            )
    if options.serving_image is None and tgi_image(region) is None:
        found.append(
            Unmet(
                requirement="options.serving_image",
                reason=f"AWS's table of Hugging Face LLM (TGI) images lists none in {region} "
                f"(as of {TGI_IMAGE_DATE}, {TGI_IMAGE_SOURCE}); set options.serving_image "
                "to an inference image the cluster's nodes can pull",
            )
        )
    return found


def serving_instance_type(
    spec: RunSpec, target: TargetSpec, facts: _cluster.ClusterFacts
) -> str | None:
    """The instance type replicas run on: the endpoint's, else the training job's, else the
    cluster's only accelerated one."""
    endpoint = spec.endpoint
    if endpoint is not None and endpoint.instance_type is not None:
        return endpoint.instance_type
    if target.compute.instance_type is not None:
        return target.compute.instance_type
    accelerated = {
        g.instance_type
        for g in facts.groups
        if g.slurm_node_type is None and (resources(g.instance_type) or (0, 0))[0] > 0
    }
    return accelerated.pop() if len(accelerated) == 1 else None


def endpoint_config(
    spec: RunSpec,
    target: TargetSpec,
    options: HyperPodOptions,
    region: str,
    instance_type: str,
    labels: Mapping[str, str],
) -> dict[str, Any]:
    """The InferenceEndpointConfig that serves the model, with placeholders for what only
    deploy knows: :data:`ENDPOINT`, :data:`MODEL` (the model's name on SageMaker),
    :data:`MODEL_BUCKET` and :data:`MODEL_LOCATION` (the model's folder in S3)."""
    endpoint = spec.endpoint
    assert endpoint is not None
    gpus = options.serving_gpus
    if gpus is None:
        gpus = (resources(instance_type) or (1, 0))[0]
    image = options.serving_image or tgi_image(region) or ""
    tls = "/".join(p for p in (options.prefix.strip("/"), "endpoints", ENDPOINT, "tls") if p)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {
            "name": ENDPOINT,
            "namespace": options.namespace,
            "labels": {**labels, MANAGED_BY_LABEL: MANAGED_BY},
        },
        "spec": {
            "modelName": MODEL,
            "endpointName": ENDPOINT,
            "instanceType": instance_type,
            "replicas": endpoint.instance_count,
            "invocationEndpoint": "invocations",
            "maxDeployTimeInSeconds": DEPLOY_SECONDS,
            "modelSourceConfig": {
                "modelSourceType": "s3",
                "s3Storage": {"bucketName": MODEL_BUCKET, "region": region},
                "modelLocation": MODEL_LOCATION,
                "prefetchEnabled": False,
            },
            # The operator writes its load balancer's certificate here (the CLI always
            # sends tlsConfig).
            "tlsConfig": {"tlsCertificateOutputS3Uri": f"s3://{options.bucket}/{tls}/"},
            "tags": [{"name": k, "value": v} for k, v in spec.placement.tags.items()],
            "worker": {
                "image": image,
                "modelInvocationPort": {"containerPort": MODEL_PORT, "name": "http"},
                "modelVolumeMount": {"name": "model-weights", "mountPath": MODEL_MOUNT},
                "environmentVariables": [
                    {"name": "HF_MODEL_ID", "value": MODEL_MOUNT},
                    {"name": "SM_NUM_GPUS", "value": str(gpus)},
                ],
                "resources": {
                    "limits": {"nvidia.com/gpu": gpus},
                    "requests": {"nvidia.com/gpu": gpus},
                },
            },
        },
    }


def model_location(artifact: ArtifactRef) -> tuple[str, str]:
    """(bucket, folder) of the model to serve from a job's model artifact: the merged model
    beside a LoRA adapter (``merged/``), or the whole model (``model/``), as the trainer
    writes them."""
    if not artifact.uri.startswith("s3://"):
        raise CapabilityError(PROVIDER, f"serves models in S3, not {artifact.uri}")
    kinds = {"adapter": "merged", "merged_model": "model"}
    if artifact.kind not in kinds:
        raise CapabilityError(PROVIDER, f"serves a model, not a {artifact.kind} ({artifact.uri})")
    bucket, _, key = artifact.uri[len("s3://") :].partition("/")
    return bucket, "/".join(p for p in (key.strip("/"), kinds[artifact.kind]) if p)


def _scope(plan: Plan, region: str, clusters: _cluster.Clusters) -> dict[str, str]:
    options = HyperPodOptions.model_validate(plan.options)
    facts = clusters.describe(region, options.cluster)
    scope = {
        "cluster": facts.arn,
        "eks_cluster": facts.eks_cluster_arn or "",
        "namespace": options.namespace,
    }
    if options.kube_context is not None:
        scope["kube_context"] = options.kube_context
    return scope


def _custom(scope: Mapping[str, str], region: str) -> Any:
    import kubernetes

    api = kube_api(
        region=region,
        eks_cluster_arn=scope["eks_cluster"],
        context=scope.get("kube_context") or None,
    )
    return kubernetes.client.CustomObjectsApi(api)


def _get(custom: Any, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        with kube_translated(f"get {KIND} {name}"):
            found: dict[str, Any] = custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, **kube_request_options()
            )
    except ProviderNotFoundError:
        return None
    return found


def _check_owner(found: Mapping[str, Any], name: str) -> None:
    labels = (found.get("metadata") or {}).get("labels") or {}
    if labels.get(MANAGED_BY_LABEL) != MANAGED_BY:
        raise ProviderError(
            PROVIDER,
            f"an {KIND} named {name} exists that tunefleet did not create (no "
            f"{MANAGED_BY_LABEL}={MANAGED_BY} label); choose another endpoint name or delete it",
            code="name_taken",
        )


def deploy(
    plan: Plan, region: str, artifact: ArtifactRef, name: str, clusters: _cluster.Clusters
) -> EndpointRef:
    """Serve ``artifact`` behind endpoint ``name`` as planned; returns once the operator
    reports the SageMaker endpoint created for this version of the resource."""
    bucket, location = model_location(artifact)
    scope = _scope(plan, region, clusters)
    namespace = scope["namespace"]
    body = fill_placeholders(
        plan.request(OPERATION, "deploy").body,
        {
            ENDPOINT: name,
            MODEL: sagemaker_serving.derived_name(name, artifact.uri),
            MODEL_BUCKET: bucket,
            MODEL_LOCATION: location,
        },
    )
    body["metadata"]["annotations"] = {ARTIFACT_ANNOTATION: artifact.uri}
    custom = _custom(scope, region)
    try:
        with kube_translated(f"create {KIND} {name}"):
            custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, body, **kube_request_options()
            )
    except AlreadyExistsError:
        _update(custom, namespace, name, body)
    found = _settled(custom, namespace, name)
    sagemaker = ((found.get("status") or {}).get("endpoints") or {}).get("sagemaker") or {}
    return EndpointRef(
        provider=PROVIDER,
        name=name,
        region=region,
        url=f"https://runtime.sagemaker.{region}.amazonaws.com/endpoints/{name}/invocations",
        id=sagemaker.get("endpointArn") or found["metadata"].get("uid"),
        scope={**scope, "artifact": artifact.uri},
    )


def _update(custom: Any, namespace: str, name: str, body: dict[str, Any]) -> None:
    """Make the existing resource ``name`` the one ``body`` describes: nothing to do when it
    is (an earlier deploy of the same model, killed before it returned), else its spec is
    replaced and the operator rolls the new model out. A resource being deleted is waited
    for and made again."""
    found = _get(custom, namespace, name)
    if found is not None:
        _check_owner(found, name)
        if found["metadata"].get("deletionTimestamp"):
            _gone(custom, namespace, name)
            found = None
    if found is None:
        with kube_translated(f"create {KIND} {name}"):
            custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, body, **kube_request_options()
            )
        return
    annotations = found["metadata"].get("annotations") or {}
    if annotations.get(ARTIFACT_ANNOTATION) == body["metadata"]["annotations"][
        ARTIFACT_ANNOTATION
    ] and _holds(found["spec"], body["spec"]):
        return
    metadata = {
        "labels": body["metadata"]["labels"],
        "annotations": annotations | body["metadata"]["annotations"],
    }
    with kube_translated(f"update {KIND} {name}"):
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"metadata": metadata, "spec": body["spec"]},
            **kube_request_options(),
        )


def _holds(stored: Any, wanted: Any) -> bool:
    """Whether ``stored`` (with the server's defaults filled in) has every value of
    ``wanted``."""
    if isinstance(wanted, dict):
        return isinstance(stored, dict) and all(
            _holds(stored.get(key), value) for key, value in wanted.items()
        )
    if isinstance(wanted, list):
        return (
            isinstance(stored, list)
            and len(stored) == len(wanted)
            and all(_holds(s, w) for s, w in zip(stored, wanted, strict=True))
        )
    return bool(stored == wanted)


def _settled(custom: Any, namespace: str, name: str) -> dict[str, Any]:
    """The resource once the operator has served its current generation; ProviderError
    ``endpoint_failed`` when the operator failed it, TransientProviderError
    ``endpoint_busy`` when it is still deploying after :data:`ENDPOINT_WAIT_SECONDS`."""
    deadline = time.monotonic() + ENDPOINT_WAIT_SECONDS
    delay = FIRST_POLL_SECONDS
    while True:
        found = _get(custom, namespace, name)
        if found is None:
            raise ProviderError(
                PROVIDER, f"{KIND} {name} was deleted while it deployed", code="endpoint_failed"
            )
        status = found.get("status") or {}
        generation = found["metadata"].get("generation")
        current = status.get("observedGeneration", generation) == generation
        deployment = status.get("deploymentStatus") or {}
        overall = deployment.get("deploymentObjectOverallState") or status.get("state")
        sagemaker = (status.get("endpoints") or {}).get("sagemaker") or {}
        if current and "DeploymentFailed" in {overall, status.get("state")}:
            words = ": ".join(
                str(p) for p in (deployment.get("reason"), deployment.get("message")) if p
            )
            raise ProviderError(
                PROVIDER,
                f"{KIND} {name} failed to deploy: {words or 'the operator gave no reason'}",
                code="endpoint_failed",
            )
        if current and sagemaker.get("state") in _SAGEMAKER_FAILED:
            raise ProviderError(
                PROVIDER,
                f"{KIND} {name}: its SageMaker endpoint is {sagemaker['state']}",
                code="endpoint_failed",
            )
        if current and sagemaker.get("state") == _SAGEMAKER_READY:
            return found
        if time.monotonic() + delay > deadline:
            raise TransientProviderError(
                PROVIDER,
                f"{KIND} {name} is still {overall or 'pending'}",
                code="endpoint_busy",
            )
        time.sleep(delay)
        delay = min(delay * 2, LAST_POLL_SECONDS)


def _gone(custom: Any, namespace: str, name: str) -> None:
    """Wait until the resource ``name`` no longer exists (the operator's finalizer has torn
    down what it made); ProviderError ``endpoint_failed`` when the operator reports the
    deletion failed."""
    deadline = time.monotonic() + DELETE_WAIT_SECONDS
    delay = FIRST_POLL_SECONDS
    while True:
        found = _get(custom, namespace, name)
        if found is None:
            return
        state = (found.get("status") or {}).get("state")
        if state == "DeletionFailed":
            raise ProviderError(
                PROVIDER,
                f"the inference operator failed to delete {KIND} {name}; see "
                f"`kubectl describe {PLURAL} {name} -n {namespace}`",
                code="endpoint_failed",
            )
        if time.monotonic() + delay > deadline:
            raise TransientProviderError(
                PROVIDER, f"{KIND} {name} is still being deleted ({state})", code="endpoint_busy"
            )
        time.sleep(delay)
        delay = min(delay * 2, LAST_POLL_SECONDS)


def delete_endpoint(endpoint: EndpointRef) -> None:
    """Delete the endpoint's resource and wait until the operator has removed it with what
    it served (a no-op when it is gone; a delete killed half-way is finished by the
    next)."""
    import kubernetes

    region = str(endpoint.region)
    namespace, name = endpoint.scope["namespace"], endpoint.name
    custom = _custom(endpoint.scope, region)
    found = _get(custom, namespace, name)
    if found is None:
        return
    _check_owner(found, name)
    if not found["metadata"].get("deletionTimestamp"):
        try:
            with kube_translated(f"delete {KIND} {name}"):
                custom.delete_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    namespace,
                    PLURAL,
                    name,
                    body=kubernetes.client.V1DeleteOptions(propagation_policy="Background"),
                    **kube_request_options(),
                )
        except ProviderNotFoundError:
            return
    _gone(custom, namespace, name)


def invoke(endpoint: EndpointRef, request: ChatRequest) -> ChatReply:
    """Ask the model through the SageMaker endpoint the operator registered (InvokeEndpoint,
    as ``hyp invoke`` does), in TGI's Messages API."""
    return sagemaker_serving.invoke(endpoint, request, provider=PROVIDER)

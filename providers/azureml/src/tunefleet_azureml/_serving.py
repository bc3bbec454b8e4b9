"""Serving: the spec's endpoint as a managed online endpoint, a deployment of the trained
model in a TGI container, Azure Monitor autoscale, and chat through the scoring URI.

Planned like the job, with placeholders for what is known only at deploy time:
``${endpoint}`` (the endpoint's name), ``${deployment}`` (the deployment's name: the
version label, ``primary`` for a plain deploy), ``${model}`` (the model asset's Resource
Manager id) and ``${model_dir}`` (where Azure ML mounts that model in the container).

Every request is a PUT of a name tunefleet derives, so a deploy killed anywhere is
finished by the next: the endpoint, then the deployment (each a long-running operation,
waited on), then the endpoint again with the traffic on the deployment, then the
deployment's autoscale setting ``<endpoint>-<deployment>``. Deleting the endpoint deletes
its deployments ("Delete an endpoint and its deployments",
https://learn.microsoft.com/azure/machine-learning/how-to-deploy-online-endpoints) and
tunefleet deletes the autoscale settings it made with it.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from tunefleet.errors import CapabilityError, ProviderError, ProviderNotFoundError
from tunefleet.kit.chat import chat_body, chat_reply
from tunefleet.kit.labels import RUN_KEY_PLACEHOLDER, run_labels
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
from tunefleet.spec import EndpointSpec, RunSpec
from tunefleet_azureml._client import (
    PROVIDER,
    Where,
    arm,
    credential,
    ensure_version,
    monitor,
    poll_seconds,
    translated,
)
from tunefleet_azureml.options import AzureMLOptions

__all__ = [
    "DEPLOYMENT",
    "ENDPOINT",
    "ENDPOINT_NAME",
    "MODEL",
    "MODEL_DIR",
    "PRIMARY",
    "TGI_IMAGE",
    "delete_deployment",
    "delete_endpoint",
    "deploy",
    "invoke",
    "model_dir",
    "model_id",
    "planned",
    "put",
    "put_autoscale",
    "requests",
    "unmet",
]

ENDPOINT = "${endpoint}"
DEPLOYMENT = "${deployment}"
MODEL = "${model}"
MODEL_DIR = "${model_dir}"
PRIMARY = "primary"
"""The deployment a plain deploy creates."""
SERVING_ENVIRONMENT = "tunefleet-serving"
TGI_IMAGE = "ghcr.io/huggingface/text-generation-inference:2.4.1"
"""The serving container when options.serving_image names none: Hugging Face's
text-generation-inference, which loads the model in ``MODEL_ID`` and answers OpenAI chat
completions on ``/v1/chat/completions`` (its Messages API)."""
TGI_PORT = 80
MODELS_ROOT = "/var/azureml-app/azureml-models"
"""Where a managed online deployment mounts its model: ``<root>/<name>/<version>/`` and,
for a model registered from a folder, the folder's name below it (AZUREML_MODEL_DIR, "Use
a custom container to deploy a model to an online endpoint",
https://learn.microsoft.com/azure/machine-learning/how-to-deploy-custom-container)."""
ENDPOINT_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]$")
"""An online endpoint's name: 3-32 characters, a letter first, letters, digits and hyphens,
a letter or digit last ("Endpoint name", Online endpoints,
https://learn.microsoft.com/azure/machine-learning/how-to-manage-quotas#azure-machine-learning-online-endpoints-and-batch-endpoints).
It is part of the scoring URI, unique in the region."""
LIVENESS = {"initialDelay": "PT600S", "period": "PT10S", "timeout": "PT2S", "failureThreshold": 30}
"""The container is restarted only after 10 minutes without a healthy answer: TGI loads and
warms a 7-8B model for minutes, and Azure ML's default (10 s, then 30 failures 10 s apart)
restarts it in a loop ("ProbeSettings", Managed online deployment YAML reference,
https://learn.microsoft.com/azure/machine-learning/reference-yaml-deployment-managed-online)."""
READINESS = {"initialDelay": "PT30S", "period": "PT10S", "timeout": "PT2S", "failureThreshold": 90}
"""Traffic waits until TGI answers /health, for up to 15 minutes after start."""
MAX_CONCURRENT_REQUESTS = 16
"""Requests one instance takes at once: TGI batches them (Azure ML's default of 1 answers a
second concurrent request with 429, the same page's RequestSettings)."""
DEFAULT_REQUESTS_PER_INSTANCE = 100
"""Requests per instance per minute autoscale tracks when the spec names no target."""
LRO_SECONDS = 30 * 60


def unmet(spec: RunSpec, options: AzureMLOptions) -> list[Unmet]:
    """What the spec's endpoint asks that a managed online endpoint cannot do."""
    found: list[Unmet] = []
    endpoint = spec.endpoint
    if endpoint is None:
        return found
    if endpoint.name is not None and not ENDPOINT_NAME.match(endpoint.name):
        found.append(
            Unmet(
                requirement="endpoint.name",
                reason="an Azure ML online endpoint's name has 3-32 letters, digits and "
                "hyphens, starting with a letter",
            )
        )
    if spec.placement.require_private_network and options.serving_image is None:
        found.append(
            Unmet(
                requirement="placement.require_private_network",
                reason=f"a private deployment downloads its image through the workspace's "
                f"private endpoints only, so {TGI_IMAGE} cannot be pulled; push a serving "
                "image to the workspace's container registry and name it in "
                "options.serving_image",
            )
        )
    if endpoint.autoscaling is not None and endpoint.autoscaling.min_instances < 1:
        found.append(
            Unmet(
                requirement="endpoint.autoscaling.min_instances",
                reason="a managed online deployment keeps at least one instance; it does not "
                "scale to zero",
            )
        )
    return found


def _environment_version(image: str) -> str:
    return hashlib.sha256(image.encode()).hexdigest()[:16]


def requests(spec: RunSpec, region: str, options: AzureMLOptions) -> list[NativeRequest]:
    """The planned requests of a deploy, in order."""
    endpoint = spec.endpoint or EndpointSpec()
    where = Where.of(options)
    image = options.serving_image or TGI_IMAGE
    version = _environment_version(image)
    tags = {k: v for k, v in run_labels(spec).items() if v != RUN_KEY_PLACEHOLDER}
    private = spec.placement.require_private_network
    instances = endpoint.autoscaling.min_instances if endpoint.autoscaling else 1
    instances = max(instances, endpoint.instance_count if endpoint.autoscaling is None else 1)
    route = {"port": TGI_PORT}
    endpoint_body: dict[str, Any] = {
        "location": region,
        "tags": tags,
        "identity": {"type": "SystemAssigned"},
        "properties": {
            "authMode": "AADToken" if options.endpoint_auth == "aad" else "Key",
            "publicNetworkAccess": "Disabled" if private else "Enabled",
            "description": f"serves models fine-tuned by tunefleet run {spec.name}",
        },
    }
    found = [
        NativeRequest(
            phase="deploy",
            service="azureml",
            operation="EnvironmentVersions_CreateOrUpdate",
            body={
                "path": f"environments/{SERVING_ENVIRONMENT}/versions/{version}",
                "body": {
                    "properties": {
                        "image": image,
                        "osType": "Linux",
                        "description": "the serving container of tunefleet's deployments",
                        "inferenceConfig": {
                            "livenessRoute": {"path": "/health", **route},
                            "readinessRoute": {"path": "/health", **route},
                            "scoringRoute": {"path": "/v1/chat/completions", **route},
                        },
                    }
                },
            },
            purpose="register the serving container as an environment (skipped when it is)",
        ),
        NativeRequest(
            phase="deploy",
            service="azureml",
            operation="OnlineEndpoints_CreateOrUpdate",
            body={"path": f"onlineEndpoints/{ENDPOINT}", "body": endpoint_body},
            purpose="create the online endpoint",
        ),
        NativeRequest(
            phase="deploy",
            service="azureml",
            operation="OnlineDeployments_CreateOrUpdate",
            body={
                "path": f"onlineEndpoints/{ENDPOINT}/deployments/{DEPLOYMENT}",
                "body": {
                    "location": region,
                    "tags": tags,
                    "sku": {"name": "Default", "capacity": instances},
                    "properties": {
                        "endpointComputeType": "Managed",
                        "model": MODEL,
                        "environmentId": f"{where.workspace_id}/environments/"
                        f"{SERVING_ENVIRONMENT}/versions/{version}",
                        "environmentVariables": {"MODEL_ID": MODEL_DIR, "PORT": str(TGI_PORT)},
                        "instanceType": endpoint.instance_type or options.endpoint_instance_type,
                        "scaleSettings": {"scaleType": "Default"},
                        "egressPublicNetworkAccess": "Disabled" if private else "Enabled",
                        "requestSettings": {
                            "requestTimeout": "PT90S",
                            "maxConcurrentRequestsPerInstance": MAX_CONCURRENT_REQUESTS,
                        },
                        "livenessProbe": LIVENESS,
                        "readinessProbe": READINESS,
                    },
                },
            },
            purpose="deploy the model on the endpoint's instances",
        ),
        NativeRequest(
            phase="deploy",
            service="azureml",
            operation="OnlineEndpoints_CreateOrUpdate",
            body={
                "path": f"onlineEndpoints/{ENDPOINT}",
                "body": {
                    **endpoint_body,
                    "properties": {**endpoint_body["properties"], "traffic": {DEPLOYMENT: 100}},
                },
            },
            purpose="send the endpoint's traffic to the deployment",
        ),
    ]
    if endpoint.autoscaling is not None:
        found.append(_autoscale_request(endpoint, region, where, tags))
    return found


def _autoscale_request(
    endpoint: EndpointSpec, region: str, where: Where, tags: dict[str, str]
) -> NativeRequest:
    """Azure Monitor autoscale of the deployment: one instance more while an instance
    gets more requests a minute than the target, one fewer below half of it ("Autoscale
    online endpoints", https://learn.microsoft.com/azure/machine-learning/how-to-autoscale-endpoints)."""
    scaling = endpoint.autoscaling
    assert scaling is not None
    target = scaling.target_invocations_per_instance or DEFAULT_REQUESTS_PER_INSTANCE
    endpoint_id = f"{where.workspace_id}/onlineEndpoints/{ENDPOINT}"

    def rule(operator: str, threshold: float, direction: str, cooldown: str) -> dict[str, Any]:
        return {
            "metricTrigger": {
                "metricName": "RequestsPerMinute",
                "metricResourceUri": endpoint_id,
                "timeGrain": "PT1M",
                "statistic": "Average",
                "timeWindow": "PT5M",
                "timeAggregation": "Average",
                "operator": operator,
                "threshold": threshold,
                "dividePerInstance": True,
                # RequestsPerMinute is the endpoint's, for every deployment: each version
                # scales on its own requests ("Supported metrics for
                # Microsoft.MachineLearningServices/workspaces/onlineEndpoints": dimension
                # "deployment").
                "dimensions": [
                    {"DimensionName": "deployment", "Operator": "Equals", "Values": [DEPLOYMENT]}
                ],
            },
            "scaleAction": {
                "direction": direction,
                "type": "ChangeCount",
                "value": "1",
                "cooldown": cooldown,
            },
        }

    return NativeRequest(
        phase="deploy",
        service="monitor",
        operation="AutoscaleSettings_CreateOrUpdate",
        body={
            "path": f"/subscriptions/{where.subscription_id}/resourceGroups/"
            f"{where.resource_group}/providers/Microsoft.Insights/autoscalesettings/"
            f"{ENDPOINT}-{DEPLOYMENT}",
            "body": {
                "location": region,
                "tags": tags,
                "properties": {
                    "enabled": True,
                    "targetResourceUri": f"{endpoint_id}/deployments/{DEPLOYMENT}",
                    "profiles": [
                        {
                            "name": "tunefleet",
                            "capacity": {
                                "minimum": str(scaling.min_instances),
                                "maximum": str(scaling.max_instances),
                                "default": str(scaling.min_instances),
                            },
                            "rules": [
                                rule("GreaterThan", float(target), "Increase", "PT5M"),
                                rule("LessThan", target / 2, "Decrease", "PT10M"),
                            ],
                        }
                    ],
                },
            },
        },
        purpose="scale the deployment with its requests per instance",
    )


def model_id(artifact: ArtifactRef, where: Where) -> tuple[str, str, str]:
    """The model asset's (Resource Manager id, name, version) of an artifact's URI."""
    match = re.fullmatch(
        r"azureml://subscriptions/([^/]+)/resourcegroups/([^/]+)/workspaces/([^/]+)"
        r"/models/([^/]+)/versions/([^/]+)",
        artifact.uri,
    )
    if match is None:
        raise CapabilityError(PROVIDER, f"serves Azure ML model assets, not {artifact.uri}")
    subscription, group, workspace, name, version = match.groups()
    if (subscription, group, workspace) != (
        where.subscription_id,
        where.resource_group,
        where.workspace,
    ):
        raise ProviderError(
            PROVIDER,
            f"model {name}:{version} is in workspace {workspace}, not in {where.workspace} "
            "that the target names",
            code="other_workspace",
        )
    return f"{where.workspace_id}/models/{name}/versions/{version}", name, version


def model_dir(name: str, version: str, adapter: str) -> str:
    # The model was registered from the job's output folder, which Azure ML mounts under
    # that folder's name (the job's name, which is the model's); the trainer writes the
    # merged model under merged/ (a full fine-tune's under model/).
    return f"{MODELS_ROOT}/{name}/{version}/{name}/{'model' if adapter == 'full' else 'merged'}"


def put(where: Where, request: dict[str, Any], operation: str) -> dict[str, Any]:
    """Send a planned PUT and wait for its long-running operation to end."""
    client = arm(where)
    parts = str(request["path"]).split("/")
    group, workspace = where.resource_group, where.workspace
    with translated(f"{operation} {'/'.join(parts[1:])}"):
        if operation == "OnlineEndpoints_CreateOrUpdate":
            poller = client.online_endpoints.begin_create_or_update(
                group, workspace, parts[1], request["body"], polling_interval=poll_seconds()
            )
        else:
            poller = client.online_deployments.begin_create_or_update(
                group,
                workspace,
                parts[1],
                parts[3],
                request["body"],
                polling_interval=poll_seconds(),
            )
        result = poller.result(timeout=LRO_SECONDS)
    state = (result.get("properties") or {}).get("provisioningState") if result else None
    if state not in (None, "Succeeded"):
        raise ProviderError(
            PROVIDER, f"{'/'.join(parts[1:])} ended {state}", code=f"provisioning_{state}"
        )
    return dict(result or {})


def put_autoscale(where: Where, request: dict[str, Any]) -> None:
    """Send a planned autoscale setting (a plain PUT: Azure Monitor answers at once)."""
    setting = str(request["path"]).rsplit("/", 1)[1]
    with translated(f"create autoscale setting {setting}"):
        monitor(where).autoscale_settings.create_or_update(
            where.resource_group, setting, request["body"]
        )


def planned(plan: Plan, values: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """The plan's deploy requests, (operation, request) in order, placeholders filled."""
    return [
        (request.operation, fill_placeholders(request.body, values))
        for request in plan.requests_for("deploy")
    ]


def deploy(plan: Plan, artifact: ArtifactRef, name: str, deployment: str = PRIMARY) -> EndpointRef:
    """Serve ``artifact`` as deployment ``deployment`` of endpoint ``name`` as planned,
    with all traffic on it; returns once every operation succeeded."""
    options = AzureMLOptions.model_validate(plan.options)
    where = Where.of(options)
    if not ENDPOINT_NAME.match(name):
        raise ProviderError(
            PROVIDER,
            f"{name!r} is not an online endpoint name (3-32 letters, digits and hyphens)",
            code="endpoint_name",
        )
    if not plan.requests_for("deploy"):
        raise CapabilityError(
            PROVIDER,
            f"the plan of target {plan.target!r} serves nothing (a serverless fine-tuning "
            "target's model is served by Azure's serverless endpoints, not by tunefleet)",
        )
    model, model_name, version = model_id(artifact, where)
    adapter = "full" if artifact.kind == "merged_model" else "lora"
    values = {
        ENDPOINT: name,
        DEPLOYMENT: deployment,
        MODEL: model,
        MODEL_DIR: model_dir(model_name, version, adapter),
    }
    endpoint = _existing(where, name)
    for operation, request in planned(plan, values):
        creating = "traffic" not in request.get("body", {}).get("properties", {})
        if operation == "OnlineEndpoints_CreateOrUpdate" and creating and endpoint:
            # The endpoint serves already: a PUT without its traffic would take every
            # deployment's traffic away while the new one is made (an endpoint's traffic
            # is what its PUT says). Its traffic moves with the last request.
            continue
        if operation == "EnvironmentVersions_CreateOrUpdate":
            ensure_version(where, request)
        elif operation == "AutoscaleSettings_CreateOrUpdate":
            put_autoscale(where, request)
        else:
            answer = put(where, request, operation)
            if operation == "OnlineEndpoints_CreateOrUpdate":
                endpoint = answer
    _remove_others(where, name, deployment)
    properties = endpoint.get("properties") or {}
    scope = {**where.scope(), "auth": options.endpoint_auth}
    return EndpointRef(
        provider=PROVIDER,
        name=name,
        region=plan.region,
        url=properties.get("scoringUri"),
        id=f"{where.workspace_id}/onlineEndpoints/{name}",
        scope=scope,
    )


def _existing(where: Where, name: str) -> dict[str, Any]:
    """The endpoint ``name`` as Azure has it; {} when there is none."""
    try:
        with translated(f"read endpoint {name}"):
            return dict(
                arm(where).online_endpoints.get(where.resource_group, where.workspace, name)
            )
    except ProviderNotFoundError:
        return {}


def _remove_others(where: Where, endpoint: str, keep: str) -> None:
    """Delete every deployment of ``endpoint`` but ``keep`` (which now has all traffic),
    with its autoscale setting: a deploy without a canary replaces what was served."""
    client = arm(where)
    with translated(f"list the deployments of {endpoint}"):
        others = [
            str(d["name"])
            for d in client.online_deployments.list(where.resource_group, where.workspace, endpoint)
            if str(d["name"]) != keep
        ]
    for other in others:
        delete_deployment(where, endpoint, other)


def delete_deployment(where: Where, endpoint: str, deployment: str) -> None:
    """Delete a deployment's autoscale setting and the deployment, waiting until it is
    gone; what is gone already is skipped."""
    _delete_autoscale(where, f"{endpoint}-{deployment}")
    try:
        with translated(f"delete deployment {deployment}"):
            arm(where).online_deployments.begin_delete(
                where.resource_group,
                where.workspace,
                endpoint,
                deployment,
                polling_interval=poll_seconds(),
            ).result(timeout=LRO_SECONDS)
    except ProviderNotFoundError:
        pass


def _delete_autoscale(where: Where, setting: str) -> None:
    try:
        with translated(f"delete autoscale setting {setting}"):
            monitor(where).autoscale_settings.delete(where.resource_group, setting)
    except ProviderNotFoundError:
        pass


def delete_endpoint(endpoint: EndpointRef) -> None:
    """Delete the endpoint's autoscale settings and the endpoint (its deployments with
    it), waiting until it is gone; what is gone already is skipped."""
    where = Where.from_scope(endpoint.scope)
    client = arm(where)
    try:
        with translated(f"list the deployments of {endpoint.name}"):
            deployments = [
                str(d["name"])
                for d in client.online_deployments.list(
                    where.resource_group, where.workspace, endpoint.name
                )
            ]
    except ProviderNotFoundError:
        deployments = []
    for deployment in deployments:
        _delete_autoscale(where, f"{endpoint.name}-{deployment}")
    try:
        with translated(f"delete endpoint {endpoint.name}"):
            client.online_endpoints.begin_delete(
                where.resource_group,
                where.workspace,
                endpoint.name,
                polling_interval=poll_seconds(),
            ).result(timeout=LRO_SECONDS)
    except ProviderNotFoundError:
        pass


def _authorization(where: Where, endpoint: EndpointRef) -> str:
    if endpoint.scope.get("auth") == "aad":
        token = credential().get_token("https://ml.azure.com/.default")
        return f"Bearer {token.token}"
    with translated(f"read the keys of endpoint {endpoint.name}"):
        keys = arm(where).online_endpoints.list_keys(
            where.resource_group, where.workspace, endpoint.name
        )
    return f"Bearer {keys['primaryKey']}"


def invoke(endpoint: EndpointRef, request: ChatRequest, deployment: str | None = None) -> ChatReply:
    """Ask the endpoint through its scoring URI (an OpenAI chat completion); with
    ``deployment``, that deployment whatever the traffic (the ``azureml-model-deployment``
    header, "Test the deployment",
    https://learn.microsoft.com/azure/machine-learning/how-to-safely-rollout-online-endpoints)."""
    from azure.core import PipelineClient
    from azure.core.pipeline.policies import RetryPolicy
    from azure.core.rest import HttpRequest

    where = Where.from_scope(endpoint.scope)
    url = endpoint.url
    if not url:
        with translated(f"read endpoint {endpoint.name}"):
            found = arm(where).online_endpoints.get(
                where.resource_group, where.workspace, endpoint.name
            )
        url = (found.get("properties") or {}).get("scoringUri")
    if not url:
        raise ProviderError(PROVIDER, f"endpoint {endpoint.name} has no scoring URI yet")
    headers = {"Authorization": _authorization(where, endpoint)}
    if deployment is not None:
        headers["azureml-model-deployment"] = deployment
    client: Any = PipelineClient(url, policies=[RetryPolicy(retry_total=3)])
    label = f"endpoint {endpoint.name}" + (f" ({deployment})" if deployment else "")
    with translated(f"invoke {label}"):
        response = client.send_request(
            HttpRequest("POST", url, json=chat_body(request, model="tgi"), headers=headers)
        )
        response.raise_for_status()
    return chat_reply(PROVIDER, response.content, label)

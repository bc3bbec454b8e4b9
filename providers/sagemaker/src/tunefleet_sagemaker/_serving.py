"""Serving: the spec's endpoint as SageMaker, Application Auto Scaling and CloudWatch
requests, and the endpoints made from them.

Planned like the training job, with placeholders for what is known only at deploy time:
``${endpoint}`` (the endpoint's name), ``${model}`` (a model's name; for a plain deploy
the endpoint config's too, one pair per model version) and ``${model_data}`` (the
trained model's S3 URI). With ``endpoint.canary`` the plan also lists what a new version's
rollout sends (:mod:`._versions`), with ``${version}`` (the version's label, its
production variant's name), ``${config}`` (the endpoint config holding both versions),
``${serving_version}`` and ``${serving_model}`` (the variant serving already).

Deploy creates the model, the endpoint config and the endpoint and waits until it is
InService; a new model version deployed without a canary replaces the old at once
(UpdateEndpoint). Canaries are production variants side by side (:mod:`._versions`).

Names are derived, never random, so a call killed anywhere is found again by the next:
the endpoint's models and configs are ``<endpoint>-<8 hex>`` (a digest of what they hold),
its alarms ``<endpoint>-<version>-5xx``. Whatever of these the endpoint no longer uses is
deleted after each change (:func:`sweep`) and with the endpoint.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from tunefleet.errors import (
    CapabilityError,
    ProviderError,
    ProviderNotFoundError,
    TransientProviderError,
)
from tunefleet.kit.chat import chat_body, chat_reply
from tunefleet.provider import (
    ArtifactRef,
    ChatReply,
    ChatRequest,
    EndpointRef,
    Plan,
    Unmet,
    fill_placeholders,
)
from tunefleet.spec import RunSpec
from tunefleet_sagemaker._client import PROVIDER, client, translated
from tunefleet_sagemaker.options import SageMakerOptions
from tunefleet_sagemaker.pricing import (
    TGI_IMAGE_DATE,
    TGI_IMAGE_SOURCE,
    TGI_IMAGE_VERSION,
    has_instance_storage,
    tgi_image,
)

__all__ = [
    "CONFIG",
    "ENDPOINT",
    "MODEL",
    "MODEL_DATA",
    "ROLLBACK_ALARM_TAG",
    "SERVING",
    "SERVING_MODEL",
    "VARIANT",
    "VERSION",
    "alarm_name",
    "delete_endpoint",
    "deploy",
    "derived_name",
    "endpoint_requests",
    "invoke",
    "planned",
    "settled",
    "sweep",
    "unmet",
]

ENDPOINT_WAIT_SECONDS = 30 * 60
FIRST_POLL_SECONDS = 1.0
LAST_POLL_SECONDS = 15.0
"""DescribeEndpoint while an endpoint changes: after 1 s, then twice as long each time, at
most every 15 s (an update takes minutes; a change already made answers at once)."""
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"

ENDPOINT = "${endpoint}"
MODEL = "${model}"
MODEL_DATA = "${model_data}"
VERSION = "${version}"
CONFIG = "${config}"
SERVING = "${serving_version}"
SERVING_MODEL = "${serving_model}"
VARIANT = "primary"
"""The production variant a plain deploy creates: the version label `versions` reports for
an endpoint that serves one model."""
DEFAULT_INVOCATIONS_PER_INSTANCE = 100
"""Invocations per instance per minute tracked when the spec names no target."""
ROLLBACK_ALARM_TAG = "tunefleet:rollback-alarm:"
"""Tag keys (``...:1`` to ``...:9``) on a version's own alarm naming ``options.rollback_alarms``
as the version's plan had them, so `alarms` reads them from AWS, whatever plan the caller
holds."""

_IN_PROGRESS = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"})
"""EndpointStatus values of an endpoint that is changing (DescribeEndpoint, EndpointStatus):
UpdateEndpoint, UpdateEndpointWeightsAndCapacities and DeleteEndpoint refuse it then
("Cannot update in-progress endpoint")."""


def unmet(spec: RunSpec, options: SageMakerOptions, region: str) -> list[Unmet]:
    """What the spec's endpoint asks that these endpoints cannot do."""
    found: list[Unmet] = []
    if options.serving_image is None and tgi_image(region) is None:
        found.append(
            Unmet(
                requirement="options.serving_image",
                reason=f"AWS's table of Hugging Face LLM (TGI {TGI_IMAGE_VERSION}) images lists "
                f"none in {region} (as of {TGI_IMAGE_DATE}, {TGI_IMAGE_SOURCE}); set "
                "options.serving_image to an inference image in that region",
            )
        )
    scaling = spec.endpoint and spec.endpoint.autoscaling
    if scaling and scaling.min_instances < 1:
        found.append(
            Unmet(
                requirement="endpoint.autoscaling.min_instances",
                reason="a SageMaker endpoint keeps at least one instance (scaling to zero "
                "needs inference components, which tunefleet does not create yet)",
            )
        )
    return found


def alarm_name(endpoint: str, version: str) -> str:
    """The CloudWatch alarm on the server errors of ``version`` of ``endpoint``."""
    return f"{endpoint}-{version}-5xx"


def _scaling_requests(
    resource: str, scaling: Any, tags: list[dict[str, str]], purpose: str
) -> list[tuple[str, str, dict[str, Any], str]]:
    return [
        (
            "application-autoscaling",
            "RegisterScalableTarget",
            {
                "ServiceNamespace": "sagemaker",
                "ResourceId": resource,
                "ScalableDimension": SCALABLE_DIMENSION,
                "MinCapacity": scaling.min_instances,
                "MaxCapacity": scaling.max_instances,
                # Tagged when registered ("Use this parameter to tag the scalable target
                # when it is created", RegisterScalableTarget); a target registered again
                # keeps its tags.
                "Tags": {tag["Key"]: tag["Value"] for tag in tags},
            },
            f"let {purpose} scale between its bounds",
        ),
        (
            "application-autoscaling",
            "PutScalingPolicy",
            {
                "PolicyName": f"{ENDPOINT}-invocations",
                "ServiceNamespace": "sagemaker",
                "ResourceId": resource,
                "ScalableDimension": SCALABLE_DIMENSION,
                "PolicyType": "TargetTrackingScaling",
                "TargetTrackingScalingPolicyConfiguration": {
                    "TargetValue": float(
                        scaling.target_invocations_per_instance or DEFAULT_INVOCATIONS_PER_INSTANCE
                    ),
                    "PredefinedMetricSpecification": {
                        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
                    },
                    "ScaleInCooldown": 300,
                    "ScaleOutCooldown": 60,
                },
            },
            f"track invocations per instance of {purpose}",
        ),
    ]


def endpoint_requests(
    spec: RunSpec, region: str, options: SageMakerOptions, adapter: str, tags: list[dict[str, str]]
) -> list[tuple[str, str, dict[str, Any], str]]:
    """(service, operation, body, purpose) of each request that serves the model: the
    deploy's, then with ``endpoint.canary`` a new version's rollout (see :func:`planned`)."""
    endpoint = spec.endpoint
    assert endpoint is not None
    scaling = endpoint.autoscaling
    # The trainer writes the merged model under merged/ (model/ for full fine-tuning);
    # TGI loads it from the unpacked model.tar.gz.
    model_dir = "/opt/ml/model/" + ("model" if adapter == "full" else "merged")
    container: dict[str, Any] = {
        "ModelDataUrl": MODEL_DATA,
        "Environment": {"HF_MODEL_ID": model_dir, "SM_NUM_GPUS": "1"},
    }
    image = options.serving_image or tgi_image(region)
    if image is not None:  # else unmet() says there is none to serve with
        container = {"Image": image, **container}
    model: dict[str, Any] = {
        "ModelName": MODEL,
        "ExecutionRoleArn": options.role_arn,
        "PrimaryContainer": container,
        "EnableNetworkIsolation": options.network_isolation,
        "Tags": tags,
    }
    if options.subnets and options.security_group_ids:
        model["VpcConfig"] = {
            "SecurityGroupIds": list(options.security_group_ids),
            "Subnets": list(options.subnets),
        }
    instance = endpoint.instance_type or options.endpoint_instance_type
    count = scaling.min_instances if scaling else endpoint.instance_count
    variant = {"ModelName": MODEL, "InstanceType": instance, "InitialInstanceCount": count}
    config: dict[str, Any] = {
        "EndpointConfigName": MODEL,
        "ProductionVariants": [{"VariantName": VARIANT, **variant}],
        "Tags": tags,
    }
    # Not for local NVMe instance storage, which no KMS key encrypts: CreateEndpointConfig
    # refused a KmsKeyId for such types, and AWS's SDK omits it there
    # (sagemaker.session.Session.create_endpoint_config, instance_supports_kms); plan says
    # what that means for the placement policy.
    if options.kms_key_id and not has_instance_storage(instance):
        config["KmsKeyId"] = options.kms_key_id
    if options.data_capture_percent is not None:
        capture: dict[str, Any] = {
            "EnableCapture": True,
            "InitialSamplingPercentage": options.data_capture_percent,
            "DestinationS3Uri": f"s3://{options.bucket}/"
            + "/".join(p for p in (options.prefix.strip("/"), "data-capture", ENDPOINT) if p),
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        }
        capture_key = options.data_capture_kms_key_id or options.kms_key_id
        if capture_key:
            capture["KmsKeyId"] = capture_key
        config["DataCaptureConfig"] = capture
    requests: list[tuple[str, str, dict[str, Any], str]] = [
        ("sagemaker", "CreateModel", model, "register the trained model with its container"),
        ("sagemaker", "CreateEndpointConfig", config, "describe the endpoint's instances"),
        (
            "sagemaker",
            "CreateEndpoint",
            {"EndpointName": ENDPOINT, "EndpointConfigName": MODEL, "Tags": tags},
            "create the endpoint and wait until it is InService",
        ),
    ]
    if scaling is not None:
        requests += _scaling_requests(
            f"endpoint/{ENDPOINT}/variant/{VARIANT}", scaling, tags, "the endpoint"
        )
    if endpoint.canary is not None:
        requests += _rollout_requests(model, config, options, tags, endpoint.canary.traffic_percent)
        if scaling is not None:
            # Before the shift: the new variant scales like the first one did.
            requests[-1:-1] = _scaling_requests(
                f"endpoint/{ENDPOINT}/variant/{VERSION}", scaling, tags, "the new version"
            )
    return requests


def _rollout_requests(
    model: dict[str, Any],
    config: dict[str, Any],
    options: SageMakerOptions,
    tags: list[dict[str, str]],
    share: int,
) -> list[tuple[str, str, dict[str, Any], str]]:
    """What adding a new version beside the one serving sends (:mod:`._versions`): its alarm,
    its model (as a plain deploy's), an endpoint config with both variants (the serving one as
    it is, the new one at weight 0), the update, and the canary's share of traffic."""
    (first,) = config["ProductionVariants"]
    variants = [
        {**first, "VariantName": SERVING, "ModelName": SERVING_MODEL, "InitialVariantWeight": 1.0},
        {**first, "VariantName": VERSION, "ModelName": MODEL, "InitialVariantWeight": 0.0},
    ]
    rollback = [
        {"Key": f"{ROLLBACK_ALARM_TAG}{index}", "Value": name}
        for index, name in enumerate(options.rollback_alarms, start=1)
    ]
    return [
        (
            "sagemaker",
            "CreateModel",
            model,
            "a new version (canary): register its model as a plain deploy does",
        ),
        (
            "cloudwatch",
            "PutMetricAlarm",
            {
                "AlarmName": alarm_name(ENDPOINT, VERSION),
                "AlarmDescription": "tunefleet: server errors of a version on trial; an alarm "
                "rolls its canary back",
                "Namespace": "AWS/SageMaker",
                "MetricName": "Invocation5XXErrors",
                # Endpoint invocation metrics per variant: dimensions EndpointName and
                # VariantName (Monitor Amazon SageMaker AI with Amazon CloudWatch,
                # https://docs.aws.amazon.com/sagemaker/latest/dg/monitoring-cloudwatch.html).
                "Dimensions": [
                    {"Name": "EndpointName", "Value": ENDPOINT},
                    {"Name": "VariantName", "Value": VERSION},
                ],
                "Statistic": "Sum",
                "Period": 60,
                "EvaluationPeriods": 1,
                "Threshold": 0.0,
                "ComparisonOperator": "GreaterThanThreshold",
                "TreatMissingData": "notBreaching",
                "Tags": tags + rollback,
            },
            "a new version: alarm on its server errors (with options.rollback_alarms, named "
            "in its tags, the canary's alarms)",
        ),
        (
            "sagemaker",
            "CreateEndpointConfig",
            {**config, "EndpointConfigName": CONFIG, "ProductionVariants": variants},
            "a new version: the variant serving as it is (its model, instances and current "
            "weight) and the new one beside it with no traffic",
        ),
        (
            "sagemaker",
            "UpdateEndpoint",
            {
                "EndpointName": ENDPOINT,
                "EndpointConfigName": CONFIG,
                # Variants of the same name keep their instance counts and weights
                # (autoscaled counts included), whatever the new config says (UpdateEndpoint,
                # RetainAllVariantProperties; Update endpoints that use automatic scaling).
                "RetainAllVariantProperties": True,
            },
            "a new version: serve both, and wait until the endpoint is InService",
        ),
        (
            "sagemaker",
            "UpdateEndpointWeightsAndCapacities",
            {
                "EndpointName": ENDPOINT,
                "DesiredWeightsAndCapacities": [
                    {"VariantName": SERVING, "DesiredWeight": float(100 - share)},
                    {"VariantName": VERSION, "DesiredWeight": float(share)},
                ],
            },
            f"the canary: {share}% of the traffic to the new version; later all of it, or "
            "none (then the variant without traffic is removed by a new config)",
        ),
    ]


def planned(plan: Plan, values: Mapping[str, str], *, rollout: bool = False) -> dict[str, Any]:
    """The planned deploy requests (or, with ``rollout``, a new version's) by operation, with
    ``values`` in place of their placeholders.

    A plan lists the deploy's requests and then, with ``endpoint.canary``, a new version's,
    which begin with the second CreateModel. ProviderError ``plan_outdated`` when the part
    asked for is not there (a plan without a canary has no rollout; a plan made by an older
    version has no such requests)."""
    requests = plan.requests_for("deploy")
    starts = [i for i, r in enumerate(requests) if r.operation == "CreateModel"]
    boundary = starts[1] if len(starts) > 1 else len(requests)
    part = requests[boundary:] if rollout else requests[:boundary]
    needed = "CreateEndpointConfig" if rollout else "CreateEndpoint"
    if not any(r.operation == needed for r in part):
        what = "a new version's rollout (planned with endpoint.canary)" if rollout else "deploy"
        raise ProviderError(
            PROVIDER,
            f"the plan of target {plan.target!r} has no requests for {what}; run the spec "
            "again to plan it anew",
            code="plan_outdated",
        )
    return {r.operation: fill_placeholders(r.body, values) for r in part}


def derived_name(endpoint: str, *held: str) -> str:
    """The name of a model or endpoint config of ``endpoint`` holding ``held``: the endpoint's
    name and 8 hex digits of their digest (at most 49 characters of the 63 a model or config
    name may have, for an endpoint name of 40)."""
    digest = hashlib.sha256("\n".join(held).encode()).hexdigest()
    return f"{endpoint}-{digest[:8]}"


def _owned(endpoint: str) -> re.Pattern[str]:
    """The names of the models and endpoint configs tunefleet makes for ``endpoint``
    (:func:`derived_name`): only that endpoint's, since another endpoint's name differs
    before the last hyphen."""
    return re.compile(re.escape(endpoint) + r"-[0-9a-f]{8}")


def exists(describe: Callable[..., Any], what: str, **arguments: str) -> bool:
    """True when the describe call finds the resource."""
    try:
        with translated(f"describe {what}", lookup=True):
            describe(**arguments)
    except ProviderNotFoundError:
        return False
    return True


def ensure(
    create: Callable[..., Any],
    describe: Callable[..., Any],
    what: str,
    key: str,
    body: dict[str, Any],
) -> None:
    """Create a resource under a derived name unless it is there: found before created (a
    killed call's is reused). SageMaker answers a create of a name that is taken with
    ``ValidationException`` (AWS's SDK, ``Session.create_model``), a code that says nothing
    more, so a create that fails is followed by another look: found then, it is the one an
    earlier attempt made; else the create's error stands. ``key`` names the member that holds
    the name."""
    name = body[key]
    if exists(describe, what, **{key: name}):
        return
    try:
        with translated(f"create {what} {name}"):
            create(**body)
    except ProviderError:
        if exists(describe, what, **{key: name}):
            return
        raise


def ensure_model(sagemaker: Any, body: dict[str, Any]) -> None:
    """CreateModel ``body`` unless its model is there (:func:`ensure`)."""
    ensure(sagemaker.create_model, sagemaker.describe_model, "model", "ModelName", body)


def ensure_config(sagemaker: Any, body: dict[str, Any]) -> None:
    """CreateEndpointConfig ``body`` unless its config is there (:func:`ensure`)."""
    ensure(
        sagemaker.create_endpoint_config,
        sagemaker.describe_endpoint_config,
        "endpoint config",
        "EndpointConfigName",
        body,
    )


def delete(operation: Callable[..., Any], what: str, **arguments: Any) -> None:
    """Delete a resource; one that is gone already is skipped."""
    try:
        with translated(f"delete {what} {next(iter(arguments.values()))}", lookup=True):
            operation(**arguments)
    except ProviderNotFoundError:
        pass


def settled(sagemaker: Any, name: str) -> dict[str, Any]:
    """DescribeEndpoint of ``name`` once it is no longer changing; ProviderError
    ``endpoint_failed`` when it ends other than InService (Failed, OutOfService,
    UpdateRollbackFailed), TransientProviderError ``endpoint_busy`` when it still changes
    after 30 minutes. A change refused or rolled back leaves the endpoint InService as it
    was: callers compare what they asked for with what it serves."""
    deadline = time.monotonic() + ENDPOINT_WAIT_SECONDS
    delay = FIRST_POLL_SECONDS
    while True:
        with translated(f"describe endpoint {name}", lookup=True):
            described: dict[str, Any] = sagemaker.describe_endpoint(EndpointName=name)
        status = described["EndpointStatus"]
        if status not in _IN_PROGRESS:
            break
        if time.monotonic() + delay > deadline:
            raise TransientProviderError(
                PROVIDER, f"endpoint {name} is still {status}", code="endpoint_busy"
            )
        time.sleep(delay)
        delay = min(delay * 2, LAST_POLL_SECONDS)
    if status != "InService":
        raise ProviderError(
            PROVIDER,
            f"endpoint {name} is {status}: {described.get('FailureReason') or 'no reason given'}",
            code="endpoint_failed",
        )
    return described


def describe_config(sagemaker: Any, name: str) -> dict[str, Any]:
    with translated(f"describe endpoint config {name}", lookup=True):
        described: dict[str, Any] = sagemaker.describe_endpoint_config(EndpointConfigName=name)
    return described


def update(sagemaker: Any, body: dict[str, Any]) -> dict[str, Any]:
    """UpdateEndpoint as ``body`` says, once the endpoint is InService; returns the endpoint
    InService again with that config. SageMaker rolls a failed update back: "If an update
    fails, the endpoint goes back to InService state with a FailureReason about the error"
    (AWS's SageMaker controller for Kubernetes, aws-controllers-k8s/sagemaker-controller#7),
    with its previous config (hashicorp/terraform-provider-aws#48997): an endpoint InService
    with another config than the one asked for is ProviderError ``update_failed``, and
    nothing it still uses is deleted."""
    name, config = body["EndpointName"], body["EndpointConfigName"]
    with translated(f"update endpoint {name}"):
        sagemaker.update_endpoint(**body)
    described = settled(sagemaker, name)
    if described["EndpointConfigName"] != config:
        raise ProviderError(
            PROVIDER,
            f"endpoint {name} was not updated to {config}: "
            f"{described.get('FailureReason') or 'SageMaker gave no reason'}",
            code="update_failed",
        )
    return described


def _pages(operation: Any, key: str | tuple[str, ...], **arguments: Any) -> Iterator[Any]:
    """Every item of a listing, page by page (botocore's paginator)."""
    keys = (key,) if isinstance(key, str) else key
    for page in operation.paginate(**arguments):
        for name in keys:
            yield from page.get(name, [])


def scaling_targets(scaling: Any, endpoint: str) -> list[str]:
    """The resource ids of ``endpoint``'s variants that are registered scalable targets."""
    prefix = f"endpoint/{endpoint}/variant/"
    with translated(f"list scalable targets of {endpoint}"):
        return [
            target["ResourceId"]
            for target in _pages(
                scaling.get_paginator("describe_scalable_targets"),
                "ScalableTargets",
                ServiceNamespace="sagemaker",
            )
            if target["ResourceId"].startswith(prefix)
            and target["ScalableDimension"] == SCALABLE_DIMENSION
        ]


def deregister(scaling: Any, resource: str) -> None:
    """Deregister a variant as a scalable target (its policies go with it); a target that is
    not registered is skipped. Application Auto Scaling answers ObjectNotFoundException for
    it (moto: ValidationException, hence a lookup)."""
    try:
        with translated(f"stop autoscaling {resource}", lookup=True):
            scaling.deregister_scalable_target(
                ServiceNamespace="sagemaker",
                ResourceId=resource,
                ScalableDimension=SCALABLE_DIMENSION,
            )
    except ProviderNotFoundError:
        pass


def autoscale(scaling: Any, register: dict[str, Any], policy: dict[str, Any]) -> None:
    """Register a variant as a scalable target and put its policy (again: a no-op but for
    the bounds)."""
    register = dict(register)
    resource = register["ResourceId"]
    with translated(f"autoscale {resource}"):
        if scaling.describe_scalable_targets(
            ServiceNamespace="sagemaker", ResourceIds=[resource]
        ).get("ScalableTargets"):
            # Tags go on a scalable target when it is created (RegisterScalableTarget,
            # Tags); registering it again only updates its bounds.
            register.pop("Tags", None)
        scaling.register_scalable_target(**register)
        scaling.put_scaling_policy(**policy)


def version_alarms(cloudwatch: Any, endpoint: str) -> dict[str, str]:
    """The alarms tunefleet made for versions of ``endpoint``: version -> alarm name (only
    alarms of that exact name on that endpoint's and version's server errors)."""
    found = {}
    with translated(f"list the alarms of {endpoint}"):
        for alarm in _pages(
            cloudwatch.get_paginator("describe_alarms"),
            "MetricAlarms",
            AlarmNamePrefix=f"{endpoint}-",
        ):
            dimensions = {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}
            version = dimensions.get("VariantName", "")
            if (
                alarm.get("Namespace") == "AWS/SageMaker"
                and alarm.get("MetricName") == "Invocation5XXErrors"
                and dimensions.get("EndpointName") == endpoint
                and alarm["AlarmName"] == alarm_name(endpoint, version)
            ):
                found[version] = alarm["AlarmName"]
    return found


def owned_configs(sagemaker: Any, endpoint: str) -> list[str]:
    owned = _owned(endpoint)
    with translated(f"list the endpoint configs of {endpoint}"):
        return [
            c["EndpointConfigName"]
            for c in _pages(
                sagemaker.get_paginator("list_endpoint_configs"),
                "EndpointConfigs",
                NameContains=endpoint,
            )
            if owned.fullmatch(c["EndpointConfigName"])
        ]


def owned_models(sagemaker: Any, endpoint: str) -> list[str]:
    owned = _owned(endpoint)
    with translated(f"list the models of {endpoint}"):
        return [
            m["ModelName"]
            for m in _pages(sagemaker.get_paginator("list_models"), "Models", NameContains=endpoint)
            if owned.fullmatch(m["ModelName"])
        ]


def sweep(sagemaker: Any, cloudwatch: Any, endpoint: str, config: dict[str, Any]) -> None:
    """Delete what tunefleet made for ``endpoint`` that it no longer uses, now that it is
    InService with ``config`` (DescribeEndpointConfig): the other endpoint configs, the
    models none of its variants serves, the alarms of versions it no longer serves. Only
    after the endpoint stopped using them: "You must not delete an EndpointConfig in use by
    an endpoint that is live or while the UpdateEndpoint or CreateEndpoint operations are
    being performed on the endpoint" (UpdateEndpoint)."""
    variants = config["ProductionVariants"]
    for name in owned_configs(sagemaker, endpoint):
        if name != config["EndpointConfigName"]:
            delete(sagemaker.delete_endpoint_config, "endpoint config", EndpointConfigName=name)
    serving = {v["ModelName"] for v in variants}
    for name in owned_models(sagemaker, endpoint):
        if name not in serving:
            delete(sagemaker.delete_model, "model", ModelName=name)
    served = {v["VariantName"] for v in variants}
    for version, name in version_alarms(cloudwatch, endpoint).items():
        if version not in served:
            delete(cloudwatch.delete_alarms, "alarm", AlarmNames=[name])


def endpoint_ref(region: str, described: Mapping[str, Any], **scope: str) -> EndpointRef:
    name = described["EndpointName"]
    return EndpointRef(
        provider=PROVIDER,
        name=name,
        region=region,
        url=f"https://runtime.sagemaker.{region}.amazonaws.com/endpoints/{name}/invocations",
        id=described["EndpointArn"],
        scope=dict(scope),
    )


def deploy(plan: Plan, region: str, artifact: ArtifactRef, name: str) -> EndpointRef:
    """Serve ``artifact`` behind endpoint ``name`` as planned; returns once InService."""
    if not artifact.uri.startswith("s3://"):
        raise CapabilityError(PROVIDER, f"serves models in S3, not {artifact.uri}")
    sagemaker = client("sagemaker", region)
    # One model and endpoint config per model version: a new version is a new pair.
    version = derived_name(name, artifact.uri)
    requests = planned(plan, {ENDPOINT: name, MODEL: version, MODEL_DATA: artifact.uri})
    scaling = client("application-autoscaling", region)
    ensure_model(sagemaker, requests["CreateModel"])
    ensure_config(sagemaker, requests["CreateEndpointConfig"])
    try:
        current: dict[str, Any] | None = settled(sagemaker, name)
    except ProviderNotFoundError:
        current = None
    if current is None:
        with translated(f"create endpoint {name}"):
            sagemaker.create_endpoint(**requests["CreateEndpoint"])
        described = settled(sagemaker, name)
    elif current["EndpointConfigName"] != version:
        # A new version without a canary replaces the old at once (SageMaker's blue/green
        # update, all at once). SageMaker refuses an update that removes a variant with a
        # scaling policy (Update endpoints that use automatic scaling): every variant's
        # target goes first; the new variant's is registered once it is InService.
        for resource in scaling_targets(scaling, name):
            deregister(scaling, resource)
        described = update(sagemaker, {"EndpointName": name, "EndpointConfigName": version})
    else:
        described = current
    sweep(sagemaker, client("cloudwatch", region), name, describe_config(sagemaker, version))
    scope = {"config": version, "model": version}
    if "RegisterScalableTarget" in requests:
        autoscale(scaling, requests["RegisterScalableTarget"], requests["PutScalingPolicy"])
        scope["scaling"] = requests["RegisterScalableTarget"]["ResourceId"]
    return endpoint_ref(region, described, **scope)


def delete_endpoint(endpoint: EndpointRef) -> None:
    """Delete the endpoint and everything tunefleet made for it: its variants' scalable
    targets, the endpoint, its endpoint configs and models (``<endpoint>-<8 hex>``) and its
    versions' alarms. What is gone already is skipped, so a delete killed half-way is
    finished by the next: everything is found by name, not through the endpoint."""
    region = str(endpoint.region)
    name = endpoint.name
    sagemaker = client("sagemaker", region)
    scaling = client("application-autoscaling", region)
    cloudwatch = client("cloudwatch", region)
    # Application Auto Scaling deregisters an endpoint's targets when it is deleted only
    # with the permissions to ("Delete endpoints configured for automatic scaling"): do it.
    for resource in {
        *scaling_targets(scaling, name),
        *filter(None, [endpoint.scope.get("scaling")]),
    }:
        deregister(scaling, resource)
    try:
        settled(sagemaker, name)  # DeleteEndpoint refuses an endpoint that is changing
    except ProviderNotFoundError:
        pass
    except ProviderError as error:
        if error.code != "endpoint_failed":  # a failed endpoint can only be deleted
            raise
    delete(sagemaker.delete_endpoint, "endpoint", EndpointName=name)
    for config in {*owned_configs(sagemaker, name), *filter(None, [endpoint.scope.get("config")])}:
        delete(sagemaker.delete_endpoint_config, "endpoint config", EndpointConfigName=config)
    for model in {*owned_models(sagemaker, name), *filter(None, [endpoint.scope.get("model")])}:
        delete(sagemaker.delete_model, "model", ModelName=model)
    for alarm in version_alarms(cloudwatch, name).values():
        delete(cloudwatch.delete_alarms, "alarm", AlarmNames=[alarm])


def invoke(
    endpoint: EndpointRef,
    request: ChatRequest,
    variant: str | None = None,
    *,
    provider: str = PROVIDER,
) -> ChatReply:
    """Ask the endpoint through TGI's Messages API (an OpenAI chat completion); with
    ``variant``, that production variant whatever the weights (InvokeEndpoint,
    TargetVariant: "the targeted routing overrides the random traffic distribution", Test
    models in production). Errors are raised as ``provider``'s (the hyperpod provider's
    endpoints are SageMaker endpoints too)."""
    runtime = client("sagemaker-runtime", str(endpoint.region))
    target = {"TargetVariant": variant} if variant is not None else {}
    where = f"endpoint {endpoint.name}" + (f" (version {variant})" if variant else "")
    with translated(f"invoke {where}", provider=provider):
        answer = runtime.invoke_endpoint(
            EndpointName=endpoint.name,
            ContentType="application/json",
            Accept="application/json",
            Body=json.dumps(chat_body(request)).encode(),
            **target,
        )
    return chat_reply(
        provider, answer["Body"].read(), f"{where} (is its container the TGI Messages API?)"
    )


def weights(described: Mapping[str, Any]) -> dict[str, float]:
    """Each variant's weight as DescribeEndpoint reports it: CurrentWeight, else the
    DesiredWeight asked for, else 1.0 (ProductionVariant.InitialVariantWeight: "If
    unspecified, it defaults to 1.0")."""
    found: dict[str, float] = {}
    for variant in described.get("ProductionVariants", []):
        weight = variant.get("CurrentWeight", variant.get("DesiredWeight"))
        found[variant["VariantName"]] = 1.0 if weight is None else float(weight)
    return found


def rollback_alarms(tags: Iterable[Mapping[str, str]]) -> list[str]:
    """The rollback alarms named in a version alarm's tags, in order."""
    named = {
        int(tag["Key"][len(ROLLBACK_ALARM_TAG) :]): tag["Value"]
        for tag in tags
        if tag["Key"].startswith(ROLLBACK_ALARM_TAG)
        and tag["Key"][len(ROLLBACK_ALARM_TAG) :].isdigit()
    }
    return [named[index] for index in sorted(named)]

"""Serving: the spec's endpoint as SageMaker and Application Auto Scaling requests, and
the endpoints made from them.

Planned like the training job, with placeholders for what is known only at deploy time:
``${endpoint}`` (the endpoint's name), ``${model}`` (the model and endpoint config's name,
one per model version) and ``${model_data}`` (the trained model's S3 URI). Deploy creates
the model, the endpoint config and the endpoint, waiting until it is InService; a new
model version on an existing endpoint rolls out as a canary where the spec asks for one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from tunefleet.errors import CapabilityError, ProviderNotFoundError
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
    "ENDPOINT",
    "MODEL",
    "MODEL_DATA",
    "VARIANT",
    "delete_endpoint",
    "deploy",
    "endpoint_requests",
    "invoke",
    "shift_traffic",
    "unmet",
]

ENDPOINT_WAIT_SECONDS = 30 * 60
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"

ENDPOINT = "${endpoint}"
MODEL = "${model}"
MODEL_DATA = "${model_data}"
VARIANT = "primary"
DEFAULT_INVOCATIONS_PER_INSTANCE = 100
"""Invocations per instance per minute tracked when the spec names no target."""


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


def endpoint_requests(
    spec: RunSpec, region: str, options: SageMakerOptions, adapter: str, tags: list[dict[str, str]]
) -> list[tuple[str, str, dict[str, Any], str]]:
    """(service, operation, body, purpose) of each request that serves the model."""
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
    config: dict[str, Any] = {
        "EndpointConfigName": MODEL,
        "ProductionVariants": [
            {
                "VariantName": VARIANT,
                "ModelName": MODEL,
                "InstanceType": instance,
                "InitialInstanceCount": scaling.min_instances
                if scaling
                else endpoint.instance_count,
            }
        ],
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
        resource = f"endpoint/{ENDPOINT}/variant/{VARIANT}"
        requests += [
            (
                "application-autoscaling",
                "RegisterScalableTarget",
                {
                    "ServiceNamespace": "sagemaker",
                    "ResourceId": resource,
                    "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
                    "MinCapacity": scaling.min_instances,
                    "MaxCapacity": scaling.max_instances,
                    # Tagged when registered ("Use this parameter to tag the scalable target
                    # when it is created", RegisterScalableTarget); deploy registers it anew
                    # after each roll-out, so the tags stay.
                    "Tags": {tag["Key"]: tag["Value"] for tag in tags},
                },
                "let the endpoint scale between its bounds",
            ),
            (
                "application-autoscaling",
                "PutScalingPolicy",
                {
                    "PolicyName": f"{ENDPOINT}-invocations",
                    "ServiceNamespace": "sagemaker",
                    "ResourceId": resource,
                    "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
                    "PolicyType": "TargetTrackingScaling",
                    "TargetTrackingScalingPolicyConfiguration": {
                        "TargetValue": float(
                            scaling.target_invocations_per_instance
                            or DEFAULT_INVOCATIONS_PER_INSTANCE
                        ),
                        "PredefinedMetricSpecification": {
                            "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
                        },
                        "ScaleInCooldown": 300,
                        "ScaleOutCooldown": 60,
                    },
                },
                "track invocations per instance",
            ),
        ]
    if endpoint.canary is not None:
        alarms = [f"{ENDPOINT}-5xx", *options.rollback_alarms]
        bake = endpoint.canary.bake_minutes * 60
        requests += [
            (
                "cloudwatch",
                "PutMetricAlarm",
                {
                    "AlarmName": f"{ENDPOINT}-5xx",
                    "AlarmDescription": "tunefleet: roll a canary back on server errors",
                    "Namespace": "AWS/SageMaker",
                    "MetricName": "Invocation5XXErrors",
                    "Dimensions": [
                        {"Name": "EndpointName", "Value": ENDPOINT},
                        {"Name": "VariantName", "Value": VARIANT},
                    ],
                    "Statistic": "Sum",
                    "Period": 60,
                    "EvaluationPeriods": 1,
                    "Threshold": 0.0,
                    "ComparisonOperator": "GreaterThanThreshold",
                    "TreatMissingData": "notBreaching",
                    "Tags": tags,
                },
                "alarm on server errors, which rolls a canary back",
            ),
            (
                "sagemaker",
                "UpdateEndpoint",
                {
                    "EndpointName": ENDPOINT,
                    "EndpointConfigName": MODEL,
                    "DeploymentConfig": {
                        "BlueGreenUpdatePolicy": {
                            "TrafficRoutingConfiguration": {
                                "Type": "CANARY",
                                "CanarySize": {
                                    "Type": "CAPACITY_PERCENT",
                                    "Value": endpoint.canary.traffic_percent,
                                },
                                "WaitIntervalInSeconds": bake,
                            },
                            "TerminationWaitInSeconds": 300,
                            "MaximumExecutionTimeoutInSeconds": bake + 3600,
                        },
                        "AutoRollbackConfiguration": {
                            "Alarms": [{"AlarmName": name} for name in alarms]
                        },
                    },
                },
                "a new model version: canary first, the rest after the bake, rolled back on "
                "an alarm",
            ),
        ]
    return requests


def _exists(describe: Any, what: str, **arguments: str) -> bool:
    """True when the describe call finds the resource."""
    try:
        with translated(f"describe {what}", lookup=True):
            describe(**arguments)
    except ProviderNotFoundError:
        return False
    return True


def deploy(plan: Plan, region: str, artifact: ArtifactRef, name: str) -> EndpointRef:
    """Serve ``artifact`` behind endpoint ``name`` as planned; returns once InService."""
    if not artifact.uri.startswith("s3://"):
        raise CapabilityError(PROVIDER, f"serves models in S3, not {artifact.uri}")
    sagemaker = client("sagemaker", region)
    # One model and endpoint config per model version: a new version is a new pair.
    version = f"{name}-{hashlib.sha256(artifact.uri.encode()).hexdigest()[:8]}"
    values = {ENDPOINT: name, MODEL: version, MODEL_DATA: artifact.uri}
    planned = {r.operation: fill_placeholders(r.body, values) for r in plan.requests_for("deploy")}
    if "CreateEndpoint" not in planned:
        raise KeyError(f"the plan of target {plan.target!r} has no deploy requests")
    scaling = client("application-autoscaling", region)
    if not _exists(sagemaker.describe_model, "model", ModelName=version):
        with translated(f"create model {version}"):
            sagemaker.create_model(**planned["CreateModel"])
    if not _exists(sagemaker.describe_endpoint_config, "config", EndpointConfigName=version):
        with translated(f"create endpoint config {version}"):
            sagemaker.create_endpoint_config(**planned["CreateEndpointConfig"])
    try:
        with translated(f"describe endpoint {name}", lookup=True):
            current: dict[str, Any] | None = sagemaker.describe_endpoint(EndpointName=name)
    except ProviderNotFoundError:
        current = None
    with translated(f"deploy endpoint {name}"):
        if current is None:
            sagemaker.create_endpoint(**planned["CreateEndpoint"])
        elif current["EndpointConfigName"] != version:
            _roll_out(sagemaker, scaling, region, planned, name, version)
        sagemaker.get_waiter("endpoint_in_service").wait(
            EndpointName=name,
            WaiterConfig={"Delay": 15, "MaxAttempts": ENDPOINT_WAIT_SECONDS // 15},
        )
        described = sagemaker.describe_endpoint(EndpointName=name)
    scope = {"config": version, "model": version}
    if "RegisterScalableTarget" in planned:
        register = dict(planned["RegisterScalableTarget"])
        with translated(f"autoscale endpoint {name}"):
            if _registered(scaling, register["ResourceId"]):
                # Tags go on a scalable target when it is created (RegisterScalableTarget,
                # Tags); registering it again only updates its bounds.
                register.pop("Tags", None)
            scaling.register_scalable_target(**register)
            scaling.put_scaling_policy(**planned["PutScalingPolicy"])
        scope["scaling"] = planned["RegisterScalableTarget"]["ResourceId"]
    return EndpointRef(
        provider=PROVIDER,
        name=name,
        region=region,
        url=f"https://runtime.sagemaker.{region}.amazonaws.com/endpoints/{name}/invocations",
        id=described["EndpointArn"],
        scope=scope,
    )


def _registered(scaling: Any, resource: str) -> bool:
    """True when the endpoint variant ``resource`` has a scalable target."""
    return bool(
        scaling.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[resource]).get(
            "ScalableTargets"
        )
    )


def _roll_out(
    sagemaker: Any,
    scaling: Any,
    region: str,
    planned: dict[str, dict[str, Any]],
    name: str,
    version: str,
) -> None:
    """Move an existing endpoint to a new model version: as a canary when the spec
    asks (rolled back by its alarms), else all at once (SageMaker's blue/green)."""
    # SageMaker refuses to update a variant that has a scaling policy; deploy registers
    # it again once the endpoint is InService.
    resource = f"endpoint/{name}/variant/{VARIANT}"
    if _registered(scaling, resource):
        scaling.deregister_scalable_target(
            ServiceNamespace="sagemaker", ResourceId=resource, ScalableDimension=SCALABLE_DIMENSION
        )
    if "UpdateEndpoint" in planned:
        client("cloudwatch", region).put_metric_alarm(**planned["PutMetricAlarm"])
        sagemaker.update_endpoint(**planned["UpdateEndpoint"])
    else:
        sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=version)


def shift_traffic(endpoint: EndpointRef, weights: Mapping[str, int]) -> None:
    """Set the weights of the endpoint's production variants (by variant name)."""
    sagemaker = client("sagemaker", str(endpoint.region))
    with translated(f"shift traffic on {endpoint.name}"):
        sagemaker.update_endpoint_weights_and_capacities(
            EndpointName=endpoint.name,
            DesiredWeightsAndCapacities=[
                {"VariantName": variant, "DesiredWeight": float(weight)}
                for variant, weight in weights.items()
            ],
        )


def delete_endpoint(endpoint: EndpointRef) -> None:
    """Delete the scaling target, the endpoint, its config and its model; what is gone
    already is skipped."""
    sagemaker = client("sagemaker", str(endpoint.region))
    if endpoint.scope.get("scaling"):
        scaling = client("application-autoscaling", str(endpoint.region))
        try:
            # Application Auto Scaling answers ObjectNotFoundException for a target that
            # is not registered (moto: ValidationException, hence a lookup).
            with translated(f"stop autoscaling {endpoint.name}", lookup=True):
                scaling.deregister_scalable_target(
                    ServiceNamespace="sagemaker",
                    ResourceId=endpoint.scope["scaling"],
                    ScalableDimension=SCALABLE_DIMENSION,
                )
        except ProviderNotFoundError:
            pass
    for operation, argument, value in (
        (sagemaker.delete_endpoint, "EndpointName", endpoint.name),
        (sagemaker.delete_endpoint_config, "EndpointConfigName", endpoint.scope.get("config")),
        (sagemaker.delete_model, "ModelName", endpoint.scope.get("model")),
    ):
        if not value:
            continue
        try:
            with translated(f"delete {argument} {value}", lookup=True):
                operation(**{argument: value})
        except ProviderNotFoundError:
            pass  # already gone


def invoke(endpoint: EndpointRef, request: ChatRequest) -> ChatReply:
    """Ask the endpoint through TGI's Messages API (an OpenAI chat completion)."""
    runtime = client("sagemaker-runtime", str(endpoint.region))
    with translated(f"invoke endpoint {endpoint.name}"):
        answer = runtime.invoke_endpoint(
            EndpointName=endpoint.name,
            ContentType="application/json",
            Accept="application/json",
            Body=json.dumps(chat_body(request)).encode(),
        )
    return chat_reply(
        PROVIDER,
        answer["Body"].read(),
        f"endpoint {endpoint.name} (is its container the TGI Messages API?)",
    )

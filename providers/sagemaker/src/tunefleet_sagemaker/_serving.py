"""The spec's endpoint turned into SageMaker and Application Auto Scaling requests.

Planned like the training job, with placeholders for what is known only at deploy time:
``${endpoint}`` (the endpoint's name), ``${model}`` (the model and endpoint config's name,
one per model version) and ``${model_data}`` (the trained model's S3 URI).
"""

from __future__ import annotations

from typing import Any

from tunefleet.provider import Unmet
from tunefleet.spec import RunSpec
from tunefleet_sagemaker.options import SageMakerOptions

__all__ = ["ENDPOINT", "MODEL", "MODEL_DATA", "VARIANT", "endpoint_requests", "unmet"]

ENDPOINT = "${endpoint}"
MODEL = "${model}"
MODEL_DATA = "${model_data}"
VARIANT = "primary"
TGI_IMAGE = (
    "763104351884.dkr.ecr.{region}.amazonaws.com/huggingface-pytorch-tgi-inference:"
    "2.4.0-tgi2.3.1-gpu-py311-cu124-ubuntu22.04"
)
"""The Hugging Face LLM inference container (TGI) serving endpoints by default."""
DEFAULT_INVOCATIONS_PER_INSTANCE = 100
"""Invocations per instance per minute tracked when the spec names no target."""


def unmet(spec: RunSpec) -> list[Unmet]:
    """What the spec's endpoint asks that these endpoints cannot do."""
    endpoint = spec.endpoint
    if endpoint is None or endpoint.autoscaling is None:
        return []
    if endpoint.autoscaling.min_instances < 1:
        return [
            Unmet(
                requirement="endpoint.autoscaling.min_instances",
                reason="a SageMaker endpoint keeps at least one instance (scaling to zero "
                "needs inference components, which tunefleet does not create yet)",
            )
        ]
    return []


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
    model: dict[str, Any] = {
        "ModelName": MODEL,
        "ExecutionRoleArn": options.role_arn,
        "PrimaryContainer": {
            "Image": options.serving_image or TGI_IMAGE.format(region=region),
            "ModelDataUrl": MODEL_DATA,
            "Environment": {"HF_MODEL_ID": model_dir, "SM_NUM_GPUS": "1"},
        },
        "EnableNetworkIsolation": options.network_isolation,
        "Tags": tags,
    }
    if options.subnets:
        model["VpcConfig"] = {
            "SecurityGroupIds": list(options.security_group_ids),
            "Subnets": list(options.subnets),
        }
    config: dict[str, Any] = {
        "EndpointConfigName": MODEL,
        "ProductionVariants": [
            {
                "VariantName": VARIANT,
                "ModelName": MODEL,
                "InstanceType": endpoint.instance_type or options.endpoint_instance_type,
                "InitialInstanceCount": scaling.min_instances
                if scaling
                else endpoint.instance_count,
            }
        ],
        "Tags": tags,
    }
    if options.kms_key_id:
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

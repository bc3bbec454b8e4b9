"""Planning: the neutral spec turned into a CreateTrainingJob request, and what the target
lacks.

The plan shows the request with placeholders for what exists only later (``${run_key}``,
the staged datasets' S3 URIs); :func:`fill` puts the real values in at submit, so the job
created is exactly the one planned. The job's name is derived from the run key, so
finding the job a run key created is one DescribeTrainingJob.
"""

from __future__ import annotations

import json
from typing import Any

from tunefleet.kit.labels import RUN_KEY_PLACEHOLDER, run_labels
from tunefleet.kit.trainer import epochs as trainer_epochs
from tunefleet.kit.trainer import trainer_config as neutral_trainer_config
from tunefleet.kit.trainer import trainer_unmet
from tunefleet.provider import (
    CostEstimate,
    NativeRequest,
    Plan,
    PlanRequest,
    Unmet,
    fill_placeholders,
)
from tunefleet.spec import EndpointSpec, RunSpec, TargetSpec
from tunefleet_sagemaker import _serving
from tunefleet_sagemaker.options import SageMakerOptions
from tunefleet_sagemaker.pricing import PRICES

__all__ = [
    "HYPERPARAMETER",
    "RUN_KEY",
    "channel_placeholder",
    "dataset_key",
    "fill",
    "job_name",
    "plan",
    "training_request",
    "unmet",
]

RUN_KEY = RUN_KEY_PLACEHOLDER
MAX_HYPERPARAMETER = 2500
"""SageMaker's limit on one hyperparameter value (CreateTrainingJob, HyperParameters)."""
HYPERPARAMETER = "tunefleet_config"
"""The hyperparameter holding the trainer's config as a JSON string. SageMaker writes a
job's HyperParameters to :data:`HYPERPARAMETERS_FILE`; Environment values are limited to
512 characters, too few for a config."""
HYPERPARAMETERS_FILE = "/opt/ml/input/config/hyperparameters.json"
INPUT_DIR = "/opt/ml/input/data"
"""Where SageMaker mounts each channel (``<INPUT_DIR>/<channel>/``)."""
MODEL_DIR = "/opt/ml/model"
"""What SageMaker packs into model.tar.gz when the job ends."""
CHECKPOINT_DIR = "/opt/ml/checkpoints"
"""Where SageMaker syncs CheckpointConfig.S3Uri to and from."""
ENTRYPOINT = [
    "python",
    "-m",
    "tunefleet_trainer",
    "--config",
    HYPERPARAMETERS_FILE,
    "--config-key",
    HYPERPARAMETER,
]
"""The trainer, reading its config from the hyperparameter; every path is in the config,
so the trainer reads none of SageMaker's environment."""
# The trainer prints `tunefleet.metric {json}` lines; these regexes give SageMaker's console
# and CloudWatch metrics the same numbers.
_METRICS = ("train_loss", "valid_loss", "learning_rate", "train_token_accuracy")


def channel_placeholder(role: str) -> str:
    """Stands for a staged dataset's S3 URI in a planned request."""
    return f"${{{role}_uri}}"


def job_name(template: str, run_key: str) -> str:
    """The job name of ``run_key`` from the planned name template."""
    return template.replace(RUN_KEY, run_key)


def _name_template(spec: RunSpec) -> str:
    # 26 + 1 + 32 hex of the run key fits the 63 characters of a job name.
    return f"{spec.name[:26].rstrip('-')}-{RUN_KEY}"


def _key(options: SageMakerOptions, *parts: str) -> str:
    return "/".join(part.strip("/") for part in (options.prefix, *parts) if part.strip("/"))


def _s3(options: SageMakerOptions, *parts: str) -> str:
    return f"s3://{options.bucket}/{_key(options, *parts)}"


def dataset_key(options: SageMakerOptions, sha256: str) -> str:
    """The S3 key a dataset with content hash ``sha256`` is staged under."""
    return _key(options, "datasets", f"{sha256}.jsonl")


def trainer_config(spec: RunSpec, roles: list[str]) -> dict[str, Any]:
    """The trainer's config with the paths SageMaker mounts: each channel under
    :data:`INPUT_DIR`, the model dir it uploads, the checkpoint dir it syncs."""
    adapter = spec.method.adapter or "lora"
    # The serving container (TGI) loads a whole model: write the adapter merged in too.
    config = neutral_trainer_config(spec, adapter=adapter, merge=adapter != "full")
    config.update(
        {role: f"{INPUT_DIR}/{role}" for role in roles},
        output_dir=MODEL_DIR,
        checkpoint_dir=CHECKPOINT_DIR,
    )
    return config


def unmet(
    spec: RunSpec, target: TargetSpec, options: SageMakerOptions, roles: list[str]
) -> list[Unmet]:
    """What this target's options lack for the spec's requirements, each with the setting."""
    found: list[Unmet] = trainer_unmet(spec)
    policy = spec.placement
    if target.region is None:
        found.append(
            Unmet(
                requirement="region", reason="SageMaker runs in a region; set the target's region"
            )
        )
    if policy.require_private_network and not options.subnets:
        found.append(
            Unmet(
                requirement="placement.require_private_network",
                reason="no subnets given in options.subnets",
            )
        )
    if options.subnets and not options.security_group_ids:
        found.append(
            Unmet(
                requirement="options.security_group_ids",
                reason="a job in subnets needs at least one security group",
            )
        )
    if policy.require_customer_managed_key and options.kms_key_id is None:
        found.append(
            Unmet(
                requirement="placement.require_customer_managed_key",
                reason="no key given in options.kms_key_id",
            )
        )
    instance = target.compute.instance_type or options.instance_type
    if spec.method.adapter == "qlora" and instance.startswith(("ml.m", "ml.c", "ml.r", "ml.t")):
        found.append(
            Unmet(
                requirement="method.adapter",
                reason=f"qlora needs a CUDA GPU; {instance} has none",
            )
        )
    if options.network_isolation and not spec.base_model.startswith("scratch:"):
        found.append(
            Unmet(
                requirement="options.network_isolation",
                reason=f"an isolated container cannot download {spec.base_model!r} from the "
                "Hugging Face Hub, and base models from S3 are not supported yet",
            )
        )
    size = len(json.dumps(trainer_config(spec, roles)))
    if size > MAX_HYPERPARAMETER:
        found.append(
            Unmet(
                requirement="hyperparameters",
                reason=f"the trainer's config is {size} characters; a SageMaker "
                f"hyperparameter holds {MAX_HYPERPARAMETER}",
            )
        )
    return found


def training_request(
    spec: RunSpec, target: TargetSpec, options: SageMakerOptions, roles: list[str]
) -> dict[str, Any]:
    """The CreateTrainingJob body, with ``${run_key}`` and ``${<role>_uri}`` placeholders."""
    compute = target.compute
    name = _name_template(spec)
    runtime = int((compute.max_runtime_hours or options.max_runtime_hours) * 3600)
    stopping: dict[str, int] = {"MaxRuntimeInSeconds": runtime}
    if compute.spot:
        wait = options.spot_max_wait_hours
        stopping["MaxWaitTimeInSeconds"] = max(int(wait * 3600) if wait else 2 * runtime, runtime)
    resources: dict[str, Any] = {
        "InstanceType": compute.instance_type or options.instance_type,
        "InstanceCount": compute.instance_count,
        "VolumeSizeInGB": compute.volume_size_gb or options.volume_size_gb,
    }
    volume_key = options.volume_kms_key_id or options.kms_key_id
    if volume_key:
        resources["VolumeKmsKeyId"] = volume_key
    output: dict[str, Any] = {"S3OutputPath": _s3(options, "models")}
    if options.kms_key_id:
        output["KmsKeyId"] = options.kms_key_id
    body: dict[str, Any] = {
        "TrainingJobName": name,
        "AlgorithmSpecification": {
            "TrainingImage": options.training_image,
            "TrainingInputMode": "File",
            "ContainerEntrypoint": ENTRYPOINT,
            "MetricDefinitions": [
                {"Name": metric, "Regex": f'"{metric}": ?([-+0-9.eE]+|NaN)'} for metric in _METRICS
            ],
        },
        "RoleArn": options.role_arn,
        "HyperParameters": {HYPERPARAMETER: json.dumps(trainer_config(spec, roles))},
        "InputDataConfig": [
            {
                "ChannelName": role,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": channel_placeholder(role),
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "ContentType": "application/jsonl",
                "InputMode": "File",
            }
            for role in roles
        ],
        "OutputDataConfig": output,
        "ResourceConfig": resources,
        "StoppingCondition": stopping,
        "EnableNetworkIsolation": options.network_isolation,
        "EnableInterContainerTrafficEncryption": compute.instance_count > 1,
        "EnableManagedSpotTraining": compute.spot,
        # Always: the trainer resumes from here after a spot interruption or a retry.
        "CheckpointConfig": {
            "S3Uri": _s3(options, "checkpoints", name),
            "LocalPath": CHECKPOINT_DIR,
        },
        "Tags": [{"Key": key, "Value": value} for key, value in run_labels(spec).items()],
    }
    if options.subnets:
        body["VpcConfig"] = {
            "SecurityGroupIds": list(options.security_group_ids),
            "Subnets": list(options.subnets),
        }
    if options.retry_attempts:
        body["RetryStrategy"] = {"MaximumRetryAttempts": options.retry_attempts}
    return body


def fill(body: dict[str, Any], uris: dict[str, str], run_key: str) -> dict[str, Any]:
    """``body`` with the run key and the staged datasets' URIs in place of placeholders."""
    values = {channel_placeholder(role): uri for role, uri in uris.items()}
    filled = fill_placeholders(body, {**values, RUN_KEY: run_key})
    for channel in filled["InputDataConfig"]:
        uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
        if not uri.startswith("s3://"):
            raise ValueError(f"nothing staged for channel {channel['ChannelName']}")
    return filled


def _cost(
    request: PlanRequest, options: SageMakerOptions, body: dict[str, Any], epochs: int
) -> tuple[CostEstimate | None, list[str]]:
    train = request.datasets.get("train")
    resources = body["ResourceConfig"]
    tokens = None if train is None or train.billable_tokens is None else train.billable_tokens
    return PRICES.estimate(
        instance=resources["InstanceType"],
        count=resources["InstanceCount"],
        region=request.target.region or PRICES.fallback_region,
        tokens=None if tokens is None else tokens * epochs,
        spot_discount=options.spot_discount if body.get("EnableManagedSpotTraining") else None,
        price_per_hour=options.price_per_hour,
        tokens_per_second=options.tokens_per_second,
    )


def plan(provider: str, request: PlanRequest) -> Plan:
    """The uploads, the CreateTrainingJob and the deploy requests for one target, its
    instance-hour estimate, and what the options lack for the spec."""
    spec, target = request.spec, request.target
    options = request.options
    assert isinstance(options, SageMakerOptions)
    roles = ["train"] + (["validation"] if spec.dataset.validation is not None else [])
    body = training_request(spec, target, options, roles)
    requests = []
    for role in roles:
        facts = request.datasets.get(role)
        key = dataset_key(options, facts.sha256 if facts and facts.sha256 else "<sha256>")
        put: dict[str, Any] = {"Bucket": options.bucket, "Key": key}
        if options.kms_key_id:
            put.update(ServerSideEncryption="aws:kms", SSEKMSKeyId=options.kms_key_id)
        requests.append(
            NativeRequest(
                phase="stage",
                service="s3",
                operation="PutObject",
                body=put,
                purpose=f"upload the {role} dataset (skipped when the object is there)",
            )
        )
    requests.append(
        NativeRequest(
            service="sagemaker",
            operation="CreateTrainingJob",
            body=body,
            purpose="create the training job",
        )
    )
    tags = [t for t in body["Tags"] if t["Value"] != RUN_KEY]
    serving_spec = (
        spec if spec.endpoint is not None else spec.model_copy(update={"endpoint": EndpointSpec()})
    )
    for service, operation, request_body, purpose in _serving.endpoint_requests(
        serving_spec,
        target.region or PRICES.fallback_region,
        options,
        spec.method.adapter or "lora",
        tags,
    ):
        requests.append(
            NativeRequest(
                phase="deploy",
                service=service,
                operation=operation,
                body=request_body,
                purpose=f"on deploy: {purpose}",
            )
        )
    epochs, _ = trainer_epochs(spec)
    cost, notes = _cost(request, options, body, epochs)
    if not spec.base_model.startswith("scratch:") and options.subnets:
        notes.append(
            f"the job downloads {spec.base_model} from the Hugging Face Hub: the subnets "
            "need a route out (a NAT gateway)"
        )
    return Plan(
        target=target.key,
        provider=provider,
        region=target.region,
        options=options.model_dump(mode="json"),
        epochs=epochs,
        requests=requests,
        cost=cost,
        unmet=unmet(spec, target, options, roles) + _serving.unmet(spec),
        notes=notes,
    )

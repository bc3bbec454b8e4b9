"""Planning: the neutral spec turned into a CreateTrainingJob request, and what the target
lacks.

The plan shows the request with placeholders for what exists only later (``${run_key}``,
the staged datasets' S3 URIs); :func:`fill` puts the real values in at submit, so the job
created is exactly the one planned. The job's name is derived from the run key, so
finding the job a run key created is one DescribeTrainingJob.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from tunefleet.kit.labels import RUN_KEY_PLACEHOLDER, run_labels
from tunefleet.kit.trainer import epochs as trainer_epochs
from tunefleet.kit.trainer import trainer_config as neutral_trainer_config
from tunefleet.kit.trainer import trainer_unmet
from tunefleet.provider import (
    CostEstimate,
    DatasetFacts,
    NativeRequest,
    Plan,
    PlanRequest,
    Unmet,
    fill_placeholders,
)
from tunefleet.spec import EndpointSpec, EvaluationSpec, RunSpec, TargetSpec
from tunefleet_sagemaker import _limits, _serving
from tunefleet_sagemaker.options import SageMakerOptions
from tunefleet_sagemaker.pricing import PRICES, has_instance_storage

__all__ = [
    "CHANNELS",
    "HYPERPARAMETER",
    "OUTPUT_DATA_DIR",
    "RUN_KEY",
    "StagingOptions",
    "channel_placeholder",
    "dataset_key",
    "evaluation_config",
    "fill",
    "job_name",
    "limit_unmet",
    "object_tags",
    "plan",
    "training_request",
    "unmet",
    "upload_requests",
]

RUN_KEY = RUN_KEY_PLACEHOLDER
DATASET_HASH = "<sha256>"
"""Stands for a dataset's content hash in a planned upload when plan was not told it."""
HYPERPARAMETER = "tunefleet_config"
"""The hyperparameter holding the trainer's config as a JSON string. SageMaker writes a
job's HyperParameters to :data:`HYPERPARAMETERS_FILE`; Environment values are limited to
512 characters, too few for a config."""
HYPERPARAMETERS_FILE = "/opt/ml/input/config/hyperparameters.json"
INPUT_DIR = "/opt/ml/input/data"
"""Where SageMaker mounts each channel (``<INPUT_DIR>/<channel>/``)."""
CHANNELS = {"train": "train", "validation": "validation", "golden_set": "golden"}
"""The input channel of each staged dataset's role (a job has 1 to 20 channels whose names
are letters, digits, ``.``, ``-`` and ``_``, at most 64: botocore's sagemaker model, shapes
InputDataConfig and ChannelName; :mod:`._limits` checks both at plan)."""
_ROLE_NAMES = {
    "train": "train dataset",
    "validation": "validation dataset",
    "golden_set": "golden set",
}
OUTPUT_DATA_DIR = "/opt/ml/output/data"
"""What SageMaker uploads, as one gzip-compressed tar archive, when the job ends: "artifacts
you want to store other than the final model" (How Amazon SageMaker AI Processes Training
Output, https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo-output.html).
The trainer writes the golden set's answers here, so reading them never downloads the
model."""
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


class StagingOptions(Protocol):
    """What staging reads of a provider's options (SageMaker's and HyperPod's have it)."""

    @property
    def bucket(self) -> str: ...
    @property
    def prefix(self) -> str: ...
    @property
    def upload_part_mb(self) -> int | None: ...


def channel_placeholder(role: str) -> str:
    """Stands for a staged dataset's S3 URI in a planned request."""
    return f"${{{role}_uri}}"


def job_name(template: str, run_key: str) -> str:
    """The job name of ``run_key`` from the planned name template."""
    return template.replace(RUN_KEY, run_key)


def _name_template(spec: RunSpec) -> str:
    # 26 + 1 + 32 hex of the run key fits the 63 characters of a job name.
    return f"{spec.name[:26].rstrip('-')}-{RUN_KEY}"


def _key(options: StagingOptions, *parts: str) -> str:
    return "/".join(part.strip("/") for part in (options.prefix, *parts) if part.strip("/"))


def _s3(options: SageMakerOptions, *parts: str) -> str:
    return f"s3://{options.bucket}/{_key(options, *parts)}"


def dataset_key(options: StagingOptions, sha256: str) -> str:
    """The S3 key a dataset with content hash ``sha256`` is staged under."""
    return _key(options, "datasets", f"{sha256}.jsonl")


def _channel_dir(role: str) -> str:
    return f"{INPUT_DIR}/{CHANNELS[role]}"


def evaluation_config(evaluation: EvaluationSpec) -> dict[str, Any]:
    """The trainer's ``evaluation`` (tunefleet_trainer.config.EvaluationConfig): answer the
    golden set from its channel after training, greedily, with the base model's answers
    too, into :data:`OUTPUT_DATA_DIR` (uploaded as ``output.tar.gz``, apart from the
    model)."""
    config: dict[str, Any] = {"golden_set": _channel_dir("golden_set")}
    if evaluation.max_examples is not None:
        config["max_examples"] = evaluation.max_examples
    config.update(
        generation={"max_new_tokens": evaluation.max_tokens},
        baseline=True,
        predictions_dir=OUTPUT_DATA_DIR,
    )
    return config


def trainer_config(spec: RunSpec, roles: list[str]) -> dict[str, Any]:
    """The trainer's config with the paths SageMaker mounts: each channel under
    :data:`INPUT_DIR`, the model dir it uploads, the checkpoint dir it syncs, and with an
    evaluation, the golden set's channel and where the answers go."""
    adapter = spec.method.adapter or "lora"
    # The serving container (TGI) loads a whole model: write the adapter merged in too.
    config = neutral_trainer_config(spec, adapter=adapter, merge=adapter != "full")
    config.update(
        {role: _channel_dir(role) for role in roles if role != "golden_set"},
        output_dir=MODEL_DIR,
        checkpoint_dir=CHECKPOINT_DIR,
    )
    if spec.evaluation is not None and "golden_set" in roles:
        config["evaluation"] = evaluation_config(spec.evaluation)
    return config


def roles_of(spec: RunSpec) -> list[str]:
    """The datasets a job of ``spec`` reads, each through its own channel (:data:`CHANNELS`):
    the golden set too when the spec has an evaluation, which the job answers."""
    roles = ["train"]
    if spec.dataset.validation is not None:
        roles.append("validation")
    if spec.evaluation is not None:
        roles.append("golden_set")
    return roles


def _storage_unmet(
    spec: RunSpec, target: TargetSpec, options: SageMakerOptions
) -> tuple[list[Unmet], list[str]]:
    """What local NVMe instance storage means for the keys: a volume key SageMaker refuses,
    and a policy that wants the user's key on storage that cannot take one."""
    found: list[Unmet] = []
    notes: list[str] = []
    required = spec.placement.require_customer_managed_key
    accepted = options.accept_hardware_encrypted_instance_storage
    training = target.compute.instance_type or options.instance_type
    serving = (spec.endpoint and spec.endpoint.instance_type) or options.endpoint_instance_type
    hardware = (
        "is encrypted by a hardware module on the instance (XTS-AES-256) with a key that "
        "never leaves it, not with options.kms_key_id"
    )
    if has_instance_storage(training) and options.volume_kms_key_id is not None:
        # ResourceConfig.VolumeKmsKeyId: "You can't request a VolumeKmsKeyId when using an
        # instance type with local storage."
        # https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ResourceConfig.html
        found.append(
            Unmet(
                requirement="options.volume_kms_key_id",
                reason=f"{training} trains on local NVMe instance storage, for which SageMaker "
                "refuses a VolumeKmsKeyId; remove the option or choose an instance type with "
                "an EBS volume (ml.m5, ml.c5, ml.p3...)",
            )
        )
    elif has_instance_storage(training) and options.kms_key_id is not None:
        if required and not accepted:
            found.append(
                Unmet(
                    requirement="placement.require_customer_managed_key",
                    reason=f"{training} trains on local NVMe instance storage, which {hardware}"
                    "; SageMaker refuses a volume key for it. The datasets and the model in S3 "
                    "still use your key. Set "
                    "options.accept_hardware_encrypted_instance_storage: true to accept this, "
                    "or train on a type with an EBS volume (ml.m5, ml.c5, ml.p3...)",
                )
            )
        else:
            notes.append(
                f"the training instances' storage ({training}, local NVMe) {hardware}; the "
                "datasets and the model in S3 use options.kms_key_id"
            )
    if has_instance_storage(serving) and options.kms_key_id is not None:
        if required and not accepted:
            found.append(
                Unmet(
                    requirement="placement.require_customer_managed_key",
                    reason=f"endpoints serve on {serving}, whose local NVMe instance storage "
                    f"{hardware}; CreateEndpointConfig takes no key for it. Set "
                    "options.accept_hardware_encrypted_instance_storage: true to accept this, "
                    "or serve on a type with an EBS volume (options.endpoint_instance_type or "
                    "endpoint.instance_type: ml.m5, ml.c5, ml.p3...)",
                )
            )
        else:
            notes.append(
                f"an endpoint's storage ({serving}, local NVMe) {hardware}; captured data in "
                "S3 uses the key"
            )
    return found, notes


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
    # VpcConfig: Subnets and SecurityGroupIds are both required, each with at least one
    # entry (botocore's sagemaker model, shape VpcConfig; API_VpcConfig.html). One without
    # the other cannot be sent, and is never dropped silently.
    if options.subnets and not options.security_group_ids:
        found.append(
            Unmet(
                requirement="options.security_group_ids",
                reason="a job in subnets needs at least one security group",
            )
        )
    if options.security_group_ids and not options.subnets:
        found.append(
            Unmet(
                requirement="options.subnets",
                reason="security groups are given without subnets; a VpcConfig needs both "
                "(give options.subnets, or remove options.security_group_ids)",
            )
        )
    if policy.require_customer_managed_key and options.kms_key_id is None:
        found.append(
            Unmet(
                requirement="placement.require_customer_managed_key",
                reason="no key given in options.kms_key_id",
            )
        )
    found += _storage_unmet(spec, target, options)[0]
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
    return found


def training_request(
    spec: RunSpec, target: TargetSpec, options: SageMakerOptions, roles: list[str]
) -> dict[str, Any]:
    """The CreateTrainingJob body, with ``${run_key}`` and ``${<role>_uri}`` placeholders."""
    compute = target.compute
    name = _name_template(spec)
    instance = compute.instance_type or options.instance_type
    runtime = int((compute.max_runtime_hours or options.max_runtime_hours) * 3600)
    stopping: dict[str, int] = {"MaxRuntimeInSeconds": runtime}
    if compute.spot:
        # As asked: a wait shorter than the runtime is refused at plan, never lengthened.
        wait = options.spot_max_wait_hours
        stopping["MaxWaitTimeInSeconds"] = int(wait * 3600) if wait else 2 * runtime
    resources: dict[str, Any] = {
        "InstanceType": instance,
        "InstanceCount": compute.instance_count,
        "VolumeSizeInGB": compute.volume_size_gb or options.volume_size_gb,
    }
    volume_key = options.volume_kms_key_id or options.kms_key_id
    # Not for local NVMe instance storage: SageMaker refuses it there (ResourceConfig), as
    # AWS's SDK knows (pricing.has_instance_storage); plan says what that means for the key.
    if volume_key and not has_instance_storage(instance):
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
                "ChannelName": CHANNELS[role],
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
    if options.subnets and options.security_group_ids:
        body["VpcConfig"] = {
            "SecurityGroupIds": list(options.security_group_ids),
            "Subnets": list(options.subnets),
        }
    if options.retry_attempts:
        body["RetryStrategy"] = {"MaximumRetryAttempts": options.retry_attempts}
    return body


def object_tags(spec: RunSpec) -> dict[str, str]:
    """The tags of staged datasets: the placement policy's and the run's name. Not the run
    key: an object is shared by every run that stages the same content, and staging comes
    before the run key's job."""
    return {key: value for key, value in run_labels(spec).items() if value != RUN_KEY}


def upload_requests(
    spec: RunSpec,
    options: StagingOptions,
    kms_key_id: str | None,
    datasets: Mapping[str, DatasetFacts],
    roles: list[str],
) -> list[NativeRequest]:
    """The planned PutObject of each dataset ``roles`` names: its content-addressed key,
    the policy's tags, SSE-KMS with ``kms_key_id`` (the HyperPod provider stages alike)."""
    tagging = urlencode(object_tags(spec), quote_via=quote)
    requests = []
    for role in roles:
        facts = datasets.get(role)
        key = dataset_key(options, facts.sha256 if facts and facts.sha256 else DATASET_HASH)
        put: dict[str, Any] = {"Bucket": options.bucket, "Key": key, "Tagging": tagging}
        if kms_key_id:
            put.update(ServerSideEncryption="aws:kms", SSEKMSKeyId=kms_key_id)
        requests.append(
            NativeRequest(
                phase="stage",
                service="s3",
                operation="PutObject",
                body=put,
                purpose=f"upload the {_ROLE_NAMES.get(role, role)} (skipped when the object is "
                "there)",
            )
        )
    return requests


def upload_unmet(
    options: StagingOptions, datasets: Mapping[str, DatasetFacts], roles: list[str]
) -> list[Unmet]:
    """S3's multipart limits for each dataset's upload (:func:`._limits.upload_violations`),
    known at plan from its validated size: an ``upload_part_mb`` that would make more than
    10,000 parts, or a file larger than S3's largest object. The automatic part size always
    fits otherwise, and is chosen at stage (it reads boto3's defaults, which plan does not
    import)."""
    found: list[Unmet] = []
    part = options.upload_part_mb * (1 << 20) if options.upload_part_mb is not None else None
    for role in roles:
        facts = datasets.get(role)
        if facts is None or facts.size_bytes is None:
            continue
        size = facts.size_bytes
        threshold, part_bytes = (part, part) if part is not None else (size + 1, size + 1)
        for violation in _limits.upload_violations(size, threshold, part_bytes):
            found.append(
                Unmet(
                    requirement="options.upload_part_mb" if part is not None else f"dataset.{role}",
                    reason=f"the {_ROLE_NAMES.get(role, role)} ({size:,} bytes) cannot go to S3: "
                    f"{violation.path} {violation.reason}",
                )
            )
    return found


def _samples(spec: RunSpec, options: SageMakerOptions, roles: list[str]) -> dict[str, str]:
    """The longest value each placeholder of a plan can take, so a limit checked on them
    holds for every run: a run key (32 hex digits), a dataset's sha256 (64), the longest
    endpoint name tunefleet accepts (40 characters: tunefleet.names.NAME_PATTERN), the
    models and endpoint configs deploy names after it (8 hex digits more) and the longest
    version label (40 characters: tunefleet.provider.TrafficSplitting)."""
    run_key = "f" * 32
    endpoint = "e" * 40
    job = job_name(_name_template(spec), run_key)
    values = {
        RUN_KEY: run_key,
        DATASET_HASH: "f" * 64,
        _serving.ENDPOINT: endpoint,
        _serving.MODEL: f"{endpoint}-{'f' * 8}",
        _serving.MODEL_DATA: f"{_s3(options, 'models', job)}/output/model.tar.gz",
        _serving.VERSION: "v" * 40,
        _serving.CONFIG: f"{endpoint}-{'f' * 8}",
        _serving.SERVING: "s" * 40,
        _serving.SERVING_MODEL: f"{endpoint}-{'0' * 8}",
    }
    for role in roles:
        values[channel_placeholder(role)] = _s3(options, "datasets", f"{'f' * 64}.jsonl")
    return values


def limit_unmet(
    requests: list[NativeRequest], samples: dict[str, str], region: str | None
) -> list[Unmet]:
    """Each documented limit a planned request breaks (:mod:`._limits`), as an Unmet naming
    every request member it applies to."""
    paths: dict[str, list[str]] = {}
    for request in requests:
        body = fill_placeholders(request.body, samples)
        for found in _limits.violations(request.service, request.operation, body, region):
            paths.setdefault(found.reason, []).append(f"{request.operation}.{found.path}")
    return [
        Unmet(requirement=", ".join(dict.fromkeys(where)), reason=reason)
        for reason, where in paths.items()
    ]


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
    instance-hour estimate, and what the options lack for the spec (including every
    documented limit a planned request would break)."""
    spec, target = request.spec, request.target
    options = request.options
    assert isinstance(options, SageMakerOptions)
    region = target.region or PRICES.fallback_region
    roles = roles_of(spec)
    body = training_request(spec, target, options, roles)
    requests = upload_requests(spec, options, options.kms_key_id, request.datasets, roles)
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
        serving_spec, region, options, spec.method.adapter or "lora", tags
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
    notes += _storage_unmet(spec, target, options)[1]
    if spec.evaluation is not None:
        notes.append(
            "the job also answers the golden set, with the base model before training and "
            f"the trained model after it (greedy, up to {spec.evaluation.max_tokens} new "
            "tokens an answer), within MaxRuntimeInSeconds; the cost estimate leaves that "
            "time out"
        )
    found = unmet(spec, target, options, roles) + _serving.unmet(spec, options, region)
    found += limit_unmet(requests, _samples(spec, options, roles), target.region)
    found += upload_unmet(options, request.datasets, roles)
    return Plan(
        target=target.key,
        provider=provider,
        region=target.region,
        options=options.model_dump(mode="json"),
        epochs=epochs,
        requests=requests,
        cost=cost,
        unmet=found,
        notes=notes,
        # The job answers the golden set itself (the GPU is paid for already); the answers
        # come back as the predictions artifacts of output.tar.gz (see _artifacts).
        predictions="job" if spec.evaluation is not None else None,
    )

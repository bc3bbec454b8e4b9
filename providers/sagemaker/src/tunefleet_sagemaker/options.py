"""The SageMaker provider's target options (``targets[].options`` of a spec)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

__all__ = ["SageMakerOptions"]

RoleArn = Annotated[
    str, Field(pattern=r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]+$", max_length=600)
]
Bucket = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]


def _key_prefix(value: str) -> str:
    if value.startswith("/") or ".." in value.split("/"):
        raise ValueError("must not start with / or hold a .. segment")
    return value


KeyPrefix = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9!_.*'()/-]*$", max_length=256), AfterValidator(_key_prefix)
]
ImageUri = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9_.-]+(:[0-9]+)?/[A-Za-z0-9_./-]+(:[A-Za-z0-9_.-]+|@sha256:[0-9a-f]{64})$",
        max_length=512,
    ),
]
KmsKey = Annotated[
    str,
    Field(
        pattern=r"^(arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:(key|alias)/[A-Za-z0-9_/-]+"
        r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|alias/[A-Za-z0-9_/-]+)$",
        max_length=2048,
    ),
]
Subnet = Annotated[str, Field(pattern=r"^subnet-[0-9a-f]{8,17}$")]
SecurityGroup = Annotated[str, Field(pattern=r"^sg-[0-9a-f]{8,17}$")]


class SageMakerOptions(BaseModel):
    """Options of the ``sagemaker`` provider. Credentials are not options: boto3's standard
    chain supplies them (environment, shared config and SSO profiles, instance roles)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role_arn: RoleArn
    """The execution role SageMaker assumes to read the data and write the model."""
    bucket: Bucket
    """S3 bucket for datasets, checkpoints and the model; it must be in the target's region."""
    prefix: KeyPrefix = "tunefleet"
    """Key prefix inside the bucket."""
    training_image: ImageUri
    """The trainer image (deploy/trainer), pushed to ECR in the target's region."""
    upload_part_mb: int | None = Field(default=None, ge=5, le=5120)
    """Datasets of this many MiB or more go to S3 in parts of this size, 8 at once (S3 takes
    parts of 5 MiB to 5 GiB, at most 10,000 of them: a size too small for a dataset is
    refused before its upload). Default: chosen from each dataset's size, boto3's 8 MiB
    parts, larger only where 10,000 of those would not hold the file."""
    kms_key_id: KmsKey | None = None
    """Customer-managed KMS key, by key id or key ARN (plan refuses an alias, saying how to
    find the ARN): SSE-KMS of the staged datasets and the model output, the training
    volumes and the endpoints' volumes where the instance type has an EBS volume, and
    captured data (see docs/providers/sagemaker.md for what each key encrypts)."""
    volume_kms_key_id: KmsKey | None = None
    """KMS key for the training instances' EBS volumes; default ``kms_key_id``. Instance
    types with local NVMe storage (ml.g5, ml.p4d...) take none: plan refuses it there."""
    accept_hardware_encrypted_instance_storage: bool = False
    """Under ``placement.require_customer_managed_key``: accept that instance types with
    local NVMe storage (ml.g5, ml.g6, ml.p4d, ml.p5...) keep their training or serving
    storage encrypted by the instance's hardware key instead of ``kms_key_id`` (SageMaker
    takes no customer key for it; S3 data still uses the key). Plan refuses such types
    under that policy without it, and notes it when it is set."""
    subnets: list[Subnet] = Field(default_factory=list, max_length=16)
    """Private subnets the job runs in (needed when the policy requires a private network)."""
    security_group_ids: list[SecurityGroup] = Field(default_factory=list, max_length=5)
    """Security groups of the job's network interfaces."""
    network_isolation: bool = False
    """Cut the training container off from any network (the base model must then come
    from the data channels, not a hub)."""
    instance_type: str = Field(default="ml.g5.2xlarge", pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
    """Training machine when the spec's compute names none."""
    volume_size_gb: int = Field(default=100, ge=1, le=16384)
    """Disk per machine when the spec's compute names none."""
    max_runtime_hours: float = Field(default=24.0, gt=0, le=720)
    """Stop the job after this long when the spec's compute says nothing."""
    spot_max_wait_hours: float | None = Field(default=None, gt=0, le=720)
    """With spot capacity: the longest the job may take, waiting included; default twice
    the runtime."""
    retry_attempts: int = Field(default=2, ge=0, le=30)
    """Times SageMaker restarts a job that failed on an internal error (RetryStrategy)."""
    serving_image: ImageUri | None = None
    """Inference container for endpoints; default the region's Hugging Face LLM (TGI)
    container, which serves the merged model."""
    endpoint_instance_type: str = Field(
        default="ml.g5.2xlarge", pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$"
    )
    """Serving machine when the spec's endpoint names none."""
    data_capture_percent: int | None = Field(default=None, ge=1, le=100)
    """Capture this share of an endpoint's requests and answers to S3 (off when unset)."""
    data_capture_kms_key_id: KmsKey | None = None
    """KMS key for captured data, by key id or key ARN; default ``kms_key_id``."""
    rollback_alarms: list[str] = Field(default_factory=list, max_length=9)
    """CloudWatch alarms that roll a canary back, besides the server-error alarm tunefleet
    creates for the endpoint."""
    price_per_hour: float | None = Field(default=None, ge=0)
    """USD per instance-hour, replacing the price table."""
    spot_discount: float = Field(default=0.7, ge=0, lt=1)
    """Spot saving assumed for estimates (spot prices move; the actual is billed seconds)."""
    tokens_per_second: float | None = Field(default=None, gt=0)
    """Training throughput per instance assumed for estimates, replacing the table's."""

"""What a SageMaker training job costs: instance-hours at the instance type's price.

Prices are SageMaker's on-demand training prices, USD per instance-hour, as of
:data:`PRICE_DATE`, for us-east-1 and eu-west-1; other regions use the us-east-1 price
and the estimate says so. Managed spot is billed at a discount that moves with demand;
estimates assume ``options.spot_discount``. The hours of a job are estimated from the
tokens it trains on and a throughput per instance type (LoRA on a 7-8B model, bf16, the
trainer's defaults), plus start-up; both are assumptions, overridable in options, and
the job's billable seconds are the actual.
"""

from __future__ import annotations

from datetime import date

from tunefleet.kit.cost import HourlyPrices

__all__ = [
    "PRICES",
    "PRICE_DATE",
    "REGIONS",
    "STARTUP_HOURS",
    "TGI_IMAGE_ACCOUNTS",
    "TGI_IMAGE_DATE",
    "TGI_IMAGE_REPOSITORY",
    "TGI_IMAGE_SOURCE",
    "TGI_IMAGE_TAG",
    "TGI_IMAGE_VERSION",
    "has_instance_storage",
    "tgi_image",
    "throughput",
]

PRICE_DATE = date(2025, 6, 1)

REGIONS = (
    "af-south-1",
    "ap-east-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
)
"""Commercial regions where SageMaker training is offered."""

_PRICES: dict[str, dict[str, float]] = {
    "us-east-1": {
        "ml.g5.xlarge": 1.408,
        "ml.g5.2xlarge": 1.515,
        "ml.g5.4xlarge": 2.03,
        "ml.g5.12xlarge": 7.09,
        "ml.g5.48xlarge": 20.36,
        "ml.g6.xlarge": 1.006,
        "ml.g6.12xlarge": 5.752,
        "ml.p4d.24xlarge": 37.688,
        "ml.p5.48xlarge": 113.07,
        "ml.m5.xlarge": 0.23,
        "ml.m5.large": 0.115,
    },
    "eu-west-1": {
        "ml.g5.xlarge": 1.5775,
        "ml.g5.2xlarge": 1.6975,
        "ml.g5.4xlarge": 2.274,
        "ml.g5.12xlarge": 7.945,
        "ml.g5.48xlarge": 22.807,
        "ml.p4d.24xlarge": 42.209,
        "ml.m5.xlarge": 0.257,
        "ml.m5.large": 0.128,
    },
}

_TOKENS_PER_SECOND = {
    "ml.g5": 1_500.0,
    "ml.g6": 1_300.0,
    "ml.p4d": 9_000.0,
    "ml.p5": 20_000.0,
    "ml.m5": 40.0,
}
"""Training throughput per instance by family (one GPU's worth scaled by GPUs below)."""
_GPUS = {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "12xlarge": 4, "24xlarge": 8, "48xlarge": 8}

STARTUP_HOURS = 0.15
"""Provisioning, image pull and data download before the first step, per job."""


def throughput(instance_type: str) -> float | None:
    """Tokens per second one instance of ``instance_type`` is assumed to train."""
    family, _, size = instance_type.rpartition(".")
    per_gpu = _TOKENS_PER_SECOND.get(family)
    if per_gpu is None:
        return None
    return per_gpu * _GPUS.get(size, 1) if family != "ml.m5" else per_gpu


PRICES = HourlyPrices(
    price_date=PRICE_DATE,
    per_hour=_PRICES,
    fallback_region="us-east-1",
    throughput=throughput,
    startup_hours=STARTUP_HOURS,
)
"""The hourly cost model of SageMaker training jobs (see :mod:`tunefleet.kit.cost`)."""


# Instance storage -----------------------------------------------------------------------

_LOCAL_STORAGE_PREFIXES = ("g5", "g6", "p5", "trn1")
"""Families without a "d" in their name that AWS's SageMaker Python SDK knows to train and
serve on local NVMe storage (``volume_size_supported``, ``unsupported_families``)."""
_NEWER_LOCAL_STORAGE_PREFIXES = ("trn2", "p6", "g7")
"""Families in botocore's TrainingInstanceType and ProductionVariantInstanceType enums that
came after the SDK's list and whose EC2 specifications list NVMe instance store volumes
(trn2.48xlarge, p6-b200, p6-b300, p6e-gb200, g7e: "Instance store specifications",
https://docs.aws.amazon.com/ec2/latest/instancetypes/ac.html). ``g7`` is assumed to be like
``g7e``: counting it as local storage can only refuse or note a key, never send one that
SageMaker refuses."""


def has_instance_storage(instance_type: str) -> bool:
    """True when ``instance_type`` runs on local NVMe instance storage instead of an EBS ML
    volume.

    Such storage is encrypted by a hardware module on the instance with a key that never
    leaves it (XTS-AES-256, https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ssd-instance-store.html),
    and SageMaker refuses a customer key for it: "You can't request a VolumeKmsKeyId when
    using an instance type with local storage" (CreateTrainingJob, ResourceConfig
    https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ResourceConfig.html; the
    same for CreateEndpointConfig's KmsKeyId,
    https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateEndpointConfig.html).

    The rule is AWS's own SageMaker Python SDK's, which omits the key for these types
    (``instance_supports_kms`` = ``volume_size_supported`` in src/sagemaker/utils.py, used by
    Session.train and create_endpoint_config,
    https://github.com/aws/sagemaker-python-sdk/blob/master-v2/src/sagemaker/utils.py): a
    family with a "d" in its name (c5d, g4dn, p3dn, p4d, p4de, r5d, m5d, dl1...) or one
    starting with g5, g6 (g6e), p5 (p5e, p5en) or trn1 (trn1n); plus the newer families
    above.
    """
    parts = instance_type.split(".")
    if len(parts) == 3 and parts[0] == "ml":
        parts = parts[1:]
    if len(parts) != 2:
        return False
    family = parts[0]
    return "d" in family or family.startswith(
        _LOCAL_STORAGE_PREFIXES + _NEWER_LOCAL_STORAGE_PREFIXES
    )


# The serving image ----------------------------------------------------------------------

TGI_IMAGE_VERSION = "2.3.1"
"""The Hugging Face LLM inference container (TGI) version endpoints serve with by default."""
TGI_IMAGE_TAG = "2.4.0-tgi2.3.1-gpu-py311-cu124-ubuntu22.04"
"""Its tag: ``tag_prefix``, the processor, ``py_versions`` and ``container_version`` of the
version's entry, joined as the SDK's ``image_uris._format_tag`` joins them."""
TGI_IMAGE_REPOSITORY = "huggingface-pytorch-tgi-inference"
TGI_IMAGE_DATE = date(2025, 10, 22)
TGI_IMAGE_SOURCE = (
    "https://github.com/aws/sagemaker-python-sdk/blob/075b32cb39e5799d00b2adbada1f077cfb72bdc1/"
    "src/sagemaker/image_uri_config/huggingface-llm.json"
)
"""Where :data:`TGI_IMAGE_ACCOUNTS` comes from: the SDK's image table (``inference``,
``versions``, ``2.3.1``, ``registries``) as of :data:`TGI_IMAGE_DATE`."""

TGI_IMAGE_ACCOUNTS: dict[str, str] = {
    "af-south-1": "626614931356",
    "ap-east-1": "871362719292",
    "ap-east-2": "975050140332",
    "ap-northeast-1": "763104351884",
    "ap-northeast-2": "763104351884",
    "ap-northeast-3": "364406365360",
    "ap-south-1": "763104351884",
    "ap-south-2": "772153158452",
    "ap-southeast-1": "763104351884",
    "ap-southeast-2": "763104351884",
    "ap-southeast-3": "907027046896",
    "ap-southeast-4": "457447274322",
    "ap-southeast-5": "550225433462",
    "ap-southeast-6": "633930458069",
    "ap-southeast-7": "590183813437",
    "ca-central-1": "763104351884",
    "ca-west-1": "204538143572",
    "eu-central-1": "763104351884",
    "eu-central-2": "380420809688",
    "eu-north-1": "763104351884",
    "eu-south-1": "692866216735",
    "eu-south-2": "503227376785",
    "eu-west-1": "763104351884",
    "eu-west-2": "763104351884",
    "eu-west-3": "763104351884",
    "il-central-1": "780543022126",
    "me-central-1": "914824155844",
    "me-south-1": "217643126080",
    "mx-central-1": "637423239942",
    "sa-east-1": "763104351884",
    "us-east-1": "763104351884",
    "us-east-2": "763104351884",
    "us-gov-east-1": "446045086412",
    "us-gov-west-1": "442386744353",
    "us-west-1": "763104351884",
    "us-west-2": "763104351884",
}
"""The ECR registry (account) holding the TGI image in each region, for the regions whose
ECR domain is ``amazonaws.com`` (the SDK's table also lists China and isolated regions)."""


def tgi_image(region: str) -> str | None:
    """The TGI image URI in ``region``; None where the SDK's table lists none."""
    account = TGI_IMAGE_ACCOUNTS.get(region)
    if account is None:
        return None
    return f"{account}.dkr.ecr.{region}.amazonaws.com/{TGI_IMAGE_REPOSITORY}:{TGI_IMAGE_TAG}"

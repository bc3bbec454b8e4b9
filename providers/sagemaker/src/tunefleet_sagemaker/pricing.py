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

__all__ = ["PRICES", "PRICE_DATE", "REGIONS", "STARTUP_HOURS", "throughput"]

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

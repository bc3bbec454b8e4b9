"""What an Azure ML job costs: VM-hours at the VM size's price, and facts about the service.

Azure Machine Learning bills the VMs a job runs on (there is no surcharge for the service
itself: "Azure Machine Learning pricing", https://azure.microsoft.com/pricing/details/machine-learning/);
the prices are the Linux pay-as-you-go prices of the VM sizes, USD per VM-hour, as of
:data:`PRICE_DATE`, for East US and West Europe (Virtual Machines pricing,
https://azure.microsoft.com/pricing/details/virtual-machines/linux/). Another region uses
East US's and the estimate says so. Low-priority (spot) capacity is billed at a discount
that moves with demand; estimates assume ``options.low_priority_discount``. A job's hours
are estimated from the tokens it trains and a throughput per GPU (LoRA on a 7-8B model,
bf16, the trainer's defaults) plus start-up; both are assumptions, overridable in options,
and the job's run time is the actual.
"""

from __future__ import annotations

import re
from datetime import date

from tunefleet.kit.cost import HourlyPrices
from tunefleet.provider import Capabilities

__all__ = [
    "FINE_TUNING_CAPABILITIES",
    "PRICES",
    "PRICE_DATE",
    "REGIONS",
    "STARTUP_HOURS",
    "gpus",
    "throughput",
]

PRICE_DATE = date(2025, 6, 1)

REGIONS = (
    "australiaeast",
    "brazilsouth",
    "canadacentral",
    "centralindia",
    "centralus",
    "eastasia",
    "eastus",
    "eastus2",
    "francecentral",
    "germanywestcentral",
    "italynorth",
    "japaneast",
    "koreacentral",
    "northcentralus",
    "northeurope",
    "norwayeast",
    "polandcentral",
    "southafricanorth",
    "southcentralus",
    "southeastasia",
    "swedencentral",
    "switzerlandnorth",
    "uaenorth",
    "uksouth",
    "westcentralus",
    "westeurope",
    "westus",
    "westus2",
    "westus3",
)
"""Public Azure regions where Azure Machine Learning is offered ("Products available by
region", https://azure.microsoft.com/explore/global-infrastructure/products-by-region/)."""

_PRICES: dict[str, dict[str, float]] = {
    "eastus": {
        "Standard_NC4as_T4_v3": 0.526,
        "Standard_NC8as_T4_v3": 0.752,
        "Standard_NC16as_T4_v3": 1.204,
        "Standard_NC64as_T4_v3": 4.352,
        "Standard_NV36ads_A10_v5": 3.20,
        "Standard_NV72ads_A10_v5": 6.52,
        "Standard_NC24ads_A100_v4": 3.673,
        "Standard_NC48ads_A100_v4": 7.346,
        "Standard_NC96ads_A100_v4": 14.692,
        "Standard_ND96asr_v4": 27.197,
        "Standard_ND96amsr_A100_v4": 32.77,
        "Standard_NC40ads_H100_v5": 6.98,
        "Standard_NC80adis_H100_v5": 13.96,
        "Standard_ND96isr_H100_v5": 98.32,
        "Standard_DS3_v2": 0.229,
        "Standard_E4ds_v4": 0.288,
    },
    "westeurope": {
        "Standard_NC4as_T4_v3": 0.614,
        "Standard_NC8as_T4_v3": 0.878,
        "Standard_NC16as_T4_v3": 1.405,
        "Standard_NC64as_T4_v3": 5.080,
        "Standard_NV36ads_A10_v5": 3.52,
        "Standard_NC24ads_A100_v4": 4.327,
        "Standard_NC48ads_A100_v4": 8.654,
        "Standard_NC96ads_A100_v4": 17.308,
        "Standard_ND96amsr_A100_v4": 38.71,
        "Standard_DS3_v2": 0.273,
    },
}

_GPU_TOKENS_PER_SECOND = {"T4": 450.0, "A10": 1_500.0, "A100": 3_000.0, "H100": 6_000.0}
"""Training throughput of one GPU of each kind (LoRA, 7-8B model, bf16; T4 in fp16)."""
_GPUS: dict[str, tuple[str, int]] = {
    "Standard_NC4as_T4_v3": ("T4", 1),
    "Standard_NC8as_T4_v3": ("T4", 1),
    "Standard_NC16as_T4_v3": ("T4", 1),
    "Standard_NC64as_T4_v3": ("T4", 4),
    "Standard_NV36ads_A10_v5": ("A10", 1),
    "Standard_NV72ads_A10_v5": ("A10", 2),
    "Standard_NC24ads_A100_v4": ("A100", 1),
    "Standard_NC48ads_A100_v4": ("A100", 2),
    "Standard_NC96ads_A100_v4": ("A100", 4),
    "Standard_ND96asr_v4": ("A100", 8),
    "Standard_ND96amsr_A100_v4": ("A100", 8),
    "Standard_NC40ads_H100_v5": ("H100", 1),
    "Standard_NC80adis_H100_v5": ("H100", 2),
    "Standard_ND96isr_H100_v5": ("H100", 8),
}
"""The GPUs of each VM size tunefleet knows (Azure VM sizes, GPU accelerated,
https://learn.microsoft.com/azure/virtual-machines/sizes/overview#gpu-accelerated)."""
_CPU_TOKENS_PER_SECOND = 40.0

STARTUP_HOURS = 0.2
"""Provisioning a node, pulling the image and downloading the data, per job."""


def gpus(vm_size: str) -> int | None:
    """GPUs per VM of ``vm_size``: 0 for a CPU size, None when tunefleet does not know it."""
    if vm_size in _GPUS:
        return _GPUS[vm_size][1]
    # D, E and F sizes are CPU-only; an N size tunefleet does not know may have any GPUs.
    return 0 if re.match(r"^Standard_[DEF]", vm_size) else None


def throughput(vm_size: str) -> float | None:
    """Tokens per second one VM of ``vm_size`` is assumed to train."""
    if vm_size in _GPUS:
        kind, count = _GPUS[vm_size]
        return _GPU_TOKENS_PER_SECOND[kind] * count
    return _CPU_TOKENS_PER_SECOND if gpus(vm_size) == 0 else None


PRICES = HourlyPrices(
    price_date=PRICE_DATE,
    per_hour=_PRICES,
    fallback_region="eastus",
    throughput=throughput,
    startup_hours=STARTUP_HOURS,
)
"""The hourly cost model of Azure ML jobs (see :mod:`tunefleet.kit.cost`)."""


FINE_TUNING_CAPABILITIES = Capabilities(
    methods=frozenset({"supervised"}),
    regions=REGIONS,
    spot=True,
    tags=True,
)
"""What serverless fine-tuning of catalog models can do: supervised only, the service's
adapter, on machines the service chooses (no private network, no customer-managed key)."""

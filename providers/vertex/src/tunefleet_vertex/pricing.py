"""What a Vertex AI job costs: replica-hours of a custom job, training tokens of a Gemini
tuning job, and the facts about machines, regions and models the cost rests on.

**Custom jobs** bill each replica by the hour: the machine type's price plus the price of
each accelerator attached to it ("Vertex AI pricing", custom-trained models, training,
https://cloud.google.com/vertex-ai/pricing, now also published as
https://cloud.google.com/products/gemini-enterprise-agent-platform/pricing). The page lists
machine types and accelerators as separate rows, so a price key names both
(:func:`price_key`: ``n1-standard-8+NVIDIA_TESLA_T4x1``) and :data:`PRICES` adds them up.
The a2, a3 and g2 families come with their GPUs built in (:func:`accelerators`); their
machine rows are priced without the GPUs, which are accelerator rows of their own (the page
prices ``NVIDIA_H100_80GB``, which only a3 machines carry), so their keys are the machine type
alone and the price is machine + built-in GPUs. A price is known only when every part of it
is in the table: a machine whose GPU price is known but whose machine row is not has no
price, rather than a partial one.

Figures, USD per hour, on-demand, without savings plans, us-central1 (Iowa):

========================  =============  ===============================================
row                       USD per hour   as read
========================  =============  ===============================================
``n1-standard-4``         0.21849885     "Custom training n1-standard-4", quoted verbatim
                                         from the page in a transcription read 2026-10-07
                                         (api-evangelist/google-vertex-ai,
                                         plans/google-vertex-ai-plans-pricing.yml); the
                                         same figure for Iowa checked against the page
                                         2026-09-06 and 2026-09-08 in two other records
``NVIDIA_H100_80GB``      9.79655057     "Accelerator NVIDIA_H100_80GB (training)", the
                                         same transcription, 2026-10-07
========================  =============  ===============================================

The stored copies of the page could not be read past its opening, so every other row
(other n1 sizes, a2/a3/g2 machine rows, T4, L4, A100 accelerators, other regions) is left
out rather than guessed: such a replica has no price and the estimate asks for
``options.price_per_hour``. A region the table lacks uses us-central1's figures and the
estimate says so. Spot VMs (``Scheduling.strategy`` SPOT) are billed at a discount that
the page does not fix; estimates assume ``options.spot_discount``.

Hours are estimated from the tokens a job trains and an assumed throughput per GPU (LoRA
on a 7-8B model, bf16; T4 in fp16), as the Azure ML provider assumes, plus start-up; both
are assumptions, overridable in options, and the job's run time gives the actual cost.

**Gemini tuning** bills per training token (the dataset's tokens x the epochs; "Generative
AI on Vertex AI pricing", https://cloud.google.com/vertex-ai/generative-ai/pricing). The
per-family figures could not be read from the stored pages, so :data:`TUNING_PRICES` lists
none: a tuning estimate has no amount until ``options.tuning_price_per_million_tokens``
sets one, and the finished job's trained tokens give the actual cost at that price. When a
spec sets no epochs the service picks them: "Vertex AI automatically adjusts the default
value to your training dataset size. This value is based on benchmarking results" (Tuning
API, ``epoch_count``,
https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/tuning, read
2026-12-02). The rule itself is unpublished; :data:`ASSUMED_TUNING_EPOCHS` stands in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from tunefleet.kit.cost import HourlyPrices, TokenPrices

__all__ = [
    "ASSUMED_TUNING_EPOCHS",
    "FALLBACK_REGION",
    "PRICES",
    "PRICE_DATE",
    "REGIONS",
    "STARTUP_HOURS",
    "TUNING_MODELS",
    "TUNING_PRICES",
    "TUNING_PRICE_DATE",
    "TUNING_REGIONS",
    "accelerators",
    "gpus",
    "model_family",
    "price_key",
    "throughput",
]

PRICE_DATE = date(2026, 10, 7)
"""When the custom-training figures of :data:`PRICES` were read off the Vertex AI pricing
page (https://cloud.google.com/vertex-ai/pricing)."""

TUNING_PRICE_DATE = date(2026, 12, 2)
"""When https://cloud.google.com/vertex-ai/generative-ai/pricing was looked up for
:data:`TUNING_PRICES` (no figure could be read; see the module's docstring)."""

FALLBACK_REGION = "us-central1"

REGIONS = (
    "us-central1",
    "us-east1",
    "us-east4",
    "us-east5",
    "us-south1",
    "us-west1",
    "us-west2",
    "us-west3",
    "us-west4",
    "northamerica-northeast1",
    "northamerica-northeast2",
    "southamerica-east1",
    "southamerica-west1",
    "europe-central2",
    "europe-north1",
    "europe-southwest1",
    "europe-west1",
    "europe-west2",
    "europe-west3",
    "europe-west4",
    "europe-west6",
    "europe-west8",
    "europe-west9",
    "europe-west12",
    "me-central1",
    "me-central2",
    "me-west1",
    "asia-east1",
    "asia-east2",
    "asia-northeast1",
    "asia-northeast2",
    "asia-northeast3",
    "asia-south1",
    "asia-southeast1",
    "asia-southeast2",
    "australia-southeast1",
    "australia-southeast2",
    "africa-south1",
)
"""Regions where Vertex AI runs custom training jobs ("Vertex AI locations",
https://cloud.google.com/vertex-ai/docs/general/locations). The United States, Canada and
South America lists were read 2026-12-02; the stored copy broke off before the Europe, Asia
Pacific, Middle East and Africa lists, which are the page's as recorded in 2025 (not
re-read here). A region Vertex does not offer is refused at plan; one offered but missing
here is refused too, so keep the list current."""

TUNING_REGIONS = (
    "us-central1",
    "us-east1",
    "us-east4",
    "us-east5",
    "us-south1",
    "us-west1",
    "us-west4",
    "europe-central2",
    "europe-north1",
    "europe-southwest1",
    "europe-west1",
    "europe-west4",
    "europe-west8",
    "europe-west9",
    "asia-east1",
    "asia-east2",
    "asia-northeast1",
    "asia-northeast3",
    "asia-south1",
    "asia-southeast1",
    "australia-southeast1",
)
"""Regions a Gemini supervised tuning job may run in ("Supported tuning job regions",
https://cloud.google.com/vertex-ai/generative-ai/docs/models/gemini-supervised-tuning-region-settings:
the Asia entries read 2026-12-02; the stored list broke off after asia-south1, so the
United States and Europe entries are the page's as recorded in 2025, not re-read here)."""

# --- Machines and their GPUs ---------------------------------------------------------------

_BUILT_IN: dict[str, tuple[str, int]] = {
    **{f"a2-highgpu-{n}g": ("NVIDIA_TESLA_A100", n) for n in (1, 2, 4, 8)},
    "a2-megagpu-16g": ("NVIDIA_TESLA_A100", 16),
    **{f"a2-ultragpu-{n}g": ("NVIDIA_A100_80GB", n) for n in (1, 2, 4, 8)},
    **{f"a3-highgpu-{n}g": ("NVIDIA_H100_80GB", n) for n in (1, 2, 4, 8)},
    "a3-megagpu-8g": ("NVIDIA_H100_MEGA_80GB", 8),
    "a3-ultragpu-8g": ("NVIDIA_H200_141GB", 8),
    **{f"g2-standard-{n}": ("NVIDIA_L4", 1) for n in (4, 8, 12, 16, 32)},
    "g2-standard-24": ("NVIDIA_L4", 2),
    "g2-standard-48": ("NVIDIA_L4", 4),
    "g2-standard-96": ("NVIDIA_L4", 8),
}
"""The GPUs built into accelerator-optimized machine types, as Compute Engine's "GPU machine
types" (https://cloud.google.com/compute/docs/gpus) lists them, named by the Vertex API's
``AcceleratorType`` enum (A100 40GB: NVIDIA_TESLA_A100, A100 80GB: NVIDIA_A100_80GB, H100:
NVIDIA_H100_80GB, H100 Mega: NVIDIA_H100_MEGA_80GB, L4: NVIDIA_L4)."""

_GPU_FAMILIES = ("a2", "a3", "a4", "g2", "g4")
"""Accelerator-optimized machine families: their GPUs are built in."""
_CPU_FAMILIES = ("n1", "n2", "n2d", "e2", "c2", "c2d", "m1")
"""Machine families that run without accelerators (n1 takes them as an add-on)."""

_GPU_TOKENS_PER_SECOND = {
    "NVIDIA_TESLA_T4": 450.0,
    "NVIDIA_L4": 900.0,
    "NVIDIA_TESLA_A100": 3_000.0,
    "NVIDIA_A100_80GB": 3_000.0,
    "NVIDIA_H100_80GB": 6_000.0,
    "NVIDIA_H100_MEGA_80GB": 6_000.0,
}
"""Assumed training tokens/s of one GPU (LoRA on a 7-8B model, bf16; T4 in fp16): the
figures of the Azure ML provider, L4 about twice a T4."""
_CPU_TOKENS_PER_SECOND = 40.0

STARTUP_HOURS = 0.25
"""Provisioning the replicas, pulling the trainer image and downloading the data, per job."""

_KEY = re.compile(r"^(?P<machine>[a-z][a-z0-9-]*)(?:\+(?P<type>[A-Z0-9_]+)x(?P<count>[0-9]+))?$")


def _family(machine_type: str) -> str:
    return machine_type.split("-", 1)[0]


def accelerators(
    machine_type: str, accelerator_type: str | None, accelerator_count: int | None
) -> tuple[str | None, int]:
    """The accelerator type and count of one replica of ``machine_type``.

    Machines with GPUs built in (a2, a3, g2) carry their own: an explicit type or count that
    differs is a ValueError saying what the machine carries. n1 machines carry what is given
    (a count without a type is refused; a type without a count means one). Other CPU machines
    take no accelerators. A family tunefleet does not know keeps what is given."""
    if machine_type in _BUILT_IN:
        built_type, built_count = _BUILT_IN[machine_type]
        if accelerator_type is not None and accelerator_type != built_type:
            raise ValueError(
                f"{machine_type} has {built_count} x {built_type} built in; it cannot "
                f"take {accelerator_type}"
            )
        if accelerator_count is not None and accelerator_count != built_count:
            raise ValueError(
                f"{machine_type} has {built_count} x {built_type} built in, not {accelerator_count}"
            )
        return built_type, built_count
    family = _family(machine_type)
    if family in _GPU_FAMILIES:
        # Refused rather than planned as a CPU machine (no GPU, one process).
        known = sorted(m for m in _BUILT_IN if _family(m) == family)
        raise ValueError(
            f"tunefleet does not know the GPUs of {machine_type}; choose a machine type it "
            f"knows ({', '.join(known) if known else 'none of that family yet'})"
        )
    if accelerator_type is None:
        if accelerator_count:
            raise ValueError("accelerator_count needs accelerator_type")
        return None, 0
    if family in _CPU_FAMILIES and family != "n1":
        raise ValueError(f"{machine_type} takes no accelerators (only n1 machines take them)")
    return accelerator_type, accelerator_count or 1


def gpus(
    machine_type: str, accelerator_type: str | None = None, accelerator_count: int | None = None
) -> int | None:
    """GPUs per replica: 0 for a CPU machine, None for a machine family tunefleet does not
    know (or one whose GPUs it does not know)."""
    if machine_type in _BUILT_IN:
        return accelerators(machine_type, accelerator_type, accelerator_count)[1]
    if _family(machine_type) not in _CPU_FAMILIES:
        return None
    return accelerators(machine_type, accelerator_type, accelerator_count)[1]


def price_key(
    machine_type: str, accelerator_type: str | None = None, accelerator_count: int | None = None
) -> str:
    """The :data:`PRICES` key of one replica: the machine type for a machine with GPUs built
    in or none at all (``g2-standard-12``, ``n1-standard-4``), the machine type and its
    add-on GPUs otherwise (``n1-standard-8+NVIDIA_TESLA_T4x1``)."""
    kind, count = accelerators(machine_type, accelerator_type, accelerator_count)
    if kind is None or machine_type in _BUILT_IN:
        return machine_type
    return f"{machine_type}+{kind}x{count}"


def _parts(key: str) -> tuple[str, str | None, int] | None:
    """The machine type, accelerator type and count a price key stands for."""
    match = _KEY.match(key)
    if match is None:
        return None
    machine = match["machine"]
    if match["type"] is not None:
        return machine, match["type"], int(match["count"])
    kind, count = _BUILT_IN.get(machine, (None, 0))
    return machine, kind, count


def throughput(key: str) -> float | None:
    """Training tokens per second one replica of ``key`` (a :func:`price_key`, or a machine
    type) is assumed to reach; None for a machine or GPU tunefleet does not know."""
    parts = _parts(key)
    if parts is None:
        return None
    machine, kind, count = parts
    if kind is None:
        return _CPU_TOKENS_PER_SECOND if _family(machine) in _CPU_FAMILIES else None
    per_gpu = _GPU_TOKENS_PER_SECOND.get(kind)
    return per_gpu * count if per_gpu is not None else None


# --- Replica-hour prices -------------------------------------------------------------------

_PRICES: dict[str, dict[str, float]] = {
    "us-central1": {
        "n1-standard-4": 0.21849885,
        "NVIDIA_H100_80GB": 9.79655057,
    },
}
"""USD per hour: region -> machine type or accelerator type -> price (see the module's
docstring for where each figure was read)."""


@dataclass(frozen=True)
class _ReplicaPrices(HourlyPrices):
    """Hourly prices whose keys are :func:`price_key` keys: machine + accelerators."""

    def _sum(self, key: str, region: str) -> float | None:
        parts = _parts(key)
        if parts is None:
            return None
        machine, kind, count = parts
        table = self.per_hour.get(region, {})
        if machine not in table or (kind is not None and kind not in table):
            return None
        return table[machine] + (table[kind] * count if kind is not None else 0.0)

    def price(self, instance: str, region: str) -> tuple[float, str] | None:
        """USD per hour of one replica of ``instance`` (a :func:`price_key`) in ``region``,
        machine and accelerators together, and where the figures come from; None unless
        every part is priced in the region or in the fallback region."""
        here = self._sum(instance, region)
        if here is not None:
            return here, region
        fallback = self._sum(instance, self.fallback_region)
        if fallback is not None:
            return fallback, f"{self.fallback_region} (no price for the region)"
        return None


PRICES: HourlyPrices = _ReplicaPrices(
    price_date=PRICE_DATE,
    per_hour=_PRICES,
    fallback_region=FALLBACK_REGION,
    throughput=throughput,
    startup_hours=STARTUP_HOURS,
)
"""The hourly cost model of custom jobs (see :mod:`tunefleet.kit.cost`), keyed by
:func:`price_key`."""


# --- Gemini tuning -------------------------------------------------------------------------

TUNING_MODELS = frozenset(
    {
        "gemini-2.5-pro",
        "gemini-2.5-flash",
        "gemini-2.5-flash-lite",
        "gemini-2.0-flash-001",
        "gemini-2.0-flash-lite-001",
    }
)
"""Gemini base models that support supervised fine-tuning ("About supervised fine-tuning
for Gemini models",
https://cloud.google.com/vertex-ai/generative-ai/docs/models/gemini-supervised-tuning, and
the Tuning API reference, read 2026-12-02: Gemini 2.5 Pro, 2.5 Flash, 2.5 Flash-Lite, 2.0
Flash, 2.0 Flash-Lite; ``gemini-2.0-flash-001`` is the id Google's tuning samples pass). The
newer reference also lists Gemini 3.5 Flash, 3.5 Flash-Lite and 3.1 Flash-Lite by name; their
model ids were not read and are left out."""

_FAMILIES = (
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "gemini-2.0-flash",
    "gemini-2.0-flash-lite",
)

TUNING_PRICE_PER_MILLION: dict[str, float] = {}
"""USD per million training tokens, by family: none could be read (see the module's
docstring); ``options.tuning_price_per_million_tokens`` supplies the figure."""

ASSUMED_TUNING_EPOCHS = 3
"""Epochs assumed when a spec sets none: Vertex picks them by dataset size with a rule it
does not publish, so this is an assumption, not the service's figure."""


def model_family(model: str) -> str | None:
    """The tuning family of ``model``: ``gemini-2.5-flash``, ``gemini-2.5-flash-001`` and
    ``publishers/google/models/gemini-2.5-flash`` are all ``gemini-2.5-flash``; None for a
    model that is not a Gemini family tunefleet knows."""
    name = model.rsplit("/", 1)[-1]
    # Longest names first, so `gemini-2.5-flash-lite` is not taken for `gemini-2.5-flash`.
    for family in sorted(_FAMILIES, key=len, reverse=True):
        if name == family or name.startswith(family + "-"):
            return family
    return None


@dataclass(frozen=True)
class _TuningPrices(TokenPrices):
    """A token price list in which a known family may have no published price yet."""

    def price(self, model: str, override: float | None = None) -> float | None:
        if override is not None:
            return override
        family = self.family(model)
        return self.per_million.get(family) if family is not None else None


TUNING_PRICES: TokenPrices = _TuningPrices(
    price_date=TUNING_PRICE_DATE,
    per_million=TUNING_PRICE_PER_MILLION,
    family=model_family,
    default_epochs=lambda _examples: ASSUMED_TUNING_EPOCHS,
)
"""Gemini supervised tuning: USD per million training tokens by family, and the epochs
assumed when a spec sets none."""

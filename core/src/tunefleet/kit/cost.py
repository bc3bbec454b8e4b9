"""Cost models providers share: by the instance-hour and by the token.

**Hourly** (trainer-image backends: SageMaker, Azure ML, Vertex custom jobs, HyperPod):
instance-hours = start-up + tokens / (assumed throughput x instances), at a dated price
table's price for the instance type in the region (or the price the options give), less an
assumed spot discount. Every assumption is written into the estimate's basis; the job's
billable seconds give the actual cost when it ends.

**Per token** (hosted APIs): the dataset's billable tokens x the epochs x the dated price
per million tokens of the model's family; when a spec sets no epochs, the service's own
default-epochs rule (see :func:`scaled_epochs`). The tokens the job really trained on give
the actual cost.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

from tunefleet.provider import CostEstimate, TrainingEstimate

if TYPE_CHECKING:  # made only once a job's cost is known; plans make none
    from tunefleet.events import CostEvent

__all__ = [
    "HourlyPrices",
    "TokenPrices",
    "hourly_cost_event",
    "scaled_epochs",
    "token_cost_event",
    "training_estimate",
]


def training_estimate(
    provider: str,
    billable_tokens: int,
    epochs: int | None,
    default_epochs: int,
    basis: str,
    amount: float | None = None,
) -> TrainingEstimate:
    """The epochs (``epochs``, else ``default_epochs``) and tokens a run trains on, for a
    provider that does not charge per token: ``basis`` says how it charges instead, and
    ``amount`` is the price where it is known regardless of tokens (0 on this machine)."""
    chosen = epochs or default_epochs
    return TrainingEstimate(
        provider=provider,
        epochs=chosen,
        epochs_source="spec" if epochs else "provider default",
        trained_tokens=billable_tokens * chosen,
        amount=amount,
        basis=basis,
    )


def scaled_epochs(
    examples: int,
    *,
    target: int = 3,
    least_seen: int = 100,
    most_seen: int = 25_000,
    most_epochs: int = 25,
) -> int:
    """Epochs a service picks by itself: ``target``, raised so a small file is seen at least
    ``least_seen`` times in all (at most ``most_epochs``), lowered so a large one is not
    trained on more than ``most_seen`` examples in all (at least 1). OpenAI documents this
    rule with the defaults here (``n_epochs: auto``)."""
    if examples * target < least_seen:
        return min(most_epochs, least_seen // max(examples, 1))
    if examples * target > most_seen:
        return max(1, most_seen // examples)
    return target


@dataclass(frozen=True)
class TokenPrices:
    """A dated price list per million training tokens, by model family."""

    price_date: date
    per_million: Mapping[str, float]
    """USD per million training tokens, by family."""
    family: Callable[[str], str | None]
    """The family of a model id (None: unknown model)."""
    default_epochs: Callable[[int], int]
    """The epochs the service picks for so many examples when a spec sets none."""

    def price(self, model: str, override: float | None = None) -> float | None:
        """USD per million training tokens of ``model``: ``override``, else the list's."""
        if override is not None:
            return override
        family = self.family(model)
        return self.per_million[family] if family is not None else None

    def estimate(
        self,
        provider: str,
        model: str,
        examples: int,
        billable_tokens: int,
        epochs: int | None,
        override: float | None = None,
    ) -> TrainingEstimate:
        """Epochs, tokens trained and their price for ``model`` (no amount when unpriced)."""
        chosen = epochs or self.default_epochs(examples)
        trained = billable_tokens * chosen
        price = self.price(model, override)
        source: dict[str, str | int | float] = {
            "provider": provider,
            "epochs": chosen,
            "epochs_source": "spec" if epochs else "provider default",
            "trained_tokens": trained,
        }
        if price is None:
            return TrainingEstimate.model_validate(
                {
                    **source,
                    "basis": f"no training price known for {model!r}; set "
                    "options.training_price_per_million_tokens",
                }
            )
        return TrainingEstimate.model_validate(
            {
                **source,
                "amount": trained * price / 1e6,
                "basis": f"{billable_tokens:,} tokens x {chosen} epochs x ${price:.2f}/M tokens",
            }
        )

    def cost(self, estimate: TrainingEstimate, overridden: bool) -> CostEstimate | None:
        """A plan's cost from an estimate with an amount (None without one)."""
        if estimate.amount is None:
            return None
        return CostEstimate(
            amount=estimate.amount,
            basis=estimate.basis + (" (price from options)" if overridden else ""),
            price_date=None if overridden else self.price_date,
        )


def token_cost_event(tokens: int, price_per_million: float, time: datetime) -> CostEvent:
    """The actual cost of a finished job that trained on ``tokens`` tokens."""
    from tunefleet.events import CostEvent

    return CostEvent(
        id="cost-final",
        time=time,
        amount=tokens * price_per_million / 1e6,
        basis=f"{tokens:,} tokens trained x ${price_per_million:.2f}/M tokens",
    )


@dataclass(frozen=True)
class HourlyPrices:
    """A dated table of on-demand prices per instance-hour, and assumed training speeds."""

    price_date: date
    per_hour: Mapping[str, Mapping[str, float]]
    """USD per instance-hour: region -> instance type -> price."""
    fallback_region: str
    """Whose prices stand in for a region the table lacks (the estimate says so)."""
    throughput: Callable[[str], float | None]
    """Tokens per second one instance of a type is assumed to train (None: unknown)."""
    startup_hours: float
    """Provisioning, image pull and data download before the first step, per job."""

    def price(self, instance: str, region: str) -> tuple[float, str] | None:
        """USD per hour of ``instance`` in ``region``, and where the figure comes from."""
        if instance in self.per_hour.get(region, {}):
            return self.per_hour[region][instance], region
        if instance in self.per_hour.get(self.fallback_region, {}):
            fallback = self.per_hour[self.fallback_region][instance]
            return fallback, f"{self.fallback_region} (no price for the region)"
        return None

    def estimate(
        self,
        *,
        instance: str,
        count: int,
        region: str,
        tokens: int | None,
        spot_discount: float | None = None,
        price_per_hour: float | None = None,
        tokens_per_second: float | None = None,
    ) -> tuple[CostEstimate | None, list[str]]:
        """What training ``tokens`` tokens (all epochs) costs on ``count`` x ``instance``,
        with a note instead when a price or a speed is unknown. ``spot_discount`` is the
        share assumed off with spot capacity; ``price_per_hour`` and ``tokens_per_second``
        replace the tables' figures (the options' overrides)."""
        priced = (
            (price_per_hour, "options")
            if price_per_hour is not None
            else self.price(instance, region)
        )
        speed = tokens_per_second or self.throughput(instance)
        if priced is None or speed is None or tokens is None:
            return None, [
                f"no price or throughput known for {instance}; set options.price_per_hour "
                "and options.tokens_per_second"
            ]
        price, source = priced
        if spot_discount is not None:
            price *= 1 - spot_discount
        hours = self.startup_hours + tokens / (speed * count) / 3600
        spot = f" (spot, assumed {spot_discount:.0%} off)" if spot_discount is not None else ""
        basis = (
            f"{hours:.2f} h x {count} x {instance} at ${price:.3f}/h{spot}; {tokens:,} tokens "
            f"at an assumed {speed:,.0f} tokens/s per instance; price from {source}"
        )
        price_date = None if price_per_hour is not None else self.price_date
        return CostEstimate(amount=hours * count * price, basis=basis, price_date=price_date), []

    def actual(
        self,
        *,
        seconds: int,
        count: int,
        instance: str,
        region: str,
        price_per_hour: float | None,
        time: datetime,
    ) -> CostEvent | None:
        """The cost event of a finished job billed ``seconds`` per instance (None when the
        instance has no known price)."""
        priced = price_per_hour if price_per_hour is not None else self.price(instance, region)
        if priced is None:
            return None
        price = priced if isinstance(priced, float | int) else priced[0]
        return hourly_cost_event(seconds=seconds, count=count, price_per_hour=price, time=time)

    def job_cost(
        self, *, seconds: int | None, scope: Mapping[str, str], region: str, time: datetime
    ) -> CostEvent | None:
        """The cost event of a finished job from what its ref's ``scope`` recorded at submit
        (``instance_type``, ``instance_count``, ``price_per_hour`` when the options
        overrode the table); None without billed seconds or a known instance type."""
        instance = scope.get("instance_type")
        if seconds is None or not instance:
            return None
        override = scope.get("price_per_hour")
        return self.actual(
            seconds=seconds,
            count=int(scope.get("instance_count", "1")),
            instance=instance,
            region=region,
            price_per_hour=float(override) if override else None,
            time=time,
        )


def hourly_cost_event(
    *, seconds: int, count: int, price_per_hour: float, time: datetime
) -> CostEvent:
    """The actual cost of ``count`` instances billed ``seconds`` each."""
    from tunefleet.events import CostEvent

    return CostEvent(
        id="cost-final",
        time=time,
        amount=seconds / 3600 * price_per_hour * count,
        basis=f"{seconds:,} billable seconds x {count} x ${price_per_hour:.3f}/h",
    )

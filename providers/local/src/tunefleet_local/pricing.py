"""What training on this machine costs: nothing. The estimate still says how many epochs
and tokens a run trains on, because `tunefleet data validate --provider local` shows them."""

from __future__ import annotations

from tunefleet.kit.cost import training_estimate
from tunefleet.kit.trainer import DEFAULT_EPOCHS
from tunefleet.provider import CostEstimate, TrainingEstimate

__all__ = ["BASIS", "plan_cost", "training"]

BASIS = "runs on this machine: no charge"


def training(provider: str, billable_tokens: int, epochs: int | None) -> TrainingEstimate:
    """Epochs (``epochs``, else the trainer's default) and tokens trained, at no charge."""
    return training_estimate(
        provider, billable_tokens, epochs, DEFAULT_EPOCHS, basis=BASIS, amount=0.0
    )


def plan_cost() -> CostEstimate:
    """A local plan's cost: 0, whatever the data (no dataset facts are needed)."""
    return CostEstimate(amount=0.0, basis=BASIS)

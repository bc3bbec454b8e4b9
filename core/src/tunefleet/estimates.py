"""What training a dataset would take on a provider, as a provider estimates it.

Part of the provider contract (:class:`tunefleet.provider.Estimating` returns it, and
:mod:`tunefleet.provider` exports it), kept in a module of its own because a dataset's
report carries one: `tunefleet data validate` then loads this model, not the contract's
spec and plan models (a small file's validation executed 1,733 million instructions with
them and 1,486 million without, and the workers wait for that start-up).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["TrainingEstimate"]


class TrainingEstimate(BaseModel):
    """What training a dataset would take on a provider: epochs, tokens and price."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str
    epochs: int = Field(ge=1)
    epochs_source: Literal["spec", "provider default"]
    trained_tokens: int = Field(ge=0)
    """Billable tokens per epoch x epochs."""
    amount: float | None = Field(default=None, ge=0)
    """Estimated price, where the service charges per token; None otherwise."""
    currency: str = "USD"
    basis: str
    """The arithmetic in words, or why there is no amount."""

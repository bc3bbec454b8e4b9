"""The result of validating one dataset file: findings, statistics, cost inputs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tunefleet.data.findings import Severity

__all__ = ["DatasetReport", "Distribution", "FindingOut", "TrainingEstimate"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FindingOut(_Model):
    """One finding as reported: its stable code, short name, severity, line and detail."""

    code: str
    name: str
    severity: Severity
    line: int
    detail: str


class Distribution(_Model):
    """Summary of one per-example quantity over the valid examples."""

    min: int
    max: int
    mean: float
    median: float
    p5: int
    p95: int

    @classmethod
    def of(cls, values: Sequence[int]) -> Distribution | None:
        """The distribution of ``values``, or None for no values."""
        if not values:
            return None
        ordered = sorted(values)
        n = len(ordered)
        middle = n // 2
        median = ordered[middle] if n % 2 else (ordered[middle - 1] + ordered[middle]) / 2
        return cls(
            min=ordered[0],
            max=ordered[-1],
            mean=round(sum(ordered) / n, 2),
            median=median,
            p5=ordered[max(0, math.ceil(0.05 * n) - 1)],  # nearest-rank percentiles
            p95=ordered[max(0, math.ceil(0.95 * n) - 1)],
        )


class TrainingEstimate(_Model):
    """Tokens a provider will train on, and what that costs, under its default-epochs rule."""

    provider: str
    epochs: int
    epochs_source: Literal["spec", "provider default"]
    trained_tokens: int
    amount: float | None = None
    currency: str = "USD"
    basis: str
    """The arithmetic in words, or why there is no token-priced estimate."""


class DatasetReport(_Model):
    """Everything `tunefleet data validate` learnt about one file."""

    path: str
    format: Literal["chat", "preference"]
    size_bytes: int
    sha256: str
    lines: int
    examples: int
    """Examples without errors; statistics cover these."""
    invalid_examples: int
    errors: int
    warnings: int
    counts: dict[str, int]
    """Findings per code, always complete."""
    findings: list[FindingOut]
    """Findings in line order, at most ``max_per_code`` of each code."""
    findings_omitted: int
    encoding: str
    tokens_exact: bool
    """False when the model is unknown to tiktoken and cl100k_base stood in."""
    context_limit: int
    context_limit_source: str
    messages_per_example: Distribution | None
    tokens_per_example: Distribution | None
    assistant_tokens_per_example: Distribution | None
    total_tokens: int
    billable_tokens: int
    """Tokens trained on per epoch: each example capped at the context limit."""
    examples_over_limit: int
    missing_system: int
    missing_user: int
    duplicates: int
    training: TrainingEstimate | None = None
    elapsed_seconds: float = Field(ge=0)

    @property
    def valid(self) -> bool:
        """True when no error was found (warnings allowed)."""
        return self.errors == 0

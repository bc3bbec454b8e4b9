"""The result of validating one dataset file: findings, statistics, cost inputs."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tunefleet.data.findings import Severity
from tunefleet.estimates import TrainingEstimate

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
    def of(cls, histogram: Mapping[int, int]) -> Distribution | None:
        """The distribution described by ``histogram`` (value -> how many examples had it).

        Percentiles are nearest-rank, the median the mean of the two middle values for an
        even count: exactly what sorting every value would give.
        """
        total = sum(histogram.values())
        if total == 0:
            return None
        values = sorted(histogram)

        def nth(rank: int) -> int:  # the rank-th smallest value, 0-based
            seen = 0
            for value in values:
                seen += histogram[value]
                if seen > rank:
                    return value
            return values[-1]

        middle = total // 2
        median = nth(middle) if total % 2 else (nth(middle - 1) + nth(middle)) / 2
        return cls(
            min=values[0],
            max=values[-1],
            mean=round(sum(v * n for v, n in histogram.items()) / total, 2),
            median=median,
            p5=nth(max(0, math.ceil(0.05 * total) - 1)),
            p95=nth(max(0, math.ceil(0.95 * total) - 1)),
        )


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
    tokenizer: Literal["bpe-openai", "tiktoken"]
    """The library that counted: bpe-openai's verified native tokenizer, or tiktoken."""
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

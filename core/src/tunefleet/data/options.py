"""How a dataset is validated: the options that decide its report.

Kept apart from :mod:`tunefleet.data.validate` so that a plan whose report the cache holds
(:mod:`tunefleet.data.cache` keys reports by these options) loads none of validation's
machinery: worker pools, tokenizers, the reader.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tunefleet.data import DEFAULT_MODEL
from tunefleet.data.checks import Check, DataFormat

__all__ = ["DEFAULT_MAX_LINE_BYTES", "ValidationOptions"]

DEFAULT_MAX_LINE_BYTES = 32 << 20
"""The longest line read as an example; a longer one is a finding, never held in memory."""


@dataclass(frozen=True)
class ValidationOptions:
    """How to validate. Defaults suit a chat dataset for an unknown model."""

    model: str = DEFAULT_MODEL
    """Decides the tokenizer and the default context limit."""
    data_format: DataFormat = "chat"
    context_limit: int | None = None
    """Tokens per example before truncation; None takes the default, 4096."""
    context_limit_source: str = "given"
    """Where ``context_limit`` comes from, for the report (a provider's training context)."""
    jobs: int | None = None
    """Worker processes; None uses every core, 1 validates in this process."""
    max_per_code: int = 1000
    """Findings kept per code in the report (counts stay exact); 0 keeps all."""
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    checks: Sequence[Check] = field(default_factory=tuple)
    """Extra per-example checks (the registry's ``tunefleet_dataset_checks``)."""

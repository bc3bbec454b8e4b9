"""Dataset validation: formats, token counts, cost inputs and likely personal data.

:func:`validate_dataset` is the public entry point; the CLI's ``tunefleet data validate``
and ``tunefleet plan`` both call it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tunefleet.data.checks import DataFormat

if TYPE_CHECKING:
    from tunefleet.data.report import DatasetReport
    from tunefleet.plugins import Registry

__all__ = ["validate_dataset"]


def validate_dataset(
    path: str | Path,
    *,
    model: str = "gpt-4o-mini-2024-07-18",
    data_format: DataFormat = "chat",
    context_limit: int | None = None,
    context_limit_source: str = "given",
    provider: str | None = None,
    epochs: int | None = None,
    jobs: int | None = None,
    max_per_code: int = 1000,
    registry: Registry | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DatasetReport:
    """Validate a JSONL dataset and, given a ``provider``, estimate what training costs.

    Runs the built-in checks and every check registered through the
    ``tunefleet_dataset_checks`` hook. ``epochs`` overrides the provider's default-epochs
    rule. Raises InputFileError for unreadable files and ProviderNotInstalledError for an
    unknown provider; problems inside the file are findings in the report.
    """
    from tunefleet.data.validate import ValidationOptions, validate_file
    from tunefleet.plugins import default_registry
    from tunefleet.provider import ContextLimits, Estimating, optional

    registry = registry or default_registry()
    backend = registry.provider(provider) if provider is not None else None
    limit_source = context_limit_source
    if context_limit is None and isinstance(backend, ContextLimits):
        known = backend.training_context(model)
        if known is not None:
            context_limit, limit_source = known
    options = ValidationOptions(
        model=model,
        data_format=data_format,
        context_limit=context_limit,
        context_limit_source=limit_source,
        jobs=jobs,
        max_per_code=max_per_code,
        checks=tuple(registry.dataset_checks()),
    )
    report = validate_file(path, options, progress)
    if backend is None or report.examples == 0:
        return report
    estimator = optional(backend, Estimating)
    estimate = estimator.estimate_training(model, report.examples, report.billable_tokens, epochs)
    return report.model_copy(update={"training": estimate})

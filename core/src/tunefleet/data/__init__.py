"""Dataset validation: formats, token counts, cost inputs and likely personal data.

:func:`validate_dataset` is the public entry point; the CLI's ``tunefleet data validate``
and ``tunefleet plan`` both call it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING

from tunefleet.data.checks import DataFormat

if TYPE_CHECKING:
    from tunefleet.data.report import DatasetReport
    from tunefleet.data.validate import ValidationOptions
    from tunefleet.plugins import Registry

__all__ = ["reuse_reports", "validate_dataset"]

_reports: ContextVar[dict[Hashable, DatasetReport] | None] = ContextVar(
    "tunefleet_reused_reports", default=None
)


@contextmanager
def reuse_reports() -> Iterator[None]:
    """Inside this block, validating the same unchanged file with the same options again
    returns the first report instead of reading the file again.

    `tunefleet run` plans (validating every dataset) before it opens the journal, so that a
    bad dataset writes nothing, then has the engine plan again: this keeps the second
    validation free. A file counts as unchanged while its device, inode, size, mtime and
    ctime are; staging checks the content's sha256 in any case.
    """
    token = _reports.set({})
    try:
        yield
    finally:
        _reports.reset(token)


def _cache_key(path: str | Path, options: ValidationOptions) -> Hashable | None:
    """What makes a report reusable: the file's identity and every option but ``jobs``;
    None outside :func:`reuse_reports`, or where the file cannot be stat'ed."""
    if _reports.get() is None:
        return None
    try:
        found = os.stat(path)
        key = (
            os.path.realpath(path),
            found.st_dev,
            found.st_ino,
            found.st_size,
            found.st_mtime_ns,
            found.st_ctime_ns,
            dataclasses.replace(options, jobs=None),
        )
        hash(key)  # a plugin's check may be an unhashable callable
    except (OSError, ValueError, TypeError):
        return None  # validating reports any problem with the file
    return key


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
    key = _cache_key(path, options)
    cache = _reports.get() if key is not None else None
    report = cache.get(key) if cache is not None else None
    if report is not None:
        if progress is not None:
            progress(report.size_bytes, report.size_bytes)
    else:
        report = validate_file(path, options, progress)
        if cache is not None:
            cache[key] = report
    if backend is None or report.examples == 0:
        return report
    estimator = optional(backend, Estimating)
    estimate = estimator.estimate_training(model, report.examples, report.billable_tokens, epochs)
    return report.model_copy(update={"training": estimate})

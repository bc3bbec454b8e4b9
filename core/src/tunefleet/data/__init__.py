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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tunefleet.data.checks import DataFormat
    from tunefleet.data.options import ValidationOptions
    from tunefleet.data.report import DatasetReport
    from tunefleet.plugins import Registry

__all__ = ["DEFAULT_MODEL", "prestart_validation", "reuse_reports", "validate_dataset"]

DEFAULT_MODEL = "gpt-4o-mini-2024-07-18"
"""The model a validation counts tokens for when none is named (``data validate --model``)."""


@dataclass
class _Reuse:
    reports: dict[Hashable, DatasetReport] = field(default_factory=dict)
    on_disk: bool = False


_reuse: ContextVar[_Reuse | None] = ContextVar("tunefleet_reused_reports", default=None)


@contextmanager
def reuse_reports(*, on_disk: bool = False) -> Iterator[None]:
    """Inside this block, validating the same unchanged file with the same options again
    returns the first report instead of reading the file again; with ``on_disk``, so does
    a report an earlier process stored (:mod:`tunefleet.data.cache`).

    `tunefleet run` plans (validating every dataset) before it opens the journal, so that a
    bad dataset writes nothing, then has the engine plan again: this keeps the second
    validation free. In memory, a file counts as unchanged while its device, inode, size,
    mtime and ctime are; on disk, while its sha256 is; staging checks the content's sha256
    in any case. Blocks nest: an inner block shares the outer one's reports.
    """
    outer = _reuse.get()
    inner = _Reuse(outer.reports if outer else {}, on_disk or bool(outer and outer.on_disk))
    token = _reuse.set(inner)
    try:
        yield
    finally:
        _reuse.reset(token)


def _cache_key(path: str | Path, options: ValidationOptions) -> Hashable | None:
    """What makes a report reusable in memory: the file's identity and every option but
    ``jobs``; None outside :func:`reuse_reports`, or where the file cannot be stat'ed."""
    if _reuse.get() is None:
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
    model: str = DEFAULT_MODEL,
    data_format: DataFormat = "chat",
    context_limit: int | None = None,
    context_limit_source: str = "given",
    provider: str | None = None,
    epochs: int | None = None,
    jobs: int | None = None,
    max_per_code: int = 1000,
    registry: Registry | None = None,
    progress: Callable[[int, int], None] | None = None,
    cache: bool | None = None,
) -> DatasetReport:
    """Validate a JSONL dataset and, given a ``provider``, estimate what training costs.

    Runs the built-in checks and every check registered through the
    ``tunefleet_dataset_checks`` hook. ``epochs`` overrides the provider's default-epochs
    rule. ``cache`` reuses (True) a report stored by an earlier validation of the same
    content with the same settings and stores this one, or validates afresh and stores the
    result (False); None does what the enclosing :func:`reuse_reports` says, else
    validates without the on-disk cache. Raises InputFileError for unreadable files and
    ProviderNotInstalledError for an unknown provider; problems inside the file are
    findings in the report.
    """
    prestart_validation(path, model=model, jobs=jobs, cache=cache)
    from tunefleet.data.options import ValidationOptions
    from tunefleet.plugins import default_registry

    registry = registry or default_registry()
    backend = registry.provider(provider) if provider is not None else None
    limit_source = context_limit_source
    if backend is not None and context_limit is None:
        # Here, not at the top: the provider contract's models cost a validation that
        # names no provider (and every worker pool waits for the main process's setup).
        from tunefleet.provider import ContextLimits

        known = backend.training_context(model) if isinstance(backend, ContextLimits) else None
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
    report = _validated(path, options, progress, cache)
    if backend is None or report.examples == 0:
        return report
    from tunefleet.provider import Estimating, optional

    estimator = optional(backend, Estimating)
    estimate = estimator.estimate_training(model, report.examples, report.billable_tokens, epochs)
    return report.model_copy(update={"training": estimate})


def _uses_disk(cache: bool | None) -> bool:
    """Whether a validation looks in the on-disk cache: as ``cache`` says, else as the
    enclosing :func:`reuse_reports` says."""
    reuse = _reuse.get()
    return cache if cache is not None else bool(reuse and reuse.on_disk)


def prestart_validation(
    path: str | Path,
    *,
    model: str = DEFAULT_MODEL,
    jobs: int | None = None,
    cache: bool | None = None,
) -> None:
    """Start the worker processes' fork server for a coming :func:`validate_dataset` of
    ``path`` with these settings, so that it starts on another core while the caller goes
    on (the validation's own setup, or the CLI parsing its command line).

    Skipped where validating would use no workers (a small file, ``jobs`` 1) or where the
    on-disk cache will most likely answer: a file this cache has hashed before, unchanged
    since. A missing or unreadable file, a bad ``jobs`` or a server that cannot start is
    left for the validation to report; a wrong guess costs nothing but time, since
    validation starts the server itself when it needs one.
    """
    from tunefleet.data import cache as on_disk

    file = on_disk.probe(path)
    if file is None:
        return  # not a regular file: validation says why
    if _uses_disk(cache) and on_disk.remembered(file):
        return
    from tunefleet.data import _pool  # multiprocessing: not imported when the cache answers

    _pool.prestart(file.size, jobs, model)


def _validated(
    path: str | Path,
    options: ValidationOptions,
    progress: Callable[[int, int], None] | None,
    cache: bool | None,
) -> DatasetReport:
    """The report of ``path``: from memory, from the on-disk cache, or by validating."""
    from tunefleet.data import cache as on_disk

    reuse = _reuse.get()
    use_disk = _uses_disk(cache)
    key = _cache_key(path, options)
    memory = reuse.reports if reuse is not None and key is not None else None
    report = memory.get(key) if memory is not None else None
    file = on_disk.probe(path) if report is None and (use_disk or cache is False) else None
    if file is not None and use_disk:
        report = on_disk.lookup(file, options)
    elif file is not None:
        on_disk.forget(file)  # forced: the file is read again, and its sha256 with it
    if report is not None:
        if progress is not None:
            progress(report.size_bytes, report.size_bytes)
    else:
        from tunefleet.data.validate import validate_file  # not loaded when a cache answers

        report = validate_file(path, options, progress)
        if use_disk or cache is False:
            on_disk.store(report, options, file)
    if memory is not None:
        memory[key] = report
    return report

"""The worker pool's start: how many workers, and the fork server they are forked from.

Kept light (the standard library, the tokenizer choice and the error types) so that
:func:`prestart` can start the fork server before the slower imports of a validation
(pydantic models, providers, plugins) and the two overlap on separate cores.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path

from tunefleet.data._preload import PRELOAD_ENV
from tunefleet.errors import UsageError

PARALLEL_MIN_BYTES = 8 << 20  # below this, starting workers costs more than it saves


def workers_can_start() -> bool:
    """False where worker processes would fail: they re-import the main module by path,
    which does not exist for code piped to ``python -``, and pools cannot nest."""
    if multiprocessing.parent_process() is not None:
        return False
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return getattr(main, "__spec__", None) is not None or path is None or Path(path).is_file()


def resolve_jobs(jobs: int | None, size: int) -> int:
    """Worker processes for a file of ``size`` bytes: ``jobs`` if given, else every core
    for a file of at least PARALLEL_MIN_BYTES; 1 means validating in this process."""
    if jobs is not None and jobs < 1:
        raise UsageError(f"jobs must be >= 1, got {jobs}")
    if not workers_can_start():
        return 1
    if jobs is not None:
        return jobs
    if size < PARALLEL_MIN_BYTES:
        return 1
    return max(
        1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )


def pool_context(encoding: str) -> multiprocessing.context.BaseContext:
    """A running fork server that preloads the tokenizer, so workers share its memory.

    Workers forked from a fork server (a clean process with no threads, unlike ours with
    its progress bar) share the tokenizer's pages copy-on-write; counting only reads them.
    Where there is no fork server (Windows), workers are spawned and load their own.
    Starting the server again is a no-op, so calling this early (see :func:`prestart`)
    costs the later call nothing.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    from multiprocessing import forkserver

    context = multiprocessing.get_context("forkserver")
    # The worker's own module (the checks, orjson) too: imported once here rather than by
    # each worker after its fork.
    context.set_forkserver_preload(["tunefleet.data._preload", "tunefleet.data._worker"])
    # The fork server inherits the environment once, when it starts; a later validation
    # with another encoding still works, its workers just build their own tokenizer.
    previous = os.environ.get(PRELOAD_ENV)
    os.environ[PRELOAD_ENV] = encoding
    try:
        forkserver.ensure_running()
    finally:
        if previous is None:
            os.environ.pop(PRELOAD_ENV, None)
        else:
            os.environ[PRELOAD_ENV] = previous
    return context


def prestart(size: int, jobs: int | None, model: str) -> None:
    """Start the fork server now if validating ``size`` bytes will use workers.

    The server takes about half a second to start and load the tokenizer; started before
    the validation's own imports and setup, it is ready when the first block is. A bad
    ``jobs`` or a server that cannot start is left for the validation to report.
    """
    from tunefleet.data.tokens import choose_encoding

    try:
        if resolve_jobs(jobs, size) > 1:
            pool_context(choose_encoding(model).name)
    except (UsageError, OSError):
        return

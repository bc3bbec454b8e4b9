"""What runs in a validation worker process: check a batch of lines.

Kept apart from :mod:`tunefleet.data.validate` so that worker processes (started with
``spawn``) import only the checks and a tokenizer, not pydantic or the report models.
"""

from __future__ import annotations

import os
import stat
from array import array
from collections import Counter
from dataclasses import dataclass
from typing import NamedTuple

from tunefleet.data.checks import Check, DataFormat, ExampleChecker
from tunefleet.data.findings import Finding
from tunefleet.data.tokens import token_counter


class BatchResult(NamedTuple):
    """What checking one block of lines found, summed up in the worker.

    Sums, and each per-example quantity in whichever of two forms the main process merges
    faster (see :func:`compact`), rather than one record per example. The duplicate check
    needs the examples one by one, in file order, across blocks: ``lines`` and ``digests``
    hold each valid example's line and 64-bit digest, in order.
    """

    findings: list[Finding]
    examples: int
    total_tokens: int
    billable_tokens: int
    """Tokens with each example capped at the context limit."""
    tokens: Counter[int] | array[int]
    """Tokens per valid example: a histogram (value -> examples) or the values."""
    assistant_tokens: Counter[int] | array[int]
    messages: Counter[int] | array[int]
    lines: array[int]
    digests: array[int]


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker needs to build its checker (picklable)."""

    encoding: str
    context_limit: int
    data_format: DataFormat
    checks: tuple[Check, ...]
    max_line_bytes: int


def make_checker(config: WorkerConfig) -> tuple[ExampleChecker, str]:
    """A checker for ``config`` and the name of the token-counting backend it uses."""
    from tunefleet.data import _preload  # a no-op unless this process is a fork-server child

    count, backend = _preload.counters.get(config.encoding) or token_counter(config.encoding)
    checker = ExampleChecker(
        count,
        context_limit=config.context_limit,
        data_format=config.data_format,
        extra_checks=config.checks,
        max_line_bytes=config.max_line_bytes,
    )
    return checker, backend


def compact(values: array[int]) -> Counter[int] | array[int]:
    """``values`` as the main process merges them fastest with ``Counter.update``.

    Updating from an array counts it in C, one step per example; updating from a Counter
    runs a Python step per distinct value, but sends and walks far less when values repeat.
    Chat examples of kilobytes have nearly as many token counts as examples (the array
    wins); short lines, and message counts, repeat a few values (the histogram wins:
    10,000 short lines merged in 9 µs instead of 1.15 ms).
    """
    histogram = Counter(values)
    return histogram if 4 * len(histogram) <= len(values) else values


def check_lines(checker: ExampleChecker, first_line: int, block: bytes) -> BatchResult:
    """Check the lines of ``block`` (whole lines, the first numbered ``first_line``)."""
    findings: list[Finding] = []
    tokens = array("Q")
    assistant = array("Q")
    messages = array("Q")
    valid_lines = array("Q")
    digests = array("Q")
    total = billable = 0
    context_limit = checker.context_limit
    lines = block.split(b"\n")
    if block.endswith(b"\n"):
        lines.pop()  # the empty string after the last newline is not a line
    limit = checker.max_line_bytes
    for offset, raw in enumerate(lines):
        line = first_line + offset
        if len(raw) > limit:
            findings.append(
                Finding("E004", line, f"line is {len(raw) + 1:,} bytes; the limit is {limit:,}")
            )
            continue
        result = checker.check(raw, line, findings)
        if result is not None:
            total += result.tokens
            billable += min(result.tokens, context_limit)
            tokens.append(result.tokens)
            assistant.append(result.assistant_tokens)
            messages.append(result.messages)
            valid_lines.append(line)
            digests.append(result.digest)
    return BatchResult(
        findings,
        len(digests),
        total,
        billable,
        compact(tokens),
        compact(assistant),
        compact(messages),
        valid_lines,
        digests,
    )


class SourceChangedError(Exception):
    """The file changed (or was replaced) while its blocks were being read."""


@dataclass(frozen=True)
class Source:
    """The file a pool's workers read their blocks from, and the identity it must keep.

    Workers read their blocks from the file themselves (the page cache serves them) rather
    than receive them through a pipe: piping every byte cost the main process and each
    worker a copy, a pickle and dozens of system calls per megabyte.
    """

    paths: tuple[str, ...]
    """Where to open it, tried in order until one opens the file of ``device`` and
    ``inode``: on Linux the open file itself, through /proc (whatever its name is now, and
    whatever ``/dev/fd`` number named it), then its real path (``..`` and symlinks resolved
    by the file system, so a worker started from another directory finds it too)."""
    device: int
    inode: int


_checker: ExampleChecker | None = None
_source: int | None = None  # the worker's descriptor of the Source
_source_problem: str | None = None


def init_worker(config: WorkerConfig, source: Source | None = None) -> None:
    """Process-pool initializer: build this worker's checker once, open ``source``."""
    global _checker, _source, _source_problem
    _checker, _ = make_checker(config)
    if source is not None:
        _source, _source_problem = open_source(source)


def open_source(source: Source) -> tuple[int | None, str | None]:
    """A read-only descriptor of ``source`` (the first of its paths that opens that very
    file), or None and why not. Never blocks: a FIFO put in the file's place is refused,
    not waited on."""
    problem = "cannot be opened again"
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    for path in source.paths:
        try:
            fd = os.open(path, flags)
        except OSError as exc:
            problem = f"cannot be opened again: {exc.strerror or exc}"
            continue
        found = os.fstat(fd)
        if stat.S_ISREG(found.st_mode) and (found.st_dev, found.st_ino) == (
            source.device,
            source.inode,
        ):
            return fd, None
        os.close(fd)
        problem = "was replaced while it was being validated"
    return None, problem


def check_batch(first_line: int, block: bytes) -> BatchResult:
    """Process-pool task: check one block of lines with this worker's checker."""
    if _checker is None:
        raise RuntimeError("validation worker was not initialised")
    return check_lines(_checker, first_line, block)


def check_range(first_line: int, offset: int, length: int) -> BatchResult:
    """Process-pool task: check the ``length`` bytes of whole lines at ``offset`` of the
    pool's source file. Raises SourceChangedError if they are no longer there."""
    if _checker is None:
        raise RuntimeError("validation worker was not initialised")
    if _source is None:
        raise SourceChangedError(_source_problem or "no file to read from")
    return check_lines(_checker, first_line, read_range(_source, offset, length))


def read_range(fd: int, offset: int, length: int) -> bytes:
    """``length`` bytes at ``offset`` of ``fd``; raises SourceChangedError if the file ends first."""
    if hasattr(os, "pread"):
        data = os.pread(fd, length, offset)
        while len(data) < length:  # a short read: only at the end of a file that shrank
            more = os.pread(fd, length - len(data), offset + len(data))
            if not more:
                break
            data += more
    else:  # Windows: no pread; this worker alone uses the descriptor
        os.lseek(fd, offset, os.SEEK_SET)
        parts = []
        left = length
        while left and (part := os.read(fd, left)):
            parts.append(part)
            left -= len(part)
        data = b"".join(parts)
    if len(data) != length:
        raise SourceChangedError("shrank while it was being validated")
    return data

"""Streaming, parallel validation of a JSONL fine-tuning dataset.

The file is read once, in order, in batches of about a megabyte; worker processes check
the lines and count tokens (each message encoded once) while the main process reads on
and merges results in line order. Memory stays flat in the file's size: only per-example
counters (a few dozen bytes per example), the duplicate index and at most
``max_per_code`` findings of each code are kept. A line longer than ``max_line_bytes`` is
reported and skipped without being held in memory.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import sys
import time
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tunefleet.data._worker import (
    BatchResult,
    WorkerConfig,
    check_batch,
    check_lines,
    init_worker,
    make_checker,
)
from tunefleet.data.checks import Check, DataFormat
from tunefleet.data.findings import Finding, name_of, severity_of
from tunefleet.data.report import DatasetReport, Distribution, FindingOut
from tunefleet.data.tokens import DEFAULT_CONTEXT_LIMIT, choose_encoding, token_backend
from tunefleet.errors import InputFileError, UsageError
from tunefleet.names import open_input, os_problem

__all__ = ["ValidationOptions", "validate_file"]

BATCH_BYTES = 1 << 20
PARALLEL_MIN_BYTES = 8 << 20
PRELOAD_ENV = "TUNEFLEET_PRELOAD_ENCODING"  # read by tunefleet.data._preload in the fork server  # below this, starting workers costs more than it saves
DEFAULT_MAX_LINE_BYTES = 32 << 20

Progress = Callable[[int, int], None]
"""Called with (bytes read, total bytes) as validation advances."""


@dataclass(frozen=True)
class ValidationOptions:
    """How to validate. Defaults suit a chat dataset for an unknown model."""

    model: str = "gpt-4o-mini-2024-07-18"
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


class _Reader:
    """Reads a file in blocks of whole lines, hashing it on the way.

    The main process only finds line boundaries (in C, with ``bytes.count``); workers split
    the blocks. A line longer than ``max_line_bytes`` without a newline in sight is counted
    and skipped as it streams past, never held whole in memory.
    """

    def __init__(self, handle: IO[bytes], max_line_bytes: int) -> None:
        self._handle = handle
        self._max = max_line_bytes
        self.sha256 = hashlib.sha256()
        self.bytes_read = 0
        self.lines = 0
        self.too_long: list[Finding] = []

    def batches(self) -> Iterator[tuple[int, bytes]]:
        """Yield (number of the block's first line, block of whole lines)."""
        pending = bytearray()  # the start of a line whose end has not been read yet
        skipped = -1  # bytes of an over-long line skipped so far; -1 when not skipping
        while chunk := self._handle.read(BATCH_BYTES):
            self.sha256.update(chunk)
            self.bytes_read += len(chunk)
            if skipped >= 0:
                newline = chunk.find(b"\n")
                if newline < 0:
                    skipped += len(chunk)
                    continue
                self._skipped_line(skipped + newline + 1)
                skipped = -1
                chunk = chunk[newline + 1 :]
            last = chunk.rfind(b"\n")
            if last < 0:
                pending += chunk
            else:
                block = bytes(pending) + chunk[: last + 1] if pending else chunk[: last + 1]
                pending = bytearray(chunk[last + 1 :])
                first = self.lines + 1
                self.lines += block.count(b"\n")
                yield first, block
            if len(pending) > self._max:
                skipped, pending = len(pending), bytearray()
        if skipped >= 0:
            self._skipped_line(skipped)
        elif pending:
            self.lines += 1
            yield self.lines, bytes(pending)

    def _skipped_line(self, length: int) -> None:
        self.lines += 1
        self.too_long.append(
            Finding("E004", self.lines, f"line is {length:,} bytes; the limit is {self._max:,}")
        )


class _SeenDigests:
    """The set of 64-bit example digests seen so far, each with the line it was first seen on.

    Open addressing over two flat arrays (12 bytes a slot, at most half full): about 24
    bytes per unique example, against ~100 for a dict of Python ints.
    """

    def __init__(self, capacity: int = 1 << 16) -> None:
        self._allocate(capacity)

    def _allocate(self, capacity: int) -> None:
        self._digests = array("Q", bytes(8 * capacity))  # capacity is a power of two
        self._lines = array("I", bytes(4 * capacity))
        self._used = 0

    def first_line(self, digest: int, line: int) -> int | None:
        """The line ``digest`` was first seen on; None (and remember ``line``) if it is new."""
        digest = digest or 1  # 0 marks an empty slot
        digests = self._digests
        mask = len(digests) - 1
        slot = digest & mask
        while True:
            found = digests[slot]
            if found == digest:
                return self._lines[slot]
            if found == 0:
                digests[slot] = digest
                self._lines[slot] = line
                self._used += 1
                if self._used * 2 > len(digests):
                    self._grow()
                return None
            slot = (slot + 1) & mask

    def _grow(self) -> None:
        digests, lines = self._digests, self._lines
        self._allocate(len(digests) * 2)
        for digest, line in zip(digests, lines, strict=True):
            if digest:
                self.first_line(digest, line)


class _Merger:
    """Merges batch results in line order into counters, histograms and capped findings.

    Memory does not grow with the size of the file: statistics are histograms (exact, sized
    by the number of distinct values) and duplicates are found with a compact digest set.
    """

    def __init__(self, max_per_code: int) -> None:
        self.max_per_code = max_per_code
        self.counts: Counter[str] = Counter()
        self.kept: list[Finding] = []
        self.omitted = 0
        self.examples = 0
        self.total_tokens = 0
        self.billable_tokens = 0
        self.tokens: Counter[int] = Counter()
        self.assistant: Counter[int] = Counter()
        self.messages: Counter[int] = Counter()
        self.seen = _SeenDigests()

    def add(self, findings: Iterable[Finding]) -> None:
        for finding in findings:
            self.counts[finding.code] += 1
            if self.max_per_code and self.counts[finding.code] > self.max_per_code:
                self.omitted += 1
            else:
                self.kept.append(finding)

    def merge(self, result: BatchResult, context_limit: int) -> None:
        findings, stats = result
        self.add(findings)
        repeats = []
        for example in stats:
            self.examples += 1
            self.total_tokens += example.tokens
            self.billable_tokens += min(example.tokens, context_limit)
            self.tokens[example.tokens] += 1
            self.assistant[example.assistant_tokens] += 1
            self.messages[example.messages] += 1
            original = self.seen.first_line(example.digest, example.line)
            if original is not None:
                repeats.append(Finding("W104", example.line, f"same as line {original}"))
        self.add(repeats)


def _workers_can_start() -> bool:
    """False where worker processes would fail: they re-import the main module by path,
    which does not exist for code piped to ``python -``, and pools cannot nest."""
    if multiprocessing.parent_process() is not None:
        return False
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return getattr(main, "__spec__", None) is not None or path is None or Path(path).is_file()


def _resolve_jobs(jobs: int | None, size: int) -> int:
    if jobs is not None and jobs < 1:
        raise UsageError(f"jobs must be >= 1, got {jobs}")
    if not _workers_can_start():
        return 1
    if jobs is not None:
        return jobs
    if size < PARALLEL_MIN_BYTES:
        return 1
    return max(
        1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )


def _results(
    batches: Iterator[tuple[int, bytes]], config: WorkerConfig, jobs: int
) -> Iterator[BatchResult]:
    if jobs == 1:
        checker, _ = make_checker(config)
        for first, block in batches:
            yield check_lines(checker, first, block)
        return
    context = _pool_context(config.encoding)
    pool = ProcessPoolExecutor(
        jobs, mp_context=context, initializer=init_worker, initargs=(config,)
    )
    pending: deque[Future[BatchResult]] = deque()
    try:
        for first, block in batches:
            pending.append(pool.submit(check_batch, first, block))
            while len(pending) >= jobs * 3:  # bounded: memory stays flat however big the file
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _pool_context(encoding: str) -> multiprocessing.context.BaseContext:
    """A fork server that preloads the tokenizer, so workers share its memory.

    Workers forked from a fork server (a clean process with no threads, unlike ours with
    its progress bar) share the tokenizer's pages copy-on-write; counting only reads them.
    Where there is no fork server (Windows), workers are spawned and load their own.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    from multiprocessing import forkserver

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tunefleet.data._preload"])
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


def _open(path: Path) -> IO[bytes]:
    source = str(path)
    handle = open_input(path, what="JSONL file")  # refuses FIFOs, devices, directories
    try:
        head = handle.peek(4096)[:4096] if hasattr(handle, "peek") else b""
    except OSError as exc:
        handle.close()
        raise InputFileError(source, os_problem(exc)) from None
    if head.startswith(b"\x1f\x8b"):
        handle.close()
        raise InputFileError(source, "is gzip-compressed; decompress it first")
    if b"\x00" in head:
        handle.close()
        raise InputFileError(source, "is a binary file, not JSONL text")
    return handle


def validate_file(
    path: str | Path, options: ValidationOptions | None = None, progress: Progress | None = None
) -> DatasetReport:
    """Validate one JSONL file and return the full report.

    Raises InputFileError for a file that cannot be read as text. Problems inside the file
    are findings in the report, never exceptions.
    """
    options = options or ValidationOptions()
    file = Path(path)
    started = time.perf_counter()
    choice = choose_encoding(options.model)
    if options.context_limit is not None:
        limit, limit_source = options.context_limit, options.context_limit_source
    else:
        limit, limit_source = DEFAULT_CONTEXT_LIMIT, "default (set --max-tokens)"
    config = WorkerConfig(
        choice.name, limit, options.data_format, tuple(options.checks), options.max_line_bytes
    )
    with _open(file) as handle:
        total = os.fstat(handle.fileno()).st_size
        jobs = _resolve_jobs(options.jobs, total)
        reader = _Reader(handle, options.max_line_bytes)
        merger = _Merger(options.max_per_code)
        try:
            for result in _results(reader.batches(), config, jobs):
                merger.merge(result, limit)
                if progress is not None:
                    progress(reader.bytes_read, total)
        except OSError as exc:  # EIO, a file on a network share that went away
            raise InputFileError(str(file), f"cannot be read: {os_problem(exc)}") from None
        merger.add(reader.too_long)
    if reader.lines == merger.counts.get("E003", 0):  # no line at all, or only blank ones
        merger.add([Finding("E005", 0, _no_examples(reader))])
    if progress is not None:
        progress(reader.bytes_read, total)
    return _report(
        file,
        options,
        reader,
        merger,
        encoding=choice.name,
        backend=token_backend(choice.name),
        exact=choice.exact,
        limit=limit,
        limit_source=limit_source,
        started=started,
    )


def _no_examples(reader: _Reader) -> str:
    if reader.bytes_read == 0:
        return "the file is empty (0 bytes): there is nothing to train on"
    return f"the file holds no examples, only {reader.lines:,} blank line(s)"


def _report(
    file: Path,
    options: ValidationOptions,
    reader: _Reader,
    merger: _Merger,
    *,
    encoding: str,
    backend: str,
    exact: bool,
    limit: int,
    limit_source: str,
    started: float,
) -> DatasetReport:
    counts = merger.counts
    errors = sum(n for code, n in counts.items() if severity_of(code) == "error")
    findings = sorted(merger.kept, key=lambda f: (f.line, f.code))
    examples = merger.examples
    fields: dict[str, Any] = {
        "messages_per_example": Distribution.of(merger.messages),
        "tokens_per_example": Distribution.of(merger.tokens),
        "assistant_tokens_per_example": Distribution.of(merger.assistant),
    }
    return DatasetReport(
        path=str(file),
        format=options.data_format,
        size_bytes=reader.bytes_read,
        sha256=reader.sha256.hexdigest(),
        lines=reader.lines,
        examples=examples,
        invalid_examples=reader.lines - examples - counts.get("E003", 0),
        errors=errors,
        warnings=sum(counts.values()) - errors,
        counts=dict(sorted(counts.items())),
        findings=[
            FindingOut(
                code=f.code,
                name=name_of(f.code),
                severity=severity_of(f.code),
                line=f.line,
                detail=f.detail,
            )
            for f in findings
        ],
        findings_omitted=merger.omitted,
        encoding=encoding,
        tokenizer=backend,
        tokens_exact=exact,
        context_limit=limit,
        context_limit_source=limit_source,
        total_tokens=merger.total_tokens,
        billable_tokens=merger.billable_tokens,
        examples_over_limit=counts.get("W103", 0),
        missing_system=counts.get("W101", 0),
        missing_user=counts.get("W102", 0),
        duplicates=counts.get("W104", 0),
        elapsed_seconds=round(time.perf_counter() - started, 3),
        **fields,
    )

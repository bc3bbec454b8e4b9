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
import time
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tunefleet.data.checks import Check, DataFormat, ExampleChecker, ExampleStats
from tunefleet.data.findings import Finding, name_of, severity_of
from tunefleet.data.report import DatasetReport, Distribution, FindingOut
from tunefleet.data.tokens import choose_encoding, context_limit_for, get_encoding
from tunefleet.errors import InputFileError, UsageError

__all__ = ["ValidationOptions", "validate_file"]

BATCH_BYTES = 1 << 20
PARALLEL_MIN_BYTES = 8 << 20  # below this, starting workers costs more than it saves
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
    """Tokens per example before truncation; None takes the model's known limit."""
    jobs: int | None = None
    """Worker processes; None uses every core, 1 validates in this process."""
    max_per_code: int = 1000
    """Findings kept per code in the report (counts stay exact); 0 keeps all."""
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    checks: Sequence[Check] = field(default_factory=tuple)
    """Extra per-example checks (the registry's ``tunefleet_dataset_checks``)."""


@dataclass(frozen=True)
class _WorkerConfig:
    encoding: str
    context_limit: int
    data_format: DataFormat
    checks: tuple[Check, ...]


_checker: ExampleChecker | None = None


def _make_checker(config: _WorkerConfig) -> ExampleChecker:
    encoding = get_encoding(config.encoding)
    encode = encoding.encode_ordinary

    def count(text: str) -> int:
        return len(encode(text))

    return ExampleChecker(
        count,
        context_limit=config.context_limit,
        data_format=config.data_format,
        extra_checks=config.checks,
    )


def _init_worker(config: _WorkerConfig) -> None:
    global _checker
    _checker = _make_checker(config)


_BatchResult = tuple[list[Finding], list[ExampleStats]]


def _check_batch(first_line: int, lines: list[bytes]) -> _BatchResult:
    assert _checker is not None, "worker not initialised"
    return _check_lines(_checker, first_line, lines)


def _check_lines(checker: ExampleChecker, first_line: int, lines: list[bytes]) -> _BatchResult:
    findings: list[Finding] = []
    stats: list[ExampleStats] = []
    for offset, raw in enumerate(lines):
        result = checker.check(raw, first_line + offset, findings)
        if result is not None:
            stats.append(result)
    return findings, stats


class _Reader:
    """Reads a file in line batches, hashing it and reporting over-long lines on the way."""

    def __init__(self, handle: IO[bytes], max_line_bytes: int) -> None:
        self._handle = handle
        self._max = max_line_bytes
        self.sha256 = hashlib.sha256()
        self.bytes_read = 0
        self.lines = 0
        self.too_long: list[Finding] = []

    def batches(self) -> Iterator[tuple[int, list[bytes]]]:
        batch: list[bytes] = []
        size = 0
        first = 1
        while True:
            raw = self._handle.readline(self._max + 1)
            if not raw:
                break
            self._consume(raw)
            self.lines += 1
            if len(raw) > self._max and not raw.endswith(b"\n"):
                length = len(raw) + self._skip_rest_of_line()
                self.too_long.append(
                    Finding(
                        "E004", self.lines, f"line is {length:,} bytes; the limit is {self._max:,}"
                    )
                )
                if batch:
                    yield first, batch
                batch, size, first = [], 0, self.lines + 1
                continue
            batch.append(raw)
            size += len(raw)
            if size >= BATCH_BYTES:
                yield first, batch
                batch, size, first = [], 0, self.lines + 1
        if batch:
            yield first, batch

    def _consume(self, chunk: bytes) -> None:
        self.sha256.update(chunk)
        self.bytes_read += len(chunk)

    def _skip_rest_of_line(self) -> int:
        skipped = 0
        while True:
            chunk = self._handle.readline(1 << 20)
            if not chunk:
                return skipped
            self._consume(chunk)
            skipped += len(chunk)
            if chunk.endswith(b"\n"):
                return skipped


class _Merger:
    """Merges batch results in line order into counters and capped findings."""

    def __init__(self, max_per_code: int) -> None:
        self.max_per_code = max_per_code
        self.counts: Counter[str] = Counter()
        self.kept: list[Finding] = []
        self.omitted = 0
        self.tokens = array("L")
        self.assistant = array("L")
        self.messages = array("L")
        self.first_seen: dict[int, int] = {}

    def add(self, findings: list[Finding]) -> None:
        for finding in findings:
            self.counts[finding.code] += 1
            if self.max_per_code and self.counts[finding.code] > self.max_per_code:
                self.omitted += 1
            else:
                self.kept.append(finding)

    def merge(self, result: _BatchResult) -> None:
        findings, stats = result
        self.add(findings)
        duplicates: list[Finding] = []
        for example in stats:
            self.tokens.append(example.tokens)
            self.assistant.append(example.assistant_tokens)
            self.messages.append(example.messages)
            original = self.first_seen.setdefault(example.digest, example.line)
            if original != example.line:
                duplicates.append(Finding("W104", example.line, f"same as line {original}"))
        self.add(duplicates)


def _resolve_jobs(jobs: int | None, size: int) -> int:
    if jobs is not None:
        if jobs < 1:
            raise UsageError(f"jobs must be >= 1, got {jobs}")
        return jobs
    if size < PARALLEL_MIN_BYTES:
        return 1
    return max(
        1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )


def _results(
    batches: Iterator[tuple[int, list[bytes]]], config: _WorkerConfig, jobs: int
) -> Iterator[_BatchResult]:
    if jobs == 1:
        checker = _make_checker(config)
        for first, lines in batches:
            yield _check_lines(checker, first, lines)
        return
    # spawn: safe with threads in the parent (progress bars) and the same on every OS.
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        jobs, mp_context=context, initializer=_init_worker, initargs=(config,)
    )
    pending: deque[Future[_BatchResult]] = deque()
    try:
        for first, lines in batches:
            pending.append(pool.submit(_check_batch, first, lines))
            while len(pending) >= jobs * 3:  # bounded: memory stays flat however big the file
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _open(path: Path) -> IO[bytes]:
    source = str(path)
    try:
        if path.is_dir():
            raise InputFileError(source, "is a directory, not a JSONL file")
        handle = path.open("rb")
    except FileNotFoundError:
        raise InputFileError(source, "no such file") from None
    except PermissionError:
        raise InputFileError(source, "permission denied") from None
    head = handle.peek(4096)[:4096] if hasattr(handle, "peek") else b""
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
        limit, limit_source = options.context_limit, "given"
    else:
        limit, limit_source = context_limit_for(options.model)
    config = _WorkerConfig(choice.name, limit, options.data_format, tuple(options.checks))
    with _open(file) as handle:
        total = os.fstat(handle.fileno()).st_size
        jobs = _resolve_jobs(options.jobs, total)
        reader = _Reader(handle, options.max_line_bytes)
        merger = _Merger(options.max_per_code)
        for result in _results(reader.batches(), config, jobs):
            merger.merge(result)
            if progress is not None:
                progress(reader.bytes_read, total)
        merger.add(reader.too_long)
    if progress is not None:
        progress(reader.bytes_read, total)
    return _report(
        file, options, reader, merger, choice.name, choice.exact, limit, limit_source, started
    )


def _report(
    file: Path,
    options: ValidationOptions,
    reader: _Reader,
    merger: _Merger,
    encoding: str,
    exact: bool,
    limit: int,
    limit_source: str,
    started: float,
) -> DatasetReport:
    counts = merger.counts
    errors = sum(n for code, n in counts.items() if severity_of(code) == "error")
    findings = sorted(merger.kept, key=lambda f: (f.line, f.code))
    examples = len(merger.tokens)
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
        tokens_exact=exact,
        context_limit=limit,
        context_limit_source=limit_source,
        total_tokens=sum(merger.tokens),
        billable_tokens=sum(min(limit, t) for t in merger.tokens),
        examples_over_limit=counts.get("W103", 0),
        missing_system=counts.get("W101", 0),
        missing_user=counts.get("W102", 0),
        duplicates=counts.get("W104", 0),
        elapsed_seconds=round(time.perf_counter() - started, 3),
        **fields,
    )

"""What runs in a validation worker process: check a batch of lines.

Kept apart from :mod:`tunefleet.data.validate` so that worker processes (started with
``spawn``) import only the checks and a tokenizer, not pydantic or the report models.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunefleet.data.checks import Check, DataFormat, ExampleChecker, ExampleStats
from tunefleet.data.findings import Finding
from tunefleet.data.tokens import token_counter

BatchResult = tuple[list[Finding], list[ExampleStats]]


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


def check_lines(checker: ExampleChecker, first_line: int, block: bytes) -> BatchResult:
    """Check the lines of ``block`` (whole lines, the first numbered ``first_line``)."""
    findings: list[Finding] = []
    stats: list[ExampleStats] = []
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
            stats.append(result)
    return findings, stats


_checker: ExampleChecker | None = None


def init_worker(config: WorkerConfig) -> None:
    """Process-pool initializer: build this worker's checker once."""
    global _checker
    _checker, _ = make_checker(config)


def check_batch(first_line: int, block: bytes) -> BatchResult:
    """Process-pool task: check one block of lines with this worker's checker."""
    if _checker is None:
        raise RuntimeError("validation worker was not initialised")
    return check_lines(_checker, first_line, block)

"""Statistics from histograms equal statistics from sorted values; the digest set scales;
the reader counts lines as ``bytes.count`` does."""

from __future__ import annotations

import math
import random
from array import array
from collections import Counter

import pytest

from tunefleet.data._worker import BatchResult, compact
from tunefleet.data.report import Distribution
from tunefleet.data.validate import _Merger, _newlines, _SeenDigests


def by_sorting(values: list[int]) -> Distribution:
    ordered = sorted(values)
    n = len(ordered)
    median = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
    return Distribution(
        min=ordered[0],
        max=ordered[-1],
        mean=round(sum(ordered) / n, 2),
        median=median,
        p5=ordered[max(0, math.ceil(0.05 * n) - 1)],
        p95=ordered[max(0, math.ceil(0.95 * n) - 1)],
    )


@pytest.mark.parametrize("size", [1, 2, 3, 10, 999, 5000])
def test_histogram_statistics_match_sorting(size: int) -> None:
    rng = random.Random(size)
    values = [rng.choice([rng.randint(1, 50), rng.randint(1, 100_000)]) for _ in range(size)]
    assert Distribution.of(Counter(values)) == by_sorting(values)


def test_empty_histogram_has_no_distribution() -> None:
    assert Distribution.of(Counter()) is None


def test_digest_set_remembers_first_lines_across_growth() -> None:
    seen = _SeenDigests(capacity=8)
    rng = random.Random(1)
    digests = [rng.getrandbits(64) for _ in range(10_000)] + [0]
    lines = list(range(1, len(digests) + 1))
    assert seen.repeats(digests, lines) == []
    again = [line + len(digests) for line in lines]
    assert seen.repeats(digests, again) == list(zip(again, lines, strict=True))


def test_a_reserved_digest_set_keeps_what_it_held_and_still_grows() -> None:
    seen = _SeenDigests(capacity=8)
    assert seen.repeats([5, 6], [1, 2]) == []
    seen.reserve(1000)  # re-inserts what it holds into the larger table
    assert seen.capacity == 2048  # at most half full
    assert seen.repeats([6, 7, 5], [3, 4, 5]) == [(3, 2), (5, 1)]
    many = list(range(100, 5100))  # past the reservation: grows as before
    assert seen.repeats(many, [line + 6 for line in range(len(many))]) == []
    assert seen.repeats([100, 5099, 7], [9000, 9001, 9002]) == [(9000, 6), (9001, 5005), (9002, 4)]


def test_a_reservation_from_a_wrong_estimate_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_SeenDigests, "RESERVE_MAX", 1 << 10)
    seen = _SeenDigests(capacity=8)
    seen.reserve(10**12)  # a first block of tiny lines in a huge file
    assert seen.capacity == 1 << 10


@pytest.mark.parametrize("seed", range(20))
def test_lines_are_counted_as_bytes_count_counts_them(seed: int) -> None:
    # Long lines (found one by one), short ones (counted), and blocks that switch between.
    rng = random.Random(seed)
    pieces = [b"", b"x", b"\n", b"a" * rng.randint(200, 3000), b"b" * rng.randint(0, 300)]
    data = b"".join(rng.choice(pieces) + b"\n" * (rng.random() < 0.7) for _ in range(2000))
    for _ in range(50):
        start = rng.randint(0, len(data))
        end = rng.randint(start, len(data))
        assert _newlines(data, start, end) == data.count(b"\n", start, end)


def test_lines_are_counted_at_the_edges_of_a_range() -> None:
    long_lines = (b"x" * 300 + b"\n") * 100
    assert _newlines(long_lines, 0, len(long_lines)) == 100  # found one by one throughout
    assert _newlines(long_lines, 0, len(long_lines) - 1) == 99  # the last one just outside
    assert _newlines(long_lines, 300, 301) == 1  # a range of one newline
    assert _newlines(long_lines, 5, 5) == 0
    mixed = long_lines + b"\n" * 1000 + long_lines  # long, then short: counted from there
    assert _newlines(mixed, 1, len(mixed)) == 1200


def test_the_duplicate_index_is_sized_from_the_first_block() -> None:
    merger = _Merger(max_per_code=10, total_bytes=1_000_000)
    lines, digests = array("Q", range(1, 101)), array("Q", range(1000, 1100))
    first = BatchResult([], 100, 0, 0, Counter(), Counter(), Counter(), lines, digests)
    merger.merge(first, checked_bytes=1000)  # 100 examples in 1,000 bytes: 100,000 to come
    assert merger.seen.capacity == 1 << 18  # room for 100,000 at most half full
    merger.merge(first._replace(lines=array("Q", range(101, 201))), checked_bytes=2000)
    assert merger.seen.capacity == 1 << 18  # sized once
    assert merger.counts["W104"] == 100  # the second block repeats the first


@pytest.mark.parametrize("repeats", [False, True])
def test_per_example_counts_merge_the_same_in_either_form(repeats: bool) -> None:
    rng = random.Random(5)
    values = array("Q", (rng.randint(1, 4 if repeats else 10**6) for _ in range(5000)))
    sent = compact(values)
    assert isinstance(sent, Counter) is repeats  # a histogram only where values repeat
    merged: Counter[int] = Counter({1: 1})
    merged.update(sent)
    assert merged == Counter({1: 1}) + Counter(values)

"""Statistics from histograms equal statistics from sorted values; the digest set scales."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from tunefleet.data.report import Distribution
from tunefleet.data.validate import _SeenDigests


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

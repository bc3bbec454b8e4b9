"""The run's HTML report at scale: a chart line draws a bounded number of points keeping its
ends, extremes and spikes; the last step is drawn inside the plot; each loss shows its last
known value."""

from __future__ import annotations

import random
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tunefleet.events import MetricEvent
from tunefleet.run.report import MAX_CHART_POINTS, downsample, render_report
from tunefleet.state import Owner, open_journal

SVG = "{http://www.w3.org/2000/svg}"


def run_report(tmp_path: Path, metrics: list[MetricEvent]) -> str:
    """The HTML report of a one-target run that recorded ``metrics``."""
    journal = open_journal(f"sqlite:///{tmp_path / 'journal.db'}")
    journal.ensure_run(
        run_id="scale-12345678", name="scale", identity="1" * 64, spec={},
        spec_source="spec.yaml", datasets={},
    )  # fmt: skip
    target, _ = journal.ensure_target(
        run_id="scale-12345678", name="t0", config_hash="0" * 64,
        run_key_for=lambda a: f"key{a}", provider="fake", region=None,
        plan={"target": "t0", "provider": "fake", "region": None, "options": {}},
    )  # fmt: skip
    owner = Owner.here()
    journal.acquire(target.id, owner)
    for start in range(0, len(metrics), 1000):
        journal.record_events(target.id, owner, metrics[start : start + 1000], str(start))
    journal.update_target(target.id, owner, phase="done", state="succeeded")
    try:
        return render_report(journal, journal.run("scale-12345678"))
    finally:
        journal.close()


def target_chart(html: str) -> ET.Element:
    """The target's loss chart (the run has one target, so the page has one chart)."""
    (svg,) = re.findall(r"<svg.*?</svg>", html, flags=re.S)
    return ET.fromstring(svg)


def vertices(line: ET.Element) -> list[tuple[float, float]]:
    return [
        (float(x), float(y))
        for x, y in (pair.split(",") for pair in line.get("points", "").split())
    ]


def metric(step: int, train: float | None, valid: float | None = None) -> MetricEvent:
    return MetricEvent(
        id=f"m{step}", time=datetime.now(UTC), step=step, train_loss=train, valid_loss=valid
    )


def noisy_series(count: int, seed: int) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    return [(float(step), 2 / (step + 1) + rng.gauss(0, 0.05)) for step in range(count)]


def test_downsample_keeps_the_ends_each_slices_extremes_and_every_spike() -> None:
    points = noisy_series(10_000, 1)
    spikes = {1234: 9.0, 1240: -9.0, 5000: 7.5, 9998: -4.0}
    for step, value in spikes.items():
        points[step] = (float(step), value)
    random.Random(2).shuffle(points)  # any order in, x order out
    limit = 500
    kept = downsample(points, limit)
    ordered = sorted(points)
    assert len(kept) <= limit
    assert kept == sorted(kept) and set(kept) <= set(points)
    assert kept[0] == ordered[0] and kept[-1] == ordered[-1]
    assert {(float(step), value) for step, value in spikes.items()} <= set(kept)
    # Each of the (limit - 2) // 2 equal slices of the x range keeps its lowest and highest.
    slices = (limit - 2) // 2
    first, last = ordered[0][0], ordered[-1][0]
    by_slice: dict[int, list[tuple[float, float]]] = {}
    for x, y in ordered[1:-1]:
        by_slice.setdefault(min(int((x - first) / (last - first) * slices), slices - 1), []).append(
            (x, y)
        )
    for members in by_slice.values():
        assert min(members, key=lambda p: p[1]) in kept
        assert max(members, key=lambda p: p[1]) in kept


def test_downsample_leaves_a_short_series_whole_and_copes_with_one_step() -> None:
    points = noisy_series(500, 3)
    assert downsample(list(reversed(points)), 500) == points
    same_step = [(7.0, float(value)) for value in range(1000)]
    assert downsample(same_step, 10) == [(7.0, 0.0), (7.0, 1.0), (7.0, 998.0), (7.0, 999.0)]
    with pytest.raises(ValueError, match="at least 4"):
        downsample(points, 3)


def test_a_long_runs_chart_draws_a_bounded_number_of_points(tmp_path: Path) -> None:
    steps = 5 * MAX_CHART_POINTS
    events = [metric(s, 2 / s, 2.2 / s if s % 2 == 0 else None) for s in range(1, steps + 1)]
    events[1500] = metric(1501, 50.0)  # a spike must stay on the chart
    html = run_report(tmp_path, events)
    chart = target_chart(html)
    train, valid = chart.findall(f"{SVG}polyline")
    assert 4 <= len(vertices(train)) <= MAX_CHART_POINTS
    assert 4 <= len(vertices(valid)) <= MAX_CHART_POINTS
    assert not chart.findall(f"{SVG}circle")  # no dot per point on a dense line
    # The spike is the highest point drawn: at the top of the plot.
    plot = chart.find(f"{SVG}rect[@class='plot']")
    assert plot is not None
    assert min(y for _, y in vertices(train)) == pytest.approx(float(plot.get("y", "")), abs=0.1)


@pytest.mark.parametrize("steps", [1, 7, 120, 1001])
def test_the_last_step_is_drawn_inside_the_plot(tmp_path: Path, steps: int) -> None:
    html = run_report(tmp_path, [metric(s, 3 - s / steps) for s in range(1, steps + 1)])
    chart = target_chart(html)
    plot = chart.find(f"{SVG}rect[@class='plot']")
    assert plot is not None
    left, top = float(plot.get("x", "")), float(plot.get("y", ""))
    right, bottom = left + float(plot.get("width", "")), top + float(plot.get("height", ""))
    (train,) = chart.findall(f"{SVG}polyline")
    drawn = vertices(train)
    drawn += [(float(c.get("cx", "")), float(c.get("cy", ""))) for c in chart.iter(f"{SVG}circle")]
    slack = 0.05  # coordinates are written to one decimal
    for x, y in drawn:
        assert left - slack <= x <= right + slack and top - slack <= y <= bottom + slack
    # The last step is the rightmost point of the line, and it is inside too.
    assert vertices(train)[-1][0] == max(x for x, _ in drawn)


def test_each_loss_shows_its_last_known_value(tmp_path: Path) -> None:
    # The newest metric event carries only the valid loss: the train loss stays shown.
    html = run_report(tmp_path, [metric(1, 2.0, 2.5), metric(2, 1.25), metric(3, None, 1.75)])
    (losses,) = re.findall(r"<th>loss</th><td>(.*?)</td>", html, flags=re.S)
    assert " ".join(losses.split()) == "train 1.2500, valid 1.7500"

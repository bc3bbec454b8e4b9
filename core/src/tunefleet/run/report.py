"""`tunefleet report RUN`: one self-contained HTML page per run.

The page has no scripts and loads nothing: the loss curves are inline SVG drawn here, the
styles are inline, so it can be attached to a ticket or an audit and opened offline years
later. Every value from the journal goes through Jinja2's autoescaping.

The page stays small however long the run: each chart line draws at most
:data:`MAX_CHART_POINTS` points (see :func:`downsample`), and the events are streamed from
the journal as plain records, a page at a time, so a run of hundreds of thousands of steps
is never held in memory as rows.

Besides the datasets, each target's training (state, cost, loss curves) and the timeline,
the page shows per target its registry entry (model reference, stage, artifact, and the
sha256 of each dataset it was trained from, linked to the datasets table) and its newest
evaluation, the one that decides whether the model may be deployed: each metric with the
new model's value, the baseline's side by side and the threshold with pass or fail, the
slices, the judge's win rate with its confidence interval, and the worst-scored examples
with the question, the expected answer, both models' answers and the judge's verdict.
Earlier evaluations of the target are listed with their outcome.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

from jinja2 import Environment, StrictUndefined
from markupsafe import Markup, escape

from tunefleet.evaluation.scoring import (
    EvaluationResult,
    ExampleResult,
    MetricResult,
    SliceResult,
)
from tunefleet.registry import model_ref
from tunefleet.run.model_card import (
    ANSWER_ROUTES,
    METRIC_DESCRIPTIONS,
    failure_cases,
    format_score,
    format_threshold,
    judge_summary,
    ranking_metric,
    truncate,
)
from tunefleet.run.progress import describe_event, run_progress
from tunefleet.state.journal import Journal
from tunefleet.state.models import Evaluation, ModelVersion, Run, RunTarget

__all__ = ["MAX_CHART_POINTS", "downsample", "render_report", "write_report"]

WORST_EXAMPLES = 10
"""Most worst-scored examples the report shows per target."""
MAX_TEXT_CHARS = 2000
"""Longest question or answer the report shows in full; the rest is cut, saying so."""
MAX_CHART_POINTS = 500
"""Most points one line of a chart draws. A longer series is cut down by :func:`downsample`
to its first and last point and each x slice's lowest and highest, so the page of a
200,000-step run stays well under a megabyte and still shows every spike. 500 is about one
point per pixel column of the widest chart."""
MARKER_POINTS = 60
"""A line of at most this many points also gets a dot on each point; more would merge
into a blur and only add bytes."""
_TIMELINE_KINDS = frozenset({"status", "checkpoint", "cost"})
"""Event kinds the timeline lists, besides logs of level warning or error."""
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b")


@dataclass(frozen=True)
class Series:
    """One line of a chart: (step, value) points, in any order."""

    label: str
    points: list[tuple[float, float]]
    color: str
    dashed: bool = False


def downsample(
    points: Sequence[tuple[float, float]], limit: int = MAX_CHART_POINTS
) -> list[tuple[float, float]]:
    """``points`` sorted by x and, when there are more than ``limit``, cut to at most
    ``limit`` by min/max decimation: the first and the last point are kept, the x range
    between them is cut into ``(limit - 2) // 2`` equal slices, and of the points in each
    slice the lowest and the highest are kept (one point when they are the same), in x
    order. So the line keeps its ends, its overall extremes and every spike, as min/max
    decimation of time series does. ``limit`` is at least 4.
    """
    if limit < 4:
        raise ValueError(f"limit must be at least 4, not {limit}")
    ordered = sorted(points)
    if len(ordered) <= limit:
        return ordered
    buckets = (limit - 2) // 2
    first_x, last_x = ordered[0][0], ordered[-1][0]
    # All x equal: one slice; otherwise a point's slice is its share of the x range.
    scale = buckets / (last_x - first_x) if last_x > first_x else 0.0
    kept = [ordered[0]]
    bucket, low, high = -1, 0, 0  # the slice being read and its lowest and highest index
    for index in range(1, len(ordered) - 1):
        here = min(int((ordered[index][0] - first_x) * scale), buckets - 1)
        if here != bucket:
            if bucket >= 0:
                kept.extend(ordered[i] for i in sorted({low, high}))
            bucket, low, high = here, index, index
        elif ordered[index][1] < ordered[low][1]:
            low = index
        elif ordered[index][1] > ordered[high][1]:
            high = index
    if bucket >= 0:
        kept.extend(ordered[i] for i in sorted({low, high}))
    kept.append(ordered[-1])
    return kept


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values, 1, 2 or 5 times a power of ten apart, about ``count`` steps: the
    first at or below ``low``, the last at or above ``high``, so an axis from the first
    tick to the last covers the data."""
    if high <= low:
        high = low + 1
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    # A hair of tolerance both ends: 0.3 / 0.1 is 2.9999999999999996 in floats, and 0.3
    # must not get a tick at 0.2 below it (chart() still covers what rounding leaves).
    slack = step * 1e-9
    start = math.floor(low / step + 1e-9) * step
    # Each tick from the start (not by adding steps up), so float error does not pile up,
    # and shown to 12 significant digits (0.3, not 0.30000000000000004). Stop only once
    # the data's high end is covered: stopping near it drew 120 steps on an axis to 100.
    ticks = []
    for index in itertools.count():
        value = start + index * step
        ticks.append(float(f"{value:.12g}"))
        if value >= high - slack:
            return ticks
    raise AssertionError("unreachable")  # itertools.count() never ends


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def chart(series: list[Series], *, title: str, width: int = 520, height: int = 280) -> Markup:
    """An SVG line chart of ``series`` (x: step, y: loss) with axes, ticks and a legend.

    The plot area is the ``<rect class="plot">``; every point drawn lies inside it. Each
    series draws at most :data:`MAX_CHART_POINTS` points (:func:`downsample`), with a dot
    on each point only when it has at most :data:`MARKER_POINTS`."""
    lines = [downsample(s.points) for s in series]
    xs = [x for line in lines for x, _ in line]
    ys = [y for line in lines for _, y in line]
    if not xs:
        return Markup('<p class="empty">no metrics recorded</p>')
    left, right, top, bottom = 56, 12, 28, 40
    # Downsampling keeps each line's ends and extremes, so these are the full data's.
    low_x, high_x, low_y, high_y = min(xs), max(xs), min(ys), max(ys)
    x_ticks = _nice_ticks(low_x, high_x)
    y_ticks = _nice_ticks(low_y, high_y)
    # The ticks cover the data; min/max guard against float rounding at the ends.
    x0, x1 = min(x_ticks[0], low_x), max(x_ticks[-1], high_x)
    y0, y1 = min(y_ticks[0], low_y), max(y_ticks[-1], high_y)
    plot_w, plot_h = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / ((x1 - x0) or 1) * plot_w

    def sy(y: float) -> float:
        return top + plot_h - (y - y0) / ((y1 - y0) or 1) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
        f'<text x="{left}" y="16" class="title">{escape(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" class="plot"/>',
    ]
    for tick in x_ticks:
        parts.append(
            f'<line x1="{sx(tick):.1f}" y1="{top}" x2="{sx(tick):.1f}" y2="{top + plot_h}" '
            'class="grid"/>'
            f'<text x="{sx(tick):.1f}" y="{top + plot_h + 16}" class="tick" '
            f'text-anchor="middle">{_fmt(tick)}</text>'
        )
    for tick in y_ticks:
        parts.append(
            f'<line x1="{left}" y1="{sy(tick):.1f}" x2="{left + plot_w}" y2="{sy(tick):.1f}" '
            'class="grid"/>'
            f'<text x="{left - 6}" y="{sy(tick) + 4:.1f}" class="tick" '
            f'text-anchor="end">{_fmt(tick)}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" class="axis" '
        'text-anchor="middle">step</text>'
    )
    for index, (s, line) in enumerate(zip(series, lines, strict=True)):
        if not line:
            continue
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in line)
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{s.color}" stroke-width="2"{dash}/>'
        )
        if len(line) <= MARKER_POINTS:
            for x, y in line:
                parts.append(
                    f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{s.color}"/>'
                )
        ly = top + 4 + index * 16
        parts.append(
            f'<line x1="{left + plot_w - 150}" y1="{ly}" x2="{left + plot_w - 130}" y2="{ly}" '
            f'stroke="{s.color}" stroke-width="2"{dash}/>'
            f'<text x="{left + plot_w - 124}" y="{ly + 4}" class="legend">{escape(s.label)}</text>'
        )
    parts.append("</svg>")
    # Safe: every text in the SVG went through escape() above; the rest is numbers.
    return Markup("".join(parts))  # noqa: S704


LossPoints = tuple[list[tuple[float, float]], list[tuple[float, float]]]
"""(train, valid): (step, loss) points."""
TimelineItem = tuple[datetime, str, str, str]
"""(time, target, event kind, what happened)."""


def _read_events(
    journal: Journal, target_id: int, name: str
) -> tuple[LossPoints, list[TimelineItem]]:
    """In one pass over the target's events: the (step, value) of each finite train and
    valid loss (a diverged, NaN, loss or one an event does not carry is left off the
    chart), and the timeline's entries (status, checkpoint, cost, warning and error logs).

    The events are streamed as plain records (:meth:`Journal.iter_events`), a page at a
    time: a run of 200,000 steps is never held as ORM rows."""
    train: list[tuple[float, float]] = []
    valid: list[tuple[float, float]] = []
    timeline: list[TimelineItem] = []
    for event in journal.iter_events(target_id):
        payload = event.payload
        if event.kind == "metric":
            step = payload["step"]
            for key, points in (("train_loss", train), ("valid_loss", valid)):
                value = payload.get(key)
                if value is not None and math.isfinite(value := float(value)):
                    points.append((step, value))
        elif event.kind in _TIMELINE_KINDS or (
            event.kind == "log" and payload.get("level") in ("warning", "error")
        ):
            timeline.append((event.time, name, event.kind, describe_event(payload)))
    return (train, valid), timeline


def _loss_series(points: LossPoints, label: str, color: str) -> list[Series]:
    train, valid = points
    prefix = f"{label} " if label else ""
    return [
        Series(f"{prefix}train", train, color),
        Series(f"{prefix}valid", valid, color, dashed=True),
    ]


@dataclass(frozen=True)
class Text:
    """A text from data, cut to :data:`MAX_TEXT_CHARS` (``cut`` characters left off)."""

    shown: str
    cut: int


def _cut(text: str) -> Text:
    shown, cut = truncate(text, MAX_TEXT_CHARS)
    return Text(shown, cut)


@dataclass(frozen=True)
class Case:
    """One of the worst-scored examples, both models' answers side by side."""

    example: ExampleResult
    question: Text
    expected: Text
    prediction: Text
    baseline: Text | None
    score: float | None
    baseline_score: float | None


@dataclass(frozen=True)
class SliceTable:
    """The slices of one field: a row per value, a column per metric."""

    field: str
    metrics: list[str]
    rows: list[tuple[SliceResult, list[MetricResult | None]]]
    unsliced: int
    """Examples without a value for the field, in no slice."""


@dataclass(frozen=True)
class EvaluationView:
    """The evaluation of a target that decides its deploy (the newest), for the template."""

    row: Evaluation
    result: EvaluationResult
    judge: MetricResult | None
    slices: list[SliceTable]
    ranked_by: str | None
    """The metric the worst examples are ranked by; None when no metric scores examples."""
    cases: list[Case]
    golden_linked: bool
    """The evaluation scored the run's own golden set (its row in the datasets table)."""
    answers_from: str
    generation: str
    baseline: str
    trigger: str
    judge_model: str | None
    """Who judged: ``MODEL through PROVIDER``, or ``the endpoint of run RUN``."""
    history: list[Evaluation]
    """Every evaluation of the target, newest first."""


@dataclass(frozen=True)
class RegistryView:
    """A target's registered model version."""

    version: ModelVersion
    ref: str
    datasets: list[tuple[str, str | None, str | None, bool]]
    """(role, sha256, examples as text, whether the run's datasets table has that role with
    that hash: a link to its row)."""


def _evaluation_view(journal: Journal, run: Run, row: RunTarget) -> EvaluationView | None:
    """The target's deciding evaluation (the registered version's, else the newest), or
    None when it has none."""
    history = journal.evaluations(row.id)
    if not history:
        return None
    newest = history[-1]
    version = journal.model_version(target_id=row.id)
    if version is not None and version.evaluation_id is not None:
        newest = next((e for e in history if e.id == version.evaluation_id), newest)
    result = EvaluationResult.model_validate(newest.result)
    key = ranking_metric(result)
    cases = [
        Case(
            example=example,
            question=_cut(example.question),
            expected=_cut(example.expected),
            prediction=_cut(example.prediction),
            baseline=None if example.baseline is None else _cut(example.baseline),
            score=None if key is None else example.scores.get(key),
            baseline_score=None if key is None else example.baseline_scores.get(key),
        )
        for example in failure_cases(result, WORST_EXAMPLES)
    ]
    settings = newest.settings or {}
    generation = settings.get("generation") or {}
    golden = run.datasets.get("golden_set") or {}
    return EvaluationView(
        row=newest,
        result=result,
        judge=result.metric("llm_judge"),
        slices=_slice_tables(result),
        ranked_by=key,
        cases=cases,
        golden_linked=golden.get("sha256") == newest.golden_sha256,
        answers_from=ANSWER_ROUTES.get(str(settings.get("answers_from")), "-"),
        generation=f"{generation.get('decoding', 'greedy')} decoding, at most "
        f"{generation.get('max_new_tokens', '-')} new tokens",
        baseline=str(settings.get("baseline") or "none"),
        trigger="right after training" if newest.trigger == "run" else "with tunefleet eval",
        judge_model=_judge_model((settings.get("evaluation") or {}).get("judge")),
        history=list(reversed(history)),
    )


def _judge_model(judge: Any) -> str | None:
    if not isinstance(judge, dict):
        return None
    if judge.get("endpoint"):
        return f"the endpoint of run {judge['endpoint']}"
    return f"{judge.get('model')} through {judge.get('provider')}"


def _slice_tables(result: EvaluationResult) -> list[SliceTable]:
    tables = []
    for field in dict.fromkeys(s.field for s in result.slices):
        group = [s for s in result.slices if s.field == field]
        names = list(dict.fromkeys(m.metric for s in group for m in s.metrics))
        rows = [
            (s, [next((m for m in s.metrics if m.metric == n), None) for n in names]) for s in group
        ]
        tables.append(SliceTable(field, names, rows, result.unsliced.get(field, 0)))
    return tables


def format_change(metric: str, value: float | None, baseline: float | None) -> str:
    """The new model's score minus the baseline's, signed (``+0.250``); ``"-"`` when
    either is missing."""
    if value is None or baseline is None:
        return "-"
    if value == baseline:
        return format_score(metric, 0.0)
    change = format_score(metric, abs(value - baseline))
    return f"{'-' if value < baseline else '+'}{change}"


def _registry_view(journal: Journal, run: Run, row: RunTarget) -> RegistryView | None:
    version = journal.model_version(target_id=row.id)
    if version is None:
        return None
    datasets = []
    for role, info in (version.datasets or {}).items():
        info = info or {}
        sha = info.get("sha256")
        examples = info.get("examples")
        linked = sha is not None and (run.datasets.get(role) or {}).get("sha256") == sha
        datasets.append((role, sha, f"{examples:,}" if isinstance(examples, int) else None, linked))
    return RegistryView(version=version, ref=model_ref(version), datasets=datasets)


def render_report(journal: Journal, run: Run) -> str:
    """The report's HTML: a whole page, self-contained (no script, nothing loaded), every
    value from the journal escaped."""
    progress = run_progress(journal, run)
    rows = journal.targets(run.id)
    cards = []
    timeline: list[TimelineItem] = []
    comparison: list[Series] = []
    for index, (row, target) in enumerate(zip(rows, progress.targets, strict=True)):
        color = _PALETTE[index % len(_PALETTE)]
        losses, happened = _read_events(journal, row.id, target.name)
        timeline.extend(happened)
        cards.append(
            {
                "t": target,
                "chart": chart(_loss_series(losses, "", color), title="loss"),
                "registry": _registry_view(journal, run, row),
                "evaluation": _evaluation_view(journal, run, row),
            }
        )
        comparison.extend(_loss_series(losses, target.name, color))
    timeline.sort(key=lambda item: item[0])
    environment = Environment(autoescape=True, undefined=StrictUndefined)
    environment.filters["score"] = format_score
    environment.filters["bound"] = format_threshold
    environment.filters["change"] = format_change
    environment.filters["judge_summary"] = judge_summary
    template = environment.from_string(
        files("tunefleet.run").joinpath("report.html.j2").read_text(encoding="utf-8")
    )
    html: str = template.render(
        run=progress,
        # Data files only: the kept JSON Schema (role json_schema) has no counts or hash.
        datasets={role: d for role, d in run.datasets.items() if "sha256" in d},
        metric_descriptions=METRIC_DESCRIPTIONS,
        evaluation_spec=bool(run.spec.get("evaluation")) if isinstance(run.spec, dict) else False,
        cards=cards,
        comparison=chart(comparison, title="loss by target", width=880, height=340)
        if len(cards) > 1
        else None,
        timeline=timeline,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
    return html


def write_report(journal: Journal, run: Run, path: Path) -> Path:
    """Write the report to ``path`` atomically (a reader never sees half a page)."""
    html = render_report(journal, run)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(html, encoding="utf-8")
    os.replace(partial, path)
    return path

"""`tunefleet report RUN`: one self-contained HTML page per run.

The page has no scripts and loads nothing: the loss curves are inline SVG drawn here, the
styles are inline, so it can be attached to a ticket or an audit and opened offline years
later. Every value from the journal goes through Jinja2's autoescaping.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

from jinja2 import Environment, StrictUndefined
from markupsafe import Markup, escape

from tunefleet.run.progress import describe_event, run_progress
from tunefleet.state.journal import Journal
from tunefleet.state.models import Run

__all__ = ["render_report", "write_report"]

_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b")


@dataclass(frozen=True)
class Series:
    label: str
    points: list[tuple[float, float]]
    color: str
    dashed: bool = False


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (1, 2 or 5 times a power of ten apart)."""
    if high <= low:
        high = low + 1
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value <= high + step / 2:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def chart(series: list[Series], *, title: str, width: int = 520, height: int = 280) -> Markup:
    """An SVG line chart of ``series`` (x: step, y: loss) with axes, ticks and a legend."""
    points = [p for s in series for p in s.points]
    if not points:
        return Markup('<p class="empty">no metrics recorded</p>')
    left, right, top, bottom = 56, 12, 28, 40
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    x_ticks = _nice_ticks(min(xs), max(xs))
    y_ticks = _nice_ticks(min(ys), max(ys))
    x0, x1, y0, y1 = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]
    plot_w, plot_h = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / ((x1 - x0) or 1) * plot_w

    def sy(y: float) -> float:
        return top + plot_h - (y - y0) / ((y1 - y0) or 1) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
        f'<text x="{left}" y="16" class="title">{escape(title)}</text>',
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
    for index, s in enumerate(series):
        if not s.points:
            continue
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in sorted(s.points))
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{s.color}" stroke-width="2"{dash}/>'
        )
        for x, y in s.points:
            parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{s.color}"/>')
        ly = top + 4 + index * 16
        parts.append(
            f'<line x1="{left + plot_w - 150}" y1="{ly}" x2="{left + plot_w - 130}" y2="{ly}" '
            f'stroke="{s.color}" stroke-width="2"{dash}/>'
            f'<text x="{left + plot_w - 124}" y="{ly + 4}" class="legend">{escape(s.label)}</text>'
        )
    parts.append("</svg>")
    # Safe: every text in the SVG went through escape() above; the rest is numbers.
    return Markup("".join(parts))  # noqa: S704


def _points(events: list[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    """(step, value) for each finite value; a diverged (NaN) loss is left off the chart."""
    found = ((e["step"], e.get(key)) for e in events)
    return [(step, float(v)) for step, v in found if v is not None and math.isfinite(float(v))]


def _loss_series(events: list[dict[str, Any]], label: str, color: str) -> list[Series]:
    train, valid = _points(events, "train_loss"), _points(events, "valid_loss")
    prefix = f"{label} " if label else ""
    return [
        Series(f"{prefix}train", train, color),
        Series(f"{prefix}valid", valid, color, dashed=True),
    ]


def render_report(journal: Journal, run: Run) -> str:
    """The report's HTML."""
    progress = run_progress(journal, run)
    rows = journal.targets(run.id)
    cards = []
    timeline = []
    comparison: list[Series] = []
    for index, (row, target) in enumerate(zip(rows, progress.targets, strict=True)):
        color = _PALETTE[index % len(_PALETTE)]
        events = journal.events(row.id)
        metrics = [e.payload for e in events if e.kind == "metric"]
        cards.append({"t": target, "chart": chart(_loss_series(metrics, "", color), title="loss")})
        comparison.extend(_loss_series(metrics, target.name, color))
        for event in events:
            if event.kind in ("status", "checkpoint", "cost") or (
                event.kind == "log" and event.payload.get("level") in ("warning", "error")
            ):
                timeline.append(
                    (event.time, target.name, event.kind, describe_event(event.payload))
                )
    timeline.sort(key=lambda item: item[0])
    template = Environment(autoescape=True, undefined=StrictUndefined).from_string(
        files("tunefleet.run").joinpath("report.html.j2").read_text(encoding="utf-8")
    )
    html: str = template.render(
        run=progress,
        datasets=run.datasets,
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

"""How big and how slow the HTML report of a long run is.

    .venv/bin/python benchmarks/report_size.py [--events N] [--targets T]

Builds a journal (a SQLite file in a temporary folder) with one run whose targets each hold
N metric events (a train loss every step, a valid loss every 100th step, the last event
carrying only the valid loss), renders `tunefleet report` for it and prints the page's size,
the render time and how many points its SVG charts draw. The figures also go to
.bench/report_size.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import random
import re
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from tunefleet.events import JobState, MetricEvent, StatusEvent
from tunefleet.run.report import render_report
from tunefleet.state import Owner, open_journal
from tunefleet.state.journal import Journal

PAGE = 1000
"""Events per record_events call while building the journal (the engine stores pages)."""


def run_key(prefix: str, attempt: int) -> str:
    return f"{prefix}-{attempt}"


def build(journal: Journal, run_id: str, targets: int, events: int) -> None:
    """Record ``targets`` targets of ``events`` metric events each, then a final status."""
    journal.ensure_run(
        run_id=run_id,
        name="bench",
        identity="b" * 64,
        spec={},
        spec_source="bench.yaml",
        datasets={},
    )
    owner = Owner.here()
    now = datetime.now(UTC)
    rng = random.Random(18)
    for index in range(targets):
        name = f"t{index}"
        target, _ = journal.ensure_target(
            run_id=run_id,
            name=name,
            config_hash=f"{index:064d}",
            run_key_for=functools.partial(run_key, f"{run_id}-{name}"),
            provider="fake",
            region=None,
            plan={"target": name, "provider": "fake", "region": None, "options": {}},
        )
        journal.acquire(target.id, owner)
        for start in range(0, events, PAGE):
            page = []
            for step in range(start, min(start + PAGE, events)):
                # A decaying loss with noise and the odd spike, as real training draws.
                loss = 2.5 * math.exp(-step / (events / 4)) + 0.3 + rng.gauss(0, 0.05)
                if rng.random() < 0.001:
                    loss += 1.0
                last = step == events - 1
                page.append(
                    MetricEvent(
                        id=f"m{step}",
                        time=now,
                        step=step,
                        total_steps=events,
                        train_loss=None if last else loss,
                        valid_loss=loss + 0.1 if last or step % 100 == 0 else None,
                    )
                )
            journal.record_events(target.id, owner, page, str(start + len(page)))
        journal.record_events(
            target.id,
            owner,
            [StatusEvent(id="done", time=now, state=JobState.SUCCEEDED, message="done")],
            "end",
        )
        journal.update_target(target.id, owner, phase="done", state="succeeded")


def svg_points(html: str) -> tuple[int, int]:
    """(polyline vertices, circle markers) in every SVG chart of ``html``."""
    vertices = sum(len(p.split()) for p in re.findall(r'<polyline points="([^"]*)"', html))
    return vertices, html.count("<circle ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000, help="metric events per target")
    parser.add_argument("--targets", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        journal = open_journal(f"sqlite:///{Path(folder) / 'journal.db'}")
        began = time.perf_counter()
        build(journal, "bench-report", args.targets, args.events)
        built = time.perf_counter() - began
        began = time.perf_counter()
        html = render_report(journal, journal.run("bench-report"))
        rendered = time.perf_counter() - began
        journal.close()
    vertices, markers = svg_points(html)
    size = len(html.encode("utf-8"))
    figures = {
        "targets": args.targets,
        "events_per_target": args.events,
        "html_bytes": size,
        "render_seconds": round(rendered, 3),
        "svg_points": vertices + markers,
        "polyline_vertices": vertices,
        "circle_markers": markers,
        "build_seconds": round(built, 1),
    }
    print(f"journal built in {built:.1f} s ({args.targets} x {args.events:,} metric events)")
    print(f"report: {size:,} bytes ({size / 1_000_000:.2f} MB), rendered in {rendered:.2f} s")
    print(f"SVG points: {vertices + markers:,} ({vertices:,} vertices, {markers:,} markers)")
    out = Path(".bench") / "report_size.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

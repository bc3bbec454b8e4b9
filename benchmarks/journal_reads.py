"""How journal reads scale with a run's size: the live view, `logs`, `runs`.

    .venv/bin/python benchmarks/journal_reads.py [--sizes 20000,200000] [--runs 2000]

Builds SQLite journals under .bench/ (one target with N events: metrics, some log lines,
no cost event, the newest metric holding only valid_loss), then measures

* one live-view refresh (``run_progress``), and the same refresh through the queries it
  made before (the newest metric and cost found by walking the (target, seq) index, a
  ``count(*)`` of the events), for comparison;
* ``tunefleet logs RUN --tail 100`` in-process;
* the full ``tunefleet logs RUN`` in a subprocess: wall time and peak RSS, and the same for
  the former way (every event as an ORM object first);
* ``tunefleet runs`` with many runs: a page of 20 and of 500, now and the former way
  (each run's progress on its own, several queries per target).

Prints a Markdown table and writes .bench/journal_reads.json. Figures: docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from tunefleet.events import LogEvent, MetricEvent
from tunefleet.state import Journal, Owner, open_journal
from tunefleet.state.models import Event

BENCH = Path(".bench")
PAGE = 1000
_OLD_LOGS = """
import sys
from tunefleet.cli.runview import event_line
from tunefleet.state import open_journal
journal = open_journal(sys.argv[1])
for row in journal.targets(journal.run(sys.argv[2]).id):
    for event in journal.events(row.id):
        print(event_line(row.name, event))
"""


def _fresh(name: str) -> str:
    BENCH.mkdir(exist_ok=True)
    path = BENCH / name
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{path}"


def _run(journal: Journal, run_id: str, created: int = 0) -> int:
    journal.ensure_run(
        run_id=run_id, name=run_id.rsplit("-", 1)[0], identity=run_id.ljust(64, "0"), spec={},
        spec_source="bench.yaml", datasets={},
    )  # fmt: skip
    target, _ = journal.ensure_target(
        run_id=run_id, name="t", config_hash="0" * 64, run_key_for=lambda a: f"{run_id}-{a}",
        provider="fake", region=None,
        plan={"target": "t", "provider": "fake", "region": None, "options": {}},
    )  # fmt: skip
    return target.id


def build_events(events: int) -> tuple[str, str]:
    """A journal with one run whose one target has ``events`` events; (url, run id)."""
    url = _fresh(f"journal-reads-{events}.db")
    run_id = f"reads-{events}"
    with open_journal(url) as journal:
        target_id = _run(journal, run_id)
        owner = Owner.here()
        journal.acquire(target_id, owner)
        start = datetime(2026, 1, 1, tzinfo=UTC)
        page: list[Any] = []
        for i in range(events):
            when = start + timedelta(seconds=i)
            if i == events - 1:  # an evaluation line: valid_loss only
                page.append(MetricEvent(id=f"e{i}", time=when, step=i, valid_loss=0.5))
            elif i % 10 == 9:
                page.append(LogEvent(id=f"e{i}", time=when, message=f"checkpointing {i}"))
            else:
                page.append(
                    MetricEvent(
                        id=f"e{i}", time=when, step=i, total_steps=events,
                        train_loss=1 / (i + 1), learning_rate=1e-4,
                    )
                )  # fmt: skip
            if len(page) == PAGE:
                journal.record_events(target_id, owner, page, str(i))
                page = []
        if page:
            journal.record_events(target_id, owner, page, str(events))
        journal.release(target_id, owner)
    return url, run_id


def build_runs(count: int) -> str:
    """A journal of ``count`` runs, one target each with a few events."""
    url = _fresh(f"journal-reads-runs-{count}.db")
    with open_journal(url) as journal:
        owner = Owner.here()
        now = datetime.now(UTC)
        for i in range(count):
            target_id = _run(journal, f"many-{i:08d}")
            journal.acquire(target_id, owner)
            journal.record_events(
                target_id,
                owner,
                [MetricEvent(id=f"m{s}", time=now, step=s, train_loss=1.0) for s in range(5)],
                "5",
            )
            journal.release(target_id, owner)
    return url


def _median_ms(call: Callable[[], object], repeat: int) -> float:
    call()  # warm: statement caches, imports
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


def _old_refresh(journal: Journal, run_id: str) -> None:
    """The live view's former reads: per target the newest metric and cost by walking the
    (target, seq) index (as before the (target, kind, seq) index), a count(*), artifacts,
    model version and evaluations."""
    for row in journal.targets(run_id):
        with journal._tx() as session:  # the former queries, as they were
            for kind in ("metric", "cost"):
                session.execute(
                    select(Event)
                    .with_hint(Event, "INDEXED BY ix_events_target_seq", "sqlite")
                    .where(Event.run_target_id == row.id, Event.kind == kind)
                    .order_by(Event.seq.desc())
                    .limit(1)
                ).scalar_one_or_none()
        with journal._tx() as session:
            session.execute(
                select(func.count()).select_from(Event).where(Event.run_target_id == row.id)
            ).scalar_one()
        journal.artifacts(row.id)
        journal.model_version(target_id=row.id)
        journal.evaluations(row.id)


def _cli(*args: str) -> float:
    """Seconds one in-process `tunefleet` command takes, its output thrown away."""
    from tunefleet.cli import main

    began = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        status = main(list(args))
    assert status == 0, args
    return time.perf_counter() - began


def _child(argv: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of a subprocess whose stdout goes to /dev/null."""
    began = time.perf_counter()
    with open(os.devnull, "wb") as sink:
        process = subprocess.Popen(argv, stdout=sink)
        _, status, usage = os.wait4(process.pid, 0)
    assert status == 0, argv
    return time.perf_counter() - began, usage.ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="20000,200000", help="events per run, comma-separated")
    parser.add_argument("--runs", type=int, default=2000, help="runs for the `runs` figures")
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    results: dict[str, Any] = {"sizes": {}, "runs": {}}
    rows: list[tuple[str, str, str]] = []
    for size in (int(s) for s in args.sizes.split(",")):
        began = time.perf_counter()
        url, run_id = build_events(size)
        built = time.perf_counter() - began
        with open_journal(url) as journal:
            run = journal.run(run_id)
            from tunefleet.run import run_progress

            progress = run_progress(journal, run)
            assert progress.targets[0].events == size
            assert progress.targets[0].train_loss is not None  # last known, not blank
            refresh = _median_ms(partial(run_progress, journal, run), args.repeat)
            old_refresh = _median_ms(partial(_old_refresh, journal, run_id), args.repeat)
        tail = statistics.median(
            _cli("--state", url, "logs", run_id, "--tail", "100") * 1000 for _ in range(5)
        )
        full_s, full_mb = _child(
            [sys.executable, "-m", "tunefleet", "--state", url, "logs", run_id]
        )
        old_s, old_mb = _child([sys.executable, "-c", _OLD_LOGS, url, run_id])
        results["sizes"][size] = {
            "build_s": round(built, 2),
            "refresh_ms": round(refresh, 2),
            "refresh_old_queries_ms": round(old_refresh, 2),
            "logs_tail_100_ms": round(tail, 1),
            "logs_full_s": round(full_s, 2),
            "logs_full_peak_mb": round(full_mb, 1),
            "logs_full_old_s": round(old_s, 2),
            "logs_full_old_peak_mb": round(old_mb, 1),
        }
        rows += [
            (f"live-view refresh, {size:,} events", f"{old_refresh:.2f} ms", f"{refresh:.2f} ms"),
            (f"`logs --tail 100`, {size:,} events", "n/a (new)", f"{tail:.0f} ms (whole CLI)"),
            (
                f"`logs`, {size:,} events",
                f"{old_s:.2f} s, {old_mb:.0f} MB",
                f"{full_s:.2f} s, {full_mb:.0f} MB",
            ),
        ]
    url = build_runs(args.runs)
    with open_journal(url) as journal:
        from tunefleet.run.progress import runs_progress

        for limit in (20, 500):
            new = _median_ms(lambda: runs_progress(journal, journal.runs(limit)), 5)  # noqa: B023
            old = _median_ms(
                lambda: [_old_refresh(journal, r.id) for r in journal.runs(limit)],  # noqa: B023
                5,
            )
            cli = _cli("--state", url, "runs", "--limit", str(limit), "--json") * 1000
            results["runs"][limit] = {
                "journal_runs": args.runs,
                "page_ms": round(new, 1),
                "page_old_ms": round(old, 1),
                "cli_json_ms": round(cli, 1),
            }
            rows.append(
                (
                    f"`runs --limit {limit}`, {args.runs:,} runs (reads)",
                    f"{old:.1f} ms ({old / limit:.2f} ms/run)",
                    f"{new:.1f} ms ({new / limit:.2f} ms/run); CLI --json {cli:.0f} ms",
                )
            )
    print("| measure | before | after |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    out = BENCH / "journal_reads.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()

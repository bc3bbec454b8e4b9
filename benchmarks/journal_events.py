"""How fast the journal stores provider events (pages of 100, as the engine does).

    .venv/bin/python benchmarks/journal_events.py [--state URL] [--events N]

Without --state it uses a fresh SQLite file under .bench/. Figures: docs/performance.md.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from pathlib import Path

from tunefleet.events import MetricEvent
from tunefleet.state import Owner, open_journal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state", help="journal URL (default: a fresh SQLite file)")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--page", type=int, default=100)
    args = parser.parse_args()
    url = args.state
    if url is None:
        path = Path(".bench") / "journal-bench.db"
        path.parent.mkdir(exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    journal = open_journal(url)
    stamp = time.strftime("%Y%m%d%H%M%S")
    run_id = f"bench-{stamp}"
    journal.ensure_run(
        run_id=run_id, name="bench", identity=run_id.ljust(64, "0"), spec={},
        spec_source="bench", datasets={},
    )  # fmt: skip
    target, _ = journal.ensure_target(
        run_id=run_id, name="t", config_hash="0" * 64, run_key_for=lambda a: f"{run_id}-{a}",
        provider="fake", region=None, plan={},
    )  # fmt: skip
    owner = Owner.here()
    journal.acquire(target.id, owner)
    now = datetime.now(UTC)
    events = [
        MetricEvent(id=f"e{i}", time=now, step=i, total_steps=args.events, train_loss=1 / (i + 1))
        for i in range(args.events)
    ]
    began = time.perf_counter()
    for start in range(0, args.events, args.page):
        page = events[start : start + args.page]
        journal.record_events(target.id, owner, page, str(start + len(page)))
    stored = time.perf_counter() - began
    began = time.perf_counter()
    again = journal.record_events(target.id, owner, events[: args.page], "again")
    replay = time.perf_counter() - began
    assert again == 0 and journal.event_count(target.id) == args.events
    print(f"journal: {journal.display_url.split('?')[0].split('://')[0]}")
    print(f"stored {args.events:,} events in {stored:.2f} s: {args.events / stored:,.0f} events/s")
    print(f"re-reading a page of {args.page} stores nothing and takes {replay * 1000:.1f} ms")


if __name__ == "__main__":
    main()

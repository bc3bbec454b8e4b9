"""Journal reads that stay flat as runs grow, on SQLite and PostgreSQL: last known losses,
event counts, the newest cost, streamed and tailed events, paged runs, and the migration
that fills what an existing journal lacks."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from tunefleet.cli.runview import line
from tunefleet.events import CostEvent, LogEvent, MetricEvent
from tunefleet.run.progress import run_progress, runs_progress, target_progress
from tunefleet.state import Journal, Owner, open_journal
from tunefleet.state.models import UTCDateTime

MIGRATIONS = Path(__import__("tunefleet.state", fromlist=["x"]).__file__).parent / "migrations"
T0 = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)


def _run(journal: Journal, run_id: str = "demo-00000001") -> str:
    journal.ensure_run(
        run_id=run_id, name="demo", identity=run_id.ljust(64, "0"), spec={"name": "demo"},
        spec_source="spec.yaml", datasets={},
    )  # fmt: skip
    return run_id


def _target(journal: Journal, run_id: str, name: str = "a") -> tuple[int, Owner]:
    row, _ = journal.ensure_target(
        run_id=run_id, name=name, config_hash="c".ljust(64, "0"),
        run_key_for=lambda attempt: f"{run_id}-{name}-{attempt}", provider="fake",
        region=None, plan={"target": name, "provider": "fake", "region": None, "options": {}},
    )  # fmt: skip
    owner = Owner.here()
    assert journal.acquire(row.id, owner)
    return row.id, owner


def test_each_loss_shows_its_last_known_value(journal_url: str) -> None:
    with open_journal(journal_url) as journal:
        target_id, owner = _target(journal, _run(journal))
        assert journal.latest_metric_values(target_id) == {}
        assert target_progress(journal, journal.target(target_id)).train_loss is None
        first = [
            MetricEvent(
                id="m1", time=T0, step=1, total_steps=4, train_loss=1.5,
                train_token_accuracy=0.5,
            ),
            MetricEvent(id="m2", time=T0, step=2, train_loss=float("nan")),
            MetricEvent(id="m3", time=T0, step=2, train_loss=1.25),
        ]  # fmt: skip
        assert journal.record_events(target_id, owner, first, "3") == 3
        # The newest metric has only valid_loss (an evaluation line): the train loss and
        # accuracy shown are those of the step before, not blanks.
        evaluation = MetricEvent(id="v3", time=T0, step=3, valid_loss=0.75)
        assert journal.record_events(target_id, owner, [evaluation], "4") == 1
        # A page read again (an older metric) changes nothing.
        assert journal.record_events(target_id, owner, first[:1], "4") == 0

        assert journal.latest_metric_values(target_id) == {
            "step": 3, "total_steps": 4, "train_loss": 1.25, "valid_loss": 0.75,
            "train_token_accuracy": 0.5,
        }  # fmt: skip
        progress = target_progress(journal, journal.target(target_id))
        assert (progress.step, progress.total_steps) == (3, 4)
        assert (progress.train_loss, progress.valid_loss, progress.token_accuracy) == (
            1.25,
            0.75,
            0.5,
        )
        assert line(progress) == "a: pending, step 3/4, train_loss 1.2500, valid_loss 0.7500"

        diverged = MetricEvent(id="m4", time=T0, step=4, train_loss=float("nan"))
        journal.record_events(target_id, owner, [diverged], "5")
        values = journal.latest_metric_values(target_id)
        assert math.isnan(values["train_loss"]) and values["valid_loss"] == 0.75


def test_event_count_and_newest_cost_follow_what_was_stored(journal_url: str) -> None:
    with open_journal(journal_url) as journal:
        run_id = _run(journal)
        target_id, owner = _target(journal, run_id)
        other_id, other_owner = _target(journal, run_id, "b")
        logs = [LogEvent(id=f"l{i}", time=T0, message=f"line {i}") for i in range(5)]
        assert journal.record_events(target_id, owner, logs, "5") == 5
        assert journal.latest_event(target_id, "cost") is None
        progress = target_progress(journal, journal.target(target_id))
        assert (progress.events, progress.cost, progress.currency) == (5, None, "USD")

        costs = [
            CostEvent(id="c1", time=T0, amount=1.0, currency="EUR", basis="1 h"),
            LogEvent(id="l5", time=T0, message="after the first cost"),
            CostEvent(id="c2", time=T0, amount=2.5, currency="EUR", basis="2.5 h"),
            CostEvent(id="c2", time=T0, amount=9.0, currency="EUR", basis="same id"),
        ]
        assert journal.record_events(target_id, owner, costs + logs, "9") == 3
        journal.record_events(other_id, other_owner, [LogEvent(id="x", time=T0, message="")], "1")
        assert journal.event_count(target_id) == 8 and journal.event_count(other_id) == 1
        newest = journal.latest_event(target_id, "cost")
        assert newest is not None and newest.payload["amount"] == 2.5
        (a, b) = run_progress(journal, journal.run(run_id)).targets
        assert (a.name, a.events, a.cost, a.currency) == ("a", 8, 2.5, "EUR")
        assert (b.name, b.events, b.cost) == ("b", 1, None)


def test_events_stream_in_pages_and_tail_reads_only_the_last(journal_url: str) -> None:
    with open_journal(journal_url) as journal:
        target_id, owner = _target(journal, _run(journal))
        events = [
            LogEvent(id=f"e{i}", time=T0 + timedelta(minutes=i), message=f"line {i}")
            for i in range(10)
        ]
        journal.record_events(target_id, owner, events, "10")
        streamed = list(journal.iter_events(target_id, page=3))
        assert [e.payload["message"] for e in streamed] == [f"line {i}" for i in range(10)]
        assert [e.seq for e in streamed] == sorted(e.seq for e in streamed)
        assert streamed[0].kind == "log" and streamed[0].time == T0
        assert journal.last_seq(target_id) == streamed[-1].seq

        after = list(journal.iter_events(target_id, after_seq=streamed[6].seq, page=2))
        assert [e.payload["message"] for e in after] == ["line 7", "line 8", "line 9"]
        since = T0 + timedelta(minutes=4)
        recent = list(journal.iter_events(target_id, since=since, page=4))
        assert [e.payload["message"] for e in recent] == [f"line {i}" for i in range(4, 10)]

        assert [e.payload["message"] for e in journal.tail_events(target_id, 3)] == [
            "line 7",
            "line 8",
            "line 9",
        ]
        assert len(journal.tail_events(target_id, 100)) == 10
        assert journal.tail_events(target_id, 0) == []
        late = T0 + timedelta(minutes=8)
        assert [e.payload["message"] for e in journal.tail_events(target_id, 5, since=late)] == [
            "line 8",
            "line 9",
        ]
        assert list(journal.iter_events(target_id, since=T0 + timedelta(days=1))) == []


def test_runs_page_newest_first_without_gaps_or_repeats(journal_url: str) -> None:
    with open_journal(journal_url) as journal:
        ids = [_run(journal, f"demo-0000000{i}") for i in range(5)]
        for run_id in ids:
            _target(journal, run_id, "a")
        _target(journal, ids[2], "b")
        # Two runs created in the same instant are told apart by id, not skipped.
        same = datetime(2026, 1, 1, tzinfo=UTC)
        runs = sa.table(
            "runs", sa.column("id", sa.String()), sa.column("created_at", UTCDateTime())
        )
        engine = sa.create_engine(journal.url)
        with engine.begin() as connection:
            connection.execute(
                sa.update(runs).where(runs.c.id.in_(ids[1:3])).values(created_at=same)
            )
        engine.dispose()
        newest_first = [r.id for r in journal.runs()]
        assert len(newest_first) == 5 and set(newest_first) == set(ids)
        pages: list[list[str]] = []
        before: str | None = None
        while page := journal.runs(2, before=before):
            pages.append([r.id for r in page])
            before = page[-1].id
        assert [len(p) for p in pages] == [2, 2, 1]
        assert [run_id for p in pages for run_id in p] == newest_first

        listed = runs_progress(journal, journal.runs())
        assert [p.id for p in listed] == newest_first
        assert listed == [run_progress(journal, journal.run(run_id)) for run_id in newest_first]
        assert {p.id: [t.name for t in p.targets] for p in listed}[ids[2]] == ["a", "b"]


def test_the_migration_counts_and_folds_the_events_of_an_existing_journal(
    journal_url: str,
) -> None:
    engine = sa.create_engine(journal_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0003")  # a journal written before the counters existed
        meta = sa.MetaData()
        meta.reflect(connection, only=["runs", "run_targets", "events"])
        runs, targets, events = (meta.tables[n] for n in ("runs", "run_targets", "events"))
        connection.execute(
            runs.insert().values(
                id="old-1", name="old", identity="i" * 64, spec={}, spec_source="s",
                datasets={}, created_at=T0, created_by="me",
            )
        )  # fmt: skip
        for target_id, name in ((1, "a"), (2, "b")):
            connection.execute(
                targets.insert().values(
                    id=target_id, run_id="old-1", name=name, attempt=1, run_key=f"k{name}",
                    config_hash="c", provider="fake", phase="watching",
                    plan={"target": name, "provider": "fake", "region": None, "options": {}},
                    cancel_requested=False, created_at=T0, updated_at=T0,
                )
            )  # fmt: skip
        payloads = [
            {"kind": "metric", "step": 1, "train_loss": 2.0, "valid_loss": None},
            {"kind": "log", "message": "hello"},
            {"kind": "metric", "step": 2, "train_loss": "NaN", "valid_loss": 1.5},
            {"kind": "metric", "step": 3, "train_loss": 1.0},
        ]
        for i, payload in enumerate(payloads):
            connection.execute(
                events.insert().values(
                    run_target_id=1, event_id=f"e{i}", kind=payload["kind"], time=T0,
                    payload={"id": f"e{i}", "time": T0.isoformat(), **payload},
                )
            )  # fmt: skip
    engine.dispose()

    with open_journal(journal_url) as journal:
        assert journal.event_count(1) == 4 and journal.event_count(2) == 0
        assert journal.latest_metric_values(1) == {"step": 3, "train_loss": 1.0, "valid_loss": 1.5}
        assert journal.latest_metric_values(2) == {}
        (a, b) = run_progress(journal, journal.run("old-1")).targets
        assert (a.step, a.train_loss, a.valid_loss, a.events) == (3, 1.0, 1.5, 4)
        assert (b.step, b.events) == (None, 0)

"""The journal on SQLite and on a real PostgreSQL server: schema, leases, events, audit."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from tunefleet.errors import LeaseLostError, RunNotFoundError, StateError, UsageError
from tunefleet.events import LogEvent
from tunefleet.state import Journal, Owner, open_journal
from tunefleet.state.database import SCHEMA_REVISION
from tunefleet.state.models import Base

MIGRATIONS = Path(__import__("tunefleet.state", fromlist=["x"]).__file__).parent / "migrations"


def _run(journal: Journal, run_id: str = "demo-00000001") -> str:
    journal.ensure_run(
        run_id=run_id,
        name="demo",
        identity=run_id.ljust(64, "0"),
        spec={"name": "demo"},
        spec_source="spec.yaml",
        datasets={},
    )
    return run_id


def _target(journal: Journal, run_id: str, name: str = "a", config: str = "c1"):
    row, _ = journal.ensure_target(
        run_id=run_id,
        name=name,
        config_hash=config.ljust(64, "0"),
        run_key_for=lambda attempt: f"{run_id}-{name}-{config}-{attempt}",
        provider="fake",
        region=None,
        plan={"target": name, "provider": "fake", "region": None, "options": {}},
    )
    return row


def _raw(journal_url: str, sql: str) -> None:
    engine = sqlalchemy.create_engine(journal_url)
    with engine.begin() as connection:
        connection.exec_driver_sql(sql)
    engine.dispose()


def test_migrations_create_exactly_the_models(journal_url: str) -> None:
    journal = open_journal(journal_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_REVISION
    engine = sqlalchemy.create_engine(journal_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        assert compare_metadata(context, Base.metadata) == []
        version = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    assert version == SCHEMA_REVISION
    engine.dispose()
    journal.close()
    open_journal(journal_url).close()  # opening a migrated journal again is a no-op


def test_a_journal_from_a_newer_tunefleet_is_refused(journal_url: str) -> None:
    open_journal(journal_url).close()
    _raw(journal_url, "UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(StateError, match="schema 9999, written by a newer tunefleet"):
        open_journal(journal_url)


def test_unreachable_database_says_so_without_the_password() -> None:
    url = "postgresql://alice:s3cret-pw@127.0.0.1:1/journal"
    with pytest.raises(StateError) as caught:
        open_journal(url)
    message = str(caught.value)
    assert (
        "cannot open the journal at postgresql+psycopg://alice:***@127.0.0.1:1/journal" in message
    )
    assert "s3cret" not in message and "\n" not in message


def test_default_journal_lives_in_the_user_state_dir(tmp_path: Path) -> None:
    code = "from tunefleet.state import resolve_state_url; print(resolve_state_url())"
    env = {"HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state"), "PATH": "/usr/bin"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert result.stdout.strip() == f"sqlite:///{tmp_path / 'state' / 'tunefleet' / 'journal.db'}"


def test_runs_are_found_by_id_prefix_or_name(journal_url: str) -> None:
    with open_journal(journal_url) as journal:
        _run(journal, "demo-aaaa0001")
        _run(journal, "demo-aaaa0002")
        assert journal.run("demo-aaaa0001").id == "demo-aaaa0001"
        assert journal.run("demo-aaaa0002"[:-1] + "2").id == "demo-aaaa0002"
        assert journal.run("demo").id == "demo-aaaa0002"  # the newest of that name
        with pytest.raises(
            RunNotFoundError, match="ambiguous: it matches demo-aaaa0001, demo-aaaa0002"
        ):
            journal.run("demo-aaaa")
        with pytest.raises(RunNotFoundError, match="see `tunefleet runs`"):
            journal.run("nope")
        with pytest.raises(RunNotFoundError):
            journal.run("demo_%")  # LIKE wildcards in a reference match nothing


def test_ensure_run_and_target_are_idempotent(journal_url: str) -> None:
    with open_journal(journal_url) as journal:
        run_id = _run(journal)
        _, created = journal.ensure_run(
            run_id=run_id, name="demo", identity=run_id.ljust(64, "0"), spec={},
            spec_source="x", datasets={},
        )  # fmt: skip
        assert not created
        first = _target(journal, run_id)
        assert _target(journal, run_id).id == first.id
        with pytest.raises(UsageError, match="still active"):
            _target(journal, run_id, config="c2")  # a changed target while the first runs
        owner = Owner.here()
        assert journal.acquire(first.id, owner)
        journal.update_target(first.id, owner, phase="done", state="failed")
        second = _target(journal, run_id, config="c2")
        assert (second.attempt, second.run_key) == (2, f"{run_id}-a-c2-2")
        assert [t.id for t in journal.targets(run_id)] == [second.id]
        assert len(journal.targets(run_id, all_attempts=True)) == 2


def test_leases_keep_one_driver_per_target(journal_url: str) -> None:
    with open_journal(journal_url) as journal:
        target = _target(journal, _run(journal))
        first, second = Owner.here(), Owner.here()
        assert journal.acquire(target.id, first)
        assert journal.acquire(target.id, first)  # renewing is fine
        assert not journal.acquire(target.id, second)
        with pytest.raises(LeaseLostError):
            journal.update_target(target.id, second, phase="staging")
        # The holder stops renewing: after the TTL the lease can be taken over.
        stale = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S")
        _raw(journal.url, f"UPDATE run_targets SET heartbeat_at = '{stale}' WHERE id = {target.id}")
        assert journal.acquire(target.id, second)
        with pytest.raises(LeaseLostError, match="another process took over target a"):
            journal.update_target(target.id, first, phase="staging")
        actions = [e.action for e in journal.audit_entries()]
        assert actions.count("target.taken_over") == 1


def test_a_lease_of_a_dead_process_is_free_at_once(journal_url: str) -> None:
    with open_journal(journal_url) as journal:
        target = _target(journal, _run(journal))
        child = subprocess.Popen([sys.executable, "-c", "pass"])
        child.wait()
        dead = Owner(Owner.here().host, child.pid, "deadbeef")
        assert journal.acquire(target.id, dead)
        assert journal.acquire(target.id, Owner.here())


def test_events_are_stored_once_with_their_cursor(journal_url: str) -> None:
    with open_journal(journal_url) as journal:
        target = _target(journal, _run(journal))
        owner = Owner.here()
        journal.acquire(target.id, owner)
        now = datetime.now(UTC)
        page = [LogEvent(id=f"e{i}", time=now, message=f"line {i}") for i in range(3)]
        assert journal.record_events(target.id, owner, page, "3") == 3
        assert journal.record_events(target.id, owner, page[1:], "3") == 0  # a re-read page
        assert journal.cursor(target.id) == "3"
        stored = journal.events(target.id)
        assert [e.event_id for e in stored] == ["e0", "e1", "e2"]
        assert stored[0].time == now and stored[0].payload["message"] == "line 0"
        assert [e.event_id for e in journal.events(target.id, after_seq=stored[0].seq)] == [
            "e1",
            "e2",
        ]


def test_a_diverged_nan_loss_is_stored_on_every_backend(journal_url: str) -> None:
    from tunefleet.events import MetricEvent
    from tunefleet.run.progress import target_progress

    with open_journal(journal_url) as journal:
        target = _target(journal, _run(journal))
        owner = Owner.here()
        journal.acquire(target.id, owner)
        nan = MetricEvent(id="m", time=datetime.now(UTC), step=3, train_loss=float("nan"))
        assert journal.record_events(target.id, owner, [nan], "1") == 1
        (stored,) = journal.events(target.id)
        assert MetricEvent.model_validate(stored.payload).train_loss != 0  # NaN != anything
        progress = target_progress(journal, journal.target(target.id))
        assert progress.step == 3 and progress.train_loss is not None
        assert math.isnan(progress.train_loss)


def _chain(journal_url: str) -> Journal:
    journal = open_journal(journal_url)
    run_id = _run(journal)
    for name in ("a", "b", "c"):
        _target(journal, run_id, name)
    assert journal.verify_audit().ok
    return journal


def test_audit_verify_detects_an_edited_row(journal_url: str) -> None:
    with _chain(journal_url) as journal:
        _raw(journal_url, "UPDATE audit_log SET actor = 'mallory@elsewhere' WHERE seq = 2")
        result = journal.verify_audit()
        assert not result.ok
        assert result.problems == ["entry 2 (target.created): contents were altered"]


def test_audit_verify_detects_a_rehashed_edit_and_a_deleted_row(journal_url: str) -> None:
    from tunefleet.state.audit import entry_hash

    with _chain(journal_url) as journal:
        entry = journal.audit_entries()[1]
        entry.actor = "mallory"  # a detached copy: this changes nothing in the database
        forged = entry_hash(entry)
        _raw(
            journal_url, f"UPDATE audit_log SET actor = 'mallory', hash = '{forged}' WHERE seq = 2"
        )
        assert journal.verify_audit().problems == ["entry 3: does not follow the entry before it"]
        _raw(journal_url, "DELETE FROM audit_log WHERE seq = 3")
        problems = journal.verify_audit().problems
        assert "entry 3 missing (deleted?)" in problems


def test_audit_verify_detects_a_cut_tail(journal_url: str) -> None:
    with _chain(journal_url) as journal:
        _raw(journal_url, "DELETE FROM audit_log WHERE seq = 4")
        (problem,) = journal.verify_audit().problems
        assert "the head says the chain ends at entry 4, but it ends at 3" in problem


def test_concurrent_writers_extend_one_chain(journal_url: str) -> None:
    journals = [open_journal(journal_url) for _ in range(4)]

    def write(index: int) -> None:
        for n in range(15):
            _run(journals[index], f"demo-{index:02d}{n:06d}")

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result = journals[0].verify_audit()
    assert result.ok, result.problems
    assert result.entries == result.head_seq == 60
    for journal in journals:
        journal.close()


def _audit_cli(
    journal_url: str, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    from tunefleet.cli import main

    status = main(["--state", journal_url, "audit", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("'not json {'", "not json {"),
        ("''", ""),
        ("'NaN'", "NaN"),
        ("'" + "[" * 100_000 + "'", "[" * 100_000),
        ("'\x1b[2J\n{}'", "\x1b[2J\n{}"),
    ],
)
def test_audit_log_shows_an_entry_whose_detail_is_not_json_as_its_raw_text(
    journal_url: str, capsys: pytest.CaptureFixture[str], stored: str, shown: str
) -> None:
    import json

    with _chain(journal_url) as journal:
        _raw(journal_url, f"UPDATE audit_log SET detail = {stored} WHERE seq = 2")
        status, out, err = _audit_cli(journal.url, capsys, "log", "--json")
        assert (status, err) == (0, "")
        entries = json.loads(out)
        assert [e["seq"] for e in entries] == [1, 2, 3, 4]
        assert entries[1]["detail"] == shown
        assert isinstance(entries[0]["detail"], dict)  # the intact ones still parse
        status, out, err = _audit_cli(journal.url, capsys, "log")
        assert (status, err) == (0, "")
        lines = out.splitlines()
        assert len(lines) == 4 and "\x1b" not in out  # one line per entry, escapes shown
        status, out, err = _audit_cli(journal.url, capsys, "verify")
        assert status == 1 and "entry 2 (target.created): contents were altered" in err


def test_audit_reads_survive_a_blob_or_undecodable_text_in_sqlite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    url = f"sqlite:///{tmp_path / 'journal.db'}"
    with _chain(url) as journal:
        _raw(url, "UPDATE audit_log SET detail = X'ff00', actor = X'41' WHERE seq = 2")
        status, out, err = _audit_cli(journal.url, capsys, "log", "--json")
        assert (status, err) == (0, "")
        entry = json.loads(out)[1]
        assert entry["detail"] == "\\xff\x00" and entry["actor"] == "A"
        status, out, err = _audit_cli(journal.url, capsys, "verify")
        assert status == 1 and "entry 2 (target.created): contents were altered" in err
        _raw(url, "UPDATE audit_log SET detail = CAST(X'ff41' AS TEXT) WHERE seq = 3")
        for command in (["log", "--json"], ["verify"]):
            status, out, err = _audit_cli(journal.url, capsys, *command)
            assert status == 2 and "Traceback" not in err
            assert err.startswith("error: cannot read the audit log: Could not decode to UTF-8")
            assert len(err.splitlines()) == 1

"""The run commands as users script them: exit codes, --json, logs, report, audit, detach."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from tests.runcli import Cli

from tunefleet.state import open_journal


@pytest.fixture
def cli(tmp_path: Path, fake_site: Path) -> Cli:
    return Cli(tmp_path, fake_site, f"sqlite:///{tmp_path / 'journal.db'}")


def test_run_status_runs_and_logs_speak_json_and_lines(cli: Cli) -> None:
    spec = cli.spec(steps=4, targets=2)
    result = cli("run", str(spec), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert [(t["name"], t["state"], t["step"]) for t in summary["targets"]] == [
        ("t0", "succeeded", 4),
        ("t1", "succeeded", 4),
    ]
    status = json.loads(cli("status", summary["id"], "--json").stdout)
    assert status["targets"][0]["artifacts"][0]["kind"] == "adapter"
    assert status["targets"][0]["estimated_cost"] > 0
    listed = json.loads(cli("runs", "--json").stdout)
    assert [r["id"] for r in listed] == [summary["id"]]
    logs = cli("logs", "faults", "--target", "t1").stdout.splitlines()
    assert any(line.endswith("t1 status succeeded: succeeded") for line in logs)
    assert sum(" t1 step " in line for line in logs) == 4
    assert not any(" t0 " in line for line in logs)
    plain = cli("status", summary["id"])
    assert "t0: succeeded, step 4/4, train_loss 0.5000" in plain.stdout


def test_a_failed_job_exits_1_with_the_providers_reason(cli: Cli) -> None:
    spec = cli.spec()
    body = json.loads(spec.read_text())
    body["targets"][0]["options"]["fail_at_step"] = 2
    spec.write_text(json.dumps(body))
    result = cli("run", str(spec))
    assert result.returncode == 1
    assert "error: target 't0': job failed: diverged at step 2" in result.stderr.splitlines()


def test_report_is_one_self_contained_page_with_loss_curves(cli: Cli) -> None:
    spec = cli.spec(steps=5, targets=2)
    assert cli("run", str(spec)).returncode == 0
    out = cli.tmp_path / "out" / "report.html"
    result = cli("report", "faults", "-o", str(out))
    assert result.returncode == 0, result.stderr
    html = out.read_text()
    assert html.startswith("<!doctype html>")
    assert "<script" not in html and "http://" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )
    assert html.count("<svg") == 3  # one chart per target and one comparing them
    assert html.count("<polyline") == 2 * 2 + 2 * 2  # train and valid, per chart
    assert ">t0 train<" in html and ">t1 valid<" in html
    assert "status" in html and "succeeded" in html and "5 steps x $0.01" in html


def test_audit_verify_catches_an_edited_row_through_the_cli(cli: Cli) -> None:
    assert cli("run", str(cli.spec())).returncode == 0
    intact = cli("audit", "verify", "--json")
    assert intact.returncode == 0 and json.loads(intact.stdout)["ok"] is True
    with sqlite3.connect(cli.tmp_path / "journal.db") as db:
        db.execute('UPDATE audit_log SET detail = \'{"source":"elsewhere.yaml"}\' WHERE seq = 1')
    tampered = cli("audit", "verify")
    assert tampered.returncode == 1
    assert tampered.stderr.strip() == "tampered: entry 1 (run.created): contents were altered"


def test_detach_returns_at_once_and_watch_reattaches(cli: Cli) -> None:
    spec = cli.spec(steps=40)
    began = time.monotonic()
    detached = cli("run", str(spec), "--detach", "--json")
    assert detached.returncode == 0, detached.stderr
    started = json.loads(detached.stdout)
    watched = cli("watch", started["run"], "--json")
    assert watched.returncode == 0, watched.stderr
    assert json.loads(watched.stdout)["targets"][0]["state"] == "succeeded"
    assert time.monotonic() - began < 100
    assert Path(started["log"]).exists()
    cli.check_exactly_once()


def test_ctrl_c_detaches_and_the_job_can_be_cancelled_later(cli: Cli) -> None:
    spec = cli.spec(steps=100_000 // 100)
    process = cli.start("run", str(spec))
    deadline = time.monotonic() + 60
    while not cli.created_jobs():
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert "its jobs keep running. Reattach with: tunefleet watch faults-" in err
    cancelled = cli("cancel", "faults", "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["targets"][0]["state"] == "cancelled"
    actions = [line.split()[3] for line in cli("audit", "log", "faults").stdout.splitlines()]
    assert "target.cancel_requested" in actions and "job.cancel" in actions


def test_journal_errors_are_one_line_and_never_show_a_password(cli: Cli) -> None:
    missing = cli("status", "no-such-run")
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: no run 'no-such-run' in the journal at sqlite:///")
    unreachable = cli("--state", "postgresql://ops:hunter2@127.0.0.1:1/tf", "runs")
    assert unreachable.returncode == 2
    assert "hunter2" not in unreachable.stderr + unreachable.stdout
    assert unreachable.stderr.startswith(
        "error: cannot open the journal at postgresql+psycopg://ops:***@127.0.0.1:1/tf"
    )
    assert len(unreachable.stderr.splitlines()) == 1


def test_pause_then_resume_continues_the_job_where_it_stopped(cli: Cli) -> None:
    spec = cli.spec(steps=300)
    running = cli.start("run", str(spec))
    deadline = time.monotonic() + 60
    with open_journal(cli.journal_url) as journal:
        # Running and past its first step, so "no step while paused" has a step to compare.
        while (
            not journal.runs()
            or journal.targets(journal.runs()[0].id)[0].state != "running"
            or journal.latest_event(journal.targets(journal.runs()[0].id)[0].id, "metric") is None
        ):
            assert running.poll() is None and time.monotonic() < deadline, "never ran"
            time.sleep(0.05)
        run_id = journal.runs()[0].id
    paused = cli("pause", run_id)
    assert paused.returncode == 0, paused.stderr
    assert "paused the job(s) of t0" in paused.stderr
    with open_journal(cli.journal_url) as journal:
        while journal.targets(run_id)[0].state != "paused":
            assert time.monotonic() < deadline, "the driver never saw the pause"
            time.sleep(0.05)
        target = journal.targets(run_id)[0]
        before = journal.latest_event(target.id, "metric")
        assert before is not None
        time.sleep(0.5)
        assert journal.targets(run_id)[0].state == "paused"
        after = journal.latest_event(target.id, "metric")
        assert after is not None and after.event_id == before.event_id, "no step while paused"
    assert running.poll() is None, "a paused job keeps its run watching"
    resumed = cli("resume", run_id)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed the paused job(s) of t0" in resumed.stderr
    running.communicate(timeout=120)
    assert running.returncode == 0
    with open_journal(cli.journal_url) as journal:
        assert journal.targets(run_id)[0].state == "succeeded"
        actions = [entry.action for entry in journal.audit_entries()]
        assert actions.count("job.pause") == 1 and actions.count("job.resume") == 1
        assert journal.verify_audit().ok
    refused = cli("pause", run_id)
    assert refused.returncode == 0 and "has no running job to pause" in refused.stderr


def test_logs_tail_and_since_and_runs_page_by_page(cli: Cli) -> None:
    spec = cli.spec(steps=4)
    first = json.loads(cli("run", str(spec), "--json").stdout)["id"]
    body = json.loads(spec.read_text())
    body["name"] = "second"
    spec.write_text(json.dumps(body))
    second = json.loads(cli("run", str(spec), "--json").stdout)["id"]

    everything = cli("logs", first).stdout.splitlines()
    assert len(everything) > 4
    assert cli("logs", first, "--tail", "3").stdout.splitlines() == everything[-3:]
    assert cli("logs", first, "--since", "1h").stdout.splitlines() == everything
    last = everything[-1].split()[0]  # log lines start with the event's UTC time
    assert cli("logs", first, "--since", last).stdout.splitlines() == [
        line for line in everything if line.split()[0] >= last
    ]
    assert cli("logs", first, "--since", "2999-01-01T00:00:00Z", "--tail", "3").stdout == ""
    # --follow after --tail prints each event once: the job is done, nothing more comes.
    assert cli("logs", first, "--tail", "2", "--follow").stdout.splitlines() == everything[-2:]
    for option, value, message in (
        ("--tail", "ten", "--tail must be a number of events (0 or more), not 'ten'"),
        (
            "--since",
            "yesterday",
            "--since must be an ISO-8601 time (2026-01-31T12:00:00Z) or a duration "
            "(10m, 2h, 1d), not 'yesterday'",
        ),
    ):
        bad = cli("logs", first, option, value)
        assert (bad.returncode, bad.stderr.strip()) == (2, f"error: {message}")

    newest = cli("runs", "--limit", "1")
    assert second in newest.stdout and first not in newest.stdout
    assert f"older runs: tunefleet runs --before {second}" in newest.stderr
    older = json.loads(cli("runs", "--limit", "1", "--before", second, "--json").stdout)
    assert [r["id"] for r in older] == [first]
    assert older[0]["targets"][0]["step"] == 4
    assert json.loads(cli("runs", "--before", first, "--json").stdout) == []

"""Crashes and races, with real processes: `tunefleet run` killed with SIGKILL at every step
boundary, then resumed; two runs of one spec started at once.

Each kill lands exactly on a boundary: the engine's failpoints (TUNEFLEET_FAILPOINTS) freeze
the process there and announce it with a file; the test then sends SIGKILL from outside.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tunefleet._failpoints import BOUNDARIES
from tunefleet.state import open_journal
from tunefleet.testing import write_entry_point

TRAIN = (
    '{"messages": [{"role": "user", "content": "Where is my order?"},'
    ' {"role": "assistant", "content": "It ships tomorrow."}]}\n'
)


class Cli:
    """`tunefleet` subprocesses sharing one journal and one fake provider."""

    def __init__(self, tmp_path: Path, site: Path, journal_url: str) -> None:
        write_entry_point(site, "tunefleet-fake", {"fake": "tunefleet.testing.fake"})
        self.tmp_path = tmp_path
        self.root = tmp_path / "provider"
        self.failpoints = tmp_path / "failpoints"
        self.failpoints.mkdir()
        self.journal_url = journal_url
        self.env = {
            **os.environ,
            "PYTHONPATH": str(site),
            "TUNEFLEET_STATE": journal_url,
            "TUNEFLEET_POLL_INTERVAL": "0.02",
            "TUNEFLEET_FAILPOINT_DIR": str(self.failpoints),
        }
        (tmp_path / "train.jsonl").write_text(TRAIN)

    def spec(self, steps: int = 5, targets: int = 1) -> Path:
        regions = ["fake-eu-1", "fake-west-2"]
        body = {
            "name": "faults",
            "base_model": "gpt-4o-mini-2024-07-18",
            "dataset": "train.jsonl",
            "targets": [
                {
                    "name": f"t{i}",
                    "provider": "fake",
                    "region": regions[i],
                    "options": {"root": str(self.root), "steps": steps},
                }
                for i in range(targets)
            ],
        }
        path = self.tmp_path / "spec.yaml"
        path.write_text(json.dumps(body))
        return path

    def start(self, *args: str, failpoint: str | None = None) -> subprocess.Popen[str]:
        env = dict(self.env)
        if failpoint:
            env["TUNEFLEET_FAILPOINTS"] = failpoint
        return subprocess.Popen(
            [sys.executable, "-m", "tunefleet", *args],
            env=env,
            cwd=self.tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tunefleet", *args],
            env=self.env,
            cwd=self.tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def kill_at(self, boundary: str, *args: str) -> None:
        """Start `tunefleet ARGS`, wait until it reaches ``boundary``, SIGKILL it."""
        process = self.start(*args, failpoint=boundary)
        marker = self.failpoints / boundary
        deadline = time.monotonic() + 90
        while not marker.exists():
            if process.poll() is not None:
                out, err = process.communicate()
                pytest.fail(f"exited {process.returncode} before {boundary}:\n{out}\n{err}")
            assert time.monotonic() < deadline, f"never reached {boundary}"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL

    def lines(self, name: str) -> list[str]:
        path = self.root / name
        return path.read_text().split() if path.exists() else []

    def check_exactly_once(self) -> None:
        """One job per target, each upload once, and every provider event stored once."""
        with open_journal(self.journal_url) as journal:
            (run,) = journal.runs()
            targets = journal.targets(run.id)
            assert sorted(self.lines("submits.log")) == sorted(t.run_key for t in targets)
            uploads = self.lines("uploads.log")
            assert len(uploads) == len(set(uploads)) == 1
            for target in targets:
                assert (target.phase, target.state) == ("done", "succeeded")
                job = json.loads((self.root / "jobs" / f"{target.run_key}.json").read_text())
                stored = [e.event_id for e in journal.events(target.id)]
                assert stored == [e["id"] for e in job["events"]], "each event once, in order"
                statuses = {(r.kind, r.status) for r in journal.resources(target.id)}
                assert statuses == {("dataset", "confirmed"), ("job", "confirmed")}
                assert journal.artifacts(target.id)
            assert journal.verify_audit().ok


@pytest.fixture
def cli(tmp_path: Path, fake_site: Path, journal_url: str) -> Cli:
    return Cli(tmp_path, fake_site, journal_url)


@pytest.mark.slow
@pytest.mark.parametrize("boundary", [*BOUNDARIES, "fake-mid-upload"])
def test_sigkill_at_a_step_boundary_then_resume_loses_nothing(cli: Cli, boundary: str) -> None:
    spec = cli.spec(targets=2)
    cli.kill_at(boundary, "run", str(spec))
    with open_journal(cli.journal_url) as journal:
        (run,) = journal.runs()
    result = cli("resume", run.id)
    assert result.returncode == 0, result.stderr
    cli.check_exactly_once()


@pytest.mark.slow
def test_running_the_spec_again_after_a_kill_reattaches_to_the_job(cli: Cli) -> None:
    spec = cli.spec()
    cli.kill_at("after-submit", "run", str(spec))
    result = cli("run", str(spec))
    assert result.returncode == 0, result.stderr
    assert "reattached to job" in result.stderr
    cli.check_exactly_once()
    with open_journal(cli.journal_url) as journal:
        (run,) = journal.runs()
        (target,) = journal.targets(run.id)
        (job,) = journal.resources(target.id, "job")
        assert job.status == "confirmed"
        found = [e for e in journal.audit_entries(run.id) if e.action == "resource.confirmed"]
        assert json.loads(found[-1].detail)["how"] == "found"


@pytest.mark.slow
def test_two_runs_of_one_spec_at_once_make_one_job(cli: Cli) -> None:
    spec = cli.spec(steps=60)
    first = cli.start("run", str(spec), "--json")
    second = cli.start("run", str(spec), "--json")
    overlapped = False
    deadline = time.monotonic() + 120
    while first.poll() is None or second.poll() is None:
        assert time.monotonic() < deadline
        if first.poll() is None and second.poll() is None and cli.lines("submits.log"):
            overlapped = True  # both alive while the job exists
        time.sleep(0.02)
    outputs = [process.communicate() for process in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outputs
    assert overlapped, "the two runs did not overlap; the test proved nothing"
    ids = {json.loads(out)["id"] for out, _ in outputs}
    assert len(ids) == 1
    assert len(cli.lines("submits.log")) == 1
    cli.check_exactly_once()

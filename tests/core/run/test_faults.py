"""Crashes and races, with real processes: `tunefleet run` killed with SIGKILL at every step
boundary, then resumed; two runs of one spec started at once.

Each kill lands exactly on a boundary: the engine's failpoints (TUNEFLEET_FAILPOINTS) freeze
the process there and announce it with a file; the test then sends SIGKILL from outside.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from tests.runcli import Cli

from tunefleet._failpoints import BOUNDARIES
from tunefleet.state import open_journal


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
        if first.poll() is None and second.poll() is None and cli.created_jobs():
            overlapped = True  # both alive while the job exists
        time.sleep(0.02)
    outputs = [process.communicate() for process in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outputs
    assert overlapped, "the two runs did not overlap; the test proved nothing"
    ids = {json.loads(out)["id"] for out, _ in outputs}
    assert len(ids) == 1
    assert len(cli.created_jobs()) == 1
    cli.check_exactly_once()

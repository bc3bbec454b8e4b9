"""Run-level conformance: whole runs through the ``tunefleet`` CLI, killed and resumed.

:class:`~tunefleet.testing.conformance.ProviderConformance` calls a provider's methods one
by one; the scenarios here run the CLI in a subprocess, as a user does, and check what the
engine promises on top of the provider: a spec run again elsewhere (another journal, another
machine) reattaches to the job its run key made instead of creating a second billed one,
and a run killed around its submit resumes to success with exactly one job. Subclass
:class:`RunConformance` and supply a ``run_harness`` fixture::

    from tunefleet.testing.runs import RunConformance, RunHarness

    class TestMyProviderRuns(RunConformance):
        @pytest.fixture
        def run_harness(self, tmp_path) -> RunHarness:
            return RunHarness(spec=..., run_name="support-bot", env={...}, jobs=count_jobs)

The subprocess inherits the test's environment plus ``env`` (the stand-in's address, its
credentials for tests), so the provider's plugin must be installed or on ``PYTHONPATH``.
:class:`CliRunner` is the driver, usable on its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tunefleet._failpoints import DIR_ENV, ENV
from tunefleet.state import open_journal

__all__ = ["CliRunner", "RunConformance", "RunHarness"]


class CliRunner:
    """``tunefleet`` subprocesses sharing one working directory and one journal."""

    def __init__(
        self,
        workdir: Path,
        journal_url: str,
        env: Mapping[str, str] | None = None,
        *,
        poll_interval: float = 0.02,
        timeout: float = 120,
    ) -> None:
        self.workdir = workdir
        self.journal_url = journal_url
        self.timeout = timeout
        self.failpoints = workdir / "failpoints"
        self.failpoints.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            **(env or {}),
            "TUNEFLEET_STATE": journal_url,
            "TUNEFLEET_POLL_INTERVAL": str(poll_interval),
            DIR_ENV: str(self.failpoints),
        }

    def start(self, *args: str, failpoint: str | None = None) -> subprocess.Popen[str]:
        """``tunefleet ARGS`` in the background; with ``failpoint``, it freezes there."""
        env = dict(self.env)
        if failpoint:
            env[ENV] = failpoint
        return subprocess.Popen(
            [sys.executable, "-m", "tunefleet", *args],
            env=env,
            cwd=self.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``tunefleet ARGS`` to its end (at most ``timeout`` seconds)."""
        return subprocess.run(
            [sys.executable, "-m", "tunefleet", *args],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=self.timeout,
            check=False,
        )

    def kill_at(self, boundary: str, *args: str) -> None:
        """Start ``tunefleet ARGS``, wait until it reaches ``boundary``, SIGKILL it."""
        process = self.start(*args, failpoint=boundary)
        marker = self.failpoints / boundary
        deadline = time.monotonic() + self.timeout
        try:
            while not marker.exists():
                if process.poll() is not None:
                    out, err = process.communicate()
                    pytest.fail(f"exited {process.returncode} before {boundary}:\n{out}\n{err}")
                if time.monotonic() > deadline:
                    pytest.fail(f"never reached {boundary} in {self.timeout:.0f} s")
                time.sleep(0.02)
        finally:
            process.send_signal(signal.SIGKILL)
            process.communicate(timeout=30)
        marker.unlink()
        assert process.returncode == -signal.SIGKILL


@dataclass
class RunHarness:
    """What the run-level scenarios need for one provider."""

    spec: Path
    """A spec file with one target, on the provider, against its stand-in."""
    run_name: str
    """The spec's ``name``: what ``tunefleet resume`` takes."""
    jobs: Callable[[], int]
    """How many jobs the stand-in (or the service) holds for this spec, all states."""
    env: Mapping[str, str] = field(default_factory=dict)
    """What a ``tunefleet`` subprocess needs besides the test's environment."""
    timeout: float = 120.0
    """Seconds one CLI call may take, the whole job included."""


class RunConformance:
    """Whole runs every provider gets for free; see the module docstring."""

    @pytest.fixture
    def run_harness(self) -> RunHarness:
        raise NotImplementedError("override the run_harness fixture in your test class")

    @pytest.fixture
    def cli(self, run_harness: RunHarness, tmp_path: Path) -> CliRunner:
        return CliRunner(
            run_harness.spec.parent,
            f"sqlite:///{tmp_path / 'journal.db'}",
            {"TUNEFLEET_RETRY_BACKOFF": "0.01", **run_harness.env},
            timeout=run_harness.timeout,
        )

    def _succeeded_with_one_job(self, cli: CliRunner, harness: RunHarness) -> None:
        assert harness.jobs() == 1, "exactly one job exists"
        with open_journal(cli.journal_url) as journal:
            (run,) = journal.runs()
            (target,) = journal.targets(run.id)
            assert (target.phase, target.state) == ("done", "succeeded")
            jobs = [r for r in journal.resources(target.id) if r.kind == "job"]
            assert [r.status for r in jobs] == ["confirmed"], "one job, confirmed"
            assert journal.artifacts(target.id), "what the job made is recorded"
            assert journal.verify_audit().ok

    def test_rerunning_the_spec_elsewhere_reattaches(
        self, cli: CliRunner, run_harness: RunHarness, tmp_path: Path
    ) -> None:
        """Another machine with another journal runs the same spec: ``find`` sees the job
        the run key made, so nothing new is created or billed."""
        first = cli("run", str(run_harness.spec))
        assert first.returncode == 0, first.stderr
        assert run_harness.jobs() == 1
        cli.env["TUNEFLEET_STATE"] = f"sqlite:///{tmp_path / 'elsewhere.db'}"
        again = cli("run", str(run_harness.spec))
        assert again.returncode == 0, again.stderr
        assert "reattached to job" in again.stderr
        assert run_harness.jobs() == 1, "no second job"

    @pytest.mark.parametrize("boundary", ["before-submit", "after-submit"])
    def test_a_run_killed_around_submit_resumes_with_one_job(
        self, cli: CliRunner, run_harness: RunHarness, boundary: str
    ) -> None:
        """Killed with the job's intent written but the create not sent, or with the job
        created but not yet confirmed: ``tunefleet resume`` ends with exactly one job."""
        cli.kill_at(boundary, "run", str(run_harness.spec))
        assert run_harness.jobs() == (1 if boundary == "after-submit" else 0)
        resumed = cli("resume", run_harness.run_name)
        assert resumed.returncode == 0, resumed.stderr
        self._succeeded_with_one_job(cli, run_harness)

    def test_running_the_spec_again_after_a_kill_reattaches(
        self, cli: CliRunner, run_harness: RunHarness
    ) -> None:
        """The user runs the spec again instead of resuming: the same run, the same job."""
        cli.kill_at("after-submit", "run", str(run_harness.spec))
        again = cli("run", str(run_harness.spec))
        assert again.returncode == 0, again.stderr
        self._succeeded_with_one_job(cli, run_harness)

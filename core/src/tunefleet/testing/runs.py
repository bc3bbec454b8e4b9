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

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tunefleet._failpoints import DIR_ENV, ENV
from tunefleet.state import open_journal
from tunefleet.testing import crash

__all__ = ["KILL_POINTS", "CliRunner", "RunConformance", "RunHarness"]


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

    def start(
        self,
        *args: str,
        failpoint: str | None = None,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[str]:
        """``tunefleet ARGS`` in the background; with ``failpoint``, it freezes there."""
        full = {**self.env, **(env or {})}
        if failpoint:
            full[ENV] = failpoint
        return subprocess.Popen(
            [sys.executable, "-m", "tunefleet", *args],
            env=full,
            cwd=cwd or self.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def __call__(
        self, *args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``tunefleet ARGS`` to its end (at most ``timeout`` seconds), from ``cwd`` (default
        the working directory) with ``env`` on top of the runner's environment."""
        return subprocess.run(
            [sys.executable, "-m", "tunefleet", *args],
            env={**self.env, **(env or {})},
            cwd=cwd or self.workdir,
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
    """A spec file (YAML or JSON) with one target, on the provider, against its stand-in.
    Its datasets are local files; the kill scenarios write variants of it beside it."""
    run_name: str
    """The spec's ``name``: what ``tunefleet resume`` takes."""
    jobs: Callable[[], int]
    """How many jobs the stand-in (or the service) holds, all states, all specs."""
    env: Mapping[str, str] = field(default_factory=dict)
    """What a ``tunefleet`` subprocess needs besides the test's environment."""
    resume_env: Mapping[str, str] = field(default_factory=dict)
    """Environment a resume may see that differs from the first run's (another machine's
    defaults): a resume must act where the recorded plan says, not where these point."""
    endpoints: Callable[[], int] | None = None
    """How many endpoints (model servers) the stand-in holds; None for a provider that
    does not serve (the deploy scenario is then skipped, saying so)."""
    orphans: Callable[[], list[str]] = list
    """What runs at the stand-in that no run knows of (processes, servers), once every run
    has ended; empty when nothing is orphaned."""
    timeout: float = 120.0
    """Seconds one CLI call may take, the whole job included."""
    evaluated_spec: Path | None = None
    """A spec like ``spec`` with an ``evaluation`` section (a golden set beside it, some
    metrics) that the provider's model can be scored on; None skips the evaluation
    scenario, saying so."""


KILL_POINTS = (0.3, 0.7)
"""Where in a provider call the kill scenarios kill: shares of the lines it executes."""


def _provider_module(harness: RunHarness) -> str:
    """The module of the class of the provider the harness's spec targets: the kill
    scenarios kill inside its methods (and what they call in its package and the kit)."""
    from tunefleet.plugins import discover

    body = yaml.safe_load(harness.spec.read_text())
    provider = discover().provider(body["targets"][0]["provider"])
    return type(provider).__module__


def _variant(harness: RunHarness, tag: str, repeats: int) -> tuple[Path, str]:
    """A copy of the harness's spec named ``<name>-<tag>`` whose datasets (training and
    validation) each end with their first example ``repeats`` more times, so its run key
    and every dataset it stages are new (give each variant its own ``repeats``): the call
    under test does all its work again (a content-addressed stage uploads, a submit
    creates). A repeated example is a warning (W104), not an error: the run goes ahead."""
    body = yaml.safe_load(harness.spec.read_text())
    name = f"{body['name']}-{tag}"
    body["name"] = name

    def varied(location: str, role: str) -> str:
        source = Path(location) if Path(location).is_absolute() else harness.spec.parent / location
        text = source.read_text()
        first = text.splitlines()[0]
        copy = harness.spec.parent / f"{role}-{tag}.jsonl"
        copy.write_text(text + ("" if text.endswith("\n") else "\n") + (first + "\n") * repeats)
        return str(copy)

    if isinstance(body["dataset"], str):
        body["dataset"] = varied(body["dataset"], "train")
    else:
        body["dataset"] = {
            role: varied(location, role) if location else location
            for role, location in body["dataset"].items()
        }
    path = harness.spec.parent / f"spec-{tag}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path, name


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

    @pytest.fixture
    def elsewhere(self, tmp_path: Path) -> Path:
        """Another working directory, as on another machine."""
        folder = tmp_path / "elsewhere"
        folder.mkdir()
        return folder

    def _succeeded_with_one_job(
        self, cli: CliRunner, harness: RunHarness, run_name: str | None = None, jobs: int = 1
    ) -> None:
        assert harness.jobs() == jobs, f"exactly {jobs} job(s) exist"
        with open_journal(cli.journal_url) as journal:
            (run,) = [r for r in journal.runs() if r.name == (run_name or harness.run_name)]
            (target,) = journal.targets(run.id)
            assert (target.phase, target.state) == ("done", "succeeded"), target.message
            found = [r for r in journal.resources(target.id) if r.kind == "job"]
            assert [r.status for r in found] == ["confirmed"], "one job, confirmed"
            assert journal.artifacts(target.id), "what the job made is recorded"
            assert journal.verify_audit().ok
        assert not harness.orphans(), f"orphaned: {harness.orphans()}"

    def test_a_run_with_an_evaluation_scores_registers_and_rescores_its_model(
        self, cli: CliRunner, run_harness: RunHarness
    ) -> None:
        """The engine's evaluate step gets the model's answers to the golden set the way the
        provider's plan says (from the job, or through its chat API), scores every metric
        the spec names, registers the model with the evaluation, and `tunefleet eval`
        scores it again without training again."""
        spec = run_harness.evaluated_spec
        if spec is None:
            pytest.skip(f"{run_harness.run_name}: the harness gives no spec with an evaluation")
        evaluation = yaml.safe_load(spec.read_text())["evaluation"]
        trained = cli("run", str(spec))
        assert trained.returncode == 0, trained.stderr
        jobs = run_harness.jobs()
        listed = cli("models", "--json")
        assert listed.returncode == 0, listed.stderr
        (model,) = json.loads(listed.stdout)
        assert model["stage"] == "candidate" and model["evaluation"] is not None
        scores = model["evaluation"]["metrics"]
        assert set(scores) == set(evaluation["metrics"])
        assert all(isinstance(scores[m], float) for m in evaluation["metrics"]), scores
        again = cli("eval", model["run"], "--json")
        assert again.returncode in (0, 1), again.stderr
        (rescored,) = json.loads(again.stdout)
        assert rescored["trigger"] == "eval"
        assert {m["metric"]: m["value"] for m in rescored["result"]["metrics"]} == scores, (
            "the same answers give the same scores"
        )
        assert run_harness.jobs() == jobs, "nothing was trained again"
        shown = cli("models", "show", model["model"], "--json")
        assert json.loads(shown.stdout)["evaluation"]["id"] == rescored["id"], (
            "the newest evaluation is the one that gates the model"
        )
        with open_journal(cli.journal_url) as journal:
            assert journal.verify_audit().ok
        assert not run_harness.orphans(), f"orphaned: {run_harness.orphans()}"

    def test_rerunning_the_spec_elsewhere_reattaches(
        self, cli: CliRunner, run_harness: RunHarness, tmp_path: Path, elsewhere: Path
    ) -> None:
        """Another machine with another journal, in another folder, runs the same spec:
        ``find`` sees the job the run key made, so nothing new is created or billed."""
        first = cli("run", str(run_harness.spec))
        assert first.returncode == 0, first.stderr
        assert run_harness.jobs() == 1
        cli.env["TUNEFLEET_STATE"] = f"sqlite:///{tmp_path / 'elsewhere.db'}"
        again = cli("run", str(run_harness.spec), cwd=elsewhere)
        assert again.returncode == 0, again.stderr
        assert "reattached to job" in again.stderr
        assert run_harness.jobs() == 1, "no second job"

    @pytest.mark.parametrize("boundary", ["before-submit", "after-submit"])
    def test_a_run_killed_around_submit_resumes_with_one_job(
        self, cli: CliRunner, run_harness: RunHarness, boundary: str, elsewhere: Path
    ) -> None:
        """Killed with the job's intent written but the create not sent, or with the job
        created but not yet confirmed: ``tunefleet resume``, from another folder and with
        another environment's defaults, ends with exactly one job."""
        cli.kill_at(boundary, "run", str(run_harness.spec))
        assert run_harness.jobs() == (1 if boundary == "after-submit" else 0)
        resumed = cli("resume", run_harness.run_name, cwd=elsewhere, env=run_harness.resume_env)
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

    @pytest.mark.parametrize("share", KILL_POINTS)
    @pytest.mark.parametrize("call", ["stage", "submit"])
    def test_a_kill_inside_a_provider_call_resumes_with_one_job(
        self, cli: CliRunner, run_harness: RunHarness, tmp_path: Path, call: str, share: float
    ) -> None:
        """SIGKILL at a line inside the provider's own ``stage`` or ``submit`` (not at an
        engine boundary), then ``tunefleet resume``: one job, nothing orphaned. A first run
        of a variant of the spec measures how many lines the call executes."""
        target = f"{_provider_module(run_harness)}:{call}"
        count = tmp_path / "lines"
        site = str(crash.site_dir(tmp_path / "crash-site"))
        path = os.pathsep.join([site, cli.env.get("PYTHONPATH", "")])
        measured_spec, measured_name = _variant(run_harness, "measured", repeats=1)
        measured = cli(
            "run",
            str(measured_spec),
            env={"PYTHONPATH": path, crash.ENV: f"{target}:0", crash.COUNT_ENV: str(count)},
        )
        assert measured.returncode == 0, measured.stderr
        lines = int(count.read_text())
        assert lines > 0, f"{target} never ran"
        before = run_harness.jobs()
        spec, name = _variant(run_harness, f"killed-{call}-{int(share * 100)}", repeats=2)
        kill_at = max(1, int(lines * share))
        killed = cli("run", str(spec), env={"PYTHONPATH": path, crash.ENV: f"{target}:{kill_at}"})
        assert killed.returncode == -signal.SIGKILL, (
            f"not killed at line {kill_at} of {lines}: {killed.stderr}"
        )
        resumed = cli("resume", name, env=run_harness.resume_env)
        assert resumed.returncode == 0, resumed.stderr
        self._succeeded_with_one_job(cli, run_harness, name, jobs=before + 1)
        assert measured_name != name

    @pytest.mark.parametrize("share", KILL_POINTS)
    def test_a_kill_inside_deploy_leaves_one_endpoint_after_deploying_again(
        self, cli: CliRunner, run_harness: RunHarness, tmp_path: Path, share: float
    ) -> None:
        """SIGKILL at a line inside the provider's ``deploy``, then ``tunefleet deploy``
        again: one endpoint that answers, and after ``undeploy`` none and nothing orphaned."""
        if run_harness.endpoints is None:
            pytest.skip(f"{run_harness.run_name}: the harness gives no endpoint count")
        endpoints = run_harness.endpoints
        trained = cli("run", str(run_harness.spec))
        assert trained.returncode == 0, trained.stderr
        target = f"{_provider_module(run_harness)}:deploy"
        count = tmp_path / "lines"
        site = str(crash.site_dir(tmp_path / "crash-site"))
        path = os.pathsep.join([site, cli.env.get("PYTHONPATH", "")])
        measured = cli(
            "deploy",
            run_harness.run_name,
            env={"PYTHONPATH": path, crash.ENV: f"{target}:0", crash.COUNT_ENV: str(count)},
        )
        assert measured.returncode == 0, measured.stderr
        undeployed = cli("undeploy", run_harness.run_name)
        assert undeployed.returncode == 0, undeployed.stderr
        assert endpoints() == 0
        lines = int(count.read_text())
        kill_at = max(1, int(lines * share))
        killed = cli(
            "deploy",
            run_harness.run_name,
            env={"PYTHONPATH": path, crash.ENV: f"{target}:{kill_at}"},
        )
        assert killed.returncode == -signal.SIGKILL, (
            f"not killed at line {kill_at} of {lines}: {killed.stderr}"
        )
        again = cli("deploy", run_harness.run_name)
        assert again.returncode == 0, again.stderr
        assert endpoints() == 1, "one endpoint, whatever the killed deploy had started"
        answer = cli("invoke", run_harness.run_name, "Hello?")
        assert answer.returncode == 0, answer.stderr
        undeployed = cli("undeploy", run_harness.run_name)
        assert undeployed.returncode == 0, undeployed.stderr
        assert endpoints() == 0
        assert not run_harness.orphans(), f"orphaned: {run_harness.orphans()}"

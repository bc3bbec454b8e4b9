"""The local provider passes the provider conformance suite, training for real.

It implements Serving, so ``test_serving`` deploys and asks a trained model; it does not
implement Pausable, so ``test_pause_and_resume`` is skipped with that reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.providers.local.conftest import local_spec, processes_under

from tunefleet.plugins import discover
from tunefleet.spec import parse_spec
from tunefleet.testing.conformance import ConformanceHarness, ProviderConformance
from tunefleet.testing.runs import RunConformance, RunHarness
from tunefleet_local._serving import SERVER
from tunefleet_local.options import WORKDIR_ENV


class TestLocalConformance(ProviderConformance):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> ConformanceHarness:
        registry = discover()
        text = local_spec("conformance-local", tmp_path / "work")
        spec = parse_spec(text, base_dir=tmp_path)
        return ConformanceHarness(
            provider=registry.provider("local"),
            spec=spec,
            registry=registry,
            poll_interval=0.2,
            timeout=240,
        )


class TestLocalRuns(RunConformance):
    """Whole runs killed around and inside submit: the trainer, started by the killed
    process, lives on and the resumed run adopts it instead of starting a second one. The
    work directory comes from the environment, which a resume elsewhere does not share: the
    plan pins it."""

    @pytest.fixture
    def run_harness(self, tmp_path: Path) -> RunHarness:
        work = tmp_path / "work"
        spec = tmp_path / "local.yaml"
        spec.write_text(local_spec("conformance-local", None))
        return RunHarness(
            spec=spec,
            run_name="conformance-local",
            jobs=lambda: len(list(work.glob("jobs/*/job.json"))),
            env={WORKDIR_ENV: str(work)},
            resume_env={WORKDIR_ENV: str(tmp_path / "another-work")},
            endpoints=lambda: len([p for p in processes_under(work, 0) if SERVER in p]),
            orphans=lambda: processes_under(work),
            timeout=240,
        )

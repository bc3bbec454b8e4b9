"""The local provider passes the provider conformance suite, training for real.

It implements Serving, so ``test_serving`` deploys and asks a trained model; it does not
implement Pausable, so ``test_pause_and_resume`` is skipped with that reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tunefleet.plugins import discover
from tunefleet.spec import parse_spec
from tunefleet.testing.conformance import ConformanceHarness, ProviderConformance
from tunefleet.testing.runs import RunConformance, RunHarness

DATA = Path(__file__).parents[3] / "examples" / "quickstart" / "data"

SPEC = """
version: 1
name: conformance-local
base_model: "scratch:tiny"
dataset: {train: %(train)s}
method: {type: supervised, adapter: full}
hyperparameters: {epochs: 1, batch_size: 16, learning_rate: 0.003, seed: 5, max_seq_length: 96}
targets:
  - provider: local
    options: {workdir: %(workdir)s, device: cpu, max_concurrent_jobs: 8}
"""


class TestLocalConformance(ProviderConformance):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> ConformanceHarness:
        registry = discover()
        text = SPEC % {"train": DATA / "train.jsonl", "workdir": tmp_path / "work"}
        spec = parse_spec(text, base_dir=tmp_path)
        return ConformanceHarness(
            provider=registry.provider("local"),
            spec=spec,
            registry=registry,
            poll_interval=0.2,
            timeout=240,
        )


class TestLocalRuns(RunConformance):
    """Whole runs killed around submit: the trainer, started by the killed process, lives on
    and the resumed run adopts it instead of starting a second one."""

    @pytest.fixture
    def run_harness(self, tmp_path: Path) -> RunHarness:
        work = tmp_path / "work"
        spec = tmp_path / "local.yaml"
        spec.write_text(SPEC % {"train": DATA / "train.jsonl", "workdir": work})
        return RunHarness(
            spec=spec,
            run_name="conformance-local",
            jobs=lambda: len(list(work.glob("jobs/*/job.json"))),
            timeout=240,
        )

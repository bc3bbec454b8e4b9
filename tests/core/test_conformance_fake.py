"""The in-tree fake providers pass the provider conformance suite."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.runcli import Cli

from tunefleet.plugins import Registry
from tunefleet.spec import parse_spec
from tunefleet.testing.conformance import ConformanceHarness, ProviderConformance
from tunefleet.testing.fake import FakeHostedProvider, FakeProvider
from tunefleet.testing.runs import RunConformance, RunHarness


def harness_for(
    provider_name: str, tmp_path: Path, registry: Registry, region: str | None
) -> ConformanceHarness:
    data = tmp_path / "train.jsonl"
    data.write_text(
        '{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},'
        ' {"role": "assistant", "content": "Hello!"}]}\n'
    )
    region_line = f"    region: {region}\n" if region else ""
    spec = parse_spec(
        f"name: conformance\nbase_model: gpt-4o-mini-2024-07-18\ndataset: train.jsonl\n"
        f"targets:\n  - provider: {provider_name}\n{region_line}    options: {{root: {tmp_path / 'state'}}}\n",
        base_dir=tmp_path,
    )
    return ConformanceHarness(
        provider=registry.provider(provider_name), spec=spec, registry=registry
    )


class TestFakeProvider(ProviderConformance):
    @pytest.fixture
    def harness(self, tmp_path: Path, registry: Registry) -> ConformanceHarness:
        return harness_for(FakeProvider.name, tmp_path, registry, "fake-eu-1")


class TestFakeHostedProvider(ProviderConformance):
    @pytest.fixture
    def harness(self, tmp_path: Path, registry: Registry) -> ConformanceHarness:
        return harness_for(FakeHostedProvider.name, tmp_path, registry, None)


class TestFakeRuns(RunConformance):
    """The run-level scenarios on the file-backed fake, as a third-party provider runs them."""

    @pytest.fixture
    def run_harness(self, tmp_path: Path, fake_site: Path) -> RunHarness:
        cli = Cli(tmp_path, fake_site, "sqlite://")  # only for its spec
        jobs = cli.root / "jobs"
        return RunHarness(
            spec=cli.spec(),
            run_name="faults",
            jobs=lambda: len(list(jobs.glob("*.json"))),
            env={"PYTHONPATH": str(fake_site)},
            evaluated_spec=cli.evaluated_spec(),
        )

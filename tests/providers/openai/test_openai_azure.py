"""The OpenAI provider's azure flavour: an Azure OpenAI resource, its region, deployments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.providers.openai.conftest import azure_spec
from tests.providers.openai.fake_azure import FakeAzureManagement
from tests.providers.openai.fake_openai import FakeOpenAI
from tests.runcli import Cli

from tunefleet.planning import plan_run
from tunefleet.plugins import discover
from tunefleet.spec import parse_spec
from tunefleet.state import open_journal
from tunefleet.testing.conformance import ConformanceHarness, ProviderConformance
from tunefleet_openai.provider import OpenAIProvider


@pytest.fixture
def cli(tmp_path: Path, fake_site: Path, fake_azure: FakeAzureManagement) -> Cli:
    runner = Cli(tmp_path, fake_site, f"sqlite:///{tmp_path / 'journal.db'}")
    runner.env.update(TUNEFLEET_RETRY_BACKOFF="0.01")
    return runner


class TestAzureOpenAIConformance(ProviderConformance):
    @pytest.fixture
    def harness(
        self, fake_openai: FakeOpenAI, fake_azure: FakeAzureManagement
    ) -> ConformanceHarness:
        return ConformanceHarness(
            provider=OpenAIProvider(),
            spec=parse_spec(azure_spec(fake_openai, fake_azure, validation=False)),
            registry=discover(),
            timeout=30,
        )


def test_a_whole_run_on_an_azure_resource_through_the_cli(
    cli: Cli, fake_openai: FakeOpenAI, fake_azure: FakeAzureManagement
) -> None:
    spec = cli.tmp_path / "azure.yaml"
    spec.write_text(
        azure_spec(
            fake_openai,
            fake_azure,
            placement={"allowed_regions": ["sweden*"], "tags": {"team": "support"}},
        )
    )
    result = cli("run", str(spec), "--json")
    assert result.returncode == 0, result.stderr
    assert fake_azure.requests[0][0] == "GET", "the resource's region is read first"
    uploads = [f for f in fake_openai.files.values() if f["purpose"] == "fine-tune"]
    assert len(uploads) == 2
    assert all(f["status"] == "processed" for f in uploads), "jobs wait for imported files"
    (job,) = fake_openai.jobs.values()
    model = job.body["fine_tuned_model"]
    with open_journal(cli.journal_url) as journal:
        (run,) = journal.runs()
        (target,) = journal.targets(run.id)
        assert target.region == "swedencentral" and target.state == "succeeded"

    deployed = cli("deploy", run.id, "--json")
    assert deployed.returncode == 0, deployed.stderr
    endpoint = json.loads(deployed.stdout)
    assert endpoint["id"].endswith("/deployments/support-bot")
    (deployment,) = fake_azure.deployments.values()
    assert deployment["properties"]["model"] == {"format": "OpenAI", "name": model, "version": "1"}
    assert deployment["tags"] == {"team": "support"}
    answer = cli("invoke", run.id, "Where is my parcel?")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() == f"[{model}] You asked: Where is my parcel?"
    assert cli("undeploy", run.id).returncode == 0
    assert not fake_azure.deployments and not fake_openai.deployments


def test_placement_applies_to_the_resources_region(
    fake_openai: FakeOpenAI, fake_azure: FakeAzureManagement
) -> None:
    spec = parse_spec(
        azure_spec(fake_openai, fake_azure, placement={"allowed_regions": ["westeurope"]})
    )
    (plan,) = plan_run(spec, registry=discover()).plans
    assert [(u.requirement, u.reason) for u in plan.unmet] == [
        (
            "placement.allowed_regions",
            "region 'swedencentral' is outside the allowed regions westeurope",
        )
    ]
    # Serving on Azure creates a deployment: the plan shows it, as deploy will send it.
    deployment = plan.request("Deployments_CreateOrUpdate", phase="deploy")
    assert deployment.service == "azure-resource-manager"
    assert deployment.body["deploymentName"] == "${endpoint_name}"
    assert deployment.body["deployment"]["properties"]["model"]["name"] == "${model}"
    nowhere = parse_spec(azure_spec(fake_openai, fake_azure, region="westus"))
    (plan,) = plan_run(nowhere, registry=discover()).plans
    assert [u.requirement for u in plan.unmet] == ["region"]


def test_a_resource_outside_the_targets_region_gets_no_data(
    cli: Cli, fake_openai: FakeOpenAI, fake_azure: FakeAzureManagement
) -> None:
    fake_azure.location = "eastus2"
    spec = cli.tmp_path / "azure.yaml"
    spec.write_text(azure_spec(fake_openai, fake_azure))
    result = cli("run", str(spec))
    assert result.returncode == 3
    assert "is in eastus2, not in swedencentral" in result.stderr
    assert not fake_openai.files, "nothing was uploaded"

"""The OpenAI provider's azure flavour: an Azure OpenAI resource, its region, deployments."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from tests.providers.openai.conftest import DATA, azure_spec
from tests.providers.openai.fake_azure import FakeAzureManagement
from tests.providers.openai.fake_openai import FakeOpenAI
from tests.runcli import Cli

from tunefleet.errors import TransientProviderError
from tunefleet.events import JobState
from tunefleet.planning import plan_run
from tunefleet.plugins import discover
from tunefleet.spec import parse_spec
from tunefleet.state import open_journal
from tunefleet.testing.conformance import ConformanceHarness, ProviderConformance
from tunefleet.testing.runs import RunConformance, RunHarness
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


class TestAzureOpenAIRuns(RunConformance):
    """Rerun elsewhere, kills around submit, reattach, on an Azure OpenAI resource: its jobs
    carry no metadata, so they are found by the run key's tag in their suffix."""

    @pytest.fixture
    def run_harness(
        self, tmp_path: Path, fake_openai: FakeOpenAI, fake_azure: FakeAzureManagement
    ) -> RunHarness:
        spec = tmp_path / "azure.yaml"
        spec.write_text(azure_spec(fake_openai, fake_azure))
        return RunHarness(
            spec=spec,
            run_name="support-bot",
            jobs=lambda: len(fake_openai.jobs),
            endpoints=lambda: len(fake_azure.deployments),
            env={"TUNEFLEET_QUEUE_INTERVAL": "0.05"},
        )


def test_an_azure_create_whose_answer_was_lost_ends_with_one_job(
    fake_openai: FakeOpenAI, fake_azure: FakeAzureManagement
) -> None:
    (plan,) = plan_run(
        parse_spec(azure_spec(fake_openai, fake_azure, validation=False)), registry=discover()
    ).plans
    body = plan.request("createFineTuningJob").body
    assert "metadata" not in body, "Azure's jobs have no metadata"
    assert body["suffix"] == "support-bot-${run_key_tag}"
    provider = OpenAIProvider()
    path = DATA / "train.jsonl"
    refs = {
        "train": provider.stage(plan, "train", path, hashlib.sha256(path.read_bytes()).hexdigest())
    }
    run_key = "0123456789abcdef0123456789abcdef"
    # The resource creates the job, and the answer is lost on the way back.
    fake_openai.misbehave(
        status=502,
        code=None,
        message="Bad Gateway",
        operation="createFineTuningJob",
        lose_answer=True,
    )
    with pytest.raises(TransientProviderError):
        provider.submit(plan, refs, run_key)
    (job,) = fake_openai.jobs.values()
    assert job.body["user_provided_suffix"] == "support-bot-0123456789abcdef"
    # The engine looks before it submits again, and finds the job the lost answer made.
    fake_openai.requests.clear()
    found = provider.find(plan, run_key)
    assert found is not None and found.id == job.body["id"]
    listed = [query for op, query in fake_openai.requests if op == "listPaginatedFineTuningJobs"]
    assert listed == [{"limit": "100"}], "one page of the resource's jobs, no metadata filter"
    assert provider.submit(plan, refs, run_key).id == found.id
    assert len(fake_openai.jobs) == 1, "no second billed job"
    assert provider.find(plan, "f" * 32) is None, "another run key's job is not this one"
    assert job.body["status"] == "pending", "Azure's jobs start pending"
    assert provider.status(found).state == JobState.RUNNING  # the fake starts it when asked

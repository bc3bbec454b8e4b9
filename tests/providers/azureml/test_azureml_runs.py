"""Whole runs through the CLI against the fake Azure ML control plane and Azurite: what was
uploaded, what job was created (read back and checked against the REST models), the
events, an endpoint with autoscale, placement refused before any upload, and the run-level
conformance scenarios (reattach, kills around and inside stage, submit and deploy)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter
from tests.providers.azureml.arm_contract import violations
from tests.providers.azureml.azurite import Azurite
from tests.providers.azureml.conftest import DATA, EVALUATION, azureml_spec
from tests.providers.azureml.fake_arm import FakeAzureML

from tunefleet.events import CostEvent, Event, MetricEvent
from tunefleet.provider import fill_placeholders
from tunefleet.state import open_journal
from tunefleet.testing.runs import CliRunner, RunConformance, RunHarness

EVENT: TypeAdapter[Event] = TypeAdapter(Event)


@pytest.fixture
def cli(tmp_path: Path, signed_in: dict[str, str]) -> CliRunner:
    return CliRunner(
        tmp_path,
        f"sqlite:///{tmp_path / 'journal.db'}",
        {"TUNEFLEET_RETRY_BACKOFF": "0.01", **signed_in},
        timeout=180,
    )


def write_spec(tmp_path: Path, text: str, name: str = "azureml.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def created(fake: FakeAzureML, kind: str) -> list[dict[str, Any]]:
    """The bodies of the PUTs of ``kind`` (jobs, data, onlineEndpoints...) the fake got."""
    return [
        r.body
        for r in fake.requests
        if r.method == "PUT" and f"/{kind}/" in r.path and isinstance(r.body, dict)
    ]


def test_a_whole_run_uploads_trains_and_serves_as_planned(
    cli: CliRunner, fake_azureml: FakeAzureML, azurite: Azurite, tmp_path: Path
) -> None:
    """The Done-when of a run: data in Azurite (read back), the job's body as planned and
    valid for the REST models, falling loss, an endpoint with a deployment and autoscale
    that answers, deleted by undeploy."""
    spec = write_spec(
        tmp_path,
        azureml_spec(
            fake_azureml,
            azurite,
            endpoint={"autoscaling": {"min_instances": 1, "max_instances": 3}},
            placement={"tags": {"team": "ml"}},
        ),
    )
    planned = cli("plan", str(spec), "--json")
    assert planned.returncode == 0, planned.stderr
    (plan,) = json.loads(planned.stdout)["plans"]
    job_plan = next(r for r in plan["requests"] if r["operation"] == "Jobs_CreateOrUpdate")
    assert not fake_azureml.requests, "plan talks to no one"

    ran = cli("run", str(spec))
    assert ran.returncode == 0, ran.stderr

    # The data, read back from Azurite as the job would read it.
    container = fake_azureml.datastore_container()
    staged = sorted(
        r.body["properties"]["dataUri"]
        for r in fake_azureml.requests
        if "/data/" in r.path and r.method == "PUT"
    )
    assert len(staged) == 2
    for uri in staged:
        path = uri.split("/paths/", 1)[1]
        held = fake_azureml.blob_text(container, path)
        assert held in {
            (DATA / "train.jsonl").read_bytes(),
            (DATA / "validation.jsonl").read_bytes(),
        }

    # The job: one, created with the planned body (placeholders filled), valid for Azure.
    (job_body,) = created(fake_azureml, "jobs")
    assert not violations("JobBase", job_body)
    sent = job_body["properties"]
    run_key = sent["tags"]["tunefleet:run-key"]
    assert sent["tags"]["team"] == "ml" and len(run_key) == 32
    uris = {
        role: sent["inputs"][name]["uri"]
        for role, name in (("train", "train"), ("validation", "validation"))
    }
    assert all(uri.startswith("azureml://subscriptions/") for uri in uris.values())
    planned_body = fill_placeholders(
        job_plan["body"]["body"],
        {
            "${run_key}": run_key,
            "${train_uri}": uris["train"],
            "${validation_uri}": uris["validation"],
        },
    )
    assert job_body == planned_body, "the job created is exactly the one `tunefleet plan` showed"
    with open_journal(cli.journal_url) as journal:
        (run,) = journal.runs()
        (target,) = journal.targets(run.id)
        events = [EVENT.validate_python(e.payload) for e in journal.events(target.id)]
    losses = [e.train_loss for e in events if isinstance(e, MetricEvent) and e.train_loss]
    assert len(losses) >= 3 and losses[-1] < losses[0], "loss falls"
    (cost,) = [e for e in events if isinstance(e, CostEvent)]
    assert "$3.673/h" in cost.basis, "the actual: the job's run time at the VM size's price"

    deployed = cli("deploy", "support-bot")
    assert deployed.returncode == 0, deployed.stderr
    assert len(fake_azureml.endpoints) == 1
    ((endpoint, deployments),) = fake_azureml.deployments.items()
    assert list(deployments) == ["primary"]
    (setting,) = fake_azureml.autoscale.values()
    assert setting["properties"]["targetResourceUri"].endswith(
        f"/onlineEndpoints/{endpoint}/deployments/primary"
    )
    answer = cli("invoke", "support-bot", "Hello?")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip()
    assert fake_azureml.scored, "the scoring URI was called"

    undeployed = cli("undeploy", "support-bot")
    assert undeployed.returncode == 0, undeployed.stderr
    assert not fake_azureml.endpoints and not fake_azureml.autoscale


@pytest.mark.parametrize(
    ("settings", "placement", "words"),
    [
        ({"location": "westeurope"}, {}, "region: workspace"),
        ({}, {"require_private_network": True}, "placement.require_private_network"),
        ({}, {"require_customer_managed_key": True}, "placement.require_customer_managed_key"),
    ],
    ids=["region", "private-network", "key"],
)
def test_a_policy_the_workspace_cannot_meet_is_refused_before_any_upload(
    cli: CliRunner,
    fake_azureml: FakeAzureML,
    azurite: Azurite,
    tmp_path: Path,
    settings: dict[str, Any],
    placement: dict[str, Any],
    words: str,
) -> None:
    if "location" in settings:
        fake_azureml.location = settings["location"]
    options = (
        {"encryption_scope": "tunefleetcmk"}
        if placement.get("require_customer_managed_key")
        else {}
    )
    spec = write_spec(
        tmp_path, azureml_spec(fake_azureml, azurite, options=options, placement=placement)
    )
    ran = cli("run", str(spec))
    assert ran.returncode != 0
    assert words in ran.stderr and "nothing was uploaded" in ran.stderr
    assert not created(fake_azureml, "data") and not created(fake_azureml, "jobs")
    assert not [r for r in fake_azureml.requests if r.method == "PUT"]


def test_a_job_over_the_core_quota_fails_the_run_saying_what_to_request(
    cli: CliRunner, fake_azureml: FakeAzureML, azurite: Azurite, tmp_path: Path
) -> None:
    """Azure ML accepts the job and fails it when the cluster's VM family lacks the cores
    (the service's own words name the family and the quota to increase)."""
    fake_azureml.vcpu_quota = 8
    spec = write_spec(
        tmp_path, azureml_spec(fake_azureml, azurite, options={"compute": "gpu-cluster"})
    )
    ran = cli("run", str(spec))
    assert ran.returncode == 1, ran.stderr
    assert "vCPU quota" in ran.stderr and "increase" in ran.stderr


def test_a_serverless_fine_tuning_run_of_a_catalog_model_completes(
    cli: CliRunner, fake_azureml: FakeAzureML, azurite: Azurite, tmp_path: Path
) -> None:
    """The hosted route through the same engine: Azure ML's fine-tuning job on the staged
    data, and the model it registered recorded as the run's artifact."""
    catalog = "azureml://registries/azureml/models/Phi-4-mini-instruct/versions/1"
    body = json.loads(azureml_spec(fake_azureml, azurite, options={"mode": "finetuning"}))
    body.update(base_model=catalog, method={"type": "supervised"})
    spec = write_spec(tmp_path, json.dumps(body))
    ran = cli("run", str(spec))
    assert ran.returncode == 0, ran.stderr
    (job_body,) = created(fake_azureml, "jobs")
    assert job_body["properties"]["jobType"] == "FineTuning"
    assert not violations("JobBase", job_body)
    details = job_body["properties"]["fineTuningDetails"]
    assert details["trainingData"]["uri"].startswith("azureml://subscriptions/")
    with open_journal(cli.journal_url) as journal:
        (run,) = journal.runs()
        (target,) = journal.targets(run.id)
        (artifact,) = journal.artifacts(target.id)
    assert artifact.kind == "hosted_model"
    assert "/models/support-bot-" in artifact.uri
    refused = cli("deploy", "support-bot")
    assert refused.returncode != 0 and "serves nothing" in refused.stderr
    assert not fake_azureml.endpoints


class TestAzureMLRuns(RunConformance):
    """Rerun elsewhere, kills around and inside stage, submit and deploy."""

    @pytest.fixture
    def run_harness(
        self,
        tmp_path: Path,
        fake_azureml: FakeAzureML,
        azurite: Azurite,
        signed_in: dict[str, str],
    ) -> RunHarness:
        spec = write_spec(tmp_path, azureml_spec(fake_azureml, azurite))
        evaluated = write_spec(
            tmp_path, azureml_spec(fake_azureml, azurite, evaluation=EVALUATION), "evaluated.yaml"
        )
        return RunHarness(
            spec=spec,
            evaluated_spec=evaluated,
            run_name="support-bot",
            jobs=lambda: len(fake_azureml.jobs),
            endpoints=lambda: len(fake_azureml.endpoints),
            env=signed_in,
            timeout=180,
        )

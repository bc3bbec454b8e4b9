"""Whole runs through the CLI against the fake Vertex AI and fake-gcs-server: what was
uploaded (read back), what job was created (checked against the discovery document and
read back), the events, a Gemini tuning run on the converted data, placement refused
before any upload, and the run-level conformance scenarios (reattach, kills around and
inside stage and submit)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter
from tests.providers.vertex.conftest import (
    BUCKET,
    DATA,
    EVALUATION,
    KEY,
    gemini_spec,
    vertex_spec,
)
from tests.providers.vertex.discovery_contract import decode, violations
from tests.providers.vertex.fake_vertex import FakeVertex
from tests.providers.vertex.gcs import FakeGcs

from tunefleet.events import CostEvent, Event, LogEvent, MetricEvent
from tunefleet.kit.gemini import gemini_example
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


def write_spec(tmp_path: Path, text: str, name: str = "vertex.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


_TYPES = {"customJobs": "CustomJob", "tuningJobs": "TuningJob"}


def created(fake: FakeVertex, collection: str) -> list[dict[str, Any]]:
    """The bodies of the creates of ``collection`` (customJobs, tuningJobs) the fake got,
    read with the proto types: the wire carries enums as proto numbers, written back as
    their names (what the plan and the discovery document speak)."""
    bodies = []
    for r in fake.requests:
        if r.method == "POST" and r.path.endswith(f"/{collection}") and isinstance(r.body, dict):
            body, problem = decode(_TYPES[collection], r.body)
            assert body is not None, problem
            bodies.append(body)
    return bodies


def journal_events(cli: CliRunner) -> list[Event]:
    with open_journal(cli.journal_url) as journal:
        (run,) = journal.runs()
        (target,) = journal.targets(run.id)
        return [EVENT.validate_python(e.payload) for e in journal.events(target.id)]


def test_a_whole_custom_job_run_uploads_and_trains_as_planned(
    cli: CliRunner, fake_vertex: FakeVertex, gcs: FakeGcs, tmp_path: Path
) -> None:
    """The data in fake-gcs-server (read back, with the customer key requested), the
    CustomJob as planned and valid for the discovery document, read back from Vertex,
    falling loss from Cloud Logging, the model directory as the artifact, the cost."""
    spec = write_spec(
        tmp_path,
        vertex_spec(
            fake_vertex,
            gcs,
            options={"kms_key_name": KEY, "price_per_hour": 1.25},
            placement={"tags": {"team": "ml"}, "require_customer_managed_key": True},
        ),
    )
    planned = cli("plan", str(spec), "--json")
    assert planned.returncode == 0, planned.stderr
    (plan,) = json.loads(planned.stdout)["plans"]
    job_plan = next(r for r in plan["requests"] if r["operation"] == "customJobs.create")
    assert not fake_vertex.requests and not gcs.requests, "plan talks to no one"

    ran = cli("run", str(spec))
    assert ran.returncode == 0, ran.stderr

    # The data, read back from Cloud Storage; each object was asked for with the key.
    staged = sorted(gcs.objects(BUCKET, "tunefleet/datasets/"))
    assert len(staged) == 2
    originals = {(DATA / "train.jsonl").read_bytes(), (DATA / "validation.jsonl").read_bytes()}
    for name in staged:
        assert gcs.read(BUCKET, name) in originals
        assert gcs.kms_keys_requested(BUCKET, name) == [KEY]

    # The job: one, created with the planned body (placeholders filled), valid for Vertex.
    (body,) = created(fake_vertex, "customJobs")
    assert not violations("GoogleCloudAiplatformV1CustomJob", body)
    run_key = body["labels"]["tunefleet-run-key"]
    assert body["labels"]["team"] == "ml" and len(run_key) == 32
    args = body["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["args"]
    paths = {
        "${train_path}": args[args.index("--train") + 1],
        "${validation_path}": args[args.index("--validation") + 1],
    }
    assert all(p.startswith(f"/gcs/{BUCKET}/tunefleet/datasets/") for p in paths.values())
    expected = fill_placeholders(job_plan["body"]["customJob"], {"${run_key}": run_key, **paths})
    # The wire form writes enums as proto numbers; the fake decoded them back to names.
    assert body == expected, "the job created is exactly the one `tunefleet plan` showed"
    (job,) = fake_vertex.custom_jobs.values()
    assert job.resource["state"] == "JOB_STATE_SUCCEEDED"
    assert job.resource["encryptionSpec"] == {"kmsKeyName": KEY}

    events = journal_events(cli)
    losses = [e.train_loss for e in events if isinstance(e, MetricEvent) and e.train_loss]
    assert len(losses) >= 3 and losses[-1] < losses[0], "loss falls"
    (cost,) = [e for e in events if isinstance(e, CostEvent)]
    assert "$1.250/h" in cost.basis, "the actual: the job's run time at the price"
    with open_journal(cli.journal_url) as journal:
        (run,) = journal.runs()
        (target,) = journal.targets(run.id)
        kinds = {a.kind: a.uri for a in journal.artifacts(target.id)}
    model = kinds["adapter"]
    assert model.startswith(f"gs://{BUCKET}/tunefleet/jobs/support-bot-{run_key}/model")
    assert gcs.objects(BUCKET, model.removeprefix(f"gs://{BUCKET}/")), "the model is there"


def test_a_gemini_tuning_run_stages_the_converted_data_and_tunes(
    cli: CliRunner, fake_vertex: FakeVertex, gcs: FakeGcs, tmp_path: Path
) -> None:
    """The chat data converted to Gemini's format (read back and checked line by line
    against the source), the TuningJob valid for the discovery document, events (the loss
    from the job's experiment), and the tuned model recorded as the run's artifact."""
    spec = write_spec(
        tmp_path,
        gemini_spec(
            fake_vertex,
            gcs,
            targets=[
                {
                    **json.loads(gemini_spec(fake_vertex, gcs))["targets"][0],
                    "options": {
                        **json.loads(gemini_spec(fake_vertex, gcs))["targets"][0]["options"],
                        "tuning_price_per_million_tokens": 5.0,
                    },
                }
            ],
        ),
    )
    ran = cli("run", str(spec))
    assert ran.returncode == 0, ran.stderr

    (body,) = created(fake_vertex, "tuningJobs")
    assert not violations("GoogleCloudAiplatformV1TuningJob", body)
    supervised = body["supervisedTuningSpec"]
    assert supervised["hyperParameters"] == {"epochCount": "3", "learningRateMultiplier": 0.5}
    for role, source in (("training", "train"), ("validation", "validation")):
        uri = supervised[f"{role}DatasetUri"]
        assert uri.startswith(f"gs://{BUCKET}/") and uri.endswith(".gemini-v1.jsonl")
        lines = gcs.read(BUCKET, uri.removeprefix(f"gs://{BUCKET}/")).decode().splitlines()
        originals = (DATA / f"{source}.jsonl").read_text().splitlines()
        assert [json.loads(line) for line in lines] == [
            gemini_example(json.loads(line)) for line in originals
        ]
        assert all(json.loads(line)["contents"][-1]["role"] == "model" for line in lines)

    events = journal_events(cli)
    losses = [e.train_loss for e in events if isinstance(e, MetricEvent) and e.train_loss]
    assert len(losses) >= 3 and losses[-1] < losses[0], "the tuning job's loss falls"
    assert any(isinstance(e, MetricEvent) and e.valid_loss for e in events), "eval loss too"
    assert any(isinstance(e, LogEvent) and "billable tokens" in e.message for e in events)
    (cost,) = [e for e in events if isinstance(e, CostEvent)]
    assert "x 3 epochs x $5.00/M tokens" in cost.basis
    with open_journal(cli.journal_url) as journal:
        (run,) = journal.runs()
        (target,) = journal.targets(run.id)
        (artifact,) = journal.artifacts(target.id)
    assert artifact.kind == "hosted_model" and "/models/" in artifact.uri


def test_a_dataset_gemini_cannot_take_fails_before_any_upload(
    cli: CliRunner, fake_vertex: FakeVertex, gcs: FakeGcs, tmp_path: Path
) -> None:
    """A chat example with a tool call cannot become a Gemini tuning example: the run
    fails naming the line, with no object and no job."""
    train = tmp_path / "tools.jsonl"
    lines = (DATA / "train.jsonl").read_text().splitlines()
    tool = json.loads(lines[1])
    tool["messages"][-1] = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
        ],
    }
    tool["messages"].append({"role": "tool", "tool_call_id": "c1", "content": "found"})
    tool["messages"].append({"role": "assistant", "content": "Here it is."})
    train.write_text("\n".join([lines[0], json.dumps(tool), *lines[2:]]) + "\n")
    body = json.loads(gemini_spec(fake_vertex, gcs, validation=False))
    body["dataset"] = {"train": str(train)}
    ran = cli("run", str(write_spec(tmp_path, json.dumps(body))))
    assert ran.returncode != 0
    assert "line 2" in ran.stderr and "Traceback" not in ran.stderr
    assert not gcs.objects(BUCKET) and not fake_vertex.tuning_jobs


def test_a_bucket_outside_the_region_is_refused_before_any_upload(
    cli: CliRunner, fake_vertex: FakeVertex, gcs: FakeGcs, tmp_path: Path
) -> None:
    gcs.create_bucket("tunefleet-us", location="US")
    spec = write_spec(tmp_path, vertex_spec(fake_vertex, gcs, options={"bucket": "tunefleet-us"}))
    ran = cli("run", str(spec))
    assert ran.returncode != 0
    assert "bucket tunefleet-us is in us" in ran.stderr and "nothing was uploaded" in ran.stderr
    assert not gcs.objects("tunefleet-us") and not fake_vertex.custom_jobs


class TestVertexRuns(RunConformance):
    """Rerun elsewhere, kills around and inside stage, submit and deploy, an evaluation
    answered by the job."""

    @pytest.fixture
    def run_harness(
        self, tmp_path: Path, fake_vertex: FakeVertex, gcs: FakeGcs, signed_in: dict[str, str]
    ) -> RunHarness:
        spec = write_spec(tmp_path, vertex_spec(fake_vertex, gcs, endpoint={}))
        evaluated = write_spec(
            tmp_path, vertex_spec(fake_vertex, gcs, evaluation=EVALUATION), "evaluated.yaml"
        )

        def orphans() -> list[str]:
            """Models uploaded for an endpoint that no endpoint serves (a deploy killed
            between the upload and the deployment must finish, not leave them)."""
            served = {
                d["model"].rsplit("/", 1)[-1].split("@")[0]
                for e in fake_vertex.endpoints.values()
                for d in e.get("deployedModels", [])
            }
            return sorted(set(fake_vertex.models) - served)

        return RunHarness(
            spec=spec,
            evaluated_spec=evaluated,
            run_name="support-bot",
            jobs=lambda: len(fake_vertex.custom_jobs),
            endpoints=lambda: len(fake_vertex.endpoints),
            orphans=orphans,
            env=signed_in,
            timeout=180,
        )


class TestVertexTuningRuns(RunConformance):
    """The same for Gemini tuning jobs, which carry no ID of tunefleet's: rerun elsewhere,
    kills around and inside stage (the conversion) and submit; the evaluation asks the
    tuned model through its endpoint."""

    @pytest.fixture
    def run_harness(
        self, tmp_path: Path, fake_vertex: FakeVertex, gcs: FakeGcs, signed_in: dict[str, str]
    ) -> RunHarness:
        spec = write_spec(tmp_path, gemini_spec(fake_vertex, gcs))
        evaluated = write_spec(
            tmp_path, gemini_spec(fake_vertex, gcs, evaluation=EVALUATION), "evaluated.yaml"
        )
        return RunHarness(
            spec=spec,
            evaluated_spec=evaluated,
            run_name="support-bot",
            jobs=lambda: len(fake_vertex.tuning_jobs),
            env=signed_in,
            timeout=180,
        )

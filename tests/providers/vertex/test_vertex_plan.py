"""Plans of Vertex targets: the custom job and the tuning job as the spec asks, the
placement policy honoured or refused with the setting named, Google's label rules, and no
Google SDK imported by planning. No network: plan talks to no one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.providers.vertex.discovery_contract import violations

from tunefleet.planning import plan_run
from tunefleet.plugins import discover
from tunefleet.provider import Plan
from tunefleet.spec import parse_spec

DATA = Path(__file__).parents[3] / "examples" / "quickstart" / "data"
IMAGE = "europe-west4-docker.pkg.dev/tunefleet-test/tf/trainer:0.1.0"
KEY = "projects/tunefleet-test/locations/europe-west4/keyRings/tf/cryptoKeys/data"


def spec_text(
    *, options: dict[str, Any] | None = None, target: dict[str, Any] | None = None, **top: Any
) -> str:
    """A spec (JSON is YAML) training scratch:tiny on the quickstart data on Vertex."""
    body: dict[str, Any] = {
        "version": 1,
        "name": "support-bot",
        "base_model": "scratch:tiny",
        "dataset": {
            "train": str(DATA / "train.jsonl"),
            "validation": str(DATA / "validation.jsonl"),
        },
        "method": {"type": "supervised", "adapter": "lora"},
        "hyperparameters": {"epochs": 2, "batch_size": 8, "learning_rate": 0.0002},
        "targets": [
            {
                "provider": "vertex",
                "region": "europe-west4",
                **(target or {}),
                "options": {
                    "project": "tunefleet-test",
                    "bucket": "tunefleet-data",
                    "training_image": IMAGE,
                    **(options or {}),
                },
            }
        ],
    }
    body.update(top)
    return json.dumps(body)


def gemini_text(**top: Any) -> str:
    """A spec tuning gemini-2.5-flash on the quickstart data."""
    body = json.loads(spec_text(options={"mode": "tuning", "training_image": None}))
    body.update(
        base_model="gemini-2.5-flash",
        method={"type": "supervised"},
        hyperparameters={"epochs": 3, "learning_rate_multiplier": 0.5},
    )
    del body["targets"][0]["options"]["training_image"]
    body.update(top)
    return json.dumps(body)


def planned(text: str) -> Plan:
    (plan,) = plan_run(parse_spec(text), registry=discover()).plans
    return plan


def unmet_of(plan: Plan) -> dict[str, str]:
    return {u.requirement: u.reason for u in plan.unmet}


def test_the_custom_job_is_what_vertex_documents_and_the_spec_asks() -> None:
    """The planned CustomJob is valid for the discovery document once its placeholders are
    filled; two replicas make a chief pool and a worker pool, spot is Vertex's SPOT
    strategy, the run key is a label, the trainer gets its datasets on the FUSE mount."""
    plan = planned(
        spec_text(
            target={
                "compute": {"instance_type": "g2-standard-24", "instance_count": 3, "spot": True}
            },
            options={"kms_key_name": KEY, "network": "projects/123456789012/global/networks/ml"},
            placement={"tags": {"team": "ml"}},
        )
    )
    assert plan.ok, plan.unmet
    body = plan.request("customJobs.create").body
    assert body["parent"] == "projects/tunefleet-test/locations/europe-west4"
    job = json.loads(
        json.dumps(body["customJob"])
        .replace("${run_key}", "a" * 32)
        .replace("${train_path}", "/gcs/b/t.jsonl")
        .replace("${validation_path}", "/gcs/b/v.jsonl")
    )
    assert not violations("GoogleCloudAiplatformV1CustomJob", job)
    chief, workers = job["jobSpec"]["workerPoolSpecs"]
    assert chief["replicaCount"] == "1" and workers["replicaCount"] == "2"
    assert chief["machineSpec"] == {
        "machineType": "g2-standard-24",
        "acceleratorType": "NVIDIA_L4",
        "acceleratorCount": 2,
    }
    args = chief["containerSpec"]["args"]
    assert args[:3] == ["--nproc-per-node", "2", "--"], "one trainer process per GPU"
    assert args[args.index("--train") + 1] == "/gcs/b/t.jsonl"
    assert job["jobSpec"]["scheduling"]["strategy"] == "SPOT"
    assert job["jobSpec"]["network"].endswith("/networks/ml")
    assert job["encryptionSpec"] == {"kmsKeyName": KEY}
    assert job["labels"] == {
        "team": "ml",
        "tunefleet-run": "support-bot",
        "tunefleet-target": "vertex",
        "tunefleet-run-key": "a" * 32,
    }
    uploads = [r.body for r in plan.requests_for("stage")]
    assert [u["kmsKeyName"] for u in uploads] == [KEY, KEY], "staged objects carry the key"
    assert all(u["ifGenerationMatch"] == "0" for u in uploads), "never over an object"


def test_an_eu_only_policy_refuses_us_central1_at_plan(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        spec_text(target={"region": "us-central1"}, placement={"allowed_regions": ["europe-*"]})
    )
    result = subprocess.run(
        [sys.executable, "-m", "tunefleet", "plan", str(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "placement.allowed_regions" in result.stderr and "us-central1" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("placement", "options", "setting"),
    [
        ({"require_customer_managed_key": True}, {}, "options.kms_key_name"),
        ({"require_private_network": True}, {}, "options.network"),
    ],
    ids=["key", "network"],
)
def test_a_missing_key_or_network_is_named(
    placement: dict[str, Any], options: dict[str, Any], setting: str
) -> None:
    plan = planned(spec_text(placement=placement, options=options))
    reasons = unmet_of(plan)
    requirement = next(iter(placement)).join(["placement.", ""])
    assert setting in reasons[requirement]


def test_a_key_of_another_region_is_refused() -> None:
    other = KEY.replace("europe-west4", "us-central1")
    plan = planned(
        spec_text(options={"kms_key_name": other}, placement={"require_customer_managed_key": True})
    )
    assert "not in europe-west4" in unmet_of(plan)["options.kms_key_name"]


def test_a_private_service_connect_interface_satisfies_a_private_network() -> None:
    attachment = "projects/tunefleet-test/regions/europe-west4/networkAttachments/ml"
    plan = planned(
        spec_text(
            options={"psc_network_attachment": attachment},
            placement={"require_private_network": True},
        )
    )
    assert plan.ok, plan.unmet
    spec = plan.request("customJobs.create").body["customJob"]["jobSpec"]
    assert spec["pscInterfaceConfig"] == {"networkAttachment": attachment}


@pytest.mark.parametrize(
    ("tags", "words"),
    [
        ({"Team": "ml"}, "cannot be a Google Cloud label key"),
        ({"team": "ML.Research"}, "cannot be a Google Cloud label value"),
    ],
    ids=["uppercase-key", "dotted-value"],
)
def test_a_tag_that_cannot_be_a_label_is_refused_not_rewritten(
    tags: dict[str, str], words: str
) -> None:
    plan = planned(spec_text(placement={"tags": tags}))
    (key,) = tags
    assert words in unmet_of(plan)[f"placement.tags.{key}"]
    labels = plan.request("customJobs.create").body["customJob"]["labels"]
    assert key in labels and labels[key] == tags[key], "the tag is shown as given, not changed"


def test_a_built_in_gpu_machine_refuses_other_accelerators() -> None:
    plan = planned(
        spec_text(
            target={"compute": {"instance_type": "a2-highgpu-1g"}},
            options={"accelerator_type": "NVIDIA_L4"},
        )
    )
    assert "compute.instance_type" in unmet_of(plan)


def test_the_gemini_tuning_job_maps_three_knobs_and_refuses_the_rest() -> None:
    plan = planned(gemini_text())
    assert plan.ok, plan.unmet
    body = plan.request("tuningJobs.create").body
    job = json.loads(
        json.dumps(body["tuningJob"])
        .replace("${run_key}", "a" * 32)
        .replace("${train_uri}", "gs://b/t.jsonl")
        .replace("${validation_uri}", "gs://b/v.jsonl")
    )
    assert not violations("GoogleCloudAiplatformV1TuningJob", job)
    assert job["baseModel"] == "gemini-2.5-flash"
    assert job["supervisedTuningSpec"]["hyperParameters"] == {
        "epochCount": "3",
        "learningRateMultiplier": 0.5,
    }
    uploads = [r.body for r in plan.requests_for("stage")]
    assert all(u["name"].endswith(".gemini-v1.jsonl") for u in uploads), "the converted file"

    refused = planned(
        gemini_text(
            method={"type": "supervised", "adapter": "qlora"},
            hyperparameters={"batch_size": 8, "learning_rate": 0.001},
            placement={"require_private_network": True},
        )
    )
    reasons = unmet_of(refused)
    for requirement in (
        "method.adapter",
        "hyperparameters.batch_size",
        "hyperparameters.learning_rate",
        "placement.require_private_network",
    ):
        assert requirement in reasons, requirement
    assert "learning_rate_multiplier" in reasons["hyperparameters.learning_rate"]


def test_an_open_weight_model_cannot_be_tuned_as_gemini() -> None:
    body = json.loads(gemini_text())
    body["base_model"] = "Qwen/Qwen2.5-0.5B-Instruct"
    reasons = unmet_of(planned(json.dumps(body)))
    assert "options.mode: custom" in reasons["base_model"]


def test_plans_import_no_google_sdk_and_vertex_plans_import_no_other(tmp_path: Path) -> None:
    """Planning a Vertex target loads no Google SDK (it talks to no one); planning the
    quickstart (local) loads none either. ``google`` and ``google.cloud`` are the empty
    namespace packages google-cloud-aiplatform's ``*-nspkg.pth`` makes at start-up."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_text())
    quickstart = Path(__file__).parents[3] / "examples" / "quickstart" / "tunefleet.yaml"
    code = (
        "import sys; from tunefleet.planning import plan_run; from tunefleet.plugins import "
        "discover; from tunefleet.spec import load_spec;"
        f"[plan_run(load_spec(p), registry=discover()) for p in ({str(spec)!r}, {str(quickstart)!r})];"
        "print(sorted({m for m in sys.modules if m.split('.')[0] in "
        "('google', 'vertexai', 'azure', 'boto3', 'botocore', 'openai')"
        " and m not in ('google', 'google.cloud')}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"

"""What `tunefleet plan` says for Azure ML targets: the requests it would send, checked
against the REST models of azure-ai-ml and azure-mgmt-monitor, and what it refuses, with
no Azure at all (plan uses no credentials and no network). Also what staging refuses
about a workspace, decided from the workspace's own settings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from tests.providers.azureml.arm_contract import violations

from tunefleet.planning import plan_run
from tunefleet.plugins import discover
from tunefleet.provider import Plan, fill_placeholders
from tunefleet.spec import parse_spec
from tunefleet_azureml import _planning, _serving
from tunefleet_azureml._workspace import Workspace, placement_problems
from tunefleet_azureml.options import AzureMLOptions

DATA = Path(__file__).parents[3] / "examples" / "quickstart" / "data"
SUBSCRIPTION = "00000000-0000-4000-8000-000000000002"
IMAGE = "acme.azurecr.io/tunefleet-trainer:0.1.0"
KEY = "https://acme-keys.vault.azure.net/keys/tunefleet/0123456789abcdef0123456789abcdef"
MODELS = {
    "DataVersions_CreateOrUpdate": ("DataVersionBase", "ml"),
    "EnvironmentVersions_CreateOrUpdate": ("EnvironmentVersion", "ml"),
    "Jobs_CreateOrUpdate": ("JobBase", "ml"),
    "ModelVersions_CreateOrUpdate": ("ModelVersion", "ml"),
    "OnlineEndpoints_CreateOrUpdate": ("OnlineEndpoint", "ml"),
    "OnlineDeployments_CreateOrUpdate": ("OnlineDeployment", "ml"),
    "AutoscaleSettings_CreateOrUpdate": ("AutoscaleSettingResource", "monitor"),
}
"""The REST model each planned Resource Manager request's body must be."""


def options(**extra: Any) -> dict[str, Any]:
    return {
        "subscription_id": SUBSCRIPTION,
        "resource_group": "rg-ml",
        "workspace": "ws-tune",
        "training_image": IMAGE,
        **extra,
    }


def planned(
    *,
    extra: dict[str, Any] | None = None,
    compute: dict[str, Any] | None = None,
    region: str | None = "swedencentral",
    **top: Any,
) -> Plan:
    """The plan of a one-target spec on Azure ML (the quickstart data, scratch:tiny)."""
    target: dict[str, Any] = {
        "provider": "azureml",
        "compute": compute or {},
        "options": options(**(extra or {})),
    }
    if region is not None:
        target["region"] = region
    body: dict[str, Any] = {
        "version": 1,
        "name": "support-bot",
        "base_model": "scratch:tiny",
        "dataset": {
            "train": str(DATA / "train.jsonl"),
            "validation": str(DATA / "validation.jsonl"),
        },
        "targets": [target],
    }
    body.update(top)
    (plan,) = plan_run(parse_spec(json.dumps(body)), registry=discover()).plans
    return plan


def request(plan: Plan, operation: str) -> dict[str, Any]:
    found = [r.body for r in plan.requests if r.operation == operation]
    assert found, f"no {operation} planned"
    return found[0]


def unmet(plan: Plan) -> dict[str, str]:
    return {u.requirement: u.reason for u in plan.unmet}


def job(plan: Plan) -> dict[str, Any]:
    properties: dict[str, Any] = request(plan, "Jobs_CreateOrUpdate")["body"]["properties"]
    return properties


SAMPLES = {
    _planning.RUN_KEY: "f" * 32,
    _planning.uri_placeholder("train"): "azureml://subscriptions/s/resourcegroups/g/"
    "workspaces/w/data/support-bot-train/versions/1",
    _planning.uri_placeholder("validation"): "azureml://subscriptions/s/resourcegroups/g/"
    "workspaces/w/data/support-bot-validation/versions/1",
    _serving.ENDPOINT: "support-bot",
    _serving.DEPLOYMENT: "primary",
    _serving.MODEL: "/subscriptions/s/resourceGroups/g/providers/Microsoft."
    "MachineLearningServices/workspaces/w/models/m/versions/1",
    _serving.MODEL_DIR: "/var/azureml-app/azureml-models/m/1/m/merged",
}


@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"compute": {"instance_count": 2, "spot": True}},
        {"extra": {"compute": "gpu-cluster", "endpoint_auth": "aad"}},
        {
            "endpoint": {
                "instance_type": "Standard_NC24ads_A100_v4",
                "autoscaling": {"min_instances": 1, "max_instances": 4},
            },
            "placement": {"require_private_network": True, "tags": {"team": "ml"}},
        },
    ],
    ids=["serverless", "spot-multinode", "cluster-aad", "autoscaled-private"],
)
def test_every_planned_body_is_what_the_rest_models_accept(variant: dict[str, Any]) -> None:
    """Each Resource Manager body, placeholders filled as at submit, passes the wire
    checks of the models azure-ai-ml (2025-12-01) and azure-mgmt-monitor generate."""
    plan = planned(**variant)
    checked = 0
    for planned_request in plan.requests:
        if planned_request.operation not in MODELS:
            continue
        model, package = MODELS[planned_request.operation]
        body = fill_placeholders(planned_request.body["body"], SAMPLES)
        found = violations(model, body, package=package)  # type: ignore[arg-type]
        assert not found, f"{planned_request.operation}: {found}"
        checked += 1
    assert checked >= 8


def test_the_job_runs_the_trainer_with_the_paths_azure_ml_mounts() -> None:
    plan = planned()
    assert plan.ok, plan.unmet
    properties = job(plan)
    assert properties["jobType"] == "Command"
    assert properties["command"] == (
        "python -m tunefleet_trainer --train ${{inputs.train}} "
        "--validation ${{inputs.validation}} --output-dir ${{outputs.model}} "
        "--checkpoint-dir ${{outputs.checkpoints}}"
    )
    config = json.loads(properties["environmentVariables"][_planning.CONFIG_ENV])
    assert config["base_model"] == "scratch:tiny" and config["merge"] is True
    assert "train" not in config and "output_dir" not in config, "paths are Azure ML's"
    assert properties["inputs"]["train"] == {
        "jobInputType": "uri_file",
        "uri": "${train_uri}",
        "mode": "Download",
    }
    assert properties["outputs"]["checkpoints"]["mode"] == "ReadWriteMount"
    assert properties["resources"] == {
        "instanceCount": 1,
        "instanceType": "Standard_NC24ads_A100_v4",
    }
    assert "computeId" not in properties, "serverless compute names no cluster"
    assert properties["tags"]["tunefleet:run-key"] == _planning.RUN_KEY
    assert request(plan, "Jobs_CreateOrUpdate")["path"] == "jobs/support-bot-${run_key}"


def test_several_nodes_or_gpus_train_under_torch_distributed_and_spot_is_a_tier() -> None:
    properties = job(planned(compute={"instance_count": 2, "spot": True}))
    assert properties["distribution"] == {
        "distributionType": "PyTorch",
        "processCountPerInstance": 1,
    }
    assert properties["queueSettings"] == {"jobTier": "Spot"}
    eight = job(planned(compute={"instance_type": "Standard_ND96amsr_A100_v4"}))
    assert eight["distribution"]["processCountPerInstance"] == 8, "one process per GPU"


def test_a_cluster_is_named_by_its_resource_id_and_takes_no_spot_or_vm_size() -> None:
    properties = job(planned(extra={"compute": "gpu-cluster"}))
    assert properties["computeId"].endswith("/workspaces/ws-tune/computes/gpu-cluster")
    assert "instanceType" not in properties["resources"]
    refused = unmet(
        planned(
            extra={"compute": "gpu-cluster"},
            compute={"spot": True, "instance_type": "Standard_NC24ads_A100_v4"},
        )
    )
    assert "serverless compute" in refused["compute.spot"]
    assert "own VM size" in refused["compute.instance_type"]


def test_the_plan_names_what_staging_checks_the_workspace_against() -> None:
    plan = planned(
        extra={"encryption_scope": "tunefleetcmk", "key_vault_key": KEY},
        placement={"require_private_network": True, "require_customer_managed_key": True},
    )
    assert plan.ok, plan.unmet
    assert request(plan, "Workspaces_Get")["expect"] == {
        "location": "swedencentral",
        "requirePrivateNetwork": True,
        "requireCustomerManagedKey": True,
        "keyVaultKey": KEY,
        "compute": None,
    }
    upload = request(plan, "PutBlockList")
    assert upload["encryptionScope"] == "tunefleetcmk"
    assert upload["path"].startswith("tunefleet/datasets/") and upload["path"].endswith(".jsonl")


@pytest.mark.parametrize(
    ("variant", "requirement", "words"),
    [
        ({"region": None}, "region", "workspace's"),
        (
            {"placement": {"require_customer_managed_key": True}},
            "placement.require_customer_managed_key",
            "options.encryption_scope",
        ),
        (
            {
                "method": {"type": "supervised", "adapter": "qlora"},
                "compute": {"instance_type": "Standard_DS3_v2"},
            },
            "method.adapter",
            "CUDA",
        ),
        ({"endpoint": {"name": "x" * 40}}, "endpoint.name", "3-32"),
        (
            {"endpoint": {"autoscaling": {"min_instances": 0, "max_instances": 2}}},
            "endpoint.autoscaling.min_instances",
            "zero",
        ),
        (
            {"hyperparameters": {"learning_rate_multiplier": 2.0}},
            "hyperparameters.learning_rate_multiplier",
            "absolute",
        ),
    ],
    ids=[
        "no-region",
        "key-without-scope",
        "qlora-on-cpu",
        "endpoint-name",
        "scale-to-zero",
        "multiplier",
    ],
)
def test_what_the_target_cannot_honour_is_refused_with_the_setting(
    variant: dict[str, Any], requirement: str, words: str
) -> None:
    plan = planned(**variant)
    assert requirement in unmet(plan), plan.unmet
    assert words in unmet(plan)[requirement]


def test_with_an_evaluation_the_job_answers_the_golden_set_into_its_own_output() -> None:
    body = {"golden_set": str(DATA / "validation.jsonl"), "metrics": ["exact_match"]}
    plan = planned(evaluation=body)
    assert plan.ok, plan.unmet
    assert plan.predictions == "job"
    properties = job(plan)
    assert properties["command"].endswith(
        "--golden-set ${{inputs.golden}} --output-dir ${{outputs.model}} "
        "--checkpoint-dir ${{outputs.checkpoints}} --predictions-dir ${{outputs.predictions}}"
    )
    assert properties["inputs"]["golden"]["uri"] == "${golden_set_uri}"
    assert properties["outputs"]["predictions"]["mode"] == "Upload"
    config = json.loads(properties["environmentVariables"][_planning.CONFIG_ENV])
    assert config["evaluation"]["baseline"] is True and "golden_set" not in config["evaluation"]
    staged = [r.body["role"] for r in plan.requests if r.operation == "PutBlockList"]
    assert staged == ["train", "validation", "golden_set"]


def test_the_estimate_is_vm_hours_and_a_cluster_needs_its_price() -> None:
    plan = planned()
    assert plan.cost is not None and plan.cost.amount > 0
    assert "Standard_NC24ads_A100_v4" in plan.cost.basis
    spot = planned(compute={"spot": True})
    assert spot.cost is not None and spot.cost.amount < plan.cost.amount
    cluster = planned(extra={"compute": "gpu-cluster"})
    assert cluster.cost is None
    assert any("options.price_per_hour" in note for note in cluster.notes)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("workspace", "../etc"),
        ("resource_group", "rg."),
        ("management_url", "http://management.azure.com"),
        ("management_url", "https://user:pw@management.azure.com"),
        ("prefix", "a/../../b"),
        ("training_image", "not an image"),
        ("compute", "x"),
        ("encryption_scope", "has-hyphen!"),
        ("subscription_id", "sub"),
    ],
)
def test_hostile_or_malformed_options_are_refused(field: str, value: str) -> None:
    with pytest.raises(ValidationError):
        AzureMLOptions.model_validate(options(**{field: value}))


def test_planning_imports_no_azure_sdk() -> None:
    code = (
        "import sys, json;"
        "from tunefleet.planning import plan_run; from tunefleet.plugins import discover;"
        "from tunefleet.spec import parse_spec;"
        f"spec = parse_spec({json.dumps(json.dumps(_spec_body()))});"
        "plan_run(spec, registry=discover());"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'azure'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_plans_for_other_providers_import_no_azure_sdk() -> None:
    """The quickstart (the local provider), planned with every provider installed."""
    quickstart = Path(__file__).parents[3] / "examples" / "quickstart" / "tunefleet.yaml"
    code = (
        "import sys; from tunefleet.planning import plan_run; from tunefleet.plugins import "
        f"discover; from tunefleet.spec import load_spec; plan_run(load_spec({str(quickstart)!r}),"
        " registry=discover());"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'azure'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"


def _spec_body() -> dict[str, Any]:
    return {
        "name": "support-bot",
        "base_model": "scratch:tiny",
        "dataset": {"train": str(DATA / "train.jsonl")},
        "targets": [{"provider": "azureml", "region": "swedencentral", "options": options()}],
    }


# The workspace, checked before anything is uploaded ----------------------------------

OPEN = Workspace(
    location="Sweden Central", public_network_access="Enabled", isolation_mode=None, key=None
)
EXPECT = {
    "location": "swedencentral",
    "requirePrivateNetwork": False,
    "requireCustomerManagedKey": False,
}


def problems(
    workspace: Workspace, cluster: dict[str, Any] | None = None, **expect: Any
) -> list[str]:
    extra = {"compute": "gpu-cluster"} if cluster is not None else {}
    return placement_problems(
        {**EXPECT, **expect}, AzureMLOptions.model_validate(options(**extra)), workspace, cluster
    )


def test_a_workspace_in_the_targets_region_and_no_policy_passes() -> None:
    assert problems(OPEN) == [], "Azure's display name and the region's id are one region"


def test_a_workspace_elsewhere_is_refused_naming_both_regions() -> None:
    (found,) = problems(OPEN, location="westeurope")
    assert found.startswith("region:") and "swedencentral" in found and "westeurope" in found


def test_a_public_workspace_fails_a_private_network_policy() -> None:
    found = problems(OPEN, requirePrivateNetwork=True)
    assert found and all(p.startswith("placement.require_private_network") for p in found)
    isolated = Workspace("swedencentral", "Enabled", "AllowOnlyApprovedOutbound", None)
    assert problems(isolated, requirePrivateNetwork=True) == []
    closed = Workspace("swedencentral", "Disabled", None, None)
    (serverless,) = problems(closed, requirePrivateNetwork=True)
    assert "serverless compute" in serverless
    subnet = {
        "properties": {"properties": {"subnet": {"id": "/subnets/a"}, "enableNodePublicIp": False}}
    }
    assert problems(closed, subnet, requirePrivateNetwork=True) == []
    public_ip = {"properties": {"properties": {"subnet": {"id": "/subnets/a"}}}}
    (found_ip,) = problems(closed, public_ip, requirePrivateNetwork=True)
    assert "enableNodePublicIp" in found_ip


def test_a_customer_key_policy_needs_the_workspace_encrypted_with_the_key() -> None:
    (found,) = problems(OPEN, requireCustomerManagedKey=True)
    assert "Microsoft-managed" in found
    keyed = Workspace("swedencentral", "Enabled", None, KEY.rsplit("/", 1)[0] + "/" + "a" * 32)
    assert problems(keyed, requireCustomerManagedKey=True) == [], "any version of the key"
    with_option = placement_problems(
        {**EXPECT, "requireCustomerManagedKey": True},
        AzureMLOptions.model_validate(
            options(key_vault_key="https://other.vault.azure.net/keys/k")
        ),
        keyed,
        None,
    )
    assert with_option and "another key" in with_option[0]


# Serverless fine-tuning of catalog models --------------------------------------------

CATALOG = "azureml://registries/azureml/models/Phi-4-mini-instruct/versions/1"


def test_a_serverless_fine_tuning_job_is_azure_mls_own_with_the_hyperparameters_it_takes() -> None:
    plan = planned(
        extra={"mode": "finetuning", "training_image": None},
        base_model=CATALOG,
        method={"type": "supervised"},
        hyperparameters={"epochs": 3, "learning_rate": 0.0002, "batch_size": 4},
    )
    assert plan.ok, plan.unmet
    properties = job(plan)
    assert properties["jobType"] == "FineTuning"
    details = properties["fineTuningDetails"]
    assert details["model"] == {"jobInputType": "mlflow_model", "uri": CATALOG}
    assert details["hyperParameters"] == {
        "num_train_epochs": "3",
        "learning_rate": "0.0002",
        "per_device_train_batch_size": "4",
    }
    assert properties["outputs"]["registered_model"]["assetName"] == "support-bot-${run_key}"
    assert not [r for r in plan.requests if r.phase == "deploy"], "nothing to deploy"
    assert not [r for r in plan.requests if r.operation == "EnvironmentVersions_CreateOrUpdate"]
    body = fill_placeholders(request(plan, "Jobs_CreateOrUpdate")["body"], SAMPLES)
    assert not violations("JobBase", body)
    assert plan.cost is None and any("own meter" in note for note in plan.notes)


@pytest.mark.parametrize(
    ("variant", "requirement"),
    [
        ({"base_model": "Qwen/Qwen2.5-0.5B"}, "base_model"),
        (
            {
                "method": {"type": "dpo"},
                "dataset": {
                    "train": str(Path(__file__).parents[1] / "openai" / "preference.jsonl")
                },
            },
            "method.type",
        ),
        ({"method": {"type": "supervised", "adapter": "lora"}}, "method.adapter"),
        ({"hyperparameters": {"warmup_ratio": 0.1}}, "hyperparameters.warmup_ratio"),
        ({"placement": {"require_private_network": True}}, "placement.require_private_network"),
        ({"endpoint": {}}, "endpoint"),
    ],
    ids=["not-a-catalog-model", "dpo", "adapter", "warmup", "private", "endpoint"],
)
def test_what_serverless_fine_tuning_cannot_do_is_refused(
    variant: dict[str, Any], requirement: str
) -> None:
    body: dict[str, Any] = {"base_model": CATALOG, "method": {"type": "supervised"}, **variant}
    plan = planned(extra={"mode": "finetuning"}, **body)
    assert requirement in unmet(plan), plan.unmet


def test_a_command_job_needs_the_trainer_image() -> None:
    plan = planned(extra={"training_image": None})
    assert "deploy/trainer" in unmet(plan)["options.training_image"]

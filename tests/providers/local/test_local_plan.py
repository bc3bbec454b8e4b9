"""The local provider plans the trainer run and states what this machine cannot honour."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunefleet.planning import plan_run
from tunefleet.plugins import discover
from tunefleet.spec import parse_spec
from tunefleet.starter import write_starter


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_starter(tmp_path)
    return tmp_path


def load(project: Path, extra: str = "", target: str = "  - provider: local\n"):  # type: ignore[no-untyped-def]
    text = (project / "tunefleet.yaml").read_text().replace("  - provider: local\n", target) + extra
    return parse_spec(text, source="tunefleet.yaml", base_dir=project)


def test_starter_plans_the_trainer_on_this_machine(project: Path) -> None:
    run_plan = plan_run(load(project), registry=discover())
    (plan,) = run_plan.plans
    assert plan.ok and plan.provider == "local"
    assert [(r.phase, r.operation) for r in plan.requests] == [
        ("stage", "CopyDataset"),
        ("stage", "CopyDataset"),
        ("submit", "RunTrainer"),
    ]
    config = plan.request("RunTrainer").body["config"]
    assert config["adapter"] == "lora" and config["base_model"] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert config["hyperparameters"]["lora"] == {"rank": 8, "alpha": 16.0, "dropout": 0.05}
    assert config["device"] == "auto" and config["logging_steps"] == 1
    assert "train" not in config and "output_dir" not in config, "submit decides the paths"
    assert plan.cost is not None and plan.cost.amount == 0
    assert plan.epochs == 3


def test_region_pins_and_private_networks_hold_on_this_machine(project: Path) -> None:
    extra = "  allowed_regions: [eu-*]\n  require_private_network: true\n"
    run_plan = plan_run(load(project, extra), registry=discover())
    assert run_plan.ok


def test_what_this_machine_cannot_do_fails_the_plan(project: Path) -> None:
    extra = "  require_customer_managed_key: true\n  required_tags: [project]\n"
    target = "  - provider: local\n    region: eu-west-1\n    compute: {spot: true}\n"
    (plan,) = plan_run(load(project, extra, target), registry=discover()).plans
    assert {u.requirement for u in plan.unmet} == {
        "region",
        "placement.require_customer_managed_key",
        "placement.required_tags",
        "compute.spot",
    }


def test_compute_settings_this_machine_cannot_honour_fail_the_plan(project: Path) -> None:
    target = "  - provider: local\n    compute: {max_runtime_hours: 2, volume_size_gb: 50}\n"
    (plan,) = plan_run(load(project, "", target), registry=discover()).plans
    assert {u.requirement for u in plan.unmet} == {
        "compute.max_runtime_hours",
        "compute.volume_size_gb",
    }


def test_the_plan_pins_the_work_directory_relative_to_the_spec(
    project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    monkeypatch.setenv("TUNEFLEET_LOCAL_WORKDIR", "/nonexistent/env-workdir")
    target = "  - provider: local\n    options: {workdir: build/work}\n"
    (plan,) = plan_run(load(project, "", target), registry=discover()).plans
    assert plan.options["workdir"] == str((project / "build" / "work").resolve())
    assert not (project / "build").exists(), "planning creates nothing"
    (default,) = plan_run(load(project), registry=discover()).plans
    assert default.options["workdir"] == "/nonexistent/env-workdir"


def test_qlora_on_a_machine_without_a_cuda_gpu_fails_the_plan(project: Path) -> None:
    text = (project / "tunefleet.yaml").read_text().replace("adapter: lora", "adapter: qlora")
    target = "  - provider: local\n    options: {device: cpu}\n"
    spec = parse_spec(text.replace("  - provider: local\n", target), base_dir=project)
    (plan,) = plan_run(spec, registry=discover()).plans
    assert [(u.requirement, u.reason.split(";")[0]) for u in plan.unmet] == [
        ("method.adapter", "qlora trains a 4-bit model and needs a CUDA GPU and bitsandbytes")
    ]


def test_a_local_model_directory_next_to_the_spec_is_resolved(project: Path) -> None:
    (project / "models" / "base").mkdir(parents=True)
    text = (project / "tunefleet.yaml").read_text()
    spec = parse_spec(
        text.replace("base_model: Qwen/Qwen2.5-0.5B-Instruct", "base_model: models/base"),
        base_dir=project,
    )
    (plan,) = plan_run(spec, registry=discover()).plans
    assert plan.request("RunTrainer").body["config"]["base_model"] == str(
        project / "models" / "base"
    )


def test_a_learning_rate_multiplier_is_refused(project: Path) -> None:
    text = (project / "tunefleet.yaml").read_text()
    text = text.replace("  learning_rate: 0.0002\n", "  learning_rate_multiplier: 2.0\n")
    (plan,) = plan_run(parse_spec(text, base_dir=project), registry=discover()).plans
    assert [u.requirement for u in plan.unmet] == ["hyperparameters.learning_rate_multiplier"]


def test_without_epochs_the_trainer_default_is_planned_at_no_charge(project: Path) -> None:
    text = (project / "tunefleet.yaml").read_text().replace("  epochs: 3\n", "")
    (plan,) = plan_run(parse_spec(text, base_dir=project), registry=discover()).plans
    assert plan.epochs == 3
    assert "epochs" not in plan.request("RunTrainer").body["config"]["hyperparameters"]
    assert plan.cost is not None and plan.cost.amount == 0

"""The local provider plans the trainer run and states what this machine cannot honour."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunefleet.errors import CapabilityError
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
    (request,) = plan.requests
    assert request.operation == "RunTrainer"
    assert request.body["adapter"] == "lora"
    assert request.body["datasets"]["train"] == str(project / "data" / "train.jsonl")
    assert request.body["hyperparameters"]["lora"] == {"rank": 8, "alpha": 16.0, "dropout": 0.05}
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


def test_running_says_it_needs_the_trainer(project: Path) -> None:
    registry = discover()
    (plan,) = plan_run(load(project), registry=registry).plans
    with pytest.raises(CapabilityError, match="needs the trainer"):
        registry.provider("local").submit(plan, {}, "run-key")

"""Planning: capability and placement checks fail before anything is created, with reasons."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import pytest

from tunefleet.errors import DatasetInvalidError, PlanError, ProviderNotInstalledError, SpecError
from tunefleet.hookspecs import hookimpl
from tunefleet.planning import plan_run
from tunefleet.plugins import Registry
from tunefleet.provider import Unmet
from tunefleet.spec import parse_spec
from tunefleet.testing.fake import FakeProvider

ROW = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
    ]
}


def spec_text(targets: str, extra: str = "") -> str:
    return f"name: demo\nbase_model: gpt-4o-mini-2024-07-18\ndataset: train.jsonl\ntargets:\n{targets}{extra}"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "train.jsonl").write_text(json.dumps(ROW) + "\n")
    return tmp_path


def plan(workdir: Path, registry: Registry, text: str, **kwargs: object):  # type: ignore[no-untyped-def]
    return plan_run(
        parse_spec(text, source="spec.yaml", base_dir=workdir), registry=registry, **kwargs
    )


def unmet_of(run_plan, target: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    (p,) = [p for p in run_plan.plans if p.target == target]
    return {u.requirement: u.reason for u in p.unmet}


def test_clean_plan_has_requests_and_cost(workdir: Path, registry: Registry) -> None:
    run_plan = plan(workdir, registry, spec_text("  - provider: fake\n    region: fake-eu-1\n"))
    assert run_plan.ok
    (p,) = run_plan.plans
    assert [r.operation for r in p.requests] == ["UploadFile", "CreateJob"]
    assert p.epochs == 25  # one example: min(25, 100 // 1)
    assert p.cost is not None and p.cost.amount > 0
    assert run_plan.datasets["train"].examples == 1
    free = plan(
        workdir,
        registry,
        spec_text(
            "  - provider: fake\n    region: fake-eu-1\n    options: {price_per_million_tokens: 0}\n"
        ),
    )
    assert free.plans[0].cost is not None and free.plans[0].cost.amount == 0


def test_region_pin_refuses_a_region_outside_it(workdir: Path, registry: Registry) -> None:
    text = spec_text(
        "  - provider: fake\n    region: fake-east-1\n",
        "placement:\n  allowed_regions: ['fake-eu-*']\n",
    )
    run_plan = plan(workdir, registry, text)
    assert (
        "outside the allowed regions fake-eu-*"
        in unmet_of(run_plan, "fake")["placement.allowed_regions"]
    )
    with pytest.raises(PlanError, match=r"target 'fake' cannot honour placement\.allowed_regions"):
        run_plan.raise_for_unmet()


def test_hosted_provider_cannot_honour_network_key_region_or_compute(
    workdir: Path, registry: Registry
) -> None:
    text = spec_text(
        "  - provider: fake_hosted\n    compute: {instance_type: big.1, spot: true}\n",
        "method: {type: supervised, adapter: lora}\nplacement:\n  allowed_regions: [eu-*]\n"
        "  require_private_network: true\n  require_customer_managed_key: true\n"
        "  required_tags: [owner]\n  tags: {owner: ml}\nendpoint: {instance_count: 1}\n",
    )
    unmet = unmet_of(plan(workdir, registry, text), "fake_hosted")
    assert set(unmet) == {
        "method.adapter",
        "placement.allowed_regions",
        "placement.require_private_network",
        "placement.require_customer_managed_key",
        "placement.required_tags",
        "compute.spot",
        "compute.instance_type",
        "endpoint",
    }
    assert "does not let you choose where it trains" in unmet["placement.allowed_regions"]


def test_provider_reports_its_own_missing_settings(workdir: Path, registry: Registry) -> None:
    text = spec_text(
        "  - provider: fake\n    region: fake-eu-1\n",
        "placement:\n  require_private_network: true\n  require_customer_managed_key: true\n",
    )
    unmet = unmet_of(plan(workdir, registry, text), "fake")
    assert unmet == {
        "placement.require_private_network": "no subnets given in options.subnets",
        "placement.require_customer_managed_key": "no key given in options.kms_key",
    }
    ok = spec_text(
        "  - provider: fake\n    region: fake-eu-1\n    options: {subnets: [s-1], kms_key: k-1}\n",
        "placement:\n  require_private_network: true\n  require_customer_managed_key: true\n",
    )
    run_plan = plan(workdir, registry, ok)
    assert run_plan.ok
    body = run_plan.plans[0].requests[-1].body
    assert body["subnets"] == ["s-1"] and body["kms_key"] == "k-1"


def test_bad_provider_options_name_their_line(workdir: Path, registry: Registry) -> None:
    text = spec_text(
        "  - provider: fake\n    region: fake-eu-1\n    options:\n      steps: 0\n      colour: red\n"
    )
    with pytest.raises(SpecError) as caught:
        plan(workdir, registry, text)
    rendered = [str(i) for i in caught.value.issues]
    assert any(r.startswith("spec.yaml:8 targets[0].options.steps:") for r in rendered)
    assert any(
        r.startswith("spec.yaml:9 targets[0].options.colour: unknown option") for r in rendered
    )


def test_only_the_selected_target_is_planned(workdir: Path, registry: Registry) -> None:
    text = spec_text("  - provider: fake\n    region: fake-eu-1\n  - provider: fake_hosted\n")
    run_plan = plan(workdir, registry, text, target="fake_hosted")
    assert [p.target for p in run_plan.plans] == ["fake_hosted"]
    with pytest.raises(SpecError, match="no target named 'nope'"):
        plan(workdir, registry, text, target="nope")


def test_missing_provider_fails_before_validation(workdir: Path, registry: Registry) -> None:
    (workdir / "train.jsonl").write_text("not json\n")
    with pytest.raises(ProviderNotInstalledError, match=r"pip install 'tunefleet\[vertex\]'"):
        plan(workdir, registry, spec_text("  - provider: vertex\n    region: europe-west4\n"))


def test_invalid_dataset_stops_the_plan(workdir: Path, registry: Registry) -> None:
    (workdir / "train.jsonl").write_text("not json\n")
    with pytest.raises(DatasetInvalidError) as caught:
        plan(workdir, registry, spec_text("  - provider: fake\n    region: fake-eu-1\n"))
    assert caught.value.error_count == 1
    assert caught.value.report.counts == {"E002": 1}


class BudgetPlugin:
    @hookimpl
    def tunefleet_check_plan(self, spec, plan):  # type: ignore[no-untyped-def]
        if plan.cost is not None and plan.cost.amount > 0.00001:
            return [
                Unmet(
                    requirement="budget",
                    reason=f"estimated {plan.cost.amount:.6f} USD is over budget",
                )
            ]
        return None


def test_policy_plugins_can_object_to_a_plan(workdir: Path, registry: Registry) -> None:
    registry.add(BudgetPlugin(), "budget", "tunefleet-budget")
    unmet = unmet_of(
        plan(workdir, registry, spec_text("  - provider: fake\n    region: fake-eu-1\n")), "fake"
    )
    assert "over budget" in unmet["budget"]


def test_dpo_spec_validates_preference_data(workdir: Path, registry: Registry) -> None:
    text = spec_text("  - provider: fake\n    region: fake-eu-1\n", "method: dpo\n")
    with pytest.raises(DatasetInvalidError) as caught:
        plan(workdir, registry, text)
    assert "E030" in caught.value.report.counts


class TrainsOnly(FakeProvider):
    """A third-party provider that trains but cannot give its model's answers back."""

    name: ClassVar[str] = "trains_only"
    _predictions = None  # type: ignore[assignment]


class TrainsOnlyPlugin:
    @hookimpl
    def tunefleet_providers(self):  # type: ignore[no-untyped-def]
        return [TrainsOnly]


def test_a_spec_with_evaluation_is_refused_where_the_model_cannot_be_evaluated(
    workdir: Path, registry: Registry
) -> None:
    """A target whose model nobody can measure must not say it can run as specified, or
    deploy would serve an unchecked model."""
    registry.add(TrainsOnlyPlugin(), "trains-only", "tunefleet-trains-only")
    (workdir / "golden.jsonl").write_text(json.dumps(ROW) + "\n")
    text = spec_text(
        "  - provider: trains_only\n  - provider: fake\n    region: fake-eu-1\n",
        "evaluation: {golden_set: golden.jsonl, metrics: [exact_match]}\n",
    )
    run_plan = plan(workdir, registry, text)
    assert not run_plan.ok
    reason = unmet_of(run_plan, "trains_only")["evaluation"]
    assert "cannot produce the trained model's answers" in reason
    assert "evaluation" not in unmet_of(run_plan, "fake")
    fake_plan = next(p for p in run_plan.plans if p.target == "fake")
    assert fake_plan.predictions == "job"
    assert any("200 to 500 verified examples" in note for note in fake_plan.notes)
    with pytest.raises(PlanError, match="trains_only"):
        run_plan.raise_for_unmet()


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ("{steps: true}", "steps"),  # a boolean is not a number
        ("{steps: '7'}", "steps"),  # nor is a string that looks like one
        ("{max_concurrent_jobs: 1.5}", "max_concurrent_jobs"),
    ],
)
def test_provider_options_are_as_strict_as_the_spec(
    workdir: Path, registry: Registry, options: str, field: str
) -> None:
    text = spec_text(f"  - provider: fake\n    region: fake-eu-1\n    options: {options}\n")
    with pytest.raises(SpecError) as caught:
        plan(workdir, registry, text)
    assert f"targets[0].options.{field}" in str(caught.value)


def test_a_canary_without_an_evaluation_says_only_alarms_can_roll_it_back(
    workdir: Path, registry: Registry
) -> None:
    text = spec_text(
        "  - provider: fake\n    region: fake-eu-1\n",
        "endpoint: {canary: {traffic_percent: 10}}\n",
    )
    (fake_plan,) = plan(workdir, registry, text).plans
    assert any("only the provider's alarms can roll it back" in n for n in fake_plan.notes)

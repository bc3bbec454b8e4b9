"""Evaluation through the engine, the registry and the deploy gate, with the fake providers.

``fake`` answers the golden set inside its job (its trained model gets the first ``skill``
share right); ``fake_hosted`` answers through its chat API (its fine-tuned model knows its
training data) and judges with ``fake-judge``. Their answers are deterministic, so the
scores below are exact.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.core.run.test_engine import FAST

from tunefleet.errors import DeployBlockedError, PlanError, SpecError, UsageError
from tunefleet.evaluation.runner import Golden, evaluate_target
from tunefleet.planning import plan_run
from tunefleet.plugins import Registry
from tunefleet.registry import check_deployable, register, resolve
from tunefleet.run import Engine, serving
from tunefleet.spec import EvaluationSpec
from tunefleet.state import Journal, open_journal
from tunefleet.testing.fake import UNSURE

QUESTIONS = [
    ("Reset my password", "Use the link on the sign-in page."),
    ("Where is my parcel?", "Track it under Orders, then Track parcel."),
    ("Can I return a gift?", "Yes, within 30 days, with the gift receipt."),
    ("How do I change my address?", "Edit it under Account, then Addresses."),
]


def chat(question: str, answer: str, **fields: Any) -> str:
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return json.dumps({"messages": messages, **fields}) + "\n"


class Setup:
    def __init__(self, tmp_path: Path, journal: Journal, registry: Registry) -> None:
        self.tmp_path = tmp_path
        self.journal = journal
        self.registry = registry
        self.root = tmp_path / "provider"
        self.notices: list[tuple[str, str]] = []
        # The hosted fake's model learns the first three questions only.
        (tmp_path / "train.jsonl").write_text("".join(chat(q, a) for q, a in QUESTIONS[:3]))
        languages = ["en", "en", "de", "de"]
        (tmp_path / "golden.jsonl").write_text(
            "".join(
                chat(q, a, language=lang) for (q, a), lang in zip(QUESTIONS, languages, strict=True)
            )
        )

    def spec(
        self, provider: str, evaluation: dict[str, Any], options: dict[str, Any] | None = None
    ) -> Path:
        body = {
            "name": "support",
            "base_model": "gpt-4o-mini-2024-07-18",
            "dataset": "train.jsonl",
            "hyperparameters": {"epochs": 1},
            "targets": [
                {"provider": provider, "options": {"root": str(self.root), **(options or {})}}
            ],
            "evaluation": {"golden_set": "golden.jsonl", **evaluation},
        }
        path = self.tmp_path / "spec.yaml"
        path.write_text(json.dumps(body))
        return path

    def apply(self, spec: Path) -> str:
        engine = Engine(
            self.journal,
            registry=self.registry,
            settings=FAST,
            notice=lambda target, message: self.notices.append((target, message)),
        )
        started = engine.start(spec)
        assert engine.drive(started.run.id).join(60), "the run did not end"
        return started.run.id


@pytest.fixture
def setup(tmp_path: Path, registry: Registry) -> Iterator[Setup]:
    journal = open_journal(f"sqlite:///{tmp_path / 'journal.db'}")
    yield Setup(tmp_path, journal, registry)
    journal.close()


def metrics_of(result: dict[str, Any]) -> dict[str, float | None]:
    return {m["metric"]: m["value"] for m in result["metrics"]}


def test_answers_written_by_the_job_are_scored_registered_and_gate_the_deploy(
    setup: Setup,
) -> None:
    spec = setup.spec(
        "fake",
        {"metrics": ["exact_match", "token_f1"], "thresholds": {"exact_match": 0.75}},
        {"skill": 0.5},
    )
    run_id = setup.apply(spec)
    run = setup.journal.run(run_id)
    (row,) = setup.journal.targets(run_id)
    assert (row.phase, row.state) == ("done", "succeeded")
    (evaluation,) = setup.journal.evaluations(row.id)
    assert evaluation.trigger == "run" and not evaluation.passed
    assert metrics_of(evaluation.result)["exact_match"] == 0.5
    baseline = {m["metric"]: m["baseline"] for m in evaluation.result["metrics"]}
    assert baseline["exact_match"] == 0.0  # the base model is unsure of everything
    assert evaluation.settings["answers_from"] == "job"
    assert "exact_match = 0.5" in (row.message or "") and "0.75" in (row.message or "")
    version = setup.journal.model_version(target_id=row.id)
    assert version is not None
    assert (version.name, version.version, version.stage) == ("support", 1, "candidate")
    assert version.evaluation_id == evaluation.id
    assert set(version.datasets) == {"train", "golden_set"}

    with pytest.raises(DeployBlockedError) as refused:
        serving.deploy(setup.journal, setup.registry, run)
    assert refused.value.exit_code == 1
    assert "exact_match = 0.5" in str(refused.value) and "0.75" in str(refused.value)
    assert not setup.journal.resources(row.id, "endpoint"), "nothing was deployed"

    with pytest.raises(UsageError, match="--reason"):
        serving.deploy(setup.journal, setup.registry, run, force=True)
    endpoint = serving.deploy(
        setup.journal, setup.registry, run, force=True, reason="hotfix for ticket 42"
    )
    assert endpoint.name == "support"
    refused = [e for e in setup.journal.audit_entries(run_id) if e.action == "deploy.refused"]
    assert len(refused) == 1, "the refused deploy is on record"
    forced = [e for e in setup.journal.audit_entries(run_id) if e.action == "deploy.forced"]
    assert len(forced) == 1
    detail = json.loads(forced[0].detail)
    assert detail["reason"] == "hotfix for ticket 42" and detail["version"] == 1
    assert forced[0].actor == setup.journal.actor
    assert resolve(setup.journal, "support:1").stage == "production"
    assert setup.journal.verify_audit().ok


def test_a_model_that_meets_its_thresholds_deploys_and_becomes_production(
    setup: Setup,
) -> None:
    spec = setup.spec("fake", {"metrics": ["exact_match"], "thresholds": {"exact_match": 1.0}})
    run = setup.journal.run(setup.apply(spec))
    (row,) = setup.journal.targets(run.id)
    version = register(setup.journal, run, row)
    assert check_deployable(setup.journal, run, version) == []
    serving.deploy(setup.journal, setup.registry, run)
    assert resolve(setup.journal, "support").stage == "production"


def test_hosted_answers_come_through_the_chat_api_and_the_judge_compares_them(
    setup: Setup,
) -> None:
    spec = setup.spec(
        "fake_hosted",
        {
            "metrics": ["exact_match", "llm_judge"],
            "thresholds": {"llm_judge": 0.6},
            "slice_by": ["language"],
            "slice_thresholds": {"language": {"de": {"exact_match": 0.9}}},
            "judge": {"provider": "fake_hosted", "model": "fake-judge"},
        },
    )
    run_id = setup.apply(spec)
    (row,) = setup.journal.targets(run_id)
    (evaluation,) = setup.journal.evaluations(row.id)
    result = evaluation.result
    assert evaluation.settings["answers_from"] == "answer"
    # It knows three of the four questions; the base model none.
    assert metrics_of(result)["exact_match"] == 0.75
    judge = next(m for m in result["metrics"] if m["metric"] == "llm_judge")
    assert (judge["detail"]["wins"], judge["detail"]["ties"], judge["detail"]["losses"]) == (
        3,
        1,
        0,
    )
    assert judge["value"] == pytest.approx(3.5 / 4)
    german = next(s for s in result["slices"] if s["value"] == "de")
    assert {m["metric"]: m["value"] for m in german["metrics"]}["exact_match"] == 0.5
    assert not evaluation.passed
    assert [f["slice"] for f in result["failures"]] == ["language=de"]
    worst = [e for e in result["per_example"] if e["prediction"] == UNSURE]
    assert [e["question"] for e in worst] == ["How do I change my address?"]


def test_eval_rescores_with_a_new_golden_set_without_retraining(setup: Setup) -> None:
    spec = setup.spec(
        "fake_hosted", {"metrics": ["exact_match"], "thresholds": {"exact_match": 0.7}}
    )
    run = setup.journal.run(setup.apply(spec))
    (row,) = setup.journal.targets(run.id)
    assert setup.journal.evaluations(row.id)[-1].passed
    harder = setup.tmp_path / "harder.jsonl"
    harder.write_text("".join(chat(q, a) for q, a in QUESTIONS[2:]))
    evaluation = evaluate_target(
        setup.journal, setup.registry, run, row, golden=Golden.of(harder), trigger="eval"
    )
    assert metrics_of(evaluation.result)["exact_match"] == 0.5 and not evaluation.passed
    assert evaluation.golden_sha256 == Golden.of(harder).sha256
    assert len(list((setup.root / "jobs").glob("*.json"))) == 1, "nothing was retrained"
    # The newest evaluation decides.
    version = register(setup.journal, run, row)
    assert version.evaluation_id == evaluation.id
    with pytest.raises(DeployBlockedError):
        check_deployable(setup.journal, run, version)


def test_a_target_that_cannot_be_evaluated_fails_at_plan(setup: Setup, tmp_path: Path) -> None:
    # valid_loss needs a validation set; the plan says so before anything is created.
    spec = setup.spec("fake", {"metrics": ["valid_loss"], "thresholds": {"valid_loss": 2.0}})
    with pytest.raises(PlanError, match=r"valid_loss is the loss on dataset\.validation"):
        plan_run(spec, registry=setup.registry).raise_for_unmet()
    assert not setup.root.exists(), "planning created nothing"


def test_a_golden_example_without_an_expected_answer_is_refused_at_plan(setup: Setup) -> None:
    (setup.tmp_path / "golden.jsonl").write_text(
        chat("Reset my password", "Use the link.")
        + json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "Hello?"},
                    {"role": "assistant", "content": "Hi! How can I help?"},
                    {"role": "user", "content": "Never mind."},
                ]
            }
        )
        + "\n"
    )
    spec = setup.spec("fake", {"metrics": ["exact_match"]})
    with pytest.raises(SpecError, match=r"golden\.jsonl:2: the last message must be"):
        plan_run(spec, registry=setup.registry)


def test_an_evaluation_that_cannot_run_stops_the_target_with_the_reason(setup: Setup) -> None:
    spec = setup.spec(
        "fake",
        {"metrics": ["exact_match", "llm_judge"], "judge": {"endpoint": "no-such-run"}},
    )
    run_id = setup.apply(spec)
    (row,) = setup.journal.targets(run_id)
    assert (row.phase, row.state) == ("error", "succeeded"), "the job did succeed"
    assert "evaluation could not run" in (row.message or "")
    assert "no-such-run" in (row.message or "")
    assert not setup.journal.evaluations(row.id)
    assert setup.journal.model_version(target_id=row.id) is None, "registered once evaluated"


def test_rescoring_under_looser_rules_does_not_clear_the_gate(setup: Setup) -> None:
    """A miss under the run's own thresholds stays a miss: a re-scoring without the
    threshold, or with the block turned off, passes but does not open the gate."""
    spec = setup.spec(
        "fake", {"metrics": ["exact_match"], "thresholds": {"exact_match": 0.75}}, {"skill": 0.5}
    )
    run = setup.journal.run(setup.apply(spec))
    (row,) = setup.journal.targets(run.id)
    for looser in (
        EvaluationSpec(golden_set="golden.jsonl", metrics=["exact_match"]),
        EvaluationSpec(
            golden_set="golden.jsonl",
            metrics=["exact_match"],
            thresholds={"exact_match": 0.75},
            block_deploy_on_failure=False,
        ),
    ):
        evaluation = evaluate_target(
            setup.journal, setup.registry, run, row, evaluation=looser, trigger="eval"
        )
        assert evaluation.passed or not looser.block_deploy_on_failure
        version = register(setup.journal, run, row)
        assert version.evaluation_id == evaluation.id
        with pytest.raises(DeployBlockedError, match="under its run's own rules: exact_match"):
            check_deployable(setup.journal, run, version)

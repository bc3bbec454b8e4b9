"""score(): answers matched to golden examples, metrics side by side, slices, thresholds,
the result model, and what a gate reports when it fails."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import pytest
from pydantic import ValidationError

from tunefleet.evaluation.scoring import (
    EvaluationResult,
    MetricResult,
    ThresholdMiss,
    score,
)
from tunefleet.provider import ChatReply, ChatRequest
from tunefleet.spec import EvaluationSpec, JudgeSpec
from tunefleet_trainer.predictions import GoldenExample, Prediction

JUDGE_SPEC = JudgeSpec(provider="openai", model="gpt-4o-2024-08-06")


def spec(metrics: list[str], **more: Any) -> EvaluationSpec:
    if "llm_judge" in metrics:
        more.setdefault("judge", JUDGE_SPEC)
    if "json_schema" in metrics:
        more.setdefault("json_schema", "schema.json")
    return EvaluationSpec.model_validate({"golden_set": "golden.jsonl", "metrics": metrics, **more})


def example(index: int, expected: str, **fields: Any) -> GoldenExample:
    return GoldenExample(
        index=index,
        line=index + 2,
        prompt=[
            {"role": "system", "content": "You answer in one word."},
            {"role": "user", "content": f"Question {index}?"},
        ],
        expected=expected,
        fields=fields,
    )


def answers(*texts: str) -> list[Prediction]:
    return [Prediction(index=i, text=text) for i, text in enumerate(texts)]


def fair_judge(requests: Sequence[ChatRequest]) -> list[ChatReply]:
    """Prefers the answer that equals the reference; neither or both: TIE."""
    replies = []
    for request in requests:
        text = request.messages[-1]["content"]
        reference = text.split("<reference_answer>\n")[1].split("\n</reference_answer>")[0]
        a = text.split("<answer_a>\n")[1].split("\n</answer_a>")[0] == reference
        b = text.split("<answer_b>\n")[1].split("\n</answer_b>")[0] == reference
        replies.append(ChatReply(text="A" if a and not b else "B" if b and not a else "TIE"))
    return replies


# Four support tickets in two languages, one without a language.
GOLDEN = [
    example(0, "refund", language="en", metadata={"intent": "billing"}),
    example(1, "password reset", language="en", metadata={"intent": "account"}),
    example(2, "Rückerstattung", language="de", metadata={"intent": "billing"}),
    example(3, "shipping", metadata={"intent": "delivery"}),
]


# --- Matching answers to examples -----------------------------------------------------------


def test_metrics_side_by_side() -> None:
    result = score(
        spec(["exact_match", "token_f1", "macro_f1", "bleu"]),
        GOLDEN,
        answers("refund", "password", "Rückerstattung", "returns"),
        baseline=answers("refund", "no idea", "refund", "returns"),
    )
    assert result.examples == 4 and result.missing == 0 and result.baseline_missing == 0
    em, f1, macro, bleu = result.metrics
    assert (em.metric, em.value, em.baseline) == ("exact_match", 0.5, 0.25)
    # token F1 of "password" against "password reset": P 1, R 1/2, F 2/3.
    assert f1.value == pytest.approx((1 + 2 / 3 + 1 + 0) / 4)
    assert f1.baseline == pytest.approx(0.25)
    # Four classes, three predicted right once each: F 1, 0 (password), 1, 0 (returns).
    assert macro.value == pytest.approx(0.5) and macro.detail == {"labels": 4}
    # Corpus BLEU of the same answers; no answer has four words, so no 4-gram matches: 0.
    assert (bleu.value, bleu.baseline) == (0.0, 0.0)
    assert "tok:13a" in str(bleu.detail["signature"])
    assert all(r.threshold is None and r.passed is None for r in result.metrics)
    assert result.passed and result.failures == []


def test_a_missing_answer_is_an_empty_one_and_counted() -> None:
    result = score(spec(["exact_match"]), GOLDEN, [Prediction(index=0, text="refund")], baseline=[])
    assert (result.missing, result.baseline_missing) == (3, 4)
    assert [e.prediction for e in result.per_example] == ["refund", "", "", ""]
    assert result.metrics[0].value == 0.25 and result.metrics[0].baseline == 0.0


def test_an_answer_to_no_golden_example_is_an_error() -> None:
    with pytest.raises(
        ValueError, match=r"example 9, which is not in the golden set \(indexes 0 to 3\)"
    ):
        score(spec(["exact_match"]), GOLDEN, [Prediction(index=9, text="x")])
    with pytest.raises(ValueError, match="baseline answer answers example 4"):
        score(spec(["exact_match"]), GOLDEN, [], baseline=answers("a", "b", "c", "d", "e"))
    with pytest.raises(ValueError, match="two predictions answer example 1"):
        score(spec(["exact_match"]), GOLDEN, [Prediction(index=1, text="a")] * 2)


def test_the_golden_set_must_be_usable() -> None:
    with pytest.raises(ValueError, match="no example"):
        score(spec(["exact_match"]), [], [])
    with pytest.raises(ValueError, match="two examples with index 0"):
        score(spec(["exact_match"]), [GOLDEN[0], GOLDEN[0]], [])


@pytest.mark.parametrize(
    ("kwargs", "lacking"),
    [
        ({}, "needs baseline and judge"),
        ({"baseline": answers("x")}, "needs judge"),
        ({"judge": fair_judge}, "needs baseline"),
    ],
)
def test_llm_judge_needs_a_baseline_and_a_judge(kwargs: dict[str, Any], lacking: str) -> None:
    with pytest.raises(ValueError, match=lacking):
        score(spec(["llm_judge"]), GOLDEN[:1], answers("x"), **kwargs)


def test_json_schema_needs_a_valid_schema() -> None:
    with pytest.raises(ValueError, match="needs json_schema"):
        score(spec(["json_schema"]), GOLDEN[:1], answers("{}"))
    with pytest.raises(ValueError, match="not a valid JSON Schema"):
        score(spec(["json_schema"]), GOLDEN[:1], answers("{}"), json_schema={"type": 5})


def test_structured_answers() -> None:
    golden = [example(i, '{"order": "A-1"}') for i in range(4)]
    schema = {"type": "object", "required": ["order"]}
    result = score(
        spec(["json_valid", "json_schema"]),
        golden,
        answers('{"order": "A-1"}', '```json\n{"order": "B"}\n```', '{"id": 1}', "order A-1"),
        json_schema=schema,
    )
    assert [r.value for r in result.metrics] == [0.75, 0.5]
    assert [e.scores for e in result.per_example][2:] == [
        {"json_valid": 1.0, "json_schema": 0.0},
        {"json_valid": 0.0, "json_schema": 0.0},
    ]


# --- The judge ----------------------------------------------------------------------------


def test_llm_judge_overall_per_example_and_per_slice() -> None:
    progress: list[tuple[str, int, int]] = []
    result = score(
        spec(["llm_judge"], slice_by=["language"]),
        GOLDEN,
        answers("refund", "password reset", "Erstattung", "shipping"),
        baseline=answers("no", "password reset", "Rückerstattung", "no"),
        judge=fair_judge,
        progress=lambda *args: progress.append(args),
    )
    judged = result.metrics[0]
    # win, tie (both right), loss, win: (2 + 0.5) / 4.
    assert judged.value == pytest.approx(0.625) and judged.baseline is None
    assert {k: judged.detail[k] for k in ("wins", "losses", "ties", "invalid", "n")} == {
        "wins": 2,
        "losses": 1,
        "ties": 1,
        "invalid": 0,
        "n": 4,
    }
    low, high = judged.detail["ci_low"], judged.detail["ci_high"]
    assert isinstance(low, float) and isinstance(high, float) and low < 0.625 < high
    assert [e.verdict for e in result.per_example] == ["win", "tie", "loss", "win"]
    assert [e.scores["llm_judge"] for e in result.per_example] == [1.0, 0.5, 0.0, 1.0]
    by_value = {s.value: s.metrics[0] for s in result.slices}
    assert by_value["en"].value == 0.75 and by_value["en"].detail["n"] == 2
    assert by_value["de"].value == 0.0 and by_value["de"].detail["losses"] == 1
    assert progress[0] == ("judge", 0, 4) and progress[-1] == ("judge", 4, 4)


def test_a_judge_that_does_not_give_verdicts_measures_nothing() -> None:
    """All ties would score 0.5 and pass a threshold at 0.5: replies that are mostly not a
    verdict make the win rate not computed, which fails its threshold."""

    def chatty(requests: Sequence[ChatRequest]) -> list[ChatReply]:
        return [ChatReply(text="Both answers have merit.") for _ in requests]

    result = score(
        spec(["llm_judge"], thresholds={"llm_judge": 0.5}),
        GOLDEN,
        answers("refund", "password reset", "Erstattung", "shipping"),
        baseline=answers("no", "password reset", "Rückerstattung", "no"),
        judge=chatty,
    )
    judged = result.metrics[0]
    assert judged.value is None and judged.detail["invalid"] == 8
    assert "8 of the judge's 8 replies were not a verdict" in str(judged.detail["reason"])
    assert not result.passed and result.failures[0].metric == "llm_judge"


# --- Slices -------------------------------------------------------------------------------


def test_slices_by_field_and_nested_field() -> None:
    result = score(
        spec(["exact_match", "rouge_l", "valid_loss"], slice_by=["language", "metadata.intent"]),
        GOLDEN,
        answers("refund", "reset", "Rückerstattung", "shipping"),
        baseline=answers("refund", "reset", "refund", "shipping"),
        valid_loss=0.5,
    )
    slices = [(s.field, s.value, s.examples) for s in result.slices]
    assert slices == [
        ("language", "de", 1),
        ("language", "en", 2),
        ("metadata.intent", "account", 1),
        ("metadata.intent", "billing", 2),
        ("metadata.intent", "delivery", 1),
    ]
    assert result.unsliced == {"language": 1, "metadata.intent": 0}
    german = result.slices[0]
    # valid_loss is measured once for the whole run, not per slice.
    assert [r.metric for r in german.metrics] == ["exact_match", "rouge_l"]
    assert (german.metrics[0].value, german.metrics[0].baseline) == (1.0, 0.0)
    # The German answer is scored by its words: rouge-score's own tokenizer would see "r ckerstattung".
    assert (german.metrics[1].value, german.metrics[1].baseline) == (1.0, 0.0)
    assert result.per_example[2].fields == {"language": "de", "metadata.intent": "billing"}
    assert result.per_example[3].fields == {"metadata.intent": "delivery"}


def test_slice_values_are_text() -> None:
    golden = [
        example(0, "a", vip=True, tier=2, meta=None),
        example(1, "b", vip=False, tier=2.5, meta=["x"]),
    ]
    result = score(
        spec(["exact_match"], slice_by=["vip", "tier", "meta"]), golden, answers("a", "b")
    )
    assert [(s.field, s.value) for s in result.slices] == [
        ("vip", "false"),
        ("vip", "true"),
        ("tier", "2"),
        ("tier", "2.5"),
    ]
    assert result.unsliced == {"vip": 0, "tier": 0, "meta": 2}


def test_macro_f1_per_slice_uses_the_slices_classes() -> None:
    golden = [example(0, "billing", language="en"), example(1, "account", language="de")]
    result = score(spec(["macro_f1"], slice_by=["language"]), golden, answers("billing", "billing"))
    assert result.metrics[0].value == pytest.approx((2 / 3 + 0) / 2)
    assert {s.value: s.metrics[0].value for s in result.slices} == {"de": 0.0, "en": 1.0}


# --- Thresholds and failures ------------------------------------------------------------


def test_thresholds_pass_and_fail() -> None:
    result = score(
        spec(
            ["exact_match", "token_f1", "valid_loss"],
            thresholds={"exact_match": 0.5, "token_f1": 0.9, "valid_loss": 1.5},
        ),
        GOLDEN,
        answers("refund", "password", "Rückerstattung", "returns"),
        valid_loss=1.93,
    )
    assert [(r.metric, r.threshold, r.passed) for r in result.metrics] == [
        ("exact_match", 0.5, True),  # exactly at its threshold
        ("token_f1", 0.9, False),
        ("valid_loss", 1.5, False),
    ]
    assert not result.passed
    assert [miss.describe() for miss in result.failures] == [
        "token_f1 = 0.667, below its threshold 0.900",
        "valid_loss = 1.93, above its maximum 1.50",
    ]


def test_a_metric_that_could_not_be_computed_fails_its_threshold() -> None:
    gated = score(
        spec(["exact_match", "valid_loss"], thresholds={"valid_loss": 2.0}), GOLDEN, answers()
    )
    assert gated.metrics[1].value is None and gated.metrics[1].passed is False
    assert [miss.describe() for miss in gated.failures] == [
        "valid_loss could not be computed (no validation loss was reported (no validation "
        "set?)); its maximum is 2.00"
    ]
    ungated = score(spec(["valid_loss"]), GOLDEN, answers(), valid_loss=float("nan"))
    assert ungated.metrics[0].value is None and ungated.metrics[0].passed is None
    assert ungated.passed


def test_slice_thresholds() -> None:
    result = score(
        spec(
            ["exact_match", "valid_loss"],
            thresholds={"exact_match": 0.5},
            slice_by=["language"],
            slice_thresholds={
                "language": {
                    "*": {"exact_match": 0.6},
                    "en": {"exact_match": 0.4},  # the named value wins over "*"
                    "fr": {"exact_match": 0.1},  # no French example: a failure, not a pass
                }
            },
        ),
        GOLDEN,
        answers("refund", "nope", "nein", "shipping"),
        valid_loss=0.5,
    )
    assert result.metrics[0].value == 0.5 and result.metrics[0].passed
    by_value = {s.value: s for s in result.slices}
    assert by_value["en"].metrics[0].threshold == 0.4 and by_value["en"].metrics[0].passed
    assert by_value["fr"].examples == 0
    assert [miss.describe() for miss in result.failures] == [
        "slice language=de: exact_match = 0.000, below its threshold 0.600",
        "slice language=fr: exact_match could not be computed (no example in this slice); "
        "its threshold is 0.100",
    ]
    assert [m.slice for m in result.failures] == ["language=de", "language=fr"]


def test_a_slice_threshold_on_valid_loss_is_refused_in_the_spec() -> None:
    """The validation loss is one number for the run, not per example: a slice threshold
    on it could never be met, so the spec refuses it rather than fail every evaluation."""
    with pytest.raises(ValidationError, match="not measured per slice"):
        spec(
            ["exact_match", "valid_loss"],
            slice_by=["language"],
            slice_thresholds={"language": {"de": {"valid_loss": 1.0}}},
        )


def test_describe_never_shows_a_miss_as_equal() -> None:
    near = ThresholdMiss(metric="token_f1", value=0.5996, threshold=0.6, lower_is_better=False)
    assert near.describe() == "token_f1 = 0.5996, below its threshold 0.6000"
    bleu = ThresholdMiss(
        metric="bleu", slice="language=de", value=23.4, threshold=30, lower_is_better=False
    )
    assert bleu.describe() == "slice language=de: bleu = 23.40, below its threshold 30.00"


# --- The result model ---------------------------------------------------------------------


def test_worst_examples() -> None:
    result = score(
        spec(["bleu", "token_f1", "exact_match"]),
        GOLDEN,
        answers("refund", "password", "falsch", "wrong"),
    )
    # By token_f1, the first per-example metric: 0 (index 2), 0 (index 3), 2/3 (index 1).
    assert [e.index for e in result.worst(3)] == [2, 3, 1]
    assert result.worst(0) == []
    assert score(spec(["bleu"]), GOLDEN, answers()).worst(2) == []
    with pytest.raises(ValueError, match="negative"):
        result.worst(-1)


def test_per_example_results_are_for_people() -> None:
    result = score(spec(["exact_match"]), GOLDEN, answers("Refund!"), baseline=answers("x"))
    first = result.per_example[0]
    assert (first.index, first.line, first.question) == (0, 2, "Question 0?")
    assert (first.expected, first.prediction, first.baseline) == ("refund", "Refund!", "x")
    assert (first.scores, first.baseline_scores, first.verdict) == (
        {"exact_match": 1.0},
        {"exact_match": 0.0},
        None,
    )
    assert result.metric("exact_match") == result.metrics[0]
    assert result.metric("bleu") is None


def test_the_result_is_frozen_json() -> None:
    result = score(
        spec(["llm_judge", "exact_match", "bleu"], slice_by=["language"], thresholds={"bleu": 90}),
        GOLDEN,
        answers("refund", "reset"),
        baseline=answers("x"),
        judge=fair_judge,
    )
    assert list(result.per_example[0].scores) == ["llm_judge", "exact_match"]  # spec order
    text = result.model_dump_json()
    assert json.loads(text)["failures"][0]["metric"] == "bleu"
    assert EvaluationResult.model_validate_json(text) == result
    with pytest.raises(ValidationError):
        result.passed = True  # type: ignore[misc]
    with pytest.raises(ValidationError, match="passed must be true exactly"):
        EvaluationResult(examples=1, missing=0, metrics=[], per_example=[], passed=False)
    assert MetricResult(metric="bleu", value=None).passed is None


def test_scoring_does_not_import_the_metric_libraries() -> None:
    # `tunefleet --help` imports the CLI, which may import this module: it must stay light.
    code = (
        "import sys, tunefleet.evaluation.scoring\n"
        "heavy = ['sacrebleu', 'rouge_score', 'sklearn', 'scipy', 'regex', 'jsonschema', 'nltk']\n"
        "print([m for m in heavy if m in sys.modules])"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]"

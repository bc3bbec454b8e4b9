"""Score a model's answers to the golden set against the spec's thresholds.

:func:`score` is pure: it takes the golden examples, the new model's answers (and a
baseline's), the validation loss and a judge callable, and returns an
:class:`EvaluationResult`, a frozen pydantic model that serialises to JSON for the journal
and the report. It does no I/O of its own; the judge callable does whatever talking to a
model it needs.

Exported names:

- :func:`score`: the evaluation.
- :class:`EvaluationResult`: everything measured, ``passed`` and the ``failures``.
- :class:`MetricResult`: one metric's value (new model and baseline) and its threshold.
- :class:`SliceResult`: the metrics on the examples sharing one value of a field.
- :class:`ExampleResult`: one example's question, answers and per-example scores.
- :class:`ThresholdMiss`: one threshold missed, with :meth:`ThresholdMiss.describe`.
- :data:`PER_EXAMPLE_METRICS`: the metrics that score each example on its own.
- :data:`~tunefleet.evaluation.judge.Judge`: the judge callable :func:`score` takes
  (re-exported from :mod:`tunefleet.evaluation.judge`).

Thresholds. ``evaluation.thresholds`` applies to the whole golden set; a slice is held to
``slice_thresholds[field][value]`` and ``slice_thresholds[field]["*"]`` (the named value
wins where both set a metric), never to the global thresholds. A threshold is a minimum,
or a maximum for metrics in :data:`~tunefleet.spec.LOWER_IS_BETTER` (valid_loss). A metric
that could not be computed (no validation loss; a slice named in slice_thresholds that has
no example; valid_loss in a slice) fails its threshold, with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from tunefleet.evaluation import metrics as m
from tunefleet.evaluation.judge import (
    OUTCOME_SCORES,
    Judge,
    JudgedPair,
    judge_pairs,
    message_text,
    win_rate,
)
from tunefleet.spec import LOWER_IS_BETTER, EvaluationSpec, Metric
from tunefleet_trainer.predictions import GoldenExample, Prediction

__all__ = [
    "PER_EXAMPLE_METRICS",
    "EvaluationResult",
    "ExampleResult",
    "Judge",
    "MetricResult",
    "SliceResult",
    "ThresholdMiss",
    "score",
]

PER_EXAMPLE_METRICS: tuple[str, ...] = (
    "exact_match",
    "token_f1",
    "rouge_l",
    "json_valid",
    "json_schema",
    "llm_judge",
)
"""Metrics with a score per example (the metric is their mean); bleu and macro_f1 are
corpus-level and valid_loss comes from training, so those have none."""

# A computed value this close to its threshold passes: float rounding must not fail a gate.
_TOLERANCE = 1e-9
MAX_INVALID_VERDICTS = 0.1
"""Share of the judge's replies that may be something other than a verdict before its win
rate counts as not computed."""

Detail = dict[str, float | int | str | None]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricResult(_Frozen):
    """One metric over a set of examples, for the new model and the baseline."""

    metric: str
    value: float | None
    """The new model's score; None when it could not be computed (``detail["reason"]``)."""
    baseline: float | None = None
    """The baseline's score on the same examples; None without a baseline, and always for
    llm_judge, which is itself the comparison."""
    threshold: float | None = None
    """The minimum (maximum for valid_loss) it must reach; None when there is none."""
    passed: bool | None = None
    """Whether ``value`` meets ``threshold``; None when there is no threshold."""
    detail: Detail = {}
    """More about the value: llm_judge's wins, losses, ties, invalid, n, ci_low, ci_high
    and confidence; bleu's sacreBLEU signature; macro_f1's number of labels; ``reason``
    when the value is None."""


class SliceResult(_Frozen):
    """The metrics on the examples whose ``field`` has ``value``."""

    field: str
    """The slice field (``language``, ``metadata.intent``)."""
    value: str
    """The field's value, as text (JSON spelling for true, false)."""
    examples: int
    """How many examples are in the slice (0 for a value only slice_thresholds names)."""
    metrics: list[MetricResult]
    """Every metric but valid_loss, which is not measured per example."""


class ExampleResult(_Frozen):
    """One golden example with both models' answers and its per-example scores."""

    index: int
    line: int
    """The golden set's line it is on."""
    question: str
    """The last user message's text (for people; the judge sees the whole prompt)."""
    expected: str
    prediction: str
    """The new model's answer; empty when it gave none (counted in ``missing``)."""
    baseline: str | None = None
    """The baseline's answer; None without a baseline."""
    scores: dict[str, float] = {}
    """The new model's per-example scores (:data:`PER_EXAMPLE_METRICS` in the spec), in the
    spec's order; llm_judge as 1 (win), 0.5 (tie) or 0 (loss)."""
    baseline_scores: dict[str, float] = {}
    """The baseline's per-example scores (without llm_judge)."""
    verdict: Literal["win", "loss", "tie"] | None = None
    """The judge's combined outcome for the new model; None without llm_judge."""
    fields: dict[str, str] = {}
    """The example's value of each slice field it has."""


class ThresholdMiss(_Frozen):
    """A threshold that was not met."""

    metric: str
    slice: str | None = None
    """``field=value`` for a slice's threshold (``language=de``); None for the whole set."""
    value: float | None
    """The score; None when it could not be computed (see ``reason``)."""
    threshold: float
    lower_is_better: bool
    """The threshold is a maximum (valid_loss)."""
    reason: str | None = None
    """Why there is no value."""

    def describe(self) -> str:
        """One line for people: ``token_f1 = 0.412, below its threshold 0.600``,
        ``slice language=de: rouge_l = 0.310, below its threshold 0.500``,
        ``valid_loss = 1.93, above its maximum 1.50``, or
        ``valid_loss could not be computed (...); its maximum is 1.50``."""
        where = f"slice {self.slice}: " if self.slice is not None else ""
        bound = "maximum" if self.lower_is_better else "threshold"
        if self.value is None:
            limit = _number(self.metric, self.threshold)
            return f"{where}{self.metric} could not be computed ({self.reason}); its {bound} is {limit}"
        value, limit = _numbers(self.metric, self.value, self.threshold)
        side = "above" if self.lower_is_better else "below"
        return f"{where}{self.metric} = {value}, {side} its {bound} {limit}"


class EvaluationResult(_Frozen):
    """What an evaluation measured, and whether the model passed its thresholds."""

    examples: int
    """Golden examples scored."""
    missing: int
    """Examples the new model gave no answer to (scored as an empty answer)."""
    baseline_missing: int | None = None
    """Examples the baseline gave no answer to; None without a baseline."""
    metrics: list[MetricResult]
    """Each metric of the spec, in the spec's order, over all examples."""
    slices: list[SliceResult] = []
    """Per slice field (slice_by order), per value (sorted)."""
    unsliced: dict[str, int] = {}
    """Per slice field, how many examples lack it (or hold null, a list or an object
    there) and so are in no slice of it."""
    per_example: list[ExampleResult]
    """Every example, in index order."""
    failures: list[ThresholdMiss] = []
    """Every threshold missed: the whole set's first, then the slices'."""
    passed: bool
    """True when no threshold was missed."""

    @model_validator(mode="after")
    def _passed_means_no_failure(self) -> EvaluationResult:
        if self.passed != (not self.failures):
            raise ValueError("passed must be true exactly when there are no failures")
        return self

    def metric(self, name: str) -> MetricResult | None:
        """The whole set's result for metric ``name``, or None when it was not measured."""
        return next((result for result in self.metrics if result.metric == name), None)

    def worst(self, n: int) -> list[ExampleResult]:
        """The ``n`` worst-scored examples: lowest first by the first per-example metric in
        the spec's order, ties broken by index. Empty when the spec has no per-example
        metric (bleu, macro_f1 and valid_loss only). ValueError when ``n`` is negative."""
        if n < 0:
            raise ValueError("n must not be negative")
        key = next((r.metric for r in self.metrics if r.metric in PER_EXAMPLE_METRICS), None)
        if key is None:
            return []
        ranked = sorted(self.per_example, key=lambda e: (e.scores.get(key, 0.0), e.index))
        return ranked[:n]


def score(
    evaluation: EvaluationSpec,
    golden: Sequence[GoldenExample],
    predictions: Sequence[Prediction],
    *,
    baseline: Sequence[Prediction] | None = None,
    valid_loss: float | None = None,
    judge: Judge | None = None,
    json_schema: Mapping[str, Any] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> EvaluationResult:
    """Score ``predictions`` (and ``baseline``) on ``golden`` as ``evaluation`` says.

    ``golden`` is the selection to score, as
    :func:`tunefleet_trainer.predictions.golden_examples` makes it (``max_examples`` is
    applied there). Answers match examples by ``index``; an example without an answer is
    scored as an empty answer and counted in ``missing``. ``valid_loss`` is the final
    validation loss from the training events (None when training had no validation set:
    valid_loss is then not computed). ``judge`` answers the llm_judge requests;
    ``json_schema`` is the parsed schema file. ``progress("judge", done, total)`` reports
    the judge's progress in examples.

    Raises ValueError when the golden set is empty or repeats an index, an answer's index
    is not in it or appears twice, llm_judge is asked for without ``baseline`` or
    ``judge``, json_schema without ``json_schema``, or the schema is not valid; whatever
    ``judge`` raises propagates.
    """
    names: list[Metric] = list(dict.fromkeys(evaluation.metrics))
    _check_golden(golden)
    indexes = [example.index for example in golden]
    new, missing = _answers(indexes, predictions, "prediction")
    old, baseline_missing = (
        (None, None) if baseline is None else _answers(indexes, baseline, "baseline answer")
    )
    if "llm_judge" in names:
        lacking = [what for what, have in (("baseline", old), ("judge", judge)) if have is None]
        if lacking:
            raise ValueError(
                f"metric llm_judge compares with a baseline's answers: it needs {' and '.join(lacking)}"
            )
    checker: m.JsonSchemaChecker | None = None
    if "json_schema" in names:
        if json_schema is None:
            raise ValueError("metric json_schema needs json_schema (the parsed schema)")
        checker = m.JsonSchemaChecker(json_schema)

    expected = [example.expected for example in golden]
    scores = _per_example(names, expected, new, checker)
    baseline_scores = None if old is None else _per_example(names, expected, old, checker)
    pairs: list[JudgedPair] | None = None
    if "llm_judge" in names:
        assert old is not None and judge is not None  # checked above
        pairs = judge_pairs(
            [example.prompt for example in golden], expected, new, old, judge, progress=progress
        )
        scores["llm_judge"] = [OUTCOME_SCORES[pair.outcome] for pair in pairs]

    measure = _Measure(expected, new, old, scores, baseline_scores, pairs, valid_loss)
    everyone = list(range(len(golden)))
    overall = [
        _with_threshold(measure.result(name, everyone), evaluation.thresholds.get(name))
        for name in names
    ]
    failures = [miss for result in overall if (miss := _miss(result, None)) is not None]

    slice_values = [
        {field: _slice_value(ex.fields, field) for field in evaluation.slice_by} for ex in golden
    ]
    slices, unsliced = _slices(evaluation, names, slice_values, measure)
    failures += [
        miss
        for sliced in slices
        for result in sliced.metrics
        if (miss := _miss(result, f"{sliced.field}={sliced.value}")) is not None
    ]

    per_example = [
        ExampleResult(
            index=example.index,
            line=example.line,
            question=_question(example.prompt),
            expected=example.expected,
            prediction=new[i],
            baseline=None if old is None else old[i],
            scores={name: scores[name][i] for name in names if name in scores},
            baseline_scores={}
            if baseline_scores is None
            else {name: baseline_scores[name][i] for name in names if name in baseline_scores},
            verdict=None if pairs is None else pairs[i].outcome,
            fields={f: v for f, v in slice_values[i].items() if v is not None},
        )
        for i, example in enumerate(golden)
    ]
    return EvaluationResult(
        examples=len(golden),
        missing=missing,
        baseline_missing=baseline_missing,
        metrics=overall,
        slices=slices,
        unsliced=unsliced,
        per_example=per_example,
        failures=failures,
        passed=not failures,
    )


def _slices(
    evaluation: EvaluationSpec,
    names: Sequence[Metric],
    slice_values: list[dict[str, str | None]],
    measure: _Measure,
) -> tuple[list[SliceResult], dict[str, int]]:
    """Every slice's results with its thresholds, and per field the examples in no slice.

    Slices are the values examples hold, plus the values slice_thresholds names that no
    example holds (with no value, so that their thresholds fail rather than vanish)."""
    slices: list[SliceResult] = []
    unsliced: dict[str, int] = {}
    for field in dict.fromkeys(evaluation.slice_by):
        groups: dict[str, list[int]] = {}
        for position, values in enumerate(slice_values):
            if (value := values[field]) is not None:
                groups.setdefault(value, []).append(position)
        unsliced[field] = len(slice_values) - sum(len(members) for members in groups.values())
        by_value = evaluation.slice_thresholds.get(field, {})
        for value in sorted(groups.keys() | (by_value.keys() - {"*"})):
            members = groups.get(value, [])
            limits = {**by_value.get("*", {}), **by_value.get(value, {})}
            results = []
            for name in names:
                if name == "valid_loss":
                    if name not in limits:
                        continue  # measured once for the run, not per example
                    result = _not_computed(name, "not measured per slice")
                elif not members:
                    result = _not_computed(name, "no example in this slice")
                else:
                    result = measure.result(name, members)
                results.append(_with_threshold(result, limits.get(name)))
            slices.append(
                SliceResult(field=field, value=value, examples=len(members), metrics=results)
            )
    return slices, unsliced


class _Measure:
    """Computes a metric over any subset of the examples (positions in the golden list)."""

    def __init__(
        self,
        expected: list[str],
        new: list[str],
        old: list[str] | None,
        scores: dict[str, list[float]],
        baseline_scores: dict[str, list[float]] | None,
        pairs: list[JudgedPair] | None,
        valid_loss: float | None,
    ) -> None:
        self.expected = expected
        self.new = new
        self.old = old
        self.scores = scores
        self.baseline_scores = baseline_scores
        self.pairs = pairs
        self.valid_loss = valid_loss

    def result(self, name: str, members: list[int]) -> MetricResult:
        """``name`` over the examples at ``members`` (non-empty), new model and baseline."""
        if name == "valid_loss":
            if self.valid_loss is None:
                return _not_computed(name, "no validation loss was reported (no validation set?)")
            if not math.isfinite(self.valid_loss):
                return _not_computed(name, f"the validation loss is {self.valid_loss}")
            return MetricResult(metric=name, value=self.valid_loss)
        if name == "llm_judge":
            assert self.pairs is not None
            record = win_rate([self.pairs[i] for i in members])
            verdicts = 2 * record.n
            if record.invalid > MAX_INVALID_VERDICTS * verdicts:
                # A judge that mostly does not answer the question would score 0.5 (all
                # ties) and pass a threshold at 0.5: its win rate is no measurement.
                return MetricResult(
                    metric=name,
                    value=None,
                    detail={
                        **record.detail(),
                        "reason": f"{record.invalid} of the judge's {verdicts} replies were "
                        "not a verdict (A, B or TIE)",
                    },
                )
            return MetricResult(metric=name, value=record.win_rate, detail=dict(record.detail()))
        if name in PER_EXAMPLE_METRICS:
            value = m.mean(self.scores[name][i] for i in members)
            before = (
                None
                if self.baseline_scores is None
                else m.mean(self.baseline_scores[name][i] for i in members)
            )
            return MetricResult(metric=name, value=value, baseline=before)
        corpus = _CORPUS[name]
        expected = [self.expected[i] for i in members]
        value = corpus(expected, [self.new[i] for i in members])
        before = None if self.old is None else corpus(expected, [self.old[i] for i in members])
        detail: Detail = {}
        if name == "bleu":
            detail["signature"] = m.bleu_signature()
        elif name == "macro_f1":
            detail["labels"] = len({m.class_label(text) for text in expected})
        return MetricResult(metric=name, value=value, baseline=before, detail=detail)


_CORPUS: dict[str, Callable[[Sequence[str], Sequence[str]], float]] = {
    "bleu": m.bleu,
    "macro_f1": m.macro_f1,
}


def _per_example(
    names: Sequence[str],
    expected: list[str],
    answers: list[str],
    checker: m.JsonSchemaChecker | None,
) -> dict[str, list[float]]:
    """The per-example scores of ``answers`` for the metrics in ``names`` (not llm_judge)."""
    scores: dict[str, list[float]] = {}
    for name in names:
        if name == "exact_match":
            scores[name] = [m.exact_match(e, a) for e, a in zip(expected, answers, strict=True)]
        elif name == "token_f1":
            scores[name] = [m.token_f1(e, a) for e, a in zip(expected, answers, strict=True)]
        elif name == "rouge_l":
            scores[name] = m.rouge_l(expected, answers)
        elif name == "json_valid":
            scores[name] = [m.json_valid(a) for a in answers]
        elif name == "json_schema":
            assert checker is not None
            scores[name] = [checker(a) for a in answers]
    return scores


def _check_golden(golden: Sequence[GoldenExample]) -> None:
    if not golden:
        raise ValueError("the golden set holds no example")
    seen: set[int] = set()
    for example in golden:
        if example.index in seen:
            raise ValueError(f"the golden set has two examples with index {example.index}")
        seen.add(example.index)


def _answers(indexes: list[int], answers: Sequence[Prediction], what: str) -> tuple[list[str], int]:
    """Each golden example's answer text, in golden order ('' when missing), and how many
    are missing."""
    position = {index: i for i, index in enumerate(indexes)}
    texts: list[str | None] = [None] * len(indexes)
    for answer in answers:
        i = position.get(answer.index)
        if i is None:
            raise ValueError(
                f"a {what} answers example {answer.index}, which is not in the golden set "
                f"(indexes {min(indexes)} to {max(indexes)}); were the answers made for another golden set?"
            )
        if texts[i] is not None:
            raise ValueError(f"two {what}s answer example {answer.index}")
        texts[i] = answer.text
    return [text or "" for text in texts], texts.count(None)


def _slice_value(fields: Mapping[str, Any], field: str) -> str | None:
    """The example's value for slice ``field`` (``a`` or ``a.b``), as text; None when it
    has none, or null, a list or an object there."""
    value: Any = fields
    for part in field.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    if isinstance(value, bool):
        return "true" if value else "false"  # as the golden file spells it
    if isinstance(value, str | int | float):
        return str(value)
    return None


def _question(prompt: Sequence[Mapping[str, Any]]) -> str:
    users = [message for message in prompt if message.get("role") == "user"]
    chosen = users[-1] if users else (prompt[-1] if prompt else None)
    return "" if chosen is None else message_text(chosen)


def _not_computed(name: str, reason: str) -> MetricResult:
    return MetricResult(metric=name, value=None, detail={"reason": reason})


def _with_threshold(result: MetricResult, threshold: float | None) -> MetricResult:
    if threshold is None:
        return result
    if result.value is None:
        passed = False
    elif result.metric in LOWER_IS_BETTER:
        passed = result.value <= threshold + _TOLERANCE * max(1.0, abs(threshold))
    else:
        passed = result.value >= threshold - _TOLERANCE * max(1.0, abs(threshold))
    return result.model_copy(update={"threshold": threshold, "passed": passed})


def _miss(result: MetricResult, where: str | None) -> ThresholdMiss | None:
    if result.passed is not False or result.threshold is None:
        return None
    reason = result.detail.get("reason")
    return ThresholdMiss(
        metric=result.metric,
        slice=where,
        value=result.value,
        threshold=result.threshold,
        lower_is_better=result.metric in LOWER_IS_BETTER,
        reason=None if reason is None else str(reason),
    )


def _number(metric: str, value: float, digits: int | None = None) -> str:
    # 0-1 scores with three decimals, bleu (0-100) and valid_loss with two.
    places = digits if digits is not None else (2 if metric in {"bleu", "valid_loss"} else 3)
    return f"{value:.{places}f}"


def _numbers(metric: str, value: float, threshold: float) -> tuple[str, str]:
    """Value and threshold as text, with enough decimals that a miss never reads as equal."""
    places = 2 if metric in {"bleu", "valid_loss"} else 3
    while places < 12 and _number(metric, value, places) == _number(metric, threshold, places):
        places += 1
    return _number(metric, value, places), _number(metric, threshold, places)

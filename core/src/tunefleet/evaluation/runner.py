"""Evaluating a target's model: its answers to the golden set, scored and recorded.

The answers come the way the target's plan says (:attr:`tunefleet.provider.Plan.predictions`):

* ``job``: the training job answered the golden set on the training machine; its
  ``predictions`` and ``baseline_predictions`` artifacts are read back
  (:class:`~tunefleet.provider.ArtifactReading`);
* ``answer``: the provider's chat API answers with the fine-tuned model and, for the
  baseline, the base model (:class:`~tunefleet.provider.Answering`).

Re-scoring on a new golden set (`tunefleet eval --golden`) has no job answers to read: the
model answers through ``Answering`` where the provider can, else through the endpoint
tunefleet serves it behind. Scores are computed in core (:mod:`tunefleet.evaluation.scoring`)
and stored in the journal with the audit entry; the newest evaluation decides whether the
model may be deployed (:mod:`tunefleet.evaluation.gate`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tunefleet.errors import ProviderError, StateError, UsageError
from tunefleet.evaluation.scoring import EvaluationResult, Judge, score
from tunefleet.plugins import Registry
from tunefleet.provider import (
    Answering,
    ArtifactReading,
    ArtifactRef,
    ChatReply,
    ChatRequest,
    EndpointRef,
    JobRef,
    Plan,
    Provider,
    Serving,
)
from tunefleet.spec import EvaluationSpec, JudgeSpec
from tunefleet.state.journal import Journal
from tunefleet.state.models import Evaluation, Run, RunTarget
from tunefleet_trainer.errors import TrainerError
from tunefleet_trainer.predictions import (
    MAX_PREDICTIONS_BYTES,
    GenerationSettings,
    GoldenExample,
    Prediction,
    golden_examples,
    read_predictions,
)

__all__ = [
    "Golden",
    "Progress",
    "checked_golden",
    "evaluate_target",
    "evaluation_spec",
    "judge_for",
    "run_golden",
]

Progress = Callable[[str, int, int], None]
"""Called with (task, done, total): ``answer``, ``baseline`` and ``judge``."""
Caller = Callable[..., Any]
"""How provider calls are made: ``caller(operation_name, fn, *args)`` (the engine's retrying
call), so evaluation retries what every provider call retries."""


@dataclass(frozen=True)
class Golden:
    """A golden set on this machine, by content."""

    path: Path
    sha256: str

    @classmethod
    def of(cls, path: Path) -> Golden:
        digest = hashlib.sha256()
        try:
            with path.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
        except OSError as exc:
            raise UsageError(f"{path}: {exc.strerror}") from None
        return cls(path=path, sha256=digest.hexdigest())


def _direct(operation: str, fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


def evaluation_spec(run: Run) -> EvaluationSpec:
    """The evaluation section of ``run``'s spec; UsageError when it has none."""
    section = run.spec.get("evaluation") if isinstance(run.spec, dict) else None
    if not section:
        raise UsageError(
            f"run {run.id} has no evaluation in its spec; give one with `tunefleet eval "
            f"{run.id} --spec FILE` (its evaluation section)"
        )
    return EvaluationSpec.model_validate(section)


def checked_golden(run: Run) -> Golden | None:
    """The golden set the run started with, checked to hold the same bytes still;
    UsageError when it changed or is gone."""
    recorded = run_golden(run)
    if recorded is None:
        return None
    if Golden.of(recorded.path).sha256 != recorded.sha256:
        raise UsageError(
            f"the golden set {recorded.path} changed since run {run.id} started; score the "
            "new one with `tunefleet eval --golden FILE`, or put the old one back"
        )
    return recorded


def run_golden(run: Run) -> Golden | None:
    """The golden set the run started with, as recorded then."""
    info = run.datasets.get("golden_set")
    if not info:
        return None
    return Golden(path=Path(info["path"]), sha256=info["sha256"])


def evaluate_target(
    journal: Journal,
    registry: Registry,
    run: Run,
    row: RunTarget,
    *,
    evaluation: EvaluationSpec | None = None,
    golden: Golden | None = None,
    json_schema: Mapping[str, Any] | None = None,
    trigger: Literal["run", "eval"] = "run",
    caller: Caller = _direct,
    progress: Progress | None = None,
) -> Evaluation:
    """Score ``row``'s model on the golden set and record the evaluation.

    ``evaluation`` defaults to the run's own, ``golden`` to the golden set the run started
    with (which must not have changed since), ``json_schema`` to the schema the run
    recorded. Raises ProviderError when answers cannot be had (the engine retries and then
    stops the target in phase ``error``), StateError when nothing can answer a new golden
    set, UsageError for a golden set or schema that cannot be used.
    """
    own = evaluation is None
    evaluation = evaluation or evaluation_spec(run)
    golden = golden or checked_golden(run)
    if golden is None:
        raise UsageError(f"run {run.id} recorded no golden set; give one with --golden FILE")
    try:
        examples = golden_examples(golden.path, evaluation.max_examples)
    except TrainerError as exc:
        raise UsageError(str(exc)) from None
    provider = registry.provider(row.provider)
    plan = Plan.model_validate(row.plan)
    generation = GenerationSettings(max_new_tokens=evaluation.max_tokens)
    answers = _Answers(journal, provider, plan, row, caller, progress)
    recorded = run_golden(run)
    # The job's answers serve only the questions and settings the job was given.
    ran_with = evaluation_spec(run) if run.spec.get("evaluation") else None
    from_job = (
        recorded is not None
        and recorded.sha256 == golden.sha256
        and ran_with is not None
        and (ran_with.max_examples, ran_with.max_tokens)
        == (evaluation.max_examples, evaluation.max_tokens)
    )
    predictions, baseline, baseline_note = answers.collect(
        examples, generation, run, from_job=from_job, want_baseline=True
    )
    if "llm_judge" in evaluation.metrics and baseline is None:
        raise StateError(
            f"the llm_judge metric compares with the base model's answers, which are not "
            f"available: {baseline_note}"
        )
    judge = (
        judge_for(journal, registry, run, evaluation.judge, caller) if evaluation.judge else None
    )
    schema = json_schema
    if schema is None and own:
        schema = (run.datasets.get("json_schema") or {}).get("schema")
    try:
        result: EvaluationResult = score(
            evaluation,
            examples,
            predictions,
            baseline=baseline,
            valid_loss=_valid_loss(journal, row) if "valid_loss" in evaluation.metrics else None,
            judge=judge,
            json_schema=schema,
            progress=progress,
        )
    except ValueError as exc:  # a schema that is not one, answers that do not line up
        raise UsageError(f"cannot score the answers: {exc}") from None
    settings = {
        "evaluation": evaluation.model_dump(mode="json"),
        "generation": generation.model_dump(mode="json"),
        "examples": len(examples),
        "answers_from": answers.route,
        "baseline": baseline_note,
    }
    return journal.add_evaluation(
        row.id,
        golden_sha256=golden.sha256,
        golden_location=str(golden.path),
        settings=settings,
        result=result.model_dump(mode="json"),
        passed=result.passed,
        trigger=trigger,
        failures=[miss.describe() for miss in result.failures],
    )


@dataclass
class _Answers:
    """Where a target's answers come from, tried in the order the module docstring gives."""

    journal: Journal
    provider: Provider
    plan: Plan
    row: RunTarget
    caller: Caller
    progress: Progress | None
    route: str = "none"
    """How the answers came: job, answer or endpoint."""

    def collect(
        self,
        examples: Sequence[GoldenExample],
        generation: GenerationSettings,
        run: Run,
        *,
        from_job: bool,
        want_baseline: bool,
    ) -> tuple[list[Prediction], list[Prediction] | None, str]:
        """The model's answers, the baseline's (None when there are none) and a line saying
        where the baseline came from or why there is none."""
        artifacts = {
            a.kind: ArtifactRef(kind=a.kind, uri=a.uri) for a in self.journal.artifacts(self.row.id)
        }
        if from_job and "predictions" in artifacts:
            self.route = "job"
            predictions = self._selected(examples, self._read(artifacts["predictions"]))
            if "baseline_predictions" in artifacts:
                return (
                    predictions,
                    self._selected(examples, self._read(artifacts["baseline_predictions"])),
                    "the base model, answered in the training job before training",
                )
            return predictions, None, "the training job wrote no baseline answers"
        requests = [
            ChatRequest(
                messages=example.prompt, max_tokens=generation.max_new_tokens, temperature=0
            )
            for example in examples
        ]
        model = _servable(artifacts)
        if isinstance(self.provider, Answering) and model is not None:
            self.route = "answer"
            replies = self._answer(model.uri, requests, "answer")
            predictions = _predictions(examples, replies)
            base_model = str(run.spec.get("base_model", ""))
            try:
                base_replies = self._answer(base_model, requests, "baseline")
            except ProviderError as exc:
                return predictions, None, f"the base model {base_model} could not answer: {exc}"
            return predictions, _predictions(examples, base_replies), f"the base model {base_model}"
        endpoint = _endpoint(self.journal, self.row)
        if endpoint is not None and isinstance(self.provider, Serving):
            self.route = "endpoint"
            replies = []
            for done, request in enumerate(requests, start=1):
                replies.append(self.caller("invoke", self.provider.invoke, endpoint, request))
                if self.progress is not None:
                    self.progress("answer", done, len(requests))
            return (
                _predictions(examples, replies),
                None,
                "no baseline: the model answered through its endpoint",
            )
        raise StateError(
            f"target {self.row.name} cannot answer a new golden set: provider "
            f"{self.provider.name} answers only inside the training job, and the model has no "
            f"endpoint to ask (`tunefleet deploy {self.row.run_id}` serves it once it passes "
            "the gate; re-run the spec with the new golden set to have the job answer it)"
        )

    @staticmethod
    def _selected(
        examples: Sequence[GoldenExample], predictions: list[Prediction]
    ) -> list[Prediction]:
        """The answers to ``examples`` (a job may have answered more of the golden set)."""
        wanted = {example.index for example in examples}
        return [prediction for prediction in predictions if prediction.index in wanted]

    def _read(self, artifact: ArtifactRef) -> list[Prediction]:
        if not isinstance(self.provider, ArtifactReading):
            raise StateError(f"provider {self.provider.name} cannot read a job's artifacts")
        job = JobRef.model_validate(self.row.job)
        data = self.caller(
            "read_artifact", self.provider.read_artifact, job, artifact, MAX_PREDICTIONS_BYTES
        )
        try:
            return read_predictions(data, source=artifact.uri)
        except TrainerError as exc:
            raise ProviderError(self.provider.name, str(exc), code="bad_predictions") from None

    def _answer(self, model: str, requests: list[ChatRequest], task: str) -> list[ChatReply]:
        assert isinstance(self.provider, Answering)
        progress = self.progress

        def report(done: int, total: int) -> None:
            if progress is not None:
                progress(task, done, total)

        replies: list[ChatReply] = self.caller(
            "answer", self.provider.answer, self.plan.options, model, requests, report
        )
        if len(replies) != len(requests):
            raise ProviderError(
                self.provider.name,
                f"answered {len(replies)} of {len(requests)} requests",
                code="bad_answers",
            )
        return replies


def _servable(artifacts: Mapping[str, ArtifactRef]) -> ArtifactRef | None:
    for kind in ("hosted_model", "merged_model", "adapter"):
        if kind in artifacts:
            return artifacts[kind]
    return None


def _predictions(
    examples: Sequence[GoldenExample], replies: Sequence[ChatReply]
) -> list[Prediction]:
    return [
        Prediction(
            index=example.index,
            text=reply.text,
            finish_reason=reply.finish_reason
            if reply.finish_reason in ("stop", "length")
            else None,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
        )
        for example, reply in zip(examples, replies, strict=True)
    ]


def _endpoint(journal: Journal, row: RunTarget) -> EndpointRef | None:
    for resource in reversed(journal.resources(row.id, "endpoint")):
        if resource.status == "confirmed":
            return EndpointRef.model_validate(resource.detail["endpoint"])
    return None


def _valid_loss(journal: Journal, row: RunTarget) -> float | None:
    """The last validation loss the job reported."""
    value = None
    for event in journal.events(row.id, kinds=("metric",)):
        loss = event.payload.get("valid_loss")
        if isinstance(loss, (int, float)):
            value = float(loss)
    return value


def judge_for(
    journal: Journal, registry: Registry, run: Run, spec: JudgeSpec, caller: Caller = _direct
) -> Judge:
    """The judge as a batch callable: a provider's model through its chat API, or the
    endpoint tunefleet serves for another run."""
    if spec.endpoint is not None:
        judged = journal.run(spec.endpoint)
        rows = journal.targets(judged.id)
        found = [(r, e) for r in rows if (e := _endpoint(journal, r)) is not None]
        if not found:
            raise StateError(
                f"the judge is the endpoint of run {judged.id}, which has none "
                f"(`tunefleet deploy {judged.id}` serves it)"
            )
        judge_row, endpoint = found[-1]
        server = registry.provider(judge_row.provider)
        if not isinstance(server, Serving):
            raise StateError(f"provider {judge_row.provider} does not serve models")

        def ask_endpoint(requests: Sequence[ChatRequest]) -> list[ChatReply]:
            return [caller("invoke", server.invoke, endpoint, request) for request in requests]

        return ask_endpoint
    assert spec.provider is not None and spec.model is not None
    provider = registry.provider(spec.provider)
    if not isinstance(provider, Answering):
        raise StateError(f"provider {spec.provider} cannot answer chat requests")
    options = provider.options_model.model_validate(spec.options).model_dump(mode="json")
    model = spec.model

    def ask_model(requests: Sequence[ChatRequest]) -> list[ChatReply]:
        replies: list[ChatReply] = caller(
            "judge", provider.answer, options, model, list(requests), None
        )
        return replies

    return ask_model

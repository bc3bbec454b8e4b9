"""What a spec's evaluation needs of a target, checked at plan before anything is created.

A target whose model cannot be evaluated as the spec asks fails the plan with the reason:
an evaluation is never skipped, because a skipped one would let ``deploy`` serve a model
nobody measured.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tunefleet.errors import SpecError
from tunefleet.plugins import Registry
from tunefleet.provider import Answering, ArtifactReading, DatasetFacts, Plan, Provider, Unmet
from tunefleet.spec import RunSpec, is_local

__all__ = ["RECOMMENDED_GOLDEN_EXAMPLES", "evaluation_unmet", "load_json_schema"]

RECOMMENDED_GOLDEN_EXAMPLES = 200
"""Fewer verified examples than this give scores too noisy to gate a deploy on (the
playbook asks for 200 to 500); a smaller golden set is allowed, with a note."""


def evaluation_unmet(
    spec: RunSpec,
    plan: Plan,
    provider: Provider,
    facts: Mapping[str, DatasetFacts],
    registry: Registry,
) -> tuple[list[Unmet], list[str]]:
    """What of ``spec.evaluation`` the target of ``plan`` cannot honour, and notes for
    people reading the plan. Raises SpecError for a judge's options or a JSON schema that
    are invalid whatever the target."""
    evaluation = spec.evaluation
    assert evaluation is not None
    unmet: list[Unmet] = []
    notes: list[str] = []
    if not is_local(evaluation.golden_set):
        unmet.append(
            Unmet(
                requirement="evaluation.golden_set",
                reason=f"{evaluation.golden_set} is a cloud URI; the golden set is read on "
                "this machine, where its answers are scored (point the spec at a local copy)",
            )
        )
    provider_says = any(u.requirement.startswith("evaluation") for u in plan.unmet)
    if plan.predictions is None and not provider_says:
        unmet.append(
            Unmet(
                requirement="evaluation",
                reason=f"provider {provider.name} cannot produce the trained model's answers "
                "to the golden set, so the model could not be evaluated",
            )
        )
    elif plan.predictions == "answer" and not isinstance(provider, Answering):
        unmet.append(
            Unmet(
                requirement="evaluation",
                reason=f"provider {provider.name} plans answers through its chat API but "
                "cannot answer chat requests without an endpoint (a provider bug)",
            )
        )
    elif plan.predictions == "job" and not isinstance(provider, ArtifactReading):
        unmet.append(
            Unmet(
                requirement="evaluation",
                reason=f"provider {provider.name} plans answers written by the job but cannot "
                "read a job's artifacts back (a provider bug)",
            )
        )
    if "valid_loss" in evaluation.metrics and spec.dataset.validation is None:
        unmet.append(
            Unmet(
                requirement="evaluation.metrics",
                reason="valid_loss is the loss on dataset.validation, which the spec does not set",
            )
        )
    if evaluation.judge is not None:
        judge = evaluation.judge
        if judge.provider is not None:
            judge_provider = registry.provider(judge.provider)
            if not isinstance(judge_provider, Answering):
                unmet.append(
                    Unmet(
                        requirement="evaluation.judge",
                        reason=f"provider {judge.provider} cannot answer chat requests without "
                        "an endpoint; name a judge model of a provider that can (openai) or "
                        "a run whose endpoint tunefleet serves (judge.endpoint)",
                    )
                )
            else:
                judge_options(spec, judge_provider, judge.options)
        else:
            notes.append(
                f"the judge is the endpoint of run {judge.endpoint}, looked up in the journal "
                "when the evaluation runs"
            )
    if evaluation.json_schema is not None:
        load_json_schema(spec)
    golden = facts.get("golden_set")
    if golden is not None and golden.examples is not None:
        used = min(golden.examples, evaluation.max_examples or golden.examples)
        if used < RECOMMENDED_GOLDEN_EXAMPLES:
            notes.append(
                f"the evaluation scores {used} golden example(s); {RECOMMENDED_GOLDEN_EXAMPLES} "
                "to 500 verified examples give scores steady enough to gate a deploy on"
            )
    return unmet, notes


def judge_options(spec: RunSpec, provider: Provider, options: Mapping[str, Any]) -> dict[str, Any]:
    """The judge's options validated as a target's are, as JSON; SpecError when invalid."""
    try:
        validated = provider.options_model.model_validate(
            dict(options), strict=True, context={"base_dir": Path(spec.resolve_location("."))}
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ("evaluation", "judge", "options", *first["loc"])
        raise SpecError([spec.issue(path, first["msg"])]) from None
    dumped: dict[str, Any] = validated.model_dump(mode="json")
    return dumped


def load_json_schema(spec: RunSpec) -> dict[str, Any]:
    """The JSON Schema the spec's answers must conform to, checked as a schema; SpecError
    when it cannot be read, is not JSON or is not a valid schema."""
    evaluation = spec.evaluation
    assert evaluation is not None and evaluation.json_schema is not None
    where = ("evaluation", "json_schema")
    path = Path(spec.resolve_location(evaluation.json_schema))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise SpecError([spec.issue(where, f"{evaluation.json_schema}: {reason}")]) from None
    try:
        schema = json.loads(text)
    except ValueError as exc:
        raise SpecError(
            [spec.issue(where, f"{evaluation.json_schema}: not JSON ({exc})")]
        ) from None
    if not isinstance(schema, dict):
        raise SpecError(
            [spec.issue(where, f"{evaluation.json_schema}: a JSON Schema must be an object")]
        )
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise SpecError(
            [spec.issue(where, f"{evaluation.json_schema}: not a valid schema ({exc.message})")]
        ) from None
    return schema

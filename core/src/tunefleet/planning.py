"""Plan: what a spec would do on each target, before anything is created.

``plan_run`` validates the spec's local datasets, then for each selected target loads the
provider, validates the target's options with the provider's model, checks capabilities
and the placement policy (:mod:`tunefleet.placement`), asks the provider for its plan and
lets policy plugins add objections. Nothing is created and no credentials are needed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from tunefleet.data import validate_dataset
from tunefleet.data.checks import DataFormat
from tunefleet.data.report import DatasetReport
from tunefleet.errors import DatasetInvalidError, PlanError, SpecError
from tunefleet.evaluation.planning import evaluation_unmet
from tunefleet.placement import check_target
from tunefleet.plugins import Registry, default_registry
from tunefleet.provider import (
    ContextLimits,
    DatasetFacts,
    Plan,
    PlanRequest,
    Provider,
    Unmet,
    capabilities_of,
)
from tunefleet.spec import RunSpec, TargetSpec, is_local, load_spec
from tunefleet_trainer.errors import TrainerError
from tunefleet_trainer.predictions import golden_examples

__all__ = ["RunPlan", "plan_run"]


class RunPlan(BaseModel):
    """The plan of every selected target, and the reports of the datasets behind them."""

    model_config = ConfigDict(frozen=True)

    run: str
    datasets: dict[str, DatasetReport]
    plans: list[Plan]

    @property
    def ok(self) -> bool:
        """True when every target can honour every requirement."""
        return all(plan.ok for plan in self.plans)

    def raise_for_unmet(self) -> None:
        """Raise PlanError listing each unmet requirement with its reason."""
        if not self.ok:
            raise PlanError(
                {
                    p.target: [(u.requirement, u.reason) for u in p.unmet]
                    for p in self.plans
                    if p.unmet
                }
            )


def plan_run(
    spec: RunSpec | str | Path,
    *,
    target: str | None = None,
    registry: Registry | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> RunPlan:
    """Plan ``spec`` (a RunSpec or a spec file) on all targets, or only on ``target``.

    Raises SpecError (bad spec or options), InputFileError (a dataset cannot be read),
    DatasetInvalidError (a dataset has errors) and ProviderNotInstalledError. Requirements
    a provider cannot honour do not raise: they are in each plan's ``unmet``
    (see :meth:`RunPlan.raise_for_unmet`).
    """
    if not isinstance(spec, RunSpec):
        spec = load_spec(spec)
    registry = registry or default_registry()
    targets = [spec.target(target)] if target is not None else list(spec.targets)
    # Resolve every provider first: a missing one fails before minutes of validation.
    providers = {t.key: registry.provider(t.provider) for t in targets}
    reports = _validate_datasets(spec, registry, progress, list(providers.values()))
    facts = {role: _facts(role, spec, report) for role, report in reports.items()}
    plans = [_plan_target(spec, t, providers[t.key], facts, registry) for t in targets]
    return RunPlan(run=spec.name, datasets=reports, plans=plans)


def _context_limit(spec: RunSpec, providers: list[Provider]) -> tuple[int | None, str]:
    """The spec's max_seq_length, else the smallest training context a target's provider
    names for the base model (None: validation's default)."""
    if spec.hyperparameters.max_seq_length is not None:
        return spec.hyperparameters.max_seq_length, "hyperparameters.max_seq_length"
    known = [
        found
        for provider in providers
        if isinstance(provider, ContextLimits)
        and (found := provider.training_context(spec.base_model)) is not None
    ]
    return min(known) if known else (None, "given")


def _locations(spec: RunSpec) -> dict[str, str | None]:
    """Every dataset the spec names, by role."""
    golden = spec.evaluation.golden_set if spec.evaluation is not None else None
    return {
        "train": spec.dataset.train,
        "validation": spec.dataset.validation,
        "golden_set": golden,
    }


def _validate_datasets(
    spec: RunSpec,
    registry: Registry,
    progress: Callable[[str, int, int], None] | None,
    providers: list[Provider],
) -> dict[str, DatasetReport]:
    limit, limit_source = _context_limit(spec, providers)
    reports: dict[str, DatasetReport] = {}
    for role, location in _locations(spec).items():
        if location is None or not is_local(location):
            continue  # cloud URIs are validated where they live, by the provider's stage step
        path = spec.resolve_location(location)
        # The golden set is chat examples whatever the method: questions and their answers.
        data_format: DataFormat = (
            "preference" if spec.method.type == "dpo" and role != "golden_set" else "chat"
        )

        def report_progress(done: int, total: int, role: str = role) -> None:
            if progress is not None:
                progress(role, done, total)

        report = validate_dataset(
            path,
            model=spec.base_model,
            data_format=data_format,
            context_limit=limit,
            context_limit_source=limit_source,
            registry=registry,
            progress=report_progress,
        )
        if not report.valid:
            raise DatasetInvalidError(location, report.errors, report)
        if role == "golden_set":
            _check_golden(spec, Path(path))
        reports[role] = report
    return reports


def _check_golden(spec: RunSpec, path: Path) -> None:
    """Every golden example ends with the answer it expects (the trainer's own rule)."""
    evaluation = spec.evaluation
    assert evaluation is not None
    try:
        golden_examples(path)
    except TrainerError as exc:
        raise SpecError([spec.issue(("evaluation", "golden_set"), str(exc))]) from None


def _facts(role: str, spec: RunSpec, report: DatasetReport) -> DatasetFacts:
    location = _locations(spec)[role]
    assert location is not None
    return DatasetFacts(
        role=role,
        location=spec.resolve_location(location),
        examples=report.examples,
        tokens=report.total_tokens,
        billable_tokens=report.billable_tokens,
        encoding=report.encoding,
        sha256=report.sha256,
        size_bytes=report.size_bytes,
    )


def _validated_options(spec: RunSpec, target: TargetSpec, provider: Provider) -> BaseModel:
    index = spec.targets.index(target)
    try:
        # Strict as the spec is (no "true" taken for 1, no "3" for 3), with the spec's folder
        # for options that are paths relative to it.
        return provider.options_model.model_validate(
            target.options, strict=True, context={"base_dir": Path(spec.resolve_location("."))}
        )
    except ValidationError as exc:
        issues = []
        for error in exc.errors():
            path = ("targets", index, "options", *error["loc"])
            message = error["msg"]
            if error["type"] == "value_error" and "error" in error.get("ctx", {}):
                message = str(error["ctx"]["error"])
            if error["type"] == "extra_forbidden":
                allowed = ", ".join(provider.options_model.model_fields) or "none"
                message = f"unknown option for provider {provider.name!r} (allowed: {allowed})"
            issues.append(spec.issue(path, message[0].lower() + message[1:]))
        raise SpecError(issues) from None


def _plan_target(
    spec: RunSpec,
    target: TargetSpec,
    provider: Provider,
    facts: dict[str, DatasetFacts],
    registry: Registry,
) -> Plan:
    options = _validated_options(spec, target, provider)
    core_unmet = check_target(spec, target, capabilities_of(provider, options), provider.name)
    plan = provider.plan(PlanRequest(spec=spec, target=target, options=options, datasets=facts))
    if spec.evaluation is not None:
        found, notes = evaluation_unmet(spec, plan, provider, facts, registry)
        core_unmet += found
        plan = plan.model_copy(update={"notes": [*plan.notes, *notes]})
    elif spec.endpoint is not None and spec.endpoint.canary is not None:
        note = (
            "the canary has no golden set to compare the versions on (the spec has no "
            "evaluation): only the provider's alarms can roll it back"
        )
        plan = plan.model_copy(update={"notes": [*plan.notes, note]})
    objections: list[Unmet] = []
    for found in registry.manager.hook.tunefleet_check_plan(spec=spec, plan=plan):
        objections.extend(found or ())
    unmet = _unique([*core_unmet, *plan.unmet, *objections])
    return plan.model_copy(update={"unmet": unmet})


def _unique(items: list[Unmet]) -> list[Unmet]:
    seen: set[tuple[str, str]] = set()
    out = []
    for item in items:
        key = (item.requirement, item.reason)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out

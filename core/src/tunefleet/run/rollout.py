"""Canary rollouts: a new model version takes a share of an endpoint's traffic first, is
compared with the version it replaces, and then takes all of it or is rolled back.

::

    adding       the new version is served beside the old one, with no traffic
    canary       it takes ``canary.traffic_percent`` of the traffic; the bake starts
    baking       shadow comparison: the first ``canary.shadow_examples`` golden examples go
                 to both versions (each asked directly), are scored with the spec's metrics
                 and judged side by side; then the provider's alarms are watched until the
                 bake ends. A regression or an alarm rolls back at once
    completing   all traffic to the new version; the old one stops; the registry makes the
                 new version production and archives the old
    rolling_back all traffic back to the old version; the new one stops

Every phase is recorded in the journal (``rollouts``) and the audit log before the next
starts, and every step is one the provider treats as a no-op when repeated
(:class:`~tunefleet.provider.TrafficSplitting`), so a rollout killed anywhere finishes
when `tunefleet deploy` is run again, without a second deployment. Steps run under the new
version's target lease, renewed while the canary bakes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tunefleet import _failpoints
from tunefleet.errors import (
    DeployBlockedError,
    LeaseLostError,
    ProviderError,
    ProviderNotFoundError,
    StateError,
    TransientProviderError,
    UsageError,
)
from tunefleet.evaluation.runner import checked_golden, evaluation_spec, judge_for
from tunefleet.evaluation.scoring import EvaluationResult, score
from tunefleet.plugins import Registry
from tunefleet.provider import ArtifactRef, ChatRequest, EndpointRef, Plan, TrafficSplitting
from tunefleet.registry import model_ref
from tunefleet.spec import LOWER_IS_BETTER, METRIC_RANGES, CanarySpec
from tunefleet.state.journal import Journal, Owner
from tunefleet.state.models import ModelVersion, Resource, Rollout, Run, RunTarget
from tunefleet_trainer.errors import TrainerError
from tunefleet_trainer.predictions import Prediction, golden_examples

__all__ = ["Current", "roll_out", "version_label"]

Notice = Callable[[str], None]
ROLL_BACK_FROM = ("adding", "canary", "baking")
"""Phases from which an error rolls the canary back (after them, the new version serves
all the traffic and deploying again completes the rollout)."""


MAX_LABEL = 40
"""Longest version label (``TrafficSplitting``'s contract)."""


def version_label(version: ModelVersion) -> str:
    """How an endpoint names a registered version: ``support-v3``; a long name is cut,
    never the version, so two versions never share a label."""
    suffix = f"-v{version.version}"
    return version.name[: MAX_LABEL - len(suffix)].rstrip("-") + suffix


@dataclass(frozen=True)
class Current:
    """What an endpoint serves before the rollout: the resource, its target and version."""

    resource: Resource
    row: RunTarget
    endpoint: EndpointRef
    version: ModelVersion | None
    label: str


def _now() -> datetime:
    return datetime.now(UTC)


def roll_out(
    journal: Journal,
    registry: Registry,
    run: Run,
    row: RunTarget,
    version: ModelVersion,
    current: Current,
    canary: CanarySpec,
    owner: Owner,
    *,
    poll: float = 15.0,
    notice: Notice | None = None,
    stop: threading.Event | None = None,
) -> EndpointRef:
    """Roll ``version`` (of ``row``) out to ``current``'s endpoint as a canary, or carry on
    with the rollout a killed process left; returns the endpoint once the new version
    serves all of it. Raises DeployBlockedError when the rollout rolled back (the old
    version serves the endpoint as before), with the reason."""
    provider = registry.provider(row.provider)
    if not isinstance(provider, TrafficSplitting):
        raise StateError(f"provider {row.provider} cannot split an endpoint's traffic")
    say = notice or (lambda message: None)
    wait = stop or threading.Event()
    new_label = version_label(version)
    if not current.label or current.label == new_label:
        raise StateError(
            f"endpoint {current.endpoint.name} serves a version whose label is "
            f"{current.label or 'unknown'}; a canary of {model_ref(version)} needs another "
            "(deploy without endpoint.canary to replace it)"
        )
    rollout, started = journal.start_rollout(
        endpoint=current.endpoint.name,
        provider=row.provider,
        from_target_id=current.row.id,
        to_target_id=row.id,
        from_version_id=current.version.id if current.version else None,
        to_version_id=version.id,
        from_label=current.label,
        to_label=new_label,
        traffic_percent=canary.traffic_percent,
    )
    if not started:
        say(f"resuming the rollout of {model_ref(version)} (phase {rollout.phase})")
    step = _Steps(
        journal,
        registry,
        provider,
        run,
        row,
        version,
        current,
        canary,
        owner,
        old=rollout.from_label,
        new=rollout.to_label,
        say=say,
    )
    while rollout.phase not in ("completed", "rolled_back"):
        journal.heartbeat(owner)
        try:
            rollout = step.take(rollout, wait, poll)
        except (TransientProviderError, LeaseLostError):
            raise  # deploying again carries on from this phase
        except (ProviderError, StateError, UsageError) as exc:
            if rollout.phase not in ROLL_BACK_FROM:
                raise  # rolling back or completing failed: deploying again retries it
            # The new version cannot go on (it does not load, its answers cannot be had):
            # the old one takes all the traffic back rather than leave the endpoint split.
            say(f"the canary cannot go on: {exc}")
            rollout = step.abandon(rollout, f"error: {exc}")
    if rollout.phase == "rolled_back":
        raise DeployBlockedError(
            f"model {model_ref(version)}",
            [f"its canary was rolled back: {rollout.reason}"],
            hint=f"endpoint {current.endpoint.name} serves {current.label} as before",
        )
    return step.endpoint


@dataclass
class _Steps:
    """One phase of a rollout per call; each repeatable after a crash."""

    journal: Journal
    registry: Registry
    provider: TrafficSplitting
    run: Run
    row: RunTarget
    version: ModelVersion
    current: Current
    canary: CanarySpec
    owner: Owner
    old: str
    """The label of the version the endpoint served."""
    new: str
    """The label of the version rolled out."""
    say: Notice

    def __post_init__(self) -> None:
        self.endpoint = self.current.endpoint

    def _move(self, rollout: Rollout, phase: str, action: str, **detail: Any) -> Rollout:
        fields = {
            key: detail.pop(key) for key in ("bake_until", "reason", "comparison") if key in detail
        }
        return self.journal.update_rollout(
            rollout.id,
            self.owner,
            phase=phase,
            audit_action=action,
            audit_detail={
                "phase": phase,
                **detail,
                **({"reason": fields["reason"]} if "reason" in fields else {}),
            },
            **fields,
        )

    def _resource(self) -> Resource:
        return self.journal.intend(
            self.row.id,
            self.owner,
            kind="endpoint",
            key=self.endpoint.name,
            provider=self.row.provider,
            detail={
                "label": self.new,
                "model": model_ref(self.version),
                "artifact": self.version.artifact["uri"],
            },
        )

    def abandon(self, rollout: Rollout, reason: str) -> Rollout:
        """Roll back from any phase before completion, saying why."""
        return self._move(rollout, "rolling_back", "rollout.rolling_back", reason=reason)

    def take(self, rollout: Rollout, wait: threading.Event, poll: float) -> Rollout:
        phase = rollout.phase
        if phase == "adding":
            self._resource()  # the intent first: a kill from here on leaves it on record
            artifact = ArtifactRef.model_validate(self.version.artifact)
            self.say(
                f"serving {self.new} beside {self.old} on {self.endpoint.name}, no traffic yet"
            )
            self.endpoint = self.provider.add_version(
                Plan.model_validate(self.row.plan), self.endpoint, artifact, self.new
            )
            return self._move(rollout, "canary", "rollout.added", version=self.new)
        if phase == "canary":
            share = rollout.traffic_percent
            self.provider.shift_traffic(self.endpoint, {self.old: 100 - share, self.new: share})
            bake_until = _now() + timedelta(minutes=self.canary.bake_minutes)
            self.say(
                f"canary: {self.new} takes {share}% of the traffic until {bake_until:%H:%M:%S} UTC"
            )
            return self._move(
                rollout,
                "baking",
                "rollout.canary",
                weights={self.old: 100 - share, self.new: share},
                bake_until=bake_until,
            )
        if phase == "baking":
            return self._bake(rollout, wait, poll)
        if phase == "completing":
            self.provider.shift_traffic(self.endpoint, {self.new: 100})
            self.provider.remove_version(self.endpoint, self.old)
            resource = self._resource()
            self.journal.confirm(
                resource.id,
                self.owner,
                native_id=self.endpoint.id,
                uri=self.endpoint.url,
                detail={"endpoint": self.endpoint.model_dump(mode="json")},
            )
            self.journal.supersede(self.current.resource.id, by=model_ref(self.version))
            _failpoints.reached("rollout-superseded")
            self.journal.set_model_stage(
                self.version.id,
                "production",
                reason=f"canary on endpoint {self.endpoint.name} completed",
            )
            self.say(f"rollout complete: {self.new} serves all of {self.endpoint.name}")
            return self._move(rollout, "completed", "rollout.completed", version=self.new)
        if phase == "rolling_back":
            try:
                self.provider.shift_traffic(self.endpoint, {self.old: 100})
                self.provider.remove_version(self.endpoint, self.new)
            except ProviderNotFoundError:
                pass  # the endpoint itself is gone: nothing serves the new version
            for resource in self.journal.resources(self.row.id, "endpoint"):
                if resource.key == self.endpoint.name and resource.status != "deleted":
                    self.journal.mark_deleted(resource.id, self.owner)
            self.say(f"rolled back: {self.old} serves all of {self.endpoint.name} again")
            return self._move(
                rollout,
                "rolled_back",
                "rollout.rolled_back",
                version=self.new,
                reason=rollout.reason,
            )
        raise StateError(f"rollout {rollout.id} is in an unknown phase {phase!r}")

    def _bake(self, rollout: Rollout, wait: threading.Event, poll: float) -> Rollout:
        if not rollout.comparison:
            comparison, regressions = self._compare()
            rollout = self.journal.update_rollout(
                rollout.id,
                self.owner,
                comparison=comparison,
                audit_action="rollout.compared",
                audit_detail={
                    "regressions": regressions,
                    "examples": comparison.get("examples", 0),
                },
            )
            if regressions:
                self.say("shadow comparison: " + "; ".join(regressions))
                return self._move(
                    rollout, "rolling_back", "rollout.rolling_back", reason="; ".join(regressions)
                )
            self.say(f"shadow comparison: {comparison.get('summary', 'no regression')}")
        firing = self.provider.alarms(self.endpoint, self.new)
        if firing:
            reason = "alarm: " + "; ".join(firing)
            self.say(reason)
            return self._move(rollout, "rolling_back", "rollout.rolling_back", reason=reason)
        assert rollout.bake_until is not None
        left = (rollout.bake_until - _now()).total_seconds()
        if left > 0:
            wait.wait(min(poll, left))
            return rollout
        return self._move(rollout, "completing", "rollout.baked")

    def _compare(self) -> tuple[dict[str, Any], list[str]]:
        """Both versions' answers to the golden sample, scored; the regressions found."""
        golden = checked_golden(self.run)
        if (
            self.canary.shadow_examples == 0
            or golden is None
            or not self.run.spec.get("evaluation")
        ):
            why = (
                "canary.shadow_examples is 0"
                if self.canary.shadow_examples == 0
                else "the spec has no evaluation, so there is no golden set to compare on"
            )
            return {"skipped": why, "summary": f"skipped ({why}); the alarms decide"}, []
        evaluation = evaluation_spec(self.run)
        limit = min(
            self.canary.shadow_examples, evaluation.max_examples or self.canary.shadow_examples
        )
        try:
            examples = golden_examples(golden.path, limit)
        except TrainerError as exc:
            raise StateError(f"the golden set cannot be read: {exc}") from None
        requests = [
            ChatRequest(messages=e.prompt, max_tokens=evaluation.max_tokens, temperature=0)
            for e in examples
        ]
        answers = {
            label: [
                Prediction(
                    index=e.index, text=self.provider.invoke_version(self.endpoint, label, r).text
                )
                for e, r in zip(examples, requests, strict=True)
            ]
            for label in (self.new, self.old)
        }
        metrics = [m for m in evaluation.metrics if m != "valid_loss"]
        compared = evaluation.model_copy(
            update={
                "metrics": metrics or ["exact_match"],
                "thresholds": {},
                "slice_thresholds": {},
                "slice_by": [],
            }
        )
        judge = (
            judge_for(self.journal, self.registry, self.run, evaluation.judge)
            if "llm_judge" in metrics and evaluation.judge is not None
            else None
        )
        try:
            result = score(
                compared,
                examples,
                answers[self.new],
                baseline=answers[self.old],
                judge=judge,
                json_schema=(self.run.datasets.get("json_schema") or {}).get("schema"),
            )
        except ValueError as exc:
            raise StateError(f"the versions' answers cannot be scored: {exc}") from None
        regressions = _regressions(result, self.canary, len(examples))
        summary = ", ".join(
            f"{m.metric} {_fmt(m.value)} vs {_fmt(m.baseline)}" for m in result.metrics
        )
        return {
            "examples": len(examples),
            "new": self.new,
            "old": self.old,
            "summary": summary,
            "result": result.model_dump(mode="json"),
        }, regressions


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _regressions(result: EvaluationResult, canary: CanarySpec, examples: int) -> list[str]:
    found = []
    for metric in result.metrics:
        if metric.value is None:
            if metric.metric == "llm_judge":  # the comparison the spec relies on failed
                why = metric.detail.get("reason", "no verdicts")
                found.append(f"the judge's comparison could not be made: {why}")
            continue
        if metric.metric == "llm_judge":
            # Worse only when the whole 95% interval is under the bar: on 50 examples a
            # version as good as the old one scores 0.4 to 0.6 by chance alone.
            ci_high = metric.detail.get("ci_high")
            upper = float(ci_high) if isinstance(ci_high, (int, float)) else metric.value
            if upper < canary.min_win_rate:
                found.append(
                    f"the judge prefers the new version's answers {metric.value:.0%} of the "
                    f"time (95% interval up to {upper:.0%}), under canary.min_win_rate "
                    f"{canary.min_win_rate:.0%} ({examples} examples)"
                )
            continue
        if metric.baseline is None:
            continue
        low, high = METRIC_RANGES.get(metric.metric, (0.0, 1.0))
        span = (high if high is not None else 1.0) - low
        drop = metric.value - metric.baseline
        if metric.metric in LOWER_IS_BETTER:
            drop = -drop
        if -drop > canary.max_regression * span:
            found.append(
                f"{metric.metric} fell from {metric.baseline:.4g} to {metric.value:.4g} on "
                f"{examples} shadow examples (canary.max_regression {canary.max_regression:g})"
            )
    return found

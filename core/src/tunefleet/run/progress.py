"""Where a run stands, read from the journal: what `status`, `watch` and `report` show."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from tunefleet.errors import RunFailedError
from tunefleet.events import METRIC_FIELDS
from tunefleet.provider import Plan
from tunefleet.state.journal import Journal, TargetFacts, metric_values
from tunefleet.state.models import Run, RunTarget

__all__ = [
    "RunProgress",
    "TargetProgress",
    "describe_event",
    "run_progress",
    "runs_progress",
    "target_progress",
]


class TargetProgress(BaseModel):
    """One target at a glance."""

    model_config = ConfigDict(frozen=True)

    name: str
    provider: str
    region: str | None
    attempt: int
    run_key: str
    phase: str
    """pending, staging, submitting, queued, watching, cancelling, collecting, done, error."""
    state: str | None
    """The job's state (queued, running, succeeded, failed, cancelled) once it has one."""
    message: str | None
    job_id: str | None
    console_url: str | None
    step: int | None
    total_steps: int | None
    train_loss: float | None
    valid_loss: float | None
    token_accuracy: float | None
    elapsed_seconds: float | None
    estimated_cost: float | None
    cost: float | None
    """Spent so far, as the provider reported it (cost events)."""
    currency: str
    cost_basis: str | None
    events: int
    artifacts: list[dict[str, str]]
    cancel_requested: bool
    driven_by: str | None
    model: str | None = None
    """The registered version of the target's model (``NAME:VERSION``), once registered."""
    evaluation: dict[str, Any] | None = None
    """The evaluation that gates the model: ``passed``, ``failures`` (one line each) and
    ``metrics`` (name -> value), once evaluated."""

    @property
    def finished(self) -> bool:
        return self.phase == "done"

    @property
    def succeeded(self) -> bool:
        return self.phase == "done" and self.state == "succeeded"


class RunProgress(BaseModel):
    """A run and each of its targets."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    created_at: datetime
    created_by: str
    spec_source: str
    targets: list[TargetProgress]

    def raise_for_outcome(self) -> None:
        """Raise RunFailedError naming each target that stopped or did not succeed."""
        stopped = [t for t in self.targets if t.phase == "error"]
        failed = [t for t in self.targets if t.finished and not t.succeeded]
        if not stopped and not failed:
            return
        lines = [f"target {t.name!r} stopped: {t.message}" for t in stopped]
        lines += [
            f"target {t.name!r}: job {t.state}"
            + (f": {t.message}" if t.message and t.message != t.state else "")
            for t in failed
        ]
        if stopped:
            lines.append(f"fix the cause, then: tunefleet resume {self.id}")
        raise RunFailedError("\n".join(lines), provider_error=bool(stopped))


def target_progress(journal: Journal, row: RunTarget) -> TargetProgress:
    """One target as progress shows it (see :func:`runs_progress` for its cost)."""
    return _target_progress(row, journal.target_facts([row.id])[row.id])


def _target_progress(row: RunTarget, facts: TargetFacts) -> TargetProgress:
    # Each measurement is its last known value, not the newest metric event's: a trainer
    # that logs valid_loss on its own line must not blank the train loss beside it.
    m = metric_values(row)
    cost = facts.cost
    plan = Plan.model_validate(row.plan)
    end = row.finished_at or datetime.now(UTC)
    job = row.job or {}
    found: dict[str, Any] = {"model": None}
    if facts.model is not None:
        found["model"] = f"{facts.model.name}:{facts.model.version}"
    if facts.evaluation is not None:
        result = facts.evaluation.result
        found["evaluation"] = {
            "id": facts.evaluation.id,
            "passed": facts.evaluation.passed,
            "failures": [miss.get("metric") for miss in result.get("failures", [])],
            "metrics": {x["metric"]: x.get("value") for x in result.get("metrics", [])},
        }
    return TargetProgress(
        name=row.name,
        provider=row.provider,
        region=row.region,
        attempt=row.attempt,
        run_key=row.run_key,
        phase=row.phase,
        state=row.state,
        message=row.message,
        job_id=job.get("id"),
        console_url=job.get("console_url"),
        step=_int(m.get("step")),
        total_steps=_int(m.get("total_steps")),
        train_loss=m.get("train_loss"),
        valid_loss=m.get("valid_loss"),
        token_accuracy=m.get("train_token_accuracy"),
        elapsed_seconds=(end - row.started_at).total_seconds() if row.started_at else None,
        estimated_cost=plan.cost.amount if plan.cost else None,
        cost=cost.payload["amount"] if cost is not None else None,
        currency=(cost.payload["currency"] if cost else plan.cost.currency if plan.cost else "USD"),
        cost_basis=plan.cost.basis if plan.cost else None,
        events=row.event_count,
        artifacts=[{"kind": a.kind, "uri": a.uri} for a in facts.artifacts],
        cancel_requested=row.cancel_requested,
        driven_by=row.owner,
        **found,
    )


def _int(value: float | int | None) -> int | None:
    return None if value is None else int(value)


def run_progress(journal: Journal, run: Run) -> RunProgress:
    """Where ``run`` stands: what `status`, `watch` and the live view show."""
    return runs_progress(journal, [run])[0]


def runs_progress(journal: Journal, runs: Sequence[Run]) -> list[RunProgress]:
    """Where each of ``runs`` stands, in their order.

    A fixed number of short queries however many runs, targets and events there are:
    targets for all runs in one, then each target's cost, artifacts, model and evaluation
    in one each. Step, losses and the event count are read from the target rows, where
    the journal keeps them as events are stored, so a live view refreshing twice a second
    costs the same at 20k events as at 200k.
    """
    targets = journal.latest_targets([run.id for run in runs])
    facts = journal.target_facts([row.id for rows in targets.values() for row in rows])
    return [
        RunProgress(
            id=run.id,
            name=run.name,
            created_at=run.created_at,
            created_by=run.created_by,
            spec_source=run.spec_source,
            targets=[_target_progress(row, facts[row.id]) for row in targets[run.id]],
        )
        for run in runs
    ]


def describe_event(payload: dict[str, Any]) -> str:
    """A stored event in words, without its kind: `running: job started`,
    `step 3: s3://...`, `0.0500 USD (5 steps x $0.01)`, `step 3/5 train_loss=0.62 ...`."""
    kind = payload["kind"]
    if kind == "status":
        state = str(payload["state"])
        return state + (f": {payload['message']}" if payload.get("message") else "")
    if kind == "checkpoint":
        return f"step {payload['step']}: {payload['uri']}"
    if kind == "cost":
        return f"{payload['amount']:.4f} {payload['currency']} ({payload['basis']})"
    if kind == "metric":
        total = payload.get("total_steps")
        step = f"{payload['step']}/{total}" if total else str(payload["step"])
        values = [
            f"{name}={float(payload[name]):.6g}"
            for name in METRIC_FIELDS
            if name not in ("step", "total_steps") and payload.get(name) is not None
        ]
        return f"step {step} " + " ".join(values)
    return str(payload.get("message", ""))

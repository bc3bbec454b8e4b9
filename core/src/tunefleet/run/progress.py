"""Where a run stands, read from the journal: what `status`, `watch` and `report` show."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from tunefleet.errors import RunFailedError
from tunefleet.events import METRIC_FIELDS
from tunefleet.provider import Plan
from tunefleet.state.journal import Journal
from tunefleet.state.models import Run, RunTarget

__all__ = ["RunProgress", "TargetProgress", "describe_event", "run_progress", "target_progress"]


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
    metric = journal.latest_event(row.id, "metric")
    cost = journal.latest_event(row.id, "cost")
    m: dict[str, Any] = metric.payload if metric is not None else {}
    plan = Plan.model_validate(row.plan)
    end = row.finished_at or datetime.now(UTC)
    job = row.job or {}
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
        step=m.get("step"),
        total_steps=m.get("total_steps"),
        train_loss=m.get("train_loss"),
        valid_loss=m.get("valid_loss"),
        token_accuracy=m.get("train_token_accuracy"),
        elapsed_seconds=(end - row.started_at).total_seconds() if row.started_at else None,
        estimated_cost=plan.cost.amount if plan.cost else None,
        cost=cost.payload["amount"] if cost is not None else None,
        currency=(cost.payload["currency"] if cost else plan.cost.currency if plan.cost else "USD"),
        cost_basis=plan.cost.basis if plan.cost else None,
        events=journal.event_count(row.id),
        artifacts=[{"kind": a.kind, "uri": a.uri} for a in journal.artifacts(row.id)],
        cancel_requested=row.cancel_requested,
        driven_by=row.owner,
        **_registered(journal, row),
    )


def _registered(journal: Journal, row: RunTarget) -> dict[str, Any]:
    """The target's registered model and the evaluation that gates it, as progress shows."""
    version = journal.model_version(target_id=row.id)
    evaluations = journal.evaluations(row.id)
    if version is not None and version.evaluation_id is not None:
        evaluations = [e for e in evaluations if e.id == version.evaluation_id]
    found: dict[str, Any] = {"model": f"{version.name}:{version.version}" if version else None}
    if evaluations:
        result = evaluations[-1].result
        found["evaluation"] = {
            "id": evaluations[-1].id,
            "passed": evaluations[-1].passed,
            "failures": [miss.get("metric") for miss in result.get("failures", [])],
            "metrics": {m["metric"]: m.get("value") for m in result.get("metrics", [])},
        }
    return found


def run_progress(journal: Journal, run: Run) -> RunProgress:
    return RunProgress(
        id=run.id,
        name=run.name,
        created_at=run.created_at,
        created_by=run.created_by,
        spec_source=run.spec_source,
        targets=[target_progress(journal, row) for row in journal.targets(run.id)],
    )


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

"""A fine-tuning job's own signals turned into tunefleet's event stream.

Three sources feed it: the job's events (``list_events``: messages, and ``metrics`` events
with the step's losses and token accuracies), its checkpoints (``checkpoints.list``) and
its status (one StatusEvent each time it changes). The API lists events newest first and
pages backwards, so a read walks from the newest event back to the last one seen and
returns what it found oldest first. The :class:`Cursor` records how far each source has
been read; the engine stores it with the events, so a crash re-reads nothing twice.
When a job succeeds, its actual cost follows its status: the tokens it trained on at the
model's price.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tunefleet.errors import ProviderError
from tunefleet.events import (
    CheckpointEvent,
    CostEvent,
    Event,
    EventPage,
    JobState,
    JsonCursor,
    LogEvent,
    MetricEvent,
    StatusEvent,
)
from tunefleet.kit.cost import token_cost_event
from tunefleet.provider import JobRef
from tunefleet_openai import pricing
from tunefleet_openai._client import PROVIDER, redact, translated

if TYPE_CHECKING:
    import openai

__all__ = [
    "STATES",
    "Cursor",
    "actual_cost",
    "checkpoint_event",
    "job_event",
    "read",
    "state_of",
    "status_event",
]

EVENTS_PAGE = 100

STATES: dict[str, JobState] = {
    # The OpenAI API: FineTuningJob.status in its OpenAPI description (openai-openapi.json
    # #/components/schemas/FineTuningJob/properties/status), plus `paused`, which the
    # description's own pauseFineTuningJob example answers with.
    "validating_files": JobState.QUEUED,
    "queued": JobState.QUEUED,
    "running": JobState.RUNNING,
    "paused": JobState.PAUSED,
    "succeeded": JobState.SUCCEEDED,
    "failed": JobState.FAILED,
    "cancelled": JobState.CANCELLED,
    # Azure OpenAI: FineTuningState of its 2025-04-01-preview description
    # (azureopenai.json#/definitions/FineTuningState), mapped as it categorizes them:
    # created and pending are inactive (not yet queued to run), pausing, resuming and
    # running active, paused inactive until resumed; succeeded, cancelled and failed
    # terminal.
    "created": JobState.QUEUED,
    "pending": JobState.QUEUED,
    "pausing": JobState.RUNNING,
    "resuming": JobState.RUNNING,
}
_LEVELS = {"info": "info", "warn": "warning", "warning": "warning", "error": "error"}


def state_of(status: str) -> JobState:
    """The neutral state of a job status either service documents; ProviderError
    ``unknown_job_status`` naming a status neither documents (it is not guessed at: a
    status read as running could be a job that has failed, or is costing money paused)."""
    state = STATES.get(status)
    if state is None:
        raise ProviderError(
            PROVIDER,
            f"the fine-tuning job is in status {status!r}, which neither the OpenAI API nor "
            f"Azure OpenAI documents (known: {', '.join(STATES)}); tunefleet-openai needs "
            "updating to follow it",
            code="unknown_job_status",
        )
    return state


@dataclass
class Cursor(JsonCursor):
    """How far a job's sources have been read; opaque JSON to the engine."""

    event: str | None = None
    """Id of the newest job event read."""
    checkpoint_step: int = -1
    """Step of the newest checkpoint read."""
    state: str | None = None
    """The last status reported, and how many status events were emitted so far."""
    state_changes: int = 0


def _time(unix: int | float | None) -> datetime:
    return datetime.fromtimestamp(unix, UTC) if unix is not None else datetime.now(UTC)


def _number(data: Mapping[str, Any], *keys: str) -> float | None:
    for key in keys:
        value = data.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def _accuracy(data: Mapping[str, Any], *keys: str) -> float | None:
    value = _number(data, *keys)
    return value if value is not None and 0 <= value <= 1 else None


def job_event(event: Any) -> Event:
    """One API job event: a MetricEvent for ``metrics``, else a LogEvent of its message."""
    data = event.data if isinstance(getattr(event, "data", None), Mapping) else {}
    if getattr(event, "type", None) == "metrics" and isinstance(data.get("step"), int):
        total = data.get("total_steps")
        # The epoch-end full validation pass, where there is one, beats the sampled batch.
        valid_loss = _number(data, "full_valid_loss", "valid_loss")
        return MetricEvent(
            id=event.id,
            time=_time(event.created_at),
            step=max(data["step"], 0),
            total_steps=total if isinstance(total, int) and total >= 0 else None,
            train_loss=_number(data, "train_loss"),
            valid_loss=valid_loss,
            train_token_accuracy=_accuracy(data, "train_mean_token_accuracy"),
            valid_token_accuracy=_accuracy(
                data, "full_valid_mean_token_accuracy", "valid_mean_token_accuracy"
            ),
        )
    level = _LEVELS.get(str(getattr(event, "level", "info")), "info")
    return LogEvent(
        id=event.id,
        time=_time(event.created_at),
        level=level,
        message=redact(str(event.message)),
    )


def checkpoint_event(checkpoint: Any) -> CheckpointEvent:
    """A checkpoint the API kept: its step and the model id it can be used as."""
    return CheckpointEvent(
        id=checkpoint.id,
        time=_time(checkpoint.created_at),
        step=max(int(checkpoint.step_number), 0),
        uri=checkpoint.fine_tuned_model_checkpoint,
    )


def status_event(job: Any, cursor: Cursor) -> StatusEvent:
    """The job's current status as an event, numbered so a state re-entered (running,
    paused, running) is a new event rather than a repeat of the first."""
    state = state_of(job.status)
    message = None
    error = getattr(job, "error", None)
    if state == JobState.FAILED and error is not None and getattr(error, "message", None):
        message = redact(str(error.message))
    finished = getattr(job, "finished_at", None)
    when = _time(finished) if state.terminal and finished else datetime.now(UTC)
    return StatusEvent(
        id=f"status-{cursor.state_changes}-{job.status}", time=when, state=state, message=message
    )


def actual_cost(job: Any, scope: Mapping[str, str]) -> CostEvent | None:
    """What a succeeded job cost: the tokens it trained on at the model's price (the
    options' price where the scope records one); None before then or for an unpriced model."""
    if job.status != "succeeded" or not job.trained_tokens:
        return None
    override = scope.get("training_price_per_million_tokens")
    price = pricing.PRICES.price(job.model, float(override) if override else None)
    if price is None:
        return None
    return token_cost_event(job.trained_tokens, price, _time(job.finished_at))


def read(client: openai.OpenAI, job: JobRef, cursor: str | None) -> EventPage:
    """The job's events after ``cursor``, oldest first, and the cursor after them."""
    position = Cursor.decode(cursor)
    # The job first: once it is finished, every event and checkpoint read after it is
    # there, and its status event goes last.
    with translated("retrieve fine-tuning job"):
        found = client.fine_tuning.jobs.retrieve(job.id)
    new_events = _events_since(client, job.id, position.event)
    if new_events:
        position.event = new_events[-1].id
    with translated("list checkpoints"):
        checkpoints = [
            checkpoint
            for checkpoint in client.fine_tuning.jobs.checkpoints.list(job.id)
            if checkpoint.step_number > position.checkpoint_step
        ]
    timeline: list[tuple[float, int, Event]] = [
        (event.created_at, 0, job_event(event)) for event in new_events
    ]
    timeline += [(c.created_at, 1, checkpoint_event(c)) for c in checkpoints]
    if checkpoints:
        position.checkpoint_step = max(c.step_number for c in checkpoints)
    timeline.sort(key=lambda item: (item[0], item[1]))
    out = [event for _, _, event in timeline]
    # validating_files and queued are both "queued": a change between them is none.
    if position.state is None or state_of(found.status) != state_of(position.state):
        out.append(status_event(found, position))
        position.state = found.status
        position.state_changes += 1
        cost = actual_cost(found, job.scope)
        if cost is not None:
            out.append(cost)
    if not out:
        return EventPage(events=[], cursor=cursor)
    return EventPage(events=out, cursor=position.encode())


def _events_since(client: openai.OpenAI, job_id: str, last: str | None) -> list[Any]:
    """Job events newer than ``last``, oldest first (the API pages newest first)."""
    newest_first: list[Any] = []
    after: str | None = None
    listing = client.fine_tuning.jobs.list_events
    while True:
        with translated("list fine-tuning events"):
            page = (
                listing(job_id, limit=EVENTS_PAGE, after=after)
                if after
                else listing(job_id, limit=EVENTS_PAGE)
            )
        for event in page.data:
            if event.id == last:
                return newest_first[::-1]
            newest_first.append(event)
        if not page.has_more or not page.data:
            return newest_first[::-1]
        after = page.data[-1].id

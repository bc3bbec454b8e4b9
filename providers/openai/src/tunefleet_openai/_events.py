"""A fine-tuning job's own signals turned into tunefleet's event stream.

Three sources feed it: the job's events (``list_events``: messages, and ``metrics`` events
with the step's losses and token accuracies), its checkpoints (``checkpoints.list``) and
its status (one StatusEvent each time it changes). The API lists events newest first and
pages backwards, so a read walks from the newest event back to the last one seen and
returns what it found oldest first. The :class:`Cursor` records how far each source has
been read; the engine stores it with the events, so a crash re-reads nothing twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tunefleet.events import (
    CheckpointEvent,
    Event,
    JobState,
    JsonCursor,
    LogEvent,
    MetricEvent,
    StatusEvent,
)
from tunefleet_openai._client import redact

__all__ = ["STATES", "Cursor", "checkpoint_event", "job_event", "state_of", "status_event"]

STATES: dict[str, JobState] = {
    "validating_files": JobState.QUEUED,
    "queued": JobState.QUEUED,
    "running": JobState.RUNNING,
    "paused": JobState.PAUSED,
    "succeeded": JobState.SUCCEEDED,
    "failed": JobState.FAILED,
    "cancelled": JobState.CANCELLED,
}
_LEVELS = {"info": "info", "warn": "warning", "error": "error"}


def state_of(status: str) -> JobState:
    """The neutral state of an API job status (an unknown new status counts as running)."""
    return STATES.get(status, JobState.RUNNING)


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

"""A training job's signals turned into tunefleet's event stream.

Two sources: the trainer's lines in CloudWatch Logs (``/aws/sagemaker/TrainingJobs``, one
stream per instance, ``<job>/algo-<n>-<time>``), where ``tunefleet.metric`` and
``tunefleet.checkpoint`` lines become metric and checkpoint events and the rest log lines;
and the job's secondary status transitions (Starting, Downloading, Training, Interrupted,
Uploading, Completed...), one status event each. The :class:`Cursor` holds each stream's
forward token and how many events of it were read, so an event's id -- stream and
position -- is the same however often it is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from tunefleet.events import CheckpointEvent, Event, JobState, JsonCursor, LogEvent, StatusEvent
from tunefleet.trainer.metrics import parse_checkpoint_line, parse_metric_line

__all__ = ["LOG_GROUP", "Cursor", "job_state", "log_event", "transition_event"]

LOG_GROUP = "/aws/sagemaker/TrainingJobs"

_SECONDARY: dict[str, JobState] = {
    "Starting": JobState.QUEUED,
    "Pending": JobState.QUEUED,
    "LaunchingMLInstances": JobState.QUEUED,
    "PreparingTrainingStack": JobState.QUEUED,
    "Downloading": JobState.RUNNING,
    "DownloadingTrainingImage": JobState.RUNNING,
    "Training": JobState.RUNNING,
    "Uploading": JobState.RUNNING,
    "Restarting": JobState.RUNNING,
    "Interrupted": JobState.RUNNING,
    "Updating": JobState.RUNNING,
    "Stopping": JobState.STOPPING,
    "Stopped": JobState.CANCELLED,
    "MaxRuntimeExceeded": JobState.FAILED,
    "MaxWaitTimeExceeded": JobState.FAILED,
    "Failed": JobState.FAILED,
    "Completed": JobState.SUCCEEDED,
}
_PRIMARY: dict[str, JobState] = {
    "Completed": JobState.SUCCEEDED,
    "Failed": JobState.FAILED,
    "Stopping": JobState.STOPPING,
    "Stopped": JobState.CANCELLED,
}


def job_state(description: dict[str, Any]) -> JobState:
    """The neutral state of a DescribeTrainingJob answer."""
    primary = description.get("TrainingJobStatus", "InProgress")
    if primary in _PRIMARY:
        return _PRIMARY[primary]
    secondary = _SECONDARY.get(description.get("SecondaryStatus", ""), JobState.RUNNING)
    return JobState.QUEUED if secondary == JobState.QUEUED else JobState.RUNNING


@dataclass
class Cursor(JsonCursor):
    """How far a job's sources have been read; opaque JSON to the engine."""

    streams: dict[str, list[Any]] = field(default_factory=dict)
    """Stream name -> [next forward token, events read]."""
    transitions: int = 0
    """Secondary status transitions reported."""
    final: str | None = None
    """The terminal status reported from TrainingJobStatus, when transitions lacked it."""


def _time(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, UTC)


def log_event(stream: str, position: int, record: dict[str, Any], checkpoints: str) -> Event:
    """One CloudWatch log record of the trainer as an event; a checkpoint's URI is where
    SageMaker copies it, under ``checkpoints`` (the job's CheckpointConfig.S3Uri)."""
    event_id = f"{stream.rsplit('/', 1)[-1]}#{position}"
    when = _time(int(record.get("timestamp", 0)))
    message = str(record.get("message", "")).rstrip("\n")
    parsed = parse_metric_line(message, event_id=event_id, time=when) or parse_checkpoint_line(
        message, event_id=event_id, time=when
    )
    if isinstance(parsed, CheckpointEvent):
        return parsed.model_copy(update={"uri": f"{checkpoints}/{PurePosixPath(parsed.uri).name}"})
    if parsed is not None:
        return parsed
    level = "error" if "Traceback" in message or message.startswith("ERROR") else "info"
    return LogEvent(id=event_id, time=when, level=level, message=message)


def transition_event(index: int, transition: dict[str, Any]) -> StatusEvent:
    """One secondary status transition as a status event."""
    status = str(transition.get("Status", ""))
    start = transition.get("StartTime")
    when = start if isinstance(start, datetime) else datetime.now(UTC)
    return StatusEvent(
        id=f"transition-{index}-{status}",
        time=when if when.tzinfo else when.replace(tzinfo=UTC),
        state=_SECONDARY.get(status, JobState.RUNNING),
        message=transition.get("StatusMessage") or status,
    )

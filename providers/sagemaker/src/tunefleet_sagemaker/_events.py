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

from tunefleet.errors import ProviderNotFoundError
from tunefleet.events import CheckpointEvent, Event, EventPage, JobState, JsonCursor, StatusEvent
from tunefleet.kit.trainer import line_event
from tunefleet.provider import JobRef
from tunefleet_sagemaker._client import client, translated
from tunefleet_sagemaker.pricing import PRICES

__all__ = ["LOG_GROUP", "Cursor", "events", "job_state", "log_event", "transition_event"]

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
    event = line_event(message, event_id=event_id, time=when)
    if isinstance(event, CheckpointEvent):
        return event.model_copy(update={"uri": f"{checkpoints}/{PurePosixPath(event.uri).name}"})
    return event


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


def events(job: JobRef, described: dict[str, Any], cursor: str | None) -> EventPage:
    """Events of the job after ``cursor``: the trainer's lines, one status event per
    secondary transition, and, once it has ended, its final status and actual cost."""
    position = Cursor.decode(cursor)
    logs = _log_events(job, position)
    transitions = described.get("SecondaryStatusTransitions") or []
    statuses: list[StatusEvent] = [
        transition_event(index, transition)
        for index, transition in enumerate(transitions)
        if index >= position.transitions
    ]
    position.transitions = len(transitions)
    timeline: list[Event] = sorted(
        [*logs, *[s for s in statuses if not s.state.terminal]], key=lambda e: e.time
    )
    timeline += [s for s in statuses if s.state.terminal]
    state = job_state(described)
    reported = [s.state for s in statuses]
    if state.terminal and position.final is None:
        ended = described.get("TrainingEndTime") or datetime.now(UTC)
        if not reported or reported[-1] != state:
            timeline.append(
                StatusEvent(
                    id=f"final-{state.value}",
                    time=ended,
                    state=state,
                    message=described.get("FailureReason"),
                )
            )
        position.final = state.value
        cost = PRICES.job_cost(
            seconds=described.get("BillableTimeInSeconds"),
            scope=job.scope,
            region=str(job.region),
            time=ended,
        )
        if cost is not None:
            timeline.append(cost)
    if not timeline:
        return EventPage(events=[], cursor=cursor)
    return EventPage(events=timeline, cursor=position.encode())


def _log_events(job: JobRef, position: Cursor) -> list[Event]:
    """The trainer's lines from every CloudWatch stream of the job, after ``position``."""
    logs = client("logs", str(job.region))
    streams: list[str] = []
    try:
        with translated("list log streams"):
            pages = logs.get_paginator("describe_log_streams").paginate(
                logGroupName=LOG_GROUP, logStreamNamePrefix=f"{job.id}/"
            )
            for page in pages:
                streams += [s["logStreamName"] for s in page.get("logStreams", [])]
    except ProviderNotFoundError:
        return []  # no instance has logged yet, so the log group may not exist
    found: list[Event] = []
    for stream in sorted(streams):
        token, seen = position.streams.get(stream, [None, 0])
        while True:
            arguments: dict[str, Any] = {
                "logGroupName": LOG_GROUP,
                "logStreamName": stream,
                "startFromHead": True,
            }
            if token:
                arguments["nextToken"] = token
            with translated("read the job's log"):
                page = logs.get_log_events(**arguments)
            records = page.get("events", [])
            found += [
                log_event(stream, seen + i, record, job.scope.get("checkpoints", ""))
                for i, record in enumerate(records)
            ]
            seen += len(records)
            following = page.get("nextForwardToken")
            if not records or following == token:
                token = following or token
                break
            token = following
        position.streams[stream] = [token, seen]
    return found

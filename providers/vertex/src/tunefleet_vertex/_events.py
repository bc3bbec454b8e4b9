"""A Vertex job's signals turned into tunefleet's event stream.

A custom job's containers write their output to Cloud Logging ("View logs",
https://cloud.google.com/vertex-ai/docs/training/monitor-debug-interactive-shell and
"Cloud Logging for Vertex AI", https://cloud.google.com/vertex-ai/docs/general/logging):
one entry a line, on the ``ml_job`` monitored resource labelled with the job's ID. They are
read with ``entries.list`` in timestamp order from where the cursor stopped (the last
timestamp read, and the insert IDs already seen at it, since entries can share one), and
every line goes through the trainer's line parser: ``tunefleet.metric`` and
``tunefleet.checkpoint`` lines become metric and checkpoint events, the rest log lines. A
status event is added whenever the job's state changed since the last read, and once the
job has ended, its final state and the actual cost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tunefleet.events import (
    CostEvent,
    Event,
    EventPage,
    JobState,
    JsonCursor,
    LogEvent,
    StatusEvent,
)
from tunefleet.kit.trainer import line_event
from tunefleet.provider import JobRef
from tunefleet_vertex import pricing
from tunefleet_vertex._client import Where, logging_client, translated

__all__ = ["STATES", "Cursor", "custom_job_events", "job_state", "tuning_job_events"]

STATES: dict[str, JobState] = {
    "JOB_STATE_UNSPECIFIED": JobState.QUEUED,
    "JOB_STATE_QUEUED": JobState.QUEUED,
    "JOB_STATE_PENDING": JobState.QUEUED,
    "JOB_STATE_RUNNING": JobState.RUNNING,
    "JOB_STATE_UPDATING": JobState.RUNNING,
    "JOB_STATE_PAUSED": JobState.PAUSED,
    "JOB_STATE_CANCELLING": JobState.STOPPING,
    "JOB_STATE_SUCCEEDED": JobState.SUCCEEDED,
    "JOB_STATE_FAILED": JobState.FAILED,
    "JOB_STATE_EXPIRED": JobState.FAILED,
    "JOB_STATE_PARTIALLY_SUCCEEDED": JobState.FAILED,
    "JOB_STATE_CANCELLED": JobState.CANCELLED,
}
"""Every ``JobState`` of the Vertex API (the discovery document's enum of
``CustomJob.state`` and ``TuningJob.state``) in tunefleet's terms. EXPIRED ("the job has
been running for longer than the timeout") is a failure; PARTIALLY_SUCCEEDED ("some
results may be missing", batch jobs) is one too for training, which made no whole model."""
MAX_ENTRIES = 2_000
"""Log entries read per call: a page of events stays bounded."""
_PAGE = 1_000
"""entries.list's largest page ("pageSize ... maximum 1000")."""


def job_state(name: str | None) -> JobState:
    """The neutral state of a Vertex job state name."""
    return STATES.get(name or "JOB_STATE_UNSPECIFIED", JobState.RUNNING)


@dataclass
class Cursor(JsonCursor):
    """How far a job's sources have been read; opaque JSON to the engine."""

    since: str | None = None
    """The timestamp of the last log entry read (RFC 3339)."""
    seen: list[str] = field(default_factory=list)
    """The insert IDs read at ``since``."""
    status: str | None = None
    """The last state reported."""
    statuses: int = 0
    final: bool = False


def _timestamp(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.now(UTC)


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _line(payload: Any) -> str:
    """The text of an entry: a line the container printed (textPayload), or, where the
    logging agent parsed a JSON line into jsonPayload, its ``message`` (else the JSON)."""
    if isinstance(payload, str):
        return payload.rstrip("\n")
    if isinstance(payload, dict):
        message = payload.get("message")
        return str(message) if message is not None else json.dumps(payload, sort_keys=True)
    return str(payload or "")


def _log_events(where: Where, job_id: str, created: datetime | None, cursor: Cursor) -> list[Event]:
    from google.cloud import logging as cloud_logging

    # Entries older than the job cannot be its own; the library would otherwise limit an
    # unfiltered read to the last 24 hours.
    since = cursor.since or (_rfc3339(created) if created else None)
    query = f'resource.type="ml_job" AND resource.labels.job_id="{job_id}"'
    if since:
        query += f' AND timestamp>="{since}"'
    events: list[Event] = []
    seen = set(cursor.seen)
    with translated(f"read the logs of job {job_id}"):
        entries = logging_client(where).list_entries(
            resource_names=[f"projects/{where.project}"],
            filter_=query,
            order_by=cloud_logging.ASCENDING,
            page_size=_PAGE,
            max_results=MAX_ENTRIES,
        )
        for entry in entries:
            insert_id = str(entry.insert_id or "")
            stamp = _timestamp(entry.timestamp)
            text = _rfc3339(stamp)
            if text == cursor.since and insert_id in seen:
                continue
            if text != cursor.since:
                cursor.since, seen = text, set()
            seen.add(insert_id)
            line = _line(entry.payload)
            if not line.strip():
                continue
            events.append(line_event(line, event_id=f"log-{insert_id}", time=stamp))
    cursor.seen = sorted(seen)
    return events


def _status_events(state: str, message: str | None, cursor: Cursor) -> list[Event]:
    if state == cursor.status:
        return []
    cursor.status = state
    cursor.statuses += 1
    return [
        StatusEvent(
            id=f"status-{cursor.statuses}",
            time=datetime.now(UTC),
            state=job_state(state),
            message=message or state,
        )
    ]


def _seconds(job: dict[str, Any]) -> int | None:
    start, end = job.get("start_time"), job.get("end_time")
    if not isinstance(start, datetime) or not isinstance(end, datetime):
        return None
    return max(int((end - start).total_seconds()), 0)


def _custom_cost(ref: JobRef, job: dict[str, Any], state: str) -> CostEvent | None:
    seconds = _seconds(job)
    now = datetime.now(UTC)
    if state in ("JOB_STATE_FAILED", "JOB_STATE_EXPIRED"):
        # "if training fails for any reason other than a user-initiated cancellation, you
        # are not billed for the time" (https://cloud.google.com/vertex-ai/pricing).
        return CostEvent(
            id="cost-final",
            time=now,
            amount=0.0,
            basis=f"{seconds or 0:,} s not billed: Vertex does not bill a failed job",
        )
    return pricing.PRICES.job_cost(
        seconds=seconds, scope=ref.scope, region=ref.region or "", time=now
    )


def custom_job_events(ref: JobRef, job: dict[str, Any], cursor_text: str | None) -> EventPage:
    """The events of a custom job after ``cursor_text``; ``job`` is its current state
    (``{"name", "state", "error", "create_time", "start_time", "end_time"}``)."""
    cursor = Cursor.decode(cursor_text)
    where = Where.from_scope(ref.scope)
    state = str(job["state"])
    events: list[Event] = _status_events(state, job.get("error"), cursor)
    events += _log_events(where, ref.id.rsplit("/", 1)[-1], job.get("create_time"), cursor)
    if job_state(state).terminal and not cursor.final:
        # The logs of an ended job are all there once the job has ended: read them first,
        # then close the stream with the cost.
        cursor.final = True
        cost = _custom_cost(ref, job, state)
        if cost is not None:
            events.append(cost)
    return EventPage(events=events, cursor=cursor.encode())


def tuning_job_events(ref: JobRef, job: dict[str, Any], cursor_text: str | None) -> EventPage:
    """The events of a tuning job after ``cursor_text``: its state changes, its data's
    statistics once Vertex reports them, and the cost of the tokens it trained."""
    cursor = Cursor.decode(cursor_text)
    state = str(job["state"])
    events: list[Event] = _status_events(state, job.get("error"), cursor)
    if job_state(state).terminal and not cursor.final:
        cursor.final = True
        stats = job.get("stats") or {}
        now = datetime.now(UTC)
        tokens = stats.get("total_billable_token_count")
        if stats:
            events.append(
                LogEvent(
                    id="tuning-data-stats",
                    time=now,
                    message=f"Vertex counted {stats.get('tuning_dataset_example_count', 0):,} "
                    f"examples, {tokens or 0:,} billable tokens, "
                    f"{stats.get('tuning_step_count', 0):,} tuning steps",
                )
            )
        if state == "JOB_STATE_SUCCEEDED" and tokens:
            price = pricing.TUNING_PRICES.price(
                ref.scope.get("base_model", ""),
                float(ref.scope["price_per_million"])
                if ref.scope.get("price_per_million")
                else None,
            )
            epochs = int(ref.scope.get("epochs", "1"))
            if price is not None:
                trained = int(tokens) * epochs
                events.append(
                    CostEvent(
                        id="cost-final",
                        time=now,
                        amount=trained * price / 1e6,
                        basis=f"{int(tokens):,} billable tokens x {epochs} epochs x "
                        f"${price:.2f}/M tokens",
                    )
                )
    return EventPage(events=events, cursor=cursor.encode())

"""A Vertex job's signals turned into tunefleet's event stream.

A tuning job's are its state changes, its training metrics (:mod:`._metrics`: the time
series of the job's Vertex AI Experiment), its data's statistics and its cost.

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
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tunefleet.errors import ProviderBusyError, ProviderError
from tunefleet.events import (
    CheckpointEvent,
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
from tunefleet_vertex._client import Where, post
from tunefleet_vertex._metrics import tuning_metrics

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


LOG_SECONDS_ENV = "TUNEFLEET_VERTEX_LOG_SECONDS"
LATE_SECONDS = 60
"""How late a log entry may become visible and still be read: each read goes back this far
before the newest entry read (Cloud Logging indexes entries with some delay, and replicas
write out of order), and the insert IDs seen in that window are skipped."""
_MAX_PAGES = 3


def log_seconds() -> float:
    """The least time between two reads of a running job's logs:
    ``$TUNEFLEET_VERTEX_LOG_SECONDS``, default 15. ``entries.list`` is limited to 60 requests
    a minute per project ("Quotas and limits", https://cloud.google.com/logging/quotas), for
    every reader of the project (the console, other targets) together."""
    try:
        return max(float(os.environ.get(LOG_SECONDS_ENV, "15")), 0.0)
    except ValueError:
        return 15.0


@dataclass
class Cursor(JsonCursor):
    """How far a job's sources have been read; opaque JSON to the engine."""

    since: str | None = None
    """The timestamp of the newest log entry read (RFC 3339)."""
    seen: list[list[str]] = field(default_factory=list)
    """[insert ID, timestamp] of the entries read in the last LATE_SECONDS before ``since``."""
    read_at: float = 0.0
    """When the logs were last read (seconds since the epoch)."""
    status: str | None = None
    """The last state reported."""
    statuses: int = 0
    final: bool = False
    step: int = -1
    """The last training step whose metrics were reported (tuning jobs)."""
    metrics_refused: bool = False
    """The tuning metrics could not be read (said once)."""


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


def _event(line: str, insert_id: str, stamp: datetime) -> Event:
    event = line_event(line, event_id=f"log-{insert_id}", time=stamp)
    if isinstance(event, CheckpointEvent) and event.uri.startswith("/gcs/"):
        # The trainer saw the Cloud Storage FUSE path; the checkpoint is the object.
        event = event.model_copy(update={"uri": "gs://" + event.uri.removeprefix("/gcs/")})
    return event


def _log_events(
    where: Where, job_id: str, created: datetime | None, cursor: Cursor, final: bool
) -> list[Event]:
    """The job's new log lines, at most one read every :func:`log_seconds` while it runs
    (every read once it has ended); a throttled read returns nothing and is tried later.

    ``entries.list`` (https://cloud.google.com/logging/docs/reference/v2/rest/v2/entries/list)
    is sent page by page, at most ``_MAX_PAGES`` a read: it may answer an empty page with a
    ``nextPageToken`` while its search goes on, which google-cloud-logging's pager follows
    without a bound."""
    now = time.time()
    if not final and now - cursor.read_at < log_seconds():
        return []
    cursor.read_at = now
    newest = datetime.fromisoformat(cursor.since) if cursor.since else None
    # Entries older than the job cannot be its own.
    start = newest - timedelta(seconds=LATE_SECONDS) if newest else created
    query = f'resource.type="ml_job" AND resource.labels.job_id="{job_id}"'
    if start is not None:
        query += f' AND timestamp>="{_rfc3339(start)}"'
    seen: dict[str, str] = {str(i): str(t) for i, t in cursor.seen}
    events: list[Event] = []
    body: dict[str, Any] = {
        "resourceNames": [f"projects/{where.project}"],
        "filter": query,
        "orderBy": "timestamp asc",
        "pageSize": _PAGE,
    }
    host = where.logging_endpoint or "https://logging.googleapis.com"
    try:
        for _ in range(_MAX_PAGES):
            page = post(f"{host}/v2/entries:list", body, f"read the logs of job {job_id}")
            for entry in page.get("entries") or []:
                insert_id = str(entry.get("insertId") or "")
                stamp = _parsed(entry.get("timestamp"))
                if insert_id in seen:
                    continue
                seen[insert_id] = _rfc3339(stamp)
                if newest is None or stamp > newest:
                    newest = stamp
                line = _line(entry.get("textPayload", entry.get("jsonPayload")))
                if line.strip():
                    events.append(_event(line, insert_id, stamp))
            token = page.get("nextPageToken")
            if not token or len(events) >= MAX_ENTRIES:
                break
            body["pageToken"] = token
    except ProviderBusyError:
        pass  # over the read quota: the lines stay there for the next read
    if newest is not None:
        cursor.since = _rfc3339(newest)
        window = _rfc3339(newest - timedelta(seconds=LATE_SECONDS))
        cursor.seen = sorted([i, t] for i, t in seen.items() if t >= window)
    events.sort(key=lambda e: e.time)
    return events


def _parsed(value: Any) -> datetime:
    """An entry's RFC 3339 timestamp (nanoseconds cut to microseconds)."""
    text = str(value or "")
    try:
        head, _, fraction = text.rstrip("Z").partition(".")
        stamp = datetime.fromisoformat(head + (f".{fraction[:6]}" if fraction else ""))
    except ValueError:
        return datetime.now(UTC)
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


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


def custom_job_events(ref: JobRef, job: dict[str, Any], cursor_text: str | None) -> EventPage:
    """The events of a custom job after ``cursor_text``; ``job`` is its current state
    (``{"name", "state", "error", "create_time", "start_time", "end_time"}``)."""
    cursor = Cursor.decode(cursor_text)
    where = Where.from_scope(ref.scope)
    state = str(job["state"])
    ended = job_state(state).terminal
    events: list[Event] = _status_events(state, job.get("error"), cursor)
    events += _log_events(
        where, ref.id.rsplit("/", 1)[-1], job.get("create_time"), cursor, final=ended
    )
    if ended and not cursor.final:
        # The ended job's lines were read first (going back LATE_SECONDS for stragglers);
        # the cost closes the stream: the run time at the price, whatever the ending
        # (Vertex's pricing page promises no refund of a failed custom job's time).
        cursor.final = True
        cost = pricing.PRICES.job_cost(
            seconds=_seconds(job), scope=ref.scope, region=ref.region or "", time=datetime.now(UTC)
        )
        if cost is not None:
            events.append(cost)
    return EventPage(events=events, cursor=cursor.encode())


def _tuning_metrics(ref: JobRef, job: dict[str, Any], cursor: Cursor) -> list[Event]:
    """The tuning job's metrics after the cursor's step; a principal that may not read
    them gets one warning, not a broken event stream."""
    if cursor.metrics_refused:
        return []
    try:
        found = tuning_metrics(Where.from_scope(ref.scope), job, cursor.step)
    except ProviderError as exc:
        if exc.code not in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
            raise
        cursor.metrics_refused = True
        return [
            LogEvent(
                id="tuning-metrics-refused",
                time=datetime.now(UTC),
                level="warning",
                message=f"the tuning job's loss cannot be shown: {exc.detail}",
            )
        ]
    if found:
        cursor.step = found[-1].step
    return list(found)


def tuning_job_events(ref: JobRef, job: dict[str, Any], cursor_text: str | None) -> EventPage:
    """The events of a tuning job after ``cursor_text``: its state changes, its data's
    statistics once Vertex reports them, and the cost of the tokens it trained."""
    cursor = Cursor.decode(cursor_text)
    state = str(job["state"])
    events: list[Event] = _status_events(state, job.get("error"), cursor)
    if not cursor.final:
        # Before the final block: the last step comes out before the cost.
        events += _tuning_metrics(ref, job, cursor)
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
            # The epochs the job trained (Vertex reports the count it chose when the spec
            # set none), else the plan's.
            epochs = int(job.get("epochs") or ref.scope.get("epochs", "1"))
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

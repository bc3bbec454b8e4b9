"""A command job's signals turned into tunefleet's event stream.

Azure ML writes what a job's processes print to ``user_logs/std_log*.txt`` in the
workspace's artifact store while the job runs, and lists the files, with read-only SAS
URLs, in the job's run details in the workspace's RunHistory service (what azure-ai-ml's
``ml_client.jobs.stream`` reads: the workspace's ``discoveryUrl`` names the regional API
host, and ``/history/v1.0/.../runs/{run}/details`` answers ``logFiles``), signed in with a
Resource Manager token as azure-ai-ml signs its RunHistory client. Each log file
is read from the byte the cursor stopped at, complete lines only, and every line goes
through the trainer's line parser: ``tunefleet.metric`` and ``tunefleet.checkpoint``
lines become metric and checkpoint events, the rest log lines. A status event is added
whenever the job's status changed since the last read, and once the job has ended, its
final status and the actual cost from its run time.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tunefleet.errors import ProviderError, ProviderNotFoundError
from tunefleet.events import Event, EventPage, JobState, JsonCursor, StatusEvent
from tunefleet.kit.trainer import line_event
from tunefleet.provider import JobRef
from tunefleet_azureml._client import PROVIDER, Where, arm, arm_scope, credential, translated
from tunefleet_azureml.pricing import PRICES

__all__ = ["STATES", "Cursor", "events", "job_state", "run_details"]

STATES: dict[str, JobState] = {
    "NotStarted": JobState.QUEUED,
    "Scheduled": JobState.QUEUED,
    "Starting": JobState.QUEUED,
    "Provisioning": JobState.QUEUED,
    "Preparing": JobState.QUEUED,
    "Queued": JobState.QUEUED,
    "Running": JobState.RUNNING,
    "Finalizing": JobState.RUNNING,
    "NotResponding": JobState.RUNNING,
    "Unknown": JobState.RUNNING,
    "Paused": JobState.PAUSED,
    "CancelRequested": JobState.STOPPING,
    "Completed": JobState.SUCCEEDED,
    "Failed": JobState.FAILED,
    "Canceled": JobState.CANCELLED,
}
"""Every status of an Azure ML job (``JobStatus`` in the REST reference, Jobs - Get,
https://learn.microsoft.com/rest/api/azureml/jobs/get#jobstatus) in tunefleet's terms.
NotResponding ("no heartbeat has been recently sent") and Unknown are not ends: the job
may still answer."""
LOG_FILE_PREFIX = "user_logs/std_log"
MAX_READ = 4 << 20
"""Bytes of one log file read per call: a page of events stays bounded."""


def job_state(status: str | None) -> JobState:
    """The neutral state of an Azure ML job status."""
    return STATES.get(status or "NotStarted", JobState.RUNNING)


@dataclass
class Cursor(JsonCursor):
    """How far a job's sources have been read; opaque JSON to the engine."""

    files: dict[str, list[int]] = field(default_factory=dict)
    """Log file -> [bytes read, lines read]."""
    status: str | None = None
    """The last status reported."""
    statuses: int = 0
    """Status events reported (a job can pass through a status twice: requeued)."""
    final: bool = False


@functools.cache
def _api_url(discovery_url: str) -> str:
    """The workspace's regional API host, from its discovery document."""
    from azure.core import PipelineClient
    from azure.core.rest import HttpRequest

    client: Any = PipelineClient(discovery_url)
    with translated("read the workspace's discovery document"):
        response = client.send_request(HttpRequest("GET", discovery_url))
        response.raise_for_status()
    try:
        return str(json.loads(response.text())["api"]).rstrip("/")
    except (KeyError, ValueError, TypeError):
        raise ProviderError(
            PROVIDER, f"{discovery_url} names no API host", code="discovery"
        ) from None


@functools.cache
def _workspace_api(where: Where) -> str:
    """The workspace's regional API host, read once per process (a workspace does not
    move), so watching a job costs one RunHistory read a poll."""
    with translated("read the workspace"):
        workspace = arm(where).workspaces.get(where.resource_group, where.workspace)
    discovery = (workspace.get("properties") or {}).get("discoveryUrl")
    if not discovery:
        raise ProviderError(PROVIDER, f"workspace {where.workspace} has no discoveryUrl")
    return _api_url(str(discovery))


def run_details(where: Where, run_id: str) -> dict[str, Any] | None:
    """The job's run details in RunHistory (status, times, error, log files); None when
    RunHistory has no run of that id yet."""
    from azure.core import PipelineClient
    from azure.core.pipeline.policies import BearerTokenCredentialPolicy, RetryPolicy
    from azure.core.rest import HttpRequest

    api = _workspace_api(where)
    client: Any = PipelineClient(
        api,
        policies=[
            RetryPolicy(retry_total=4),
            BearerTokenCredentialPolicy(credential(), arm_scope(where.management_url)),
        ],
    )
    url = f"{api}/history/v1.0{where.workspace_id}/runs/{run_id}/details"
    try:
        with translated("read the job's run details"):
            response = client.send_request(HttpRequest("GET", url))
            response.raise_for_status()
    except ProviderNotFoundError:
        return None
    details: dict[str, Any] = response.json()
    return details


def _read_log(url: str, offset: int) -> bytes:
    from azure.storage.blob import BlobClient

    blob = BlobClient.from_blob_url(url)
    try:
        with translated("read the job's log"):
            size = int(blob.get_blob_properties().size)
            if size <= offset:
                return b""
            data: bytes = blob.download_blob(
                offset=offset, length=min(size - offset, MAX_READ)
            ).readall()
    except ProviderNotFoundError:
        return b""
    return data


def _log_events(details: dict[str, Any], position: Cursor, checkpoints: str) -> list[Event]:
    found: list[Event] = []
    files = details.get("logFiles") or {}
    for name in sorted(files):
        if not name.startswith(LOG_FILE_PREFIX):
            continue
        offset, lines = position.files.get(name, [0, 0])
        data = _read_log(str(files[name]), offset)
        complete = data[: data.rfind(b"\n") + 1]
        now = datetime.now(UTC)
        for line in complete.decode("utf-8", errors="replace").splitlines():
            event = line_event(
                line.rstrip("\r"),
                event_id=f"{name.rsplit('/', 1)[-1]}#{lines}",
                time=now,
                checkpoint_uri=checkpoints or None,
            )
            found.append(event)
            lines += 1
        position.files[name] = [offset + len(complete), lines]
    return found


def _seconds(details: dict[str, Any]) -> int | None:
    def parsed(value: Any) -> datetime | None:
        try:
            return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None

    start, end = parsed(details.get("startTimeUtc")), parsed(details.get("endTimeUtc"))
    if start is None or end is None:
        return None
    return max(int((end - start).total_seconds()), 0)


def failure(details: dict[str, Any] | None) -> str | None:
    """The job's error as RunHistory words it."""
    error = (details or {}).get("error") or {}
    inner = error.get("error") if isinstance(error, dict) else None
    if isinstance(inner, dict):
        return f"{inner.get('code', '')}: {inner.get('message', '')}".strip(": ")
    return None


def events(job: JobRef, status: str, cursor: str | None) -> EventPage:
    """Events of the job after ``cursor``: the trainer's lines, a status event for each
    status change seen, and once the job has ended its final status and actual cost."""
    position = Cursor.decode(cursor)
    where = Where.from_scope(job.scope)
    details = run_details(where, job.id)
    timeline: list[Event] = []
    if details is not None:
        timeline += _log_events(details, position, job.scope.get("checkpoints", ""))
    state = job_state(status)
    now = datetime.now(UTC)
    if status != position.status and not state.terminal:
        timeline.append(
            StatusEvent(
                id=f"status-{position.statuses}-{status}", time=now, state=state, message=status
            )
        )
        position.statuses += 1
    position.status = status
    if state.terminal and not position.final:
        timeline.append(
            StatusEvent(id=f"final-{state.value}", time=now, state=state, message=failure(details))
        )
        position.final = True
        cost = PRICES.job_cost(
            seconds=_seconds(details or {}), scope=job.scope, region=str(job.region), time=now
        )
        if cost is not None:
            timeline.append(cost)
    if not timeline:
        return EventPage(events=[], cursor=cursor)
    return EventPage(events=timeline, cursor=position.encode())

"""A HyperPod job's events. On EKS: its conditions, the trainer's lines, and its cost (on
Slurm: :func:`._slurm.events`).

- Status: each condition the operator sets (``status.conditions``), once.
- The trainer's lines: the log of the job's first pod (rank 0, the one that prints the
  trainer's metrics), read through the Kubernetes API as ``kubectl logs`` reads it (the
  kubelet serves it; no add-on needed), with ``timestamps=true`` so each line carries the
  time the container wrote it. The cursor keeps the pod and the timestamp of the last line
  read (and how many lines had that very timestamp); a read asks for the lines since a
  minute before it (``sinceSeconds``, which absorbs clock skew between this machine and
  the node) and skips what was read. When HyperPod restarts the job (auto-resume), the
  new pod is read from its start: the trainer resumes from its newest checkpoint, so the
  steps it prints are new.
- Cost: when the job has finished, its share of the cluster's time (start to completion x
  nodes x the instance's price).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tunefleet.errors import ProviderError
from tunefleet.events import Event, EventPage, JobState, JsonCursor, StatusEvent
from tunefleet.kit.trainer import line_event
from tunefleet.provider import JobRef
from tunefleet_sagemaker.hyperpod import _eks, _slurm
from tunefleet_sagemaker.hyperpod._client import (
    kube_api,
    kube_request_options,
    kube_translated,
)
from tunefleet_sagemaker.hyperpod._planning import CONTAINER
from tunefleet_sagemaker.hyperpod.pricing import job_cost

__all__ = ["POD_LABEL", "Cursor", "events"]

POD_LABEL = "HPJob"
"""The label the HyperPod training operator puts on a job's pods, valued with the job's
name (the sagemaker-hyperpod SDK lists a job's pods with ``HPJob=<name>``)."""
_SKEW_SECONDS = 60


@dataclass
class Cursor(JsonCursor):
    """How far a job's events were read."""

    conditions: list[str] | None = None
    """The conditions reported, as ``type@lastTransitionTime``."""
    pod: str = ""
    """The uid of the pod whose log is being read."""
    time: str = ""
    """The timestamp of the last line read from it."""
    same: int = 0
    """Lines read that carry exactly ``time``."""
    costed: bool = False


_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def _time(text: str) -> datetime:
    """An RFC 3339 time as Kubernetes writes it (the kubelet with nanoseconds, which
    Python's datetime cannot hold: cut to microseconds)."""
    match = _RFC3339.match(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    whole, fraction, zone = match.groups()
    stamp = f"{whole}.{(fraction or '0')[:6]:0<6}{'+00:00' if zone == 'Z' else zone}"
    return datetime.fromisoformat(stamp)


def _sortable(text: str) -> str:
    """``text`` (RFC 3339) as a string that sorts as the times do: UTC, nine fraction
    digits (Go's RFC3339Nano drops trailing zeros, so ``.1Z`` would sort after ``.12Z``)."""
    match = _RFC3339.match(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    whole, fraction, zone = match.groups()
    if zone != "Z":
        whole = _time(text).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{(fraction or '')[:9]:0<9}Z"


def _condition_events(resource: dict[str, Any], position: Cursor) -> list[Event]:
    """Each true condition once, oldest first; and, for a job that succeeded without a
    running condition ever read, its start at ``status.startTime`` (the operator flips
    Running to False when the job ends, so a job that finished between two reads would
    otherwise never read as running; ``startTime`` alone is only its admission)."""
    seen = set(position.conditions or [])
    found: list[tuple[tuple[str, int], Event]] = []
    status = resource.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        state = _eks.CONDITIONS.get(str(condition.get("type")))
        when = str(condition.get("lastTransitionTime") or "")
        key = f"{condition.get('type')}@{when}"
        if state is None or key in seen or not when:
            continue
        seen.add(key)
        message = ": ".join(
            str(p)
            for p in (condition.get("type"), condition.get("reason"), condition.get("message"))
            if p
        )
        event = StatusEvent(id=f"condition-{key}", time=_time(when), state=state, message=message)
        found.append(((_sortable(when), 1), event))
    started = status.get("startTime")
    ran = any(
        key.split("@", 1)[0] in _RUNNING_CONDITIONS or key.startswith("started@") for key in seen
    )
    succeeded = _eks.job_state(resource)[0] == JobState.SUCCEEDED
    if succeeded and isinstance(started, str) and started and not ran:
        seen.add(f"started@{started}")
        event = StatusEvent(
            id=f"started-{started}", time=_time(started), state=JobState.RUNNING, message="started"
        )
        found.append(((_sortable(started), 0), event))  # before an end at the same time
    position.conditions = sorted(seen)
    return [event for _, event in sorted(found, key=lambda pair: pair[0])]


_RUNNING_CONDITIONS = frozenset(
    kind for kind, state in _eks.CONDITIONS.items() if state == JobState.RUNNING
)


def _first_pod(api: Any, namespace: str, name: str, master: str | None) -> dict[str, Any] | None:
    """The job's pod that prints the trainer's lines (rank 0's: the one at the operator's
    ``status.masterAddr``, else the first by name), once its container has started; None
    before that (a log read during image pull is refused with 400)."""
    import kubernetes

    with kube_translated(f"list the pods of {name}"):
        pods: Any = kubernetes.client.CoreV1Api(api).list_namespaced_pod(
            namespace, label_selector=f"{POD_LABEL}={name}", **kube_request_options()
        )
    placed = sorted(
        (pod for pod in pods.items if pod.spec and pod.spec.node_name and pod.metadata),
        key=lambda pod: str(pod.metadata.name),
    )
    if master:
        placed = [p for p in placed if p.status and p.status.pod_ip == master] or placed
    if not placed:
        return None
    pod = placed[0]
    statuses = (pod.status.container_statuses if pod.status else None) or []
    started = any(
        s.name == CONTAINER and s.state is not None and (s.state.running or s.state.terminated)
        for s in statuses
    )
    if not started:
        return None
    return {"name": pod.metadata.name, "uid": pod.metadata.uid}


def _log_events(api: Any, job: JobRef, position: Cursor, master: str | None) -> list[Event]:
    import kubernetes

    namespace = job.scope["namespace"]
    pod = _first_pod(api, namespace, job.id, master)
    if pod is None:
        return []
    if pod["uid"] != position.pod:
        position.pod, position.time, position.same = pod["uid"], "", 0
    since: int | None = None
    if position.time:
        age = (datetime.now(UTC) - _time(position.time)).total_seconds()
        since = max(int(age) + _SKEW_SECONDS, 1)
    try:
        with kube_translated(f"read the log of pod {pod['name']}"):
            answer: Any = kubernetes.client.CoreV1Api(api).read_namespaced_pod_log(
                pod["name"],
                namespace,
                container=CONTAINER,
                timestamps=True,
                since_seconds=since,
                _preload_content=False,
                **kube_request_options(),
            )
    except ProviderError as exc:
        # 400: the container is between states (a restart); 404: the pod was replaced
        # since it was listed. Either way there is nothing to read yet.
        if exc.status in {400, 404}:
            return []
        raise
    # The client would decode strictly; a log may hold any bytes.
    text = answer.data.decode("utf-8", errors="replace")
    found: list[Event] = []
    checkpoints = f"s3://{job.scope['bucket']}/{job.scope['output_prefix']}/checkpoints/"
    read_time, read_same, again = position.time, position.same, 0
    for raw in (text or "").splitlines():
        written, _, line = raw.partition(" ")
        if not _RFC3339.match(written) or not line.strip():
            continue
        stamp = _sortable(written)
        if read_time and stamp < read_time:
            continue
        if stamp == read_time:
            again += 1
            if again <= read_same:
                continue  # read on an earlier call
        if stamp == position.time:
            position.same += 1
        else:
            position.time, position.same = stamp, 1
        found.append(
            line_event(
                line.rstrip(),
                event_id=f"log-{pod['uid'][:8]}-{stamp}-{position.same}",
                time=_time(stamp),
                checkpoint_uri=checkpoints,
            )
        )
    return found


def events(job: JobRef, cursor: str | None) -> EventPage:
    """The job's events after ``cursor`` (a Slurm job's: :func:`._slurm.events`)."""
    if job.scope.get("orchestrator") == "slurm":
        return _slurm.events(job, cursor)
    position = Cursor.decode(cursor)
    resource = _eks.get(job)
    if resource is None:
        return EventPage(events=[], cursor=position.encode())
    found = _condition_events(resource, position)
    api = kube_api(
        region=str(job.region),
        eks_cluster_arn=job.scope["eks_cluster"],
        context=job.scope.get("kube_context") or None,
    )
    master = (resource.get("status") or {}).get("masterAddr")
    found += _log_events(api, job, position, master if isinstance(master, str) else None)
    state, _ = _eks.job_state(resource)
    seconds = _eks.billed_seconds(resource)
    if state.terminal and seconds is not None and not position.costed:
        cost = job_cost(seconds, job.scope, str(job.region), datetime.now(UTC))
        if cost is not None:
            found.append(cost)
        position.costed = True
    return EventPage(events=found, cursor=position.encode())

"""A HyperPod job's events on EKS: its conditions, the trainer's lines, and its cost.

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

from tunefleet.events import Event, EventPage, JsonCursor, StatusEvent
from tunefleet.kit.trainer import line_event
from tunefleet.provider import JobRef
from tunefleet_sagemaker.hyperpod import _jobs
from tunefleet_sagemaker.hyperpod._client import (
    kube_api,
    kube_request_options,
    kube_translated,
)
from tunefleet_sagemaker.hyperpod._planning import CONTAINER
from tunefleet_sagemaker.hyperpod.pricing import PRICES

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
    seen = set(position.conditions or [])
    found: list[Event] = []
    conditions = sorted(
        (resource.get("status") or {}).get("conditions") or [],
        key=lambda c: str(c.get("lastTransitionTime") or ""),
    )
    for condition in conditions:
        if condition.get("status") != "True":
            continue
        state = _jobs.CONDITIONS.get(str(condition.get("type")))
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
        found.append(
            StatusEvent(id=f"condition-{key}", time=_time(when), state=state, message=message)
        )
    position.conditions = sorted(seen)
    return found


def _first_pod(api: Any, namespace: str, name: str) -> dict[str, Any] | None:
    import kubernetes

    with kube_translated(f"list the pods of {name}"):
        pods: Any = kubernetes.client.CoreV1Api(api).list_namespaced_pod(
            namespace, label_selector=f"{POD_LABEL}={name}", **kube_request_options()
        )
    named = sorted(
        (pod for pod in pods.items if pod.spec and pod.spec.node_name),
        key=lambda pod: pod.metadata.name,
    )
    if not named:
        return None
    pod = named[0]
    return {"name": pod.metadata.name, "uid": pod.metadata.uid}


def _log_events(api: Any, job: JobRef, position: Cursor) -> list[Event]:
    import kubernetes

    namespace = job.scope["namespace"]
    pod = _first_pod(api, namespace, job.id)
    if pod is None:
        return []
    if pod["uid"] != position.pod:
        position.pod, position.time, position.same = pod["uid"], "", 0
    since: int | None = None
    if position.time:
        age = (datetime.now(UTC) - _time(position.time)).total_seconds()
        since = max(int(age) + _SKEW_SECONDS, 1)
    with kube_translated(f"read the log of pod {pod['name']}"):
        text = kubernetes.client.CoreV1Api(api).read_namespaced_pod_log(
            pod["name"],
            namespace,
            container=CONTAINER,
            timestamps=True,
            since_seconds=since,
            **kube_request_options(),
        )
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
    """The job's events after ``cursor``."""
    position = Cursor.decode(cursor)
    resource = _jobs.get(job)
    if resource is None:
        return EventPage(events=[], cursor=position.encode())
    found = _condition_events(resource, position)
    api = kube_api(
        region=str(job.region),
        eks_cluster_arn=job.scope["eks_cluster"],
        context=job.scope.get("kube_context") or None,
    )
    found += _log_events(api, job, position)
    state, _ = _jobs.job_state(resource)
    seconds = _jobs.billed_seconds(resource)
    if state.terminal and seconds is not None and not position.costed:
        cost = PRICES.job_cost(
            seconds=seconds,
            scope=job.scope,
            region=str(job.region),
            time=datetime.now(UTC),
        )
        if cost is not None:
            found.append(
                cost.model_copy(
                    update={"basis": f"the job's share of the cluster's time: {cost.basis}"}
                )
            )
        position.costed = True
    return EventPage(events=found, cursor=position.encode())

"""HyperPod jobs on Slurm clusters: sbatch, squeue, scancel through the head node.

Every command goes through :class:`~._client.Channel` (ssh to ``options.head_node``, or
here on the head node). A job is named after the run key (``--job-name``) and keeps a record
of itself on the shared storage (``<job dir>/slurm.json``: its id when it starts, its end
and exit status when it ends, written by the script itself), because Slurm without
accounting forgets a finished job after ``MinJobAge``:

- ``find``: ``squeue -t all --name=<job name>`` (what Slurm still knows), else the record.
- ``submit``: looks first (a job this run key made is adopted), then writes the planned
  script into the job's folder and submits it in the same command (``sbatch --parsable``),
  with the policy's tags and the run key as ``--comment``. A submit killed after sbatch
  accepted the job leaves a job of that name, which the resumed run finds.
- ``status``: the job's state from ``squeue``; once Slurm no longer lists it, the record's
  exit status. A job pending for a reason that can never clear by itself
  (:data:`NEVER_STARTS`: the partition cannot hold it, an account or QOS that does not
  exist...) is reported failed, and cancelled so it holds no place in the queue.
- ``events``: the state changes, and the trainer's lines from ``output.log``, read from
  the byte the cursor stopped at.
- ``cancel``: ``scancel``.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tunefleet.errors import ProviderError
from tunefleet.events import Event, EventPage, JobState, JsonCursor, StatusEvent
from tunefleet.kit.trainer import line_event
from tunefleet.provider import DatasetRef, JobRef, JobStatus, Plan
from tunefleet_sagemaker.hyperpod import _cluster
from tunefleet_sagemaker.hyperpod._client import PROVIDER, Channel
from tunefleet_sagemaker.hyperpod._planning import (
    RUN_KEY,
    SLURM_OUTPUT,
    SLURM_RECORD,
    fill,
    output_key,
)
from tunefleet_sagemaker.hyperpod.options import HyperPodOptions
from tunefleet_sagemaker.hyperpod.pricing import job_cost

__all__ = [
    "NEVER_STARTS",
    "STATES",
    "cancel",
    "events",
    "find",
    "status",
    "submit",
]

STATES: dict[str, JobState] = {
    "PENDING": JobState.QUEUED,
    "CONFIGURING": JobState.QUEUED,
    "REQUEUED": JobState.QUEUED,
    "REQUEUE_HOLD": JobState.QUEUED,
    "REQUEUE_FED": JobState.QUEUED,
    "RESV_DEL_HOLD": JobState.QUEUED,
    "SUSPENDED": JobState.QUEUED,
    "RUNNING": JobState.RUNNING,
    "COMPLETING": JobState.RUNNING,
    "RESIZING": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING,
    "STAGE_OUT": JobState.RUNNING,
    "STOPPED": JobState.RUNNING,
    "COMPLETED": JobState.SUCCEEDED,
    "CANCELLED": JobState.CANCELLED,
    "FAILED": JobState.FAILED,
    "BOOT_FAIL": JobState.FAILED,
    "DEADLINE": JobState.FAILED,
    "NODE_FAIL": JobState.FAILED,
    "OUT_OF_MEMORY": JobState.FAILED,
    "PREEMPTED": JobState.FAILED,
    "REVOKED": JobState.FAILED,
    "SPECIAL_EXIT": JobState.FAILED,
    "TIMEOUT": JobState.FAILED,
}
"""Slurm's job states (squeue(1), "JOB STATE CODES") in tunefleet's terms."""
NEVER_STARTS = frozenset(
    {
        "PartitionConfig",
        "PartitionTimeLimit",
        "InvalidAccount",
        "InvalidQOS",
        "AccountNotAllowed",
        "QOSNotAllowed",
        "BadConstraints",
        "DependencyNeverSatisfied",
    }
)
"""Pending reasons that do not clear by themselves (squeue(1), "JOB REASON CODES"): the job
asks for more than the partition's configuration allows, or names an account, QOS or
constraint it cannot have. Measured: a job asking for more nodes than exist is accepted and
pends with ``PartitionConfig`` forever (shared/TESTING-TARGETS.md B). Left out on purpose,
though they read alike: ``PartitionNodeLimit`` (also given while nodes are down or
draining, as during a HyperPod node replacement), ``QOSJobLimit`` (clears when other jobs
end), ``PartitionDown``/``PartitionInactive`` (an administrator's state)."""
_READ_BYTES = 1 << 20
"""Most of the output file one events call reads."""


def _channel(options: HyperPodOptions) -> Channel:
    return Channel(options.head_node, options.ssh_config)


def _job_channel(job: JobRef) -> Channel:
    return Channel(job.scope.get("head_node") or None, job.scope.get("ssh_config") or None)


def _scope(plan: Plan, clusters: _cluster.Clusters, body: Mapping[str, Any]) -> dict[str, str]:
    options = HyperPodOptions.model_validate(plan.options)
    facts = clusters.describe(str(plan.region), options.cluster)
    scope = {
        "orchestrator": "slurm",
        "cluster": facts.arn,
        "bucket": options.bucket,
        "job_dir": str(body["job_dir"]),
        "job_name": str(body["job_name"]),
        "instance_count": str(body["nodes"]),
        "instance_type": str(body["instance_type"]),
        "adapter": str(body["adapter"]),
    }
    kinds = body.get("predictions") or []
    if kinds:  # planned with an evaluation: the answers it writes (see _artifacts)
        scope["predictions"] = ",".join(str(kind) for kind in kinds)
    if options.head_node is not None:
        scope["head_node"] = options.head_node
    if options.ssh_config is not None:
        scope["ssh_config"] = options.ssh_config
    if options.price_per_hour is not None:
        scope["price_per_hour"] = str(options.price_per_hour)
    return scope


def _ref(plan: Plan, job_id: str, run_key: str, scope: dict[str, str]) -> JobRef:
    options = HyperPodOptions.model_validate(plan.options)
    return JobRef(
        provider=PROVIDER,
        target=plan.target,
        id=job_id,
        region=plan.region,
        run_key=run_key,
        scope={**scope, "output_prefix": output_key(options, scope["job_name"])},
    )


def _listed(channel: Channel, name: str) -> list[dict[str, str]]:
    """The jobs of that name Slurm still knows, newest last: id, state and reason."""
    out = channel.run(
        f"squeue --noheader --states=all --name={shlex.quote(name)} --format='%i|%T|%r'",
        operation=f"list Slurm jobs named {name}",
        read_only=True,
    )
    found = []
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3 and parts[0]:
            found.append({"id": parts[0], "state": parts[1], "reason": parts[2]})
    return sorted(found, key=lambda job: int(job["id"]) if job["id"].isdigit() else 0)


def _record(channel: Channel, job_dir: str) -> dict[str, Any] | None:
    """The record the job keeps on the shared storage, or None before it started."""
    path = shlex.quote(f"{job_dir}/{SLURM_RECORD}")
    out = channel.run(
        f"if [ -f {path} ]; then cat {path}; fi",
        operation=f"read {job_dir}/{SLURM_RECORD}",
        read_only=True,
    )
    if not out.strip():
        return None
    try:
        record = json.loads(out)
    except ValueError:
        raise ProviderError(
            PROVIDER, f"{job_dir}/{SLURM_RECORD} is not a job record tunefleet wrote"
        ) from None
    return record if isinstance(record, dict) else None


def _find(channel: Channel, name: str, job_dir: str) -> str | None:
    listed = _listed(channel, name)
    if listed:
        return listed[-1]["id"]
    record = _record(channel, job_dir)
    return str(record["job_id"]) if record and record.get("job_id") else None


def find(plan: Plan, run_key: str, clusters: _cluster.Clusters) -> JobRef | None:
    """The job ``run_key`` submitted: the one of its name Slurm lists, else its record."""
    body = plan.request("sbatch").body
    name = str(body["job_name"]).replace(RUN_KEY, run_key)
    folder = str(body["job_dir"]).replace(RUN_KEY, run_key)
    options = HyperPodOptions.model_validate(plan.options)
    found = _find(_channel(options), name, folder)
    if found is None:
        return None
    filled = {**body, "job_name": name, "job_dir": folder}
    return _ref(plan, found, run_key, _scope(plan, clusters, filled))


def submit(
    plan: Plan, datasets: Mapping[str, DatasetRef], run_key: str, clusters: _cluster.Clusters
) -> JobRef:
    """Submit the planned script with the run key and the datasets' paths filled in,
    unless a job of this run key exists."""
    options = HyperPodOptions.model_validate(plan.options)
    body = fill(plan.request("sbatch").body, options, datasets, run_key)
    channel = _channel(options)
    scope = _scope(plan, clusters, body)
    name, folder = str(body["job_name"]), str(body["job_dir"])
    existing = _find(channel, name, folder)
    if existing is not None:
        return _ref(plan, existing, run_key, scope)
    script = shlex.quote(f"{folder}/job.sbatch")
    out = channel.run(
        f"mkdir -p {shlex.quote(folder)} && cat >{script} && "
        f"sbatch --parsable --comment={shlex.quote(str(body['comment']))} {script}",
        operation=f"submit {name} (sbatch)",
        stdin=str(body["script"]),
    )
    # --parsable: "<job id>[;<cluster>]".
    job_id = out.strip().splitlines()[-1].split(";", 1)[0] if out.strip() else ""
    if not job_id.isdigit():
        raise ProviderError(PROVIDER, f"sbatch answered {out.strip()[:200]!r}, not a job id")
    return _ref(plan, job_id, run_key, scope)


def _state(job: JobRef, channel: Channel) -> tuple[JobState, str | None, dict[str, Any] | None]:
    listed = [j for j in _listed(channel, job.scope["job_name"]) if j["id"] == job.id]
    record = None
    if listed:
        state, reason = listed[0]["state"], listed[0]["reason"]
        mapped = STATES.get(state, JobState.RUNNING)
        if mapped == JobState.QUEUED and reason in NEVER_STARTS:
            return JobState.FAILED, f"PENDING ({reason}): Slurm can never start this job", None
        words = state if reason in {"", "None", "(null)"} else f"{state} ({reason})"
        if mapped in {JobState.FAILED, JobState.SUCCEEDED}:
            record = _record(channel, job.scope["job_dir"])
            if record is not None and record.get("exit_code") not in (None, 0):
                words += f", exit status {record['exit_code']}"
        return mapped, words, record
    record = _record(channel, job.scope["job_dir"])
    if record is None or str(record.get("job_id")) != job.id:
        return JobState.CANCELLED, "Slurm no longer knows the job and it never started", record
    if "exit_code" not in record:
        return (
            JobState.FAILED,
            "Slurm no longer knows the job and it did not record its end (its node failed?)",
            record,
        )
    accounted = _accounted(channel, job.id)
    if accounted is not None:
        state = accounted.split()[0] if accounted else ""
        return STATES.get(state, JobState.FAILED), f"{accounted} (accounting)", record
    code = record["exit_code"]
    if code == 0:
        return JobState.SUCCEEDED, "exit status 0", record
    if code == 143:
        return (
            JobState.FAILED,
            "ended by SIGTERM (a cancel, its time limit or preemption; Slurm keeps no "
            "accounting to tell which)",
            record,
        )
    return JobState.FAILED, f"exit status {code}", record


def _accounted(channel: Channel, job_id: str) -> str | None:
    """The job's state in Slurm's accounting (``CANCELLED by 1000``, ``TIMEOUT``...), or
    None where the cluster keeps none (HyperPod's lifecycle scripts set up slurmdbd by
    default; a cluster without it answers with an error)."""
    try:
        out = channel.run(
            f"sacct --noheader --parsable2 --allocations --jobs={shlex.quote(job_id)} "
            "--format=State",
            operation=f"read Slurm job {job_id}'s accounting",
        )
    except ProviderError:
        return None
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    return lines[0] if lines else None


def _seconds(record: Mapping[str, Any] | None) -> int | None:
    if not record or "ended" not in record or "started" not in record:
        return None
    return max(int(record["ended"]) - int(record["started"]), 0)


def status(job: JobRef) -> JobStatus:
    """The job's state; one that can never start is cancelled and reported failed."""
    channel = _job_channel(job)
    state, message, record = _state(job, channel)
    if state == JobState.FAILED and message and "can never start" in message:
        _scancel(channel, job)
    return JobStatus(
        state=state,
        message=message,
        checked_at=datetime.now(UTC),
        billable_seconds=_seconds(record),
    )


def _scancel(channel: Channel, job: JobRef) -> None:
    channel.run(f"scancel {shlex.quote(job.id)}", operation=f"cancel Slurm job {job.id}")


def cancel(job: JobRef) -> None:
    """``scancel`` the job unless it has finished."""
    channel = _job_channel(job)
    if not _state(job, channel)[0].terminal:
        _scancel(channel, job)


@dataclass
class Cursor(JsonCursor):
    """How far a Slurm job's events were read."""

    state: str = ""
    offset: int = 0
    """Bytes of ``output.log`` read (whole lines only)."""
    costed: bool = False


def events(job: JobRef, cursor: str | None) -> EventPage:
    """State changes, the trainer's lines after the cursor's byte, and the cost at the end."""
    position = Cursor.decode(cursor)
    channel = _job_channel(job)
    now = datetime.now(UTC)
    found: list[Event] = []
    state, message, record = _state(job, channel)
    path = shlex.quote(f"{job.scope['job_dir']}/{SLURM_OUTPUT}")
    out = channel.run(
        f"if [ -f {path} ]; then tail -c +{position.offset + 1} {path} | head -c {_READ_BYTES}; fi",
        operation=f"read {job.scope['job_dir']}/{SLURM_OUTPUT}",
        read_only=True,
    )
    data = out.encode(errors="surrogateescape")
    # Whole lines only; a full read with no line end (a progress bar redrawn with \r, say)
    # is taken whole, or the cursor would never move again.
    whole = data if len(data) >= _READ_BYTES else data[: data.rfind(b"\n") + 1]
    checkpoints = f"s3://{job.scope['bucket']}/{job.scope['output_prefix']}/checkpoints/"
    at = position.offset
    for raw in whole.splitlines(keepends=True):
        line = raw.decode(errors="replace").rstrip()
        if line.strip():
            found.append(
                line_event(line, event_id=f"log-{at}", time=now, checkpoint_uri=checkpoints)
            )
        at += len(raw)
    position.offset = at
    if state.value != position.state:
        found.append(StatusEvent(id=f"state-{state.value}", time=now, state=state, message=message))
        position.state = state.value
    seconds = _seconds(record)
    if state.terminal and seconds is not None and not position.costed:
        cost = job_cost(seconds, job.scope, str(job.region), now)
        if cost is not None:
            found.append(cost)
        position.costed = True
    return EventPage(events=found, cursor=position.encode())

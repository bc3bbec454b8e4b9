"""HyperPod jobs on EKS clusters: find, submit, status and cancel of HyperPodPyTorchJobs.

A job is a ``HyperPodPyTorchJob`` named after the run key (:func:`._planning.job_name`), so
the name is the idempotency key: ``find`` is one GET, and a second create of the same run
key is answered 409 AlreadyExists by the API server, after which ``submit`` adopts the job
when its run-key label is this run's. A kill anywhere inside ``submit`` therefore leaves at
most the one job, which the resumed run finds.

Status comes from the resource's ``status.conditions`` as the HyperPod training operator
writes them (:data:`CONDITIONS`); cancel deletes the resource (the operator deletes its
pods with it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from tunefleet.errors import AlreadyExistsError, ProviderError, ProviderNotFoundError
from tunefleet.events import JobState
from tunefleet.provider import DatasetRef, JobRef, JobStatus, Plan
from tunefleet_sagemaker.hyperpod import _cluster
from tunefleet_sagemaker.hyperpod._client import (
    PROVIDER,
    kube_api,
    kube_request_options,
    kube_translated,
)
from tunefleet_sagemaker.hyperpod._planning import (
    GROUP,
    KIND,
    PLURAL,
    RUN_KEY,
    RUN_KEY_LABEL,
    VERSION,
    fill,
    output_key,
    prediction_kinds,
)
from tunefleet_sagemaker.hyperpod.options import HyperPodOptions

__all__ = ["CONDITIONS", "billed_seconds", "cancel", "find", "get", "job_state", "status", "submit"]

CONDITIONS: dict[str, JobState] = {
    "Created": JobState.QUEUED,
    "Pending": JobState.QUEUED,
    "Suspended": JobState.QUEUED,
    "Queued": JobState.QUEUED,
    "PodsRunning": JobState.RUNNING,
    "Running": JobState.RUNNING,
    "Restarting": JobState.RUNNING,
    "Completed": JobState.SUCCEEDED,
    "Succeeded": JobState.SUCCEEDED,
    "Failed": JobState.FAILED,
}
"""The state a job is in while a condition of this type is the newest true one. A
Restarting job is running: HyperPod restarts it after a fault (auto-resume) and the trainer
goes on from its newest checkpoint."""


def _api(job_or_scope: Mapping[str, str], region: str) -> Any:
    return kube_api(
        region=region,
        eks_cluster_arn=job_or_scope["eks_cluster"],
        context=job_or_scope.get("kube_context") or None,
    )


def _custom(api: Any) -> Any:
    import kubernetes

    return kubernetes.client.CustomObjectsApi(api)


def _scope(plan: Plan, region: str, clusters: _cluster.Clusters) -> dict[str, str]:
    options = HyperPodOptions.model_validate(plan.options)
    facts = clusters.describe(region, options.cluster)
    body = plan.request(f"Create{KIND}").body
    replica = body["spec"]["replicaSpecs"][0]
    selector = replica["template"]["spec"].get("nodeSelector", {})
    (container,) = replica["template"]["spec"]["containers"]
    env = {item["name"]: item.get("value", "") for item in container.get("env", [])}
    config = json.loads(env.get("TUNEFLEET_TRAINER_CONFIG", "{}"))
    adapter = config.get("adapter", "lora")
    scope = {
        "cluster": facts.arn,
        "eks_cluster": facts.eks_cluster_arn or "",
        "namespace": options.namespace,
        "bucket": options.bucket,
        "output_prefix": output_key(options, "${job}"),
        "instance_type": selector.get("node.kubernetes.io/instance-type", ""),
        "instance_count": str(replica["replicas"]),
        "adapter": str(adapter),
        "orchestrator": "eks",
    }
    kinds = prediction_kinds(config)
    if kinds:  # planned with an evaluation: the answers it writes (see _artifacts)
        scope["predictions"] = ",".join(kinds)
    if options.kube_context is not None:
        scope["kube_context"] = options.kube_context
    if options.price_per_hour is not None:
        scope["price_per_hour"] = str(options.price_per_hour)
    return scope


def _ref(plan: Plan, region: str, name: str, run_key: str, scope: dict[str, str]) -> JobRef:
    return JobRef(
        provider=PROVIDER,
        target=plan.target,
        id=name,
        region=region,
        run_key=run_key,
        scope={**scope, "output_prefix": scope["output_prefix"].replace("${job}", name)},
    )


def get(job: JobRef) -> dict[str, Any] | None:
    """The job's resource as the API server has it; None when it does not exist."""
    api = _api(job.scope, str(job.region))
    try:
        with kube_translated(f"get {KIND} {job.id}"):
            found: dict[str, Any] = _custom(api).get_namespaced_custom_object(
                GROUP, VERSION, job.scope["namespace"], PLURAL, job.id, **kube_request_options()
            )
    except ProviderNotFoundError:
        return None
    return found


def find(plan: Plan, region: str, run_key: str, clusters: _cluster.Clusters) -> JobRef | None:
    """The job ``run_key`` created, if it exists: one GET of the name derived from it."""
    body = plan.request(f"Create{KIND}").body
    name = body["metadata"]["name"].replace(RUN_KEY, run_key)
    ref = _ref(plan, region, name, run_key, _scope(plan, region, clusters))
    found = get(ref)
    if found is None:
        return None
    _check_owner(found, name, run_key)
    return ref


def _check_owner(found: dict[str, Any], name: str, run_key: str) -> None:
    labels = found.get("metadata", {}).get("labels") or {}
    if labels.get(RUN_KEY_LABEL) != run_key:
        raise ProviderError(
            PROVIDER,
            f"a {KIND} named {name} exists that this run did not create (its "
            f"{RUN_KEY_LABEL} label is {labels.get(RUN_KEY_LABEL)!r}); delete it or rename "
            "the run",
            code="name_taken",
        )


def submit(
    plan: Plan,
    region: str,
    datasets: Mapping[str, DatasetRef],
    run_key: str,
    clusters: _cluster.Clusters,
) -> JobRef:
    """Create the planned job with the run key and the staged datasets' paths; a job this
    run key made already (an earlier attempt killed after the create) is adopted."""
    options = HyperPodOptions.model_validate(plan.options)
    body = fill(plan.request(f"Create{KIND}").body, options, datasets, run_key)
    name = body["metadata"]["name"]
    scope = _scope(plan, region, clusters)
    ref = _ref(plan, region, name, run_key, scope)
    api = _api(scope, region)
    try:
        with kube_translated(f"create {KIND} {name}"):
            _custom(api).create_namespaced_custom_object(
                GROUP, VERSION, options.namespace, PLURAL, body, **kube_request_options()
            )
    except AlreadyExistsError:
        found = get(ref)
        if found is None:  # deleted between the two calls: the run's job is gone
            raise
        _check_owner(found, name, run_key)
    return ref


def job_state(resource: Mapping[str, Any]) -> tuple[JobState, str | None]:
    """The state of a job's resource, and the operator's words about it."""
    conditions = [
        c
        for c in (resource.get("status") or {}).get("conditions") or []
        if c.get("status") == "True"
    ]
    for terminal in ("Failed", "Completed", "Succeeded"):
        for condition in conditions:
            if condition.get("type") == terminal:
                return CONDITIONS[terminal], _words(condition)
    conditions.sort(key=lambda c: str(c.get("lastTransitionTime") or ""))
    for condition in reversed(conditions):
        state = CONDITIONS.get(str(condition.get("type")))
        if state is not None:
            return state, _words(condition)
    return JobState.QUEUED, None


def _words(condition: Mapping[str, Any]) -> str | None:
    words = ": ".join(str(p) for p in (condition.get("reason"), condition.get("message")) if p)
    return words or None


def status(job: JobRef) -> JobStatus:
    """The job's state from its conditions. A job that no longer exists was deleted: by
    ``cancel``, or by someone else (the state says so)."""
    now = datetime.now(UTC)
    found = get(job)
    if found is None:
        return JobStatus(
            state=JobState.CANCELLED,
            message=f"{KIND} {job.id} no longer exists (deleted)",
            checked_at=now,
        )
    state, message = job_state(found)
    return JobStatus(
        state=state, message=message, checked_at=now, billable_seconds=billed_seconds(found)
    )


def billed_seconds(resource: Mapping[str, Any]) -> int | None:
    """Seconds from the job's start to its completion (None while it has not finished)."""
    status_ = resource.get("status") or {}
    start, end = status_.get("startTime"), status_.get("completionTime")
    if not start or not end:
        return None
    seconds = (_time(end) - _time(start)).total_seconds()
    return max(int(seconds), 0)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def cancel(job: JobRef) -> None:
    """Delete the job's resource (a no-op when it is gone already)."""
    import kubernetes

    api = _api(job.scope, str(job.region))
    found = get(job)
    if found is None or job_state(found)[0].terminal:
        return
    try:
        with kube_translated(f"delete {KIND} {job.id}"):
            _custom(api).delete_namespaced_custom_object(
                GROUP,
                VERSION,
                job.scope["namespace"],
                PLURAL,
                job.id,
                body=kubernetes.client.V1DeleteOptions(propagation_policy="Background"),
                **kube_request_options(),
            )
    except ProviderNotFoundError:
        pass

"""Command jobs: found by name, created as planned, watched, cancelled, and what they made.

The job's name is the run's name plus the run key, so ``find`` is one GET and a job that
exists under that name on create is this run's own, made by an attempt whose answer was
lost. The trainer's environment is registered first (a version per image; a version that
exists is left alone: versions cannot change).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from tunefleet.errors import (
    ProviderError,
    ProviderNotFoundError,
    QuotaExceededError,
)
from tunefleet.events import EventPage, JobState
from tunefleet.kit.labels import RUN_KEY as RUN_KEY_LABEL
from tunefleet.kit.trainer import prediction_artifacts
from tunefleet.provider import ArtifactRef, DatasetRef, JobRef, JobStatus, Plan
from tunefleet_azureml import _events
from tunefleet_azureml._client import PROVIDER, Where, arm, ensure_version, translated
from tunefleet_azureml._planning import CONFIG_ENV, fill, job_name, model_request
from tunefleet_azureml.options import AzureMLOptions

__all__ = ["artifacts", "cancel", "events", "find", "get", "status", "submit"]

STUDIO_URL = "https://ml.azure.com/runs/{name}?wsid={workspace}"


def get(where: Where, name: str) -> dict[str, Any] | None:
    """Jobs - Get of ``name``; None when there is no such job."""
    try:
        with translated(f"read job {name}"):
            found = arm(where).jobs.get(where.resource_group, where.workspace, name)
    except ProviderNotFoundError:
        return None
    return dict(found)


def _got(job: JobRef) -> dict[str, Any]:
    found = get(Where.from_scope(job.scope), job.id)
    if found is None:
        raise ProviderNotFoundError(PROVIDER, f"job {job.id} does not exist", code="NotFound")
    return found


def _properties(found: Mapping[str, Any]) -> dict[str, Any]:
    return dict(found.get("properties") or {})


def job_ref(plan: Plan, name: str, run_key: str) -> JobRef:
    """The ref of job ``name``, with what later calls need from the plan in its scope."""
    options = AzureMLOptions.model_validate(plan.options)
    where = Where.of(options)
    planned = plan.request("Jobs_CreateOrUpdate").body["body"]["properties"]
    resources = planned.get("resources") or {}
    scope = {**where.scope(), "job_type": str(planned["jobType"])}
    if planned["jobType"] == "Command":
        config = json.loads(planned["environmentVariables"][CONFIG_ENV])
        scope.update(
            adapter=str(config.get("adapter", "lora")),
            instance_count=str(resources["instanceCount"]),
            checkpoints=job_name(planned["outputs"]["checkpoints"]["uri"], run_key),
            model=job_name(planned["outputs"]["model"]["uri"], run_key),
        )
        if options.storage_account_url:
            scope["storage_account_url"] = options.storage_account_url
        if "instanceType" in resources:
            scope["instance_type"] = resources["instanceType"]
    else:
        scope["model"] = job_name(planned["outputs"]["registered_model"]["assetName"], run_key)
        if resources.get("instanceTypes"):
            scope["instance_type"] = resources["instanceTypes"][0]
    if options.price_per_hour is not None:
        scope["price_per_hour"] = str(options.price_per_hour)
    return JobRef(
        provider=PROVIDER,
        target=plan.target,
        id=name,
        region=plan.region,
        run_key=run_key,
        console_url=STUDIO_URL.format(name=name, workspace=where.workspace_id),
        scope=scope,
    )


def _name(plan: Plan, run_key: str) -> str:
    path = str(plan.request("Jobs_CreateOrUpdate").body["path"])
    return job_name(path.removeprefix("jobs/"), run_key)


def find(plan: Plan, run_key: str) -> JobRef | None:
    """The job of ``run_key``, or None."""
    options = AzureMLOptions.model_validate(plan.options)
    name = _name(plan, run_key)
    return job_ref(plan, name, run_key) if get(Where.of(options), name) is not None else None


def _quota_advice(exc: QuotaExceededError, plan: Plan) -> QuotaExceededError:
    resources = plan.request("Jobs_CreateOrUpdate").body["body"]["properties"]["resources"]
    what = resources.get("instanceType", "the cluster's VM size")
    return QuotaExceededError(
        PROVIDER,
        f"{exc.detail}; the job needs {resources['instanceCount']} x {what} in {plan.region}: "
        "request more cores of that VM family for Azure Machine Learning (Azure portal, "
        "Quotas, Machine learning, or `az ml compute list-usage`), or choose another VM size",
        code=exc.code,
        status=exc.status,
    )


def submit(plan: Plan, datasets: Mapping[str, DatasetRef], run_key: str) -> JobRef:
    """The trainer's environment, then Jobs - Create Or Update exactly as planned, with
    the staged data assets and the run key."""
    options = AzureMLOptions.model_validate(plan.options)
    try:
        request = fill(
            plan.request("Jobs_CreateOrUpdate").body,
            {role: ref.uri for role, ref in datasets.items()},
            run_key,
        )
    except ValueError as exc:
        raise ProviderError(PROVIDER, f"cannot create the planned job: {exc}") from None
    for planned in plan.requests_for("submit"):
        if planned.operation == "EnvironmentVersions_CreateOrUpdate":
            ensure_version(options, planned.body)  # the trainer's image, once per image
    name = str(request["path"]).removeprefix("jobs/")
    try:
        with translated(f"create job {name}"):
            arm(options).jobs.create_or_update(
                options.resource_group, options.workspace, name, request["body"]
            )
    except QuotaExceededError as exc:
        raise _quota_advice(exc, plan) from None
    except ProviderError:
        # The name is the run key's: a job of that name carrying this run key is this
        # run's, made by an attempt whose answer was lost. Azure ML refuses a PUT of an
        # existing job with UserError/JobPropertyImmutable, not a 409 (azure-sdk-for-python
        # #47389), and azure-core itself sends the PUT again after a dropped answer.
        found = get(Where.of(options), name)
        tags = _properties(found or {}).get("tags") or {}
        if found is None or tags.get(RUN_KEY_LABEL) != run_key:
            raise
    return job_ref(plan, name, run_key)


def status(job: JobRef) -> JobStatus:
    """The job's state, in Azure ML's word for it; for a failed job, the error RunHistory
    holds (Azure ML's own words: a core quota too small says what to increase)."""
    properties = _properties(_got(job))
    raw = properties.get("status")
    state = _events.job_state(raw)
    message = raw
    if state == JobState.FAILED:
        details = _events.run_details(Where.from_scope(job.scope), job.id)
        message = _events.failure(details) or raw
    return JobStatus(state=state, message=message, checked_at=datetime.now(UTC))


def events(job: JobRef, cursor: str | None) -> EventPage:
    """The job's events after ``cursor`` (:mod:`._events`)."""
    return _events.events(job, str(_properties(_got(job)).get("status")), cursor)


def cancel(job: JobRef) -> None:
    """Jobs - Cancel, unless the job has ended or is being cancelled already."""
    where = Where.from_scope(job.scope)
    found = get(where, job.id)
    if found is None:
        return
    state = _events.job_state(_properties(found).get("status"))
    if state.terminal or state == JobState.STOPPING:
        return
    with translated(f"cancel job {job.id}"):
        # The cancellation is accepted when the first answer comes; its end is the job's
        # own status, watched like any other.
        arm(where).jobs.begin_cancel(where.resource_group, where.workspace, job.id)


def _model_uri(where: Where, name: str, version: str) -> str:
    return (
        f"azureml://subscriptions/{where.subscription_id}/resourcegroups/{where.resource_group}"
        f"/workspaces/{where.workspace}/models/{name}/versions/{version}"
    )


def _fine_tuned(job: JobRef, where: Where, properties: dict[str, Any]) -> list[ArtifactRef]:
    """The model a fine-tuning job registered: its newest version."""
    output = (properties.get("outputs") or {}).get("registered_model") or {}
    name = str(output.get("assetName") or job.scope.get("model") or "")
    with translated(f"list the versions of model {name}"):
        found = [
            str(version["name"])
            for version in arm(where).model_versions.list(
                where.resource_group, where.workspace, name
            )
        ]
    if not found:
        raise ProviderError(PROVIDER, f"job {job.id} registered no model {name}")
    newest = max(found, key=lambda v: (v.isdigit(), int(v) if v.isdigit() else 0, v))
    return [ArtifactRef(kind="hosted_model", uri=_model_uri(where, name, newest))]


def artifacts(job: JobRef) -> list[ArtifactRef]:
    """The job's model output registered as a model asset (the adapter, with the model
    merged in, or the fine-tuned model), and its checkpoints; for a fine-tuning job, the
    model it registered."""
    found = _got(job)
    properties = _properties(found)
    if _events.job_state(properties.get("status")) != JobState.SUCCEEDED:
        raise ProviderError(PROVIDER, f"job {job.id} has not completed; it made no model")
    where = Where.from_scope(job.scope)
    if properties.get("jobType") == "FineTuning":
        return _fine_tuned(job, where, properties)
    output = ((properties.get("outputs") or {}).get("model") or {}).get("uri") or job.scope.get(
        "model"
    )
    if not output:
        raise ProviderError(PROVIDER, f"job {job.id} recorded no model output")
    request = model_request(job.id, str(output), job.scope.get("adapter", "lora"))
    _, name, _, version = str(request["path"]).split("/")
    ensure_version(where, request)
    kind = "merged_model" if job.scope.get("adapter") == "full" else "adapter"
    refs = [ArtifactRef(kind=kind, uri=_model_uri(where, name, version))]
    if job.scope.get("checkpoints"):
        refs.append(ArtifactRef(kind="checkpoint", uri=job.scope["checkpoints"]))
    predictions = ((properties.get("outputs") or {}).get("predictions") or {}).get("uri")
    return refs + prediction_artifacts(_trainer_config(properties), predictions)


def _trainer_config(properties: dict[str, Any]) -> dict[str, Any]:
    """The trainer's config the job was created with; {} when it has none tunefleet wrote."""
    try:
        config = json.loads((properties.get("environmentVariables") or {})[CONFIG_ENV])
    except (KeyError, TypeError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}

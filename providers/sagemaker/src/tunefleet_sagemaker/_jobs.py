"""Training jobs: found by name, created as planned, watched, stopped, and what they made.

The job's name is the run name plus the run key, so ``find`` is one DescribeTrainingJob
and a taken name on create (``ResourceInUse``) is this run's own job, made by an earlier
attempt whose answer was lost.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from tunefleet.errors import (
    AlreadyExistsError,
    ProviderBusyError,
    ProviderError,
    ProviderNotFoundError,
)
from tunefleet.events import JobState
from tunefleet.provider import ArtifactRef, DatasetRef, JobRef, JobStatus, Plan
from tunefleet_sagemaker._artifacts import prediction_artifacts
from tunefleet_sagemaker._client import PROVIDER, client, translated
from tunefleet_sagemaker._events import job_state
from tunefleet_sagemaker._planning import HYPERPARAMETER, fill, job_name
from tunefleet_sagemaker._quotas import explain_limit
from tunefleet_sagemaker.options import SageMakerOptions

__all__ = ["artifacts", "cancel", "describe", "find", "job_ref", "status", "submit"]

CONSOLE_URL = "https://{region}.console.aws.amazon.com/sagemaker/home?region={region}#/jobs/{name}"


def describe(region: str, name: str) -> dict[str, Any] | None:
    """DescribeTrainingJob of ``name``; None when there is no such job."""
    sagemaker = client("sagemaker", region)
    try:
        with translated(f"describe training job {name}", lookup=True):
            found: dict[str, Any] = sagemaker.describe_training_job(TrainingJobName=name)
    except ProviderNotFoundError:
        return None
    return found


def _described(job: JobRef) -> dict[str, Any]:
    found = describe(str(job.region), job.id)
    if found is None:
        raise ProviderNotFoundError(
            PROVIDER, f"training job {job.id} does not exist", code="ResourceNotFound"
        )
    return found


def job_ref(plan: Plan, region: str, name: str, run_key: str) -> JobRef:
    """The ref of job ``name``, with what later calls need from the plan in its scope."""
    planned = plan.request("CreateTrainingJob").body
    options = SageMakerOptions.model_validate(plan.options)
    config = json.loads(planned["HyperParameters"][HYPERPARAMETER])
    scope = {
        "checkpoints": job_name(planned["CheckpointConfig"]["S3Uri"], run_key),
        "adapter": config.get("adapter", "lora"),
        "instance_type": planned["ResourceConfig"]["InstanceType"],
        "instance_count": str(planned["ResourceConfig"]["InstanceCount"]),
    }
    if options.price_per_hour is not None:
        scope["price_per_hour"] = str(options.price_per_hour)
    return JobRef(
        provider=PROVIDER,
        target=plan.target,
        id=name,
        region=region,
        run_key=run_key,
        console_url=CONSOLE_URL.format(region=region, name=name),
        scope=scope,
    )


def find(plan: Plan, region: str, run_key: str) -> JobRef | None:
    """The job of ``run_key``, or None."""
    name = job_name(plan.request("CreateTrainingJob").body["TrainingJobName"], run_key)
    return job_ref(plan, region, name, run_key) if describe(region, name) is not None else None


def submit(plan: Plan, region: str, datasets: Mapping[str, DatasetRef], run_key: str) -> JobRef:
    """CreateTrainingJob exactly as planned, with the staged URIs and the run key."""
    planned = plan.request("CreateTrainingJob").body
    try:
        body = fill(planned, {role: ref.uri for role, ref in datasets.items()}, run_key)
    except ValueError as exc:
        raise ProviderError(PROVIDER, f"cannot create the planned job: {exc}") from None
    sagemaker = client("sagemaker", region)
    try:
        with translated("create training job"):
            sagemaker.create_training_job(**body)
    except AlreadyExistsError:
        pass  # the name is the run key's: a job of that name is this run's job
    except ProviderBusyError as exc:
        if exc.code != "ResourceLimitExceeded":
            raise
        # The same code for a quota of 0 and for instances other jobs hold: Service Quotas
        # tells them apart (see _quotas).
        resources = body["ResourceConfig"]
        raise explain_limit(
            exc,
            region,
            resources["InstanceType"],
            resources["InstanceCount"],
            bool(body.get("EnableManagedSpotTraining")),
        ) from None
    return job_ref(plan, region, body["TrainingJobName"], run_key)


def status(job: JobRef) -> JobStatus:
    """The job's state, SageMaker's reason or secondary status, and billable seconds."""
    found = _described(job)
    return JobStatus(
        state=job_state(found),
        message=found.get("FailureReason") or found.get("SecondaryStatus"),
        checked_at=datetime.now(UTC),
        billable_seconds=found.get("BillableTimeInSeconds"),
    )


def cancel(job: JobRef) -> None:
    """StopTrainingJob, unless the job has ended or is stopping already."""
    found = describe(str(job.region), job.id)
    if found is None or job_state(found).terminal or job_state(found) == JobState.STOPPING:
        return
    with translated("stop training job"):
        client("sagemaker", str(job.region)).stop_training_job(TrainingJobName=job.id)


def _trainer_config(described: dict[str, Any]) -> dict[str, Any]:
    """The trainer's config the job was created with (its hyperparameter); {} when it has
    none that tunefleet wrote."""
    try:
        config = json.loads((described.get("HyperParameters") or {})[HYPERPARAMETER])
    except (KeyError, TypeError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def artifacts(job: JobRef) -> list[ArtifactRef]:
    """The model.tar.gz (the adapter, or the model of a full fine-tune), the checkpoints,
    and for a job created with an evaluation, the golden set's answers in output.tar.gz
    (decided by the job's own config, not the plan of the run that found it)."""
    described = _described(job)
    model = (described.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    if not model:
        raise ProviderError(PROVIDER, f"training job {job.id} recorded no model artifact")
    kind = "merged_model" if job.scope.get("adapter") == "full" else "adapter"
    refs = [ArtifactRef(kind=kind, uri=model)]
    if job.scope.get("checkpoints"):
        refs.append(ArtifactRef(kind="checkpoint", uri=job.scope["checkpoints"]))
    return refs + prediction_artifacts(described, _trainer_config(described))

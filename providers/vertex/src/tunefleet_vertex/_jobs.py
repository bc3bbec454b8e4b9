"""Custom jobs and tuning jobs: found by their run-key label, created as planned, watched,
cancelled, and what they made.

Vertex chooses a job's ID, so a create whose answer was lost cannot be recognised by its
name: every job carries the run key in the ``tunefleet-run-key`` label, ``find`` lists the
jobs with that label (``customJobs.list`` takes a label filter: "labels.key=value", the
discovery document's description of ``filter``), and ``submit`` looks before it creates.
Tuning jobs document no label filter, so they are listed and matched here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from tunefleet.errors import ProviderError, ProviderNotFoundError, TransientProviderError
from tunefleet.events import EventPage, JobState
from tunefleet.kit.trainer import prediction_artifacts
from tunefleet.provider import ArtifactRef, DatasetRef, JobRef, JobStatus, Plan
from tunefleet_vertex import _events, pricing
from tunefleet_vertex._client import PROVIDER, Where, client, timeout, translated
from tunefleet_vertex._planning import CONFIG_ENV, RUN_KEY_LABEL, fill
from tunefleet_vertex.options import VertexOptions

__all__ = ["artifacts", "cancel", "events", "find", "status", "submit"]

CONSOLE_URL = (
    "https://console.cloud.google.com/vertex-ai/locations/{region}/training/{id}?project={project}"
)
TUNING_CONSOLE_URL = (
    "https://console.cloud.google.com/vertex-ai/generative/language/locations/{region}/"
    "tuning/tuningJob/{id}?project={project}"
)
_CUSTOM, _TUNING = "customJobs.create", "tuningJobs.create"


def _kind(plan: Plan) -> str:
    operations = {request.operation for request in plan.requests_for("submit")}
    if _TUNING in operations:
        return "tuning"
    if _CUSTOM in operations:
        return "custom"
    raise ProviderError(PROVIDER, "the plan creates no job", code="plan_outdated")


def _planned(plan: Plan, kind: str) -> dict[str, Any]:
    return dict(plan.request(_TUNING if kind == "tuning" else _CUSTOM).body)


def _where(plan: Plan) -> Where:
    return Where.of(VertexOptions.model_validate(plan.options), plan.region or "")


def _service(kind: str) -> str:
    return "tuning" if kind == "tuning" else "job"


def _get(where: Where, kind: str, name: str) -> Any:
    service = client(where, _service(kind))
    with translated(f"read {name}"):
        if kind == "tuning":
            return service.get_tuning_job(name=name, timeout=timeout())
        return service.get_custom_job(name=name, timeout=timeout())


def _listed(where: Where, kind: str, run_key: str) -> Any | None:
    service = client(where, _service(kind))
    with translated(f"list the {kind} jobs of run key {run_key}"):
        if kind == "tuning":
            found = service.list_tuning_jobs(parent=where.parent, timeout=timeout())
        else:
            found = service.list_custom_jobs(
                request={"parent": where.parent, "filter": f'labels.{RUN_KEY_LABEL}="{run_key}"'},
                timeout=timeout(),
            )
        for job in found:
            if dict(job.labels).get(RUN_KEY_LABEL) == run_key:
                return job
    return None


def _ref(plan: Plan, kind: str, name: str, run_key: str) -> JobRef:
    """The ref of job ``name``, with what later calls need from the plan in its scope."""
    options = VertexOptions.model_validate(plan.options)
    where = _where(plan)
    planned = _planned(plan, kind)
    scope = {**where.scope(), "kind": kind}
    job_id = name.rsplit("/", 1)[-1]
    console = (TUNING_CONSOLE_URL if kind == "tuning" else CONSOLE_URL).format(
        region=where.region, id=job_id, project=where.project
    )
    if kind == "tuning":
        job = planned["tuningJob"]
        scope.update(base_model=job["baseModel"], epochs=str(plan.epochs or 1))
        if options.tuning_price_per_million_tokens is not None:
            scope["price_per_million"] = str(options.tuning_price_per_million_tokens)
    else:
        spec = planned["customJob"]["jobSpec"]
        pools = spec["workerPoolSpecs"]
        machine = pools[0]["machineSpec"]
        config = json.loads(pools[0]["containerSpec"]["env"][0]["value"])
        scope.update(
            instance_type=pricing.price_key(
                machine["machineType"],
                machine.get("acceleratorType"),
                machine.get("acceleratorCount"),
            ),
            instance_count=str(sum(int(pool["replicaCount"]) for pool in pools)),
            adapter=str(config.get("adapter", "lora")),
            output=spec["baseOutputDirectory"]["outputUriPrefix"].replace("${run_key}", run_key),
        )
        if options.price_per_hour is not None:
            scope["price_per_hour"] = str(options.price_per_hour)
    return JobRef(
        provider=PROVIDER,
        target=plan.target,
        id=name,
        region=plan.region,
        run_key=run_key,
        console_url=console,
        scope=scope,
    )


def find(plan: Plan, run_key: str) -> JobRef | None:
    """The job of ``run_key``, or None."""
    kind = _kind(plan)
    found = _listed(_where(plan), kind, run_key)
    return None if found is None else _ref(plan, kind, str(found.name), run_key)


def submit(plan: Plan, datasets: Mapping[str, DatasetRef], run_key: str) -> JobRef:
    """The job exactly as planned, with the staged datasets and the run key; the job of
    ``run_key`` when one exists already (an attempt whose answer was lost made it)."""
    from google.cloud import aiplatform_v1

    kind = _kind(plan)
    where = _where(plan)
    try:
        request = fill(_planned(plan, kind), {r: d.uri for r, d in datasets.items()}, run_key)
    except ValueError as exc:
        raise ProviderError(PROVIDER, f"cannot create the planned job: {exc}") from None
    existing = _listed(where, kind, run_key)
    if existing is not None:
        return _ref(plan, kind, str(existing.name), run_key)
    service = client(where, _service(kind))
    try:
        if kind == "tuning":
            body = aiplatform_v1.TuningJob.from_json(json.dumps(request["tuningJob"]))
            with translated("create the tuning job", creating=True):
                created = service.create_tuning_job(
                    parent=request["parent"], tuning_job=body, timeout=timeout()
                )
        else:
            body = aiplatform_v1.CustomJob.from_json(json.dumps(request["customJob"]))
            with translated("create the custom job", creating=True):
                created = service.create_custom_job(
                    parent=request["parent"], custom_job=body, timeout=timeout()
                )
    except TransientProviderError:
        # A timeout or a 5xx may hide a create that succeeded (there is no request ID to
        # make it idempotent): look for the job a while before the create is tried again.
        found = _settled(where, kind, run_key)
        if found is None:
            raise
        return _ref(plan, kind, str(found.name), run_key)
    return _ref(plan, kind, str(created.name), run_key)


SETTLE_SECONDS = (2.0, 5.0, 10.0, 20.0, 30.0)
"""Waits between looks for a job whose create answered with an error that may hide a
success (about a minute in all: a list shows a new job within seconds)."""


def _settled(where: Where, kind: str, run_key: str) -> Any | None:
    for wait in (0.0, *SETTLE_SECONDS):
        time.sleep(wait)
        found = _listed(where, kind, run_key)
        if found is not None:
            return found
    return None


def _facts(kind: str, job: Any) -> dict[str, Any]:
    """What the event stream needs of a job (plain values)."""
    error = job.error.message if job.error and job.error.code else None
    facts: dict[str, Any] = {
        "name": job.name,
        "state": job.state.name,
        "error": error,
        "create_time": job.create_time,
        "start_time": job.start_time,
        "end_time": job.end_time,
    }
    if kind == "tuning":
        facts["experiment"] = str(job.experiment or "")
        facts["epochs"] = int(job.supervised_tuning_spec.hyper_parameters.epoch_count or 0)
        stats = job.tuning_data_stats.supervised_tuning_data_stats
        facts["stats"] = {
            "tuning_dataset_example_count": int(stats.tuning_dataset_example_count or 0),
            "total_billable_token_count": int(stats.total_billable_token_count or 0),
            "tuning_step_count": int(stats.tuning_step_count or 0),
        }
        if not any(facts["stats"].values()):
            facts["stats"] = {}
    return facts


def _current(ref: JobRef) -> tuple[str, Any]:
    kind = ref.scope.get("kind", "custom")
    return kind, _get(Where.from_scope(ref.scope), kind, ref.id)


def status(ref: JobRef) -> JobStatus:
    """The job's state, in Vertex's word for it; for a failed job, Vertex's error."""
    kind, job = _current(ref)
    facts = _facts(kind, job)
    state = _events.job_state(facts["state"])
    message = facts["error"] if state == JobState.FAILED and facts["error"] else facts["state"]
    seconds = None
    if state.terminal and facts["start_time"] and facts["end_time"]:
        seconds = max(int((facts["end_time"] - facts["start_time"]).total_seconds()), 0)
    return JobStatus(
        state=state, message=message, checked_at=datetime.now(UTC), billable_seconds=seconds
    )


def events(ref: JobRef, cursor: str | None) -> EventPage:
    """The job's events after ``cursor`` (:mod:`._events`)."""
    kind, job = _current(ref)
    facts = _facts(kind, job)
    if kind == "tuning":
        return _events.tuning_job_events(ref, facts, cursor)
    return _events.custom_job_events(ref, facts, cursor)


def cancel(ref: JobRef) -> None:
    """Cancel the job, unless it has ended or is being cancelled already."""
    try:
        kind, job = _current(ref)
    except ProviderNotFoundError:
        return
    state = _events.job_state(job.state.name)
    if state.terminal or state == JobState.STOPPING:
        return
    service = client(Where.from_scope(ref.scope), _service(kind))
    with translated(f"cancel {ref.id}"):
        if kind == "tuning":
            service.cancel_tuning_job(name=ref.id, timeout=timeout())
        else:
            service.cancel_custom_job(name=ref.id, timeout=timeout())


def _trainer_config(job: Any) -> dict[str, Any]:
    """The trainer's config the job was created with; {} when it has none tunefleet wrote."""
    for pool in job.job_spec.worker_pool_specs[:1]:
        for variable in pool.container_spec.env:
            if variable.name == CONFIG_ENV:
                try:
                    config = json.loads(variable.value)
                except ValueError:
                    return {}
                return config if isinstance(config, dict) else {}
    return {}


def _predictions_dir(job: Any) -> str | None:
    """Where the job's trainer wrote the golden set's answers (a gs:// URI)."""
    for pool in job.job_spec.worker_pool_specs[:1]:
        args = [str(arg) for arg in pool.container_spec.args]
        if "--predictions-dir" in args:
            path = args[args.index("--predictions-dir") + 1]
            if path.startswith("/gcs/"):
                return "gs://" + path.removeprefix("/gcs/")
    return None


def artifacts(ref: JobRef) -> list[ArtifactRef]:
    """What a succeeded job made: the trainer's model directory (the adapter, with the
    model merged in, or the fine-tuned model), its checkpoints, and with an evaluation
    the golden set's answers; for a tuning job, the tuned model and its endpoint."""
    kind, job = _current(ref)
    if _events.job_state(job.state.name) != JobState.SUCCEEDED:
        raise ProviderError(PROVIDER, f"job {ref.id} has not succeeded; it made no model")
    if kind == "tuning":
        tuned = job.tuned_model
        if not tuned.model:
            raise ProviderError(PROVIDER, f"tuning job {ref.id} names no tuned model")
        return [ArtifactRef(kind="hosted_model", uri=f"{tuned.model}#endpoint={tuned.endpoint}")]
    base = str(job.job_spec.base_output_directory.output_uri_prefix).rstrip("/")
    kind_of_model = "merged_model" if ref.scope.get("adapter") == "full" else "adapter"
    found = [
        ArtifactRef(kind=kind_of_model, uri=f"{base}/model/"),
        ArtifactRef(kind="checkpoint", uri=f"{base}/checkpoints/"),
    ]
    return found + prediction_artifacts(_trainer_config(job), _predictions_dir(job))

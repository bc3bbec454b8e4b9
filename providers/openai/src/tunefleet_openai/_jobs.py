"""Fine-tuning jobs: find, submit, watch, control, and what they produced.

The API takes no idempotency key, so a job is found by the run key it carries, and every
submit looks for it before creating one. On the OpenAI API the run key is in the job's
metadata (:data:`tunefleet.kit.labels.RUN_KEY`) and the list is filtered on it. Azure
OpenAI's jobs have no metadata and its list no filter (``FineTuning_List`` takes ``after``
and ``limit`` alone, 2025-04-01-preview), so there the job's ``suffix`` carries the run
key's tag (:func:`tunefleet_openai._planning.planned_suffix`) and ``find`` reads the
resource's jobs, newest first, a hundred a page: a resource holds at most 100 fine-tuning
jobs (Azure OpenAI's quotas page), so that is one request.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import tenacity

from tunefleet.errors import ProviderBusyError, ProviderError
from tunefleet.events import JobState
from tunefleet.kit.labels import RUN_KEY
from tunefleet.kit.limits import check_concurrency
from tunefleet.kit.retry import wait_as_asked
from tunefleet.provider import ArtifactRef, DatasetRef, JobRef, JobStatus, Plan
from tunefleet_openai._azure import Management
from tunefleet_openai._client import PROVIDER, ThrottledError, redact, translated
from tunefleet_openai._events import STATES, state_of
from tunefleet_openai._planning import CREATE_JOB, fill, planned_suffix
from tunefleet_openai._staging import FILE_URI_PREFIX, file_id
from tunefleet_openai.options import OpenAIOptions

if TYPE_CHECKING:
    import openai

__all__ = [
    "artifacts",
    "cancel",
    "find",
    "job_ref",
    "pause",
    "resume",
    "status",
    "submit",
]

CONSOLE_URL = "https://platform.openai.com/finetune/{id}"
ACTIVE_STATUSES = frozenset(
    status for status, state in STATES.items() if state in {JobState.QUEUED, JobState.RUNNING}
)
"""The statuses of a job that holds (or waits for) one of the service's training slots."""
ACTIVE_SCAN = 100
"""Jobs looked at when counting unfinished ones (the newest; unfinished jobs are recent)."""
AZURE_PAGE = 100
"""Jobs asked for a page when looking for a run's job on Azure (a resource holds 100 at
most: https://learn.microsoft.com/azure/ai-services/openai/quotas-limits)."""


def job_ref(plan: Plan, options: OpenAIOptions, job_id: str, run_key: str) -> JobRef:
    """The reference the engine keeps for a job: its id, console and the scope later
    calls need."""
    console = (
        Management(options).console_url
        if options.flavor == "azure"
        else CONSOLE_URL.format(id=job_id)
    )
    return JobRef(
        provider=PROVIDER,
        target=plan.target,
        id=job_id,
        region=plan.region,
        run_key=run_key,
        console_url=console,
        scope=options.scope(),
    )


def find(client: openai.OpenAI, options: OpenAIOptions, plan: Plan, run_key: str) -> JobRef | None:
    """The job that carries ``run_key`` (in its metadata, or on Azure in its suffix), or
    None."""
    if options.flavor == "azure":
        suffix = planned_suffix(plan, run_key)
        with translated("list fine-tuning jobs"):
            for job in client.fine_tuning.jobs.list(limit=AZURE_PAGE):
                if _azure_suffix(job) == suffix:
                    return job_ref(plan, options, job.id, run_key)
        return None
    with translated("list fine-tuning jobs"):
        # The service filters on metadata; the check below keeps a service that ignores
        # the filter (an older API version) from returning someone else's job.
        for job in client.fine_tuning.jobs.list(metadata={RUN_KEY: run_key}):
            if (job.metadata or {}).get(RUN_KEY) == run_key:
                return job_ref(plan, options, job.id, run_key)
    return None


def _azure_suffix(job: Any) -> str | None:
    """The suffix an Azure job was created with: its ``suffix`` (FineTuningJob of Azure's
    description; the SDK keeps fields its own model lacks)."""
    suffix = getattr(job, "suffix", None)
    return suffix if isinstance(suffix, str) else None


def submit(
    client: openai.OpenAI,
    options: OpenAIOptions,
    plan: Plan,
    datasets: Mapping[str, DatasetRef],
    run_key: str,
) -> JobRef:
    """Create the planned job, or return the one this run key already created.

    A create whose answer was lost (a timeout, a dropped connection) may still have made
    the job. So the request is sent once, never retried by the SDK, and every call looks
    for the run key's job before creating one; the engine's retry of a failed submit
    therefore finds a job that was made. Only a throttled create is repeated here: the
    service refused it untouched.
    """
    existing = find(client, options, plan, run_key)
    if existing is not None:
        return existing
    files = {role: file_id(ref) for role, ref in datasets.items()}
    try:
        body = fill(plan.request(CREATE_JOB).body, files, run_key)
    except (KeyError, ValueError) as exc:
        raise ProviderError(
            PROVIDER, f"cannot create the planned job: {exc}", code="unfillable_plan"
        ) from None
    if options.max_concurrent_jobs is not None:
        where = (
            f"on Azure OpenAI resource {options.azure_resource}"
            if options.flavor == "azure"
            else "in this project"
        )
        check_concurrency(PROVIDER, _active_jobs(client), options.max_concurrent_jobs, where)
    once = client.with_options(max_retries=0)

    def create() -> Any:
        with translated("create fine-tuning job"):
            return once.fine_tuning.jobs.create(**body)

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(ThrottledError),
        stop=tenacity.stop_after_attempt(options.max_retries + 1),
        wait=wait_as_asked(backoff=0.5, cap=60.0),
        reraise=True,
    )
    try:
        job = retrying(create)
    except ThrottledError as exc:
        # Still refused after every retry: no longer a passing rate limit but, most likely,
        # the service's limit on running jobs, which has no code of its own. The create was
        # refused untouched, so waiting for a slot (the engine queues the target) is safe.
        raise ProviderBusyError(
            PROVIDER,
            f"{exc.detail}; still refused after {options.max_retries + 1} attempts, so "
            "queued until a job of this project ends (a limit on running jobs)",
            code=exc.code,
            status=exc.status,
        ) from None
    return job_ref(plan, options, job.id, run_key)


def _active_jobs(client: openai.OpenAI) -> int:
    with translated("list fine-tuning jobs"):
        page = client.fine_tuning.jobs.list(limit=ACTIVE_SCAN)
    return sum(1 for job in page.data if job.status in ACTIVE_STATUSES)


def _retrieve(client: openai.OpenAI, job: JobRef) -> Any:
    with translated("retrieve fine-tuning job"):
        return client.fine_tuning.jobs.retrieve(job.id)


def status(client: openai.OpenAI, job: JobRef) -> JobStatus:
    """The job's state, with the service's words for a failure or a state tunefleet names
    differently (``validating_files`` is queued)."""
    found = _retrieve(client, job)
    state = state_of(found.status)
    message = None
    if found.error is not None and found.error.message:
        message = redact(found.error.message)
    elif state.value != found.status:
        message = found.status
    return JobStatus(
        state=state,
        message=message,
        checked_at=datetime.now(UTC),
        trained_tokens=found.trained_tokens,
    )


def cancel(client: openai.OpenAI, job: JobRef) -> None:
    """Cancel the job; a finished one is left as it is."""
    if state_of(_retrieve(client, job).status).terminal:
        return
    try:
        with translated("cancel fine-tuning job"):
            client.fine_tuning.jobs.cancel(job.id)
    except ProviderError:
        # It may have finished between the two calls; cancelling that is a no-op.
        if not state_of(_retrieve(client, job).status).terminal:
            raise


def pause(client: openai.OpenAI, job: JobRef) -> None:
    """The API's own pause: the job keeps its progress."""
    with translated("pause fine-tuning job"):
        client.fine_tuning.jobs.pause(job.id)


def resume(client: openai.OpenAI, job: JobRef) -> None:
    """The API's own resume of a paused job."""
    with translated("resume fine-tuning job"):
        client.fine_tuning.jobs.resume(job.id)


def artifacts(client: openai.OpenAI, job: JobRef) -> list[ArtifactRef]:
    """The fine-tuned model id first, then its checkpoints (newest first) and result files."""
    found = _retrieve(client, job)
    if not found.fine_tuned_model:
        raise ProviderError(
            PROVIDER,
            f"job {job.id} has no fine-tuned model (status {found.status})",
            code="no_fine_tuned_model",
        )
    refs = [ArtifactRef(kind="hosted_model", uri=found.fine_tuned_model)]
    with translated("list checkpoints"):
        refs += [
            ArtifactRef(kind="checkpoint", uri=checkpoint.fine_tuned_model_checkpoint)
            for checkpoint in client.fine_tuning.jobs.checkpoints.list(job.id)
        ]
    refs += [
        ArtifactRef(kind="metrics", uri=FILE_URI_PREFIX + result)
        for result in found.result_files or []
    ]
    return refs

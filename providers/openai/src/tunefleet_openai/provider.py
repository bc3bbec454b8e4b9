"""The OpenAI provider: fine-tuning jobs on the OpenAI API, through the official SDK.

What each contract step does here (and which module does it)::

    plan      the createFile/createUpload and createFineTuningJob requests (and, on Azure,
              the deployment), each checked against its documented limits (_limits),
              refusals (absolute learning rate, knobs the API hides, regions, networks,
              keys) and the token-priced estimate; no network (_planning)
    stage     a fine-tune file named after the content hash, reused when already there
              (_staging)
    find      the job that carries the run key (the API has no idempotency key): in its
              metadata on the OpenAI API, in its suffix on Azure, whose jobs have none
    submit    createFineTuningJob, exactly as planned, files and run key filled in
    status    the job's status; cancel, and the API's own pause and resume
    artifacts the fine-tuned model id, its checkpoints and result files (_jobs)
    events    its events, checkpoints, status changes and actual cost (_events)
    deploy    on the API nothing to create: a fine-tuned model is served by the API itself,
              so the endpoint is the model id (checked to exist); invoke is a chat
              completion (_serving)
    answer    a model by id answers chat requests, one chat completion each, retried
              when throttled: how a fine-tuned model answers the golden set, and how a
              judge on the API is asked (_answering)

Besides the required contract it implements Pausable, Serving, Estimating, ContextLimits
and Answering (:mod:`tunefleet.provider`); it splits no traffic, since the API serves each
model id on its own. With ``flavor: azure`` the same steps run against an Azure OpenAI
resource (:mod:`tunefleet_openai._azure`): stage first checks the resource is in the
target's region, files are waited on until imported, and deploy creates a deployment
through Resource Manager. There a fine-tuned model answers only once deployed, so an Azure
target cannot be evaluated (its plan says why); ``answer`` asks a deployment by name. SDK
clients and the translation of their errors are in :mod:`tunefleet_openai._client`; the
SDKs are imported by the first method that talks to the service.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from tunefleet.events import EventPage
from tunefleet.provider import (
    ArtifactRef,
    Capabilities,
    ChatReply,
    ChatRequest,
    DatasetRef,
    EndpointRef,
    JobRef,
    JobStatus,
    Plan,
    PlanRequest,
    TrainingEstimate,
    UploadProgress,
)
from tunefleet_openai import _answering, _events, _jobs, _planning, _serving, _staging, pricing
from tunefleet_openai._azure import AZURE_FINE_TUNING_REGIONS
from tunefleet_openai._client import PROVIDER, Clients
from tunefleet_openai.options import OpenAIOptions

__all__ = ["OpenAIProvider"]


def _options(plan: Plan) -> OpenAIOptions:
    return OpenAIOptions.model_validate(plan.options)


class OpenAIProvider:
    """Fine-tunes OpenAI models with the fine-tuning API; serves them from the API."""

    name: ClassVar[str] = PROVIDER
    options_model: ClassVar[type[BaseModel]] = OpenAIOptions

    def __init__(self) -> None:
        self._clients = Clients()
        self._check_region = _staging.RegionCheck()

    # ------------------------------------------------------------------ planning

    def capabilities(self, options: BaseModel | None = None) -> Capabilities:
        # The service chooses the adapter and the machines; it cannot join a private
        # network or use a customer's key; files cannot be tagged. The OpenAI API does not
        # say where it trains; an Azure resource trains in its own region.
        azure = isinstance(options, OpenAIOptions) and options.flavor == "azure"
        return Capabilities(
            methods=frozenset({"supervised", "dpo"}),
            regions=AZURE_FINE_TUNING_REGIONS if azure else (),
        )

    def plan(self, request: PlanRequest) -> Plan:
        return _planning.plan(request)

    def estimate_training(
        self, base_model: str, examples: int, billable_tokens: int, epochs: int | None
    ) -> TrainingEstimate:
        """Epochs (OpenAI's ``auto`` rule when ``epochs`` is None), tokens trained and
        their price from the dated price list (no amount for an unknown model)."""
        return _planning.estimate(base_model, examples, billable_tokens, epochs)

    def training_context(self, base_model: str) -> tuple[int, str] | None:
        """Tokens per training example of ``base_model`` (a snapshot or ``ft:`` id matches
        its family), from OpenAI's fine-tuning guide; None for a model it does not list."""
        return pricing.training_context(base_model)

    # ------------------------------------------------------------------ staging and jobs

    def stage(
        self,
        plan: Plan,
        role: str,
        path: Path,
        sha256: str,
        progress: UploadProgress | None = None,
    ) -> DatasetRef:
        options = _options(plan)
        self._check_region(plan, options)
        return _staging.stage(self._clients.get(options), options, role, path, sha256, progress)

    def find(self, plan: Plan, run_key: str) -> JobRef | None:
        options = _options(plan)
        return _jobs.find(self._clients.get(options), options, plan, run_key)

    def submit(self, plan: Plan, datasets: Mapping[str, DatasetRef], run_key: str) -> JobRef:
        """Create the job, or return the one this run key already created (the API takes
        no idempotency key, so the create is never blindly repeated)."""
        options = _options(plan)
        return _jobs.submit(self._clients.get(options), options, plan, datasets, run_key)

    def status(self, job: JobRef) -> JobStatus:
        return _jobs.status(self._clients.scoped(job.scope), job)

    def events(self, job: JobRef, cursor: str | None) -> EventPage:
        return _events.read(self._clients.scoped(job.scope), job, cursor)

    def cancel(self, job: JobRef) -> None:
        _jobs.cancel(self._clients.scoped(job.scope), job)

    def pause(self, job: JobRef) -> None:
        """Pause a running job; it keeps its progress and ``resume`` continues it."""
        _jobs.pause(self._clients.scoped(job.scope), job)

    def resume(self, job: JobRef) -> None:
        """Resume a paused job."""
        _jobs.resume(self._clients.scoped(job.scope), job)

    def artifacts(self, job: JobRef) -> list[ArtifactRef]:
        return _jobs.artifacts(self._clients.scoped(job.scope), job)

    # ------------------------------------------------------------------ serving

    def deploy(self, plan: Plan, artifact: ArtifactRef, name: str) -> EndpointRef:
        options = _options(plan)
        return _serving.deploy(self._clients, options, plan, artifact, name)

    def delete_endpoint(self, endpoint: EndpointRef) -> None:
        _serving.delete_endpoint(endpoint)

    def invoke(self, endpoint: EndpointRef, request: ChatRequest) -> ChatReply:
        return _serving.invoke(self._clients.scoped(endpoint.scope), endpoint, request)

    # ------------------------------------------------------------------ answering

    def answer(
        self,
        options: Mapping[str, Any],
        model: str,
        requests: Sequence[ChatRequest],
        progress: Callable[[int, int], None] | None = None,
    ) -> list[ChatReply]:
        """``model``'s reply to each of ``requests``, in order: a model id on the API (a
        fine-tuned model, a base model, a judge), a deployment's name on Azure.
        ``options`` are a target's or a judge's, validated here as the plan validates a
        target's; ``progress(answered, total)`` follows each reply."""
        validated = _answering.options_for_answering(options)
        return _answering.answer(self._clients.get(validated), validated, model, requests, progress)

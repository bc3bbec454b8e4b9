"""The OpenAI provider: fine-tuning jobs on the OpenAI API, through the official SDK.

What each contract step does here::

    plan      the createFile/createUpload and createFineTuningJob requests, refusals
              (absolute learning rate, knobs the API hides, regions, networks, keys) and
              the token-priced estimate; no network
    stage     a fine-tune file named after the content hash, reused when already there
    find      the job whose metadata carries the run key (the API has no idempotency key)
    submit    createFineTuningJob, exactly as planned, files and run key filled in
    status    the job's status; events: its events, checkpoints and status changes
    cancel    cancel; pause/resume: the API's own pause and resume
    artifacts the fine-tuned model id, its checkpoints and result files
    deploy    nothing to create: a fine-tuned model is served by the API itself, so the
              endpoint is the model id (checked to exist), and invoke is a chat completion

With ``flavor: azure`` the same steps run against an Azure OpenAI resource
(:mod:`tunefleet_openai._azure`): stage first checks the resource is in the target's region,
files are waited on until imported, and deploy creates a deployment through Resource Manager.
The SDKs are imported by the first method that talks to the service.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import tenacity
from pydantic import BaseModel

from tunefleet.errors import CapabilityError, ProviderBusyError, ProviderError
from tunefleet.events import CostEvent, Event, EventPage
from tunefleet.provider import (
    ArtifactRef,
    Capabilities,
    ChatReply,
    ChatRequest,
    CostEstimate,
    DatasetRef,
    EndpointRef,
    JobRef,
    JobStatus,
    NativeRequest,
    Plan,
    PlanRequest,
    TrainingEstimate,
    Unmet,
    UploadProgress,
)
from tunefleet.run.calls import wait_as_asked
from tunefleet_openai import pricing
from tunefleet_openai._azure import AZURE_FINE_TUNING_REGIONS, Management, make_azure_client
from tunefleet_openai._client import PROVIDER, ThrottledError, make_client, redact, translated
from tunefleet_openai._events import (
    Cursor,
    checkpoint_event,
    job_event,
    state_of,
    status_event,
)
from tunefleet_openai._job_request import (
    METADATA_RUN_KEY,
    fill,
    job_request,
    refusals,
    too_many_tags,
)
from tunefleet_openai._upload import filename_for, find_uploaded, upload, wait_until_processed
from tunefleet_openai.options import OpenAIOptions

if TYPE_CHECKING:
    import openai

__all__ = ["OpenAIProvider"]

FILE_URI_PREFIX = "openai://files/"
CONSOLE_URL = "https://platform.openai.com/finetune/{id}"
EVENTS_PAGE = 100
ACTIVE_STATUSES = frozenset({"validating_files", "queued", "running"})
ACTIVE_SCAN = 100
"""Jobs looked at when counting unfinished ones (the newest; unfinished jobs are recent)."""


def _scope(options: OpenAIOptions) -> dict[str, str]:
    """The options a job's later calls need: where the service is, whose project or
    resource it is, and the price its actual cost is worked out with (none is a secret)."""
    wanted = options.model_dump(
        exclude={"suffix", "max_concurrent_jobs", "multipart_threshold_bytes", "upload_part_bytes"},
        exclude_none=True,
        exclude_defaults=True,
    )
    return {key: str(value) for key, value in wanted.items()}


def _actual_cost(job: Any, scope: Mapping[str, str]) -> CostEvent | None:
    """What a succeeded job cost: the tokens it trained on at the model's price."""
    if job.status != "succeeded" or not job.trained_tokens:
        return None
    override = scope.get("training_price_per_million_tokens")
    price = pricing.training_price(job.model, float(override) if override else None)
    if price is None:
        return None
    return CostEvent(
        id="cost-final",
        time=datetime.fromtimestamp(job.finished_at, UTC) if job.finished_at else datetime.now(UTC),
        amount=job.trained_tokens * price / 1e6,
        basis=f"{job.trained_tokens:,} tokens trained x ${price:.2f}/M tokens",
    )


def _file_id(ref: DatasetRef) -> str:
    if not ref.uri.startswith(FILE_URI_PREFIX):
        raise ProviderError(PROVIDER, f"{ref.uri} is not a file staged by the openai provider")
    return ref.uri.removeprefix(FILE_URI_PREFIX)


class OpenAIProvider:
    """Fine-tunes OpenAI models with the fine-tuning API; serves them from the API."""

    name: ClassVar[str] = PROVIDER
    options_model: ClassVar[type[BaseModel]] = OpenAIOptions

    def __init__(self) -> None:
        self._clients: dict[str, openai.OpenAI] = {}
        self._checked_regions: set[str] = set()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ planning

    def capabilities(self, options: BaseModel | None = None) -> Capabilities:
        # The service chooses the adapter and the machines; it cannot join a private
        # network or use a customer's key; files cannot be tagged. The OpenAI API does not
        # say where it trains; an Azure resource trains in its own region.
        azure = isinstance(options, OpenAIOptions) and options.flavor == "azure"
        return Capabilities(
            methods=frozenset({"supervised", "dpo"}),
            regions=AZURE_FINE_TUNING_REGIONS if azure else (),
            endpoints=True,
            pause=True,
        )

    def estimate_training(
        self, base_model: str, examples: int, billable_tokens: int, epochs: int | None
    ) -> TrainingEstimate:
        return self._estimate(base_model, examples, billable_tokens, epochs, None)

    def _estimate(
        self,
        base_model: str,
        examples: int,
        billable_tokens: int,
        epochs: int | None,
        price_override: float | None,
    ) -> TrainingEstimate:
        chosen = epochs or pricing.default_epochs(examples)
        trained = billable_tokens * chosen
        price = pricing.training_price(base_model, price_override)
        if price is None:
            return TrainingEstimate(
                provider=self.name,
                epochs=chosen,
                epochs_source="spec" if epochs else "provider default",
                trained_tokens=trained,
                basis=f"no training price known for {base_model!r}; set "
                "options.training_price_per_million_tokens",
            )
        return TrainingEstimate(
            provider=self.name,
            epochs=chosen,
            epochs_source="spec" if epochs else "provider default",
            trained_tokens=trained,
            amount=trained * price / 1e6,
            basis=f"{billable_tokens:,} tokens x {chosen} epochs x ${price:.2f}/M tokens",
        )

    def plan(self, request: PlanRequest) -> Plan:
        spec, target = request.spec, request.target
        options = request.options
        assert isinstance(options, OpenAIOptions)
        unmet: list[Unmet] = refusals(spec)
        if options.flavor == "azure" and target.region is None:
            unmet.append(
                Unmet(
                    requirement="region",
                    reason="an Azure OpenAI resource trains in its own region; set the "
                    "target's region to the resource's location (it is checked before any "
                    "upload)",
                )
            )
        tags = too_many_tags(spec)
        if tags is not None:
            unmet.append(tags)
        roles = ["train"] + (["validation"] if spec.dataset.validation is not None else [])
        requests = []
        for role in roles:
            facts = request.datasets.get(role)
            size = facts.size_bytes if facts is not None else None
            digest = facts.sha256 if facts is not None else None
            multipart = size is not None and size >= options.multipart_threshold_bytes
            body: dict[str, Any] = {
                "purpose": "fine-tune",
                "filename": filename_for(digest) if digest else f"tunefleet-<sha256 of {role}>",
            }
            if multipart:
                body.update(bytes=size, mime_type="text/jsonl")
            requests.append(
                NativeRequest(
                    service="openai",
                    operation="createUpload" if multipart else "createFile",
                    body=body,
                    purpose=f"upload the {role} dataset"
                    + (" in parts" if multipart else "")
                    + " (skipped when a file with the same content is there)",
                )
            )
        requests.append(
            NativeRequest(
                service="openai",
                operation="createFineTuningJob",
                body=job_request(spec, target.key, options, roles),
                purpose="create the fine-tuning job",
            )
        )
        cost = None
        notes = []
        epochs = spec.hyperparameters.epochs
        train = request.datasets.get("train")
        if train is not None and train.examples and train.billable_tokens is not None:
            estimate = self._estimate(
                spec.base_model,
                train.examples,
                train.billable_tokens,
                epochs,
                options.training_price_per_million_tokens,
            )
            epochs = estimate.epochs
            if estimate.amount is not None:
                overridden = options.training_price_per_million_tokens is not None
                cost = CostEstimate(
                    amount=estimate.amount,
                    basis=estimate.basis + (" (price from options)" if overridden else ""),
                    price_date=None if overridden else pricing.PRICE_DATE,
                )
            else:
                notes.append(estimate.basis)
        if spec.placement.tags:
            notes.append("tags go into the job's metadata; uploaded files carry none")
        return Plan(
            target=target.key,
            provider=self.name,
            region=target.region if options.flavor == "azure" else None,
            options=options.model_dump(mode="json"),
            epochs=epochs,
            requests=requests,
            cost=cost,
            unmet=unmet,
            notes=notes,
        )

    # ------------------------------------------------------------------ helpers

    def _options(self, plan: Plan) -> OpenAIOptions:
        return OpenAIOptions.model_validate(plan.options)

    def _client(self, options: OpenAIOptions) -> openai.OpenAI:
        key = options.model_dump_json()
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                made = (
                    make_azure_client(options)
                    if options.flavor == "azure"
                    else make_client(options)
                )
                client = self._clients[key] = made
            return client

    def _check_region(self, plan: Plan, options: OpenAIOptions) -> None:
        """Azure: refuse to send data to a resource outside the region the plan was
        checked against (the placement policy allowed that region, not the resource's)."""
        if options.flavor != "azure":
            return
        key = f"{options.model_dump_json()}|{plan.region}"
        if key in self._checked_regions:
            return
        actual = Management(options).location()
        if actual != plan.region:
            raise ProviderError(
                self.name,
                f"Azure OpenAI resource {options.azure_resource} is in {actual}, not in "
                f"{plan.region} as target {plan.target!r} says; nothing was uploaded",
            )
        self._checked_regions.add(key)

    def _scoped_client(self, scope: Mapping[str, str]) -> openai.OpenAI:
        """The client for a job or endpoint, from the options recorded in its scope."""
        return self._client(OpenAIOptions.model_validate(scope))

    def _ref(self, plan: Plan, job_id: str, run_key: str) -> JobRef:
        options = self._options(plan)
        console = (
            f"https://portal.azure.com/#resource{Management(options).resource_id}/overview"
            if options.flavor == "azure"
            else CONSOLE_URL.format(id=job_id)
        )
        return JobRef(
            provider=self.name,
            target=plan.target,
            id=job_id,
            region=plan.region,
            run_key=run_key,
            console_url=console,
            scope=_scope(options),
        )

    # ------------------------------------------------------------------ staging

    def stage(
        self,
        plan: Plan,
        role: str,
        path: Path,
        sha256: str,
        progress: UploadProgress | None = None,
    ) -> DatasetRef:
        options = self._options(plan)
        self._check_region(plan, options)
        client = self._client(options)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise ProviderError(self.name, f"cannot read {path}: {exc.strerror}") from None
        file = find_uploaded(client, sha256, size)
        if file is None:
            file = upload(client, path, sha256, options, progress)
        if options.flavor == "azure":
            file = wait_until_processed(client, file)
        return DatasetRef(
            provider=self.name,
            role=role,
            uri=FILE_URI_PREFIX + file.id,
            sha256=sha256,
            size_bytes=size,
        )

    # ------------------------------------------------------------------ jobs

    def find(self, plan: Plan, run_key: str) -> JobRef | None:
        client = self._client(self._options(plan))
        with translated("list fine-tuning jobs"):
            # The service filters on metadata; the check below keeps a service that
            # ignores the filter (an older API version) from returning someone else's job.
            for job in client.fine_tuning.jobs.list(metadata={METADATA_RUN_KEY: run_key}):
                if (job.metadata or {}).get(METADATA_RUN_KEY) == run_key:
                    return self._ref(plan, job.id, run_key)
        return None

    def submit(self, plan: Plan, datasets: Mapping[str, DatasetRef], run_key: str) -> JobRef:
        """Create the job, or return the one this run key already created.

        The API has no idempotency key: a create whose answer was lost (a timeout, a
        dropped connection) may still have made the job. So the request is sent once, never
        retried by the SDK, and every call looks for the run key's job before creating one;
        the engine's retry of a failed submit therefore finds a job that was made.
        """
        existing = self.find(plan, run_key)
        if existing is not None:
            return existing
        options = self._options(plan)
        client = self._client(options)
        planned = next(r for r in plan.requests if r.operation == "createFineTuningJob")
        files = {role: _file_id(ref) for role, ref in datasets.items()}
        try:
            body = fill(planned.body, files, run_key)
        except ValueError as exc:
            raise ProviderError(self.name, f"cannot create the planned job: {exc}") from None
        if options.max_concurrent_jobs is not None:
            active = self._active_jobs(client)
            if active >= options.max_concurrent_jobs:
                raise ProviderBusyError(
                    self.name,
                    f"{active} fine-tuning job(s) unfinished in this project "
                    f"(options.max_concurrent_jobs is {options.max_concurrent_jobs})",
                )
        once = client.with_options(max_retries=0)

        def create() -> Any:
            with translated("create fine-tuning job"):
                return once.fine_tuning.jobs.create(**body)

        # Only a throttled create is repeated here: the service refused it untouched.
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(ThrottledError),
            stop=tenacity.stop_after_attempt(options.max_retries + 1),
            wait=wait_as_asked(backoff=0.5, cap=60.0),
            reraise=True,
        )
        job = retrying(create)
        return self._ref(plan, job.id, run_key)

    def _active_jobs(self, client: openai.OpenAI) -> int:
        with translated("list fine-tuning jobs"):
            page = client.fine_tuning.jobs.list(limit=ACTIVE_SCAN)
        return sum(1 for job in page.data if job.status in ACTIVE_STATUSES)

    def _retrieve(self, job: JobRef) -> Any:
        with translated("retrieve fine-tuning job"):
            return self._scoped_client(job.scope).fine_tuning.jobs.retrieve(job.id)

    def status(self, job: JobRef) -> JobStatus:
        found = self._retrieve(job)
        state = state_of(found.status)
        message = None
        if found.error is not None and found.error.message:
            message = redact(found.error.message)
        elif state.value != found.status:
            message = found.status  # validating_files, or a status tunefleet does not know
        return JobStatus(
            state=state,
            message=message,
            checked_at=datetime.now(UTC),
            trained_tokens=found.trained_tokens,
        )

    def events(self, job: JobRef, cursor: str | None) -> EventPage:
        position = Cursor.decode(cursor)
        client = self._scoped_client(job.scope)
        # The job first: once it is finished, every event and checkpoint read after it
        # is there, and its status event goes last.
        found = self._retrieve(job)
        new_events = self._events_since(client, job.id, position.event)
        if new_events:
            position.event = new_events[-1].id
        with translated("list checkpoints"):
            checkpoints = [
                checkpoint
                for checkpoint in client.fine_tuning.jobs.checkpoints.list(job.id)
                if checkpoint.step_number > position.checkpoint_step
            ]
        timeline: list[tuple[float, int, Event]] = [
            (event.created_at, 0, job_event(event)) for event in new_events
        ]
        timeline += [(c.created_at, 1, checkpoint_event(c)) for c in checkpoints]
        if checkpoints:
            position.checkpoint_step = max(c.step_number for c in checkpoints)
        timeline.sort(key=lambda item: (item[0], item[1]))
        out = [event for _, _, event in timeline]
        # validating_files and queued are both "queued": a change between them is none.
        if position.state is None or state_of(found.status) != state_of(position.state):
            out.append(status_event(found, position))
            position.state = found.status
            position.state_changes += 1
            cost = _actual_cost(found, job.scope)
            if cost is not None:
                out.append(cost)
        if not out:
            return EventPage(events=[], cursor=cursor)
        return EventPage(events=out, cursor=position.encode())

    def _events_since(self, client: openai.OpenAI, job_id: str, last: str | None) -> list[Any]:
        """Job events newer than ``last``, oldest first (the API pages newest first)."""
        newest_first: list[Any] = []
        after: str | None = None
        listing = client.fine_tuning.jobs.list_events
        while True:
            with translated("list fine-tuning events"):
                page = (
                    listing(job_id, limit=EVENTS_PAGE, after=after)
                    if after
                    else listing(job_id, limit=EVENTS_PAGE)
                )
            for event in page.data:
                if event.id == last:
                    return newest_first[::-1]
                newest_first.append(event)
            if not page.has_more or not page.data:
                return newest_first[::-1]
            after = page.data[-1].id

    def cancel(self, job: JobRef) -> None:
        if state_of(self._retrieve(job).status).terminal:
            return
        try:
            with translated("cancel fine-tuning job"):
                self._scoped_client(job.scope).fine_tuning.jobs.cancel(job.id)
        except ProviderError:
            # It may have finished between the two calls; cancelling that is a no-op.
            if not state_of(self._retrieve(job).status).terminal:
                raise

    def pause(self, job: JobRef) -> None:
        """Pause a running job; it keeps its progress and ``resume`` continues it."""
        with translated("pause fine-tuning job"):
            self._scoped_client(job.scope).fine_tuning.jobs.pause(job.id)

    def resume(self, job: JobRef) -> None:
        """Resume a paused job."""
        with translated("resume fine-tuning job"):
            self._scoped_client(job.scope).fine_tuning.jobs.resume(job.id)

    def artifacts(self, job: JobRef) -> list[ArtifactRef]:
        found = self._retrieve(job)
        if not found.fine_tuned_model:
            raise ProviderError(
                self.name, f"job {job.id} has no fine-tuned model (status {found.status})"
            )
        refs = [ArtifactRef(kind="hosted_model", uri=found.fine_tuned_model)]
        with translated("list checkpoints"):
            for checkpoint in self._scoped_client(job.scope).fine_tuning.jobs.checkpoints.list(
                job.id
            ):
                refs.append(
                    ArtifactRef(kind="checkpoint", uri=checkpoint.fine_tuned_model_checkpoint)
                )
        refs += [
            ArtifactRef(kind="metrics", uri=FILE_URI_PREFIX + file_id)
            for file_id in found.result_files or []
        ]
        return refs

    # ------------------------------------------------------------------ serving

    def deploy(self, plan: Plan, artifact: ArtifactRef, name: str) -> EndpointRef:
        if artifact.kind not in {"hosted_model", "checkpoint"}:
            raise CapabilityError(
                self.name, f"serves models fine-tuned on the API, not a {artifact.kind}"
            )
        options = self._options(plan)
        if options.flavor == "azure":
            return self._deploy_on_azure(plan, options, artifact.uri, name)
        client = self._client(options)
        with translated("retrieve model"):
            model = client.models.retrieve(artifact.uri)
        return EndpointRef(
            provider=self.name,
            name=name,
            url=f"{client.base_url}".rstrip("/") + "/chat/completions",
            id=model.id,
            scope=_scope(options),
        )

    def _deploy_on_azure(
        self, plan: Plan, options: OpenAIOptions, model: str, name: str
    ) -> EndpointRef:
        # On Azure a fine-tuned model answers only once deployed, under a name of its own.
        planned = next(r for r in plan.requests if r.operation == "createFineTuningJob")
        metadata = planned.body.get("metadata", {})
        tags = {k: v for k, v in metadata.items() if not k.startswith("tunefleet:")}
        deployment_id = Management(options).deploy(name, model, tags)
        return EndpointRef(
            provider=self.name,
            name=name,
            region=plan.region,
            url=f"{options.endpoint}/openai/deployments/{name}/chat/completions",
            id=deployment_id,
            scope=_scope(options),
        )

    def shift_traffic(self, endpoint: EndpointRef, weights: Mapping[str, int]) -> None:
        raise CapabilityError(self.name, "serves each model id on its own; there is no split")

    def delete_endpoint(self, endpoint: EndpointRef) -> None:
        options = OpenAIOptions.model_validate(endpoint.scope)
        if options.flavor == "azure":
            Management(options).delete(endpoint.name)
        # On the OpenAI API nothing was created to serve the model: the API serves it for
        # as long as the model exists, and the model is the run's artifact, which stays.

    def invoke(self, endpoint: EndpointRef, request: ChatRequest) -> ChatReply:
        if endpoint.id is None:
            raise ProviderError(self.name, f"endpoint {endpoint.name} records no model id")
        client = self._scoped_client(endpoint.scope)
        azure = endpoint.scope.get("flavor") == "azure"
        with translated("create chat completion"):
            completion = client.chat.completions.create(
                model=endpoint.name if azure else endpoint.id,  # Azure: the deployment
                messages=request.messages,  # type: ignore[arg-type]
                max_completion_tokens=request.max_tokens,
                temperature=request.temperature,
            )
        choice = completion.choices[0]
        usage = completion.usage
        return ChatReply(
            text=choice.message.content or "",
            finish_reason=choice.finish_reason,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
        )

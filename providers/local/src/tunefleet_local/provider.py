"""The local provider: fine-tuning on this machine, the embedded default.

It runs :mod:`tunefleet_trainer` -- the same entry point the cloud images run -- in a
background process, so a local run is a true dry run of the cloud workload. Everything lives
under the work directory (``options.workdir``; see :func:`tunefleet_local.options.workdir`)::

    datasets/<sha256>.jsonl       staged data, content-addressed
    jobs/<run_key>/               one job (see tunefleet_local._jobs)
    endpoints/<name>.json         a served endpoint: pid, port, its versions and weights

What each contract step does here::

    plan      local CopyDataset (stage) per dataset and local RunTrainer (submit) with the
              trainer config; cost 0; unmet: no train extra, QLoRA without a CUDA GPU,
              knobs the trainer cannot take -- no side effects   (_planning)
    stage     copy into datasets/, hashed while copied             (_staging)
    find      the run key's job directory
    submit    jobs/<run_key>/ and a runner process, ``python -m tunefleet_local._runner``,
              which runs ``python -m tunefleet_trainer --config trainer.json``
    status    the job's files and whether its runner still runs
    cancel    SIGTERM to the runner's process group
    artifacts the adapter or model, a merged model, the manifest    (_jobs)
    events    pages of events.jsonl, written by the runner          (_events)

Optional protocols: :class:`~tunefleet.provider.Serving` (an OpenAI-compatible server on
the loopback interface per endpoint, ``python -m tunefleet_local._server``; see _serving
and _client), :class:`~tunefleet.provider.TrafficSplitting` (that server holds every
version of the endpoint's model in memory and routes each request by weight, or to the
version a request names; a plain deploy's version is ``primary``; the endpoint's record is
the routing table), :class:`~tunefleet.provider.Estimating` (no charge),
:class:`~tunefleet.provider.ArtifactReading` (the golden set's answers the job wrote:
plans with an evaluation stage the golden set and the trainer answers it after training)
and :class:`~tunefleet.provider.Answering` (a trained model answers a batch in one
trainer process, for `tunefleet eval` on a new golden set). A local job cannot be
paused, so it does not implement Pausable. Jobs and endpoints outlive the CLI that
started them, and any process can watch them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

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
from tunefleet_local import _jobs, _planning, _serving, _staging, pricing
from tunefleet_local.options import LocalOptions

if TYPE_CHECKING:
    from tunefleet.events import EventPage

__all__ = ["LocalProvider"]


class LocalProvider:
    """Trains on this machine with tunefleet's trainer and serves the result locally."""

    name: ClassVar[str] = "local"
    options_model: ClassVar[type[BaseModel]] = LocalOptions

    def capabilities(self, options: BaseModel | None = None) -> Capabilities:
        """Supervised and DPO with any adapter, on this machine (so region pins and private
        networks hold as they are); serving is read off :class:`~tunefleet.provider.Serving`."""
        return Capabilities(
            methods=frozenset({"supervised", "dpo"}),
            adapters=frozenset({"full", "lora", "qlora"}),
            runs_locally=True,
        )

    def estimate_training(
        self, base_model: str, examples: int, billable_tokens: int, epochs: int | None
    ) -> TrainingEstimate:
        """Epochs (``epochs``, else the trainer's default) and tokens trained; no charge."""
        return pricing.training(self.name, billable_tokens, epochs)

    # ------------------------------------------------------------------ training

    def plan(self, request: PlanRequest) -> Plan:
        """CopyDataset requests (phase ``stage``) and one RunTrainer; no side effects."""
        return _planning.plan(self.name, request)

    def stage(
        self,
        plan: Plan,
        role: str,
        path: Path,
        sha256: str,
        progress: UploadProgress | None = None,
    ) -> DatasetRef:
        """Copy into ``datasets/<sha256>.jsonl``; ProviderError ``content_changed`` or the
        errno's name when the copy fails."""
        return _staging.stage(self.name, plan.options, role, path, sha256, progress)

    def find(self, plan: Plan, run_key: str) -> JobRef | None:
        """The job directory of ``run_key``, once its job.json is written."""
        return _jobs.find(self.name, plan, run_key)

    def submit(self, plan: Plan, datasets: Mapping[str, DatasetRef], run_key: str) -> JobRef:
        """Start the job's runner; AlreadyExistsError ``job_exists``, ProviderBusyError
        ``max_concurrent_jobs``, ProviderError ``invalid_run_key``."""
        return _jobs.submit(self.name, plan, datasets, run_key)

    def status(self, job: JobRef) -> JobStatus:
        """From the job's files; ProviderNotFoundError ``job_not_found`` once it is gone."""
        return _jobs.status(self.name, job)

    def events(self, job: JobRef, cursor: str | None) -> EventPage:
        """A page of events.jsonl; the cursor is the number of events read."""
        from tunefleet_local import _events  # the event models, which plans never build

        return _events.page(self.name, _jobs.files_of(self.name, job).events, cursor)

    def cancel(self, job: JobRef) -> None:
        """SIGTERM to the runner's group; the job ends cancelled. No-op once it ended."""
        _jobs.cancel(self.name, job)

    def artifacts(self, job: JobRef) -> list[ArtifactRef]:
        """From the trainer's manifest; ProviderNotFoundError ``manifest_not_found`` before
        the job succeeded."""
        return _jobs.artifacts(self.name, job)

    # ------------------------------------------------------------------ serving

    def deploy(self, plan: Plan, artifact: ArtifactRef, name: str) -> EndpointRef:
        """A model server on 127.0.0.1 serving ``artifact`` as version ``primary``; reused
        while it serves that model alone, replaced (a new server) otherwise."""
        return _serving.deploy(self.name, plan, artifact, name)

    def delete_endpoint(self, endpoint: EndpointRef) -> None:
        """Stop the endpoint's server, every version, and forget it; no-op when it is gone."""
        _serving.delete_endpoint(self.name, endpoint)

    def invoke(self, endpoint: EndpointRef, request: ChatRequest) -> ChatReply:
        """A chat completion from the version the weights pick; errors carry the server's
        code and HTTP status (_client)."""
        return _serving.invoke(self.name, endpoint, request)

    def add_version(
        self, plan: Plan, endpoint: EndpointRef, artifact: ArtifactRef, version: str
    ) -> EndpointRef:
        """The endpoint's server loads ``artifact`` as ``version``, weight 0; returns once
        loaded. ProviderError ``version_load_failed``, AlreadyExistsError
        ``version_exists`` (another model under that label)."""
        return _serving.add_version(self.name, endpoint, artifact, version)

    def versions(self, endpoint: EndpointRef) -> dict[str, int]:
        """Version label -> percent of the traffic, from the endpoint's record."""
        return _serving.versions(self.name, endpoint)

    def shift_traffic(self, endpoint: EndpointRef, weights: Mapping[str, int]) -> None:
        """New weights; returns once the server routes by them. ProviderError
        ``invalid_weights``, ``version_not_loaded``; ProviderNotFoundError
        ``version_not_found``."""
        _serving.shift_traffic(self.name, endpoint, weights)

    def invoke_version(
        self, endpoint: EndpointRef, version: str, request: ChatRequest
    ) -> ChatReply:
        """A chat completion from ``version`` (header ``X-Tunefleet-Version``);
        ProviderNotFoundError ``version_not_found`` (404) for one it does not serve."""
        return _serving.invoke_version(self.name, endpoint, version, request)

    def remove_version(self, endpoint: EndpointRef, version: str) -> None:
        """The server drops ``version``; ProviderError ``version_has_traffic`` while it
        has a weight; no-op when it is not served."""
        _serving.remove_version(self.name, endpoint, version)

    def alarms(self, endpoint: EndpointRef, version: str) -> list[str]:
        """``version`` failed to load, or over 5% (and at least 3) of its last 100
        requests failed; empty when healthy."""
        return _serving.alarms(self.name, endpoint, version)

    # ------------------------------------------------------------------ evaluation

    def read_artifact(self, job: JobRef, artifact: ArtifactRef, max_bytes: int) -> bytes:
        """A file of the job's output (the golden set's answers the trainer wrote)."""
        return _jobs.read_artifact(self.name, job, artifact, max_bytes)

    def answer(
        self,
        options: Mapping[str, Any],
        model: str,
        requests: Sequence[ChatRequest],
        progress: Callable[[int, int], None] | None = None,
    ) -> list[ChatReply]:
        """A trained model (or a base model on disk) answers without an endpoint, in one
        process of the trainer (``python -m tunefleet_trainer.answer``)."""
        return _serving.answer(self.name, options, model, requests, progress)

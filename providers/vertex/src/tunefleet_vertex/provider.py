"""The Vertex AI provider: custom jobs running tunefleet's trainer, and Gemini tuning.

A thin facade; each step lives in its own module::

    plan      _planning   the exact requests (the CustomJob or the TuningJob, the uploads),
                          what the options lack for the placement policy and the labels,
                          and the cost estimate; no network. _tuning: Gemini's side.
    stage     _staging    the bucket's region checked, then the object
                          <prefix>/datasets/<sha256>.jsonl (converted to Gemini's format
                          for tuning) uploaded resumably, with the customer key, never
                          over an object that exists; reused when there
    find      _jobs       the job labelled with the run key (one filtered list)
    submit    _jobs       customJobs.create or tuningJobs.create as planned, after a look
                          for the run key's job
    status    _jobs       the job's state, every documented one mapped (_events.STATES)
    events    _events     the trainer's lines from Cloud Logging, state changes, the
                          tuning job's data statistics, and the actual cost
    cancel    _jobs       customJobs.cancel / tuningJobs.cancel
    artifacts _jobs       the job's model directory and checkpoints (custom), the tuned
                          model and its endpoint (tuning); the golden set's answers
    ArtifactReading       _artifacts: a file of the job's predictions folder
    Serving   _serving    the model uploaded with a vLLM or TGI container, an endpoint, the
                          model deployed with autoscaling, chat through rawPredict; a tuned
                          Gemini model's own endpoint, asked through generateContent
    TrafficSplitting      _versions: versions are deployed models of one endpoint, the
                          traffic split by percent; one asked through its invoke route
    Answering             _serving: a tuned Gemini model answers the golden set

The Google SDKs are imported by the first method that talks to Google (:mod:`._client`,
which is also the one place their errors become tunefleet's).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from tunefleet.events import EventPage
from tunefleet.kit.cost import training_estimate
from tunefleet.kit.trainer import DEFAULT_EPOCHS
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
from tunefleet_vertex import _artifacts, _jobs, _planning, _serving, _staging, _versions, pricing
from tunefleet_vertex._client import PROVIDER
from tunefleet_vertex.options import VertexOptions

__all__ = ["VertexProvider"]

TUNING_CAPABILITIES = Capabilities(
    methods=frozenset({"supervised"}),
    adapters=frozenset({"lora"}),
    regions=pricing.TUNING_REGIONS,
    customer_managed_keys=True,
    tags=True,
)
"""What Gemini tuning can do: supervised, an adapter of the service's kind, on machines
the service chooses (no private network, no spot, no machine type)."""


class VertexProvider:
    """Trains with tunefleet's trainer in Vertex AI custom jobs, or tunes Gemini models
    with Vertex's supervised tuning."""

    name: ClassVar[str] = PROVIDER
    options_model: ClassVar[type[BaseModel]] = VertexOptions

    def capabilities(self, options: BaseModel | None = None) -> Capabilities:
        if isinstance(options, VertexOptions) and options.mode == "tuning":
            return TUNING_CAPABILITIES
        return Capabilities(
            methods=frozenset({"supervised", "dpo"}),
            adapters=frozenset({"full", "lora", "qlora"}),
            regions=pricing.REGIONS,
            private_network=True,
            customer_managed_keys=True,
            spot=True,
            instance_types=True,
            multi_node=True,
            autoscaling=True,
            tags=True,
        )

    def estimate_training(
        self, base_model: str, examples: int, billable_tokens: int, epochs: int | None
    ) -> TrainingEstimate:
        if base_model in pricing.TUNING_MODELS:
            return pricing.TUNING_PRICES.estimate(
                self.name, base_model, examples, billable_tokens, epochs
            )
        return training_estimate(
            self.name,
            billable_tokens,
            epochs,
            DEFAULT_EPOCHS,
            "billed per replica-hour, not per token (see `tunefleet plan`)",
        )

    def plan(self, request: PlanRequest) -> Plan:
        return _planning.plan(self.name, request)

    def stage(
        self,
        plan: Plan,
        role: str,
        path: Path,
        sha256: str,
        progress: UploadProgress | None = None,
    ) -> DatasetRef:
        return _staging.stage(plan, role, path, sha256, progress)

    def find(self, plan: Plan, run_key: str) -> JobRef | None:
        return _jobs.find(plan, run_key)

    def submit(self, plan: Plan, datasets: Mapping[str, DatasetRef], run_key: str) -> JobRef:
        return _jobs.submit(plan, datasets, run_key)

    def status(self, job: JobRef) -> JobStatus:
        return _jobs.status(job)

    def events(self, job: JobRef, cursor: str | None) -> EventPage:
        return _jobs.events(job, cursor)

    def cancel(self, job: JobRef) -> None:
        _jobs.cancel(job)

    def artifacts(self, job: JobRef) -> list[ArtifactRef]:
        return _jobs.artifacts(job)

    # ArtifactReading

    def read_artifact(self, job: JobRef, artifact: ArtifactRef, max_bytes: int) -> bytes:
        return _artifacts.read_artifact(job, artifact, max_bytes)

    # Serving

    def deploy(self, plan: Plan, artifact: ArtifactRef, name: str) -> EndpointRef:
        return _serving.deploy(plan, artifact, name)

    def delete_endpoint(self, endpoint: EndpointRef) -> None:
        _serving.delete_endpoint(endpoint)

    def invoke(self, endpoint: EndpointRef, request: ChatRequest) -> ChatReply:
        return _serving.invoke(endpoint, request)

    # TrafficSplitting

    def add_version(
        self, plan: Plan, endpoint: EndpointRef, artifact: ArtifactRef, version: str
    ) -> EndpointRef:
        return _versions.add_version(plan, endpoint, artifact, version)

    def versions(self, endpoint: EndpointRef) -> dict[str, int]:
        return _versions.versions(endpoint)

    def shift_traffic(self, endpoint: EndpointRef, weights: Mapping[str, int]) -> None:
        _versions.shift_traffic(endpoint, weights)

    def invoke_version(
        self, endpoint: EndpointRef, version: str, request: ChatRequest
    ) -> ChatReply:
        return _versions.invoke_version(endpoint, version, request)

    def remove_version(self, endpoint: EndpointRef, version: str) -> None:
        _versions.remove_version(endpoint, version)

    def alarms(self, endpoint: EndpointRef, version: str) -> list[str]:
        return _versions.alarms(endpoint, version)

    # Answering

    def answer(
        self,
        options: Mapping[str, Any],
        model: str,
        requests: Sequence[ChatRequest],
        progress: Callable[[int, int], None] | None = None,
    ) -> list[ChatReply]:
        return _serving.answer(options, model, requests, progress)

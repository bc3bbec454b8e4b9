"""The Azure Machine Learning provider: command jobs running tunefleet's trainer.

A thin facade; each step lives in its own module::

    plan      _planning   the exact Resource Manager requests (the command job's body,
                          the environment and the data assets), what the options lack for
                          the placement policy, and a VM-hour estimate; no network
    stage     _workspace  the workspace read and checked against the placement policy
                          (region, network isolation, customer key) before any upload
              _staging    the blob <prefix>/datasets/<sha256>.jsonl in the datastore's
                          container (parallel blocks, the encryption scope), registered as
                          a uri_file data asset versioned by the hash; reused when there
    find      _jobs       Jobs - Get of the name derived from the run key
    submit    _jobs       the trainer's environment, then Jobs - Create Or Update as planned
    status    _jobs       the job's status, every documented one mapped (_events.STATES)
    events    _events     the trainer's lines in the job's std_log files (RunHistory's log
                          files), status changes, and the actual cost
    cancel    _jobs       Jobs - Cancel
    artifacts _jobs       the model output registered as a model asset, the checkpoints;
                          with an evaluation, the golden set's answers the job wrote
    ArtifactReading       _artifacts: a file of the job's predictions output, from the
                          datastore
    Serving   _serving    a managed online endpoint, a deployment of the model in a TGI
                          container, Azure Monitor autoscale; invoke through the scoring URI
    TrafficSplitting      _versions: versions are deployments of one endpoint (its traffic
                          split by percent; the azureml-model-deployment header asks one)

The Azure SDKs are imported by the first method that talks to Azure (:mod:`._client`,
which is also the one place their errors become tunefleet's).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

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
from tunefleet_azureml import _artifacts, _jobs, _planning, _serving, _staging, _versions, pricing
from tunefleet_azureml._client import PROVIDER
from tunefleet_azureml._workspace import Workspaces
from tunefleet_azureml.options import AzureMLOptions

__all__ = ["AzureMLProvider"]


class AzureMLProvider:
    """Trains with tunefleet's trainer in Azure ML command jobs and serves the result on
    managed online endpoints."""

    name: ClassVar[str] = PROVIDER
    options_model: ClassVar[type[BaseModel]] = AzureMLOptions

    def __init__(self) -> None:
        self._workspaces = Workspaces()

    def capabilities(self, options: BaseModel | None = None) -> Capabilities:
        if isinstance(options, AzureMLOptions) and options.mode == "finetuning":
            return pricing.FINE_TUNING_CAPABILITIES
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
        return training_estimate(
            self.name,
            billable_tokens,
            epochs,
            DEFAULT_EPOCHS,
            "billed per VM-hour, not per token (see `tunefleet plan`)",
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
        return _staging.stage(self._workspaces, plan, role, path, sha256, progress)

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

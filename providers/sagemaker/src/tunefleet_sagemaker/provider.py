"""The SageMaker provider: training jobs running tunefleet's trainer image, and endpoints.

A thin facade; each step lives in its own module::

    plan      _planning   the exact CreateTrainingJob request (VpcConfig, KMS keys, spot
                          with a checkpoint location, tags...), the deploy requests, what
                          the options lack for the placement policy, every documented
                          limit a request would break (_limits), and an instance-hour
                          estimate; no network, no credentials
    stage     _staging    S3 object <prefix>/datasets/<sha256>.jsonl, SSE-KMS with the
                          policy's key and its tags, multipart and concurrent, reused when
                          already there; the bucket must be in the target's region
    find      _jobs       DescribeTrainingJob of the name derived from the run key
    submit    _jobs       CreateTrainingJob exactly as planned, URIs and run key filled in;
                          ResourceLimitExceeded looked up in Service Quotas (_quotas)
    status    _jobs       DescribeTrainingJob (primary and secondary status, billable time)
    events    _events     the trainer's lines in CloudWatch Logs, the secondary status
                          transitions, and the actual cost
    cancel    _jobs       StopTrainingJob
    artifacts _jobs       the model.tar.gz S3 URI and the checkpoint prefix; with an
                          evaluation, the golden set's answers in output.tar.gz
    ArtifactReading       _artifacts: one member of output.tar.gz, read in memory
    Serving   _serving    CreateModel, CreateEndpointConfig, CreateEndpoint (UpdateEndpoint
                          for a new version without a canary), autoscaling; invoke through
                          sagemaker-runtime
    TrafficSplitting      _versions: versions are production variants of one endpoint
                          (a config with both, UpdateEndpoint; the weights with
                          UpdateEndpointWeightsAndCapacities; InvokeEndpoint's TargetVariant;
                          a CloudWatch alarm per variant)

boto3 is imported by the first method that talks to AWS (:mod:`._client`, which is also the
one place botocore's errors become tunefleet's).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel

from tunefleet.errors import ProviderError
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
from tunefleet_sagemaker import (
    _artifacts,
    _events,
    _jobs,
    _planning,
    _serving,
    _staging,
    _versions,
    pricing,
)
from tunefleet_sagemaker._client import PROVIDER
from tunefleet_sagemaker.options import SageMakerOptions

__all__ = ["SageMakerProvider"]


class SageMakerProvider:
    """Trains with tunefleet's trainer on SageMaker and serves the result on endpoints."""

    name: ClassVar[str] = PROVIDER
    options_model: ClassVar[type[BaseModel]] = SageMakerOptions

    def __init__(self) -> None:
        self._buckets = _staging.BucketRegions()

    def capabilities(self, options: BaseModel | None = None) -> Capabilities:
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
            "billed per instance-hour, not per token (see `tunefleet plan`)",
        )

    def plan(self, request: PlanRequest) -> Plan:
        return _planning.plan(self.name, request)

    def _region(self, plan: Plan) -> str:
        if plan.region is None:
            raise ProviderError(self.name, f"target {plan.target!r} has no region")
        return plan.region

    def stage(
        self,
        plan: Plan,
        role: str,
        path: Path,
        sha256: str,
        progress: UploadProgress | None = None,
    ) -> DatasetRef:
        options = SageMakerOptions.model_validate(plan.options)
        planned = plan.request("PutObject", phase="stage").body
        return _staging.stage(
            self._buckets, options, self._region(plan), planned, role, path, sha256, progress
        )

    def find(self, plan: Plan, run_key: str) -> JobRef | None:
        return _jobs.find(plan, self._region(plan), run_key)

    def submit(self, plan: Plan, datasets: Mapping[str, DatasetRef], run_key: str) -> JobRef:
        return _jobs.submit(plan, self._region(plan), datasets, run_key)

    def status(self, job: JobRef) -> JobStatus:
        return _jobs.status(job)

    def events(self, job: JobRef, cursor: str | None) -> EventPage:
        described = _jobs.describe(str(job.region), job.id)
        if described is None:
            raise ProviderError(self.name, f"training job {job.id} does not exist")
        return _events.events(job, described, cursor)

    def cancel(self, job: JobRef) -> None:
        _jobs.cancel(job)

    def artifacts(self, job: JobRef) -> list[ArtifactRef]:
        return _jobs.artifacts(job)

    # ArtifactReading

    def read_artifact(self, job: JobRef, artifact: ArtifactRef, max_bytes: int) -> bytes:
        return _artifacts.read_artifact(job, artifact, max_bytes)

    # Serving and TrafficSplitting

    def deploy(self, plan: Plan, artifact: ArtifactRef, name: str) -> EndpointRef:
        return _serving.deploy(plan, self._region(plan), artifact, name)

    def delete_endpoint(self, endpoint: EndpointRef) -> None:
        _serving.delete_endpoint(endpoint)

    def invoke(self, endpoint: EndpointRef, request: ChatRequest) -> ChatReply:
        return _serving.invoke(endpoint, request)

    def add_version(
        self, plan: Plan, endpoint: EndpointRef, artifact: ArtifactRef, version: str
    ) -> EndpointRef:
        return _versions.add_version(plan, self._region(plan), endpoint, artifact, version)

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

"""The HyperPod provider: tunefleet's trainer as jobs on a SageMaker HyperPod cluster.

A thin facade; each step lives in its own module::

    plan      _planning   the cluster described (_cluster: DescribeCluster, ListClusterNodes)
                          and the spec checked against it (region, instance group and
                          type, nodes running, VPC, volume keys, labels); the S3 uploads and
                          the HyperPodPyTorchJob exactly as they will be sent; the job's
                          share of the cluster's cost
    stage     _staging    S3 objects as the sagemaker provider stages them, which the
                          cluster's shared storage shows to the job
    find      _jobs       GET of the job named after the run key
    submit    _jobs       create it; 409 AlreadyExists of this run's job is adopted
    status    _jobs       from the resource's conditions
    events    _events     conditions, the first pod's log lines, and the cost
    cancel    _jobs       delete the resource
    artifacts _jobs       the model and checkpoints under the job's S3 prefix
    read_artifact         _artifacts: the golden set's answers the job wrote, from S3
    deploy    _serving    an InferenceEndpointConfig named after the endpoint, served by
                          HyperPod's inference operator on the cluster's nodes (EKS only)
    invoke    _serving    InvokeEndpoint on the SageMaker endpoint the operator registers
    delete_endpoint       delete the resource and wait for the operator to tear it down

boto3 and the Kubernetes client are imported by the first method that talks to AWS or the
cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel

from tunefleet.errors import ProviderError
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
    UploadProgress,
)
from tunefleet_sagemaker.hyperpod import (
    _artifacts,
    _cluster,
    _events,
    _jobs,
    _planning,
    _serving,
    _staging,
    pricing,
)
from tunefleet_sagemaker.hyperpod._client import PROVIDER
from tunefleet_sagemaker.hyperpod.options import HyperPodOptions

__all__ = ["HyperPodProvider"]


class HyperPodProvider:
    """Trains with tunefleet's trainer on a HyperPod cluster's nodes."""

    name: ClassVar[str] = PROVIDER
    options_model: ClassVar[type[BaseModel]] = HyperPodOptions

    def __init__(self) -> None:
        self._buckets = _staging.BucketRegions()
        self._clusters = _cluster.Clusters()

    def capabilities(self, options: BaseModel | None = None) -> Capabilities:
        return Capabilities(
            methods=frozenset({"supervised", "dpo"}),
            adapters=frozenset({"full", "lora", "qlora"}),
            regions=pricing.REGIONS,
            private_network=True,
            customer_managed_keys=True,
            instance_types=True,
            multi_node=True,
            tags=True,
        )

    def plan(self, request: PlanRequest) -> Plan:
        return _planning.plan(self.name, request, self._clusters)

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
        return _staging.stage(self._buckets, plan, role, path, sha256, progress)

    def find(self, plan: Plan, run_key: str) -> JobRef | None:
        return _jobs.find(plan, self._region(plan), run_key, self._clusters)

    def submit(self, plan: Plan, datasets: Mapping[str, DatasetRef], run_key: str) -> JobRef:
        return _jobs.submit(plan, self._region(plan), datasets, run_key, self._clusters)

    def status(self, job: JobRef) -> JobStatus:
        return _jobs.status(job)

    def events(self, job: JobRef, cursor: str | None) -> EventPage:
        return _events.events(job, cursor)

    def cancel(self, job: JobRef) -> None:
        _jobs.cancel(job)

    def artifacts(self, job: JobRef) -> list[ArtifactRef]:
        return _jobs.artifacts(job)

    def read_artifact(self, job: JobRef, artifact: ArtifactRef, max_bytes: int) -> bytes:
        return _artifacts.read_artifact(job, artifact, max_bytes)

    def deploy(self, plan: Plan, artifact: ArtifactRef, name: str) -> EndpointRef:
        return _serving.deploy(plan, self._region(plan), artifact, name, self._clusters)

    def delete_endpoint(self, endpoint: EndpointRef) -> None:
        _serving.delete_endpoint(endpoint)

    def invoke(self, endpoint: EndpointRef, request: ChatRequest) -> ChatReply:
        return _serving.invoke(endpoint, request)

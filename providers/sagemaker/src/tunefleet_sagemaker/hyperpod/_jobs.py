"""find, submit, status, cancel and artifacts: each on the cluster's orchestrator.

The plan says which (its job request is a ``HyperPodPyTorchJob`` for EKS, an ``sbatch`` for
Slurm) and so does a job's ref (``scope["orchestrator"]``): EKS jobs are :mod:`._eks`'s,
Slurm jobs :mod:`._slurm`'s. Artifacts are the same on both: the job writes the model and
its checkpoints to ``<prefix>/jobs/<job name>/`` on the shared storage, which shows (and
exports to) the bucket.
"""

from __future__ import annotations

from collections.abc import Mapping

from tunefleet.provider import ArtifactRef, DatasetRef, JobRef, JobStatus, Plan
from tunefleet_sagemaker.hyperpod import _artifacts, _cluster, _eks, _slurm

__all__ = ["artifacts", "cancel", "find", "status", "submit"]


def _on_slurm(plan: Plan) -> bool:
    return any(request.operation == "sbatch" for request in plan.requests)


def find(plan: Plan, region: str, run_key: str, clusters: _cluster.Clusters) -> JobRef | None:
    """The job ``run_key`` created, if it exists."""
    if _on_slurm(plan):
        return _slurm.find(plan, run_key, clusters)
    return _eks.find(plan, region, run_key, clusters)


def submit(
    plan: Plan,
    region: str,
    datasets: Mapping[str, DatasetRef],
    run_key: str,
    clusters: _cluster.Clusters,
) -> JobRef:
    """Create the planned job (or adopt the one this run key made)."""
    if _on_slurm(plan):
        return _slurm.submit(plan, datasets, run_key, clusters)
    return _eks.submit(plan, region, datasets, run_key, clusters)


def status(job: JobRef) -> JobStatus:
    if job.scope.get("orchestrator") == "slurm":
        return _slurm.status(job)
    return _eks.status(job)


def cancel(job: JobRef) -> None:
    if job.scope.get("orchestrator") == "slurm":
        _slurm.cancel(job)
    else:
        _eks.cancel(job)


def artifacts(job: JobRef) -> list[ArtifactRef]:
    """The model (the adapter, with the merged model beside it, or the whole model) and
    the checkpoints under the job's output prefix in S3 (the shared storage exports them
    there); for a job planned with an evaluation, the golden set's answers too
    (:mod:`._artifacts`)."""
    base = f"s3://{job.scope['bucket']}/{job.scope['output_prefix']}"
    model = "merged_model" if job.scope.get("adapter") == "full" else "adapter"
    return [
        ArtifactRef(kind=model, uri=f"{base}/model/"),
        ArtifactRef(kind="checkpoint", uri=f"{base}/checkpoints/"),
        *_artifacts.prediction_artifacts(job),
    ]

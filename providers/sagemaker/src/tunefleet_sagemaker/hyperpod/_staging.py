"""Staging: datasets to S3, exactly as the SageMaker provider stages them.

``<prefix>/datasets/<sha256>.jsonl`` in ``options.bucket``, SSE-KMS with
``options.kms_key_id``, tagged, reused when there (the SageMaker provider's
:func:`~tunefleet_sagemaker._staging.stage`). The cluster's shared storage shows the bucket
(``options.shared_path``), which is how the job reads it.
"""

from __future__ import annotations

from pathlib import Path

from tunefleet.errors import ProviderError
from tunefleet.provider import DatasetRef, Plan, UploadProgress
from tunefleet_sagemaker import _staging
from tunefleet_sagemaker.hyperpod._client import PROVIDER
from tunefleet_sagemaker.hyperpod.options import HyperPodOptions

__all__ = ["BucketRegions", "stage"]

BucketRegions = _staging.BucketRegions


def stage(
    buckets: _staging.BucketRegions,
    plan: Plan,
    role: str,
    path: Path,
    sha256: str,
    progress: UploadProgress | None,
) -> DatasetRef:
    """Upload ``path`` as the plan's PutObject says, unless S3 holds it already."""
    if plan.region is None:
        raise ProviderError(PROVIDER, f"target {plan.target!r} has no region")
    options = HyperPodOptions.model_validate(plan.options)
    planned = plan.request("PutObject", phase="stage").body
    return _staging.stage(
        buckets, options, plan.region, planned, role, path, sha256, progress, provider=PROVIDER
    )

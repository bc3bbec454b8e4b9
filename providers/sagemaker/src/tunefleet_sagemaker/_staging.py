"""Staging: datasets to S3 under their content hash, SSE-KMS with the policy's key.

``<prefix>/datasets/<sha256>.jsonl`` is reused when it holds this content, encrypted as the
options ask (size, the sha256 in its metadata, the key). The bucket must be in the target's
region, checked before any upload. boto3's transfer manager uploads in parts, several at
once, reporting progress.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from tunefleet.errors import ProviderError, ProviderNotFoundError
from tunefleet.kit.limits import check_storage_region
from tunefleet.provider import DatasetRef, UploadProgress
from tunefleet_sagemaker._client import PROVIDER, client, translated
from tunefleet_sagemaker._planning import dataset_key
from tunefleet_sagemaker.options import SageMakerOptions

__all__ = ["BucketRegions", "stage"]

MiB = 1 << 20
UPLOAD_CONCURRENCY = 8


class BucketRegions:
    """Buckets already found in the target's region, so each is located once."""

    def __init__(self) -> None:
        self._checked: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def check(self, s3: Any, bucket: str, region: str) -> None:
        """ProviderError unless ``bucket`` is in ``region`` (before anything is uploaded)."""
        with self._lock:
            if (bucket, region) in self._checked:
                return
        with translated(f"locate bucket {bucket}"):
            found = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint")
        # GetBucketLocation answers null for us-east-1 and the legacy "EU" for eu-west-1.
        actual = {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(found, found)
        check_storage_region(PROVIDER, f"bucket {bucket}", actual, region)
        with self._lock:
            self._checked.add((bucket, region))


def stage(
    buckets: BucketRegions,
    options: SageMakerOptions,
    region: str,
    role: str,
    path: Path,
    sha256: str,
    progress: UploadProgress | None,
) -> DatasetRef:
    """Upload ``path`` (content hash ``sha256``) unless S3 holds it already; its ref."""
    from boto3.s3.transfer import TransferConfig

    s3 = client("s3", region)
    buckets.check(s3, options.bucket, region)
    key = dataset_key(options, sha256)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ProviderError(PROVIDER, f"cannot read {path}: {exc.strerror}") from None
    uri = f"s3://{options.bucket}/{key}"
    if not _reusable(s3, options, key, size, sha256):
        extra: dict[str, Any] = {"Metadata": {"sha256": sha256}, "ContentType": "application/jsonl"}
        if options.kms_key_id:
            extra.update(ServerSideEncryption="aws:kms", SSEKMSKeyId=options.kms_key_id)
        sent = 0
        lock = threading.Lock()

        def report(chunk: int) -> None:
            nonlocal sent
            with lock:  # the transfer manager calls back from its threads
                sent += chunk
                if progress is not None:
                    progress(min(sent, size), size)

        part = options.upload_part_mb * MiB
        config = TransferConfig(
            multipart_threshold=part, multipart_chunksize=part, max_concurrency=UPLOAD_CONCURRENCY
        )
        with translated(f"upload {path} to {uri}"):
            s3.upload_file(
                str(path), options.bucket, key, ExtraArgs=extra, Config=config, Callback=report
            )
        if not _reusable(s3, options, key, size, sha256):
            raise ProviderError(PROVIDER, f"{uri} does not hold what was uploaded")
    return DatasetRef(provider=PROVIDER, role=role, uri=uri, sha256=sha256, size_bytes=size)


def _reusable(s3: Any, options: SageMakerOptions, key: str, size: int, sha256: str) -> bool:
    """True when the object holds this content, encrypted as the options ask."""
    try:
        with translated("head object"):
            head = s3.head_object(Bucket=options.bucket, Key=key)
    except ProviderNotFoundError:
        return False
    if head.get("ContentLength") != size or head.get("Metadata", {}).get("sha256") != sha256:
        return False
    if options.kms_key_id:
        return bool(
            head.get("ServerSideEncryption") == "aws:kms"
            and _same_key(head.get("SSEKMSKeyId", ""), options.kms_key_id)
        )
    return True


def _same_key(actual: str, wanted: str) -> bool:
    """True when S3's key ARN is the key the options name (by ARN, id or suffix)."""
    return actual == wanted or actual.endswith(wanted.rsplit("/", 1)[-1])

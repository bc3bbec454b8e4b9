"""Staging: datasets to S3 under their content hash, SSE-KMS with the policy's key, tagged.

``<prefix>/datasets/<sha256>.jsonl`` is uploaded as planned (the plan's PutObject: the
encryption, the key and the tags), and reused when it holds this content encrypted as
planned (size, the sha256 in its metadata, the key); a reused object missing the planned
tags gets them. The bucket must be in the target's region, checked before any upload.
boto3's transfer manager uploads in parts, several at once, reporting progress.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from tunefleet.errors import ProviderError, ProviderNotFoundError
from tunefleet.kit.limits import check_storage_region
from tunefleet.provider import DatasetRef, UploadProgress
from tunefleet_sagemaker._client import PROVIDER, client, translated
from tunefleet_sagemaker._planning import StagingOptions, dataset_key

__all__ = ["BucketRegions", "same_key", "stage"]

MiB = 1 << 20
UPLOAD_CONCURRENCY = 8
MAX_OBJECT_TAGS = 10
"""S3: "You can associate up to 10 tags with an object" (Categorizing your objects using
tags, https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-tagging.html)."""
PLANNED = ("ServerSideEncryption", "SSEKMSKeyId", "Tagging")
"""The fields of the planned PutObject that every upload carries."""


class BucketRegions:
    """Buckets already found in the target's region, so each is located once."""

    def __init__(self) -> None:
        self._checked: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def check(self, s3: Any, bucket: str, region: str, provider: str = PROVIDER) -> None:
        """ProviderError unless ``bucket`` is in ``region`` (before anything is uploaded)."""
        with self._lock:
            if (bucket, region) in self._checked:
                return
        with translated(f"locate bucket {bucket}", provider=provider):
            found = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint")
        # GetBucketLocation answers null for us-east-1 and the legacy "EU" for eu-west-1.
        actual = {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(found, found)
        check_storage_region(provider, f"bucket {bucket}", actual, region)
        with self._lock:
            self._checked.add((bucket, region))


def stage(
    buckets: BucketRegions,
    options: StagingOptions,
    region: str,
    planned: Mapping[str, Any],
    role: str,
    path: Path,
    sha256: str,
    progress: UploadProgress | None,
    provider: str = PROVIDER,
) -> DatasetRef:
    """Upload ``path`` (content hash ``sha256``) as ``planned`` (the plan's PutObject)
    unless S3 holds it already; its ref."""
    from boto3.s3.transfer import TransferConfig

    s3 = client("s3", region)
    buckets.check(s3, options.bucket, region, provider)
    key = dataset_key(options, sha256)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ProviderError(provider, f"cannot read {path}: {exc.strerror}") from None
    uri = f"s3://{options.bucket}/{key}"
    wanted_key = planned.get("SSEKMSKeyId")
    if not _reusable(s3, options.bucket, key, size, sha256, wanted_key, provider):
        extra: dict[str, Any] = {"Metadata": {"sha256": sha256}, "ContentType": "application/jsonl"}
        extra.update({field: planned[field] for field in PLANNED if planned.get(field)})
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
        with translated(f"upload {path} to {uri}", provider=provider):
            s3.upload_file(
                str(path), options.bucket, key, ExtraArgs=extra, Config=config, Callback=report
            )
        if not _reusable(s3, options.bucket, key, size, sha256, wanted_key, provider):
            raise ProviderError(provider, f"{uri} does not hold what was uploaded")
    _tag(s3, options.bucket, key, dict(parse_qsl(planned.get("Tagging") or "", True)), provider)
    return DatasetRef(provider=provider, role=role, uri=uri, sha256=sha256, size_bytes=size)


def _reusable(
    s3: Any, bucket: str, key: str, size: int, sha256: str, kms_key: str | None, provider: str
) -> bool:
    """True when the object holds this content, encrypted as planned."""
    try:
        with translated("head object", provider=provider):
            head = s3.head_object(Bucket=bucket, Key=key)
    except ProviderNotFoundError:
        return False
    if head.get("ContentLength") != size or head.get("Metadata", {}).get("sha256") != sha256:
        return False
    if kms_key:
        return bool(
            head.get("ServerSideEncryption") == "aws:kms"
            and same_key(head.get("SSEKMSKeyId", ""), kms_key)
        )
    return True


def _tag(s3: Any, bucket: str, key: str, tags: dict[str, str], provider: str) -> None:
    """Make sure the object carries ``tags`` (an object staged by an earlier run, or by a
    version that did not tag, may lack them), keeping its other tags while they fit."""
    if not tags:
        return
    with translated(f"read the tags of s3://{bucket}/{key}", provider=provider):
        have = {
            t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
        }
    if all(have.get(name) == value for name, value in tags.items()):
        return
    merged = {**have, **tags}
    if len(merged) > MAX_OBJECT_TAGS:
        merged = tags  # plan checked that these fit; the policy's tags win
    with translated(f"tag s3://{bucket}/{key}", provider=provider):
        s3.put_object_tagging(
            Bucket=bucket,
            Key=key,
            Tagging={"TagSet": [{"Key": name, "Value": value} for name, value in merged.items()]},
        )


def same_key(actual: str, wanted: str) -> bool:
    """True when ``actual``, the key ARN S3 reports for an object (S3 answers with the key's
    ARN however the request named it), is the key ``wanted`` names by key ARN or key id.
    (Aliases are refused at plan: no alias can be compared without asking KMS.)"""
    if wanted.startswith("arn:"):
        return actual == wanted
    return actual == wanted or (actual.startswith("arn:") and actual.endswith(f":key/{wanted}"))

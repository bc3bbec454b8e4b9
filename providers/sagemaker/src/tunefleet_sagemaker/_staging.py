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
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from tunefleet.errors import ProviderError, ProviderNotFoundError
from tunefleet.kit.limits import check_storage_region
from tunefleet.provider import DatasetRef, UploadProgress
from tunefleet_sagemaker import _limits
from tunefleet_sagemaker._client import PROVIDER, client, translated
from tunefleet_sagemaker._planning import StagingOptions, dataset_key

__all__ = ["BucketRegions", "UploadParts", "same_key", "stage", "upload_parts"]

MiB = 1 << 20
UPLOAD_CONCURRENCY = 8
"""Parts in flight at once (TransferConfig.max_concurrency)."""
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


@dataclass(frozen=True)
class UploadParts:
    """How a file goes to S3: in one PutObject when smaller than ``threshold`` bytes, else in
    a multipart upload of ``part_bytes`` parts (the last one shorter)."""

    threshold: int
    part_bytes: int

    def count(self, size: int) -> int:
        """The requests that carry a file of ``size`` bytes: 1, or its number of parts."""
        return 1 if size < self.threshold else -(-size // self.part_bytes)


def upload_parts(size: int, part_mb: int | None) -> UploadParts:
    """The parts a file of ``size`` bytes is uploaded in.

    ``part_mb`` set (``upload_part_mb``): files of that many MiB or more go in parts of that
    size, as given; :func:`._limits.upload_violations` refuses one S3 cannot take.

    ``part_mb`` None, automatic: boto3's own defaults (TransferConfig's
    ``multipart_threshold`` and ``multipart_chunksize``, 8 MiB in boto3 1.x, read from the
    installed boto3), so a 100 MB file is 12 parts that keep all
    :data:`UPLOAD_CONCURRENCY` streams busy (the old fixed 64 MiB made it 2 parts);
    for files of more than 10,000 such parts, the smallest whole number of MiB that keeps
    the upload within S3's 10,000 parts, so a large file still has about 10,000 parts to
    spread over the streams (10 MiB for 100 GB; 525 MiB for 5 TiB; 5 GiB, the largest
    part, for the largest object S3 holds). The parts are never smaller than S3's 5 MiB.
    """
    if part_mb is not None:
        return UploadParts(threshold=part_mb * MiB, part_bytes=part_mb * MiB)
    from boto3.s3.transfer import TransferConfig  # the SDK stays out of import time

    defaults = TransferConfig()
    fitting = -(-size // (_limits.MAX_S3_PARTS * MiB)) * MiB  # whole MiB: 10,000 parts fit
    part = max(defaults.multipart_chunksize, _limits.MIN_S3_PART_BYTES, fitting)
    return UploadParts(
        threshold=defaults.multipart_threshold, part_bytes=min(part, _limits.MAX_S3_PART_BYTES)
    )


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
    unless S3 holds it already, in the parts :func:`upload_parts` gives; its ref.

    ProviderError (``limit_exceeded``) before any request when S3 could not take the file
    in those parts: larger than S3's largest object, or an ``upload_part_mb`` that makes
    more than 10,000 parts (refused rather than raised: the option says what is sent)."""
    from boto3.s3.transfer import TransferConfig

    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ProviderError(provider, f"cannot read {path}: {exc.strerror}") from None
    parts = upload_parts(size, options.upload_part_mb)
    found = _limits.upload_violations(size, parts.threshold, parts.part_bytes)
    if found:
        raise ProviderError(
            provider,
            f"cannot upload {path} to S3: " + "; ".join(f"{v.path} {v.reason}" for v in found),
            code="limit_exceeded",
        )
    s3 = client("s3", region)
    buckets.check(s3, options.bucket, region, provider)
    key = dataset_key(options, sha256)
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

        config = TransferConfig(
            multipart_threshold=parts.threshold,
            multipart_chunksize=parts.part_bytes,
            max_concurrency=UPLOAD_CONCURRENCY,
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

"""Staging: a dataset into the target's Cloud Storage bucket, content-addressed.

The object is ``<prefix>/datasets/<sha256>.jsonl`` (for Gemini tuning the converted file,
``<sha256>.gemini-v1.jsonl``), written with a resumable upload in chunks (progress after
each), with the customer key when the options name one, and only if no object of that
name exists (``ifGenerationMatch=0``, "Request preconditions",
https://cloud.google.com/storage/docs/request-preconditions): a concurrent run that wrote
it first is reused, never overwritten. Before anything is uploaded the bucket is read, and
one outside the target's region is refused (the data would rest elsewhere than the policy
was checked against).
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import IO, Any

from tunefleet.errors import AlreadyExistsError, ProviderError, ProviderNotFoundError
from tunefleet.kit.limits import check_storage_region
from tunefleet.provider import DatasetRef, Plan, UploadProgress
from tunefleet_vertex._client import PROVIDER, Where, storage_client, translated
from tunefleet_vertex.options import VertexOptions

__all__ = ["stage"]

MiB = 1 << 20
_CHUNK_UNIT = 256 * 1024
"""Resumable upload chunks are multiples of 256 KiB (google-cloud-storage's Blob.chunk_size)."""


class _Counting:
    """A binary file that reports how many bytes were read from it, for progress."""

    def __init__(self, stream: IO[bytes], total: int, progress: UploadProgress | None) -> None:
        self._stream = stream
        self._total = total
        self._progress = progress
        self._sent = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._sent += len(data)
        if self._progress is not None and data:
            self._progress(min(self._sent, self._total), self._total)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@functools.cache
def _bucket_location(where: Where, bucket: str) -> str:
    """The bucket's location, lowercase (``europe-west4``, ``eu``), read once a process."""
    with translated(f"read bucket {bucket}"):
        found = storage_client(where).get_bucket(bucket)
    return str(found.location or "").lower()


def _uploads(plan: Plan, role: str) -> dict[str, Any]:
    for request in plan.requests_for("stage"):
        if request.operation == "objects.insert" and request.body.get("role") == role:
            return dict(request.body)
    raise ProviderError(PROVIDER, f"the plan stages no {role} dataset", code="plan_outdated")


def _existing(blob: Any, sha256: str, kms_key: str | None) -> bool:
    """True when the object is there holding the dataset of ``sha256`` (and encrypted
    with ``kms_key`` when one is asked for)."""
    try:
        with translated(f"read object {blob.name}"):
            blob.reload()
    except ProviderNotFoundError:
        return False
    held = (blob.metadata or {}).get("sha256")
    if held != sha256:
        raise ProviderError(
            PROVIDER,
            f"object {blob.name} holds a dataset of sha256 {held}, not {sha256}: something "
            "other than tunefleet wrote it; delete it and stage again",
            code="object_mismatch",
        )
    # The object's key is reported with its version (…/cryptoKeyVersions/N).
    actual = str(blob.kms_key_name or "").split("/cryptoKeyVersions/")[0]
    if kms_key is not None and actual != kms_key:
        raise ProviderError(
            PROVIDER,
            f"object {blob.name} is encrypted with {actual or 'a Google-managed key'}, not "
            f"options.kms_key_name {kms_key}; delete it and stage again",
            code="kms_key_mismatch",
        )
    return True


def _upload(blob: Any, path: Path, sha256: str, role: str, progress: UploadProgress | None) -> None:
    size = path.stat().st_size
    blob.metadata = {"sha256": sha256, "tunefleet-role": role}
    with path.open("rb") as stream, translated(f"upload {blob.name}"):
        blob.upload_from_file(
            _Counting(stream, size, progress),
            size=size,
            content_type="application/jsonl",
            if_generation_match=0,
            # A failed chunk is sent again by the library (its default retry covers
            # uploads made conditional by if_generation_match).
        )


def _converted(source: Path, folder: Path, role: str) -> Path:
    """The dataset in Gemini's tuning format, in ``folder``, within Gemini tuning's limits
    (examples per dataset, bytes per file: ``tunefleet.kit.gemini``), refused before
    anything is uploaded otherwise."""
    from tunefleet.kit import gemini

    destination = folder / f"{source.stem}.gemini.jsonl"
    examples = (
        gemini.MAX_VALIDATION_EXAMPLES if role == "validation" else gemini.MAX_TRAINING_EXAMPLES
    )
    try:
        gemini.convert_dataset(
            source, destination, max_examples=examples, max_bytes=gemini.MAX_DATASET_BYTES
        )
    except gemini.GeminiConversionError as exc:
        raise ProviderError(PROVIDER, str(exc), code="dataset_not_convertible") from None
    return destination


def stage(
    plan: Plan, role: str, path: Path, sha256: str, progress: UploadProgress | None
) -> DatasetRef:
    """Check the bucket's region, upload the dataset (converted for Gemini tuning) unless
    its object is there; its ``gs://`` URI."""
    options = VertexOptions.model_validate(plan.options)
    upload = _uploads(plan, role)
    region = plan.region or ""
    where = Where.of(options, region)
    location = _bucket_location(where, options.bucket)
    check_storage_region(PROVIDER, f"bucket {options.bucket}", location, region)
    from tunefleet_vertex._planning import object_name

    name = object_name(options, sha256, role)
    chunk = max(_CHUNK_UNIT, options.upload_chunk_mb * MiB // _CHUNK_UNIT * _CHUNK_UNIT)
    with translated(f"reach bucket {options.bucket}"):
        blob = (
            storage_client(where)
            .bucket(options.bucket)
            .blob(name, chunk_size=chunk, kms_key_name=options.kms_key_name)
        )
    size = path.stat().st_size
    if _existing(blob, sha256, options.kms_key_name):
        if progress is not None:
            progress(size, size)
        return DatasetRef(
            provider=PROVIDER,
            role=role,
            uri=f"gs://{options.bucket}/{name}",
            sha256=sha256,
            size_bytes=int(blob.size or size),
        )
    with tempfile.TemporaryDirectory(prefix="tunefleet-vertex-") as folder:
        source = _converted(path, Path(folder), role) if upload.get("convert") else path
        sent = source.stat().st_size
        scaled = progress
        if progress is not None and sent != size and sent:
            # Progress counts the dataset's bytes (what the caller knows), not the
            # converted file's.
            def scaled(done: int, total: int) -> None:
                progress(done * size // sent, size)

        try:
            _upload(blob, source, sha256, role, scaled)
        except AlreadyExistsError:
            # Another run staged the same content between our check and our upload.
            _existing(blob, sha256, options.kms_key_name)
    if progress is not None:
        progress(size, size)
    return DatasetRef(
        provider=PROVIDER,
        role=role,
        uri=f"gs://{options.bucket}/{name}",
        sha256=sha256,
        size_bytes=sent,
    )

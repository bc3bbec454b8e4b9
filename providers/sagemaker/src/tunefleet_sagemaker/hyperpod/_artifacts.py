"""The golden set's answers a HyperPod job wrote: where they are, and reading them back.

A job planned with an evaluation runs the trainer with ``evaluation.predictions_dir`` set to
``<shared_path>/<prefix>/jobs/<job name>/predictions`` (:data:`._planning.PREDICTIONS_DIR`),
a folder of the cluster's shared storage. The storage shows the bucket: an FSx for Lustre
file system exports what the job writes there to ``s3://<bucket>/<prefix>/jobs/<job
name>/predictions/`` through its data repository association's automatic export, or a
Mountpoint for Amazon S3 volume writes it to S3 as the file is closed. So the answers are
read from S3, with one ranged GetObject each (``predictions.jsonl`` and
``baseline_predictions.jsonl``, named by the trainer's contract), never from the cluster.

FSx for Lustre exports asynchronously: with an ``AutoExportPolicy`` on the association,
"Amazon FSx for Lustre automatically exports the defined changes asynchronously once your
application finishes modifying the file" (FSx API reference, AutoExportPolicy,
https://docs.aws.amazon.com/fsx/latest/APIReference/API_AutoExportPolicy.html), with no
bound given, so a job may have succeeded before its last files are exported. An answers
file not in S3 yet (``NoSuchKey``) is therefore a :class:`TransientProviderError`: the
engine asks again, backing off, until it is there or its retries run out.
"""

from __future__ import annotations

from typing import Literal

from tunefleet.errors import ProviderError, ProviderNotFoundError, TransientProviderError
from tunefleet.provider import ArtifactRef, JobRef
from tunefleet_sagemaker.hyperpod._client import PROVIDER, aws, aws_translated
from tunefleet_sagemaker.hyperpod._planning import PREDICTIONS_DIR
from tunefleet_trainer.predictions import BASELINE_PREDICTIONS_NAME, PREDICTIONS_NAME

__all__ = ["FILES", "prediction_artifacts", "read_artifact"]

FILES = {"predictions": PREDICTIONS_NAME, "baseline_predictions": BASELINE_PREDICTIONS_NAME}
"""The file each kind of answers artifact is, in the job's predictions folder."""
_KINDS: tuple[Literal["predictions", "baseline_predictions"], ...] = (
    "predictions",
    "baseline_predictions",
)


def _folder(job: JobRef) -> tuple[str, str]:
    """(bucket, key prefix) of ``job``'s predictions folder in S3."""
    prefix = job.scope["output_prefix"].strip("/")
    return job.scope["bucket"], f"{prefix}/{PREDICTIONS_DIR}/"


def prediction_artifacts(job: JobRef) -> list[ArtifactRef]:
    """The answers the job was planned to write (its scope's ``predictions``: set only for a
    job planned with an evaluation), as S3 URIs under its output prefix."""
    kinds = job.scope.get("predictions", "").split(",")
    bucket, folder = _folder(job)
    return [
        ArtifactRef(kind=kind, uri=f"s3://{bucket}/{folder}{FILES[kind]}")
        for kind in _KINDS
        if kind in kinds
    ]


def read_artifact(job: JobRef, artifact: ArtifactRef, max_bytes: int) -> bytes:
    """The bytes of ``artifact``, one of ``job``'s answers files, from S3.

    One GetObject ranged to ``max_bytes`` + 1 bytes, so a larger file is never downloaded
    whole: ProviderError ``artifact_too_large`` when it holds more. An object not in S3
    yet right after the job ended (``NoSuchKey``): TransientProviderError, since the
    shared storage exports the job's files to the bucket asynchronously (FSx for Lustre's
    automatic export, see the module docstring). Only the job's own ``predictions`` and
    ``baseline_predictions`` are read (``artifact_unreadable`` for another kind,
    ``artifact_invalid`` for another job's URI). Without ``s3:ListBucket`` on the bucket
    S3 answers a missing object ``403 AccessDenied`` instead, a ProviderError.
    """
    wanted = FILES.get(artifact.kind)
    if wanted is None:
        raise ProviderError(
            PROVIDER,
            f"{artifact.kind} artifacts are not read back (only {', '.join(FILES)})",
            code="artifact_unreadable",
        )
    bucket, folder = _folder(job)
    expected = f"s3://{bucket}/{folder}{wanted}"
    if artifact.uri != expected:
        raise ProviderError(
            PROVIDER,
            f"{artifact.uri} is not the {artifact.kind} of job {job.id} ({expected})",
            code="artifact_invalid",
        )
    key = f"{folder}{wanted}"
    s3 = aws("s3", str(job.region))
    try:
        with aws_translated(f"read {expected}"):
            response = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{max_bytes}")
    except ProviderNotFoundError as exc:
        raise TransientProviderError(
            PROVIDER,
            f"{expected} is not in S3 yet: the cluster's shared storage exports the job's "
            f"files to the bucket asynchronously (FSx for Lustre auto-export); it is read "
            f"again. If it never comes, check the job's log for the answers written to "
            f"{folder}{wanted} on the shared storage and the file system's data repository "
            "association (auto-export of new and changed files)",
            code=exc.code,
            status=exc.status,
        ) from None
    except ProviderError as exc:
        if exc.code == "InvalidRange":  # a ranged GET of an empty object
            return b""
        raise
    body = response["Body"]
    try:
        total = _total_size(response)
        if total is not None and total > max_bytes:
            raise ProviderError(
                PROVIDER,
                f"{expected} is {total} bytes, more than the {max_bytes} read; it was not "
                "downloaded",
                code="artifact_too_large",
            )
        with aws_translated(f"read {expected}"):
            data: bytes = body.read(max_bytes + 1)
    finally:
        body.close()
    if len(data) > max_bytes:
        raise ProviderError(
            PROVIDER, f"{expected} is larger than {max_bytes} bytes", code="artifact_too_large"
        )
    return data


def _total_size(response: dict[str, object]) -> int | None:
    """The object's whole size: from ``Content-Range`` (``bytes 0-9/1234``) of a ranged
    answer, else ``Content-Length`` (an answer of the whole object)."""
    ranged = str(response.get("ContentRange") or "")
    if "/" in ranged:
        total = ranged.rsplit("/", 1)[1]
        return int(total) if total.isdigit() else None
    length = response.get("ContentLength")
    return int(length) if isinstance(length, int) else None

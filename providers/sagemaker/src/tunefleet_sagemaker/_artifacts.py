"""The golden set's answers a training job wrote: where they are, and reading them back.

A job planned with an evaluation runs the trainer with ``evaluation.predictions_dir`` set
to ``/opt/ml/output/data`` (:data:`._planning.OUTPUT_DATA_DIR`). SageMaker uploads that
directory when the job ends as one gzip-compressed tar archive, apart from the model
("How Amazon SageMaker AI Processes Training Output",
https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo-output.html),
at ``<S3OutputPath>/<job name>/output/output.tar.gz``, beside ``model.tar.gz`` (the key
AWS's own SDK builds: ``build_nova_output_tar_gz_s3_uri`` in sagemaker-core's
``training/utils.py``). Its members sit at the archive's root, as the files sat in the
directory.

An artifact's URI names the archive and the member: ``s3://<bucket>/<key of
output.tar.gz>#predictions.jsonl``. Reading one is a GetObject of the archive (a few
hundred kilobytes for 500 answers) whose size is checked before its body is read, then
the one member taken out in memory: never extracted to disk, only a regular file, its size
checked before it is read, and the decompression bounded, so a hostile archive costs
neither disk nor memory.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import zlib
from typing import Any

from tunefleet.errors import ProviderError, ProviderNotFoundError
from tunefleet.provider import ArtifactRef, JobRef
from tunefleet_sagemaker._client import PROVIDER, client, translated
from tunefleet_sagemaker._planning import OUTPUT_DATA_DIR
from tunefleet_trainer.predictions import BASELINE_PREDICTIONS_NAME, PREDICTIONS_NAME

__all__ = [
    "ARCHIVE",
    "MEMBERS",
    "archive_limit",
    "archive_uri",
    "member",
    "prediction_artifacts",
    "read_artifact",
    "split_uri",
]

ARCHIVE = "output.tar.gz"
MEMBERS = {"predictions": PREDICTIONS_NAME, "baseline_predictions": BASELINE_PREDICTIONS_NAME}
"""The member of the archive each kind of artifact is, named by the trainer's contract."""
MiB = 1 << 20
ARCHIVE_SLACK = MiB
"""Tar headers and padding, gzip's framing, and room for a stray small file."""
UNPACKED_FACTOR = 8
"""How many times ``max_bytes`` (plus 16 MiB) of tar stream may be decompressed while
looking for a member: the two answer files are at most 2 x max_bytes, so more than that
is a gzip bomb or not the trainer's archive."""


def archive_limit(max_bytes: int) -> int:
    """The largest archive read for members of at most ``max_bytes``: it holds the two
    answer files, and gzip never makes a file more than a few bytes larger, so an archive
    above four times ``max_bytes`` is refused before a byte of it is downloaded."""
    return 4 * max_bytes + ARCHIVE_SLACK


def archive_uri(described: dict[str, Any]) -> str:
    """The S3 URI of the ``output.tar.gz`` of the job ``described`` (DescribeTrainingJob)."""
    output = str(described["OutputDataConfig"]["S3OutputPath"]).rstrip("/")
    return f"{output}/{described['TrainingJobName']}/output/{ARCHIVE}"


def prediction_artifacts(described: dict[str, Any], config: dict[str, Any]) -> list[ArtifactRef]:
    """The answers the job ``described`` was created to write (its trainer ``config``, as
    the job holds it): none without an evaluation, the baseline's only when it asked for
    them."""
    evaluation = config.get("evaluation")
    if not isinstance(evaluation, dict) or evaluation.get("predictions_dir") != OUTPUT_DATA_DIR:
        return []
    uri = archive_uri(described)
    refs = [ArtifactRef(kind="predictions", uri=f"{uri}#{PREDICTIONS_NAME}")]
    if evaluation.get("baseline"):
        refs.append(
            ArtifactRef(kind="baseline_predictions", uri=f"{uri}#{BASELINE_PREDICTIONS_NAME}")
        )
    return refs


def split_uri(uri: str) -> tuple[str, str, str]:
    """(bucket, key, member) of ``s3://bucket/key#member``; ValueError otherwise."""
    location, _, name = uri.rpartition("#")
    if not location.startswith("s3://") or not name:
        raise ValueError(f"{uri!r} is not s3://<bucket>/<key>#<member>")
    bucket, _, key = location.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise ValueError(f"{uri!r} is not s3://<bucket>/<key>#<member>")
    return bucket, key, name


def read_artifact(job: JobRef, artifact: ArtifactRef, max_bytes: int) -> bytes:
    """The bytes of ``artifact``, a member of ``job``'s output.tar.gz.

    ProviderNotFoundError when the archive or the member is not there; ProviderError
    ``artifact_too_large`` when the member holds more than ``max_bytes`` or the archive is
    larger than one holding such members can be; ``artifact_invalid`` when the archive is
    not a gzip-compressed tar or the member is not a regular file.
    """
    wanted = MEMBERS.get(artifact.kind)
    if wanted is None:
        raise ProviderError(
            PROVIDER,
            f"{artifact.kind} artifacts are not read back (only {', '.join(MEMBERS)})",
            code="artifact_unreadable",
        )
    try:
        bucket, key, name = split_uri(artifact.uri)
    except ValueError as exc:
        raise ProviderError(PROVIDER, str(exc), code="artifact_invalid") from None
    if name != wanted or not key.endswith(f"/{job.id}/output/{ARCHIVE}"):
        raise ProviderError(
            PROVIDER,
            f"{artifact.uri} is not the {artifact.kind} of training job {job.id} "
            f"(<output path>/{job.id}/output/{ARCHIVE}#{wanted})",
            code="artifact_invalid",
        )
    location = f"s3://{bucket}/{key}"
    limit = archive_limit(max_bytes)
    s3 = client("s3", str(job.region))
    with translated(f"read {location}"):
        # GetObject answers with the object's size before its body is read: a single
        # request, and the size checked is the size of the very object whose body is read
        # (a HeadObject first could describe an object replaced since).
        response = s3.get_object(Bucket=bucket, Key=key)
    body = response["Body"]
    try:
        size = int(response.get("ContentLength") or 0)
        if size > limit:
            raise ProviderError(
                PROVIDER,
                f"{location} is {size} bytes, more than an archive of answers of at most "
                f"{max_bytes} bytes each can be ({limit}); it was not downloaded",
                code="artifact_too_large",
            )
        with translated(f"read {location}"):
            data = body.read(limit + 1)
    finally:
        body.close()
    if len(data) > limit:  # the object grew between its size and its body
        raise ProviderError(
            PROVIDER, f"{location} is larger than {limit} bytes", code="artifact_too_large"
        )
    return member(data, wanted, max_bytes, where=location)


class _Bounded(io.RawIOBase):
    """A stream that refuses to yield more than ``budget`` bytes of ``inner``."""

    def __init__(self, inner: io.BufferedIOBase, budget: int, where: str) -> None:
        self._inner, self._left, self._where = inner, budget, where

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self._inner.read(size if size >= 0 else self._left + 1)
        self._left -= len(chunk)
        if self._left < 0:
            raise ProviderError(
                PROVIDER,
                f"{self._where} unpacks to more than answer files can be (a gzip bomb, or not "
                "the trainer's archive)",
                code="artifact_too_large",
            )
        return chunk


def _name(member_name: str) -> str:
    name = member_name
    while name.startswith("./"):
        name = name[2:]
    return name


def member(data: bytes, name: str, max_bytes: int, *, where: str) -> bytes:
    """The content of the regular file ``name`` at the root of the gzip-compressed tar
    ``data``, read in memory: ProviderNotFoundError when there is none, ProviderError
    ``artifact_too_large`` when it holds more than ``max_bytes`` (checked on its header,
    before it is read), ``artifact_invalid`` when ``data`` is no such archive or the member
    is a link, a directory or a device."""
    stream = _Bounded(
        gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb"),
        UNPACKED_FACTOR * max_bytes + 16 * MiB,
        where,
    )
    try:
        # "r|": a stream, read forwards once; members before the one wanted are skipped as
        # they go by, never held.
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for entry in archive:
                if _name(entry.name) != name:
                    continue
                if not entry.isreg():
                    raise ProviderError(
                        PROVIDER,
                        f"{where}: {name} is not a regular file in the archive",
                        code="artifact_invalid",
                    )
                if entry.size > max_bytes:
                    raise ProviderError(
                        PROVIDER,
                        f"{where}: {name} is {entry.size} bytes, more than the {max_bytes} read",
                        code="artifact_too_large",
                    )
                handle = archive.extractfile(entry)
                content = handle.read(entry.size) if handle is not None else b""
                if len(content) != entry.size:
                    raise ProviderError(
                        PROVIDER, f"{where}: {name} is cut short", code="artifact_invalid"
                    )
                return content
    except (tarfile.TarError, OSError, EOFError, zlib.error):
        # By the exception's type, never its words: not gzip, not tar, or cut short.
        raise ProviderError(
            PROVIDER,
            f"{where} is not a complete gzip-compressed tar archive",
            code="artifact_invalid",
        ) from None
    raise ProviderNotFoundError(
        PROVIDER,
        f"{where} holds no {name}: the trainer wrote no such answers (see the job's log)",
        code="NoSuchMember",
    )

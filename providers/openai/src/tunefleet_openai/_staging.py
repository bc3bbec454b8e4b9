"""Staging: datasets uploaded as fine-tune files, content-addressed by name.

The Files API keeps no metadata, so the content hash goes in the file name
(``tunefleet-<sha256>.jsonl``); staging lists the project's fine-tune files and reuses one
with that name and size instead of uploading again. Small files go up in one
``files.create``; large ones through the Uploads API (``uploads.create``, 64 MB parts,
``uploads.complete`` with the MD5 the service checks), reporting progress after each part;
the SDK retries a throttled part alone rather than the whole file. On Azure, staging first
checks that the resource is in the target's region, and waits until the service has
imported the file.

:func:`upload_requests` is the one description of what an upload sends: planning shows it
and staging sends it, so the planned requests are the requests. Their documented limits
(:mod:`tunefleet_openai._limits`) are checked at plan; staging checks them again before
sending anything, for a plan made without the file's size.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from tunefleet.errors import ProviderError, TransientProviderError
from tunefleet.kit.limits import check_storage_region
from tunefleet.provider import DatasetRef, NativeRequest, Plan, UploadProgress
from tunefleet_openai import _limits
from tunefleet_openai._azure import Management
from tunefleet_openai._client import PROVIDER, translated
from tunefleet_openai.options import OpenAIOptions

if TYPE_CHECKING:
    import openai

__all__ = [
    "FILE_URI_PREFIX",
    "MIME_TYPE",
    "PURPOSE",
    "RegionCheck",
    "file_id",
    "filename_for",
    "find_uploaded",
    "multipart",
    "stage",
    "upload",
    "upload_limits",
    "upload_requests",
    "wait_until_processed",
]

FILE_URI_PREFIX = "openai://files/"
"""A staged dataset's (and a result file's) URI: this prefix, then the file's id."""
PURPOSE: Final = "fine-tune"
MIME_TYPE = "text/jsonl"
PROCESSING_TIMEOUT = 600.0
"""Seconds a file may take to be processed before a job can use it (Azure)."""
MIN_LIFETIME = 24 * 3600
"""A file that expires sooner than this is not reused: the job may still need it."""


class RegionCheck:
    """Azure: refuses to send data to a resource outside the region the plan was checked
    against (the placement policy allowed that region, not the resource's). Each resource
    and region is looked up once per process."""

    def __init__(self) -> None:
        self._passed: set[str] = set()

    def __call__(self, plan: Plan, options: OpenAIOptions) -> None:
        if options.flavor != "azure":
            return  # the OpenAI API does not say where it keeps files or trains
        key = f"{options.model_dump_json()}|{plan.region}"
        if key in self._passed:
            return
        check_storage_region(
            PROVIDER,
            f"Azure OpenAI resource {options.azure_resource}",
            Management(options).location(),
            str(plan.region),
        )
        self._passed.add(key)


def stage(
    client: openai.OpenAI,
    options: OpenAIOptions,
    role: str,
    path: Path,
    sha256: str,
    progress: UploadProgress | None,
) -> DatasetRef:
    """The fine-tune file holding ``path`` (content hash ``sha256``): one already there, or
    a new upload; on Azure, once the service has imported it."""
    size = _size(path)
    requests = upload_requests(role, size, sha256, options)
    broken = upload_limits(options.flavor, requests)
    if broken:
        raise ProviderError(
            PROVIDER,
            f"{path} cannot be uploaded: {'; '.join(broken)}; nothing was uploaded",
            code="over_limit",
        )
    file = find_uploaded(client, sha256, size)
    if file is None:
        file = upload(client, path, sha256, options, progress, requests)
    if options.flavor == "azure":
        file = wait_until_processed(client, file)
    return DatasetRef(
        provider=PROVIDER,
        role=role,
        uri=FILE_URI_PREFIX + file.id,
        sha256=sha256,
        size_bytes=size,
    )


def file_id(ref: DatasetRef) -> str:
    """The file id of a dataset this provider staged."""
    if not ref.uri.startswith(FILE_URI_PREFIX):
        raise ProviderError(
            PROVIDER, f"{ref.uri} is not a file staged by the openai provider", code="foreign_file"
        )
    return ref.uri.removeprefix(FILE_URI_PREFIX)


def filename_for(sha256: str) -> str:
    """The name a dataset with content hash ``sha256`` is uploaded under."""
    return f"tunefleet-{sha256}.jsonl"


def multipart(size: int, options: OpenAIOptions) -> bool:
    """Whether a file of ``size`` bytes goes through the Uploads API: from the options'
    threshold on, and always above the Files API's per-file limit."""
    return size >= options.multipart_threshold_bytes or size > _limits.FILES_API_MAX_BYTES


def upload_requests(
    role: str, size: int | None, sha256: str | None, options: OpenAIOptions
) -> list[NativeRequest]:
    """What uploading the ``role`` dataset sends, in order: one createFile (a multipart form:
    ``purpose`` and the ``file`` part, whose name, type and size the body shows), or
    createUpload, an addUploadPart per part and completeUpload. Without a ``size`` (a plan
    made without reading the file) the createFile is shown without one; staging, which
    knows it, decides. Nothing is sent when the file is already there."""
    filename = filename_for(sha256) if sha256 else f"tunefleet-<sha256 of {role}>.jsonl"
    reused = "skipped when a fine-tune file with the same name and size is there"
    if size is None or not multipart(size, options):
        file: dict[str, Any] = {"filename": filename, "content_type": MIME_TYPE}
        if size is not None:
            file["bytes"] = size
        return [
            NativeRequest(
                phase="stage",
                service="openai",
                operation="createFile",
                body={"purpose": PURPOSE, "file": file},
                purpose=f"upload the {role} dataset ({reused})",
            )
        ]
    step = options.upload_part_bytes
    parts = [min(step, size - offset) for offset in range(0, size, step)]
    requests = [
        NativeRequest(
            phase="stage",
            service="openai",
            operation="createUpload",
            body={"bytes": size, "filename": filename, "mime_type": MIME_TYPE, "purpose": PURPOSE},
            purpose=f"upload the {role} dataset in {len(parts)} part(s) ({reused})",
        )
    ]
    requests += [
        NativeRequest(
            phase="stage",
            service="openai",
            operation="addUploadPart",
            body={"data": {"bytes": part}},
            purpose=f"part {number} of {len(parts)} of the {role} dataset",
        )
        for number, part in enumerate(parts, 1)
    ]
    requests.append(
        NativeRequest(
            phase="stage",
            service="openai",
            operation="completeUpload",
            body={
                "part_ids": [f"${{{role}_part_{number}}}" for number in range(1, len(parts) + 1)],
                "md5": f"${{{role}_md5}}",
            },
            purpose=f"complete the upload of the {role} dataset (the service checks the MD5)",
        )
    )
    return requests


def upload_limits(flavor: str, requests: list[NativeRequest]) -> list[str]:
    """Each documented limit the upload ``requests`` break, with its source."""
    broken: list[str] = []
    for request in requests:
        schema = _limits.schema_for(flavor, request.operation)
        if schema is not None:
            broken += [
                f"{request.operation} {problem}"
                for problem in _limits.violations(schema, request.body)
            ]
    return broken


def find_uploaded(client: openai.OpenAI, sha256: str, size: int) -> Any | None:
    """The project's usable fine-tune file holding this content, newest first, or None."""
    wanted = filename_for(sha256)
    now = time.time()
    with translated("list files"):
        for file in client.files.list(purpose=PURPOSE, order="desc"):
            if file.filename != wanted or file.bytes != size:
                continue
            if getattr(file, "status", None) == "error":
                continue
            expires = getattr(file, "expires_at", None)
            if expires is not None and expires < now + MIN_LIFETIME:
                continue
            return file
    return None


def upload(
    client: openai.OpenAI,
    path: Path,
    sha256: str,
    options: OpenAIOptions,
    progress: UploadProgress | None,
    requests: list[NativeRequest] | None = None,
) -> Any:
    """Upload ``path`` as a fine-tune file by ``requests`` (:func:`upload_requests`);
    returns the File object."""
    size = _size(path)
    requests = requests or upload_requests("dataset", size, sha256, options)
    first = requests[0]
    if first.operation == "createUpload":
        file = _upload_in_parts(client, path, sha256, size, options, progress, first.body)
    else:
        data = _read(path, sha256)
        form = first.body["file"]
        with translated("upload file"):
            file = client.files.create(
                file=(form["filename"], data, form["content_type"]),
                purpose=first.body["purpose"],
            )
        if progress is not None:
            progress(size, size)
    if file.bytes != size:
        raise ProviderError(
            PROVIDER,
            f"upload of {path} stored {file.bytes:,} bytes, not {size:,} (file {file.id})",
            code="upload_size_mismatch",
        )
    return file


def _unreadable(path: Path, exc: OSError) -> ProviderError:
    return ProviderError(PROVIDER, f"cannot read {path}: {exc.strerror}", code="unreadable_file")


def _changed(path: Path) -> ProviderError:
    return ProviderError(
        PROVIDER, f"{path} changed since it was validated (sha256 differs)", code="dataset_changed"
    )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise _unreadable(path, exc) from None


def _read(path: Path, sha256: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _unreadable(path, exc) from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise _changed(path)
    return data


def _upload_in_parts(
    client: openai.OpenAI,
    path: Path,
    sha256: str,
    size: int,
    options: OpenAIOptions,
    progress: UploadProgress | None,
    body: dict[str, Any],
) -> Any:
    with translated("create upload"):
        pending = client.uploads.create(**body)
    try:
        part_ids: list[str] = []
        md5 = hashlib.md5(usedforsecurity=False)
        digest = hashlib.sha256()
        sent = 0
        try:
            source = path.open("rb")
        except OSError as exc:
            raise _unreadable(path, exc) from None
        with source:
            while chunk := source.read(options.upload_part_bytes):
                md5.update(chunk)
                digest.update(chunk)
                with translated(f"upload part {len(part_ids) + 1}"):
                    part = client.uploads.parts.create(pending.id, data=chunk)
                part_ids.append(part.id)
                sent += len(chunk)
                if progress is not None:
                    progress(sent, size)
        if digest.hexdigest() != sha256:
            raise _changed(path)
        with translated("complete upload"):
            done = client.uploads.complete(pending.id, part_ids=part_ids, md5=md5.hexdigest())
    except BaseException:
        # An abandoned upload would linger for an hour holding its parts.
        try:
            with translated("cancel upload"):
                client.uploads.cancel(pending.id)
        except ProviderError:
            pass
        raise
    if done.file is None:
        raise ProviderError(
            PROVIDER, f"upload {pending.id} completed without a file", code="upload_without_file"
        )
    return done.file


def wait_until_processed(client: openai.OpenAI, file: Any, poll: float = 1.0) -> Any:
    """``file`` once the service has processed it; ProviderError if it rejects it.

    Azure OpenAI imports an upload before a job may use it (``pending``, then ``processed``
    or ``error``); the OpenAI API answers ``processed`` at once.
    """
    deadline = time.monotonic() + PROCESSING_TIMEOUT
    while getattr(file, "status", "processed") not in {"processed", "error"}:
        if time.monotonic() > deadline:
            raise TransientProviderError(
                PROVIDER,
                f"file {file.id} still {file.status} after {PROCESSING_TIMEOUT:g}s",
                code="file_processing_timeout",
            )
        time.sleep(poll)
        with translated("retrieve file"):
            file = client.files.retrieve(file.id)
    if file.status == "error":
        details = getattr(file, "status_details", None) or "no details given"
        raise ProviderError(
            PROVIDER, f"the service rejected file {file.id}: {details}", code="file_rejected"
        )
    return file

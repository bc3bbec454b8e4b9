"""Staging: a dataset into the workspace's blob datastore, registered as a data asset.

The blob is ``<prefix>/datasets/<sha256>.jsonl`` in the datastore's container, written
with azure-storage-blob in parallel blocks (with the policy's encryption scope), never
over an existing blob: content-addressed, so a blob of that name holds that content, and
a concurrent run that wrote it first is reused. The data asset is named after the run
and the role and versioned by the hash (:func:`._planning.data_asset`); a version that
exists is reused, so a re-run uploads and registers nothing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tunefleet.errors import AlreadyExistsError, ProviderError, ProviderNotFoundError
from tunefleet.provider import DatasetRef, Plan, UploadProgress
from tunefleet_azureml._client import PROVIDER, credential, ensure_version, translated
from tunefleet_azureml._planning import blob_path, data_asset_uri, data_request
from tunefleet_azureml._workspace import Workspaces
from tunefleet_azureml.options import AzureMLOptions

__all__ = ["stage"]

MiB = 1 << 20


def _blob(options: AzureMLOptions, account_url: str, container: str, path: str) -> Any:
    from azure.storage.blob import BlobClient

    block = options.upload_block_mb * MiB
    return BlobClient(
        account_url,
        container,
        path,
        credential=credential(),
        max_block_size=block,
        max_single_put_size=block,
        connection_timeout=10,
        read_timeout=120,
    )


def _uploaded(blob: Any, size: int, options: AzureMLOptions) -> bool:
    """True when the blob is there with ``size`` bytes (and the scope asked for)."""
    try:
        with translated(f"read blob {blob.blob_name}"):
            properties = blob.get_blob_properties()
    except ProviderNotFoundError:
        return False
    if properties.size != size:
        raise ProviderError(
            PROVIDER,
            f"blob {blob.blob_name} holds {properties.size} bytes, not the dataset's {size}: "
            "something other than tunefleet wrote it; delete it and stage again",
            code="blob_mismatch",
        )
    scope = options.encryption_scope
    if scope is not None and properties.encryption_scope not in (None, scope):
        raise ProviderError(
            PROVIDER,
            f"blob {blob.blob_name} is encrypted with scope {properties.encryption_scope!r}, "
            f"not options.encryption_scope {scope!r}",
            code="encryption_scope_mismatch",
        )
    return True


def _upload(
    blob: Any, path: Path, sha256: str, options: AzureMLOptions, progress: UploadProgress | None
) -> None:
    size = path.stat().st_size

    def hook(sent: int, total: int | None) -> None:
        if progress is not None:
            progress(sent, total or size)

    settings: dict[str, Any] = {
        "length": size,
        "overwrite": False,
        "max_concurrency": options.upload_concurrency,
        "metadata": {"sha256": sha256},
        "progress_hook": hook,
    }
    if options.encryption_scope:
        settings["encryption_scope"] = options.encryption_scope
    try:
        with path.open("rb") as stream, translated(f"upload {blob.blob_name}"):
            blob.upload_blob(stream, **settings)
    except AlreadyExistsError:
        # Another run staged the same content between our check and our upload.
        _uploaded(blob, size, options)
    if progress is not None:
        progress(size, size)


_DATASTORE_PATH = re.compile(r"azureml://(?:subscriptions/.+/)?datastores/([^/]+)/paths/(.+)$")


def _datastore_path(uri: str) -> tuple[str, str] | None:
    """(datastore, path) of a datastore URI in its short or long form (the service may
    store ``azureml://subscriptions/.../workspaces/<ws>/datastores/<ds>/paths/<p>``)."""
    found = _DATASTORE_PATH.match(uri)
    return (found.group(1), found.group(2)) if found else None


def _register(options: AzureMLOptions, name: str, role: str, sha256: str) -> str:
    """The data asset version of the dataset, registered unless it is; its URI."""
    request = data_request(options, name, role, sha256)
    version = sha256[:32]
    expected = request["body"]["properties"]["dataUri"]
    found = ensure_version(options, request)
    if found is not None:
        uri = (found.get("properties") or {}).get("dataUri")
        if _datastore_path(str(uri)) != _datastore_path(expected):
            raise ProviderError(
                PROVIDER,
                f"data asset {name}:{version} points at {uri}, not at {expected}",
                code="data_asset_mismatch",
            )
    return data_asset_uri(options, name, version)


def stage(
    workspaces: Workspaces,
    plan: Plan,
    role: str,
    path: Path,
    sha256: str,
    progress: UploadProgress | None,
) -> DatasetRef:
    """Check the workspace against the plan's expectations, upload the dataset unless its
    blob is there, register its data asset version unless it is; its URI."""
    options = AzureMLOptions.model_validate(plan.options)
    expect = plan.request("Workspaces_Get", phase="stage").body["expect"]
    uploads = [
        request.body
        for request in plan.requests_for("stage")
        if request.operation == "PutBlockList" and request.body.get("role") == role
    ]
    if not uploads:
        raise ProviderError(PROVIDER, f"the plan stages no {role} dataset", code="plan_outdated")
    workspaces.check(expect, options)
    datastore = workspaces.datastore(options)
    key = blob_path(options, sha256)
    account_url = datastore.account_url(options.storage_account_url)
    blob = _blob(options, account_url, datastore.container, key)
    size = path.stat().st_size
    if not _uploaded(blob, size, options):
        _upload(blob, path, sha256, options, progress)
    elif progress is not None:
        progress(size, size)
    uri = _register(options, uploads[0]["dataAsset"], role, sha256)
    return DatasetRef(provider=PROVIDER, role=role, uri=uri, sha256=sha256, size_bytes=size)

"""The golden set's answers a command job wrote, read back from the datastore.

The trainer writes ``predictions.jsonl`` (and ``baseline_predictions.jsonl``) to the job's
``predictions`` output, which Azure ML uploads to the datastore when the job ends, apart
from the model: reading them downloads nothing else. The blob is read with the signed-in
identity, never more than the caller's limit.
"""

from __future__ import annotations

import re

from tunefleet.errors import ProviderError
from tunefleet.provider import ArtifactRef, JobRef
from tunefleet_azureml._client import PROVIDER, Where, arm, credential, translated

__all__ = ["read_artifact"]

_DATASTORE_URI = re.compile(r"^azureml://datastores/([a-zA-Z0-9_]+)/paths/(.+)$")


def read_artifact(job: JobRef, artifact: ArtifactRef, max_bytes: int) -> bytes:
    """The bytes of ``artifact`` (a file in a datastore); ProviderError ``too_large`` when
    it holds more than ``max_bytes``."""
    from azure.storage.blob import BlobClient

    found = _DATASTORE_URI.match(artifact.uri)
    if found is None:
        raise ProviderError(PROVIDER, f"{artifact.uri} is not a file in a datastore")
    datastore, path = found.groups()
    where = Where.from_scope(job.scope)
    with translated(f"read datastore {datastore}"):
        properties = (
            dict(arm(where).datastores.get(where.resource_group, where.workspace, datastore)).get(
                "properties"
            )
            or {}
        )
    account_url = job.scope.get("storage_account_url") or (
        f"{properties.get('protocol') or 'https'}://{properties['accountName']}.blob."
        f"{properties.get('endpoint') or 'core.windows.net'}"
    )
    blob = BlobClient(account_url, str(properties["containerName"]), path, credential=credential())
    with translated(f"read {artifact.uri}"):
        size = int(blob.get_blob_properties().size)
        if size > max_bytes:
            raise ProviderError(
                PROVIDER,
                f"{artifact.uri} holds {size} bytes, over the {max_bytes} read",
                code="too_large",
            )
        data: bytes = blob.download_blob().readall()
    return data

"""The golden set's answers a custom job wrote, read back from Cloud Storage.

The trainer writes ``predictions.jsonl`` (and ``baseline_predictions.jsonl``) to the
folder the job's ``--predictions-dir`` names (under the job's base output directory,
through Cloud Storage FUSE), apart from the model: reading them downloads nothing else.
The object is read with the signed-in identity, never more than the caller's limit.
"""

from __future__ import annotations

import re

from tunefleet.errors import ProviderError
from tunefleet.provider import ArtifactRef, JobRef
from tunefleet_vertex._client import PROVIDER, Where, storage_client, translated

__all__ = ["read_artifact"]

_GS_URI = re.compile(r"^gs://([^/]+)/(.+)$")


def read_artifact(job: JobRef, artifact: ArtifactRef, max_bytes: int) -> bytes:
    """The bytes of ``artifact`` (a ``gs://`` object); ProviderError ``too_large`` when it
    holds more than ``max_bytes``."""
    found = _GS_URI.match(artifact.uri)
    if found is None:
        raise ProviderError(PROVIDER, f"{artifact.uri} is not a Cloud Storage object")
    bucket, name = found.groups()
    where = Where.from_scope(job.scope)
    with translated(f"read {artifact.uri}"):
        blob = storage_client(where).bucket(bucket).get_blob(name)
        if blob is None:
            raise ProviderError(PROVIDER, f"{artifact.uri} does not exist", code="NOT_FOUND")
        if int(blob.size or 0) > max_bytes:
            raise ProviderError(
                PROVIDER,
                f"{artifact.uri} holds {blob.size} bytes, over the {max_bytes} read",
                code="too_large",
            )
        data: bytes = blob.download_as_bytes()
    return data

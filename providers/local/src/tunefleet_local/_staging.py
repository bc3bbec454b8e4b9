"""Staging: a dataset copied into ``<workdir>/datasets/<sha256>.jsonl``.

The copy is content-addressed (staging the same content again copies nothing) and hashed
while it is written, so a file that changed since validation is refused rather than
trained on. It appears under its final name only once complete.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunefleet.errors import ProviderError
from tunefleet.provider import DatasetRef, UploadProgress
from tunefleet_local.options import workdir

__all__ = ["BLOCK", "stage"]

BLOCK = 1 << 20
"""Bytes copied (and reported to ``progress``) at a time."""


def stage(
    provider: str,
    options: Mapping[str, Any],
    role: str,
    path: Path,
    sha256: str,
    progress: UploadProgress | None = None,
) -> DatasetRef:
    """Copy ``path`` (content hash ``sha256``) into the work directory of ``options``.

    ProviderError with the errno's name as ``code`` when the copy fails (``ENOSPC``,
    ``EACCES``...), or ``content_changed`` when the bytes copied do not hash to ``sha256``.
    """
    folder = workdir(options) / "datasets"
    folder.mkdir(exist_ok=True)
    staged = folder / f"{sha256}.jsonl"
    if not staged.exists():
        _copy(provider, path, sha256, staged, progress)
    return DatasetRef(
        provider=provider,
        role=role,
        uri=staged.as_uri(),
        sha256=sha256,
        size_bytes=staged.stat().st_size,
    )


def _copy(
    provider: str, path: Path, sha256: str, staged: Path, progress: UploadProgress | None
) -> None:
    # A partial file of its own per call: two targets of one run may stage the same content
    # at once, from two threads of one process. (Not mkstemp: its 0600 mode would stick.)
    partial = staged.with_name(f".{sha256}.{secrets.token_hex(6)}.partial")
    digest = hashlib.sha256()
    try:
        with path.open("rb") as source, partial.open("xb") as out:
            total = os.fstat(source.fileno()).st_size
            for block in iter(lambda: source.read(BLOCK), b""):
                digest.update(block)
                out.write(block)
                if progress is not None:
                    progress(out.tell(), total)
        if digest.hexdigest() != sha256:
            raise ProviderError(
                provider,
                f"{path} changed while it was copied (sha256 differs)",
                code="content_changed",
            )
        os.replace(partial, staged)
    except OSError as exc:
        raise _copy_failed(provider, path, exc) from None
    finally:
        partial.unlink(missing_ok=True)


def _copy_failed(provider: str, path: Path, exc: OSError) -> ProviderError:
    """The OS's refusal as a ProviderError whose code is the errno's name."""
    code = errno.errorcode.get(exc.errno or 0, "copy_failed")
    return ProviderError(provider, f"cannot copy {path}: {exc.strerror or exc}", code=code)

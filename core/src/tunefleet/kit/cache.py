"""tunefleet's cache directory, for what is slow to work out and cheap to check again.

Entries are JSON files, each written whole or not at all and readable by the user alone
(a validation report quotes lines of the data). A damaged or missing entry is a miss,
never an error: whatever reads the cache can always work the answer out again. Used by
dataset validation (:mod:`tunefleet.data.cache`), the tokenizer files, and providers that
keep facts derived from an SDK's files (SageMaker's request limits).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

__all__ = ["cache_root", "prune", "read_entry", "write_entry"]


def cache_root() -> Path:
    """tunefleet's cache directory: ``$TUNEFLEET_CACHE_DIR``, else the user cache directory."""
    override = os.environ.get("TUNEFLEET_CACHE_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir("tunefleet"))


def read_entry(path: Path) -> dict[str, Any] | None:
    """The JSON object stored at ``path``; None if it is missing, unreadable or damaged."""
    try:
        with path.open("rb") as handle:
            found = json.load(handle)
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def write_entry(path: Path, body: dict[str, Any]) -> None:
    """Store ``body`` at ``path`` whole or not at all, readable by the user alone; a
    failure to write (a full or read-only disk) is ignored, as a cache may be."""
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(body, handle)
        os.replace(partial, path)
    except OSError:
        partial.unlink(missing_ok=True)


def prune(folder: Path, pattern: str, keep: int) -> None:
    """Remove all but the ``keep`` most recently written entries matching ``pattern``."""
    try:
        entries = [(p.stat().st_mtime, p) for p in folder.glob(pattern)]
    except OSError:  # another process pruning at the same time
        return
    if len(entries) <= keep:
        return
    entries.sort(reverse=True)
    for _, old in entries[keep:]:
        old.unlink(missing_ok=True)

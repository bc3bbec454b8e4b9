"""State on disk for providers that keep it there (the local provider, test fakes).

Files with more than one reader are replaced atomically, so a reader never sees half of
one, and changes that must not interleave run under an exclusive ``flock``.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["locked", "read_json", "write_json"]


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` with ``data`` atomically (a temporary file, then a rename).

    The temporary name is the writer's own (process and thread), so two writers of one
    file never write into each other's half; the last rename wins whole.
    """
    partial = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.partial")
    partial.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(partial, path)


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON file's content, or None when it does not exist (yet, or any more)."""
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except FileNotFoundError:
        return None


@contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (its ``.lock`` file) across processes."""
    with (directory / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

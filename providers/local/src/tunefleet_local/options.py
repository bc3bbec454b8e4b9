"""The local provider's target options (``targets[].options`` of a spec), and the work
directory they choose."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tunefleet.names import LocalDirectory

__all__ = ["WORKDIR_ENV", "LocalOptions", "resolve_workdir", "workdir"]

WORKDIR_ENV = "TUNEFLEET_LOCAL_WORKDIR"
"""Environment variable naming the work directory when ``options.workdir`` does not."""


class LocalOptions(BaseModel):
    """Options of the ``local`` provider."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workdir: LocalDirectory | None = None
    """Where runs keep staged data, checkpoints and models, relative to the spec's folder
    (default: $TUNEFLEET_LOCAL_WORKDIR, else the user data dir). The plan pins it."""
    device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")
    """Where to train: auto picks a GPU when there is one."""
    max_concurrent_jobs: int = Field(default=1, ge=1, le=64)
    """Jobs training at once; more wait in the queue (they would share the same cores)."""
    merge: bool = False
    """Also write the model with the adapter merged in."""
    logging_steps: int = Field(default=1, ge=1)
    """Optimizer steps between metric lines."""
    save_steps: int | None = Field(default=None, ge=1)
    """Steps between checkpoints (besides one per epoch)."""


def resolve_workdir(configured: str | None, base_dir: Path) -> Path:
    """The absolute work directory a plan pins: ``configured`` (relative to ``base_dir``,
    the spec's folder), else $TUNEFLEET_LOCAL_WORKDIR, else ``<user data dir>/local``.

    Resolved once, at plan: the plan recorded in the journal then says where its jobs live,
    so a resume from another folder or environment finds them (and creates no second job).
    """
    root = configured or os.environ.get(WORKDIR_ENV)
    if not root:
        from platformdirs import user_data_dir  # only when nothing else names the folder

        root = os.path.join(user_data_dir("tunefleet"), "local")
    path = Path(root).expanduser()
    return (path if path.is_absolute() else base_dir / path).resolve()


def workdir(options: Mapping[str, Any]) -> Path:
    """The work directory a plan's ``options`` pin (created if missing).

    It takes the plan's options as JSON, not :class:`LocalOptions`, because a plan recorded
    in the journal is what a later process acts on. Plans recorded before the directory was
    pinned fall back to resolving it as :func:`resolve_workdir` does, from here.
    """
    path = resolve_workdir(options.get("workdir"), Path.cwd())
    path.mkdir(parents=True, exist_ok=True)
    return path

"""``tunefleet init``: a starter spec and sample chat data, ready to validate and plan."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from tunefleet.errors import InputFileError

# package resource -> path in the new project
STARTER_FILES = {
    "tunefleet.yaml": "tunefleet.yaml",
    "train.jsonl": "data/train.jsonl",
    "validation.jsonl": "data/validation.jsonl",
}


def write_starter(directory: Path, *, force: bool = False) -> list[Path]:
    """Write the starter files into ``directory``; refuse to overwrite unless ``force``.

    Checks every destination before writing any, so a refusal leaves nothing half-written.
    """
    templates = resources.files("tunefleet.templates")
    targets = {directory / dest: templates.joinpath(src) for src, dest in STARTER_FILES.items()}
    if not force:
        existing = [str(path) for path in targets if path.exists()]
        if existing:
            raise InputFileError(existing[0], "exists already; use --force to overwrite")
    written = []
    for path, template in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(template.read_bytes())
        written.append(path)
    return written

"""``tunefleet init``: a starter spec and sample chat data, ready to validate and plan.

It also writes ``tunefleet.schema.json``, the JSON Schema of the installed version, which
the starter spec names in a ``yaml-language-server`` modeline so editors complete and check
specs as they are typed.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from tunefleet.errors import InputFileError

# package resource -> path in the new project
STARTER_FILES = {
    "tunefleet.yaml": "tunefleet.yaml",
    "train.jsonl": "data/train.jsonl",
    "validation.jsonl": "data/validation.jsonl",
}
SCHEMA_FILE = "tunefleet.schema.json"


def write_starter(directory: Path, *, force: bool = False) -> list[Path]:
    """Write the starter files into ``directory``; refuse to overwrite unless ``force``.

    Checks every destination before writing any, so a refusal leaves nothing half-written.
    """
    from tunefleet.spec import published_schema

    templates = resources.files("tunefleet.templates")
    contents = {
        directory / dest: templates.joinpath(src).read_bytes()
        for src, dest in STARTER_FILES.items()
    }
    contents[directory / SCHEMA_FILE] = (json.dumps(published_schema(), indent=2) + "\n").encode()
    if not force:
        existing = [str(path) for path in contents if path.exists()]
        if existing:
            raise InputFileError(existing[0], "exists already; use --force to overwrite")
    for path, data in contents.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return list(contents)

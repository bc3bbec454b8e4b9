"""What the local provider's tests share: the quickstart's data and a small spec on it."""

from __future__ import annotations

import time
from pathlib import Path

DATA = Path(__file__).parents[3] / "examples" / "quickstart" / "data"


def local_spec(name: str, workdir: Path | None, *, max_concurrent_jobs: int = 8) -> str:
    """A spec (YAML) training ``scratch:tiny`` for one quick epoch on the quickstart's data,
    on the local provider's CPU in ``workdir`` (None: the default, $TUNEFLEET_LOCAL_WORKDIR)."""
    where = f"workdir: {workdir}, " if workdir is not None else ""
    return f"""
version: 1
name: {name}
base_model: "scratch:tiny"
dataset: {{train: {DATA / "train.jsonl"}}}
method: {{type: supervised, adapter: full}}
hyperparameters: {{epochs: 1, batch_size: 16, learning_rate: 0.003, seed: 5, max_seq_length: 96}}
targets:
  - provider: local
    options: {{{where}device: cpu, max_concurrent_jobs: {max_concurrent_jobs}}}
"""


def processes_under(folder: Path, grace: float = 10.0) -> list[str]:
    """Command lines of live processes that name ``folder`` (runners, trainers, model
    servers of a work directory), after up to ``grace`` seconds for exiting ones to end."""
    deadline = time.monotonic() + grace
    while True:
        found = []
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                words = (proc / "cmdline").read_bytes().split(b"\0")
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            line = " ".join(w.decode(errors="replace") for w in words if w)
            if str(folder) in line and state != "Z":
                found.append(line)
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)

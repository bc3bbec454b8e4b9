"""What the local provider's tests share: the quickstart's data and a small spec on it."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).parents[3] / "examples" / "quickstart" / "data"


def local_spec(name: str, workdir: Path, *, max_concurrent_jobs: int = 8) -> str:
    """A spec (YAML) training ``scratch:tiny`` for one quick epoch on the quickstart's data,
    on the local provider's CPU in ``workdir``."""
    return f"""
version: 1
name: {name}
base_model: "scratch:tiny"
dataset: {{train: {DATA / "train.jsonl"}}}
method: {{type: supervised, adapter: full}}
hyperparameters: {{epochs: 1, batch_size: 16, learning_rate: 0.003, seed: 5, max_seq_length: 96}}
targets:
  - provider: local
    options: {{workdir: {workdir}, device: cpu, max_concurrent_jobs: {max_concurrent_jobs}}}
"""

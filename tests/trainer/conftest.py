"""Fixtures of the trainer tests: small chat data and a scratch base model's tokenizer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

QUICKSTART = Path(__file__).parents[2] / "examples" / "quickstart" / "data"


@pytest.fixture(scope="session")
def quickstart_train() -> Path:
    return QUICKSTART / "train.jsonl"


@pytest.fixture(scope="session")
def quickstart_validation() -> Path:
    return QUICKSTART / "validation.jsonl"


@pytest.fixture(scope="session")
def chatml_tokenizer(tmp_path_factory: pytest.TempPathFactory, quickstart_train: Path) -> Any:
    """The tokenizer a scratch:tiny base gets, trained on the quickstart data."""
    from transformers import AutoTokenizer

    from tunefleet_trainer.chat import dataset_texts, read_examples
    from tunefleet_trainer.models import build_scratch_base

    _, examples = read_examples(quickstart_train, "train")
    directory = tmp_path_factory.mktemp("scratch") / "base"
    build_scratch_base("tiny", dataset_texts(examples), 0, directory)
    return AutoTokenizer.from_pretrained(directory)


def write_jsonl(path: Path, examples: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in examples))
    return path

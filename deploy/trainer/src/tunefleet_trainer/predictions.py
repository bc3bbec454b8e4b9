"""The golden set's answers: which examples are asked, and how answers are written down.

This module is the third part of the trainer's contract (with :mod:`~tunefleet_trainer.config`
and :mod:`~tunefleet_trainer.metrics`), shared by the trainer, which answers the golden set
on the training machine right after training, and by tunefleet's core, which asks hosted
models the same questions and scores the answers. Both select the examples with
:func:`golden_examples`, so the answers line up with the expected ones by ``index``.

A golden example is a chat example (``{"messages": [...]}``) whose last message is the
assistant's expected answer; the messages before it are the prompt. Other top-level keys
(``language``, ``intent``, a ``metadata`` object) are kept: evaluation slices by them.

A predictions file is JSONL, one :class:`Prediction` per line, in golden-set order. It is
written whole or not at all (a temporary name, then a rename). The trainer announces its
progress with one line per answer::

    tunefleet.progress {"task":"predict","model":"trained","done":12,"total":200}

It imports only pydantic and the standard library.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tunefleet_trainer.errors import TrainerError

__all__ = [
    "BASELINE_PREDICTIONS_NAME",
    "MAX_PREDICTIONS_BYTES",
    "PREDICTIONS_NAME",
    "PROGRESS_PREFIX",
    "GenerationSettings",
    "GoldenExample",
    "Prediction",
    "format_progress_line",
    "golden_examples",
    "parse_golden_line",
    "read_predictions",
    "read_progress_line",
    "write_predictions",
]

PREDICTIONS_NAME = "predictions.jsonl"
"""The trained model's answers, in the training output directory."""
BASELINE_PREDICTIONS_NAME = "baseline_predictions.jsonl"
"""The base model's answers to the same questions, made before training started."""
PROGRESS_PREFIX = "tunefleet.progress "
MAX_PREDICTIONS_BYTES = 64 << 20
"""Largest predictions file a reader accepts (500 answers of 4,096 tokens fit many times)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GenerationSettings(_Model):
    """How answers are generated; recorded with every evaluation so scores can be compared."""

    decoding: Literal["greedy"] = "greedy"
    """Greedy decoding: the same model and prompt give the same answer."""
    max_new_tokens: int = Field(default=256, ge=1, le=8192)
    """Longest answer, in tokens of the model's tokenizer; a longer one is cut off
    (``finish_reason`` ``length``)."""


class GoldenExample(_Model):
    """One question of the golden set, with the answer it expects."""

    index: int = Field(ge=0)
    """Position among the golden set's examples (blank lines not counted), from 0."""
    line: int = Field(ge=1)
    """Line of the file it is on, for messages."""
    prompt: list[dict[str, Any]]
    """The messages before the expected answer."""
    expected: str
    """The last assistant message's content: the answer the model should give."""
    fields: dict[str, Any] = {}
    """The example's other top-level keys (``metadata``, ``language`` ...), for slices."""


class Prediction(_Model):
    """A model's answer to one golden example."""

    index: int = Field(ge=0)
    text: str
    finish_reason: Literal["stop", "length"] | None = None
    prompt_tokens: int | None = Field(default=None, ge=0)
    completion_tokens: int | None = Field(default=None, ge=0)


def _content(message: dict[str, Any]) -> str | None:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI's content parts: the text parts, joined
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        texts = [t for t in parts if isinstance(t, str)]
        if texts and len(texts) == len(parts):
            return "".join(texts)
    return None


def parse_golden_line(raw: str | bytes, *, index: int, line: int, source: str) -> GoldenExample:
    """One golden example from its JSONL line; TrainerError saying where and what is wrong."""
    where = f"{source}:{line}"
    try:
        example = json.loads(raw)
    except ValueError:
        raise TrainerError(f"{where}: not valid JSON") from None
    if not isinstance(example, dict) or not isinstance(example.get("messages"), list):
        raise TrainerError(f"{where}: a golden example is a chat example (messages)")
    messages = example["messages"]
    if not messages or not all(isinstance(m, dict) for m in messages):
        raise TrainerError(f"{where}: messages must be a non-empty list of objects")
    last = messages[-1]
    expected = _content(last)
    if last.get("role") != "assistant" or expected is None:
        raise TrainerError(
            f"{where}: the last message must be the assistant's expected answer (text)"
        )
    if len(messages) < 2:
        raise TrainerError(f"{where}: there is no question before the expected answer")
    return GoldenExample(
        index=index,
        line=line,
        prompt=messages[:-1],
        expected=expected,
        fields={key: value for key, value in example.items() if key != "messages"},
    )


def golden_examples(path: Path, max_examples: int | None = None) -> list[GoldenExample]:
    """The golden set's first ``max_examples`` examples (all when None), in file order.

    The one selection rule every producer of answers follows, so answers match by index.
    """
    examples: list[GoldenExample] = []
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise TrainerError(f"{path}: {exc.strerror or exc}") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            if max_examples is not None and len(examples) >= max_examples:
                break
            if not raw.strip():
                continue
            examples.append(
                parse_golden_line(raw, index=len(examples), line=number, source=str(path))
            )
    if not examples:
        raise TrainerError(f"{path}: the golden set holds no example")
    return examples


def write_predictions(path: Path, predictions: Iterable[Prediction]) -> None:
    """Write ``predictions`` to ``path`` whole: a temporary name first, then a rename."""
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("w", encoding="utf-8") as handle:
        for prediction in predictions:
            handle.write(prediction.model_dump_json(exclude_none=True) + "\n")
    partial.replace(path)


def read_predictions(data: bytes, *, source: str) -> list[Prediction]:
    """The predictions in ``data`` (a predictions file's bytes); TrainerError when it is
    not one (too large, not JSON, a field out of range, an index twice)."""
    if len(data) > MAX_PREDICTIONS_BYTES:
        raise TrainerError(f"{source}: over {MAX_PREDICTIONS_BYTES >> 20} MiB of predictions")
    predictions: list[Prediction] = []
    seen: set[int] = set()
    for number, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            prediction = Prediction.model_validate_json(raw)
        except ValidationError as exc:
            raise TrainerError(
                f"{source}:{number}: not a prediction ({exc.errors()[0]['msg']})"
            ) from None
        if prediction.index in seen:
            raise TrainerError(f"{source}:{number}: a second answer to example {prediction.index}")
        seen.add(prediction.index)
        predictions.append(prediction)
    return predictions


def format_progress_line(*, task: str, model: str, done: int, total: int) -> str:
    """The line announcing ``done`` of ``total`` answers of ``model`` (trained, baseline)."""
    body = {"task": task, "model": model, "done": done, "total": total}
    return PROGRESS_PREFIX + json.dumps(body, separators=(",", ":"))


def read_progress_line(line: str) -> dict[str, Any] | None:
    """``{"task", "model", "done", "total"}`` of a progress line, or None when it is not one."""
    start = line.find(PROGRESS_PREFIX)
    if start < 0:
        return None
    try:
        body = json.loads(line[start + len(PROGRESS_PREFIX) :])
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    done, total = body.get("done"), body.get("total")
    if not (isinstance(done, int) and isinstance(total, int) and 0 <= done <= total):
        return None
    return {
        "task": str(body.get("task", "")),
        "model": str(body.get("model", "")),
        "done": done,
        "total": total,
    }

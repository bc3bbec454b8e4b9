"""``python -m tunefleet_trainer.answer``: a model answers a file of chat requests, in order.

tunefleet's local provider uses it to evaluate a model without serving it: a trained run
again with a new golden set, or a base model as the baseline::

    python -m tunefleet_trainer.answer --model MODEL --requests IN.jsonl --output OUT.jsonl

``MODEL`` is a training output directory (one holding ``manifest.json``, loaded as the local
endpoint loads it) or a base model: a local model directory, or a hub id read from the
Hugging Face cache (``HF_HUB_OFFLINE`` defaults to 1 here: answering never downloads).

Each request line is ``{"messages": [...], "max_tokens": 256, "temperature": 0}``
(``temperature`` 0, the default, decodes greedily; ``top_p`` and ``seed`` are optional, as
in OpenAI's chat API); each output line is ``{"text", "finish_reason", "prompt_tokens",
"completion_tokens"}``, in the requests' order. All requests are checked before the model
is loaded; the output is written under a temporary name and renamed once every request is
answered, so it is whole or absent. One progress line per answer goes to stdout::

    tunefleet.progress {"task":"answer","model":"requested","done":3,"total":40}

Exit status: 0 answered; 2 the input cannot be used (an unreadable file, a request that is
not valid, with its file:line, a model that cannot be found), with one line on stderr; 1
anything else, with its traceback. The training stack is imported only once the input is
known to be good, so ``--help`` and input errors are quick.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tunefleet_trainer.errors import TrainerError
from tunefleet_trainer.predictions import GenerationSettings, format_progress_line

__all__ = ["AnswerRequest", "answer", "main", "read_requests"]

PROG = "python -m tunefleet_trainer.answer"


class _Message(BaseModel):
    """A chat message; extra keys (``name``, ``tool_calls`` ...) go to the chat template."""

    model_config = ConfigDict(extra="allow", frozen=True)

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None


class AnswerRequest(BaseModel):
    """One request line: the conversation so far and how to answer it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    messages: list[_Message] = Field(min_length=1)
    max_tokens: int = Field(default=GenerationSettings().max_new_tokens, ge=1, le=8192, strict=True)
    """Longest answer, in tokens; a longer one is cut off (``finish_reason`` ``length``)."""
    temperature: float = Field(default=0.0, ge=0, le=2)
    """0 decodes greedily (the same model and prompt give the same answer)."""
    top_p: float = Field(default=1.0, gt=0, le=1)
    seed: int | None = Field(default=None, strict=True)


def read_requests(path: Path) -> list[AnswerRequest]:
    """The requests in the JSONL file ``path`` (blank lines skipped); TrainerError naming the
    file and line of the first that is not valid."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TrainerError(f"{path}: {exc.strerror or exc}") from None
    requests: list[AnswerRequest] = []
    for number, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            loaded = json.loads(raw)
        except ValueError:
            raise TrainerError(f"{path}:{number}: not valid JSON") from None
        if not isinstance(loaded, dict):
            raise TrainerError(f"{path}:{number}: a request must be a JSON object")
        try:
            requests.append(AnswerRequest.model_validate(loaded))
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"]) or "(request)"
            raise TrainerError(f"{path}:{number}: {where}: {error['msg']}") from None
    return requests


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Answer a JSONL file of chat requests with a trained or base model.",
    )
    parser.add_argument(
        "--model",
        required=True,
        help="a training output directory (with manifest.json), a model directory or a hub id "
        "in the local Hugging Face cache",
    )
    parser.add_argument("--requests", required=True, type=Path, help="JSONL, one request a line")
    parser.add_argument(
        "--output", required=True, type=Path, help="JSONL answers, in order (written whole)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    return parser


def answer(model: str, requests_path: Path, output: Path, *, device: str = "auto") -> int:
    """Answer every request in ``requests_path`` with ``model`` into ``output``; return how
    many were answered. Raises TrainerError for input that cannot be used.

    Sets ``HF_HUB_OFFLINE=1`` in the environment unless it is set: a hub id is read from
    the cache (the variable counts only before the Hugging Face libraries are imported).
    """
    requests = read_requests(requests_path)
    if not output.parent.is_dir():
        raise TrainerError(f"{output}: its directory does not exist")
    # The local cache only: a missing model must fail now, not hang on a download.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from tunefleet_trainer.inference import load_model, pick_device

    chat_model = load_model(model, device=pick_device(device))
    partial = output.with_name(f".{output.name}.partial")
    try:
        with partial.open("w", encoding="utf-8") as handle:
            for done, request in enumerate(requests, start=1):
                completion = chat_model.complete(
                    [m.model_dump(exclude_none=True) for m in request.messages],
                    max_tokens=request.max_tokens,
                    temperature=request.temperature,
                    top_p=request.top_p,
                    seed=request.seed,
                )
                line = {
                    "text": completion.text,
                    "finish_reason": completion.finish_reason,
                    "prompt_tokens": completion.prompt_tokens,
                    "completion_tokens": completion.completion_tokens,
                }
                handle.write(json.dumps(line, ensure_ascii=False) + "\n")
                print(
                    format_progress_line(
                        task="answer", model="requested", done=done, total=len(requests)
                    ),
                    flush=True,
                )
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)
    return len(requests)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, answer, and return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", args.device):
        parser.error(f"--device {args.device}: not one of auto, cpu, cuda, cuda:N, mps")
    if args.device.startswith("cuda:"):
        # One process, one GPU: pin it before torch initialises CUDA.
        os.environ["CUDA_VISIBLE_DEVICES"] = args.device.split(":", 1)[1]
        args.device = "cuda"
    try:
        answer(args.model, args.requests, args.output, device=args.device)
    except TrainerError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())

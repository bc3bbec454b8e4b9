"""A model answering chat requests: a trained run's output, a base model, or one in memory.

:func:`load_trained` reads ``manifest.json`` and loads what the run produced: the merged
model if there is one, else the full model, else the base (the run's own ``base/`` for a
scratch model) with the adapter applied. :class:`ChatModel` wraps any loaded model and
tokenizer, including the trainer's own in memory: :meth:`ChatModel.complete` renders the
messages with the model's chat template, as training rendered them, and generates the
assistant's reply. :func:`answer_golden` answers golden examples with it. The local
endpoint, ``python -m tunefleet_trainer.answer`` and the trainer's predictions all go
through :meth:`ChatModel.complete`, so the same model and prompt get the same greedy answer
whichever of them asks.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunefleet_trainer.chat import _message as template_message
from tunefleet_trainer.errors import TrainerError
from tunefleet_trainer.models import SCRATCH_PREFIX, load_pretrained
from tunefleet_trainer.predictions import (
    GenerationSettings,
    GoldenExample,
    Prediction,
    format_progress_line,
)

__all__ = [
    "ChatModel",
    "Completion",
    "answer_golden",
    "load_model",
    "load_trained",
    "pick_device",
]


@dataclass(frozen=True)
class Completion:
    """A reply and its token counts."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    """``stop`` when the model ended its turn, ``length`` when max_tokens cut it off."""


def pick_device(requested: str) -> str:
    """``requested``, or for ``auto`` the best device here: CUDA, then MPS, then the CPU."""
    import torch

    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


class ChatModel:
    """A model and tokenizer that answer chat messages; safe to share between threads.

    The model is put in eval mode (no dropout) and answers on the device its weights are on.
    A model that is trained further afterwards must be put back in train mode by whoever
    trains it (the Hugging Face Trainer does so at every step).
    """

    def __init__(self, model: Any, tokenizer: Any, name: str) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self._lock = threading.Lock()  # generate() is not re-entrant on one model
        # Stop at any end-of-turn token the model was configured with (instruct models often
        # list several), not only the tokenizer's.
        stops = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        stop_ids = set(stops if isinstance(stops, list) else [stops] if stops is not None else [])
        if tokenizer.eos_token_id is not None:
            stop_ids.add(tokenizer.eos_token_id)
        self._stop_ids = sorted(stop_ids)

    def complete(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        max_tokens: int = 128,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        tools: list[Any] | None = None,
    ) -> Completion:
        """The assistant's reply to ``messages`` (and ``tools``, as a chat example's
        ``tools``); temperature 0 decodes greedily, so the reply depends only on the model
        and the prompt."""
        import torch

        encoded = self.tokenizer.apply_chat_template(
            [template_message(m) for m in messages],
            tools=tools,
            add_generation_prompt=True,
            return_dict=True,
            return_tensors="pt",
        )
        # The prompt goes where the weights are (the trainer's model may be on a GPU).
        device = getattr(self.model, "device", None) or "cpu"
        input_ids = encoded["input_ids"].to(device)
        attention_mask = encoded.get("attention_mask")
        if attention_mask is not None:
            attention_mask = attention_mask.to(device)
        sampling: dict[str, Any] = {"do_sample": False}
        if temperature > 0:
            sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p}
        # no_grad rather than inference_mode: a buffer a model computes lazily during this
        # call (some rotary embeddings do) would otherwise become an inference tensor that
        # breaks training when the trainer answers with its model before training.
        with self._lock, torch.no_grad():
            if seed is not None:
                torch.manual_seed(seed)
            output = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                max_new_tokens=max_tokens,
                eos_token_id=self._stop_ids or None,
                pad_token_id=self.tokenizer.pad_token_id,
                **sampling,
            )
        new_tokens = output[0, input_ids.shape[1] :].tolist()
        stopped = bool(new_tokens) and new_tokens[-1] in self._stop_ids
        return Completion(
            text=self.tokenizer.decode(new_tokens, skip_special_tokens=True).strip(),
            prompt_tokens=int(input_ids.shape[1]),
            completion_tokens=len(new_tokens),
            finish_reason="stop" if stopped else "length",
        )


def answer_golden(
    model: ChatModel,
    examples: Sequence[GoldenExample],
    settings: GenerationSettings,
    *,
    label: str,
    log: Callable[[str], None],
) -> list[Prediction]:
    """``model``'s greedy answers to ``examples``, in order, as ``settings`` say.

    Logs one progress line per answer (task ``predict``, model ``label``: ``baseline`` or
    ``trained``). A chat example's ``tools`` are offered as they were in training.
    """
    predictions: list[Prediction] = []
    for done, example in enumerate(examples, start=1):
        tools = example.fields.get("tools")
        completion = model.complete(
            example.prompt,
            max_tokens=settings.max_new_tokens,
            temperature=0,
            tools=tools if isinstance(tools, list) else None,
        )
        predictions.append(
            Prediction(
                index=example.index,
                text=completion.text,
                finish_reason="stop" if completion.finish_reason == "stop" else "length",
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
            )
        )
        log(format_progress_line(task="predict", model=label, done=done, total=len(examples)))
    return predictions


def load_trained(output_dir: Path, *, name: str | None = None, device: str = "cpu") -> ChatModel:
    """The model a training run wrote to ``output_dir``, ready to answer on ``device``.

    Raises TrainerError when ``output_dir`` holds no readable manifest or the adapter's
    base model cannot be found.
    """
    from tunefleet_trainer.train import MANIFEST_NAME  # train imports this module

    manifest_path = output_dir / MANIFEST_NAME
    try:
        manifest = json.loads(manifest_path.read_text())
        artifacts: dict[str, str] = manifest["artifacts"]
    except (OSError, ValueError, KeyError, TypeError):
        raise TrainerError(f"{manifest_path}: no readable training manifest") from None
    label = name or output_dir.name
    for kind in ("merged", "model"):
        if kind in artifacts:
            model, tokenizer = load_pretrained(
                str(output_dir / artifacts[kind]), adapter="full", device=device
            )
            return ChatModel(model.to(device), tokenizer, label)
    from peft import PeftModel

    base_model = str(manifest.get("base_model", ""))
    if "base" in artifacts:
        base_source = str(output_dir / artifacts["base"])
    elif base_model.startswith(SCRATCH_PREFIX) or not base_model:
        raise TrainerError(f"{manifest_path}: the adapter's base model is not in the output")
    else:
        base_source = base_model
    adapter_dir = output_dir / artifacts["adapter"]
    model, _ = load_pretrained(base_source, adapter="full", device=device)
    # The adapter directory holds the tokenizer the run trained with.
    tokenizer = _tokenizer(adapter_dir)
    adapted = PeftModel.from_pretrained(model, str(adapter_dir))
    return ChatModel(adapted.to(device), tokenizer, label)


def load_model(source: str, *, device: str = "cpu") -> ChatModel:
    """A training output directory (one holding ``manifest.json``, see :func:`load_trained`)
    or a base model (a model directory, or a hub id as :func:`~tunefleet_trainer.models.
    load_pretrained` finds it), ready to answer on ``device``; TrainerError when there is
    no such model."""
    from tunefleet_trainer.train import MANIFEST_NAME  # train imports this module

    directory = Path(source).expanduser()
    if (directory / MANIFEST_NAME).is_file():
        return load_trained(directory, device=device)
    if source.startswith(SCRATCH_PREFIX):
        raise TrainerError(
            f"{source}: a scratch model exists only inside its run; use the run's output "
            "directory (or its base/ directory for the untrained model)"
        )
    model, tokenizer = load_pretrained(source, adapter="full", device=device)
    return ChatModel(model.to(device), tokenizer, source)


def _tokenizer(directory: Path) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer

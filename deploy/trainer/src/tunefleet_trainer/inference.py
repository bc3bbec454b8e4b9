"""A trained model, loaded from the trainer's output, answering chat requests.

:func:`load_trained` reads ``manifest.json`` and loads what the run produced: the merged
model if there is one, else the full model, else the base (the run's own ``base/`` for a
scratch model) with the adapter applied. :meth:`ChatModel.complete` renders the messages
with the model's chat template and generates the assistant's reply.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunefleet_trainer.errors import TrainerError
from tunefleet_trainer.models import SCRATCH_PREFIX, load_pretrained
from tunefleet_trainer.train import MANIFEST_NAME

__all__ = ["ChatModel", "Completion", "load_trained"]


@dataclass(frozen=True)
class Completion:
    """A reply and its token counts."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    """``stop`` when the model ended its turn, ``length`` when max_tokens cut it off."""


class ChatModel:
    """A model and tokenizer that answer chat messages; safe to share between threads."""

    def __init__(self, model: Any, tokenizer: Any, name: str) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self._lock = threading.Lock()  # generate() is not re-entrant on one model

    def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int = 128,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> Completion:
        """The assistant's reply to ``messages``; temperature 0 decodes greedily."""
        import torch

        encoded = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_dict=True, return_tensors="pt"
        )
        input_ids = encoded["input_ids"]
        sampling: dict[str, Any] = {"do_sample": False}
        if temperature > 0:
            sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p}
        with self._lock, torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            output = self.model.generate(
                input_ids,
                attention_mask=encoded.get("attention_mask"),
                max_new_tokens=max_tokens,
                eos_token_id=self.tokenizer.eos_token_id,
                pad_token_id=self.tokenizer.pad_token_id,
                **sampling,
            )
        new_tokens = output[0, input_ids.shape[1] :].tolist()
        stopped = bool(new_tokens) and new_tokens[-1] == self.tokenizer.eos_token_id
        return Completion(
            text=self.tokenizer.decode(new_tokens, skip_special_tokens=True).strip(),
            prompt_tokens=int(input_ids.shape[1]),
            completion_tokens=len(new_tokens),
            finish_reason="stop" if stopped else "length",
        )


def load_trained(output_dir: Path, *, name: str | None = None) -> ChatModel:
    """The model a training run wrote to ``output_dir``, ready to answer (on the CPU)."""
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
                str(output_dir / artifacts[kind]), adapter="full", device="cpu"
            )
            return ChatModel(model, tokenizer, label)
    from peft import PeftModel

    base_model = str(manifest.get("base_model", ""))
    if "base" in artifacts:
        base_source = str(output_dir / artifacts["base"])
    elif base_model.startswith(SCRATCH_PREFIX) or not base_model:
        raise TrainerError(f"{manifest_path}: the adapter's base model is not in the output")
    else:
        base_source = base_model
    adapter_dir = output_dir / artifacts["adapter"]
    model, _ = load_pretrained(base_source, adapter="full", device="cpu")
    # The adapter directory holds the tokenizer the run trained with.
    tokenizer = _tokenizer(adapter_dir)
    return ChatModel(PeftModel.from_pretrained(model, str(adapter_dir)), tokenizer, label)


def _tokenizer(directory: Path) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer

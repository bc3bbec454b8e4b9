"""What tunefleet's trainer leaves behind, for the stand-ins of clouds that run it.

The fakes of Azure ML and Vertex AI play a job of the trainer's image: when it ends they
write, where the cloud collects them, the files the real trainer writes
(deploy/trainer/src/tunefleet_trainer/train.py: ``adapter/`` then ``manifest.json``,
written last; with an evaluation, the golden set's answers,
tunefleet_trainer.predictions). One shape for every fake, small enough for a test.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from tunefleet_trainer.predictions import (
    BASELINE_PREDICTIONS_NAME,
    PREDICTIONS_NAME,
    GoldenExample,
    Prediction,
)

__all__ = ["lora_outputs", "loss_at", "prediction_files"]


def loss_at(step: int) -> float:
    """The training loss the fakes report at ``step``: falling, as a run's should."""
    return round(2.5 / (1 + 0.4 * step), 4)


def lora_outputs(
    *, steps: int, base_model: str, started_at: str, finished_at: str
) -> dict[str, bytes]:
    """A LoRA run's output directory after ``steps`` steps: relative path -> bytes."""
    manifest = {
        "format_version": 1,
        "base_model": base_model,
        "method": "supervised",
        "adapter": "lora",
        "artifacts": {"adapter": "adapter"},
        "hyperparameters": {},
        "steps": steps,
        "epochs": 2.0,
        "metrics": {"train_loss": loss_at(max(steps, 0)) if steps else 2.5},
        "started_at": started_at,
        "finished_at": finished_at,
        "versions": {"python": "3.11.7", "tunefleet": "0.0.0"},
    }
    adapter_config = {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "task_type": "CAUSAL_LM"}
    return {
        "adapter/adapter_config.json": json.dumps(adapter_config).encode(),
        "adapter/adapter_model.safetensors": b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ",
        "adapter/tokenizer_config.json": b"{}",
        "manifest.json": (json.dumps(manifest, indent=2) + "\n").encode(),
    }


def prediction_files(
    examples: Sequence[GoldenExample],
    trained: Callable[[GoldenExample], str],
    baseline: Callable[[GoldenExample], str],
) -> dict[str, bytes]:
    """The predictions folder of a job that answered ``examples``: the trained model's
    answers and the base model's."""

    def answers(answer: Callable[[GoldenExample], str]) -> bytes:
        return b"".join(
            Prediction(index=e.index, text=answer(e), finish_reason="stop")
            .model_dump_json(exclude_none=True)
            .encode()
            + b"\n"
            for e in examples
        )

    return {PREDICTIONS_NAME: answers(trained), BASELINE_PREDICTIONS_NAME: answers(baseline)}

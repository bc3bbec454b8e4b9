"""The trainer's contract: what one training run needs, in neutral terms plus explicit paths.

A :class:`TrainerConfig` is the whole contract between a provider and the trainer, with the
metric-line format of :mod:`tunefleet_trainer.metrics`. The provider that launches the
trainer decides where the data is mounted and where the model and checkpoints go, and
writes those paths into the config: the trainer reads no launcher's environment (no
``SM_*``, no ``AIP_*``), so each cloud's conventions live with that cloud's provider.

The config comes from ``--config FILE``, else ``$TUNEFLEET_TRAINER_CONFIG`` (inline JSON);
``--config-key KEY`` reads it from one key of the file's JSON object instead, where the value
is the config or its JSON text (SageMaker writes a job's HyperParameters, strings all, to
``/opt/ml/input/config/hyperparameters.json``). Command-line flags override single fields.
A dataset location may be a file or a directory holding exactly one ``.jsonl`` file (a
SageMaker channel, a mounted folder).

The training vocabulary (methods, adapters, schedulers, hyperparameters) is defined here
and extended by tunefleet's spec, so a spec's hyperparameters are the trainer's by
construction. This module imports only pydantic: tunefleet's core and its providers build
configs without the training stack.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tunefleet_trainer.errors import TrainerError
from tunefleet_trainer.predictions import GenerationSettings

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_EPOCHS",
    "Adapter",
    "EvaluationConfig",
    "Hyperparameters",
    "LoraSettings",
    "Method",
    "Scheduler",
    "TrainerConfig",
    "resolve_config",
]

CONFIG_ENV = "TUNEFLEET_TRAINER_CONFIG"
"""Inline JSON config, for launchers that pass environment more easily than files."""
DEFAULT_EPOCHS = 3
"""Epochs the trainer runs when the hyperparameters set none."""

Method = Literal["supervised", "dpo"]
Adapter = Literal["full", "lora", "qlora"]
Scheduler = Literal["linear", "cosine", "constant"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoraSettings(_Model):
    """Low-rank adapter shape, for adapters `lora` and `qlora`."""

    rank: int = Field(default=16, ge=1, le=1024)
    """Rank of the low-rank update matrices."""
    alpha: float = Field(default=32, gt=0)
    """Scale of the update (the effective scale is alpha / rank)."""
    dropout: float = Field(default=0.05, ge=0, lt=1)
    """Dropout on the adapter's input."""
    target_modules: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.*-]{1,128}$")]] | None = None
    """Module names to adapt; unset lets the trainer pick the model's attention projections."""


class Hyperparameters(_Model):
    """Training knobs in neutral units; unset values take the trainer's defaults."""

    epochs: int | None = Field(default=None, ge=1, le=100)
    """Passes over the training data; unset takes the provider's default-epochs rule."""
    batch_size: int | None = Field(default=None, ge=1, le=4096)
    """Examples per optimizer step (the trainer reaches it with gradient accumulation)."""
    learning_rate: float | None = Field(default=None, gt=0, le=1)
    """Peak learning rate (open-weight trainers); hosted APIs take a multiplier instead."""
    warmup_ratio: float | None = Field(default=None, ge=0, lt=1)
    """Share of steps spent warming the learning rate up from 0."""
    scheduler: Scheduler | None = None
    """Learning-rate schedule after warm-up."""
    max_seq_length: int | None = Field(default=None, ge=16, le=1_048_576)
    """Tokens per example; longer examples are truncated."""
    max_grad_norm: float | None = Field(default=None, gt=0)
    """Gradient clipping threshold."""
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    """Random seed, for runs that can be repeated exactly where the provider allows."""
    lora: LoraSettings | None = None
    """Adapter shape for `lora` and `qlora`."""


class EvaluationConfig(_Model):
    """Answer the golden set on the training machine once training ends (the GPU is paid
    for already), so evaluation needs no endpoint."""

    golden_set: str
    """Golden examples: a JSONL file, or a directory holding exactly one
    (see :mod:`tunefleet_trainer.predictions`)."""
    max_examples: int | None = Field(default=None, ge=1)
    """Answer only the first so many examples."""
    generation: GenerationSettings = GenerationSettings()
    baseline: bool = True
    """Also answer with the base model, before training starts, for side-by-side scores."""
    predictions_dir: str | None = None
    """Where the predictions files go; default output_dir. SageMaker sets
    ``/opt/ml/output/data`` so that reading the answers does not mean downloading the model."""


class TrainerConfig(BaseModel):
    """One training run, in the spec's neutral terms plus the launcher's paths."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_model: str = Field(min_length=1, max_length=512)
    """A hub id (loaded from the local Hugging Face cache when offline), a local model
    directory, or ``scratch:<preset>``: a small model built from a config with a tokenizer
    trained on the dataset (see :mod:`tunefleet_trainer.models`)."""
    method: Method = "supervised"
    adapter: Adapter = "lora"
    beta: float | None = Field(default=None, gt=0)
    """DPO: how strongly the policy stays near the reference (TRL's default when unset)."""
    hyperparameters: Hyperparameters = Hyperparameters()
    train: str
    """Training data: a JSONL file, or a directory holding exactly one."""
    validation: str | None = None
    output_dir: str
    """Where the adapter (or model), the tokenizer and ``manifest.json`` are written."""
    checkpoint_dir: str | None = None
    """Checkpoints go here and the run resumes from the newest; default output_dir/checkpoints."""
    merge: bool = False
    """Also write the base model with the adapter merged in (``merged/``)."""
    device: Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")] = "auto"
    logging_steps: int = Field(default=1, ge=1)
    """Optimizer steps between metric lines."""
    eval_steps: int | None = Field(default=None, ge=1)
    """Steps between validation passes; default: once per epoch."""
    save_steps: int | None = Field(default=None, ge=1)
    """Steps between checkpoints, besides one per epoch and one every checkpoint_minutes."""
    checkpoint_minutes: float = Field(default=15.0, gt=0)
    """Longest time between checkpoints, so a preemption costs minutes, not the run."""
    save_total_limit: int = Field(default=2, ge=1)
    """Checkpoints kept; older ones are deleted once a newer one is complete."""
    evaluation: EvaluationConfig | None = None
    """Answer the golden set after training: ``predictions.jsonl`` (and, with ``baseline``,
    ``baseline_predictions.jsonl``) in ``evaluation.predictions_dir`` (default output_dir),
    listed in the manifest."""

    @property
    def checkpoints(self) -> Path:
        """The checkpoint directory, defaulted."""
        return Path(self.checkpoint_dir or Path(self.output_dir) / "checkpoints")


def resolve_config(
    config_file: str | None,
    overrides: Mapping[str, object],
    environ: Mapping[str, str] | None = None,
    *,
    config_key: str | None = None,
    evaluation: Mapping[str, object] | None = None,
) -> TrainerConfig:
    """The config from ``config_file`` (else ``$TUNEFLEET_TRAINER_CONFIG``) with ``overrides``.

    ``config_key`` reads the config from that key of the file's JSON object (its value the
    config or the config's JSON text). ``overrides`` are flags; None values are ignored and
    the rest win over the config. ``evaluation`` overrides keys of the config's evaluation
    (the golden set's path and where answers go, which only the launcher knows); given
    without an evaluation in the config, it is an error. Raises TrainerError naming the
    source of a bad value.
    """
    env = os.environ if environ is None else environ
    merged: dict[str, object] = {}
    source = "the command line"
    raw: str | None = None
    if config_file is not None:
        source = config_file
        try:
            raw = Path(config_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise TrainerError(f"{config_file}: {exc.strerror or exc}") from None
    elif config_key is not None:
        raise TrainerError("--config-key needs --config FILE")
    elif env.get(CONFIG_ENV):
        source, raw = f"${CONFIG_ENV}", env[CONFIG_ENV]
    if raw is not None:
        loaded = _json_object(raw, source)
        if config_key is not None:
            source = f"{source} ({config_key})"
            if config_key not in loaded:
                raise TrainerError(f"{source}: no such key")
            value = loaded[config_key]
            if isinstance(value, str):
                value = _json_object(value, source)
            if not isinstance(value, dict):
                raise TrainerError(f"{source}: must be a JSON object")
            loaded = value
        merged.update(loaded)
    merged.update({key: value for key, value in overrides.items() if value is not None})
    paths = {key: value for key, value in (evaluation or {}).items() if value is not None}
    if paths:
        if not isinstance(merged.get("evaluation"), dict):
            raise TrainerError(
                f"{', '.join(sorted(paths))} given, but {source} asks for no evaluation"
            )
        merged["evaluation"] = {**merged["evaluation"], **paths}  # type: ignore[dict-item]
    try:
        return TrainerConfig.model_validate(merged)
    except ValidationError as exc:
        raise TrainerError(f"{source}: {_first_problem(exc)}") from None


def _json_object(text: str, source: str) -> dict[str, object]:
    try:
        loaded = json.loads(text)
    except ValueError as exc:
        raise TrainerError(f"{source}: not valid JSON ({exc})") from None
    if not isinstance(loaded, dict):
        raise TrainerError(f"{source}: must be a JSON object")
    return loaded


def _first_problem(exc: ValidationError) -> str:
    problems: Sequence[str] = [
        f"{'.'.join(str(part) for part in error['loc']) or '(config)'}: {error['msg']}"
        for error in exc.errors()
    ]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return problems[0] + more


def dataset_file(location: str, role: str) -> Path:
    """The JSONL file at ``location``: the file itself, or the only ``.jsonl`` in a directory."""
    path = Path(location)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".jsonl" and p.is_file())
        if len(files) != 1:
            found = ", ".join(p.name for p in files) or "none"
            raise TrainerError(
                f"{location}: the {role} directory must hold exactly one .jsonl file "
                f"(found {found})"
            )
        return files[0]
    if not path.is_file():
        raise TrainerError(f"{location}: no such {role} dataset")
    return path

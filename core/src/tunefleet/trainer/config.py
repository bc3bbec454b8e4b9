"""What one training run needs, and where the trainer finds it on each launcher.

A :class:`TrainerConfig` is the whole contract between a provider and the trainer. The
provider writes it as JSON next to the data (``--config trainer.json``) or passes it inline
(``$TUNEFLEET_TRAINER_CONFIG``); command-line flags override single fields. What a
launcher decides itself -- where the data is mounted, where the model and checkpoints go --
comes from the launcher's own environment when the config leaves it out:

==================  ==========================  ==========================  ============
field               SageMaker / HyperPod        Vertex AI custom job        default
==================  ==========================  ==========================  ============
train               ``$SM_CHANNEL_TRAIN``       ``$AIP_TRAINING_DATA_URI``  (required)
validation          ``$SM_CHANNEL_VALIDATION``  ``$AIP_VALIDATION_DATA_URI``
output_dir          ``$SM_MODEL_DIR``           ``$AIP_MODEL_DIR``          (required)
checkpoint_dir      ``/opt/ml/checkpoints``     ``$AIP_CHECKPOINT_DIR``     output_dir/checkpoints
==================  ==========================  ==========================  ============

The config itself comes from ``--config FILE``, else ``$TUNEFLEET_TRAINER_CONFIG``, else, on
SageMaker, the ``tunefleet_config`` hyperparameter (SageMaker writes a job's HyperParameters
to ``/opt/ml/input/config/hyperparameters.json``; its Environment values are limited to 512
characters, too few for a config). Azure ML command jobs and HyperPod PyTorch jobs pass their
mounted paths as flags. Vertex's
``gs://`` locations are read through Cloud Storage FUSE at ``/gcs/``. A dataset location may
be a file or a directory holding exactly one ``.jsonl`` file (a SageMaker channel).

This module imports nothing heavy: providers build configs without the ``train`` extra.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tunefleet.errors import TrainerError
from tunefleet.spec import Adapter, Hyperparameters, Method

__all__ = [
    "CONFIG_ENV",
    "HYPERPARAMETER",
    "SAGEMAKER_CHECKPOINT_DIR",
    "TrainerConfig",
    "resolve_config",
]

CONFIG_ENV = "TUNEFLEET_TRAINER_CONFIG"
"""Inline JSON config, for launchers that pass environment more easily than files."""
SAGEMAKER_CHECKPOINT_DIR = "/opt/ml/checkpoints"
"""Where SageMaker syncs a job's CheckpointConfig.S3Uri to and from."""
SAGEMAKER_CONFIG_DIR = "/opt/ml/input/config"
"""Where SageMaker writes hyperparameters.json (``$SM_INPUT_CONFIG_DIR`` when set)."""
HYPERPARAMETER = "tunefleet_config"
"""The SageMaker hyperparameter holding the config as a JSON string."""


class TrainerConfig(BaseModel):
    """One training run, in the spec's neutral terms plus the launcher's paths."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    base_model: str = Field(min_length=1, max_length=512)
    """A hub id (loaded from the local Hugging Face cache when offline), a local model
    directory, or ``scratch:<preset>``: a small model built from a config with a tokenizer
    trained on the dataset (see :mod:`tunefleet.trainer.models`)."""
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

    @property
    def checkpoints(self) -> Path:
        """The checkpoint directory, defaulted."""
        return Path(self.checkpoint_dir or Path(self.output_dir) / "checkpoints")


def _fuse_path(location: str) -> str:
    """A ``gs://bucket/key`` location as Vertex mounts it (``/gcs/bucket/key``)."""
    if location.startswith("gs://"):
        return "/gcs/" + location[len("gs://") :]
    return location


def _launcher_defaults(environ: Mapping[str, str]) -> dict[str, str]:
    """Paths the launcher decides, read from its documented environment variables."""
    defaults: dict[str, str] = {}
    if "SM_MODEL_DIR" in environ or "SM_CHANNEL_TRAIN" in environ:  # SageMaker, HyperPod
        for field, variable in (
            ("train", "SM_CHANNEL_TRAIN"),
            ("validation", "SM_CHANNEL_VALIDATION"),
            ("output_dir", "SM_MODEL_DIR"),
        ):
            if environ.get(variable):
                defaults[field] = environ[variable]
        if Path(SAGEMAKER_CHECKPOINT_DIR).is_dir():
            defaults["checkpoint_dir"] = SAGEMAKER_CHECKPOINT_DIR
    if "AIP_MODEL_DIR" in environ:  # Vertex AI custom training
        for field, variable in (
            ("train", "AIP_TRAINING_DATA_URI"),
            ("validation", "AIP_VALIDATION_DATA_URI"),
            ("output_dir", "AIP_MODEL_DIR"),
            ("checkpoint_dir", "AIP_CHECKPOINT_DIR"),
        ):
            if environ.get(variable):
                defaults[field] = _fuse_path(environ[variable])
    return defaults


def resolve_config(
    config_file: str | None,
    overrides: Mapping[str, object],
    environ: Mapping[str, str] | None = None,
) -> TrainerConfig:
    """Merge launcher defaults, the config (file or ``$TUNEFLEET_TRAINER_CONFIG``) and flags.

    Later sources win: launcher environment, then the config, then ``overrides`` (flags;
    None values are ignored). Raises TrainerError naming the source of a bad value.
    """
    env = os.environ if environ is None else environ
    merged: dict[str, object] = dict(_launcher_defaults(env))
    source = "the command line"
    raw: str | None = None
    if config_file is not None:
        source = config_file
        try:
            raw = Path(config_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise TrainerError(f"{config_file}: {exc.strerror or exc}") from None
    elif env.get(CONFIG_ENV):
        source, raw = f"${CONFIG_ENV}", env[CONFIG_ENV]
    else:
        found = _sagemaker_hyperparameter(env)
        if found is not None:
            source, raw = found
    if raw is not None:
        try:
            loaded = json.loads(raw)
        except ValueError as exc:
            raise TrainerError(f"{source}: not valid JSON ({exc})") from None
        if not isinstance(loaded, dict):
            raise TrainerError(f"{source}: must be a JSON object")
        merged.update(loaded)
    merged.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return TrainerConfig.model_validate(merged)
    except ValidationError as exc:
        raise TrainerError(f"{source}: {_first_problem(exc)}") from None


def _sagemaker_hyperparameter(environ: Mapping[str, str]) -> tuple[str, str] | None:
    """(source, JSON) of the config a SageMaker job passed as a hyperparameter, if any."""
    path = Path(environ.get("SM_INPUT_CONFIG_DIR") or SAGEMAKER_CONFIG_DIR) / "hyperparameters.json"
    try:
        hyperparameters = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise TrainerError(f"{path}: cannot be read as JSON ({exc})") from None
    if not isinstance(hyperparameters, dict) or HYPERPARAMETER not in hyperparameters:
        return None
    return f"{path} ({HYPERPARAMETER})", str(hyperparameters[HYPERPARAMETER])


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

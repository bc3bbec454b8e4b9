"""The neutral spec turned into a CreateFineTuningJob request, and what it cannot say.

The plan shows the request with placeholders for what only exists later (the uploaded
files' ids, the run key); :func:`fill` puts the real values in at submit, so the job
created is exactly the one planned.
"""

from __future__ import annotations

from typing import Any

from tunefleet.provider import Unmet, fill_placeholders
from tunefleet.spec import RunSpec
from tunefleet_openai.options import OpenAIOptions

__all__ = [
    "METADATA_RUN_KEY",
    "RUN_KEY",
    "file_placeholder",
    "fill",
    "job_request",
    "refusals",
    "too_many_tags",
]

METADATA_RUN_KEY = "tunefleet:run-key"
"""The job metadata key ``find`` filters on. Tag keys may not start with ``tunefleet:``,
so a user's tag never collides with it."""
METADATA_RUN = "tunefleet:run"
METADATA_TARGET = "tunefleet:target"
MAX_METADATA_KEYS = 16
RUN_KEY = "${run_key}"
_ALL = frozenset({"${train_file}", "${validation_file}", RUN_KEY})

# The API's bounds (FineTuneSupervisedHyperparameters, FineTuneDPOHyperparameters).
MAX_EPOCHS = 50
MAX_BATCH_SIZE = 256
MAX_BETA = 2.0

_NOT_SETTABLE = {
    "warmup_ratio": "OpenAI does not let you set the learning-rate warm-up",
    "scheduler": "OpenAI does not let you choose the learning-rate schedule",
    "max_grad_norm": "OpenAI does not let you set gradient clipping",
    "max_seq_length": "OpenAI trains at the model's own context length and cannot truncate "
    "examples to another",
    "lora": "OpenAI chooses how it adapts the model; remove hyperparameters.lora",
}


def file_placeholder(role: str) -> str:
    """Stands for the uploaded file's id in a planned request."""
    return f"${{{role}_file}}"


def refusals(spec: RunSpec) -> list[Unmet]:
    """Each part of ``spec`` the fine-tuning API cannot honour, with the reason."""
    unmet: list[Unmet] = []
    hp = spec.hyperparameters
    if hp.learning_rate is not None:
        unmet.append(
            Unmet(
                requirement="hyperparameters.learning_rate",
                reason="OpenAI takes no absolute learning rate, only a multiplier of the "
                "rate it picks for the model and data; use learning_rate_multiplier instead",
            )
        )
    for field, reason in _NOT_SETTABLE.items():
        if getattr(hp, field) is not None:
            unmet.append(Unmet(requirement=f"hyperparameters.{field}", reason=reason))
    if hp.epochs is not None and hp.epochs > MAX_EPOCHS:
        unmet.append(
            Unmet(
                requirement="hyperparameters.epochs",
                reason=f"OpenAI trains for at most {MAX_EPOCHS} epochs",
            )
        )
    if hp.batch_size is not None and hp.batch_size > MAX_BATCH_SIZE:
        unmet.append(
            Unmet(
                requirement="hyperparameters.batch_size",
                reason=f"OpenAI takes batch sizes up to {MAX_BATCH_SIZE}",
            )
        )
    if spec.method.beta is not None and spec.method.beta > MAX_BETA:
        unmet.append(
            Unmet(requirement="method.beta", reason=f"OpenAI takes a DPO beta up to {MAX_BETA:g}")
        )
    model = spec.base_model
    if model.startswith("scratch:") or "/" in model:
        unmet.append(
            Unmet(
                requirement="base_model",
                reason=f"{model!r} is not an OpenAI model id (e.g. gpt-4o-mini-2024-07-18)",
            )
        )
    return unmet


def job_request(
    spec: RunSpec, target: str, options: OpenAIOptions, roles: list[str]
) -> dict[str, Any]:
    """The CreateFineTuningJob body for ``spec``, with placeholders for files and run key.

    ``roles`` are the dataset roles that will be uploaded (train, and validation if any).
    Unset hyperparameters are left out, so the service applies its ``auto`` rule.
    """
    hp = spec.hyperparameters
    hyperparameters: dict[str, Any] = {}
    if hp.epochs is not None:
        hyperparameters["n_epochs"] = hp.epochs
    if hp.batch_size is not None:
        hyperparameters["batch_size"] = hp.batch_size
    if hp.learning_rate_multiplier is not None:
        hyperparameters["learning_rate_multiplier"] = hp.learning_rate_multiplier
    method_type = spec.method.type
    if method_type == "dpo" and spec.method.beta is not None:
        hyperparameters["beta"] = spec.method.beta
    method: dict[str, Any] = {"type": method_type, method_type: {}}
    if hyperparameters:
        method[method_type]["hyperparameters"] = hyperparameters
    metadata = {METADATA_RUN_KEY: RUN_KEY, METADATA_RUN: spec.name, METADATA_TARGET: target}
    metadata.update(spec.placement.tags)
    body: dict[str, Any] = {
        "model": spec.base_model,
        "training_file": file_placeholder("train"),
        "method": method,
        "suffix": options.suffix or spec.name,
        "metadata": metadata,
    }
    if "validation" in roles:
        body["validation_file"] = file_placeholder("validation")
    if hp.seed is not None:
        body["seed"] = hp.seed
    return body


def too_many_tags(spec: RunSpec) -> Unmet | None:
    """The refusal when the placement tags do not fit in the job's metadata, if they don't."""
    room = MAX_METADATA_KEYS - 3
    if len(spec.placement.tags) <= room:
        return None
    return Unmet(
        requirement="placement.tags",
        reason=f"a job's metadata holds {MAX_METADATA_KEYS} keys and tunefleet uses 3, so at "
        f"most {room} tags fit (the spec has {len(spec.placement.tags)})",
    )


def fill(body: dict[str, Any], files: dict[str, str], run_key: str) -> dict[str, Any]:
    """``body`` with the uploaded files' ids and the run key in place of the placeholders."""
    values = {file_placeholder(role): file_id for role, file_id in files.items()}
    values[RUN_KEY] = run_key
    filled = fill_placeholders(body, values)
    left = [key for key, value in filled.items() if isinstance(value, str) and value in _ALL]
    if left:
        raise ValueError(f"nothing staged for {', '.join(left)}")
    return filled

"""What providers that run tunefleet's trainer share: its config from a spec, the spec's
knobs it cannot take, its output lines as events, and the golden set's answers it writes.

The trainer's contract is :mod:`tunefleet_trainer.config` (the config) and
:mod:`tunefleet_trainer.metrics` (the lines); a provider adds only the paths its launcher
mounts, with :func:`with_paths`.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from tunefleet.provider import ArtifactRef, Unmet
from tunefleet.spec import RunSpec
from tunefleet_trainer.config import DEFAULT_EPOCHS, TrainerConfig
from tunefleet_trainer.metrics import read_checkpoint_line, read_metric_line
from tunefleet_trainer.predictions import (
    BASELINE_PREDICTIONS_NAME,
    PREDICTIONS_NAME,
    read_progress_line,
)

if TYPE_CHECKING:
    from tunefleet.events import Event

__all__ = [
    "DEFAULT_EPOCHS",
    "MAX_LOG_EVENT",
    "epochs",
    "line_event",
    "log_level",
    "prediction_artifacts",
    "trainer_config",
    "trainer_unmet",
    "with_paths",
]

MAX_LOG_EVENT = 2000
"""Characters of a log line kept in its event (the job's own log keeps the whole line)."""
_HOSTED_ONLY = {
    "learning_rate_multiplier": "the trainer takes an absolute learning rate "
    "(hyperparameters.learning_rate), not a multiplier of a hosted service's default",
}


def epochs(spec: RunSpec) -> tuple[int, Literal["spec", "provider default"]]:
    """The epochs the trainer runs for ``spec`` and where the number comes from."""
    given = spec.hyperparameters.epochs
    return (given, "spec") if given else (DEFAULT_EPOCHS, "provider default")


def trainer_unmet(spec: RunSpec) -> list[Unmet]:
    """The spec's knobs the trainer cannot honour, each with the reason."""
    hyperparameters = spec.hyperparameters
    return [
        Unmet(requirement=f"hyperparameters.{field}", reason=reason)
        for field, reason in _HOSTED_ONLY.items()
        if getattr(hyperparameters, field) is not None
    ]


def trainer_config(spec: RunSpec, **settings: Any) -> dict[str, Any]:
    """The trainer's config for ``spec`` as JSON, less the paths the launcher decides.

    ``settings`` are further TrainerConfig fields the provider chooses (``merge``,
    ``device``, ``base_model`` resolved to a local directory ...); None values are left out.
    """
    hyperparameters = spec.hyperparameters.model_dump(
        mode="json", exclude_none=True, exclude=set(_HOSTED_ONLY)
    )
    config: dict[str, Any] = {
        "base_model": spec.base_model,
        "method": spec.method.type,
        "adapter": spec.method.adapter or "lora",
        "hyperparameters": hyperparameters,
    }
    if spec.method.beta is not None:
        config["beta"] = spec.method.beta
    if spec.evaluation is not None:
        # The golden set's path is the launcher's to decide (with_paths adds it).
        config["evaluation"] = {
            "max_examples": spec.evaluation.max_examples,
            "generation": {"max_new_tokens": spec.evaluation.max_tokens},
            "baseline": True,
        }
    config.update({key: value for key, value in settings.items() if value is not None})
    return config


def with_paths(
    config: dict[str, Any],
    *,
    train: str,
    output_dir: str,
    validation: str | None = None,
    checkpoint_dir: str | None = None,
    golden_set: str | None = None,
    predictions_dir: str | None = None,
) -> TrainerConfig:
    """``config`` with the launcher's paths, validated against the trainer's contract.

    ``golden_set`` (and ``predictions_dir``, where the answers go if not in output_dir)
    complete the config's evaluation; a config with an evaluation needs ``golden_set``.
    """
    paths = {
        "train": train,
        "validation": validation,
        "output_dir": output_dir,
        "checkpoint_dir": checkpoint_dir,
    }
    completed = {**config, **{key: value for key, value in paths.items() if value is not None}}
    if "evaluation" in config:
        evaluation = {**config["evaluation"], "golden_set": golden_set}
        if predictions_dir is not None:
            evaluation["predictions_dir"] = predictions_dir
        completed["evaluation"] = evaluation
    try:
        return TrainerConfig.model_validate(completed)
    except ValidationError as exc:  # a provider's bug, not the user's: say what broke
        raise ValueError(f"not a valid trainer config: {exc.errors()[0]['msg']}") from None


def log_level(line: str) -> Literal["info", "warning", "error"]:
    """How serious an ordinary log line of the trainer looks."""
    lowered = line.lower()
    if "error" in lowered or lowered.startswith("traceback"):
        return "error"
    if "warn" in lowered:
        return "warning"
    return "info"


def line_event(
    line: str, *, event_id: str, time: datetime, checkpoint_uri: str | None = None
) -> Event:
    """One line the trainer printed, as an event: a metric, a checkpoint or a log line
    (a progress line of the golden set's answering reads as one, in words).

    ``checkpoint_uri`` replaces the path the trainer saw for a checkpoint, where the
    provider knows where the launcher copies it (an S3 prefix, say). A malformed metric
    line stays a log line: a log is not ours to trust.
    """
    # Here, not at the top: plans import this module and make no event.
    from tunefleet.events import CheckpointEvent, LogEvent, MetricEvent

    metric = read_metric_line(line)
    if metric is not None:
        try:
            return MetricEvent(id=event_id, time=time, **metric)
        except ValidationError:
            pass
    answering = read_progress_line(line)
    if answering is not None and answering["task"] == "predict":
        model = "base" if answering["model"] == "baseline" else answering["model"]
        return LogEvent(
            id=event_id,
            time=time,
            level="info",
            message=f"answering the golden set with the {model} model: "
            f"{answering['done']} of {answering['total']}",
        )
    checkpoint = read_checkpoint_line(line)
    if checkpoint is not None:
        try:
            return CheckpointEvent(
                id=event_id,
                time=time,
                step=checkpoint["step"],
                uri=checkpoint_uri or checkpoint["path"],
            )
        except ValidationError:
            pass
    return LogEvent(id=event_id, time=time, level=log_level(line), message=line[:MAX_LOG_EVENT])


def prediction_artifacts(config: dict[str, Any], folder: str | None) -> list[ArtifactRef]:
    """The answers files a job created with an evaluation wrote to ``folder`` (a URI): the
    trained model's, and the base model's unless the config turned the baseline off.
    Decided by the job's own trainer config (``config``), not by the plan of the run that
    found the job; none without an evaluation or a folder."""
    evaluation = config.get("evaluation")
    if not isinstance(evaluation, dict) or not folder:
        return []
    base = folder.rstrip("/")
    found = [ArtifactRef(kind="predictions", uri=f"{base}/{PREDICTIONS_NAME}")]
    if evaluation.get("baseline", True):
        found.append(
            ArtifactRef(kind="baseline_predictions", uri=f"{base}/{BASELINE_PREDICTIONS_NAME}")
        )
    return found

"""The trainer's parseable lines: one per logging step, one per checkpoint.

A line is a prefix and one JSON object::

    tunefleet.metric {"step":12,"total_steps":40,"epoch":0.3,"train_loss":1.284,...}
    tunefleet.checkpoint {"step":40,"path":"/opt/ml/checkpoints/checkpoint-40"}

JSON keeps it exact (no float formatting to agree on), extensible (unknown keys are
ignored by older readers) and easy to find in any log stream (CloudWatch, Azure ML, Vertex,
a local file). Everything else the trainer prints is an ordinary log line. This module is
half of the trainer's contract (with :mod:`tunefleet_trainer.config`); tunefleet's provider
kit turns the lines read here into events. It imports only the standard library.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "CHECKPOINT_PREFIX",
    "METRIC_FIELDS",
    "METRIC_PREFIX",
    "format_checkpoint_line",
    "format_metric_line",
    "read_checkpoint_line",
    "read_metric_line",
]

METRIC_PREFIX = "tunefleet.metric "
CHECKPOINT_PREFIX = "tunefleet.checkpoint "
METRIC_FIELDS: tuple[str, ...] = (
    "step",
    "total_steps",
    "epoch",
    "train_loss",
    "valid_loss",
    "train_token_accuracy",
    "valid_token_accuracy",
    "learning_rate",
)
"""What a metric line may report, in order (tunefleet's MetricEvent has the same fields)."""


def format_metric_line(*, step: int, **values: float | int | None) -> str:
    """The line for one logging step; ``values`` are METRIC_FIELDS (None omitted)."""
    unknown = set(values) - set(METRIC_FIELDS)
    if unknown:
        raise TypeError(f"unknown metric fields: {', '.join(sorted(unknown))}")
    body: dict[str, Any] = {"step": step}
    body.update({key: value for key, value in values.items() if value is not None})
    # NaN and Infinity are written as Python's json writes them: a diverged loss must
    # reach the user as NaN, not crash the trainer or vanish.
    return METRIC_PREFIX + json.dumps(body, separators=(",", ":"))


def format_checkpoint_line(*, step: int, path: str) -> str:
    """The line announcing a complete checkpoint of step ``step`` at ``path``."""
    return CHECKPOINT_PREFIX + json.dumps({"step": step, "path": path}, separators=(",", ":"))


def _body(line: str, prefix: str) -> dict[str, Any] | None:
    start = line.find(prefix)
    if start < 0:
        return None
    try:
        body = json.loads(line[start + len(prefix) :])
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def read_metric_line(line: str) -> dict[str, Any] | None:
    """The known fields of the metric line ``line``, or None when it is not one.

    Leading text before the prefix (a log timestamp, a rank tag) is skipped; a malformed
    line is not an error, because a log is not ours to trust: it stays a log line. The
    values are as written; whoever reads them checks their ranges.
    """
    body = _body(line, METRIC_PREFIX)
    if body is None or "step" not in body:
        return None
    return {key: body[key] for key in METRIC_FIELDS if key in body}


def read_checkpoint_line(line: str) -> dict[str, Any] | None:
    """``{"step": ..., "path": ...}`` of the checkpoint line ``line``, or None."""
    body = _body(line, CHECKPOINT_PREFIX)
    if body is None or not isinstance(body.get("path"), str):
        return None
    return {"step": body.get("step"), "path": body["path"]}

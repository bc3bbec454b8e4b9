"""The trainer's parseable lines: one per logging step, one per checkpoint.

A line is a prefix and one JSON object::

    tunefleet.metric {"step":12,"total_steps":40,"epoch":0.3,"train_loss":1.284,...}
    tunefleet.checkpoint {"step":40,"path":"/opt/ml/checkpoints/checkpoint-40"}

JSON keeps it exact (no float formatting to agree on), extensible (unknown keys are
ignored by older parsers) and easy to find in any log stream (CloudWatch, Azure ML, Vertex,
a local file). Everything else the trainer prints is an ordinary log line.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from tunefleet.events import METRIC_FIELDS, CheckpointEvent, MetricEvent

__all__ = [
    "CHECKPOINT_PREFIX",
    "METRIC_PREFIX",
    "format_checkpoint_line",
    "format_metric_line",
    "parse_checkpoint_line",
    "parse_metric_line",
]

METRIC_PREFIX = "tunefleet.metric "
CHECKPOINT_PREFIX = "tunefleet.checkpoint "


def format_metric_line(*, step: int, **values: float | int | None) -> str:
    """The line for one logging step; ``values`` are MetricEvent's fields (None omitted)."""
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


def parse_metric_line(line: str, *, event_id: str, time: datetime) -> MetricEvent | None:
    """The MetricEvent in ``line``, or None when it is not a well-formed metric line.

    Leading text before the prefix (a log timestamp, a rank tag) is skipped; a malformed
    line is not an error, because a log is not ours to trust: it stays a log line.
    """
    body = _body(line, METRIC_PREFIX)
    if body is None:
        return None
    known = {key: body[key] for key in METRIC_FIELDS if key in body}
    try:
        return MetricEvent(id=event_id, time=time, **known)
    except ValidationError:
        return None


def parse_checkpoint_line(
    line: str, *, event_id: str, time: datetime, uri: str | None = None
) -> CheckpointEvent | None:
    """The CheckpointEvent in ``line``, or None. ``uri`` replaces the path the trainer saw
    (a provider knows where the launcher copies checkpoints to: an S3 prefix, say)."""
    body = _body(line, CHECKPOINT_PREFIX)
    if body is None or not isinstance(body.get("path"), str):
        return None
    try:
        return CheckpointEvent(
            id=event_id, time=time, step=body.get("step"), uri=uri or body["path"]
        )
    except ValidationError:
        return None

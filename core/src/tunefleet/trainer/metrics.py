"""The trainer's metric lines: one line per logging step, parsed by every provider.

A line is the prefix ``tunefleet.metric`` and one JSON object::

    tunefleet.metric {"step":12,"total_steps":40,"epoch":0.3,"train_loss":1.284,...}

JSON keeps it exact (no float formatting to agree on), extensible (unknown keys are
ignored by older parsers) and easy to find in any log stream (CloudWatch, Azure ML, Vertex,
a local file). Everything else the trainer prints is an ordinary log line.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from tunefleet.events import METRIC_FIELDS, MetricEvent

__all__ = ["METRIC_PREFIX", "format_metric_line", "parse_metric_line"]

METRIC_PREFIX = "tunefleet.metric "


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


def parse_metric_line(line: str, *, event_id: str, time: datetime) -> MetricEvent | None:
    """The MetricEvent in ``line``, or None when it is not a well-formed metric line.

    Leading text before the prefix (a log timestamp, a rank tag) is skipped; a malformed
    line is not an error, because a log is not ours to trust: it stays a log line.
    """
    start = line.find(METRIC_PREFIX)
    if start < 0:
        return None
    try:
        body = json.loads(line[start + len(METRIC_PREFIX) :])
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    known = {key: body[key] for key in METRIC_FIELDS if key in body}
    try:
        return MetricEvent(id=event_id, time=time, **known)
    except ValidationError:
        return None

"""The metric line format the trainer prints and the provider kit turns into events."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from tunefleet.events import METRIC_FIELDS as EVENT_FIELDS
from tunefleet.events import CheckpointEvent, LogEvent, MetricEvent
from tunefleet.kit.trainer import line_event
from tunefleet_trainer.metrics import (
    METRIC_FIELDS,
    METRIC_PREFIX,
    format_checkpoint_line,
    format_metric_line,
)

NOW = datetime(2026, 11, 22, tzinfo=UTC)


def test_the_trainer_and_the_event_stream_agree_on_the_metrics() -> None:
    assert METRIC_FIELDS == EVENT_FIELDS


def test_a_line_round_trips_exactly() -> None:
    line = format_metric_line(
        step=12, total_steps=40, epoch=0.3, train_loss=1.2843217, valid_loss=None,
        train_token_accuracy=0.61, learning_rate=2e-4,
    )  # fmt: skip
    assert line.startswith(METRIC_PREFIX) and "valid_loss" not in line
    event = line_event(f"2026-11-22T10:00:00Z [rank0] {line}", event_id="l7", time=NOW)
    assert isinstance(event, MetricEvent)
    assert (event.id, event.step, event.total_steps, event.train_loss) == ("l7", 12, 40, 1.2843217)
    assert event.learning_rate == 2e-4 and event.valid_loss is None


@pytest.mark.parametrize(
    "line",
    [
        "loss went down nicely",
        METRIC_PREFIX + "{not json",
        METRIC_PREFIX + "[1, 2]",
        METRIC_PREFIX + '{"step": -1}',
        METRIC_PREFIX + '{"train_loss": 1.0}',
        METRIC_PREFIX + '{"step": 3, "train_token_accuracy": 7}',
    ],
)
def test_anything_else_stays_a_log_line(line: str) -> None:
    event = line_event(line, event_id="x", time=NOW)
    assert isinstance(event, LogEvent) and event.message == line


def test_unknown_keys_from_a_newer_trainer_are_ignored_and_bad_fields_refused() -> None:
    event = line_event(METRIC_PREFIX + '{"step": 1, "grad_norm": 0.4}', event_id="x", time=NOW)
    assert isinstance(event, MetricEvent) and event.step == 1
    with pytest.raises(TypeError, match="unknown metric fields: grad_norm"):
        format_metric_line(step=1, grad_norm=0.4)


def test_a_diverged_loss_arrives_as_nan() -> None:
    event = line_event(format_metric_line(step=9, train_loss=float("nan")), event_id="x", time=NOW)
    assert isinstance(event, MetricEvent) and event.train_loss is not None
    assert math.isnan(event.train_loss)


def test_a_checkpoint_is_reported_where_the_launcher_copies_it() -> None:
    line = format_checkpoint_line(step=40, path="/opt/ml/checkpoints/checkpoint-40")
    event = line_event(line, event_id="c", time=NOW, checkpoint_uri="s3://b/ckpt/checkpoint-40")
    assert isinstance(event, CheckpointEvent)
    assert (event.step, event.uri) == (40, "s3://b/ckpt/checkpoint-40")
    assert line_event("Traceback (most recent call last):", event_id="t", time=NOW).level == (
        "error"
    )

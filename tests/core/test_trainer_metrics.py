"""The metric line format the trainer prints and providers parse."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from tunefleet.trainer.metrics import METRIC_PREFIX, format_metric_line, parse_metric_line

NOW = datetime(2026, 11, 22, tzinfo=UTC)


def test_a_line_round_trips_exactly() -> None:
    line = format_metric_line(
        step=12, total_steps=40, epoch=0.3, train_loss=1.2843217, valid_loss=None,
        train_token_accuracy=0.61, learning_rate=2e-4,
    )  # fmt: skip
    assert line.startswith(METRIC_PREFIX) and "valid_loss" not in line
    event = parse_metric_line(f"2026-11-22T10:00:00Z [rank0] {line}", event_id="l7", time=NOW)
    assert event is not None
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
def test_anything_else_is_not_a_metric(line: str) -> None:
    assert parse_metric_line(line, event_id="x", time=NOW) is None


def test_unknown_keys_from_a_newer_trainer_are_ignored_and_bad_fields_refused() -> None:
    event = parse_metric_line(
        METRIC_PREFIX + '{"step": 1, "grad_norm": 0.4}', event_id="x", time=NOW
    )
    assert event is not None and event.step == 1
    with pytest.raises(TypeError, match="unknown metric fields: grad_norm"):
        format_metric_line(step=1, grad_norm=0.4)


def test_a_diverged_loss_arrives_as_nan() -> None:
    line = format_metric_line(step=9, train_loss=float("nan"))
    event = parse_metric_line(line, event_id="x", time=NOW)
    assert event is not None and event.train_loss is not None
    assert math.isnan(event.train_loss)

"""The normalized event stream every provider's job reports in.

Providers translate their native signals (OpenAI job events, CloudWatch log lines, Azure ML
run metrics, the trainer's metric lines) into these models. Each event carries an ``id``
unique within its job, so a stream read twice after a crash is stored once.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from tunefleet.jobstate import JobState

__all__ = [
    "METRIC_FIELDS",
    "CheckpointEvent",
    "CostEvent",
    "Event",
    "EventPage",
    "JobState",
    "JsonCursor",
    "LogEvent",
    "MetricEvent",
    "StatusEvent",
]


class _Event(BaseModel):
    # A diverged loss is NaN; JSON has no NaN, and PostgreSQL's json type refuses the
    # non-standard token, so NaN and infinities travel as the strings "NaN"/"Infinity".
    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="strings")

    id: str = Field(min_length=1, max_length=256)
    """Unique within the job; the provider's event id or a stable derivation of it."""
    time: datetime
    """When it happened, timezone-aware."""


class StatusEvent(_Event):
    """The job changed state."""

    kind: Literal["status"] = "status"
    state: JobState
    message: str | None = None


class MetricEvent(_Event):
    """Training metrics at one step."""

    kind: Literal["metric"] = "metric"
    step: int = Field(ge=0)
    total_steps: int | None = Field(default=None, ge=0)
    epoch: float | None = Field(default=None, ge=0)
    train_loss: float | None = None
    valid_loss: float | None = None
    train_token_accuracy: float | None = Field(default=None, ge=0, le=1)
    valid_token_accuracy: float | None = Field(default=None, ge=0, le=1)
    learning_rate: float | None = Field(default=None, ge=0)


METRIC_FIELDS: tuple[str, ...] = tuple(
    name for name in MetricEvent.model_fields if name not in {"id", "time", "kind"}
)
"""What a metric event measures, in order: step, total_steps, epoch, losses, accuracies..."""


class CheckpointEvent(_Event):
    """A checkpoint was written."""

    kind: Literal["checkpoint"] = "checkpoint"
    step: int = Field(ge=0)
    uri: str


class LogEvent(_Event):
    """A line of the job's log that is not a metric."""

    kind: Literal["log"] = "log"
    level: Literal["debug", "info", "warning", "error"] = "info"
    message: str


class CostEvent(_Event):
    """Money spent so far, as the provider reports or tunefleet derives it."""

    kind: Literal["cost"] = "cost"
    amount: float = Field(ge=0)
    currency: str = "USD"
    basis: str
    """How it was computed (billable seconds x price, trained tokens x price)."""


Event = Annotated[
    StatusEvent | MetricEvent | CheckpointEvent | LogEvent | CostEvent,
    Field(discriminator="kind"),
]


class EventPage(BaseModel):
    """Events after a cursor, oldest first, and the cursor to resume from next time."""

    model_config = ConfigDict(frozen=True)

    events: list[Event]
    cursor: str | None
    """Opaque to the engine; pass it back to read on. None when nothing was ever read."""


@dataclass
class JsonCursor:
    """Base of a provider's event cursor: a dataclass of how far each source was read,
    kept by the engine as compact JSON. Subclasses are dataclasses whose fields all have
    defaults (a fresh cursor reads from the start); a field a newer version adds is read
    back as its default."""

    @classmethod
    def decode(cls, text: str | None) -> Self:
        """The cursor ``text`` encodes (a fresh one for None)."""
        if not text:
            return cls()
        data = json.loads(text)
        return cls(**{key: data[key] for key in asdict(cls()) if key in data})

    def encode(self) -> str:
        """Compact, stable JSON (sorted keys), for ``EventPage.cursor``."""
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

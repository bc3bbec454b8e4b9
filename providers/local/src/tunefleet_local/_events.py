"""A job's ``events.jsonl``: normalized events, one JSON object a line, appended in order.

``submit`` writes the first line (queued); from then on only the runner appends. An event's
id is its line number (``e0000012``), and the cursor handed to the engine is the number of
lines read, so re-reading a page gives the same ids and reading on from the last cursor
gives nothing new. Each event is appended with a single write of a whole line, and readers
stop at a line without its newline (one being written), so nobody sees half an event.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pydantic import TypeAdapter

from tunefleet.errors import ProviderError
from tunefleet.events import Event, EventPage, JobState, StatusEvent
from tunefleet.kit.trainer import line_event

__all__ = ["PAGE_SIZE", "append", "count", "event_id", "page", "status_event", "trainer_event"]

PAGE_SIZE = 500
"""Events per page: a job's whole history arrives in a few reads."""

_EVENT: TypeAdapter[Event] = TypeAdapter(Event)


def event_id(seq: int) -> str:
    """The id of the ``seq``-th event (0-based) of a job."""
    return f"e{seq:07d}"


def status_event(seq: int, state: JobState, message: str) -> StatusEvent:
    """The ``seq``-th event, a change of state, as of now."""
    return StatusEvent(id=event_id(seq), time=datetime.now(UTC), state=state, message=message)


def trainer_event(seq: int, line: str) -> Event:
    """The ``seq``-th event: one line the trainer printed (a metric, a checkpoint or a log
    line, as the provider kit reads the trainer's lines)."""
    return line_event(line, event_id=event_id(seq), time=datetime.now(UTC))


def append(path: Path, event: Event) -> None:
    """Append ``event`` to the log at ``path`` as one line, in one write."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write(event.model_dump_json() + "\n")


def count(path: Path) -> int:
    """Complete events in the log at ``path`` (0 when there is none yet)."""
    try:
        with path.open("rb") as handle:
            return sum(1 for line in handle if line.endswith(b"\n"))
    except FileNotFoundError:
        return 0


def page(provider: str, path: Path, cursor: str | None, limit: int = PAGE_SIZE) -> EventPage:
    """Up to ``limit`` events after ``cursor`` (None: from the first), and the next cursor.

    ProviderError ``invalid_cursor`` for a cursor this provider did not hand out.
    """
    if cursor is not None and not (cursor.isascii() and cursor.isdigit()):
        raise ProviderError(
            provider, f"{cursor!r} is not a local event cursor", code="invalid_cursor"
        )
    start = int(cursor) if cursor else 0
    events: list[Event] = []
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return EventPage(events=events, cursor=str(start))
    with handle:
        for index, line in enumerate(handle):
            if index < start:
                continue
            if len(events) >= limit or not line.endswith(b"\n"):
                break
            events.append(_EVENT.validate_json(line))
    return EventPage(events=events, cursor=str(start + len(events)))

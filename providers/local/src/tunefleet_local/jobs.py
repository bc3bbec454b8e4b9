"""A local job's directory: the files the provider, the runner and the trainer share.

::

    <workdir>/jobs/<run_key>/
        job.json        what was submitted (target, plan's trainer config, created_at)
        trainer.json    the TrainerConfig the trainer runs
        runner.json     the runner's pid and start time (written by submit)
        train.log       everything the trainer printed
        events.jsonl    normalized events, one per line: written by submit (the first)
                        and then only by the runner
        cancel          present once a cancel was asked for
        exit.json       the outcome, written last by the runner (atomically)
        output/         the trainer's output_dir (adapter or model, manifest.json)
        checkpoints/    the trainer's checkpoint_dir

Every file with more than one reader is replaced atomically or appended in whole lines,
so a reader never sees half of one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from tunefleet.events import Event, JobState, StatusEvent

__all__ = ["JobFiles", "read_json", "write_json"]

_EVENT: TypeAdapter[Event] = TypeAdapter(Event)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` with ``data`` atomically."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(partial, path)


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON file's content, or None when it does not exist (yet, or any more)."""
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except FileNotFoundError:
        return None


@dataclass(frozen=True)
class JobFiles:
    """The paths of one job's directory, and the operations on its shared files."""

    root: Path

    @property
    def job(self) -> Path:
        return self.root / "job.json"

    @property
    def trainer_config(self) -> Path:
        return self.root / "trainer.json"

    @property
    def runner(self) -> Path:
        return self.root / "runner.json"

    @property
    def log(self) -> Path:
        return self.root / "train.log"

    @property
    def events(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def cancel_marker(self) -> Path:
        return self.root / "cancel"

    @property
    def exit(self) -> Path:
        return self.root / "exit.json"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def read(self, path: Path) -> dict[str, Any] | None:
        """A JSON file's content, or None when it does not exist yet."""
        return read_json(path)

    def append_event(self, event: Any) -> None:
        """Append one event as one line (a single write, so readers see whole lines)."""
        with self.events.open("a", encoding="utf-8") as handle:
            handle.write(event.model_dump_json() + "\n")

    def event_count(self) -> int:
        try:
            with self.events.open("rb") as handle:
                return sum(1 for line in handle if line.endswith(b"\n"))
        except FileNotFoundError:
            return 0

    def status_event(self, seq: int, state: JobState, message: str) -> StatusEvent:
        return StatusEvent(id=f"e{seq:07d}", time=datetime.now(UTC), state=state, message=message)

    def read_events(self, start: int, limit: int) -> list[Event]:
        """Events ``start`` to ``start + limit`` (complete lines only)."""
        events: list[Event] = []
        try:
            handle = self.events.open("rb")
        except FileNotFoundError:
            return events
        with handle:
            for index, line in enumerate(handle):
                if index < start:
                    continue
                if len(events) >= limit or not line.endswith(b"\n"):
                    break
                events.append(_EVENT.validate_json(line))
        return events

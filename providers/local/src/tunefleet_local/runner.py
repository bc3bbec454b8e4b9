"""``python -m tunefleet_local.runner JOB_DIR``: runs one job's trainer and records its fate.

The provider starts the runner in a session of its own, so it outlives the CLI that
submitted it (``tunefleet run --detach``, Ctrl-C). The runner starts the trainer, copies
its output to ``train.log``, turns each line into an event (metric and checkpoint lines
into their events, the rest into log events) and, when the trainer exits, appends the
final status event and writes ``exit.json``. SIGTERM (``cancel``) is passed on to the
trainer, and the job ends cancelled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Literal

from tunefleet.events import CheckpointEvent, JobState, LogEvent, MetricEvent
from tunefleet.trainer.metrics import parse_checkpoint_line, parse_metric_line
from tunefleet_local.jobs import JobFiles, write_json

MAX_LOG_EVENT = 2000
"""Characters of a log line kept in its event (train.log keeps the whole line)."""


def _level(line: str) -> Literal["info", "warning", "error"]:
    lowered = line.lower()
    if "error" in lowered or lowered.startswith("traceback"):
        return "error"
    if "warn" in lowered:
        return "warning"
    return "info"


def run(files: JobFiles) -> int:
    """Run the trainer for ``files`` to its end; return its exit status."""
    seq = files.event_count()
    command = [sys.executable, "-m", "tunefleet.trainer", "--config", str(files.trainer_config)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    trainer = subprocess.Popen(
        command,
        cwd=files.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
        bufsize=1,
    )

    def forward(signum: int, frame: FrameType | None) -> None:
        trainer.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    files.append_event(files.status_event(seq, JobState.RUNNING, "training on this machine"))
    seq += 1
    last_error = ""
    assert trainer.stdout is not None
    with files.log.open("a", encoding="utf-8") as log:
        for raw in trainer.stdout:
            log.write(raw)
            log.flush()
            line = raw.rstrip("\n")
            if not line.strip():
                continue
            now = datetime.now(UTC)
            event_id = f"e{seq:07d}"
            event: MetricEvent | CheckpointEvent | LogEvent | None = parse_metric_line(
                line, event_id=event_id, time=now
            ) or parse_checkpoint_line(line, event_id=event_id, time=now)
            if event is None:
                level = _level(line)
                if level == "error":
                    last_error = line
                event = LogEvent(id=event_id, time=now, level=level, message=line[:MAX_LOG_EVENT])
            files.append_event(event)
            seq += 1
    code = trainer.wait()
    if files.cancel_marker.exists():
        state, message = JobState.CANCELLED, "cancelled"
    elif code == 0 and (files.output / "manifest.json").is_file():
        state, message = JobState.SUCCEEDED, "trained"
    else:
        reason = last_error.removeprefix("tunefleet-train: error: ") or f"exit status {code}"
        state, message = JobState.FAILED, f"the trainer failed: {reason}"
    files.append_event(files.status_event(seq, state, message))
    write_json(files.exit, {"state": state.value, "message": message, "returncode": code})
    return 0


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: python -m tunefleet_local.runner JOB_DIR", file=sys.stderr)
        return 2
    return run(JobFiles(Path(sys.argv[1])))


if __name__ == "__main__":
    sys.exit(main())

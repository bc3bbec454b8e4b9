"""``python -m tunefleet_local._runner JOB_DIR``: runs one job's trainer and records its fate.

``submit`` starts the runner in a session of its own, so it outlives the CLI that submitted
it (``tunefleet run --detach``, Ctrl-C). The runner starts ``python -m tunefleet_trainer
--config trainer.json`` (the config ``submit`` wrote, paths included), copies its output to
``train.log``, turns each line into an event as the provider kit reads the trainer's lines
(metric and checkpoint lines into their events, the rest into log events) and, when the
trainer exits, appends the final status event and writes ``exit.json``. SIGTERM
(``cancel``) is passed on to the trainer, and the job ends cancelled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

from tunefleet.events import JobState, LogEvent
from tunefleet.kit.files import write_json
from tunefleet.kit.processes import start_time
from tunefleet_local import _events
from tunefleet_local._jobs import JobFiles

__all__ = ["main", "run"]

TRAINER = "tunefleet_trainer"
"""The module the runner runs (``python -m``): the trainer every launcher runs."""
_TRAINER_ERROR_PREFIX = "tunefleet-train: error: "
"""How the trainer prefixes the one line saying why a config cannot run (exit status 2);
stripped from the job's failure message, which names the trainer already."""


def run(files: JobFiles) -> int:
    """Run the trainer of the job in ``files`` to its end and record how it ended.

    Returns 0 once the outcome is recorded, whatever it is: the job's state is in
    ``exit.json`` and the last event, not in the runner's exit status.
    """
    # Its own pid first, as submit also writes it: were submit killed between starting
    # this runner and writing runner.json, the next submit still finds and stops it.
    write_json(files.runner, {"pid": os.getpid(), "start_time": start_time(os.getpid())})
    seq = _events.count(files.events)  # after submit's queued event
    command = [sys.executable, "-m", TRAINER, "--config", str(files.trainer_config)]
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
    _events.append(
        files.events, _events.status_event(seq, JobState.RUNNING, "training on this machine")
    )
    seq += 1
    last_error = ""
    if trainer.stdout is None:  # cannot happen with stdout=PIPE; narrows the type
        raise RuntimeError("the trainer's output is not piped")
    with files.log.open("a", encoding="utf-8") as log:
        for raw in trainer.stdout:
            log.write(raw)
            log.flush()
            line = raw.rstrip("\n")
            if not line.strip():
                continue
            event = _events.trainer_event(seq, line)
            if isinstance(event, LogEvent) and event.level == "error":
                last_error = line  # the likeliest reason, should the trainer fail
            _events.append(files.events, event)
            seq += 1
    code = trainer.wait()
    if files.cancel_marker.exists():
        state, message = JobState.CANCELLED, "cancelled"
    elif code == 0 and files.manifest.is_file():
        state, message = JobState.SUCCEEDED, "trained"
    else:
        reason = last_error.removeprefix(_TRAINER_ERROR_PREFIX) or f"exit status {code}"
        state, message = JobState.FAILED, f"the trainer failed: {reason}"
    _events.append(files.events, _events.status_event(seq, state, message))
    write_json(files.exit, {"state": state.value, "message": message, "returncode": code})
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command line: one argument, the job's directory."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tunefleet_local._runner JOB_DIR", file=sys.stderr)
        return 2
    return run(JobFiles(Path(args[0])))


if __name__ == "__main__":
    sys.exit(main())

"""Failpoints: named places in the engine where a test can freeze the process.

``TUNEFLEET_FAILPOINTS=after-submit,...`` makes the engine, on reaching one of those names,
create ``$TUNEFLEET_FAILPOINT_DIR/<name>`` and then sleep until it is killed. Fault tests
wait for the file and send SIGKILL, so each crash lands exactly at a step boundary. With
the variable unset (always, outside tests) :func:`reached` is one dictionary lookup.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

ENV = "TUNEFLEET_FAILPOINTS"
DIR_ENV = "TUNEFLEET_FAILPOINT_DIR"

BOUNDARIES = (
    "after-record-run",  # the run and its targets are in the journal, nothing staged
    "before-stage",  # the upload's intent is written, the upload not started
    "after-stage",  # uploaded, not yet confirmed in the journal
    "before-submit",  # the job's intent is written, the create call not made
    "after-submit",  # the job exists at the provider, not yet confirmed
    "after-confirm-submit",  # the job is confirmed in the journal, not yet watched
    "after-events-page",  # one page of events stored, more to read
    "after-terminal",  # the job finished; artifacts not yet collected
)


def reached(name: str) -> None:
    """Freeze here if a test asked for it (see the module docstring)."""
    armed = os.environ.get(ENV)
    if not armed or name not in armed.split(","):
        return
    Path(os.environ.get(DIR_ENV, "."), name).touch()
    while True:  # until the test's SIGKILL
        time.sleep(3600)

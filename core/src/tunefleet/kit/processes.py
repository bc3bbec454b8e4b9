"""Is a local process still running? (Journal leases and the local provider's jobs ask.)

A pid alone can be reused by an unrelated process after a reboot or a long time; a pid
with its start time (from ``/proc`` on Linux) cannot.
"""

from __future__ import annotations

import os
from pathlib import Path


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None where unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def is_alive(pid: int, started: int | None = None) -> bool:
    """True if ``pid`` runs (and, when ``started`` is given, is the process started then).

    A zombie -- a killed child its parent has not reaped -- is not alive, once its other
    threads are gone too: a killed process's leader turns zombie first, while its other
    threads still exit and still hold its files (a server's listening socket).
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return True  # no /proc (macOS): the signal test is all there is
    if fields[0] == "Z":
        try:
            return len(os.listdir(f"/proc/{pid}/task")) > 1
        except OSError:
            return False
    return started is None or int(fields[19]) == started

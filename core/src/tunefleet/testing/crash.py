"""Kill a ``tunefleet`` process at any line of a provider call, not only at the engine's
step boundaries.

A test sets :data:`ENV` to ``<module>:<function>:<n>`` and puts :func:`site_dir`'s folder on
``PYTHONPATH``; every Python process started so loads this module at start-up (through a
``sitecustomize``) and, while ``<module>.<function>`` runs in any thread, counts the lines
it reaches in it and in the functions it calls that belong to the same top-level package
or to the provider kit (``tunefleet.kit``: state files, locks), and sends itself SIGKILL
before the ``n``-th. Only lines reached for the first time count, so the count does not
depend on how often a loop that waits for something goes round: the same code path gives
the same numbers run after run. With ``n`` = 0 nothing is killed: the process writes how
many lines the call reached to :data:`COUNT_ENV`'s file when it exits, so a test can
first measure a call and then kill it at points spread across it.

Tracing costs time only while the watched function runs; elsewhere the tracer returns at
once. It is test support: nothing in tunefleet imports it.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = ["COUNT_ENV", "ENV", "install", "site_dir"]

ENV = "TUNEFLEET_CRASH_AT"
"""``<module>:<function>:<n>``: kill before the n-th line of that call (0: only count)."""
COUNT_ENV = "TUNEFLEET_CRASH_COUNT"
"""A file where a counting process (n = 0) writes the lines the call executed."""

_SITECUSTOMIZE = "from tunefleet.testing import crash\n\ncrash.install()\n"


def site_dir(folder: Path) -> Path:
    """Write a ``sitecustomize.py`` that installs the tracer into ``folder``; put ``folder``
    on ``PYTHONPATH`` of the processes to kill."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    return folder


def install() -> None:
    """Trace every thread of this process as :data:`ENV` asks; a no-op without it."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    module, function, count = spec.rsplit(":", 2)
    tracer = _Tracer(module, function, int(count))
    sys.settrace(tracer.global_trace)
    threading.settrace(tracer.global_trace)
    if tracer.kill_at == 0 and os.environ.get(COUNT_ENV):
        atexit.register(tracer.write_count, Path(os.environ[COUNT_ENV]))


class _Tracer:
    def __init__(self, module: str, function: str, kill_at: int) -> None:
        self.module = module
        self.function = function
        self.package = module.split(".")[0]
        self.kill_at = kill_at
        self.lines = 0
        self.seen: set[tuple[str, int]] = set()
        self.active = threading.local()
        self.lock = threading.Lock()

    def _depth(self) -> int:
        return getattr(self.active, "depth", 0)

    def global_trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        name = frame.f_globals.get("__name__", "")
        if frame.f_code.co_name == self.function and name == self.module:
            self.active.depth = self._depth() + 1
            return self.local_trace
        if self._depth() and (
            name == self.package or name.startswith((self.package + ".", "tunefleet.kit."))
        ):
            return self.local_trace
        return None

    def local_trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line":
            position = (frame.f_code.co_filename, frame.f_lineno)
            with self.lock:
                if position in self.seen:
                    return self.local_trace
                self.seen.add(position)
                self.lines += 1
                line = self.lines
            if line == self.kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        elif (
            event == "return"
            and frame.f_code.co_name == self.function
            and frame.f_globals.get("__name__") == self.module
        ):
            self.active.depth = self._depth() - 1
        return self.local_trace

    def write_count(self, path: Path) -> None:
        path.write_text(str(self.lines))

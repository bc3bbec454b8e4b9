"""The run engine: plan, then apply a spec's targets, resumably (see :mod:`.engine`)."""

from __future__ import annotations

from tunefleet.run.calls import CallPolicy
from tunefleet.run.engine import DriveHandle, Engine, EngineSettings, StartedRun
from tunefleet.run.progress import RunProgress, TargetProgress, run_progress

__all__ = [
    "CallPolicy",
    "DriveHandle",
    "Engine",
    "EngineSettings",
    "RunProgress",
    "StartedRun",
    "TargetProgress",
    "run_progress",
]

"""tunefleet: one declarative spec, any cloud.

The public Python API. Names load on first use, so ``import tunefleet`` is cheap and never
imports a cloud SDK::

    import tunefleet

    spec = tunefleet.load_spec("tunefleet.yaml")
    report = tunefleet.validate_dataset("data/train.jsonl", model=spec.base_model)
    run_plan = tunefleet.plan_run(spec)
    run_plan.raise_for_unmet()

    engine = tunefleet.Engine(tunefleet.open_journal())   # the journal: SQLite by default
    started = engine.start(spec)                           # plan and record (idempotent)
    engine.drive(started.run.id, retry_errors=True).join() # stage, submit, watch, collect

Errors are documented in :mod:`tunefleet.errors`; the provider contract in
:mod:`tunefleet.provider` and :mod:`tunefleet.hookspecs`.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tunefleet.data import validate_dataset
    from tunefleet.data.report import DatasetReport
    from tunefleet.planning import RunPlan, plan_run
    from tunefleet.provider import Plan
    from tunefleet.run import Engine
    from tunefleet.spec import RunSpec, load_spec, parse_spec
    from tunefleet.state import open_journal

__all__ = [
    "DatasetReport",
    "Engine",
    "Plan",
    "RunPlan",
    "RunSpec",
    "load_spec",
    "open_journal",
    "parse_spec",
    "plan_run",
    "validate_dataset",
]

_HOMES = {
    "DatasetReport": "tunefleet.data.report",
    "Engine": "tunefleet.run",
    "Plan": "tunefleet.provider",
    "RunPlan": "tunefleet.planning",
    "RunSpec": "tunefleet.spec",
    "load_spec": "tunefleet.spec",
    "open_journal": "tunefleet.state",
    "parse_spec": "tunefleet.spec",
    "plan_run": "tunefleet.planning",
    "validate_dataset": "tunefleet.data",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'tunefleet' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

"""How the CLI shows runs: a live table on a terminal, one line per change otherwise.

Whoever drives a run, the view reads the journal, so a `watch` in a second terminal shows
the same as the process doing the work. Lines (for logs, CI and ``--detach`` log files)
are printed only when something changed: phase, job state, a new step.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rich.live import Live
from rich.markup import escape
from rich.table import Table

from tunefleet.cli.render import err, out

if TYPE_CHECKING:
    from tunefleet.run import DriveHandle, RunProgress, TargetProgress
    from tunefleet.state import Journal
    from tunefleet.state.journal import EventRecord
    from tunefleet.state.models import Event, Run


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _money(amount: float | None, currency: str) -> str:
    if amount is None:
        return ""
    return f"${amount:,.2f}" if currency == "USD" else f"{amount:,.2f} {currency}"


def _loss(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def state_label(target: TargetProgress) -> str:
    """The word for where a target stands: its job's state, or the engine's phase."""
    if target.phase == "done":
        return target.state or "done"
    if target.phase == "watching":
        return target.state or "submitted"
    if target.cancel_requested:
        return f"cancelling ({target.phase})"
    return target.phase


def _step(target: TargetProgress) -> str:
    if target.step is None:
        return ""
    return f"{target.step}/{target.total_steps}" if target.total_steps else str(target.step)


def table(progress: RunProgress) -> Table:
    grid = Table(title=f"run {progress.id}", title_justify="left")
    for column in ("target", "provider", "state", "step", "train loss", "valid loss"):
        grid.add_column(column)
    grid.add_column("elapsed", justify="right")
    grid.add_column("cost (est.)", justify="right")
    grid.add_column("note")
    for t in progress.targets:
        cost = _money(t.cost, t.currency)
        estimate = _money(t.estimated_cost, t.currency)
        grid.add_row(
            escape(t.name),
            escape(t.provider + (f" {t.region}" if t.region else "")),
            escape(state_label(t)),
            _step(t),
            _loss(t.train_loss),
            _loss(t.valid_loss),
            _duration(t.elapsed_seconds),
            f"{cost or '-'} ({estimate or '?'})",
            escape((t.message or "")[:80]),
        )
    return grid


def line(target: TargetProgress) -> str:
    """One line that says where a target stands."""
    parts = [f"{target.name}: {state_label(target)}"]
    if target.step is not None:
        parts.append(f"step {_step(target)}")
    if target.train_loss is not None:
        parts.append(f"train_loss {_loss(target.train_loss)}")
    if target.valid_loss is not None:
        parts.append(f"valid_loss {_loss(target.valid_loss)}")
    if target.message and target.phase in ("queued", "error"):
        parts.append(f"({target.message})")
    return ", ".join(parts)


def summary(progress: RunProgress, *, as_json: bool) -> None:
    """The run as it stands: a table, or JSON."""
    if as_json:
        print(json.dumps(progress.model_dump(mode="json"), indent=2))
        return
    if out.is_terminal:
        out.print(table(progress))
    else:  # pipes and logs: whole lines, nothing cut to fit a table
        out.print(f"run {progress.id}", markup=False)
        for target in progress.targets:
            out.print(line(target), markup=False)
    for target in progress.targets:
        if target.job_id:
            out.print(f"{escape(target.name)}: job {escape(target.job_id)}")
        for artifact in target.artifacts:
            out.print(f"{escape(target.name)}: {artifact['kind']} {escape(artifact['uri'])}")
        if target.evaluation is not None:
            scores = ", ".join(
                f"{name} {value:.4g}" if isinstance(value, float) else f"{name} -"
                for name, value in target.evaluation["metrics"].items()
            )
            verdict = "passed" if target.evaluation["passed"] else "FAILED"
            out.print(f"{escape(target.name)}: evaluation {verdict}: {escape(scores)}")
        if target.model is not None:
            out.print(f"{escape(target.name)}: registered as model {escape(target.model)}")


def follow(journal: Journal, run: Run, handle: DriveHandle, *, live: bool) -> None:
    """Show the run until ``handle``'s drivers finish. Raises KeyboardInterrupt on Ctrl-C."""
    from tunefleet.run import run_progress

    if live and err.is_terminal:
        with Live(table(run_progress(journal, run)), console=err, refresh_per_second=4) as view:
            while handle.alive:
                handle.join(0.5)
                view.update(table(run_progress(journal, run)))
        return
    last: dict[str, str] = {}
    while True:
        finished = not handle.alive
        for target in run_progress(journal, run).targets:
            text = line(target)
            if last.get(target.name) != text:
                last[target.name] = text
                err.print(escape(text))
        if finished:
            return
        handle.join(1.0)


def event_line(target: str, event: Event | EventRecord) -> str:
    """One event as a log line: time (UTC), target, what happened."""
    from tunefleet.run.progress import describe_event

    payload: dict[str, Any] = event.payload
    prefix = {"status": "status ", "checkpoint": "checkpoint at ", "cost": "cost "}.get(
        event.kind, f"[{payload.get('level', 'info')}] " if event.kind == "log" else ""
    )
    stamp = event.time.strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{stamp} {target} {prefix}{describe_event(payload)}"

"""Commands that apply runs and read the journal: run, runs, status, watch, logs, cancel,
resume, report, audit.

Exit status (beyond the CLI's usual ones): `run`, `resume` and `watch` exit 0 when every
target's job succeeded, 1 when a job failed or was cancelled, 3 when a step stopped on a
provider error, 130 when Ctrl-C detached from jobs that keep running.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from tunefleet.run import DriveHandle, Engine
    from tunefleet.state import Journal
    from tunefleet.state.models import Run

RunArg = Annotated[
    str, typer.Argument(metavar="RUN", help="Run id, a unique prefix of one, or a run name.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
TargetOpt = Annotated[str | None, typer.Option(help="Only this target.")]

audit_app = typer.Typer(help="Check the journal's audit log.", no_args_is_help=True)


def _journal(ctx: typer.Context) -> Journal:
    from tunefleet.state import open_journal

    return open_journal((ctx.obj or {}).get("state"))


def _engine(journal: Journal, *, quiet: bool = False) -> Engine:
    from tunefleet.cli.render import err
    from tunefleet.run import Engine, EngineSettings

    def notice(target: str, message: str) -> None:
        if not quiet:
            err.print(f"{target}: {message}", markup=False, highlight=False)

    return Engine(journal, settings=EngineSettings.from_env(), notice=notice)


def _target_ids(journal: Journal, run: Run, target: str | None) -> list[int] | None:
    if target is None:
        return None
    rows = [row for row in journal.targets(run.id) if row.name == target]
    if not rows:
        from tunefleet.errors import UsageError

        names = ", ".join(row.name for row in journal.targets(run.id))
        raise UsageError(f"run {run.id} has no target {target!r} (it has: {names})")
    return [rows[0].id]


def _attach(journal: Journal, run: Run, handle: DriveHandle, *, as_json: bool) -> None:
    """Show the run until it is done, then its summary; Ctrl-C detaches."""
    from tunefleet.cli import runview
    from tunefleet.cli.render import err
    from tunefleet.run import run_progress

    try:
        runview.follow(journal, run, handle, live=not as_json)
    except KeyboardInterrupt:
        handle.detach()
        err.print(
            f"detached from run {run.id}; its jobs keep running. "
            f"Reattach with: tunefleet watch {run.id}",
            markup=False,
        )
        raise typer.Exit(130) from None
    progress = run_progress(journal, run)
    runview.summary(progress, as_json=as_json)
    _raise_crash(handle)
    progress.raise_for_outcome()


def _raise_crash(handle: DriveHandle) -> None:
    """Re-raise what stopped a driver: journal trouble as StateError, a bug as itself."""
    if not handle.crashes:
        return
    from sqlalchemy.exc import SQLAlchemyError

    from tunefleet.errors import StateError

    crash = handle.crashes[0]
    if isinstance(crash, SQLAlchemyError):
        reason = str(getattr(crash, "orig", None) or crash).splitlines()[0]
        raise StateError(f"lost the journal while driving the run: {reason}") from crash
    raise crash


def _spawn_detached(journal: Journal, run: Run) -> Path:
    """Drive the run from a background process that outlives this one; returns its log."""
    import os
    import subprocess
    import sys

    from platformdirs import user_log_dir

    log_dir = Path(user_log_dir("tunefleet")) / "runs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{run.id}.log"
    # The state URL travels in the environment, not argv: a password in it would show in
    # `ps` to every user of the machine.
    env = {**os.environ, "TUNEFLEET_STATE": journal.url}
    with log_path.open("ab") as log:
        subprocess.Popen(
            [sys.executable, "-m", "tunefleet", "resume", run.id],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # Ctrl-C in this terminal must not reach it
        )
    return log_path


def run(
    ctx: typer.Context,
    spec: Annotated[Path, typer.Argument(help="The run spec (YAML).")],
    target: TargetOpt = None,
    detach: Annotated[
        bool, typer.Option(help="Start the run in the background and return at once.")
    ] = False,
    new_attempt: Annotated[
        bool,
        typer.Option(help="Train again even if this spec's job already finished (a new job)."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Plan and apply a spec: validate data, stage, submit, watch, collect artifacts.

    Running the same spec again reattaches to its run instead of starting another job.
    Ctrl-C detaches; the jobs keep running (reattach with `tunefleet watch RUN`).
    """
    from tunefleet.cli import render
    from tunefleet.cli.inputs import plan_input
    from tunefleet.data import reuse_reports

    with reuse_reports():
        # Plan before the journal is opened: a bad spec, dataset or plan writes nothing.
        loaded, planned = plan_input(spec, target=target, as_json=as_json)
        planned.raise_for_unmet()
        journal = _journal(ctx)
        engine = _engine(journal, quiet=as_json)
        started = engine.start(loaded, target=target, new_attempt=new_attempt)
    run_row = started.run
    verb = "started" if started.created else "reattached to"
    if detach:
        log_path = _spawn_detached(journal, run_row)
        if as_json:
            print(json.dumps({"run": run_row.id, "log": str(log_path)}))
        else:
            render.out.print(f"{verb} run {run_row.id} in the background; log: {log_path}")
            render.out.print(f"watch it: tunefleet watch {run_row.id}")
        return
    if not as_json:
        render.err.print(f"{verb} run {run_row.id} (journal: {journal.display_url})", markup=False)
    recorded = (run_row.spec or {}).get("evaluation")
    wanted = loaded.model_dump(mode="json").get("evaluation")
    if not started.created and wanted != recorded:
        # The run is the trained model's; its evaluation is scored against what the run
        # recorded until `eval` scores it with the new section. Say so rather than ignore it.
        render.err.print(
            f"the spec's evaluation differs from run {run_row.id}'s, which keeps its own; "
            f"score it with the new one: tunefleet eval {run_row.id} --spec {spec}",
            markup=False,
        )
    handle = engine.drive(run_row.id, [row.id for row in started.targets], retry_errors=True)
    _attach(journal, run_row, handle, as_json=as_json)


def resume(
    ctx: typer.Context,
    run_ref: RunArg,
    target: TargetOpt = None,
    detach: Annotated[bool, typer.Option(help="Resume in the background.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Carry on with a run after a crash, a detach, a fixed error or a pause: reattach,
    resume paused jobs, never redo."""
    journal = _journal(ctx)
    run_row = journal.run(run_ref)
    resumed = _engine(journal, quiet=True).unpause(run_row.id, None)
    if resumed and not as_json:
        from tunefleet.cli import render

        names = ", ".join(row.name for row in resumed)
        render.err.print(f"resumed the paused job(s) of {names}", markup=False)
    if detach:
        from tunefleet.cli import render

        log_path = _spawn_detached(journal, run_row)
        render.out.print(f"resuming run {run_row.id} in the background; log: {log_path}")
        return
    engine = _engine(journal, quiet=as_json)
    handle = engine.drive(run_row.id, _target_ids(journal, run_row, target), retry_errors=True)
    _attach(journal, run_row, handle, as_json=as_json)


def watch(
    ctx: typer.Context,
    run_ref: RunArg,
    target: TargetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Live progress of a run: state, step, losses, elapsed time, cost.

    If no other process is driving the run, watching drives it (polls its jobs and stores
    their events). Ctrl-C stops watching; the jobs keep running.
    """
    journal = _journal(ctx)
    run_row = journal.run(run_ref)
    engine = _engine(journal, quiet=as_json)
    handle = engine.drive(run_row.id, _target_ids(journal, run_row, target))
    _attach(journal, run_row, handle, as_json=as_json)


def runs(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="Show at most this many, newest first.", min=1)] = 20,
    before: Annotated[
        str | None,
        typer.Option(metavar="RUN", help="Only runs older than this one: the next page."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the runs in the journal, newest first, a page at a time.

    A page costs the same however many runs the journal holds; the table ends with the
    command for the next page.
    """
    from rich.markup import escape
    from rich.table import Table

    from tunefleet.cli.render import err, out
    from tunefleet.cli.runview import state_label
    from tunefleet.run.progress import runs_progress

    journal = _journal(ctx)
    page = journal.runs(limit, before=before)
    progresses = runs_progress(journal, page)
    if as_json:
        print(json.dumps([p.model_dump(mode="json") for p in progresses], indent=2))
        return
    if not progresses:
        older = f" older than {journal.run(before).id}" if before else ""
        out.print(f"no runs{older} in the journal at {journal.display_url}", markup=False)
        return
    grid = Table()
    for column in ("run", "created", "by", "targets"):
        grid.add_column(column)
    for p in progresses:
        states = ", ".join(f"{t.name} {state_label(t)}" for t in p.targets)
        grid.add_row(
            escape(p.id),
            p.created_at.strftime("%Y-%m-%d %H:%M"),
            escape(p.created_by),
            escape(states),
        )
    out.print(grid)
    if len(page) == limit:  # maybe more: say how to see them (stderr: the table stays clean)
        err.print(f"older runs: tunefleet runs --before {page[-1].id}", markup=False)


def status(ctx: typer.Context, run_ref: RunArg, as_json: JsonOpt = False) -> None:
    """Where a run stands, from the journal (without calling any provider)."""
    from tunefleet.cli import runview
    from tunefleet.run import run_progress

    journal = _journal(ctx)
    runview.summary(run_progress(journal, journal.run(run_ref)), as_json=as_json)


_DURATION = re.compile(r"(?:\d+[smhd])+")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _tail_count(text: str | None) -> int | None:
    """``--tail``'s value: a number of events, 0 or more; UsageError otherwise."""
    if text is None:
        return None
    from tunefleet.errors import UsageError

    if not text.isascii() or not text.isdigit():
        raise UsageError(f"--tail must be a number of events (0 or more), not {text!r}")
    return int(text)


def _since_time(text: str | None, now: datetime | None = None) -> datetime | None:
    """``--since``'s value as an aware UTC time: an ISO-8601 time (UTC unless it names an
    offset, as log lines print times in UTC) or a duration before ``now`` (``90s``,
    ``10m``, ``2h``, ``1d``, ``1h30m``); UsageError otherwise."""
    if text is None:
        return None
    from tunefleet.errors import UsageError

    now = now or datetime.now(UTC)
    cleaned = text.strip().lower()
    if _DURATION.fullmatch(cleaned):
        seconds = sum(
            int(amount) * _UNIT_SECONDS[unit]
            for amount, unit in re.findall(r"(\d+)([smhd])", cleaned)
        )
        try:
            return now - timedelta(seconds=seconds)
        except OverflowError:
            raise UsageError(f"--since {text!r} reaches back before the year 1") from None
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"--since must be an ISO-8601 time (2026-01-31T12:00:00Z) or a duration "
            f"(10m, 2h, 1d), not {text!r}"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def logs(
    ctx: typer.Context,
    run_ref: RunArg,
    target: TargetOpt = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the jobs finish.")
    ] = False,
    tail: Annotated[
        str | None,
        typer.Option(metavar="N", help="Only the last N events of each target (then new ones)."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            metavar="WHEN",
            help="Only events at or after WHEN: an ISO-8601 time (UTC unless it says) or a "
            "duration ago (10m, 2h, 1d).",
        ),
    ] = None,
) -> None:
    """Print a run's events: status changes, metrics, checkpoints, log lines, cost.

    Events stream from the journal a page at a time, so memory stays flat however long
    the run; --tail reads only the events it prints.
    """
    import sys

    from tunefleet.cli.runview import event_line

    count, start = _tail_count(tail), _since_time(since)  # bad values: before any work
    journal = _journal(ctx)
    run_row = journal.run(run_ref)
    ids = _target_ids(journal, run_row, target)
    rows = [row for row in journal.targets(run_row.id) if ids is None or row.id in ids]
    seen: dict[int, int] = {}
    write = sys.stdout.write
    for row in rows:
        # What --follow prints comes after this mark: events stored by then were either
        # printed now or left out on purpose (older than the tail, before --since).
        mark = journal.last_seq(row.id)
        events = (
            journal.iter_events(row.id, since=start)
            if count is None
            else journal.tail_events(row.id, count, since=start)
        )
        for event in events:
            write(event_line(row.name, event) + "\n")
            mark = max(mark, event.seq)
        seen[row.id] = mark
    sys.stdout.flush()
    if not follow:
        return

    def flush() -> None:
        for row in rows:
            mark = journal.last_seq(row.id)  # so events --since leaves out are read once
            for event in journal.iter_events(row.id, after_seq=seen[row.id], since=start):
                write(event_line(row.name, event) + "\n")
                mark = max(mark, event.seq)
            seen[row.id] = mark
        sys.stdout.flush()

    handle = _engine(journal, quiet=True).drive(run_row.id, ids)
    try:
        while handle.alive:
            handle.join(0.5)
            flush()
        flush()
    except KeyboardInterrupt:
        handle.detach()
        raise typer.Exit(130) from None
    _raise_crash(handle)


def cancel(
    ctx: typer.Context,
    run_ref: RunArg,
    target: TargetOpt = None,
    wait: Annotated[
        bool, typer.Option(help="Wait until the jobs have stopped (default) or return at once.")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Cancel a run's jobs (or one target's). Targets not yet submitted are never submitted."""
    from tunefleet.cli import render, runview
    from tunefleet.run import run_progress

    journal = _journal(ctx)
    run_row = journal.run(run_ref)
    engine = _engine(journal, quiet=as_json)
    requested = engine.cancel(run_row.id, target)
    if not requested:
        render.err.print(f"run {run_row.id} has nothing left to cancel", markup=False)
    elif wait:
        handle = engine.drive(run_row.id, [row.id for row in requested])
        try:
            handle.join()
        except KeyboardInterrupt:
            handle.detach()
            raise typer.Exit(130) from None
        _raise_crash(handle)
    elif not as_json:
        names = ", ".join(row.name for row in requested)
        render.err.print(f"cancel requested for {names}", markup=False)
    runview.summary(run_progress(journal, run_row), as_json=as_json)


def pause(
    ctx: typer.Context, run_ref: RunArg, target: TargetOpt = None, as_json: JsonOpt = False
) -> None:
    """Pause a run's running jobs (or one target's) where the provider can; `tunefleet
    resume` continues them where they stopped."""
    from tunefleet.cli import runview
    from tunefleet.run import run_progress

    journal = _journal(ctx)
    run_row = journal.run(run_ref)
    from tunefleet.cli import render

    paused = _engine(journal, quiet=as_json).pause(run_row.id, target)
    if not paused:
        render.err.print(f"run {run_row.id} has no running job to pause", markup=False)
    elif not as_json:
        names = ", ".join(row.name for row in paused)
        render.err.print(
            f"paused the job(s) of {names}; `tunefleet resume` continues them", markup=False
        )
    runview.summary(run_progress(journal, run_row), as_json=as_json)


def report(
    ctx: typer.Context,
    run_ref: RunArg,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Where to write (default: RUN.html).")
    ] = None,
) -> None:
    """Write a self-contained HTML report: loss curves, timeline and cost per target."""
    from tunefleet.cli.inputs import check_outputs
    from tunefleet.cli.render import out
    from tunefleet.run.report import write_report

    journal = _journal(ctx)
    run_row = journal.run(run_ref)
    target = output or Path(f"{run_row.id}.html")
    check_outputs([target])  # never a FIFO, a device or a directory
    path = write_report(journal, run_row, target)
    out.print(f"wrote {path}")


@contextmanager
def _unreadable_rows() -> Iterator[None]:
    """A row the database driver cannot even decode (text that is not UTF-8, written
    behind tunefleet's back) as one line, not an internal error."""
    from sqlalchemy.exc import DataError, OperationalError

    from tunefleet.errors import StateError
    from tunefleet.state.audit import printable

    try:
        yield
    except (OperationalError, DataError) as exc:
        reason = printable(str(getattr(exc, "orig", None) or exc).splitlines()[0])
        raise StateError(
            f"cannot read the audit log: {reason} (a row edited in the database?)"
        ) from exc


@audit_app.command("verify")
def audit_verify(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Check the audit log's hash chain; exit 1 if any entry was altered, removed or cut."""
    from tunefleet.cli.render import err, out

    journal = _journal(ctx)
    with _unreadable_rows():
        result = journal.verify_audit()
    if as_json:
        print(
            json.dumps(
                {
                    "ok": result.ok,
                    "entries": result.entries,
                    "head": {"seq": result.head_seq, "hash": result.head_hash},
                    "problems": result.problems,
                },
                indent=2,
            )
        )
    elif result.ok:
        out.print(
            f"audit log intact: {result.entries} entries, head {result.head_seq} "
            f"{result.head_hash}",
            markup=False,
        )
    else:
        for problem in result.problems:
            err.print(f"tampered: {problem}", markup=False)
    if not result.ok:
        raise typer.Exit(1)


@audit_app.command("log")
def audit_log(
    ctx: typer.Context,
    run_ref: Annotated[str | None, typer.Argument(help="Only this run's entries.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print audit entries, oldest first: who did what to which run, when."""
    from tunefleet.state.audit import entry_record, printable

    journal = _journal(ctx)
    run_id = journal.run(run_ref).id if run_ref else None
    with _unreadable_rows():
        entries = journal.audit_entries(run_id)
    if as_json:
        print(json.dumps([entry_record(e) for e in entries], indent=2))
        return
    for e in entries:
        record = entry_record(e, parse_detail=False)
        where = "/".join(str(part) for part in (record["run"], record["target"]) if part)
        fields = (record["at"], record["actor"], record["action"], where, record["detail"])
        print(f"{printable(record['seq']):>6} " + " ".join(printable(field) for field in fields))


def register(app: typer.Typer) -> None:
    """Add these commands to the CLI."""
    app.command()(run)
    app.command()(runs)
    app.command()(status)
    app.command()(watch)
    app.command()(logs)
    app.command()(cancel)
    app.command()(resume)
    app.command()(pause)
    app.command()(report)
    app.add_typer(audit_app, name="audit")

"""How the CLI shows results: rich for people, one JSON document with ``--json``.

Findings print one per line as ``FILE:LINE: CODE name: detail`` so editors and grep can
jump to them (``FILE: CODE ...`` for a finding about the whole file). Progress bars go to
stderr and only when it is a terminal.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from tunefleet.data.report import DatasetReport
    from tunefleet.planning import RunPlan
    from tunefleet.plugins import Registry


_CONSOLES: dict[str, Console] = {}


def __getattr__(name: str) -> Console:
    """``out`` (stdout, for results) and ``err`` (stderr, for diagnostics): rich consoles
    made on first use, because importing rich costs about 30 ms that ``--json`` output and
    a plan without a terminal never need."""
    if name not in ("out", "err"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    console = _CONSOLES.get(name)
    if console is None:
        from rich.console import Console

        console = Console(stderr=name == "err", highlight=False, soft_wrap=True)
        _CONSOLES[name] = console
    return console


def _out() -> Console:
    return __getattr__("out")


def _err() -> Console:
    return __getattr__("err")


def escape(text: str) -> str:
    """``text`` with rich markup escaped (rich imported on first use)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _json(value: object) -> None:
    print(json.dumps(value, indent=2, default=str))


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int], None]]:
    """A transient byte progress bar on stderr; yields ``advance(done, total)``. Without a
    terminal on stderr it draws nothing and loads no rich."""
    if not sys.stderr.isatty():
        yield lambda done, total: None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=_err(),
        transient=True,
        disable=not _err().is_terminal,
    ) as bar:
        task = bar.add_task(label, total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield advance


def initialized(directory: Path, written: list[Path]) -> None:
    for path in written:
        _out().print(f"wrote {path}")
    spec = directory / "tunefleet.yaml"
    _out().print(f"next: tunefleet data validate {directory / 'data' / 'train.jsonl'}")
    _out().print(f"      tunefleet plan {spec}")


def providers(registry: Registry, *, as_json: bool) -> None:
    from tunefleet.provider import capabilities_of

    infos = registry.providers
    if as_json:
        _json(
            [
                {
                    "name": info.name,
                    "distribution": info.distribution,
                    "version": info.version,
                    "capabilities": capabilities_of(info.cls()).model_dump(mode="json"),
                }
                for info in infos.values()
            ]
        )
        return
    if not infos:
        _out().print("no providers installed; try: pip install 'tunefleet[local]'")
        return
    from rich.table import Table

    table = Table(title="Installed providers")
    table.add_column("capability")
    caps = {name: capabilities_of(info.cls()) for name, info in infos.items()}
    for name, info in infos.items():
        table.add_column(f"{name}\n{info.distribution} {info.version or ''}".strip())

    def yes(flag: bool) -> str:
        return "yes" if flag else "-"

    rows: list[tuple[str, Callable[[str], str]]] = [
        ("methods", lambda n: ", ".join(sorted(caps[n].methods))),
        ("adapters", lambda n: ", ".join(sorted(caps[n].adapters)) or "service picks"),
        (
            "regions",
            lambda n: (
                "this machine"
                if caps[n].runs_locally
                else (f"{len(caps[n].regions)}" if caps[n].regions else "not selectable")
            ),
        ),
        ("private network", lambda n: yes(caps[n].private_network or caps[n].runs_locally)),
        ("customer-managed keys", lambda n: yes(caps[n].customer_managed_keys)),
        ("spot capacity", lambda n: yes(caps[n].spot)),
        ("instance types", lambda n: yes(caps[n].instance_types)),
        ("multi-node", lambda n: yes(caps[n].multi_node)),
        ("endpoints", lambda n: yes(caps[n].endpoints)),
        ("autoscaling", lambda n: yes(caps[n].autoscaling)),
        ("traffic split", lambda n: yes(caps[n].traffic_split)),
        ("tags", lambda n: yes(caps[n].tags)),
        ("pause and resume", lambda n: yes(caps[n].pause)),
    ]
    for label, cell in rows:
        table.add_row(label, *(cell(name) for name in infos))
    _out().print(table)


def _summary(report: DatasetReport) -> str:
    exact = "exact" if report.tokens_exact else "approximate: model unknown to tiktoken"
    return escape(
        f"{report.path}: {report.examples:,} valid example(s) of {report.lines:,} line(s); "
        f"{report.errors:,} error(s), {report.warnings:,} warning(s) [{report.encoding}, {exact}]"
    )


def dataset_report(report: DatasetReport, *, as_json: bool) -> None:
    if as_json:
        print(report.model_dump_json(indent=2))
        return
    for finding in report.findings:
        style = "red" if finding.severity == "error" else "yellow"
        where = f"{report.path}:{finding.line}" if finding.line else report.path
        _out().print(
            f"{escape(where)}: [{style}]{finding.code} {finding.name}[/{style}]: "
            f"{escape(finding.detail)}"
        )
    if report.findings_omitted:
        _out().print(
            f"... {report.findings_omitted:,} more finding(s) not listed (use --max-per-code 0 to list all)"
        )
    _out().print(_summary(report))
    if report.tokens_per_example is not None:
        t = report.tokens_per_example
        a = report.assistant_tokens_per_example
        m = report.messages_per_example
        if m is not None:
            _out().print(f"  messages per example: min {m.min}, median {m.median:g}, max {m.max}")
        _out().print(
            f"  tokens per example:   min {t.min:,}, median {t.median:g}, p95 {t.p95:,}, max {t.max:,}"
        )
        if a is not None:
            _out().print(
                f"  assistant tokens:     min {a.min:,}, median {a.median:g}, p95 {a.p95:,}, max {a.max:,}"
            )
        _out().print(
            f"  billable tokens: {report.billable_tokens:,} per epoch (context limit {report.context_limit:,}: "
            f"{report.context_limit_source}; {report.examples_over_limit:,} example(s) over it)"
        )
    if report.training is not None:
        est = report.training
        cost = f"~${est.amount:,.2f}" if est.amount is not None else "not token-priced"
        _out().print(
            f"  training estimate ({est.provider}): {est.epochs} epoch(s) ({est.epochs_source}), "
            f"{est.trained_tokens:,} trained tokens, {cost} [{est.basis}]"
        )


def run_plan(run_plan: RunPlan, *, as_json: bool) -> None:
    if as_json:
        print(run_plan.model_dump_json(indent=2))
        return
    for role, report in run_plan.datasets.items():
        _out().print(f"{role}: {_summary(report)}")
    for plan in run_plan.plans:
        region = plan.region or "-"
        _out().print(
            f"\n[bold]target {plan.target}[/bold] (provider {plan.provider}, region {region})"
        )
        if plan.epochs is not None:
            _out().print(f"  epochs: {plan.epochs}")
        for request in plan.requests:
            _out().print(f"  {request.service} {request.operation}: {escape(request.purpose)}")
            body = json.dumps(request.body, indent=2, default=str)
            for line in body.splitlines():
                _out().print(f"    {escape(line)}")
        if plan.cost is not None:
            dated = f", prices of {plan.cost.price_date}" if plan.cost.price_date else ""
            _out().print(
                f"  estimated cost: {plan.cost.amount:,.2f} {plan.cost.currency} ({escape(plan.cost.basis)}{dated})"
            )
        for note in plan.notes:
            _out().print(f"  note: {escape(note)}")
        for unmet in plan.unmet:
            _out().print(f"  [red]cannot honour {unmet.requirement}[/red]: {escape(unmet.reason)}")
    verdict = (
        "every target can run as specified"
        if run_plan.ok
        else "some targets cannot run as specified"
    )
    _out().print(f"\n{verdict}")

"""Commands of the ``tunefleet`` CLI. Heavy modules are imported inside each command so
that ``tunefleet --help`` stays fast and never imports a cloud SDK."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from tunefleet.cli import model_commands, run_commands, serve_commands
from tunefleet.cli._early import ROOT_OPTIONS_WITH_VALUES
from tunefleet.data import DEFAULT_MODEL

app = typer.Typer(
    name="tunefleet",
    help="One declarative spec, any cloud: fine-tune language models anywhere they may run.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
data_app = typer.Typer(help="Check fine-tuning datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"tunefleet {version('tunefleet')}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    state: Annotated[
        str | None,
        typer.Option(
            "--state",
            metavar="URL",
            envvar="TUNEFLEET_STATE",
            show_envvar=True,
            show_default=False,
            help="The journal's database URL (default: SQLite in the user state directory; "
            "postgresql://host/db for a team's shared journal).",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """One declarative spec, any cloud: fine-tune language models anywhere they may run."""
    ctx.obj = {"state": state}


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Where to write the starter project.")] = Path(
        "."
    ),
    force: Annotated[bool, typer.Option(help="Overwrite files that exist.")] = False,
) -> None:
    """Write a starter spec (tunefleet.yaml) and sample chat data."""
    from tunefleet.cli import render
    from tunefleet.cli.inputs import check_outputs
    from tunefleet.starter import SCHEMA_FILE, STARTER_FILES, write_starter

    # --force overwrites files, never a FIFO (the write would block) or a device.
    check_outputs([directory / name for name in (*STARTER_FILES.values(), SCHEMA_FILE)])
    written = write_starter(directory, force=force)
    render.initialized(directory, written)


@app.command()
def schema(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to a file instead.")
    ] = None,
) -> None:
    """Print the JSON Schema of the run spec (for editors and CI checks)."""
    import json

    from tunefleet.spec import published_schema

    text = json.dumps(published_schema(), indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
        return
    from tunefleet.cli.inputs import write_output

    write_output(output, text)


@app.command()
def providers(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the installed providers and what each can do."""
    from tunefleet.cli import render
    from tunefleet.plugins import default_registry

    render.providers(default_registry(), as_json=as_json)


@data_app.command("validate")
def data_validate(
    file: Annotated[Path, typer.Argument(help="A JSONL dataset.")],
    model: Annotated[
        str, typer.Option(help="Base model: picks the tokenizer and context limit.")
    ] = DEFAULT_MODEL,
    data_format: Annotated[
        str, typer.Option("--format", help="chat, or preference for DPO pairs.")
    ] = "chat",
    max_tokens: Annotated[
        int | None, typer.Option(help="Context limit per example (default: the model's).", min=1)
    ] = None,
    provider: Annotated[
        str | None, typer.Option(help="Estimate training cost with this provider's rules.")
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(help="Epochs for the estimate (default: the provider's rule).", min=1),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(help="Worker processes (default: all cores for large files).", min=1),
    ] = None,
    max_per_code: Annotated[
        int, typer.Option(help="Findings listed per code; 0 lists all.", min=0)
    ] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON report.")] = False,
    no_cache: Annotated[
        bool,
        typer.Option(
            "--no-cache",
            help="Validate even if this content was validated before with the same settings.",
        ),
    ] = False,
) -> None:
    """Check a chat dataset: format, tokens, context limit, duplicates, likely PII, cost.

    A report is kept by the file's sha256 and the settings, so validating unchanged data
    again (here, in `plan` or in `run`) reads the stored report. Exits 0 when valid, 1 when
    it found errors, 2 for usage errors.
    """
    from tunefleet.cli import render
    from tunefleet.data import validate_dataset
    from tunefleet.errors import UsageError

    if data_format not in ("chat", "preference"):
        raise UsageError(f"--format must be chat or preference, not {data_format!r}")
    with render.progress_bar(f"validating {file.name}") as advance:
        report = validate_dataset(
            file,
            model=model,
            data_format=data_format,  # type: ignore[arg-type]
            context_limit=max_tokens,
            provider=provider,
            epochs=epochs,
            jobs=jobs,
            max_per_code=max_per_code,
            progress=advance,
            cache=not no_cache,
        )
    render.dataset_report(report, as_json=as_json)
    if not report.valid:
        raise typer.Exit(1)


@app.command()
def plan(
    spec: Annotated[Path, typer.Argument(help="The run spec (YAML).")],
    target: Annotated[str | None, typer.Option(help="Plan only this target.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Show what a run would do on each target: requests, cost, and anything it cannot honour.

    Validates the datasets first. Creates nothing and needs no credentials. Exits 1 when a
    target cannot honour a requirement.
    """
    from tunefleet.cli import render
    from tunefleet.cli.inputs import plan_input

    _, run_plan = plan_input(spec, target=target, as_json=as_json)
    render.run_plan(run_plan, as_json=as_json)
    if not run_plan.ok:
        run_plan.raise_for_unmet()


run_commands.register(app)
serve_commands.register(app)
model_commands.register(app)


_ROOT_OPTIONS_THAT_ANSWER = frozenset({"--help", "--version"})


def app_for(args: Sequence[str]) -> typer.Typer:
    """The CLI to run ``args`` with: :data:`app` narrowed to the one command they name.

    On every call typer turns each registered command into a click command, inspecting its
    signature: about 25 ms for all of them, paid by each ``plan``. A command line names one
    command (after the root options), so only that one is turned. Anything else (no
    command, ``--help`` or ``--version`` before it, a misspelt name) gets the whole app,
    with its full help and its suggestions.
    """
    word = _command_word(args)
    if word is None:
        return app
    commands = [
        info
        for info in app.registered_commands
        if info.callback is not None
        and (info.name or typer.main.get_command_name(info.callback.__name__)) == word
    ]
    groups = [info for info in app.registered_groups if info.name == word]
    if len(commands) + len(groups) != 1:
        return app
    narrowed = copy.copy(app)
    narrowed.registered_commands = commands
    narrowed.registered_groups = groups
    return narrowed


def _command_word(args: Sequence[str]) -> str | None:
    """The command ``args`` name after the root options; None where the root answers."""
    value_next = False
    for arg in args:
        if value_next:
            value_next = False
        elif arg in _ROOT_OPTIONS_THAT_ANSWER or arg == "--":
            return None
        elif arg in ROOT_OPTIONS_WITH_VALUES:
            value_next = True
        elif not arg.startswith("-"):
            return arg
    return None

"""Work a command line lets start before typer has parsed it.

Importing typer and building the command takes about 0.17 s, all of it before a command
runs. A ``data validate`` of a large file then waits for its worker processes' fork server,
which takes about as long to start and load the tokenizer. Reading the command line here,
with the standard library only, lets the server start on another core while typer loads.

Typer still parses every command line and reports every mistake. This reading only
decides whether to start the server early, and answers None for anything it is not sure
of; a test keeps its option names in step with the ``data validate`` command's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

ROOT_FLAGS = frozenset({"--debug"})
ROOT_OPTIONS_WITH_VALUES = frozenset({"--state"})
"""The root's options that take a value (also how :func:`tunefleet.cli.app.app_for` finds
the command a line names)."""
VALIDATE_FLAGS = frozenset({"--json", "--no-cache"})
VALIDATE_OPTIONS_WITH_VALUES = frozenset(
    {"--model", "--format", "--max-tokens", "--provider", "--epochs", "--jobs", "--max-per-code"}
)


@dataclass(frozen=True)
class ValidateLine:
    """What a ``data validate`` command line says about the workers it needs."""

    file: str
    model: str
    jobs: int | None
    cache: bool


def read_validate_line(args: Sequence[str]) -> ValidateLine | None:
    """The file, model, jobs and cache choice of a ``data validate`` command line.

    None for any other command, for ``--help``, and for anything that is not plainly a
    valid ``data validate`` line (an unknown option, a bad ``--jobs``, a missing value,
    not exactly one file). Options follow click's rules: a long option's value is the next
    argument or follows ``=``, the last of a repeated option counts, and everything after
    ``--`` is an argument.
    """
    at = 0
    while at < len(args) and args[at].startswith("-"):
        name, equals, _ = args[at].partition("=")
        if name in ROOT_FLAGS and not equals:
            at += 1
        elif name in ROOT_OPTIONS_WITH_VALUES:
            at += 1 if equals else 2
        else:
            return None
    if list(args[at : at + 2]) != ["data", "validate"]:
        return None
    from tunefleet.data import DEFAULT_MODEL  # the command's default, as typer gives it

    values: dict[str, str] = {}
    flags: set[str] = set()
    files: list[str] = []
    rest = iter(args[at + 2 :])
    for arg in rest:
        if arg == "--":
            files.extend(rest)
        elif arg.startswith("-") and arg != "-":
            name, equals, value = arg.partition("=")
            if name in VALIDATE_OPTIONS_WITH_VALUES:
                if not equals:
                    following = next(rest, None)
                    if following is None:
                        return None
                    value = following
                values[name] = value
            elif name in VALIDATE_FLAGS and not equals:
                flags.add(name)
            else:
                return None
        else:
            files.append(arg)
    if len(files) != 1:
        return None
    jobs: int | None = None
    if "--jobs" in values:
        try:
            jobs = int(values["--jobs"])
        except ValueError:
            return None
        if jobs < 1:
            return None
    return ValidateLine(
        files[0], values.get("--model", DEFAULT_MODEL), jobs, "--no-cache" not in flags
    )


def start_early(args: Sequence[str]) -> None:
    """Start what ``args`` will need before typer parses them: for a ``data validate`` of a
    file large enough for workers, their fork server (see
    :func:`tunefleet.data.prestart_validation`)."""
    line = read_validate_line(args)
    if line is None:
        return
    from tunefleet.data import prestart_validation

    prestart_validation(line.file, model=line.model, jobs=line.jobs, cache=line.cache)

"""The ``tunefleet`` command: a thin layer over the Python API.

Exit status: 0 success; 1 the thing checked failed (dataset errors, unmet requirements);
2 bad usage or input (options, spec, unreadable files, plugins); 3 a provider failed;
70 an internal error; 130 interrupted. Errors are one line each on stderr, naming the file
(and its line and key where there is one); an OS error about a file that no check caught
is one such line with exit 2, not an internal error. ``--debug`` (or
``TUNEFLEET_DEBUG=1``) adds the traceback.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

__all__ = ["console", "main"]

INPUT_ERROR = 2
INTERNAL_ERROR = 70
INTERRUPTED = 130
_DEBUG_HINT = "(run with --debug for the traceback)"
_COLLECTOR_THRESHOLDS = (200_000, 30, 30)
"""gc.set_threshold for the executable: young objects collected every 200,000 allocations
(default 700), the older generations every 30 younger collections (default 10)."""


def console() -> NoReturn:
    """The ``tunefleet`` executable: run :func:`main` on ``sys.argv`` and exit with its status.

    It tunes the cyclic garbage collector for a process that imports much and then works:
    a command's start-up (pydantic's schemas, typer's commands) allocates hundreds of
    thousands of long-lived objects, and the default threshold of 700 allocations walks
    them again and again (about 30 ms of every command). Collections stay on, only rarer;
    reference counting frees everything else as before.

    Before exiting it freezes the collector's generations: the interpreter's shutdown runs
    several full collections, each walking every object the command made, about 80 ms,
    more than planning itself. Atexit handlers and the flush of the standard streams still
    run; only garbage in reference cycles made before the freeze is left for the operating
    system, which reclaims it at exit anyway. Callers that go on running (tests, the Python
    API) call :func:`main`, which changes neither.
    """
    gc.set_threshold(*_COLLECTOR_THRESHOLDS)
    status = main()
    gc.freeze()
    sys.exit(status)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    from tunefleet.cli._early import start_early

    start_early(args)  # before typer loads: a validation's workers start meanwhile
    import typer

    from tunefleet.cli.app import app_for
    from tunefleet.errors import TunefleetError

    debug = "--debug" in args or os.environ.get("TUNEFLEET_DEBUG", "") not in ("", "0")
    try:
        result = app_for(args)(args=args, prog_name="tunefleet", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.TyperException as exc:  # usage errors: bad options, missing arguments
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            print(f"error: {exc.format_message()}", file=sys.stderr)
        return exc.exit_code
    except (KeyboardInterrupt, typer.Abort):
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    except TunefleetError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        # A file problem no check above caught (a full disk, an unreadable output path):
        # one line naming the file, not an internal error.
        if debug:
            raise
        if exc.filename is None:
            print(f"internal error: {type(exc).__name__}: {exc} {_DEBUG_HINT}", file=sys.stderr)
            return INTERNAL_ERROR
        from tunefleet.errors import printable
        from tunefleet.names import os_problem

        print(f"error: {printable(exc.filename)}: {os_problem(exc)}", file=sys.stderr)
        return INPUT_ERROR
    except Exception as exc:
        if debug:
            raise
        print(f"internal error: {type(exc).__name__}: {exc} {_DEBUG_HINT}", file=sys.stderr)
        return INTERNAL_ERROR
    return result if isinstance(result, int) else 0

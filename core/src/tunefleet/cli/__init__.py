"""The ``tunefleet`` command: a thin layer over the Python API.

Exit status: 0 success; 1 the thing checked failed (dataset errors, unmet requirements);
2 bad usage or input (options, spec, unreadable files, plugins); 3 a provider failed;
70 an internal error; 130 interrupted. Errors are one line each on stderr; ``--debug``
(or ``TUNEFLEET_DEBUG=1``) adds the traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

__all__ = ["main"]

INTERNAL_ERROR = 70
INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    import typer

    from tunefleet.cli.app import app
    from tunefleet.errors import TunefleetError

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("TUNEFLEET_DEBUG", "") not in ("", "0")
    try:
        result = app(args=args, prog_name="tunefleet", standalone_mode=False)
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
    except Exception as exc:
        if debug:
            raise
        print(
            f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
            file=sys.stderr,
        )
        return INTERNAL_ERROR
    return result if isinstance(result, int) else 0

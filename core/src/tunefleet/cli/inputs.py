"""The one path by which a command takes the files a user names.

Every command that reads a spec goes through :func:`spec_input`: the spec file and every
local dataset it names are checked before anything else happens (a FIFO, a device, a
directory, a symlink loop, a missing or unreadable file: each one line naming the file
and, for a dataset, the spec's line and field). Dataset files themselves are opened
through :func:`tunefleet.names.open_input` by validation, the same for `data validate`.
Files a command writes where the user says (`schema -o`, `init`) go through
:func:`check_outputs` and :func:`write_output`.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tunefleet.errors import (
        DatasetInvalidError,
        InputFileError,
        ProviderNotInstalledError,
        TunefleetError,
    )
    from tunefleet.planning import RunPlan
    from tunefleet.spec import RunSpec

__all__ = ["check_outputs", "dataset_error", "plan_input", "spec_input", "write_output"]


def spec_input(path: Path) -> RunSpec:
    """Load the spec at ``path``, requiring its local datasets to be readable files.

    Raises InputFileError (the spec file) or SpecError (its contents, with line and field).
    """
    from tunefleet.spec import load_spec

    return load_spec(path, require_files=True)


def plan_input(path: Path, *, target: str | None, as_json: bool) -> tuple[RunSpec, RunPlan]:
    """Load the spec at ``path`` (:func:`spec_input`) and plan it, validating its datasets
    behind a progress bar; what `plan` and `run` do first. Creates nothing.

    A dataset whose content was validated before with the same settings is not read again
    (the on-disk cache of :mod:`tunefleet.data.cache`). A dataset with errors has its
    report shown (unless ``as_json``) and fails with one line naming the spec's line and
    field (:func:`dataset_error`); so do a dataset that cannot be read as JSONL and a target
    whose provider is not installed.
    """
    from tunefleet.cli import render
    from tunefleet.data import reuse_reports
    from tunefleet.errors import DatasetInvalidError, InputFileError, ProviderNotInstalledError
    from tunefleet.planning import plan_run

    spec = spec_input(path)
    try:
        with reuse_reports(on_disk=True), render.progress_bar("validating datasets") as advance:
            planned = plan_run(
                spec, target=target, progress=lambda role, done, total: advance(done, total)
            )
    except DatasetInvalidError as exc:
        if exc.report is not None and not as_json:
            render.dataset_report(exc.report, as_json=False)  # type: ignore[arg-type]
        raise dataset_error(spec, exc) from None
    except InputFileError as exc:  # a dataset that is binary or compressed
        raise dataset_error(spec, exc) from None
    except ProviderNotInstalledError as exc:
        raise _provider_error(spec, exc) from None
    return spec, planned


def _provider_error(spec: RunSpec, exc: ProviderNotInstalledError) -> TunefleetError:
    from tunefleet.errors import SpecError

    for index, target in enumerate(spec.targets):
        if target.provider == exc.name:
            return SpecError([spec.issue(("targets", index, "provider"), str(exc))])
    return exc


def dataset_error(spec: RunSpec, exc: DatasetInvalidError | InputFileError) -> TunefleetError:
    """A dataset of ``spec`` that failed validation (DatasetInvalidError) or could not be
    read as JSONL (InputFileError: binary, gzip-compressed), as one line that also names
    the spec's line and field. A DatasetInvalidError names the file as validated
    (absolute), so the command it suggests works from anywhere."""
    from tunefleet.errors import DatasetInvalidError, SpecError

    for role in ("train", "validation"):
        location = getattr(spec.dataset, role)
        if location is None:
            continue
        issue = spec.written_issue(("dataset", role), "")
        if isinstance(exc, DatasetInvalidError) and location == exc.path:
            report_path = getattr(exc.report, "path", None) or exc.path
            where = str(issue).rstrip()  # spec.yaml:3 dataset:
            return DatasetInvalidError(report_path, exc.error_count, exc.report, where=where)
        if not isinstance(exc, DatasetInvalidError) and exc.path == spec.resolve_location(location):
            return SpecError.single(
                issue.source, f"{location}: {exc.problem}", line=issue.line, path=issue.path
            )
    return exc


def check_outputs(paths: list[Path]) -> None:
    """Refuse to write where something other than a regular file (or nothing) is: a FIFO
    would block the write, a device swallow it, a directory or a symlink loop fail it.
    Raises InputFileError naming the first such path."""
    from tunefleet.errors import InputFileError
    from tunefleet.names import file_kind, path_problem

    for path in paths:
        problem, found = path_problem(path)
        if found is not None and not stat.S_ISREG(found.st_mode):
            raise InputFileError(str(path), f"is {file_kind(found.st_mode)}, not a regular file")
        if found is None and problem != "no such file":
            raise InputFileError(str(path), f"cannot write: {problem}")


def write_output(path: Path, text: str) -> None:
    """Write ``text`` to a file the user named, whole or not at all.

    Something at ``path`` that is not a regular file (a FIFO would block the write, a
    device swallow it) is refused; the text goes to a temporary file beside it that then
    replaces it. Raises InputFileError naming the path.
    """
    from tunefleet.errors import InputFileError
    from tunefleet.names import os_problem

    source = str(path)
    check_outputs([path])
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    try:
        partial.write_text(text)
        os.replace(partial, path)
    except OSError as exc:  # a missing folder, a full disk, a read-only file system
        raise InputFileError(source, f"cannot write: {os_problem(exc)}") from None
    finally:
        partial.unlink(missing_ok=True)

"""Names that end up in cloud resource names, object keys, tags and paths, and the files
a user names.

Every such name is validated once, here, against the intersection of what the clouds
accept, so a spec that loads can be turned into resource names on any provider without
escaping: run and target names fit SageMaker job names, Azure ML job names and Vertex
display names once a run-key suffix is added. Tag keys and values are held to what AWS
tags accept (which includes ``/``, ``:`` and ``=``); Azure tag names refuse ``/`` and GCP
labels take lower-case letters, digits, ``_`` and ``-`` only, so those providers check their
own rules at plan and refuse, with the reason, what they cannot carry (never rewriting a
tag silently).

Paths on this machine are validated here too: :data:`LocalPath`, :data:`LocalFile` and
:data:`LocalDirectory` for paths written in a spec (providers use them for their own
options), and :func:`open_input`, the one way tunefleet opens a file a user named: it
refuses what is not a regular file (a directory, a FIFO, a device, a socket, a symlink
loop) from ``os.stat`` before opening it, so nothing ever blocks reading a pipe or reads a
device forever.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import IO, Annotated, Any

from pydantic import AfterValidator, StringConstraints, ValidationInfo

from tunefleet.errors import InputFileError

# Lowercase letters, digits and hyphens; starts with a letter, ends with a letter or digit.
# 40 characters leaves room for a "-<12 hex>" run-key suffix inside the 63-character limit
# that SageMaker, Kubernetes (HyperPod) and GCP labels share.
NAME_PATTERN = r"^[a-z](?:[a-z0-9-]{0,38}[a-z0-9])?$"
PROVIDER_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
REGION_PATTERN = r"^[a-z0-9][a-z0-9-]{0,39}$"
REGION_GLOB_PATTERN = r"^[a-z0-9*?\[\]-]{1,40}$"
INSTANCE_TYPE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
TAG_KEY_PATTERN = r"^[A-Za-z][A-Za-z0-9_.:/=+@-]{0,62}$"
TAG_VALUE_PATTERN = r"^[A-Za-z0-9_.:/=+@ -]{0,256}$"

_RESERVED_TAG_PREFIXES = ("aws:", "azure", "microsoft", "windows", "goog", "google", "tunefleet:")


def _not_reserved_tag(key: str) -> str:
    lowered = key.lower()
    for prefix in _RESERVED_TAG_PREFIXES:
        if lowered.startswith(prefix):
            raise ValueError(
                f"tag keys may not start with {prefix!r} (reserved by a cloud or tunefleet)"
            )
    return key


ResourceName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
"""A run, target or endpoint name: lowercase letters, digits and hyphens, 1-40 characters."""

ProviderName = Annotated[str, StringConstraints(pattern=PROVIDER_NAME_PATTERN)]
Region = Annotated[str, StringConstraints(pattern=REGION_PATTERN)]
RegionGlob = Annotated[str, StringConstraints(pattern=REGION_GLOB_PATTERN)]
InstanceType = Annotated[str, StringConstraints(pattern=INSTANCE_TYPE_PATTERN)]
TagKey = Annotated[
    str, StringConstraints(pattern=TAG_KEY_PATTERN), AfterValidator(_not_reserved_tag)
]
TagValue = Annotated[str, StringConstraints(pattern=TAG_VALUE_PATTERN)]


# --------------------------------------------------------------------------- local paths

MAX_PATH_CHARS = 4096
"""Longest local path accepted (Linux's PATH_MAX)."""

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)

_ERRNO_PROBLEMS = {
    errno.ENOENT: "no such file",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ELOOP: "too many levels of symbolic links (a symlink loop?)",
    errno.ENAMETOOLONG: "file name too long",
    errno.ENOTDIR: "a component of the path is not a directory",
}


def file_kind(mode: int) -> str:
    """What an ``st_mode`` describes, for messages: ``a FIFO (named pipe)``, ``a socket``..."""
    if stat.S_ISREG(mode):
        return "a regular file"
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return "not a regular file"


def os_problem(exc: OSError) -> str:
    """An OSError about a path as a few words, without the path: ``permission denied``."""
    known = _ERRNO_PROBLEMS.get(exc.errno or 0)
    if known is not None:
        return known
    return (exc.strerror or str(exc) or type(exc).__name__).lower()


def path_problem(path: str | os.PathLike[str]) -> tuple[str, os.stat_result | None]:
    """Why ``path`` cannot be stat'ed (``""`` when it can) and its stat result (following
    symlinks). Never raises."""
    try:
        return "", os.stat(path)
    except ValueError:  # an embedded NUL byte
        return "the path contains a NUL byte", None
    except OSError as exc:
        return os_problem(exc), None


def open_input(path: str | os.PathLike[str], *, what: str = "regular file") -> IO[bytes]:
    """Open a file the user named for reading, refusing anything that is not a regular file.

    ``os.stat`` decides first, so a FIFO, a device, a socket or a directory is refused
    before it is opened (a FIFO would block the open, a device never end); the open itself
    does not block and is checked again (the path may have changed in between). Raises
    InputFileError with one line naming the path: ``data.jsonl: is a FIFO (named pipe),
    not a JSONL file``. ``what`` names what the file should be.
    """
    source = os.fspath(path)
    problem, found = path_problem(source)
    if found is None:
        raise InputFileError(source, problem)
    if not stat.S_ISREG(found.st_mode):
        raise InputFileError(source, f"is {file_kind(found.st_mode)}, not a {what}")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    flags |= getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(source, flags)
    except OSError as exc:
        raise InputFileError(source, os_problem(exc)) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise InputFileError(source, f"is {file_kind(mode)}, not a {what}")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _path_text(value: str) -> str:
    if not value or len(value) > MAX_PATH_CHARS:
        raise ValueError(f"must be a path of 1 to {MAX_PATH_CHARS} characters")
    if "\x00" in value:
        raise ValueError("must not contain a NUL byte")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("must not contain control characters")
    return value


def _where(value: str, info: ValidationInfo | None) -> Path | None:
    """The path ``value`` names: relative to the validation context's ``base_dir`` (the
    spec's folder) when there is one; None for a relative path without one."""
    context: Any = info.context if info is not None else None
    base = context.get("base_dir") if isinstance(context, dict) else None
    path = Path(value)
    if path.is_absolute():
        return path
    return Path(base) / path if base is not None else None


def _require(info: ValidationInfo | None) -> bool:
    context: Any = info.context if info is not None else None
    return isinstance(context, dict) and bool(context.get("require_files"))


def check_local_file(value: str, info: ValidationInfo | None) -> str:
    """Validator of :data:`LocalFile`: something that exists at ``value`` is a readable
    regular file; with ``require_files`` in the validation context, something must."""
    _path_text(value)
    path = _where(value, info)
    if path is None:
        return value
    problem, found = path_problem(path)
    if found is None:
        if problem == "no such file" and not _require(info):
            return value
        raise ValueError(f"{value}: {problem}")
    if not stat.S_ISREG(found.st_mode):
        raise ValueError(f"{value}: is {file_kind(found.st_mode)}, not a regular file")
    if _require(info) and not os.access(path, os.R_OK):
        raise ValueError(f"{value}: permission denied")
    return value


def check_local_directory(value: str, info: ValidationInfo | None) -> str:
    """Validator of :data:`LocalDirectory`: something that exists at ``value`` is a
    directory (one that does not exist yet may be created)."""
    _path_text(value)
    path = _where(value, info)
    if path is None:
        return value
    problem, found = path_problem(path)
    if found is None:
        if problem == "no such file":
            return value
        raise ValueError(f"{value}: {problem}")
    if not stat.S_ISDIR(found.st_mode):
        raise ValueError(f"{value}: is {file_kind(found.st_mode)}, not a directory")
    return value


LocalPath = Annotated[str, AfterValidator(_path_text)]
"""A path on this machine: 1 to 4096 characters, no NUL byte or control character."""

LocalFile = Annotated[str, AfterValidator(check_local_file)]
"""A :data:`LocalPath` that, where something exists at it, is a regular file: never a
directory, FIFO, device or socket, nor a symlink loop. A relative path is checked against
the validation context's ``base_dir`` (specs pass their folder), an absolute one always;
with ``require_files`` in the context the file must exist and be readable."""

LocalDirectory = Annotated[str, AfterValidator(check_local_directory)]
"""A :data:`LocalPath` that, where something exists at it, is a directory."""

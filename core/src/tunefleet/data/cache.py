"""Validation results kept on disk, keyed by the dataset's sha256 and what decides the result.

Validating a 1 GB dataset takes about a minute of both cores; `tunefleet run` that only
reattaches to a finished run, or `plan` of an unchanged spec, should not pay it again. A
report is reused when the file's content (its sha256) and everything that can change the
report are the same (:func:`fingerprint`):

- the validation options: model (so the tokenizer), format, context limit and its source,
  findings kept per code, the longest line accepted;
- every per-example check, by name and by the digest of the module that defines it, so a
  plugin whose check changes is asked again;
- the source of tunefleet's own validation code (``tunefleet/data/*.py``), the versions of
  the tokenizer libraries and ``TUNEFLEET_TOKENIZER``.

Worker count and progress do not change a report, so they are not part of the key.

The file's sha256 is itself remembered against its identity (real path, device, inode, size,
modification and change times), as git's index does, so that a hit does not read a 1 GB
file. A write changes the change time (which no program can set), so an edit is noticed
even if the modification time is put back; a stat taken within :data:`RACY_SECONDS` of the
file's last change is not trusted (the file may still be changing within one clock tick),
and the file is hashed instead.

Entries live under ``$TUNEFLEET_CACHE_DIR/validation`` (default: the user cache directory),
readable by the user alone, since findings quote lines of the data. The newest
:data:`MAX_REPORTS` reports are kept. A damaged entry is a miss, never an error.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunefleet.kit.cache import cache_root, prune, read_entry, write_entry

if TYPE_CHECKING:
    from tunefleet.data.options import ValidationOptions
    from tunefleet.data.report import DatasetReport

__all__ = ["Probe", "cache_root", "fingerprint", "forget", "lookup", "probe", "store"]

FORMAT = 1
"""The layout of a cache entry; a new layout ignores the old entries."""
MAX_REPORTS = 256
"""Reports kept; the least recently used beyond this are removed when a report is stored."""
MAX_FILES = 4096
"""Remembered file identities kept (a few hundred bytes each)."""
RACY_SECONDS = 2.0
"""A file changed this recently may change again within the same timestamp: hash it."""
_TOKENIZER_DISTRIBUTIONS = ("tiktoken", "bpe-openai")


def _folder() -> Path:
    return cache_root() / "validation"


@functools.cache
def _code_digest() -> str:
    """A digest of tunefleet's validation code and the tokenizer libraries' versions."""
    from importlib import metadata  # here: a data validate starts its workers before this

    digest = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    for name in _TOKENIZER_DISTRIBUTIONS:
        try:
            digest.update(f"{name}={metadata.version(name)}\0".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{name}=none\0".encode())
    return digest.hexdigest()


@functools.cache
def _module_digest(module: str) -> str:
    found = sys.modules.get(module)
    source = getattr(found, "__file__", None)
    if not source:
        return "no-source"
    try:
        return hashlib.sha256(Path(source).read_bytes()).hexdigest()
    except OSError:
        return "unreadable"


def _check_identity(check: Any) -> str:
    module = getattr(check, "__module__", None) or "?"
    name = getattr(check, "__qualname__", None) or repr(type(check))
    return f"{module}:{name}:{_module_digest(module)}"


def fingerprint(options: ValidationOptions) -> str:
    """What, besides the file's content, decides a report made with ``options``: a hex
    digest that changes whenever a setting, a check or tunefleet's validation code does."""
    settings = {
        "format": FORMAT,
        "code": _code_digest(),
        "tokenizer_env": os.environ.get("TUNEFLEET_TOKENIZER", ""),
        "model": options.model,
        "data_format": options.data_format,
        "context_limit": options.context_limit,
        "context_limit_source": options.context_limit_source,
        "max_per_code": options.max_per_code,
        "max_line_bytes": options.max_line_bytes,
        # In order: findings are merged in the checks' order.
        "checks": [_check_identity(check) for check in options.checks],
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Probe:
    """A regular file as :func:`probe` found it before validation."""

    path: str
    real: str
    identity: tuple[Any, ...]
    size: int
    changed_at: float

    @property
    def settled(self) -> bool:
        """True when the file last changed long enough ago for its stat to be trusted."""
        return time.time() - self.changed_at > RACY_SECONDS


def probe(path: str | Path) -> Probe | None:
    """The identity of the regular file at ``path``; None for anything else (a FIFO, a
    missing file, a loop), which validation then refuses with its reason."""
    try:
        real = os.path.realpath(path)
        found = os.stat(real)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(found.st_mode):
        return None
    identity = (
        real, found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns
    )  # fmt: skip
    return Probe(str(path), real, identity, found.st_size, found.st_ctime)


def _memo_path(real: str) -> Path:
    return _folder() / "files" / f"{hashlib.sha256(real.encode()).hexdigest()}.json"


def _remembered_sha256(file: Probe) -> str | None:
    remembered = read_entry(_memo_path(file.real))
    if remembered is None or remembered.get("identity") != list(file.identity):
        return None
    sha256 = remembered.get("sha256")
    return sha256 if isinstance(sha256, str) else None


def remembered(file: Probe) -> bool:
    """True if this cache knows the sha256 of ``file`` as it is now (it was validated, or
    looked up, before and has not changed since)."""
    return _remembered_sha256(file) is not None


def _remember(file: Probe, sha256: str) -> None:
    """Remember ``sha256`` for ``file`` if it has not changed since it was probed and its
    stat can be trusted."""
    again = probe(file.path)
    if again is not None and again.identity == file.identity and file.settled:
        write_entry(_memo_path(file.real), {"identity": list(file.identity), "sha256": sha256})


def _hashed(file: Probe) -> str | None:
    from tunefleet.errors import InputFileError
    from tunefleet.names import open_input

    try:
        with open_input(file.real) as handle:
            digest = hashlib.sha256()
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except (InputFileError, OSError):  # validation reports why the file cannot be read
        return None
    return digest.hexdigest()


def _entries(key: str) -> Path:
    return _folder() / "reports" / key[:32]


def _entry(key: str, size: int, sha256: str) -> Path:
    return _entries(key) / f"{size}-{sha256}.json"


def lookup(file: Probe, options: ValidationOptions) -> DatasetReport | None:
    """The report a validation of ``file``'s content with ``options`` gave before, renamed
    to ``file.path``; None when the content or a setting differs or nothing is stored.

    Reads the file only when a report of a file of its size is stored and its sha256 is
    not remembered, so a miss on new data costs no extra pass over it.
    """
    from pydantic import ValidationError

    from tunefleet.data.report import DatasetReport

    started = time.perf_counter()
    key = fingerprint(options)
    sha256 = _remembered_sha256(file)
    if sha256 is None:
        if not any(_entries(key).glob(f"{file.size}-*.json")):
            return None
        sha256 = _hashed(file)
        if sha256 is None:
            return None
        _remember(file, sha256)
    entry = _entry(key, file.size, sha256)
    stored = read_entry(entry)
    if stored is None:
        return None
    try:
        report = DatasetReport.model_validate(stored["report"])
    except (KeyError, TypeError, ValidationError):
        entry.unlink(missing_ok=True)
        return None
    if report.sha256 != sha256 or report.size_bytes != file.size:
        return None
    with contextlib.suppress(OSError):
        os.utime(entry)  # recently used: kept longest
    took = round(time.perf_counter() - started, 3)
    return report.model_copy(update={"path": file.path, "elapsed_seconds": took})


def store(report: DatasetReport, options: ValidationOptions, file: Probe | None) -> None:
    """Keep ``report`` for later validations of the same content with the same settings,
    and remember the sha256 of ``file`` (probed before validating) if it did not change
    meanwhile. A cache that cannot be written is skipped: it only ever saves time."""
    key = fingerprint(options)
    write_entry(
        _entry(key, report.size_bytes, report.sha256), {"report": report.model_dump(mode="json")}
    )
    if file is not None and file.size == report.size_bytes:
        _remember(file, report.sha256)
    prune(_folder() / "reports", "*/*.json", MAX_REPORTS)
    prune(_folder() / "files", "*.json", MAX_FILES)


def forget(file: Probe) -> None:
    """Forget the remembered sha256 of ``file`` (``--no-cache``: read the file again)."""
    _memo_path(file.real).unlink(missing_ok=True)

"""Every error tunefleet raises on purpose, in one hierarchy.

Catch :class:`TunefleetError` to handle them all. Each class carries ``exit_code``, the
status the CLI exits with when the error reaches it, and its ``str()`` is one line that
says what went wrong and where, fit to print as it is. No error message ever holds a
secret: messages name keys and locations, never values that could be credentials.

::

    TunefleetError                        base of everything below        exit 1
    ├── UsageError (ValueError)           bad arguments or options        exit 2
    ├── InputFileError (OSError)          a file missing, unreadable,     exit 2
    │                                     binary or too large
    ├── SpecError (ValueError)            the run spec is invalid; holds  exit 2
    │                                     every problem as a SpecIssue
    ├── DatasetInvalidError (ValueError)  a dataset failed validation     exit 1
    ├── TokenizerError                    a tokenizer file is missing or  exit 2
    │                                     fails its sha256 check
    ├── PluginError                       a plugin could not be loaded    exit 2
    │   ├── ProviderClashError            two distributions register one
    │   │                                 provider name (names both)
    │   └── ProviderNotInstalledError     a target names a provider that
    │       (LookupError)                 is not installed (says what to
    │                                     install)
    ├── PlanError                         a target's plan has             exit 1
    │                                     requirements its provider
    │                                     cannot honour (each with reason)
    ├── RunFailedError                    a run's job failed or was       exit 1
    │                                     cancelled; exit 3 when a step
    │                                     stopped on a provider error
    ├── DeployBlockedError                the model missed an evaluation  exit 1
    │                                     threshold (each named, with
    │                                     value and threshold) or was
    │                                     never evaluated
    ├── StateError                        the journal cannot be opened,   exit 2
    │   │                                 or holds no such thing
    │   ├── RunNotFoundError (LookupError) no run matches the reference
    │   └── LeaseLostError                another process took over a
    │                                     target this one was driving
    └── ProviderError                     a provider's call failed; it    exit 3
        │                                 carries the service's ``code``
        │                                 and HTTP ``status``
        ├── ProviderNotFoundError         the resource asked for does
        │   (LookupError)                 not exist (a missing job)
        ├── AlreadyExistsError            a resource of that name exists
        ├── QuotaExceededError            a quota waiting cannot clear (0
        │                                 instances, a daily limit): the
        │                                 message says what to request
        ├── TransientProviderError        throttled, 5xx, timed out:
        │   │                             safe to retry (``retry_after``)
        │   └── ProviderBusyError         a concurrency limit that frees
        │                                 up: the engine queues the target
        └── CapabilityError               the provider cannot do this
            (NotImplementedError)         operation at all

Providers raise these from one translation point per SDK (botocore's ``Error.Code``, an
HTTP status, Azure's ``error.code``, ``google.api_core`` exception types); nothing in
tunefleet decides anything by reading an error message's words.

Exit status 0 means success and 130 an interrupt (Ctrl-C); the CLI reports anything else
that escapes as an internal error, exit 70, with the traceback only under ``--debug``.
"""

from __future__ import annotations

import shlex
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "AlreadyExistsError",
    "CapabilityError",
    "DatasetInvalidError",
    "DeployBlockedError",
    "InputFileError",
    "LeaseLostError",
    "PlanError",
    "PluginError",
    "ProviderBusyError",
    "ProviderClashError",
    "ProviderError",
    "ProviderNotFoundError",
    "ProviderNotInstalledError",
    "QuotaExceededError",
    "RunFailedError",
    "RunNotFoundError",
    "SpecError",
    "SpecIssue",
    "StateError",
    "TokenizerError",
    "TransientProviderError",
    "TunefleetError",
    "UsageError",
    "printable",
]


_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(value: object) -> str:
    """``value`` as one line of text safe for a terminal: control characters (a newline, an
    escape sequence) and bidirectional overrides shown as escapes, never interpreted. Paths
    and names a user gave go through this before they reach an error message."""
    text = "" if value is None else str(value)
    if text.isprintable() and not _BIDI_CONTROLS.intersection(text):
        return text
    return "".join(
        ch.encode("unicode_escape").decode("ascii")
        if unicodedata.category(ch) in ("Cc", "Cs") or ch in _BIDI_CONTROLS
        else ch
        for ch in text
    )


class TunefleetError(Exception):
    """Base of every error tunefleet raises on purpose."""

    exit_code: int = 1


class UsageError(TunefleetError, ValueError):
    """The caller asked for something that cannot be done as asked (bad option, bad name)."""

    exit_code = 2


class InputFileError(TunefleetError, OSError):
    """An input file is missing, unreadable, not text, or too large to be what it claims."""

    exit_code = 2

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{printable(path)}: {problem}")

    def __str__(self) -> str:
        return f"{printable(self.path)}: {self.problem}"


@dataclass(frozen=True)
class SpecIssue:
    """One problem in a spec: where it is (file, 1-based line, key path) and what it is."""

    source: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        source = printable(self.source)
        where = source if self.line is None else f"{source}:{self.line}"
        return f"{where} {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class SpecError(TunefleetError, ValueError):
    """The run spec is invalid. ``issues`` holds every problem found, in file order."""

    exit_code = 2

    def __init__(self, issues: Sequence[SpecIssue]) -> None:
        if not issues:
            raise ValueError("SpecError needs at least one issue")
        self.issues: tuple[SpecIssue, ...] = tuple(issues)
        super().__init__(str(self.issues[0]))

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)

    @classmethod
    def single(
        cls, source: str, message: str, *, line: int | None = None, path: str = ""
    ) -> SpecError:
        """A SpecError with one issue."""
        return cls([SpecIssue(source=source, line=line, path=path, message=message)])


class DatasetInvalidError(TunefleetError, ValueError):
    """A dataset failed validation; ``report`` is the full validation report.

    The message is one line: where the spec names the dataset (``where``, when given), then
    the first error as ``FILE:LINE: CODE name: detail``, the count, and the command that
    lists each one.
    """

    exit_code = 1

    def __init__(
        self, path: str, error_count: int, report: object | None = None, *, where: str = ""
    ) -> None:
        self.path = path
        self.error_count = error_count
        self.report = report
        self.where = where
        errors = f"{error_count} error{'s' if error_count != 1 else ''}"
        shown = printable(path)
        command = f"tunefleet data validate {printable(shlex.quote(path))}"
        first = _first_error(report)
        if first is None:
            message = f"{shown}: {errors} found; run `{command}` for each one"
        else:
            line, what = first
            message = f"{shown}:{line}: {what}" if line else f"{shown}: {what}"
            message += f" ({errors} in all; `{command}` lists each)"
        super().__init__(f"{where} {message}" if where else message)


def _first_error(report: object | None) -> tuple[int, str] | None:
    """The line (0: the whole file) and ``CODE name: detail`` of a report's first error."""
    for finding in getattr(report, "findings", None) or ():
        if getattr(finding, "severity", None) != "error":
            continue
        detail = printable(" ".join(str(getattr(finding, "detail", "")).split()))
        if len(detail) > 100:
            detail = detail[:97] + "..."
        code, name = getattr(finding, "code", ""), getattr(finding, "name", "")
        return int(getattr(finding, "line", 0) or 0), f"{code} {name}: {detail}"
    return None


class TokenizerError(TunefleetError):
    """A tokenizer's data file is missing or fails its integrity check."""

    exit_code = 2


class PluginError(TunefleetError):
    """A plugin could not be loaded or registered."""

    exit_code = 2


class ProviderClashError(PluginError):
    """Two installed distributions register a provider under the same name."""

    def __init__(self, name: str, distributions: Iterable[str]) -> None:
        self.name = name
        self.distributions = tuple(distributions)
        first, second = self.distributions[0], self.distributions[1]
        super().__init__(
            f"provider name {name!r} is registered by both {first} and {second}; "
            "uninstall one of them"
        )


class ProviderNotInstalledError(PluginError, LookupError):
    """A target names a provider that no installed distribution registers."""

    def __init__(self, name: str, installed: Iterable[str], install_hint: str) -> None:
        self.name = name
        self.installed = tuple(sorted(installed))
        self.install_hint = install_hint
        have = ", ".join(self.installed) or "none"
        super().__init__(f"provider {name!r} is not installed ({install_hint}); installed: {have}")


class PlanError(TunefleetError):
    """One or more targets cannot run as specified.

    ``unmet`` maps each target name to the requirements its provider cannot honour, each a
    ``(requirement, reason)`` pair.
    """

    exit_code = 1

    def __init__(self, unmet: dict[str, list[tuple[str, str]]]) -> None:
        self.unmet = unmet
        lines = [
            f"target {target!r} cannot honour {requirement}: {reason}"
            for target, items in unmet.items()
            for requirement, reason in items
        ]
        super().__init__("\n".join(lines))


class RunFailedError(TunefleetError):
    """A run ended without every target succeeding.

    Exit 1 when a job failed or was cancelled; 3 when a step stopped on a provider error
    (`tunefleet resume` retries it once the cause is fixed).
    """

    exit_code = 1

    def __init__(self, message: str, *, provider_error: bool = False) -> None:
        super().__init__(message)
        if provider_error:
            self.exit_code = 3


class DeployBlockedError(TunefleetError):
    """The evaluation gate refused a deploy: ``reasons`` holds one line per failing metric
    (its value and threshold), or why the model has no evaluation."""

    exit_code = 1

    def __init__(self, subject: str, reasons: list[str], *, hint: str) -> None:
        self.reasons = reasons
        super().__init__(f"{subject} is not deployed: {'; '.join(reasons)} ({hint})")


class StateError(TunefleetError):
    """The journal cannot be opened or used (unreachable, newer schema, missing driver)."""

    exit_code = 2


class RunNotFoundError(StateError, LookupError):
    """No run in the journal matches the id or prefix given (or the prefix is ambiguous)."""


class LeaseLostError(StateError):
    """Another process took over a target this one was driving (this one stalled too long)."""


class ProviderError(TunefleetError):
    """A provider's call failed. ``provider`` names the backend; the message is the service's.

    ``code`` is the service's own error code where it gave one (``ValidationException``,
    ``rate_limit_exceeded``, ``ResourceNotFound``) and ``status`` the HTTP status; callers
    decide on these (or on the subclass), never on the message's words.
    """

    exit_code = 3

    def __init__(
        self, provider: str, message: str, *, code: str | None = None, status: int | None = None
    ) -> None:
        self.provider = provider
        self.detail = message
        """The message without the provider's name in front."""
        self.code = code
        self.status = status
        super().__init__(f"{provider}: {message}")


class ProviderNotFoundError(ProviderError, LookupError):
    """The resource a call named does not exist (any more): a job, an endpoint, an object."""


class AlreadyExistsError(ProviderError):
    """A create named a resource that exists already (for a name derived from the run key:
    this run's own, made by an earlier attempt)."""


class QuotaExceededError(ProviderError):
    """A quota that waiting will not clear: an account limit of 0 for an instance type, a
    daily limit, exhausted credit. The message names the quota and says to request more."""


class TransientProviderError(ProviderError):
    """A failure worth retrying: throttling, a 5xx answer, a timeout, a dropped connection.

    ``retry_after`` is the wait in seconds the service asked for (``Retry-After``), if any.
    """

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        retry_after: float | None = None,
        code: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(provider, message, code=code, status=status)
        self.retry_after = retry_after


class ProviderBusyError(TransientProviderError):
    """The provider cannot accept the job yet: a concurrency limit that frees up as jobs end.

    The engine queues the target, shows this message as the reason, and submits again
    later; waiting in the queue never exhausts the retries of transient errors.
    """


class CapabilityError(ProviderError, NotImplementedError):
    """The provider cannot perform this operation at all (it does not implement the
    optional protocol, or not with these options)."""

"""Calls to a provider: bounded in time, retried when the failure is transient.

A call that raises :class:`~tunefleet.errors.TransientProviderError` (throttling, a 5xx,
a dropped connection) is retried with capped exponential backoff and full jitter
(tenacity's ``wait_random_exponential``), or after the ``retry_after`` the service asked
for. A call that does not return within its timeout counts as a transient failure, so a
provider that stops answering costs a bounded time, never a hung CLI. Permanent errors
are raised at once with the provider's message. :class:`~tunefleet.errors.ProviderBusyError`
is not retried here: the engine queues the target instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import tenacity

from tunefleet.errors import (
    ProviderBusyError,
    ProviderError,
    TransientProviderError,
    TunefleetError,
)
from tunefleet.kit.retry import wait_as_asked

__all__ = ["CallPolicy", "EngineStoppedError", "call"]

T = TypeVar("T")


class EngineStoppedError(Exception):
    """The engine was asked to stop while waiting to retry."""


@dataclass(frozen=True)
class CallPolicy:
    """How long to wait for a provider and how often to try again."""

    attempts: int = 6
    """Tries per call, the first included."""
    backoff: float = 1.0
    """Base of the exponential backoff, in seconds."""
    backoff_cap: float = 60.0
    """No wait between tries is longer than this (a service's Retry-After included)."""
    timeout: float = 120.0
    """Seconds a status, events, find, submit or cancel call may take."""
    stage_timeout: float = 6 * 3600.0
    """Seconds an upload may take."""


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, TransientProviderError) and not isinstance(exc, ProviderBusyError)


def call(
    policy: CallPolicy,
    provider: str,
    operation: str,
    fn: Callable[..., T],
    *args: Any,
    timeout: float | None = None,
    stop: threading.Event | None = None,
    on_retry: Callable[[str], None] | None = None,
) -> T:
    """``fn(*args)`` under ``policy``; raises the last ProviderError when retries run out."""

    def sleep(seconds: float) -> None:
        if stop is not None and stop.wait(seconds):
            raise EngineStoppedError

    def before_sleep(state: tenacity.RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None and state.next_action:
            error = state.outcome.exception()
            on_retry(
                f"{operation}: {error}; try {state.attempt_number + 1} of {policy.attempts} "
                f"in {state.next_action.sleep:.1f}s"
            )

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(_is_retryable),
        stop=tenacity.stop_after_attempt(policy.attempts),
        wait=wait_as_asked(policy.backoff, policy.backoff_cap),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    limit = timeout if timeout is not None else policy.timeout
    result: T = retrying(_bounded, provider, operation, limit, fn, *args)
    return result


def _bounded(provider: str, operation: str, limit: float, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn`` in a daemon thread and give up waiting after ``limit`` seconds.

    The thread is abandoned, not killed (Python cannot kill threads); SDK calls carry
    their own socket timeouts, this bounds what they do not.
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = fn(*args)
        except BaseException as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=target, name=f"{provider}.{operation}", daemon=True)
    worker.start()
    worker.join(limit)
    if worker.is_alive():
        raise TransientProviderError(provider, f"{operation} did not answer within {limit:g}s")
    if "error" in outcome:
        error = outcome["error"]
        if isinstance(error, TunefleetError):
            raise error
        # A provider should translate its SDK's errors; one that slips through still fails
        # the step with its own words instead of killing the engine.
        raise ProviderError(
            provider, f"{operation} failed: {type(error).__name__}: {error}"
        ) from error
    return outcome["value"]  # type: ignore[no-any-return]

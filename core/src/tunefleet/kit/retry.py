"""Waits between tries that honour what a service asked for.

The engine retries a transient step with :func:`wait_as_asked`; a provider that repeats
one request itself (a throttled create that the service refused untouched) uses the same
wait, so both respect a ``Retry-After`` the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import tenacity

__all__ = ["wait_as_asked"]


def wait_as_asked(backoff: float, cap: float) -> Callable[[tenacity.RetryCallState], float]:
    """A tenacity wait: the ``retry_after`` the failure carries (a service's Retry-After),
    else capped exponential backoff with full jitter; never longer than ``cap`` seconds."""
    jitter = tenacity.wait_random_exponential(multiplier=backoff, max=cap)

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        asked = getattr(exc, "retry_after", None)
        if asked is not None:
            return float(min(max(asked, 0.0), cap))
        return float(jitter(state))

    return wait

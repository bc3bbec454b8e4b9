"""Checks of a service's limits that every provider makes the same way."""

from __future__ import annotations

from tunefleet.errors import ProviderBusyError, ProviderError

__all__ = ["check_concurrency", "check_storage_region"]


def check_concurrency(provider: str, active: int, limit: int | None, where: str) -> None:
    """ProviderBusyError when ``active`` unfinished jobs reach ``limit`` (None: no limit).

    The engine queues the target and submits again once jobs finish, so a limit that
    leaves slots to colleagues never fails a run. ``where`` names the pool the jobs share
    ("in this project", "on this machine").
    """
    if limit is not None and active >= limit:
        raise ProviderBusyError(
            provider,
            f"{active} job(s) unfinished {where} (options.max_concurrent_jobs is {limit})",
            code="max_concurrent_jobs",
        )


def check_storage_region(provider: str, store: str, actual: str, expected: str) -> None:
    """ProviderError, before any upload, when ``store`` lies outside the target's region.

    The placement policy was checked against the target's region; data sent to a store
    elsewhere would leave it silently.
    """
    if actual != expected:
        raise ProviderError(
            provider,
            f"{store} is in {actual}, not in {expected} as the target says; nothing was uploaded",
            code="storage_region_mismatch",
        )

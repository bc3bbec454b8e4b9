"""Where a training job stands: the states every provider's job status is told in.

Its own module so that what only needs the states (the provider contract's job status, a
provider's job bookkeeping, a plan) does not build the event models of
:mod:`tunefleet.events`, which also exports it.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["JobState"]


class JobState(StrEnum):
    """Where a training job stands, in every provider's terms."""

    QUEUED = "queued"
    """Accepted and waiting for capacity (or validating files)."""
    RUNNING = "running"
    PAUSED = "paused"
    """Stopped at the user's request and resumable where it left off (hosted APIs)."""
    STOPPING = "stopping"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """True once the job will not change state again."""
        return self in {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}

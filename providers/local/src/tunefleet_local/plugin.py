"""Entry point of tunefleet-local. Imports nothing heavy: the provider loads lazily."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tunefleet.hookspecs import hookimpl


@hookimpl
def tunefleet_providers() -> Sequence[type[Any]]:
    from tunefleet_local.provider import LocalProvider

    return [LocalProvider]

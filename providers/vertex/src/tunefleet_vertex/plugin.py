"""Entry point of tunefleet-vertex. Imports neither the provider nor a Google SDK."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tunefleet.hookspecs import hookimpl


@hookimpl
def tunefleet_providers() -> Sequence[type[Any]]:
    from tunefleet_vertex.provider import VertexProvider

    return [VertexProvider]

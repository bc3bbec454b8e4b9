"""Entry point of tunefleet-openai. Imports neither the provider nor the SDK."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tunefleet.hookspecs import hookimpl


@hookimpl
def tunefleet_providers() -> Sequence[type[Any]]:
    from tunefleet_openai.provider import OpenAIProvider

    return [OpenAIProvider]

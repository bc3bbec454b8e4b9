"""Entry point of tunefleet-azureml. Imports neither the provider nor an Azure SDK."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tunefleet.hookspecs import hookimpl


@hookimpl
def tunefleet_providers() -> Sequence[type[Any]]:
    from tunefleet_azureml.provider import AzureMLProvider

    return [AzureMLProvider]

"""Entry point of tunefleet-sagemaker. Imports neither the provider nor boto3."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tunefleet.hookspecs import hookimpl


@hookimpl
def tunefleet_providers() -> Sequence[type[Any]]:
    from tunefleet_sagemaker.provider import SageMakerProvider

    return [SageMakerProvider]

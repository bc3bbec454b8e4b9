"""Entry point of the ``hyperpod`` provider. Imports neither the provider nor boto3."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tunefleet.hookspecs import hookimpl


@hookimpl
def tunefleet_providers() -> Sequence[type[Any]]:
    from tunefleet_sagemaker.hyperpod.provider import HyperPodProvider

    return [HyperPodProvider]

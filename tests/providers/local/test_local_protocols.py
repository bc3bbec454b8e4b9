"""The local provider implements the optional protocols it supports and nothing else, and
its entry points run under the module names that launch them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tunefleet.provider import (
    DERIVED_CAPABILITIES,
    Estimating,
    Pausable,
    Provider,
    Serving,
    TrafficSplitting,
    capabilities_of,
)
from tunefleet_local import _jobs, _serving
from tunefleet_local.provider import LocalProvider


def test_there_are_no_methods_that_only_refuse() -> None:
    provider = LocalProvider()
    for name in ("pause", "resume"):
        assert not hasattr(provider, name), f"{name} exists only to refuse: delete it"
    assert isinstance(provider, Provider)
    assert isinstance(provider, Serving) and isinstance(provider, Estimating)
    assert isinstance(provider, TrafficSplitting)
    assert not isinstance(provider, Pausable)


def test_capabilities_come_from_the_protocols() -> None:
    provider = LocalProvider()
    assert not DERIVED_CAPABILITIES & provider.capabilities().model_fields_set
    caps = capabilities_of(provider)
    assert caps.endpoints is True and caps.traffic_split is True
    assert caps.pause is False
    assert caps.runs_locally and caps.methods == {"supervised", "dpo"}


@pytest.mark.parametrize(
    ("epochs", "source", "chosen"), [(None, "provider default", 3), (2, "spec", 2)]
)
def test_the_estimate_is_free(epochs: int | None, source: str, chosen: int) -> None:
    estimate = LocalProvider().estimate_training("scratch:tiny", 10, 1_000, epochs)
    assert (estimate.epochs, estimate.epochs_source) == (chosen, source)
    assert estimate.trained_tokens == 1_000 * chosen
    assert estimate.amount == 0.0 and estimate.provider == "local"


@pytest.mark.parametrize(
    ("module", "argv", "expected"),
    [(_jobs.RUNNER, [], 2), (_serving.SERVER, ["--help"], 0)],
)
def test_the_entry_points_run_as_launched(module: str, argv: list[str], expected: int) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, *argv], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == expected, done.stderr
    assert f"python -m {module}" in done.stdout + done.stderr, "the usage names the module"

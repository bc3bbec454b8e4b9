"""Fixtures shared by every test tree."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunefleet.plugins import Registry, builtin_plugins
from tunefleet.testing import fake

DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def _isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tokenizer files are seeded into a per-session cache, never the user's.
    monkeypatch.setenv("TUNEFLEET_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def toy_dataset() -> Path:
    return DATA / "toy_chat_fine_tuning.jsonl"


@pytest.fixture
def registry() -> Registry:
    """Built-in plugins plus the fake providers, registered in-process."""
    return Registry([*builtin_plugins(), (fake, "fake", "tunefleet-fake-tests", "0.0.0")])


@pytest.fixture
def fake_site(tmp_path: Path) -> Iterator[Path]:
    """A site directory on sys.path where tests write throwaway distributions."""
    site = tmp_path / "site"
    site.mkdir()
    sys.path.insert(0, str(site))
    try:
        yield site
    finally:
        sys.path.remove(str(site))

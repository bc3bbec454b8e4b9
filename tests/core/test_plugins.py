"""Provider registration through the real entry-point group, clashes, and install hints."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tunefleet.errors import PluginError, ProviderClashError, ProviderNotInstalledError
from tunefleet.plugins import discover
from tunefleet.testing import write_entry_point


def make_plugin(site: Path, module: str, provider_name: str) -> None:
    (site / f"{module}.py").write_text(
        textwrap.dedent(
            f"""
            from tunefleet.hookspecs import hookimpl
            from tunefleet.testing.fake import FakeProvider

            class Provider(FakeProvider):
                name = {provider_name!r}

            @hookimpl
            def tunefleet_providers():
                return [Provider]
            """
        )
    )


def test_entry_point_provider_is_discovered_with_its_distribution(fake_site: Path) -> None:
    make_plugin(fake_site, "acme_plugin", "acme")
    write_entry_point(fake_site, "tunefleet-acme", {"acme": "acme_plugin"}, version="1.2.3")
    registry = discover()
    info = registry.providers["acme"]
    assert info.distribution == "tunefleet-acme"
    assert info.version == "1.2.3"
    assert registry.provider("acme").name == "acme"
    assert "local" in registry.providers, "first-party providers register through the same group"


def test_two_distributions_with_one_provider_name_is_an_error_naming_both(fake_site: Path) -> None:
    make_plugin(fake_site, "one_plugin", "dup")
    make_plugin(fake_site, "two_plugin", "dup")
    write_entry_point(fake_site, "tunefleet-one", {"one": "one_plugin"})
    write_entry_point(fake_site, "tunefleet-two", {"two": "two_plugin"})
    with pytest.raises(ProviderClashError) as caught:
        discover().providers  # noqa: B018
    message = str(caught.value)
    assert "'dup'" in message
    assert "tunefleet-one" in message and "tunefleet-two" in message


def test_a_plugin_that_fails_to_import_is_named(fake_site: Path) -> None:
    (fake_site / "broken_plugin.py").write_text("raise RuntimeError('boom')\n")
    write_entry_point(fake_site, "tunefleet-broken", {"broken": "broken_plugin"})
    with pytest.raises(PluginError, match=r"tunefleet-broken failed to load: RuntimeError: boom"):
        discover()


def test_missing_first_party_provider_says_what_to_install(registry) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ProviderNotInstalledError) as caught:
        registry.provider("sagemaker")
    assert "pip install 'tunefleet[sagemaker]'" in str(caught.value)
    assert "fake" in str(caught.value)  # lists what is installed
    with pytest.raises(
        ProviderNotInstalledError, match="install the distribution that provides it"
    ):
        registry.provider("acme")

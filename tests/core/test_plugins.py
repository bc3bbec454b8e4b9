"""Provider registration through the real entry-point group, clashes, and install hints."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from tunefleet.errors import PluginError, ProviderClashError, ProviderNotInstalledError
from tunefleet.plugins import ENTRY_POINT_GROUP, discover, installed_entry_points
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


def test_the_group_is_found_as_importlib_finds_it(fake_site: Path, tmp_path: Path) -> None:
    """Only files that mention the group are parsed, and the result is importlib's: the
    same entry points, a distribution found twice on sys.path counted once (the first), a
    file that names tunefleet outside the group contributing nothing."""
    from importlib.metadata import entry_points

    make_plugin(fake_site, "acme_plugin", "acme")
    write_entry_point(fake_site, "tunefleet-acme", {"acme": "acme_plugin"}, version="2.0")
    shadowed = tmp_path / "later-site"
    write_entry_point(shadowed, "tunefleet_acme", {"acme": "acme_plugin"}, version="1.0")
    other = write_entry_point(fake_site, "tunefleet-cli-helper", {}, version="1.0")
    (other / "entry_points.txt").write_text("[console_scripts]\ntunefleet-x = tunefleet:x\n")
    sys.path.append(str(shadowed))
    try:
        ours = installed_entry_points()
        expected = entry_points(group=ENTRY_POINT_GROUP)
    finally:
        sys.path.remove(str(shadowed))
    assert sorted((ep.name, ep.value) for ep, _, _ in ours) == sorted(
        (ep.name, ep.value) for ep in expected
    )
    acme = [(name, version) for ep, name, version in ours if ep.name == "acme"]
    assert acme == [("tunefleet-acme", "2.0")]
    assert "local" in {ep.name for ep, _, _ in ours}


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


def make_tracing_plugin(site: Path, module: str, provider_name: str) -> None:
    """A plugin whose provider module records, in ``ASKED``, that it was imported."""
    (site / f"{module}_provider.py").write_text(
        textwrap.dedent(
            f"""
            import os
            from tunefleet.testing.fake import FakeProvider

            with open(os.environ["ASKED"], "a") as record:
                record.write({module!r} + "\\n")

            class Provider(FakeProvider):
                name = {provider_name!r}
            """
        )
    )
    (site / f"{module}.py").write_text(
        textwrap.dedent(
            f"""
            from tunefleet.hookspecs import hookimpl

            @hookimpl
            def tunefleet_providers():
                from {module}_provider import Provider
                return [Provider]
            """
        )
    )


def test_using_one_provider_imports_only_the_plugin_named_after_it(
    fake_site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`plan` of one target must not pay for every installed provider's modules."""
    asked = tmp_path / "asked"
    asked.touch()
    monkeypatch.setenv("ASKED", str(asked))
    make_tracing_plugin(fake_site, "alpha_plugin", "alpha")
    make_tracing_plugin(fake_site, "beta_plugin", "beta")
    make_tracing_plugin(fake_site, "gamma_plugin", "gamma")
    write_entry_point(fake_site, "tunefleet-alpha", {"alpha": "alpha_plugin"})
    write_entry_point(fake_site, "tunefleet-beta", {"beta": "beta_plugin"})
    # Installed under a name that is not its provider's: found, but only by asking everyone.
    write_entry_point(fake_site, "tunefleet-gamma", {"extras": "gamma_plugin"})
    registry = discover()
    assert registry.provider("alpha").name == "alpha"
    assert asked.read_text().split() == ["alpha_plugin"]
    assert registry.provider_info("alpha").distribution == "tunefleet-alpha"
    assert registry.provider("gamma").name == "gamma"
    assert sorted(asked.read_text().split()) == ["alpha_plugin", "beta_plugin", "gamma_plugin"]


def test_a_clash_under_the_providers_own_entry_point_name_is_found_when_using_it(
    fake_site: Path,
) -> None:
    make_plugin(fake_site, "one_plugin", "dup")
    make_plugin(fake_site, "two_plugin", "dup")
    write_entry_point(fake_site, "tunefleet-one", {"dup": "one_plugin"})
    write_entry_point(fake_site, "tunefleet-two", {"dup": "two_plugin"})
    with pytest.raises(ProviderClashError, match="tunefleet-one"):
        discover().provider("dup")

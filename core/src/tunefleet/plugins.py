"""Finding plugins and the providers they register.

Plugins come from the entry-point group ``tunefleet`` (see :mod:`tunefleet.hookspecs`).
Loading them imports each plugin module and nothing more: provider classes are collected
from the ``tunefleet_providers`` hook and only instantiated when a command needs one.

Calling a plugin's ``tunefleet_providers`` imports its provider modules (tens to hundreds of
milliseconds each), so a command that names its providers (`plan`, `run`, `status`) asks
only the plugins whose entry point is named after them: see :meth:`Registry.provider`.
Listing every provider (`tunefleet providers`) still asks every plugin.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, distributions
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

import pluggy

from tunefleet import hookspecs
from tunefleet.errors import PluginError, ProviderClashError, ProviderNotInstalledError

if TYPE_CHECKING:  # the provider contract's models cost a `data validate` that names none
    from tunefleet.provider import Provider

ENTRY_POINT_GROUP = "tunefleet"

# First-party providers and the extra that installs each; anything else is a third party's.
FIRST_PARTY = ("local", "openai", "sagemaker", "hyperpod", "azureml", "vertex")
_EXTRA_FOR = {"hyperpod": "sagemaker"}


@dataclass(frozen=True)
class ProviderInfo:
    """A registered provider class and the distribution it came from."""

    name: str
    cls: type[Provider]
    distribution: str
    version: str | None


def install_hint(name: str) -> str:
    """What to run to get provider ``name``."""
    if name in FIRST_PARTY:
        return f"install it with: pip install 'tunefleet[{_EXTRA_FOR.get(name, name)}]'"
    return "install the distribution that provides it"


class Registry:
    """The plugin manager with every plugin loaded, and the providers by name."""

    def __init__(self, plugins: Iterable[tuple[object, str, str, str | None]] = ()) -> None:
        """Register ``(plugin, plugin_name, distribution, version)`` tuples, then index providers."""
        self.manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.manager.add_hookspecs(hookspecs)
        self._origin: dict[str, tuple[str, str | None]] = {}
        self._entry_point: dict[str, str] = {}
        self._named: dict[str, ProviderInfo] = {}
        for plugin, plugin_name, distribution, version in plugins:
            self.add(plugin, plugin_name, distribution, version)

    def add(
        self,
        plugin: object,
        name: str,
        distribution: str,
        version: str | None = None,
        *,
        entry_point: str | None = None,
    ) -> None:
        """Register one plugin object or module, attributed to ``distribution``.

        ``entry_point`` is the name it was installed under; a plugin whose entry point is
        named after a provider is the one asked first for that provider.
        """
        try:
            registered = self.manager.register(plugin, name=name)
        except (ValueError, pluggy.PluginValidationError) as exc:
            raise PluginError(f"plugin {name!r} from {distribution} is invalid: {exc}") from None
        if registered is None:  # pragma: no cover - pluggy returns None only for blocked names
            raise PluginError(f"plugin {name!r} from {distribution} is blocked")
        self._origin[name] = (distribution, version)
        if entry_point is not None:
            self._entry_point[name] = entry_point
        self.__dict__.pop("providers", None)
        self._named.clear()

    def _collect(self, only_entry_point: str | None = None) -> dict[str, ProviderInfo]:
        """The providers that plugins register: every plugin's, or only those of plugins
        installed under entry point ``only_entry_point``. Raises ProviderClashError on a
        name registered twice among them, PluginError on a class without a name."""
        found: dict[str, ProviderInfo] = {}
        # Call each implementation on its own to know which distribution returned what.
        for impl in self.manager.hook.tunefleet_providers.get_hookimpls():
            if (
                only_entry_point is not None
                and self._entry_point.get(impl.plugin_name) != only_entry_point
            ):
                continue
            distribution, version = self._origin.get(impl.plugin_name, (impl.plugin_name, None))
            classes = cast("Sequence[type[Provider]] | None", impl.function())
            for cls in classes or ():
                name = getattr(cls, "name", None)
                if not isinstance(name, str) or not name:
                    raise PluginError(
                        f"{distribution} registers a provider class {cls!r} without a name"
                    )
                if name in found:
                    raise ProviderClashError(name, [found[name].distribution, distribution])
                found[name] = ProviderInfo(name, cls, distribution, version)
        return dict(sorted(found.items()))

    @functools.cached_property
    def providers(self) -> dict[str, ProviderInfo]:
        """Every registered provider by name (asking every plugin, so importing every
        provider's modules). Raises ProviderClashError on a duplicate name."""
        return self._collect()

    def provider_info(self, name: str) -> ProviderInfo:
        """Provider ``name``'s class and origin, asking as few plugins as possible.

        The plugins installed under an entry point called ``name`` are asked first (every
        first-party provider's entry point is named after it, as :mod:`tunefleet.hookspecs`
        recommends), so that planning one cloud never imports the others' provider modules.
        Only when they do not register ``name`` is every plugin asked. Two distributions
        registering ``name`` under entry points of that name are still a ProviderClashError;
        a clash with a plugin installed under another name shows in `tunefleet providers`.
        Raises ProviderNotInstalledError, saying how to get it, for an unknown name.
        """
        listed = "providers" in self.__dict__
        if not listed and name not in self._named and name in self._entry_point.values():
            self._named.update(self._collect(only_entry_point=name))
        info = None if listed else self._named.get(name)
        if info is None:
            info = self.providers.get(name)
        if info is None:
            raise ProviderNotInstalledError(name, self.providers, install_hint(name))
        return info

    def provider(self, name: str) -> Provider:
        """A new instance of provider ``name`` (see :meth:`provider_info` for which plugins
        are asked); ProviderNotInstalledError says how to get it."""
        return self.provider_info(name).cls()

    def dataset_checks(self) -> list[hookspecs.ExampleCheck]:
        """Every registered per-example dataset check."""
        checks: list[hookspecs.ExampleCheck] = []
        for batch in self.manager.hook.tunefleet_dataset_checks():
            checks.extend(batch)
        return checks


def builtin_plugins() -> list[tuple[object, str, str, str | None]]:
    """tunefleet's own plugins (the PII check), as ``Registry`` takes them."""
    from tunefleet.data import pii

    return [(pii, "tunefleet.pii", "tunefleet", None)]


def installed_entry_points() -> list[tuple[EntryPoint, str, str | None]]:
    """Every installed entry point of the ``tunefleet`` group, with its distribution's name
    and version, as ``importlib.metadata.entry_points(group=...)`` finds them: in sys.path
    order, each distribution name taken from the first place it is found.

    importlib parses every entry point of every installed distribution before selecting a
    group; in an environment with the cloud SDKs that is thousands of console scripts and
    other plugins, read on every command. Here only the files that mention the group are
    parsed (the others are read, not parsed), and only their distributions' metadata.
    """
    found: list[tuple[EntryPoint, str, str | None]] = []
    names: set[str] = set()
    for dist in distributions():
        text = dist.read_text("entry_points.txt")
        if not text or ENTRY_POINT_GROUP not in text:
            continue
        group = dist.entry_points.select(group=ENTRY_POINT_GROUP)
        if not group:
            continue
        metadata = dist.metadata  # parsed on every read: read it once
        name = metadata["Name"] or next(iter(group)).value
        normalized = re.sub(r"[-_.]+", "-", name).lower()  # PEP 503, as importlib compares
        if normalized in names:
            continue
        names.add(normalized)
        found.extend((ep, name, metadata["Version"]) for ep in group)
    return found


def discover() -> Registry:
    """A registry with tunefleet's built-in plugins and every installed entry point."""
    registry = Registry(builtin_plugins())
    for ep, distribution, version in installed_entry_points():
        try:
            plugin: ModuleType | Any = ep.load()
        except Exception as exc:  # a broken plugin is named, not a traceback
            raise PluginError(
                f"plugin {ep.name!r} from {distribution} failed to load: {type(exc).__name__}: {exc}"
            ) from exc
        registry.add(
            plugin, f"{distribution}:{ep.name}", distribution, version, entry_point=ep.name
        )
    return registry


@functools.cache
def default_registry() -> Registry:
    """The process-wide registry, discovered once."""
    return discover()

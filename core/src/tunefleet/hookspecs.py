"""The plugin contract: every hook tunefleet calls, in one module.

tunefleet uses pluggy twice. A distribution declares an entry point in the group
``tunefleet`` whose target is a module (or object) implementing some of these hooks,
marked with :data:`hookimpl`::

    # pyproject.toml
    [project.entry-points.tunefleet]
    myprovider = "tunefleet_myprovider.plugin"

    # tunefleet_myprovider/plugin.py
    from tunefleet.hookspecs import hookimpl

    @hookimpl
    def tunefleet_providers():
        from tunefleet_myprovider.provider import MyProvider   # no cloud SDK import here
        return [MyProvider]

Rules that keep ``tunefleet --help`` fast and plugins independent:

* Loading a plugin module must not import a cloud SDK. Import the SDK inside the provider's
  methods, when it is first used.
* Name the entry point after the provider it registers (``myprovider`` above). A command
  that uses one provider asks only the plugins installed under its name, so planning one
  cloud never imports another's provider modules; a provider registered under another
  entry point name is still found, at the price of asking every plugin.
* Hooks are called with keyword arguments; an implementation may accept any subset of the
  arguments a spec names, and new arguments may be added to a spec without breaking it.
* First-party providers register exactly like third-party ones, through this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from tunefleet.data.findings import Finding
    from tunefleet.provider import Plan, Provider, Unmet
    from tunefleet.spec import RunSpec

PROJECT = "tunefleet"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

ExampleCheck = Callable[[Mapping[str, Any], int], "Iterable[Finding]"]
"""A dataset check: given one parsed example and its 1-based line, the findings about it.

It runs in validation worker processes, so it must be a module-level function (picklable)
and must not keep state between calls.
"""


@hookspec
def tunefleet_providers() -> Sequence[type[Provider]]:  # type: ignore[empty-body]
    """Registration: the provider classes this distribution contributes.

    Provider names must be unique across all installed distributions; a clash is an error
    that names both distributions.
    """


@hookspec
def tunefleet_dataset_checks() -> Sequence[ExampleCheck]:  # type: ignore[empty-body]
    """Extra per-example dataset checks (PII, profanity, house style).

    Each check's findings use codes of its own (``PII001``, ``ACME001``) and are reported
    alongside the built-in ones. tunefleet's own PII detector is registered this way.
    """


@hookspec
def tunefleet_check_plan(spec: RunSpec, plan: Plan) -> Sequence[Unmet] | None:
    """Policy and budget checks on a finished plan.

    Return the requirements the plan breaks (an over-budget cost, a forbidden instance
    type); each fails the plan with its reason, exactly like a provider's own refusal.
    """

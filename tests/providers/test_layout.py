"""Every provider follows the one layout docs/writing-a-provider.md describes, so a reader
finds the same thing in the same place in each, and each is tested by the conformance suite.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYOUT = {
    "plugin.py": "the hook that returns the provider class",
    "provider.py": "the thin facade",
    "options.py": "the target's options",
    "pricing.py": "dated price tables and facts about the service",
    "_client.py": "the SDK client and the one translation of its errors",
    "_planning.py": "plan()",
    "_staging.py": "stage()",
    "_jobs.py": "find, submit, status, cancel, artifacts",
    "_events.py": "the job's events",
    "_serving.py": "deploy, delete_endpoint, invoke",
}
PACKAGES = sorted(
    facade.parent
    for pattern in (
        "providers/*/src/tunefleet_*/provider.py",
        "providers/*/src/tunefleet_*/*/provider.py",
    )
    for facade in ROOT.glob(pattern)
)
"""Each provider's package: a distribution's top package, or a subpackage of it where one
distribution holds two providers (tunefleet-sagemaker: ``sagemaker`` and ``hyperpod``)."""


def _name(package: Path) -> str:
    """The provider's name, which is its tests' folder: its package's without tunefleet_."""
    return package.name.removeprefix("tunefleet_")


def test_the_providers_are_found() -> None:
    names = {_name(package) for package in PACKAGES}
    assert {"local", "openai", "sagemaker", "hyperpod", "azureml", "vertex"} <= names, names


@pytest.mark.parametrize("package", PACKAGES, ids=_name)
def test_each_provider_has_the_standard_modules(package: Path) -> None:
    missing = {name: why for name, why in LAYOUT.items() if not (package / name).is_file()}
    assert not missing, f"{package} lacks {missing}"
    public = {
        path.name
        for path in package.glob("*.py")
        if not path.name.startswith("_") and path.name not in LAYOUT
    }
    assert not public, f"modules beyond the layout are private (_name.py): {sorted(public)}"


@pytest.mark.parametrize("package", PACKAGES, ids=_name)
def test_the_facade_only_delegates(package: Path) -> None:
    """provider.py holds the contract's methods; the work is in the private modules, so a
    method of more than a few statements belongs in one of them."""
    facade = package / "provider.py"
    tree = ast.parse(facade.read_text())
    long_methods = [
        f"{node.name} ({len(node.body)} statements)"
        for cls in tree.body
        if isinstance(cls, ast.ClassDef)
        for node in cls.body
        if isinstance(node, ast.FunctionDef) and len(node.body) > 6
    ]
    assert not long_methods, f"{facade}: {long_methods}"


@pytest.mark.parametrize("package", PACKAGES, ids=_name)
def test_each_provider_runs_the_conformance_suite(package: Path) -> None:
    tests = ROOT / "tests" / "providers" / _name(package)
    texts = [path.read_text() for path in tests.glob("test_*conformance*.py")]
    assert any("ProviderConformance" in text for text in texts), (
        f"{tests} has no test class built on tunefleet.testing.conformance.ProviderConformance"
    )

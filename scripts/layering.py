"""Check the layering contracts over core, the trainer and every provider under providers/.

The contracts are import-linter's, in the root pyproject.toml under
``[tool.tunefleet.layering]`` (the same keys as ``[tool.importlinter]``), where the element
``"{providers}"`` of a list stands for the import package of every provider found under
``providers/<name>/src/``. So a new provider is checked by every contract without being
named outside its own folder. This writes the expanded contracts to a temporary file and
runs ``lint-imports`` on it; extra arguments go to lint-imports.

    python scripts/layering.py [--verbose]
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROVIDERS = "{providers}"


def provider_packages() -> list[str]:
    """The import package of each provider: ``providers/<name>/src/<package>/__init__.py``."""
    return sorted(init.parent.name for init in ROOT.glob("providers/*/src/*/__init__.py"))


def _expand(value: Any, providers: list[str]) -> Any:
    if isinstance(value, list):
        return [name for item in value for name in (providers if item == PROVIDERS else [item])]
    return value


def _ini_value(value: Any) -> str:
    if isinstance(value, list):
        return "\n" + "\n".join(f"    {item}" for item in value)
    if isinstance(value, bool):
        return str(value)
    return str(value)


def expanded_config(providers: list[str]) -> configparser.ConfigParser:
    """The contracts as import-linter's INI configuration, ``{providers}`` expanded."""
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["tunefleet"]["layering"]
    config = configparser.ConfigParser(interpolation=None)
    config["importlinter"] = {
        key: _ini_value(_expand(value, providers))
        for key, value in settings.items()
        if key != "contracts"
    }
    for number, contract in enumerate(settings["contracts"], start=1):
        config[f"importlinter:contract:{number}"] = {
            key: _ini_value(_expand(value, providers)) for key, value in contract.items()
        }
    return config


def main(argv: list[str]) -> int:
    providers = provider_packages()
    if not providers:
        print("layering: no provider found under providers/*/src/", file=sys.stderr)
        return 2
    with tempfile.NamedTemporaryFile("w", suffix=".ini", prefix="layering-") as handle:
        expanded_config(providers).write(handle)
        handle.flush()
        print(f"layering: core, the trainer and {', '.join(providers)}", flush=True)
        lint_imports = Path(sys.executable).with_name("lint-imports")
        # The source trees themselves, so a provider is checked before it is installed.
        sources = [ROOT / "core/src", ROOT / "deploy/trainer/src", *ROOT.glob("providers/*/src")]
        path = os.pathsep.join([*map(str, sources), os.environ.get("PYTHONPATH", "")])
        return subprocess.run(
            [str(lint_imports), handle.name, *argv],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": path},
            check=False,
        ).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

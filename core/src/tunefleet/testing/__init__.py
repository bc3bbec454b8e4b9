"""Test support for tunefleet and for provider authors.

* :mod:`tunefleet.testing.conformance`: the provider conformance suite (needs pytest).
* :mod:`tunefleet.testing.fake`: a stateful, file-backed fake provider.
* :func:`write_entry_point`: make a throwaway distribution that registers a plugin through
  the real ``tunefleet`` entry-point group, for tests of discovery and of the CLI.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["write_entry_point"]


def write_entry_point(
    site: Path, distribution: str, plugins: dict[str, str], version: str = "0.0.0"
) -> Path:
    """Write ``<distribution>.dist-info`` into ``site`` declaring ``plugins`` (name -> module).

    Put ``site`` on ``sys.path`` (or ``PYTHONPATH`` for a subprocess) and
    ``importlib.metadata`` finds the distribution, exactly as if pip had installed it.
    """
    folder = site / f"{re.sub(r'[-.]+', '_', distribution)}-{version}.dist-info"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n"
    )
    lines = ["[tunefleet]", *(f"{name} = {module}" for name, module in plugins.items())]
    (folder / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return folder

"""``python -m tunefleet``: the same as the ``tunefleet`` command."""

from tunefleet.cli import console

console()

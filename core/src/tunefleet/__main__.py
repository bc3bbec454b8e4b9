"""``python -m tunefleet``: the same as the ``tunefleet`` command."""

import sys

from tunefleet.cli import main

sys.exit(main())

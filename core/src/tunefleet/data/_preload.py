"""Loaded by the validation fork server before it forks workers.

The fork server imports this module once; if ``TUNEFLEET_PRELOAD_ENCODING`` names an
encoding, its token counter is built here, so every worker forked afterwards shares the
tokenizer's memory (tens of MB) copy-on-write instead of building its own copy. The PII
check's digit pattern is compiled here too, for the same reason.
"""

from __future__ import annotations

import os

from tunefleet.data.tokens import TokenCounter, token_counter

PRELOAD_ENV = "TUNEFLEET_PRELOAD_ENCODING"  # set by tunefleet.data._pool

counters: dict[str, tuple[TokenCounter, str]] = {}

_name = os.environ.get(PRELOAD_ENV)
if _name:  # set only while the fork server starts: the main process, importing this, skips it
    counters[_name] = token_counter(_name)
    from tunefleet.data import pii

    pii.any_digit_pattern()

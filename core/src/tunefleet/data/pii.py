"""Likely personal data in chat examples: e-mail, phone, payment card and IBAN numbers.

Registered as a dataset check through the ``tunefleet_dataset_checks`` hook, exactly as a
third-party check would be. Card numbers must pass the Luhn check and IBANs the ISO 7064
mod-97 check, which keeps order numbers and random digits from being flagged. Findings say
which message holds the data but never repeat it: the report is safe to share.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

from tunefleet.data.findings import Finding
from tunefleet.hookspecs import ExampleCheck, hookimpl

_EMAIL = re.compile(
    r"\b[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}\b"
)
# International (+CC ...) or North-American style numbers with separators; 9-15 digits.
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?|\d{2,4}[\s.-])\d{2,4}[\s.-]?\d{3,4}(?![\w])"
)
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
_DIGITS = re.compile(r"\d")


# The prefilter that keeps the patterns above off text without a digit, which is most text.
# The `regex` module scans about twice as fast as `re`, and its \d (Unicode's Nd, from a
# Unicode version at least as new as Python's) matches every character re's \d matches
# (a test checks), so skipping on it never skips text the patterns could match.
@functools.cache
def any_digit_pattern() -> Any:
    """The prefilter's pattern, compiled on first use: importing ``regex`` costs 10 ms of
    every ``plan``, whose validation the cache usually answers."""
    import regex  # type: ignore[import-untyped]  # no stubs

    return regex.compile(r"\d")


_ASCII_DIGITS = "0123456789"


def luhn_valid(digits: str) -> bool:
    """True if the digit string passes the Luhn checksum."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    """True if ``candidate`` (spaces allowed) passes the IBAN mod-97 check."""
    compact = candidate.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    numeric = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(numeric) % 97 == 1


def _messages(example: Mapping[str, Any]) -> list[Any]:
    """The example's messages (chat), or its input's (preference); [] if neither is a list."""
    messages = example.get("messages")
    if not isinstance(messages, list):
        inner = example.get("input")
        messages = inner.get("messages") if isinstance(inner, Mapping) else None
    return messages if isinstance(messages, list) else []


def find_pii(example: Mapping[str, Any], line: int) -> list[Finding]:
    """Findings for likely e-mail, phone, card and IBAN numbers in the example's messages.

    Every string content and text part is checked; each finding names its message. The
    common case, no ``@`` and no digit in any message, costs one join, one substring test
    and one scan for the whole example.
    """
    messages = _messages(example)
    try:
        # Every content a string (the usual chat example): test them all at once, which
        # spares a few Python calls per message. The separator is neither "@" nor a
        # digit, and only the absence of both is concluded from the joined text.
        joined = "\n".join([message["content"] for message in messages])
    except (TypeError, KeyError):  # parts, a missing content, a message that is no object
        pass
    else:
        if "@" not in joined and not _has_digit(joined):
            return []
    found: list[Finding] = []
    for index, message in enumerate(messages):
        # `type(...) is dict` first: parsed JSON is always a dict, and the ABC check is slow.
        if not (type(message) is dict or isinstance(message, Mapping)):
            continue
        content = message.get("content")
        if isinstance(content, str):
            # The common case inline, saving a call: no `@` and no digit, nothing to find.
            if "@" in content or _has_digit(content):
                _check_text(content, index, line, found)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                    _check_text(part["text"], index, line, found)
    return found


def _has_digit(text: str) -> bool:
    """True if ``text`` may hold a digit (any script's): never False for text that has one.

    ASCII text (``isascii`` is a flag, free to read) can only hold 0-9, and ten substring
    tests find those about five times faster than a regex scan; other text is scanned.
    """
    if text.isascii():
        return any(digit in text for digit in _ASCII_DIGITS)
    return any_digit_pattern().search(text) is not None


def _check_text(text: str, index: int, line: int, found: list[Finding]) -> None:
    if "@" in text and _EMAIL.search(text):
        found.append(Finding("P201", line, f"messages[{index}] holds a likely e-mail address"))
    # The patterns below all need one of re's digits, and _has_digit sees every one.
    if _has_digit(text):
        found.extend(_numbers(text, index, line))


def _numbers(text: str, index: int, line: int) -> list[Finding]:
    """Card, phone and IBAN findings for one text that holds a digit."""
    found: list[Finding] = []
    cards = [m for m in _CARD.finditer(text) if luhn_valid(re.sub(r"[ -]", "", m.group()))]
    if cards:
        found.append(Finding("P203", line, f"messages[{index}] holds a likely card number"))
    card_spans = [m.span() for m in cards]
    for match in _PHONE.finditer(text):
        digits = len(_DIGITS.findall(match.group()))
        inside_card = any(s <= match.start() < e for s, e in card_spans)
        if 9 <= digits <= 15 and not inside_card:
            found.append(Finding("P202", line, f"messages[{index}] holds a likely phone number"))
            break
    if any(iban_valid(m.group()) for m in _IBAN.finditer(text)):
        found.append(Finding("P204", line, f"messages[{index}] holds a likely IBAN"))
    return found


@hookimpl
def tunefleet_dataset_checks() -> Sequence[ExampleCheck]:
    return [find_pii]

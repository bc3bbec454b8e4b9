"""Likely personal data in chat examples: e-mail, phone, payment card and IBAN numbers.

Registered as a dataset check through the ``tunefleet_dataset_checks`` hook, exactly as a
third-party check would be. Card numbers must pass the Luhn check and IBANs the ISO 7064
mod-97 check, which keeps order numbers and random digits from being flagged. Findings say
which message holds the data but never repeat it: the report is safe to share.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
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


def _texts(example: Mapping[str, Any]) -> Iterator[tuple[int, str]]:
    messages = example.get("messages")
    if not isinstance(messages, list):
        inner = example.get("input")
        messages = inner.get("messages") if isinstance(inner, Mapping) else None
    for index, message in enumerate(messages if isinstance(messages, list) else ()):
        if not isinstance(message, Mapping):
            continue
        content = message.get("content")
        if isinstance(content, str):
            yield index, content
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                    yield index, part["text"]


def find_pii(example: Mapping[str, Any], line: int) -> Iterator[Finding]:
    """Findings for likely e-mail, phone, card and IBAN numbers in the example's messages."""
    for index, text in _texts(example):
        if "@" in text and _EMAIL.search(text):
            yield Finding("P201", line, f"messages[{index}] holds a likely e-mail address")
        if not _DIGITS.search(text):
            continue
        cards = [m for m in _CARD.finditer(text) if luhn_valid(re.sub(r"[ -]", "", m.group()))]
        if cards:
            yield Finding("P203", line, f"messages[{index}] holds a likely card number")
        card_spans = [m.span() for m in cards]
        for match in _PHONE.finditer(text):
            digits = len(_DIGITS.findall(match.group()))
            inside_card = any(s <= match.start() < e for s, e in card_spans)
            if 9 <= digits <= 15 and not inside_card:
                yield Finding("P202", line, f"messages[{index}] holds a likely phone number")
                break
        if any(iban_valid(m.group()) for m in _IBAN.finditer(text)):
            yield Finding("P204", line, f"messages[{index}] holds a likely IBAN")


@hookimpl
def tunefleet_dataset_checks() -> Sequence[ExampleCheck]:
    return [find_pii]

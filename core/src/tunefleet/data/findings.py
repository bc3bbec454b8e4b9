"""Stable codes for everything dataset validation can report.

Codes never change meaning once released: scripts match on them. ``E`` codes are errors (the
file would be rejected or trained wrongly), ``W`` codes warnings (worth a look), ``P`` codes
likely personal data. Plugins add codes of their own with their own prefix.

This module is imported by validation worker processes, so it stays free of heavy imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Code:
    """A finding code: its id, short name, severity and what it means."""

    id: str
    name: str
    severity: Severity
    description: str


class Finding(NamedTuple):
    """One problem at one line (0: the file as a whole). ``detail`` says what exactly,
    without echoing personal data."""

    code: str
    line: int
    detail: str


def _error(id_: str, name: str, description: str) -> Code:
    return Code(id_, name, Severity.ERROR, description)


def _warning(id_: str, name: str, description: str) -> Code:
    return Code(id_, name, Severity.WARNING, description)


CODES: dict[str, Code] = {
    code.id: code
    for code in (
        _error("E001", "invalid_utf8", "The line is not valid UTF-8."),
        _error("E002", "invalid_json", "The line is not valid JSON."),
        _error("E003", "empty_line", "The line is empty; JSONL has one example per line."),
        _error("E004", "line_too_long", "The line exceeds the maximum line size and was skipped."),
        _error(
            "E005",
            "no_examples",
            "The file holds no example: it is empty, or every line is blank (reported at line 0, the whole file).",
        ),
        _error("E010", "data_type", "The example is not a JSON object."),
        _error("E011", "missing_messages_list", "The example has no non-empty `messages` list."),
        _error("E012", "message_not_object", "A message is not a JSON object."),
        _error("E013", "message_missing_key", "A message lacks `role` or `content`."),
        _error(
            "E014", "message_unrecognized_key", "A message has a key the format does not define."
        ),
        _error(
            "E015",
            "unrecognized_role",
            "A message's role is not system, developer, user, assistant, tool or function.",
        ),
        _error(
            "E016",
            "missing_content",
            "A message's content is missing, empty or not a string or list of parts.",
        ),
        _error(
            "E017",
            "example_missing_assistant_message",
            "No assistant message: nothing to learn from.",
        ),
        _error(
            "E018",
            "invalid_weight",
            "A `weight` other than 0 or 1, or on a message that is not the assistant's.",
        ),
        _error(
            "E019",
            "invalid_content_part",
            "A content part is malformed, or of a type this role cannot send.",
        ),
        _error(
            "E020",
            "invalid_tool_call",
            "An assistant tool call lacks an id, a function name or JSON arguments.",
        ),
        _error("E021", "invalid_tools", "The example's `tools` list is malformed."),
        _error(
            "E022", "missing_tool_call_id", "A tool message lacks the `tool_call_id` it answers."
        ),
        _error(
            "E030",
            "invalid_preference_example",
            "A preference (DPO) example lacks `input.messages` or a one-message assistant `preferred_output` / `non_preferred_output`.",
        ),
        _warning("W101", "missing_system_message", "The example has no system message."),
        _warning("W102", "missing_user_message", "The example has no user message."),
        _warning(
            "W103",
            "over_context_limit",
            "The example has more tokens than the model's context limit; it would be truncated.",
        ),
        _warning("W104", "duplicate_example", "The example repeats an earlier line exactly."),
        _warning(
            "W105",
            "unrecognized_example_key",
            "The example has a top-level key the format does not define.",
        ),
        _warning("W106", "tokens_not_counted", "Image parts are not counted in token totals."),
        _warning("P201", "pii_email", "Likely e-mail address."),
        _warning("P202", "pii_phone", "Likely phone number."),
        _warning("P203", "pii_card_number", "Likely payment card number (passes the Luhn check)."),
        _warning("P204", "pii_iban", "Likely IBAN (passes the mod-97 check)."),
    )
}


def severity_of(code: str) -> Severity:
    """The severity of ``code``; plugin codes starting with E are errors, others warnings."""
    known = CODES.get(code)
    if known is not None:
        return known.severity
    return Severity.ERROR if code.startswith("E") else Severity.WARNING


def name_of(code: str) -> str:
    """The short name of ``code`` (the code itself for plugin codes)."""
    known = CODES.get(code)
    return known.name if known is not None else code

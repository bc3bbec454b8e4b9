"""tunefleet's chat examples in Gemini's terms: Vertex AI supervised tuning lines, and the
``generateContent`` request and reply of a tuned Gemini model.

Plain dicts only: nothing here imports a cloud SDK. The Vertex provider stages a dataset
with :func:`convert_dataset` and invokes a tuned model with :func:`gemini_request` and
:func:`gemini_reply`; both share one message mapping, so training and evaluation see a
conversation the same way.

The mapping (each rule with its source)
---------------------------------------
- ``system`` (and ``developer``, OpenAI's newer name for it) messages at the start become
  ``systemInstruction``, one text part per message, without a ``role``: the request's
  ``systemInstruction`` takes "only text ... in parts and content in each part will be in a
  separate paragraph" [D: GenerateContentRequest.systemInstruction], and "the role field of
  systemInstruction is ignored" [P]. Several leading system messages are therefore kept
  whole as several parts, not joined and not refused. A system message *after* the first
  user or assistant turn is refused: Gemini has one instruction for the whole
  conversation, so its position would be lost.
- ``user`` becomes ``"user"`` and ``assistant`` becomes ``"model"``, the only two roles a
  ``Content`` takes [D: Content.role]. Every ``Content`` has at least one part
  [D: Content.parts], so empty content is refused.
- Content is a string or OpenAI's list of ``{"type": "text", "text": ...}`` parts; each text
  becomes a ``{"text": ...}`` part [D: Part.text]. Any other part (an image URL, audio, a
  file) is refused: the tuning format takes media as ``fileData`` (a Cloud Storage URI
  and a MIME type) [P], which this module does not produce.
- Turns alternate, starting with the user's: two consecutive user (or model) turns and a
  conversation that opens with the model's turn are refused. Vertex's page does not spell
  this out; its validator rejects such files ("consecutive turns") as reported by a
  third-party checker [T], and merging would rewrite what is trained (two replies would
  become one).
- A training example ends with the model's turn: supervised tuning learns the model turns
  as labels [P, "the output labels should represent the correct answers"], and a trailing
  user turn would be a question without an answer. A request (:func:`gemini_request`) ends
  with the user's turn instead: that is the question the model answers.
- ``weight``: neither the tuning format [P] nor ``Content`` [D] has a per-turn weight, so
  every model turn is trained. ``weight`` 1 is what Gemini does anyway and is accepted; ``weight`` 0 is refused (dropping the turn
  or training on it would both change the example silently); a weight on any other
  message, or one other than 0 or 1, is refused as tunefleet's validator does (E018).
- Tool calls (``tool_calls``, ``function_call``, ``tool``/``function`` messages,
  ``tool_call_id``) and tool definitions (``tools``, ``functions``, ``parallel_tool_calls``)
  are refused: Gemini expresses them as ``functionCall``/``functionResponse`` parts and a
  top-level ``tools`` list of OpenAPI-subset declarations [P; D: Part, Tool], a conversion
  (call ids to function names, JSON Schema to Gemini's schema) this module does not make.
- ``name`` on a message is refused: ``Content`` has no field for it [D: Content], so it
  would be lost.
- Preference (DPO) examples are refused: this is supervised tuning's format only.
- Other top-level keys of an example (an ``id``, metadata) are not training data, already
  reported by tunefleet's validator as W105, and are left out.

Datasets (:func:`convert_dataset`) are read as tunefleet's validator reads them: one
example per line, UTF-8, a byte-order mark allowed on line 1, and a blank line is an error
(E003), never skipped; a file with no example is refused (E005).

Limits for Gemini 2.0 Flash, 2.0 Flash-Lite, 2.5 Flash, 2.5 Flash-Lite and 2.5 Pro [A]:
131,072 input and output tokens per training example, 5,000 validation examples, 1 GB of
JSONL per training file, 1M text-only training examples. Gemini 1.5 had lower ones (32,000
tokens, 256 validation examples). Tokens are Gemini's own, which tunefleet cannot count
offline; the constants below let a provider check the rest.

Sources (read 2026):

- [P] "Prepare supervised fine-tuning data for Gemini models",
  https://cloud.google.com/vertex-ai/generative-ai/docs/models/gemini-supervised-tuning-prepare
- [A] "About supervised fine-tuning for Gemini models", Limitations,
  https://cloud.google.com/vertex-ai/generative-ai/docs/models/gemini-supervised-tuning
- [D] Vertex AI API v1 discovery document (``shared/specs/vertex-aiplatform-v1-discovery.json``):
  schemas GoogleCloudAiplatformV1Content, Part, GenerateContentRequest, GenerationConfig,
  GenerateContentResponse, Candidate (``finishReason``), GenerateContentResponsePromptFeedback
  (``blockReason``) and GenerateContentResponseUsageMetadata.
- [T] third party, not Google's: https://jsonlkit.com/gemini-fine-tune-validator (strict
  user/model alternation starting with the user, Vertex's ``consecutive_turns`` error).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Final

import orjson
from pydantic import BaseModel, ConfigDict

from tunefleet.errors import InputFileError, ProviderError, printable
from tunefleet.names import open_input, os_problem
from tunefleet.provider import ChatReply

__all__ = [
    "MAX_DATASET_BYTES",
    "MAX_EXAMPLE_TOKENS",
    "MAX_TRAINING_EXAMPLES",
    "MAX_VALIDATION_EXAMPLES",
    "ConversionReport",
    "GeminiConversionError",
    "convert_dataset",
    "gemini_example",
    "gemini_reply",
    "gemini_request",
]

MAX_EXAMPLE_TOKENS: Final = 131_072
"""Input and output tokens (Gemini's) per training example, Gemini 2.x tuning [A]."""
MAX_VALIDATION_EXAMPLES: Final = 5_000
"""Examples in a validation dataset, Gemini 2.x tuning [A]."""
MAX_TRAINING_EXAMPLES: Final = 1_000_000
"""Text-only examples in a training dataset, Gemini 2.x tuning [A]."""
MAX_DATASET_BYTES: Final = 1_000_000_000
"""A training dataset's JSONL file ("1GB") [A]; decimal, the stricter reading."""
MAX_LINE_BYTES: Final = 32 << 20
"""The longest line read, as tunefleet's validator (a longer one is refused, not held)."""

_SYSTEM_ROLES = frozenset({"system", "developer"})
_ROLES = {"user": "user", "assistant": "model"}
_TOOL_ROLES = frozenset({"tool", "function"})
_TOOL_KEYS = ("tool_calls", "function_call", "tool_call_id")
_MESSAGE_KEYS = frozenset({"role", "content", "name", "weight", *_TOOL_KEYS})
_EXAMPLE_TOOL_KEYS = ("tools", "functions", "parallel_tool_calls")
_PREFERENCE_KEYS = frozenset({"input", "preferred_output", "non_preferred_output"})
_BOM = b"\xef\xbb\xbf"
_FINISH_REASONS = {"STOP": "stop", "MAX_TOKENS": "length"}


class GeminiConversionError(ValueError):
    """What Gemini tuning cannot express, and where.

    ``reason`` says what and why (``messages[3]: weight 0 ...``); ``source`` and ``line``
    (1-based) are set when it comes from a file, and the message then reads
    ``train.jsonl line 12: <reason>``.
    """

    def __init__(self, reason: str, *, source: str | None = None, line: int | None = None):
        self.reason = reason
        self.source = source
        self.line = line
        super().__init__(reason)

    def __str__(self) -> str:
        if self.source is None:
            return self.reason
        where = printable(self.source)
        if self.line is not None:
            where += f" line {self.line}"
        return f"{where}: {self.reason}"


class ConversionReport(BaseModel):
    """What :func:`convert_dataset` wrote."""

    model_config = ConfigDict(frozen=True)

    source: Path
    destination: Path
    examples: int
    """Lines read and written: one example each."""
    bytes_written: int
    sha256: str
    """Of the written file, for a content-addressed upload."""


# ---------------------------------------------------------------- the message mapping


def _parts(content: Any, at: str) -> list[dict[str, str]]:
    """A message's content as Gemini text parts; refuses what is not text."""
    if isinstance(content, str):
        if not content:
            raise GeminiConversionError(
                f"{at} has empty content; a Gemini turn needs at least one non-empty part"
            )
        return [{"text": content}]
    if content is None:
        raise GeminiConversionError(f"{at} has null content; a Gemini turn needs text")
    if not isinstance(content, list):
        raise GeminiConversionError(
            f"{at}: content must be a string or a list of text parts, not {_kind(content)}"
        )
    if not content:
        raise GeminiConversionError(f"{at} has an empty list of content parts")
    parts: list[dict[str, str]] = []
    for index, part in enumerate(content):
        where = f"{at}.content[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != "text":
            shown = f"a {kind!r} part" if isinstance(kind, str) else _kind(part)
            raise GeminiConversionError(
                f"{where} is {shown}; only text parts are converted (Gemini tuning takes "
                "media as fileData in Cloud Storage, which this conversion does not produce)"
            )
        text = part.get("text")
        if not isinstance(text, str) or not text:
            raise GeminiConversionError(f"{where} needs a non-empty string `text`")
        parts.append({"text": text})
    return parts


def _turns(
    messages: Any, where: str = "messages"
) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """``messages`` as (systemInstruction parts, contents), turns alternating and starting
    with the user's; refuses what Gemini cannot express (see the module docstring)."""
    if not isinstance(messages, list | tuple) or not messages:
        raise GeminiConversionError(f"`{where}` must be a non-empty list of messages")
    system: list[dict[str, str]] = []
    contents: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        at = f"{where}[{index}]"
        if not isinstance(message, Mapping):
            raise GeminiConversionError(f"{at} is {_kind(message)}, not an object")
        role = message.get("role")
        if not isinstance(role, str):
            shown = "no `role`" if role is None else f"role {_short(role)}"
            raise GeminiConversionError(f"{at} has {shown}; expected system, user or assistant")
        for key in _TOOL_KEYS:
            if message.get(key) is not None:
                raise GeminiConversionError(
                    f"{at} has `{key}`; tool calls are not converted to Gemini's "
                    "functionCall/functionResponse parts"
                )
        if role in _TOOL_ROLES:
            raise GeminiConversionError(
                f"{at} has role {role!r}; tool results are not converted to Gemini's "
                "functionResponse parts"
            )
        unknown = sorted(str(key) for key in message if key not in _MESSAGE_KEYS)
        if unknown:
            raise GeminiConversionError(
                f"{at} has unrecognized key(s) {', '.join(unknown)}; they would be lost"
            )
        if message.get("name") is not None:
            raise GeminiConversionError(
                f"{at} has a `name`; a Gemini turn has no name, so it would be lost"
            )
        if "weight" in message:
            _check_weight(message["weight"], role, at)
        if role in _SYSTEM_ROLES:
            if contents:
                raise GeminiConversionError(
                    f"{at}: a {role} message after the conversation started; Gemini has one "
                    "systemInstruction for the whole conversation, so its place would be lost"
                )
            system.extend(_parts(message.get("content"), at))
            continue
        gemini_role = _ROLES.get(role)
        if gemini_role is None:
            raise GeminiConversionError(
                f"{at} has role {_short(role)}; expected system, user or assistant"
            )
        if contents and contents[-1]["role"] == gemini_role:
            raise GeminiConversionError(
                f"{at}: two {role} turns in a row; Gemini turns alternate user and model "
                "(merge them into one message)"
            )
        if not contents and gemini_role == "model":
            raise GeminiConversionError(
                f"{at}: the conversation opens with an assistant turn; Gemini turns start "
                "with the user's"
            )
        contents.append({"role": gemini_role, "parts": _parts(message.get("content"), at)})
    if not contents:
        raise GeminiConversionError(f"`{where}` has no user or assistant message")
    return system, contents


def _check_weight(weight: Any, role: Any, at: str) -> None:
    if role != "assistant":
        raise GeminiConversionError(f"{at}: `weight` is only allowed on assistant messages")
    if isinstance(weight, bool) or weight not in (0, 1):
        raise GeminiConversionError(f"{at}: weight must be 0 or 1, got {_short(weight)}")
    if weight == 0:
        raise GeminiConversionError(
            f"{at} has weight 0; Gemini tuning trains on every model turn and has no "
            "per-turn weight (remove the turn, or set weight 1 to train on it)"
        )


def _body(system: list[dict[str, str]], contents: list[dict[str, Any]]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if system:
        body["systemInstruction"] = {"parts": system}
    body["contents"] = contents
    return body


# ---------------------------------------------------------------- training data


def gemini_example(example: Mapping[str, Any]) -> dict[str, Any]:
    """One chat example (``{"messages": [...]}``) as one Vertex AI Gemini tuning example.

    Returns ``{"systemInstruction": {"parts": [{"text": ...}, ...]}, "contents": [...]}``
    (``systemInstruction`` only when the example has system messages), every ``contents``
    entry ``{"role": "user" | "model", "parts": [{"text": ...}, ...]}``, alternating from
    the user's turn to the model's. Raises :class:`GeminiConversionError` with the reason
    for anything Gemini tuning cannot express (see the module docstring); never drops or
    rewrites a turn.
    """
    if not isinstance(example, Mapping):
        raise GeminiConversionError(f"expected a JSON object, got {_kind(example)}")
    if "messages" not in example and _PREFERENCE_KEYS.intersection(example):
        raise GeminiConversionError(
            "a preference (DPO) example; Gemini supervised tuning takes chat examples only"
        )
    if "messages" not in example:
        raise GeminiConversionError("no `messages` key")
    for key in _EXAMPLE_TOOL_KEYS:
        if example.get(key) is not None:
            raise GeminiConversionError(
                f"the example has `{key}`; tool definitions are not converted to Gemini's "
                "function declarations"
            )
    system, contents = _turns(example["messages"])
    if contents[-1]["role"] != "model":
        raise GeminiConversionError(
            "the conversation ends with the user's turn; a Gemini tuning example ends with "
            "the model's answer, which is what it learns"
        )
    return _body(system, contents)


def convert_dataset(
    source: Path,
    destination: Path,
    *,
    max_examples: int | None = None,
    max_bytes: int | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> ConversionReport:
    """Convert a chat JSONL file to Vertex AI's Gemini tuning JSONL, whole or not at all.

    Reads ``source`` one line at a time (memory stays flat in the file's size) and writes
    one compact UTF-8 JSON line per example to a temporary file beside ``destination``,
    which replaces ``destination`` only once every line converted: after a refusal or an
    error, ``destination`` is as it was (absent, or its old content) and no partial file
    is left. ``max_examples`` and ``max_bytes`` (of the output; see
    :data:`MAX_VALIDATION_EXAMPLES`, :data:`MAX_TRAINING_EXAMPLES`,
    :data:`MAX_DATASET_BYTES`) refuse a dataset the service would.

    Raises :class:`GeminiConversionError` on the first line Gemini cannot express, as
    ``train.jsonl line 12: <reason>`` (``line`` 1-based; 0 for the whole file), and
    InputFileError when ``source`` cannot be read or ``destination`` written.
    """
    name = source.name
    partial = destination.with_name(f".{destination.name}.{secrets.token_hex(4)}.partial")
    digest = hashlib.sha256()
    examples = written = 0
    try:
        with open_input(source, what="JSONL file") as reader:
            try:
                with partial.open("wb") as writer:
                    line = 0
                    while raw := _read_line(reader, source, max_line_bytes + 1):
                        line += 1
                        if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
                            raise GeminiConversionError(
                                f"the line is over {max_line_bytes:,} bytes",
                                source=name,
                                line=line,
                            )
                        try:
                            out = orjson.dumps(gemini_example(_decode(raw, line))) + b"\n"
                        except GeminiConversionError as exc:
                            raise GeminiConversionError(
                                exc.reason, source=name, line=line
                            ) from None
                        examples += 1
                        written += len(out)
                        if max_examples is not None and examples > max_examples:
                            raise GeminiConversionError(
                                f"more than {max_examples:,} examples, the most Gemini "
                                "tuning takes in this dataset",
                                source=name,
                                line=line,
                            )
                        if max_bytes is not None and written > max_bytes:
                            raise GeminiConversionError(
                                f"the converted file passes {max_bytes:,} bytes, the most "
                                "Gemini tuning takes",
                                source=name,
                                line=line,
                            )
                        digest.update(out)
                        writer.write(out)
                    writer.flush()
                    os.fsync(writer.fileno())
            except OSError as exc:
                if isinstance(exc, InputFileError):
                    raise
                raise InputFileError(str(destination), f"cannot write: {os_problem(exc)}") from None
        if examples == 0:
            raise GeminiConversionError(
                "the file holds no examples, there is nothing to train on (E005)",
                source=name,
                line=0,
            )
        try:
            os.replace(partial, destination)
        except OSError as exc:
            raise InputFileError(str(destination), f"cannot write: {os_problem(exc)}") from None
    finally:
        partial.unlink(missing_ok=True)
    return ConversionReport(
        source=source,
        destination=destination,
        examples=examples,
        bytes_written=written,
        sha256=digest.hexdigest(),
    )


def _read_line(reader: IO[bytes], source: Path, limit: int) -> bytes:
    try:
        return reader.readline(limit)
    except OSError as exc:  # EIO, a file on a network share that went away
        raise InputFileError(str(source), f"cannot be read: {os_problem(exc)}") from None


def _decode(raw: bytes, line: int) -> Any:
    """One line's example, read as tunefleet's validator reads it (E001-E003, E010)."""
    body = raw.strip()
    if line == 1 and body.startswith(_BOM):
        body = body[len(_BOM) :].strip()
    if not body:
        raise GeminiConversionError("empty line; JSONL has one example per line (E003)")
    try:
        example = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise GeminiConversionError(f"invalid UTF-8 at byte {bad.start + 1} (E001)") from None
        raise GeminiConversionError(f"invalid JSON: {exc} (E002)") from None
    if not isinstance(example, dict):
        raise GeminiConversionError(f"expected a JSON object, got {_kind(example)} (E010)")
    return example


# ---------------------------------------------------------------- invoking a tuned model


def gemini_request(
    messages: Sequence[Mapping[str, Any]], max_tokens: int, temperature: float
) -> dict[str, Any]:
    """The ``generateContent`` request body for a chat request [D: GenerateContentRequest].

    ``{"systemInstruction"?: ..., "contents": [...], "generationConfig": {"maxOutputTokens":
    max_tokens, "temperature": temperature}}``, the messages mapped exactly as
    :func:`gemini_example` maps a training example, except that the conversation ends with
    the user's turn (the question). Raises :class:`GeminiConversionError` for messages
    Gemini cannot express and ValueError for ``max_tokens`` below 1 or ``temperature``
    outside 0 to 2.
    """
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens must be a positive integer, got {max_tokens!r}")
    if not 0 <= temperature <= 2:
        raise ValueError(f"temperature must be between 0 and 2, got {temperature!r}")
    system, contents = _turns(list(messages))
    if contents[-1]["role"] != "user":
        raise GeminiConversionError(
            "the conversation ends with the assistant's turn; a request ends with the "
            "user's turn, which the model answers"
        )
    body = _body(system, contents)
    body["generationConfig"] = {"maxOutputTokens": max_tokens, "temperature": temperature}
    return body


def gemini_reply(
    response: bytes | str | Mapping[str, Any],
    *,
    provider: str = "vertex",
    where: str = "the tuned Gemini model",
) -> ChatReply:
    """The answer in a ``generateContent`` response (raw JSON or parsed), as a ChatReply.

    ``text`` joins the text parts of ``candidates[0].content.parts``, leaving out thought
    parts (``thought: true``) [D: Part.thought]; a candidate without content (its answer
    withheld, ``finishReason`` SAFETY, RECITATION...) gives ``""``. ``finish_reason`` is
    ``"stop"`` for STOP and ``"length"`` for MAX_TOKENS, as OpenAI's are, any other reason
    in lower case (``"safety"``), None when absent or unspecified [D: Candidate].
    ``prompt_tokens``/``completion_tokens`` are ``usageMetadata.promptTokenCount`` and
    ``candidatesTokenCount`` [D: GenerateContentResponseUsageMetadata].

    Raises ProviderError (``code="blocked"``) when there is no candidate because the prompt
    was blocked, naming ``promptFeedback.blockReason`` and its message; ProviderError
    (``code="bad_reply"``) saying what ``where`` answered when it is not a response.
    """
    try:
        body = json.loads(response) if isinstance(response, bytes | str) else response
        candidates = body.get("candidates") or []
        if not candidates:
            feedback = body.get("promptFeedback") or {}
            reason = feedback.get("blockReason")
            if reason:
                detail = feedback.get("blockReasonMessage")
                raise ProviderError(
                    provider,
                    f"{where} answered nothing: the prompt was blocked ({reason}"
                    + (f": {detail})" if detail else ")"),
                    code="blocked",
                )
            raise KeyError("candidates")
        candidate = candidates[0]
        parts = (candidate.get("content") or {}).get("parts") or []
        text = "".join(
            part["text"]
            for part in parts
            if isinstance(part.get("text"), str) and not part.get("thought")
        )
        usage = body.get("usageMetadata") or {}
        return ChatReply(
            text=text,
            finish_reason=_finish_reason(candidate.get("finishReason")),
            prompt_tokens=usage.get("promptTokenCount"),
            completion_tokens=usage.get("candidatesTokenCount"),
        )
    except ProviderError:
        raise
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        shown = response[:200] if isinstance(response, bytes | str) else str(response)[:200]
        raise ProviderError(
            provider,
            f"{where} answered {shown!r}, not a generateContent response",
            code="bad_reply",
        ) from None


def _finish_reason(reason: Any) -> str | None:
    if not isinstance(reason, str) or reason in ("", "FINISH_REASON_UNSPECIFIED"):
        return None
    return _FINISH_REASONS.get(reason, reason.lower())


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "an array",
    }.get(type(value), "an object")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."

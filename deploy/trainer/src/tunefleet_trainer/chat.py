"""Chat datasets turned into what the trainer learns from.

Supervised examples (OpenAI's chat format) are rendered with the base model's chat template
and tokenized here, so that exactly the assistant turns count in the loss: system and user
turns, tool results, the template's role headers and any assistant turn marked
``"weight": 0`` get the label -100 (ignored). An assistant turn's span is found by rendering
the conversation up to it (with the generation prompt) and up to its end; the characters in
between -- its content and the template's end-of-turn token, which the model must learn to
emit -- are the characters it is trained to produce. That works for any template that
renders a conversation's beginning the same way whether or not more turns follow; a template
that does not (one that rewrites earlier turns) is refused with the reason.

Preference examples (OpenAI's DPO format) become TRL's conversational preference rows
(``prompt``, ``chosen``, ``rejected``); TRL applies the template.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from tunefleet_trainer.errors import TrainerError

__all__ = [
    "ChatEncoder",
    "EncodedExample",
    "ExampleFormat",
    "dataset_texts",
    "preference_rows",
    "read_examples",
]

ExampleFormat = Literal["chat", "preference"]
IGNORE_INDEX = -100
"""The label PyTorch's cross-entropy ignores."""


class ChatTokenizer(Protocol):
    """The part of a Hugging Face tokenizer the encoder uses."""

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...

    def __call__(self, text: str, **kwargs: Any) -> Any: ...


def read_examples(path: Path, role: str) -> tuple[ExampleFormat, list[dict[str, Any]]]:
    """The examples of a JSONL dataset and their format, which must be the same throughout.

    The file is expected to have passed ``tunefleet data validate``; what the trainer
    cannot use is still refused here with the line it is on.
    """
    examples: list[dict[str, Any]] = []
    kinds: set[ExampleFormat] = set()
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise TrainerError(f"{path}: {exc.strerror or exc}") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                example = json.loads(raw)
            except ValueError:
                raise TrainerError(f"{path}:{number}: not valid JSON") from None
            if not isinstance(example, dict):
                raise TrainerError(f"{path}:{number}: an example must be a JSON object")
            if isinstance(example.get("messages"), list):
                kinds.add("chat")
            elif isinstance(example.get("input"), dict) and "preferred_output" in example:
                kinds.add("preference")
            else:
                raise TrainerError(
                    f"{path}:{number}: neither a chat example (messages) nor a preference "
                    "example (input, preferred_output, non_preferred_output)"
                )
            examples.append(example)
    if not examples:
        raise TrainerError(f"{path}: the {role} dataset holds no examples")
    if len(kinds) > 1:
        raise TrainerError(f"{path}: mixes chat and preference examples")
    return kinds.pop(), examples


def _text(content: Any) -> str:
    """Message content as text: a string, or the text parts of a content-part list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return str(content)


def _message(message: dict[str, Any]) -> dict[str, Any]:
    """A message as chat templates expect it: text content, no tunefleet-only keys."""
    cleaned = {key: value for key, value in message.items() if key != "weight"}
    cleaned["content"] = _text(message.get("content"))
    return cleaned


def dataset_texts(examples: Sequence[dict[str, Any]]) -> Iterator[str]:
    """Every piece of text in chat or preference examples (to train a tokenizer on)."""
    for example in examples:
        messages = example.get("messages")
        if messages is None:
            messages = [
                *example.get("input", {}).get("messages", []),
                *example.get("preferred_output", []),
                *example.get("non_preferred_output", []),
            ]
        for message in messages:
            if isinstance(message, dict):
                yield _text(message.get("content"))


def preference_rows(examples: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI preference examples as TRL's conversational preference rows."""
    return [
        {
            "prompt": [_message(m) for m in example["input"]["messages"]],
            "chosen": [_message(m) for m in example["preferred_output"]],
            "rejected": [_message(m) for m in example["non_preferred_output"]],
        }
        for example in examples
    ]


@dataclass(frozen=True)
class EncodedExample:
    """One tokenized conversation; ``labels`` is -100 wherever the loss must not look."""

    input_ids: list[int]
    labels: list[int]

    @property
    def trained_tokens(self) -> int:
        """Tokens that count in the loss."""
        return sum(label != IGNORE_INDEX for label in self.labels)


class ChatEncoder:
    """Renders chat examples with a tokenizer's chat template and masks the loss."""

    def __init__(self, tokenizer: ChatTokenizer, max_length: int) -> None:
        self._tokenizer = tokenizer
        self._max_length = max_length

    def _render(
        self, messages: list[dict[str, Any]], tools: Any, *, generation_prompt: bool
    ) -> str:
        if not messages:
            return ""
        text = self._tokenizer.apply_chat_template(
            messages, tools=tools, tokenize=False, add_generation_prompt=generation_prompt
        )
        return str(text)

    def assistant_spans(self, example: dict[str, Any]) -> tuple[str, list[tuple[int, int]]]:
        """The rendered conversation and the character spans the model is trained on."""
        messages = [_message(m) for m in example["messages"]]
        tools = example.get("tools")
        text = self._render(messages, tools, generation_prompt=False)
        spans: list[tuple[int, int]] = []
        for index, original in enumerate(example["messages"]):
            if original.get("role") != "assistant" or original.get("weight", 1) == 0:
                continue
            before = self._render(messages[:index], tools, generation_prompt=True)
            through = self._render(messages[: index + 1], tools, generation_prompt=False)
            if not (through.startswith(before) and text.startswith(through)):
                raise TrainerError(
                    "the base model's chat template renders earlier turns differently once "
                    "later turns follow, so assistant turns cannot be located for the loss "
                    "mask; use a model whose template is prefix-stable"
                )
            # Whitespace the template writes after the end-of-turn token is layout the model
            # never generates (it stops at the token), so it is not trained on.
            spans.append((len(before), len(through.rstrip())))
        return text, spans

    def encode(self, example: dict[str, Any]) -> EncodedExample:
        """Token ids and labels, truncated to the maximum length (keeping the start).

        The trained spans and the text between them are tokenized separately, as a prompt
        and its answer are at inference: a token merged across the boundary (a header's
        newline with the answer's first letter) would teach the model a token sequence it
        never sees when it answers.
        """
        text, spans = self.assistant_spans(example)
        segments: list[tuple[str, bool]] = []
        position = 0
        for start, end in spans:
            segments += [(text[position:start], False), (text[start:end], True)]
            position = end
        segments.append((text[position:], False))
        input_ids: list[int] = []
        labels: list[int] = []
        for segment, trained in segments:
            if not segment:
                continue
            ids = list(self._tokenizer(segment, add_special_tokens=False)["input_ids"])
            input_ids += ids
            labels += ids if trained else [IGNORE_INDEX] * len(ids)
        return EncodedExample(
            input_ids=input_ids[: self._max_length], labels=labels[: self._max_length]
        )

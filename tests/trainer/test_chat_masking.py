"""The loss mask: only what the assistant says (and its end of turn) is trained on."""

from __future__ import annotations

from typing import Any

import pytest

from tunefleet_trainer.chat import IGNORE_INDEX, ChatEncoder
from tunefleet_trainer.errors import TrainerError

CONVERSATION = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Where is my parcel?"},
        {"role": "assistant", "content": "It left the depot today."},
        {"role": "user", "content": "And the refund?"},
        {"role": "assistant", "content": "Refunds take 3 to 5 working days."},
    ]
}


def _trained_text(tokenizer: Any, example: dict[str, Any], max_length: int = 1024) -> str:
    encoded = ChatEncoder(tokenizer, max_length).encode(example)
    kept = [
        t
        for t, label in zip(encoded.input_ids, encoded.labels, strict=True)
        if label != IGNORE_INDEX
    ]
    assert all(
        label in (IGNORE_INDEX, token)
        for token, label in zip(encoded.input_ids, encoded.labels, strict=True)
    )
    return str(tokenizer.decode(kept))


def test_only_assistant_turns_and_their_end_of_turn_count(chatml_tokenizer: Any) -> None:
    trained = _trained_text(chatml_tokenizer, CONVERSATION)
    assert (
        trained == "It left the depot today.<|im_end|>Refunds take 3 to 5 working days.<|im_end|>"
    )


def test_user_system_and_role_headers_are_masked(chatml_tokenizer: Any) -> None:
    trained = _trained_text(chatml_tokenizer, CONVERSATION)
    for unseen in (
        "Be brief",
        "Where is my parcel",
        "And the refund",
        "<|im_start|>",
        "assistant\n",
    ):
        assert unseen not in trained


def test_an_assistant_turn_with_weight_zero_is_not_trained(chatml_tokenizer: Any) -> None:
    example = {"messages": [dict(m) for m in CONVERSATION["messages"]]}
    example["messages"][2]["weight"] = 0
    assert _trained_text(chatml_tokenizer, example) == "Refunds take 3 to 5 working days.<|im_end|>"


def test_truncation_keeps_the_start_and_its_labels(chatml_tokenizer: Any) -> None:
    full = ChatEncoder(chatml_tokenizer, 1024).encode(CONVERSATION)
    short = ChatEncoder(chatml_tokenizer, 20).encode(CONVERSATION)
    assert short.input_ids == full.input_ids[:20]
    assert short.labels == full.labels[:20]


def test_a_template_without_generation_markers_is_masked_the_same(chatml_tokenizer: Any) -> None:
    # A Llama-3-style template: no {% generation %} markers, different headers.
    tokenizer = chatml_tokenizer
    original = tokenizer.chat_template
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>[{{ m['role'] }}] {{ m['content'] }}<|im_end|>{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>[assistant] {% endif %}"
    )
    try:
        trained = _trained_text(tokenizer, CONVERSATION)
    finally:
        tokenizer.chat_template = original
    assert (
        trained == "It left the depot today.<|im_end|>Refunds take 3 to 5 working days.<|im_end|>"
    )


def test_a_template_that_rewrites_earlier_turns_is_refused(chatml_tokenizer: Any) -> None:
    tokenizer = chatml_tokenizer
    original = tokenizer.chat_template
    # Renders the number of messages first: earlier text changes when turns are added.
    tokenizer.chat_template = (
        "{{ messages|length }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    )
    try:
        with pytest.raises(TrainerError, match="prefix-stable"):
            ChatEncoder(tokenizer, 1024).encode(CONVERSATION)
    finally:
        tokenizer.chat_template = original

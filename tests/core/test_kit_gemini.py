"""Chat examples in Gemini's terms: what the Vertex provider stages and how it invokes a tuned
Gemini model (tunefleet.kit.gemini)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tunefleet.errors import InputFileError, ProviderError
from tunefleet.kit.gemini import (
    MAX_VALIDATION_EXAMPLES,
    GeminiConversionError,
    convert_dataset,
    gemini_example,
    gemini_reply,
    gemini_request,
)


def chat(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"messages": list(messages), **extra}


def system(text: str) -> dict[str, Any]:
    return {"role": "system", "content": text}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant(text: str, **extra: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": text, **extra}


def refused(example: dict[str, Any]) -> str:
    with pytest.raises(GeminiConversionError) as caught:
        gemini_example(example)
    return caught.value.reason


def write_lines(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# ---------------------------------------------------------------- one example


def test_system_message_becomes_the_system_instruction_and_roles_become_gemini_roles() -> None:
    converted = gemini_example(chat(system("Be brief."), user("2+2?"), assistant("4")))

    assert converted == {
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "2+2?"}]},
            {"role": "model", "parts": [{"text": "4"}]},
        ],
    }


def test_without_a_system_message_there_is_no_system_instruction() -> None:
    converted = gemini_example(chat(user("hi"), assistant("hello")))

    assert "systemInstruction" not in converted
    assert [turn["role"] for turn in converted["contents"]] == ["user", "model"]


def test_leading_system_and_developer_messages_are_kept_whole_as_separate_parts() -> None:
    converted = gemini_example(
        chat(
            system("Rule one."),
            {"role": "developer", "content": "Rule two."},
            user("q"),
            assistant("a"),
        )
    )

    assert converted["systemInstruction"] == {
        "parts": [{"text": "Rule one."}, {"text": "Rule two."}]
    }


def test_a_system_message_inside_the_conversation_is_refused() -> None:
    reason = refused(
        chat(user("q"), assistant("a"), system("now be rude"), user("q2"), assistant("a2"))
    )

    assert reason.startswith("messages[2]: a system message after the conversation started")


def test_multi_turn_conversation_keeps_every_turn_in_order() -> None:
    converted = gemini_example(
        chat(
            user("one"), assistant("1"), user("two"), assistant("2"), user("three"), assistant("3")
        )
    )

    assert [(t["role"], t["parts"][0]["text"]) for t in converted["contents"]] == [
        ("user", "one"),
        ("model", "1"),
        ("user", "two"),
        ("model", "2"),
        ("user", "three"),
        ("model", "3"),
    ]


def test_weight_one_is_trained_as_gemini_always_does_and_leaves_no_trace() -> None:
    converted = gemini_example(
        chat(user("q"), assistant("draft", weight=1), user("again"), assistant("final", weight=1))
    )

    assert converted["contents"][1] == {"role": "model", "parts": [{"text": "draft"}]}
    assert "weight" not in json.dumps(converted)


def test_weight_zero_is_refused_rather_than_dropped_or_trained() -> None:
    reason = refused(chat(user("q"), assistant("bad", weight=0), user("again"), assistant("ok")))

    assert reason.startswith("messages[1] has weight 0")
    assert "every model turn" in reason


@pytest.mark.parametrize(
    ("message", "where"),
    [
        ({"role": "user", "content": "q", "weight": 1}, "only allowed on assistant"),
        ({"role": "assistant", "content": "a", "weight": 0.5}, "weight must be 0 or 1"),
        ({"role": "assistant", "content": "a", "weight": True}, "weight must be 0 or 1"),
    ],
)
def test_weights_tunefleet_rejects_are_refused(message: dict[str, Any], where: str) -> None:
    example = (
        chat(message, assistant("a")) if message["role"] == "user" else chat(user("q"), message)
    )

    assert where in refused(example)


@pytest.mark.parametrize(
    "example",
    [
        chat(
            user("weather?"),
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            assistant("Sunny."),
        ),
        chat(user("q"), {"role": "function", "name": "f", "content": "x"}, assistant("a")),
        chat(user("q"), assistant("a"), tools=[{"type": "function", "function": {"name": "f"}}]),
    ],
    ids=["tool_calls", "function-message", "tool-definitions"],
)
def test_tool_calls_and_tool_messages_are_refused(example: dict[str, Any]) -> None:
    reason = refused(example)

    assert "tool" in reason and "not converted" in reason


def test_text_content_part_lists_become_gemini_parts() -> None:
    converted = gemini_example(
        chat(
            {"role": "system", "content": [{"type": "text", "text": "Sys."}]},
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            },
            assistant("c"),
        )
    )

    assert converted["systemInstruction"] == {"parts": [{"text": "Sys."}]}
    assert converted["contents"][0] == {"role": "user", "parts": [{"text": "a"}, {"text": "b"}]}


def test_image_parts_are_refused_not_dropped() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    reason = refused(
        chat(
            {"role": "user", "content": [{"type": "text", "text": "what is it?"}, image]},
            assistant("a cat"),
        )
    )

    assert reason.startswith("messages[0].content[1] is a 'image_url' part")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "empty content"),
        (None, "null content"),
        ([], "empty list of content parts"),
        ([{"type": "text", "text": ""}], "non-empty string `text`"),
    ],
)
def test_empty_content_is_refused(content: Any, expected: str) -> None:
    assert expected in refused(chat(user("q"), {"role": "assistant", "content": content}))


def test_a_conversation_ending_with_the_users_turn_is_refused() -> None:
    reason = refused(chat(user("q"), assistant("a"), user("and then?")))

    assert reason.startswith("the conversation ends with the user's turn")


@pytest.mark.parametrize(
    ("example", "expected"),
    [
        (chat(user("a"), user("b"), assistant("c")), "messages[1]: two user turns in a row"),
        (chat(user("a"), assistant("b"), assistant("c")), "messages[2]: two assistant turns"),
        (chat(system("s"), assistant("hi"), user("q"), assistant("a")), "opens with an assistant"),
        (chat(system("only a prompt")), "no user or assistant message"),
    ],
)
def test_turns_must_alternate_from_the_user_to_the_model(
    example: dict[str, Any], expected: str
) -> None:
    assert expected in refused(example)


def test_a_name_on_a_message_is_refused_because_gemini_would_lose_it() -> None:
    reason = refused(chat({"role": "user", "content": "q", "name": "alice"}, assistant("a")))

    assert reason.startswith("messages[0] has a `name`")


@pytest.mark.parametrize(
    ("example", "expected"),
    [
        (
            {
                "input": {"messages": [user("q")]},
                "preferred_output": [assistant("a")],
                "non_preferred_output": [assistant("b")],
            },
            "preference (DPO)",
        ),
        ({"text": "hello"}, "no `messages` key"),
        (chat(user("q"), {"role": "critic", "content": "x"}), "role 'critic'"),
        (chat(user("q"), {"role": "assistant", "content": "a", "extra": 1}), "unrecognized"),
    ],
)
def test_other_shapes_are_refused_with_a_reason(example: dict[str, Any], expected: str) -> None:
    assert expected in refused(example)


def test_unicode_text_is_kept_exactly() -> None:
    text = "Grüße, 世界! 🚀 — ¿qué tal? \u200d"
    converted = gemini_example(chat(system("Réponds en français."), user(text), assistant(text)))

    assert converted["contents"][1]["parts"][0]["text"] == text
    assert converted["systemInstruction"]["parts"][0]["text"] == "Réponds en français."


# ---------------------------------------------------------------- a dataset


def test_convert_dataset_writes_one_gemini_line_per_example(tmp_path: Path) -> None:
    source = write_lines(
        tmp_path / "train.jsonl",
        json.dumps(chat(system("Be kind."), user("hi"), assistant("hello"))),
        json.dumps(chat(user("Straße?"), assistant("Ja — 街道 🚗")), ensure_ascii=False),
    )
    destination = tmp_path / "out" / "train.gemini.jsonl"
    destination.parent.mkdir()

    report = convert_dataset(source, destination)

    lines = destination.read_bytes().splitlines()
    assert report.examples == 2 and len(lines) == 2
    assert report.bytes_written == destination.stat().st_size
    assert json.loads(lines[0])["systemInstruction"] == {"parts": [{"text": "Be kind."}]}
    assert json.loads(lines[1])["contents"][1]["parts"][0]["text"] == "Ja — 街道 🚗"
    assert "Straße".encode() in lines[1]  # UTF-8, not \u escapes
    assert sorted(p.name for p in destination.parent.iterdir()) == ["train.gemini.jsonl"]


def test_the_report_hash_is_the_written_files_sha256(tmp_path: Path) -> None:
    import hashlib

    source = write_lines(tmp_path / "train.jsonl", json.dumps(chat(user("q"), assistant("a"))))
    report = convert_dataset(source, tmp_path / "out.jsonl")

    assert report.sha256 == hashlib.sha256((tmp_path / "out.jsonl").read_bytes()).hexdigest()


def test_a_refused_line_is_named_by_file_and_1_based_line(tmp_path: Path) -> None:
    good = json.dumps(chat(user("q"), assistant("a")))
    source = write_lines(
        tmp_path / "train.jsonl",
        good,
        good,
        json.dumps(chat(user("q"), assistant("a", weight=0))),
        good,
    )

    with pytest.raises(GeminiConversionError) as caught:
        convert_dataset(source, tmp_path / "out.jsonl")

    assert caught.value.line == 3
    assert str(caught.value).startswith("train.jsonl line 3: messages[1] has weight 0")


def test_a_refusal_leaves_no_destination_and_no_partial_file(tmp_path: Path) -> None:
    source = write_lines(
        tmp_path / "train.jsonl",
        json.dumps(chat(user("q"), assistant("a"))),
        json.dumps(chat(user("q"), assistant("a"), user("unanswered"))),
    )
    out = tmp_path / "out"
    out.mkdir()

    with pytest.raises(GeminiConversionError):
        convert_dataset(source, out / "train.gemini.jsonl")

    assert list(out.iterdir()) == []


def test_a_refusal_keeps_an_earlier_conversion_intact(tmp_path: Path) -> None:
    destination = tmp_path / "train.gemini.jsonl"
    destination.write_text("earlier\n")
    source = write_lines(tmp_path / "train.jsonl", json.dumps(chat(user("q"), user("q"))))

    with pytest.raises(GeminiConversionError):
        convert_dataset(source, destination)

    assert destination.read_text() == "earlier\n"


def test_blank_lines_are_refused_as_tunefleets_validator_does(tmp_path: Path) -> None:
    good = json.dumps(chat(user("q"), assistant("a")))
    source = tmp_path / "train.jsonl"
    source.write_text(f"{good}\n   \n{good}\n")

    with pytest.raises(GeminiConversionError, match=r"^train\.jsonl line 2: empty line"):
        convert_dataset(source, tmp_path / "out.jsonl")


def test_a_bom_crlf_and_a_missing_final_newline_are_read_as_the_validator_reads_them(
    tmp_path: Path,
) -> None:
    good = json.dumps(chat(user("q"), assistant("a"))).encode()
    source = tmp_path / "train.jsonl"
    source.write_bytes(b"\xef\xbb\xbf" + good + b"\r\n" + good)

    assert convert_dataset(source, tmp_path / "out.jsonl").examples == 2


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "line 0: the file holds no examples"),
        (b'{"messages": [\n', "line 1: invalid JSON"),
        (b"[1, 2]\n", "line 1: expected a JSON object, got an array"),
        (b'{"messages": "\xff"}\n', "line 1: invalid UTF-8 at byte 15"),
    ],
)
def test_unreadable_lines_and_empty_files_are_refused(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    source = tmp_path / "train.jsonl"
    source.write_bytes(content)

    with pytest.raises(GeminiConversionError, match=expected):
        convert_dataset(source, tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()


def test_dataset_limits_refuse_what_the_service_would(tmp_path: Path) -> None:
    good = json.dumps(chat(user("q"), assistant("a")))
    source = write_lines(tmp_path / "valid.jsonl", *[good] * 3)

    with pytest.raises(GeminiConversionError, match="line 3: more than 2 examples"):
        convert_dataset(source, tmp_path / "out.jsonl", max_examples=2)
    with pytest.raises(GeminiConversionError, match="line 1: the converted file passes 10 bytes"):
        convert_dataset(source, tmp_path / "out.jsonl", max_bytes=10)
    assert convert_dataset(source, tmp_path / "out.jsonl", max_examples=MAX_VALIDATION_EXAMPLES)
    with pytest.raises(GeminiConversionError, match="line 1: the line is over 5 bytes"):
        convert_dataset(source, tmp_path / "out.jsonl", max_line_bytes=5)


def test_a_missing_source_or_destination_folder_is_an_input_file_error(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "train.jsonl", json.dumps(chat(user("q"), assistant("a"))))

    with pytest.raises(InputFileError):
        convert_dataset(tmp_path / "missing.jsonl", tmp_path / "out.jsonl")
    with pytest.raises(InputFileError, match="cannot write"):
        convert_dataset(source, tmp_path / "no-such-folder" / "out.jsonl")


# ---------------------------------------------------------------- invoking a tuned model


def test_gemini_request_maps_messages_like_training_and_sets_generation_config() -> None:
    body = gemini_request([system("Be brief."), user("2+2?")], max_tokens=64, temperature=0.0)

    assert body == {
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [{"role": "user", "parts": [{"text": "2+2?"}]}],
        "generationConfig": {"maxOutputTokens": 64, "temperature": 0.0},
    }
    trained = gemini_example(chat(system("Be brief."), user("2+2?"), assistant("4")))
    assert body["contents"] == trained["contents"][:1]


def test_gemini_request_refuses_what_training_refuses_and_a_trailing_model_turn() -> None:
    with pytest.raises(GeminiConversionError, match="ends with the assistant's turn"):
        gemini_request([user("q"), assistant("a")], max_tokens=8, temperature=0)
    with pytest.raises(GeminiConversionError, match="has a `name`"):
        gemini_request([{"role": "user", "content": "q", "name": "bob"}], 8, 0)
    with pytest.raises(ValueError, match="max_tokens"):
        gemini_request([user("q")], max_tokens=0, temperature=0)
    with pytest.raises(ValueError, match="temperature"):
        gemini_request([user("q")], max_tokens=8, temperature=2.5)


def test_round_trip_request_and_reply() -> None:
    request = gemini_request([user("Say hi")], max_tokens=16, temperature=0.2)
    response = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "thinking...", "thought": True},
                        {"text": "Hi"},
                        {"text": " there 👋"},
                    ],
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4, "totalTokenCount": 7},
    }

    reply = gemini_reply(json.dumps(response))

    assert request["contents"][-1]["role"] == "user"
    assert reply.text == "Hi there 👋"
    assert reply.finish_reason == "stop"
    assert (reply.prompt_tokens, reply.completion_tokens) == (3, 4)


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("MAX_TOKENS", "length"),
        ("SAFETY", "safety"),
        ("FINISH_REASON_UNSPECIFIED", None),
        (None, None),
    ],
)
def test_finish_reasons_read_as_openais(reason: str | None, expected: str | None) -> None:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": "x"}]}}
    if reason is not None:
        candidate["finishReason"] = reason

    assert gemini_reply({"candidates": [candidate]}).finish_reason == expected


def test_a_withheld_answer_is_empty_text_with_its_reason() -> None:
    reply = gemini_reply({"candidates": [{"finishReason": "SAFETY"}]})

    assert (reply.text, reply.finish_reason, reply.prompt_tokens) == ("", "safety", None)


def test_a_blocked_prompt_names_the_block_reason() -> None:
    response = {
        "promptFeedback": {"blockReason": "SAFETY", "blockReasonMessage": "harassment"},
        "usageMetadata": {"promptTokenCount": 9},
    }

    with pytest.raises(ProviderError, match=r"blocked \(SAFETY: harassment\)") as caught:
        gemini_reply(response, provider="vertex")
    assert caught.value.code == "blocked"


@pytest.mark.parametrize("response", [b"<html>502</html>", {"candidates": []}, {"error": {}}])
def test_what_is_not_a_response_is_a_bad_reply(response: Any) -> None:
    with pytest.raises(ProviderError, match="not a generateContent response") as caught:
        gemini_reply(response)
    assert caught.value.code == "bad_reply"

"""Offline tokenizer files: verified against tiktoken's own hashes, never downloaded."""

from __future__ import annotations

import hashlib
import re
import socket
from pathlib import Path

import pytest

from tunefleet.data import tokens
from tunefleet.errors import TokenizerError


def test_pinned_urls_and_hashes_match_the_installed_tiktoken() -> None:
    import tiktoken_ext.openai_public as public

    source = Path(public.__file__).read_text()
    for name, (url, expected) in tokens.BPE_FILES.items():
        block = re.search(rf"def {name}\(\):(.*?)\n\n", source, re.S)
        assert block is not None, name
        assert url in block.group(1) and expected in block.group(1), name


def test_encodings_load_with_the_network_blocked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TUNEFLEET_CACHE_DIR", str(tmp_path))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    import tiktoken.registry

    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})  # force a fresh load
    for name in tokens.BPE_FILES:
        encoding = tokens.get_encoding(name)
        assert encoding.decode(encoding.encode_ordinary("Grüße, 世界!")) == "Grüße, 世界!"


def test_a_tampered_cache_file_is_replaced(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TUNEFLEET_CACHE_DIR", str(tmp_path))
    url, expected = tokens.BPE_FILES["cl100k_base"]
    cached = tmp_path / "tiktoken" / hashlib.sha1(url.encode()).hexdigest()
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"tampered")
    tokens._seed_cache("cl100k_base")
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == expected


def test_data_that_fails_its_hash_is_refused() -> None:
    with pytest.raises(TokenizerError, match="does not match"):
        tokens._checked("cl100k_base", b"not the real file", tokens.BPE_FILES["cl100k_base"][1])


@pytest.mark.parametrize(
    ("model", "encoding", "exact"),
    [
        ("gpt-4o-mini-2024-07-18", "o200k_base", True),
        ("ft:gpt-4o-mini-2024-07-18:acme::abc123", "o200k_base", True),
        ("gpt-3.5-turbo-0125", "cl100k_base", True),
        ("meta-llama/Llama-3.1-8B", "cl100k_base", False),
    ],
)
def test_encoding_choice(model: str, encoding: str, exact: bool) -> None:
    assert tokens.choose_encoding(model) == tokens.EncodingChoice(encoding, exact)


def test_core_keeps_no_providers_context_table() -> None:
    # Training contexts are the providers' to say (ContextLimits); core has a default only.
    assert tokens.DEFAULT_CONTEXT_LIMIT == 4096
    assert not hasattr(tokens, "TRAINING_CONTEXT")


HARD_TEXTS = [
    "",
    " ",
    "hello world",
    "<|endoftext|> is just text here",
    "Grüße aus München — naïve café",
    "привет, как дела? ЗАГЛАВНЫЕ буквы",
    "こんにちは世界、東京タワー",
    "مرحبا بالعالم",
    "🙂🙃👩‍👩‍👧‍👦 emoji sequences",
    "a" * 5000,
    " \n\n\t  mixed   whitespace \r\n",
    "12345678901234567890 3.14159 1,000,000",
    "def f(x):\n    return x ** 2  # code",
    "'s 're 've 'll 'd 'm 't contractions DON'T",
]


@pytest.mark.parametrize("name", sorted(tokens.BPE_FILES))
def test_native_counter_agrees_with_tiktoken(name: str, toy_dataset: Path) -> None:
    if tokens.token_backend(name) != "bpe-openai":
        pytest.skip(
            "bpe-openai's native tokenizer is not verified on this platform; tiktoken counts alone"
        )
    native, backend = tokens.token_counter(name)
    assert backend == "bpe-openai"
    encoding = tokens.get_encoding(name)
    texts = [*HARD_TEXTS, *toy_dataset.read_text().splitlines()]
    assert [native(t) for t in texts] == [len(encoding.encode_ordinary(t)) for t in texts]


def test_tokenizer_can_be_forced_to_tiktoken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEFLEET_TOKENIZER", "tiktoken")
    count, backend = tokens.token_counter("cl100k_base")
    assert backend == "tiktoken"
    assert count("hello world") == 2


def test_an_unpinned_native_binary_is_not_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_binary = tmp_path / "_bindings.abi3.so"
    fake_binary.write_bytes(b"not the pinned binary")
    monkeypatch.setenv("TUNEFLEET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(tokens, "_native_binary", lambda: fake_binary)
    assert tokens.token_backend("cl100k_base") == "tiktoken"
    assert tokens.token_counter("cl100k_base")[1] == "tiktoken"

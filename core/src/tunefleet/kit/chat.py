"""Chat with a served model in OpenAI's terms, which every serving stack here speaks
(OpenAI and Azure OpenAI, the TGI Messages API on SageMaker, vLLM, the local server)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tunefleet.errors import ProviderError
from tunefleet.provider import ChatReply, ChatRequest

__all__ = ["chat_body", "chat_reply"]


def chat_body(request: ChatRequest, model: str | None = None) -> dict[str, Any]:
    """The ``/v1/chat/completions`` request body for ``request`` (``model`` where the
    server needs one)."""
    body: dict[str, Any] = {
        "messages": request.messages,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
    }
    if model is not None:
        body = {"model": model, **body}
    return body


def chat_reply(provider: str, answer: bytes | str | Mapping[str, Any], where: str) -> ChatReply:
    """The reply in a chat completion (raw JSON or parsed); ProviderError saying what
    ``where`` answered instead when it is not one."""
    try:
        body = json.loads(answer) if isinstance(answer, bytes | str) else answer
        choice = body["choices"][0]
        usage = body.get("usage") or {}
        return ChatReply(
            text=choice["message"]["content"] or "",
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
        )
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        shown = answer[:200] if isinstance(answer, bytes | str) else str(answer)[:200]
        raise ProviderError(
            provider, f"{where} answered {shown!r}, not a chat completion", code="bad_reply"
        ) from None

"""The HTTP call to a local endpoint (``tunefleet_local._server``), and its one
translation point from urllib's and the OS's errors to tunefleet's.

The server speaks OpenAI's chat API, so the request and the reply are the provider kit's
(:mod:`tunefleet.kit.chat`), and its errors carry OpenAI's body,
``{"error": {"message", "type", "param", "code"}}``. How failures translate:

=====================================  =================================================
what happened                          raised (``code``; ``status`` for HTTP errors)
=====================================  =================================================
HTTP 404 (``model_not_found``)         ProviderNotFoundError (the body's code)
HTTP 429, 5xx                          TransientProviderError (the body's code)
other HTTP errors (400 refusals)       ProviderError (the body's code)
connection refused                     ProviderNotFoundError ``endpoint_not_running``:
                                       nothing listens on the port any more
timed out                              TransientProviderError ``timeout``
connection dropped, garbled answer     TransientProviderError ``connection_lost``
any other OS error                     ProviderError (the errno's name)
=====================================  =================================================

The body's ``code`` is used where the server sets one, else its ``type``: OpenAI leaves
``code`` null for plain validation errors, and the type still tells a refusal
(``invalid_request_error``) from a failure (``server_error``).
"""

from __future__ import annotations

import errno
import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tunefleet.errors import ProviderError, ProviderNotFoundError, TransientProviderError
from tunefleet.kit.chat import chat_body, chat_reply
from tunefleet.provider import ChatReply, ChatRequest, EndpointRef

__all__ = ["LOOPBACK", "TIMEOUT", "chat", "translated"]

LOOPBACK = "http://127.0.0.1:"
"""Every local endpoint's URL starts so: the server binds the loopback interface only."""
TIMEOUT = 300.0
"""Seconds to wait for an answer: a model on a CPU generates slowly."""


def chat(provider: str, endpoint: EndpointRef, request: ChatRequest) -> ChatReply:
    """Ask the model behind ``endpoint`` (a chat completion) and return its reply."""
    url = endpoint.url or ""
    if not url.startswith(LOOPBACK):
        raise ProviderError(
            provider, f"{url or endpoint.name} is not a local endpoint", code="not_local"
        )
    where = f"endpoint {endpoint.name}"
    http_request = urllib.request.Request(  # noqa: S310 - a loopback http URL, checked above
        f"{url}/chat/completions",
        data=json.dumps(chat_body(request, model=endpoint.name)).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with (
        translated(provider, where),
        urllib.request.urlopen(  # noqa: S310
            http_request, timeout=TIMEOUT
        ) as response,
    ):
        answer: bytes = response.read()
    return chat_reply(provider, answer, where)


@contextmanager
def translated(provider: str, where: str) -> Iterator[None]:
    """Run HTTP calls to ``where``, raising tunefleet's errors for urllib's and the OS's
    (see the module docstring for the table)."""
    try:
        yield
    except urllib.error.HTTPError as exc:  # before OSError: an HTTPError is a URLError
        raise _http_error(provider, where, exc) from None
    except urllib.error.URLError as exc:  # the connection failed; the reason says how
        reason = exc.reason if isinstance(exc.reason, OSError) else exc
        raise _os_error(provider, where, reason) from None
    except (OSError, http.client.HTTPException) as exc:
        raise _os_error(provider, where, exc) from None


def _http_error(provider: str, where: str, exc: urllib.error.HTTPError) -> ProviderError:
    """An HTTP error answer as the error its status and OpenAI-style body call for."""
    with exc:  # an HTTPError holds the response open
        error = _error_body(exc.read())
    message = str(error.get("message") or exc.reason)
    code = error.get("code") or error.get("type")
    text = f"{where}: {message}"
    code = str(code) if code is not None else None
    if exc.code == 404:
        return ProviderNotFoundError(provider, text, code=code, status=exc.code)
    if exc.code == 429 or exc.code >= 500:
        return TransientProviderError(provider, text, code=code, status=exc.code)
    return ProviderError(provider, text, code=code, status=exc.code)


def _error_body(raw: bytes) -> dict[str, Any]:
    """The ``error`` object of an OpenAI-style error body; empty when it is not one."""
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _os_error(provider: str, where: str, exc: BaseException) -> ProviderError:
    """A failed connection as the error its kind calls for."""
    if isinstance(exc, ConnectionRefusedError):
        return ProviderNotFoundError(
            provider,
            f"{where} does not answer (connection refused): its server is not running; "
            "deploy it again",
            code="endpoint_not_running",
        )
    if isinstance(exc, TimeoutError):
        return TransientProviderError(
            provider, f"{where} did not answer in {TIMEOUT:.0f}s", code="timeout"
        )
    if isinstance(exc, ConnectionError | http.client.HTTPException):
        return TransientProviderError(
            provider, f"{where} dropped the connection ({exc!r})", code="connection_lost"
        )
    number = exc.errno if isinstance(exc, OSError) else None
    code = errno.errorcode.get(number or 0, "connection_failed")
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
    return ProviderError(provider, f"{where} does not answer ({detail})", code=code)

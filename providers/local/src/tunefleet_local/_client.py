"""The HTTP calls to a local endpoint (``tunefleet_local._server``), and their one
translation point from urllib's and the OS's errors to tunefleet's.

The server speaks OpenAI's chat API, so the request and the reply are the provider kit's
(:mod:`tunefleet.kit.chat`), and its errors carry OpenAI's body,
``{"error": {"message", "type", "param", "code"}}``. A chat request may name one of the
versions the endpoint serves in the :data:`VERSION_HEADER` header, and every answer names
the version that answered in the same header; ``GET /versions`` (beside ``/v1``) reports
the versions the server has loaded, with their request and error counts. How failures
translate:

=====================================  =================================================
what happened                          raised (``code``; ``status`` for HTTP errors)
=====================================  =================================================
HTTP 404 (``model_not_found``,        ProviderNotFoundError (the body's code)
``version_not_found``)
HTTP 429, 5xx (``generation_failed``,  TransientProviderError (the body's code)
``version_not_loaded``)
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

__all__ = [
    "LOOPBACK",
    "STATUS_TIMEOUT",
    "TIMEOUT",
    "VERSION_HEADER",
    "chat",
    "translated",
    "versions",
]

LOOPBACK = "http://127.0.0.1:"
"""Every local endpoint's URL starts so: the server binds the loopback interface only."""
TIMEOUT = 300.0
"""Seconds to wait for an answer: a model on a CPU generates slowly."""
STATUS_TIMEOUT = 10.0
"""Seconds to wait for ``GET /versions``: the server answers it from memory, beside
requests that generate."""
VERSION_HEADER = "X-Tunefleet-Version"
"""Names a version: in a chat request, the version to ask (whatever the weights); in every
answer a version gave, the version that answered."""


def chat(
    provider: str, endpoint: EndpointRef, request: ChatRequest, version: str | None = None
) -> ChatReply:
    """Ask the model behind ``endpoint`` (a chat completion) and return its reply: the
    version the endpoint's weights pick, or ``version`` when given."""
    url = _url(provider, endpoint)
    where = f"endpoint {endpoint.name}" + (f" version {version}" if version else "")
    headers = {"Content-Type": "application/json"}
    if version is not None:
        headers[VERSION_HEADER] = version
    http_request = urllib.request.Request(  # noqa: S310 - a loopback http URL, checked above
        f"{url}/chat/completions",
        data=json.dumps(chat_body(request, model=endpoint.name)).encode(),
        headers=headers,
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


def versions(provider: str, endpoint: EndpointRef) -> dict[str, Any]:
    """What the endpoint's server reports on ``GET /versions``: the table revision it has
    applied and, per version, its state and counts (see :mod:`tunefleet_local._server`)."""
    url = _url(provider, endpoint).removesuffix("/v1")
    where = f"endpoint {endpoint.name}"
    with (
        translated(provider, where, STATUS_TIMEOUT),
        urllib.request.urlopen(  # noqa: S310 - a loopback http URL, checked above
            f"{url}/versions", timeout=STATUS_TIMEOUT
        ) as response,
    ):
        answer: bytes = response.read()
    try:
        report = json.loads(answer)
        if isinstance(report, dict) and isinstance(report.get("versions"), dict):
            return report
    except ValueError:
        pass
    raise ProviderError(
        provider, f"{where} answered {answer[:200]!r}, not its versions", code="bad_reply"
    )


def _url(provider: str, endpoint: EndpointRef) -> str:
    """The endpoint's ``/v1`` URL; ProviderError ``not_local`` for one elsewhere."""
    url = endpoint.url or ""
    if not url.startswith(LOOPBACK):
        raise ProviderError(
            provider, f"{url or endpoint.name} is not a local endpoint", code="not_local"
        )
    return url


@contextmanager
def translated(provider: str, where: str, timeout: float | None = None) -> Iterator[None]:
    """Run HTTP calls to ``where``, raising tunefleet's errors for urllib's and the OS's
    (see the module docstring for the table); ``timeout`` is the one they were given
    (default :data:`TIMEOUT`), for the message."""
    try:
        yield
    except urllib.error.HTTPError as exc:  # before OSError: an HTTPError is a URLError
        raise _http_error(provider, where, exc) from None
    except urllib.error.URLError as exc:  # the connection failed; the reason says how
        reason = exc.reason if isinstance(exc.reason, OSError) else exc
        raise _os_error(provider, where, reason, timeout) from None
    except (OSError, http.client.HTTPException) as exc:
        raise _os_error(provider, where, exc, timeout) from None


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


def _os_error(
    provider: str, where: str, exc: BaseException, timeout: float | None
) -> ProviderError:
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
            provider,
            f"{where} did not answer in {TIMEOUT if timeout is None else timeout:.0f}s",
            code="timeout",
        )
    if isinstance(exc, ConnectionError | http.client.HTTPException):
        return TransientProviderError(
            provider, f"{where} dropped the connection ({exc!r})", code="connection_lost"
        )
    number = exc.errno if isinstance(exc, OSError) else None
    code = errno.errorcode.get(number or 0, "connection_failed")
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
    return ProviderError(provider, f"{where} does not answer ({detail})", code=code)

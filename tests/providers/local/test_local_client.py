"""Invoking a local endpoint: the request sent, and every failure as a tunefleet error with
the server's code and status (a stub server stands in for the model)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from tunefleet.errors import ProviderError, ProviderNotFoundError, TransientProviderError
from tunefleet.provider import ChatRequest, EndpointRef
from tunefleet_local import _client
from tunefleet_local.provider import LocalProvider


def _error(message: str, kind: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Hello."}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6},
}
# What the stub answers, by the model a request names: status and body.
REPLIES: dict[str, tuple[int, bytes]] = {
    "ok": (200, json.dumps(COMPLETION).encode()),
    "refused": (
        400,
        json.dumps(
            _error("streaming is not supported", "invalid_request_error", "unsupported_parameter")
        ).encode(),
    ),
    "invalid": (
        400,
        json.dumps(_error("messages: field required", "invalid_request_error", None)).encode(),
    ),
    "missing": (
        404,
        json.dumps(_error("no such model", "invalid_request_error", "model_not_found")).encode(),
    ),
    "broken": (
        500,
        json.dumps(_error("generation failed", "server_error", "generation_failed")).encode(),
    ),
    "proxy": (502, b"<html>bad gateway</html>"),
    "garbage": (200, b'{"nope": 1}'),
}


class _Stub(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    received: ClassVar[list[dict[str, Any]]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append({"path": self.path, **body})
        if body["model"] == "slow":
            time.sleep(1.0)
        if body["model"] in {"slow", "drop"}:
            self.close_connection = True  # no answer at all
            return
        status, payload = REPLIES[body["model"]]
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture(scope="module")
def stub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


ASK = ChatRequest(messages=[{"role": "user", "content": "Hi"}], max_tokens=5)


def invoke(url: str, model: str) -> Any:
    endpoint = EndpointRef(provider="local", name=model, url=url)
    return LocalProvider().invoke(endpoint, ASK)


def test_a_chat_completion_is_asked_for_and_read(stub: str) -> None:
    reply = invoke(stub, "ok")
    assert (reply.text, reply.finish_reason) == ("Hello.", "stop")
    assert (reply.prompt_tokens, reply.completion_tokens) == (4, 2)
    assert _Stub.received[-1] == {
        "path": "/v1/chat/completions",
        "model": "ok",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 5,
        "temperature": 0.0,
    }


@pytest.mark.parametrize(
    ("model", "kind", "code", "status"),
    [
        ("refused", ProviderError, "unsupported_parameter", 400),
        ("invalid", ProviderError, "invalid_request_error", 400),
        ("missing", ProviderNotFoundError, "model_not_found", 404),
        ("broken", TransientProviderError, "generation_failed", 500),
        ("proxy", TransientProviderError, None, 502),
        ("garbage", ProviderError, "bad_reply", None),
    ],
)
def test_errors_carry_the_servers_code_and_status(
    stub: str, model: str, kind: type[ProviderError], code: str | None, status: int | None
) -> None:
    with pytest.raises(ProviderError) as caught:
        invoke(stub, model)
    assert type(caught.value) is kind
    assert (caught.value.code, caught.value.status) == (code, status)
    assert caught.value.provider == "local"


def test_a_dropped_connection_is_transient(stub: str) -> None:
    with pytest.raises(TransientProviderError) as caught:
        invoke(stub, "drop")
    assert caught.value.code == "connection_lost"


def test_no_answer_in_time_is_transient(stub: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_client, "TIMEOUT", 0.2)
    with pytest.raises(TransientProviderError) as caught:
        invoke(stub, "slow")
    assert caught.value.code == "timeout"


def test_a_server_that_is_not_running_is_not_found() -> None:
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ProviderNotFoundError) as caught:
        invoke(f"http://127.0.0.1:{port}/v1", "ok")
    assert caught.value.code == "endpoint_not_running"


@pytest.mark.parametrize("url", ["https://example.com/v1", None])
def test_only_loopback_endpoints_are_asked(url: str | None) -> None:
    with pytest.raises(ProviderError) as caught:
        LocalProvider().invoke(EndpointRef(provider="local", name="elsewhere", url=url), ASK)
    assert caught.value.code == "not_local"

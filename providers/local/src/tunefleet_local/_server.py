"""``python -m tunefleet_local._server``: a trained model behind an OpenAI-compatible API.

It serves ``POST /v1/chat/completions``, ``GET /v1/models`` and ``GET /health`` on the
loopback interface, so the OpenAI SDK (``base_url="http://127.0.0.1:PORT/v1"``) and any
tool built for it can ask the model. Requests are checked with pydantic; what the local
model cannot do (streaming, several choices, tools, logprobs) is refused with OpenAI's error
shape and status 400 instead of being silently ignored. Unknown parameters are ignored, as
the service does for parameters it does not use.

Once the model is loaded and the port bound, the server writes ``--ready-file`` (JSON with
the port and URL), which is how ``deploy`` knows the endpoint answers. It is started by
``deploy`` (:mod:`tunefleet_local._serving`) and imports the training stack, so nothing
else in the provider imports it.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tunefleet.kit.files import write_json
from tunefleet_trainer.errors import TrainerError
from tunefleet_trainer.inference import ChatModel, load_trained

MAX_BODY = 4 << 20


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(BaseModel):
    """The part of OpenAI's CreateChatCompletionRequest the local model honours."""

    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[_Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    seed: int | None = None
    n: int = Field(default=1, ge=1)
    stream: bool = False
    tools: list[Any] | None = None
    logprobs: bool = False


_UNSUPPORTED = {
    "stream": "streaming is not supported by the local endpoint",
    "n": "the local endpoint returns one choice (n must be 1)",
    "tools": "the local endpoint does not call tools",
    "logprobs": "the local endpoint does not return logprobs",
}


def _text(content: str | list[dict[str, Any]] | None) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if p.get("type") == "text")
    return content or ""


class _Handler(BaseHTTPRequestHandler):
    model: ClassVar[ChatModel]
    server_version = "tunefleet-local"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        kind = "invalid_request_error" if status < 500 else "server_error"
        self._send(
            status, {"error": {"message": message, "type": kind, "param": param, "code": code}}
        )

    def do_GET(self) -> None:
        if self.path == "/health":
            self._send(200, {"status": "ok"})
        elif self.path == "/v1/models":
            self._send(200, {"object": "list", "data": [self._model_object()]})
        elif self.path == f"/v1/models/{self.model.name}":
            self._send(200, self._model_object())
        else:
            self._error(404, f"no route GET {self.path}")

    def _model_object(self) -> dict[str, Any]:
        return {
            "id": self.model.name,
            "object": "model",
            "created": 0,
            "owned_by": "tunefleet-local",
        }

    def do_POST(self) -> None:
        if self.path != "/v1/chat/completions":
            self._error(404, f"no route POST {self.path}")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True  # the unread body would be taken for a request
            self._error(413, f"request body over {MAX_BODY} bytes", code="request_too_large")
            return
        try:
            request = ChatCompletionRequest.model_validate_json(self.rfile.read(length))
        except ValidationError as exc:
            first = exc.errors()[0]
            param = ".".join(str(p) for p in first["loc"])
            self._error(400, f"{param}: {first['msg']}", param=param)
            return
        refused = {
            "stream": request.stream,
            "n": request.n != 1,
            "tools": bool(request.tools),
            "logprobs": request.logprobs,
        }
        for field, reason in _UNSUPPORTED.items():
            if refused[field]:
                self._error(400, reason, param=field, code="unsupported_parameter")
                return
        if request.model != self.model.name:
            self._error(
                404,
                f"The model `{request.model}` does not exist; this endpoint serves "
                f"`{self.model.name}`",
                param="model",
                code="model_not_found",
            )
            return
        messages = [{"role": m.role, "content": _text(m.content)} for m in request.messages]
        try:
            completion = self.model.complete(
                messages,
                max_tokens=request.max_completion_tokens or request.max_tokens or 256,
                temperature=request.temperature,
                top_p=request.top_p,
                seed=request.seed,
            )
        except Exception as exc:  # answer in OpenAI's shape rather than drop the connection
            self.log_message("generation failed: %r", exc)
            self._error(500, f"generation failed: {type(exc).__name__}", code="generation_failed")
            return
        self._send(
            200,
            {
                "id": f"chatcmpl-{secrets.token_hex(12)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.model.name,
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": completion.text,
                            "refusal": None,
                            "annotations": [],
                        },
                        "logprobs": None,
                        "finish_reason": completion.finish_reason,
                    }
                ],
                "usage": {
                    "prompt_tokens": completion.prompt_tokens,
                    "completion_tokens": completion.completion_tokens,
                    "total_tokens": completion.prompt_tokens + completion.completion_tokens,
                },
            },
        )


def serve(model_dir: Path, name: str, port: int, ready_file: Path | None) -> None:
    """Load the model, bind 127.0.0.1:``port`` (0: any free port) and serve until killed."""
    model = load_trained(model_dir, name=name)
    handler = type("Handler", (_Handler,), {"model": model})
    with ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        bound = server.server_address[1]
        if ready_file is not None:
            write_json(ready_file, {"port": bound, "url": f"http://127.0.0.1:{bound}/v1"})
        print(f"serving {name} on http://127.0.0.1:{bound}/v1", flush=True)
        server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    """The command line; exit status 0 when stopped, 2 when the model or port is unusable."""
    parser = argparse.ArgumentParser(prog="python -m tunefleet_local._server")
    parser.add_argument("--model-dir", type=Path, required=True, help="a training run's output")
    parser.add_argument("--name", required=True, help="the model name requests must use")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-file", type=Path)
    args = parser.parse_args(argv)
    try:
        serve(args.model_dir, args.name, args.port, args.ready_file)
    except TrainerError as exc:  # the model cannot be loaded; deploy shows this line
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"error: cannot serve on port {args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

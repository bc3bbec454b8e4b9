"""``python -m tunefleet_local._server``: trained models behind an OpenAI-compatible API.

It serves ``POST /v1/chat/completions``, ``GET /v1/models`` and ``GET /health`` on the
loopback interface, so the OpenAI SDK (``base_url="http://127.0.0.1:PORT/v1"``) and any
tool built for it can ask the model. Requests are checked with pydantic; what the local
model cannot do (streaming, several choices, tools, logprobs) is refused with OpenAI's error
shape and status 400 instead of being silently ignored. Unknown parameters are ignored, as
the service does for parameters it does not use.

Versions. One server serves every version of its endpoint: each is a training output
directory, loaded in this process (so a canary holds two models in memory), and every chat
request goes to one of them:

- A request without the ``X-Tunefleet-Version`` header goes to a version picked by
  weight: smooth weighted round-robin (nginx's) over the loaded versions with a positive
  weight. It is deterministic and exact over every 100 consecutive requests (weights are
  percentages and add up to 100): a version at 10 answers 10 of each 100, not 10 on
  average. The count restarts whenever the weights change.
- A request with ``X-Tunefleet-Version: <label>`` goes to that version whatever its
  weight; an unknown label is a 404 ``version_not_found``, a version still loading (or that
  failed to load) a 503 ``version_not_loaded``, both in OpenAI's error shape.
- Every answer a version gave (a 500 included) names it in ``X-Tunefleet-Version``. The
  body's ``model`` stays the endpoint's name, the model the client asked for.

With ``--routes FILE`` the versions come from that JSON file (the endpoint's record, which
the provider replaces atomically; keys other than these are ignored)::

    {"revision": 3,
     "versions": {"primary": {"model_dir": "/.../output", "weight": 90, "added": 0},
                  "support-v2": {"model_dir": "/.../output", "weight": 10, "added": 2}}}

The server loads every version in it before it binds its port, then watches the file
(its inode, size and modification time, every :data:`POLL_INTERVAL` seconds). On a change
new weights apply at once, new versions load in a background thread while the others go on
answering, and versions no longer listed are dropped (their memory is freed once their last
request ends). A version is its ``(model_dir, added)``: a label whose entry changed is
loaded afresh. With ``--model-dir`` instead it serves that one model as version
``primary`` and watches nothing.

``GET /versions`` reports what the server serves: the table revision it has applied and,
per version, ``state`` (``loading``, ``loaded``, ``failed`` with ``error``), ``model_dir``,
``added``, ``weight`` and counts since the version was loaded: ``requests`` answered,
``routed`` (how many of them its weight brought), ``errors`` (answers with status 500: the
model failed to generate), and ``recent_requests`` / ``recent_errors`` over its last
:data:`RECENT` requests, from which the provider's alarms are computed.

Once the first table is loaded and the port bound, the server writes ``--ready-file``
(JSON with the port and URL), which is how ``deploy`` knows the endpoint answers. It is
started by ``deploy`` (:mod:`tunefleet_local._serving`) and imports the training stack, so
nothing else in the provider imports it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import secrets
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tunefleet.kit.files import write_json
from tunefleet_local._client import VERSION_HEADER
from tunefleet_trainer.errors import TrainerError
from tunefleet_trainer.inference import ChatModel, load_trained

__all__ = [
    "DEFAULT_VERSION",
    "POLL_INTERVAL",
    "RECENT",
    "Router",
    "Table",
    "main",
    "read_table",
    "serve",
]

MAX_BODY = 4 << 20
DEFAULT_VERSION = "primary"
"""The version ``--model-dir`` serves (and the label ``deploy`` gives its model)."""
POLL_INTERVAL = 0.1
"""Seconds between looks at the ``--routes`` file."""
RECENT = 100
"""Requests per version that ``recent_requests`` and ``recent_errors`` count over."""


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


# --------------------------------------------------------------------------- versions


class _Entry(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    model_dir: str
    weight: int = Field(ge=0, le=100)
    added: int = Field(default=0, ge=0)


class Table(BaseModel):
    """The versions to serve: the ``--routes`` file's ``revision`` and ``versions``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    revision: int = Field(default=0, ge=0)
    versions: dict[str, _Entry] = Field(min_length=1)


def read_table(path: Path) -> Table:
    """The table in ``path``; OSError when it cannot be read, ValueError when it is not one."""
    return Table.model_validate_json(path.read_bytes())


class RefusedError(Exception):
    """A request no version can take: its HTTP status, error code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(eq=False)
class _Version:
    label: str
    model_dir: str
    added: int
    weight: int
    state: Literal["loading", "loaded", "failed"] = "loading"
    model: ChatModel | None = None
    error: str | None = None
    requests: int = 0
    routed: int = 0
    errors: int = 0
    recent: deque[bool] = field(default_factory=lambda: deque(maxlen=RECENT))
    current: int = 0
    """The smooth weighted round-robin's running weight."""

    def report(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "model_dir": self.model_dir,
            "added": self.added,
            "weight": self.weight,
            "requests": self.requests,
            "routed": self.routed,
            "errors": self.errors,
            "recent_requests": len(self.recent),
            "recent_errors": sum(self.recent),
            "error": self.error,
        }


class Router:
    """The versions a server serves and the choice of one per request; thread-safe.

    :meth:`apply` makes the versions what a :class:`Table` says, :meth:`choose` picks the
    version that answers a request, :meth:`answered` counts how it went, :meth:`report`
    is ``GET /versions``.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._versions: dict[str, _Version] = {}
        self._revision = -1

    def apply(self, table: Table, *, wait: bool = False) -> None:
        """Serve what ``table`` lists: weights at once; new versions loaded here when
        ``wait`` (TrainerError when one cannot be), else in background threads; versions
        it no longer lists dropped."""
        new: list[_Version] = []
        with self._lock:
            for label, entry in table.versions.items():
                have = self._versions.get(label)
                if have is not None and (have.model_dir, have.added) == (
                    entry.model_dir,
                    entry.added,
                ):
                    have.weight = entry.weight
                    continue
                version = _Version(label, entry.model_dir, entry.added, entry.weight)
                self._versions[label] = version
                new.append(version)
            dropped = [label for label in self._versions if label not in table.versions]
            for label in dropped:
                del self._versions[label]
            for version in self._versions.values():
                version.current = 0
            self._revision = table.revision
        for label in dropped:
            print(f"version {label}: unloaded", flush=True)
        if dropped:
            gc.collect()  # a model's modules hold cycles; give its memory back now
        for version in new:
            if wait:
                self._load_version(version, strict=True)
            else:
                threading.Thread(
                    target=self._load_version,
                    args=(version,),
                    name=f"load {version.label}",
                    daemon=True,
                ).start()

    def _load_version(self, version: _Version, *, strict: bool = False) -> None:
        try:
            model = load_trained(Path(version.model_dir), name=self.name)
        except Exception as exc:
            error = str(exc) if isinstance(exc, TrainerError) else f"{type(exc).__name__}: {exc}"
            with self._lock:
                version.state, version.error = "failed", error
            print(f"version {version.label}: cannot load {version.model_dir}: {error}", flush=True)
            if strict:
                raise TrainerError(f"version {version.label}: {error}") from None
            return
        with self._lock:
            if self._versions.get(version.label) is not version:
                return  # dropped while it loaded
            version.model, version.state = model, "loaded"
        print(f"version {version.label}: loaded {version.model_dir}", flush=True)

    def choose(self, label: str | None) -> _Version:
        """The version that answers: ``label``, or else one picked by weight. RefusedError 404
        ``version_not_found`` for an unknown label, 503 ``version_not_loaded`` for one
        that cannot answer yet, 503 ``no_version_available`` when no version with traffic
        is loaded."""
        with self._lock:
            if label is not None:
                version = self._versions.get(label)
                if version is None:
                    served = ", ".join(f"`{v}`" for v in self._versions)
                    raise RefusedError(
                        404,
                        "version_not_found",
                        f"The version `{label}` does not exist; this endpoint serves {served}",
                    )
                if version.state != "loaded":
                    why = "is still loading" if version.state == "loading" else "failed to load"
                    raise RefusedError(503, "version_not_loaded", f"The version `{label}` {why}")
                return version
            ready = [v for v in self._versions.values() if v.state == "loaded" and v.weight > 0]
            if not ready:
                raise RefusedError(503, "no_version_available", "no version with traffic is loaded")
            for version in ready:
                version.current += version.weight
            chosen = max(ready, key=lambda v: v.current)  # the first of equals
            chosen.current -= sum(v.weight for v in ready)
            chosen.routed += 1
            return chosen

    def answered(self, version: _Version, *, failed: bool) -> None:
        """Count one answer of ``version``: ``failed`` when the model could not generate."""
        with self._lock:
            version.requests += 1
            version.errors += failed
            version.recent.append(failed)

    def report(self) -> dict[str, Any]:
        """``GET /versions``: the revision applied and each version's state and counts."""
        with self._lock:
            return {
                "revision": self._revision,
                "versions": {label: v.report() for label, v in self._versions.items()},
            }


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        found = path.stat()
    except OSError:
        return None
    return (found.st_ino, found.st_size, found.st_mtime_ns)


def _watch(router: Router, path: Path, seen: tuple[int, int, int] | None) -> None:
    """Apply ``path`` to ``router`` each time it changes (``seen``: as it was last read).
    A file that is gone or unreadable leaves the versions as they are."""
    while True:
        time.sleep(POLL_INTERVAL)
        stamp = _stamp(path)
        if stamp is None or stamp == seen:
            continue
        seen = stamp
        try:
            table = read_table(path)
        except (OSError, ValueError) as exc:
            print(f"cannot read the versions in {path}: {exc}", file=sys.stderr, flush=True)
            continue
        router.apply(table)


# --------------------------------------------------------------------------- HTTP


class _Handler(BaseHTTPRequestHandler):
    router: ClassVar[Router]
    server_version = "tunefleet-local"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def _send(self, status: int, body: dict[str, Any], version: str | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if version is not None:
            self.send_header(VERSION_HEADER, version)
        self.end_headers()
        self.wfile.write(data)

    def _error(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        version: str | None = None,
    ) -> None:
        kind = "invalid_request_error" if status < 500 else "server_error"
        self._send(
            status,
            {"error": {"message": message, "type": kind, "param": param, "code": code}},
            version,
        )

    def do_GET(self) -> None:
        name = self.router.name
        if self.path == "/health":
            self._send(200, {"status": "ok"})
        elif self.path == "/versions":
            self._send(200, self.router.report())
        elif self.path == "/v1/models":
            self._send(200, {"object": "list", "data": [self._model_object()]})
        elif self.path == f"/v1/models/{name}":
            self._send(200, self._model_object())
        else:
            self._error(404, f"no route GET {self.path}")

    def _model_object(self) -> dict[str, Any]:
        return {
            "id": self.router.name,
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
        for field_name, reason in _UNSUPPORTED.items():
            if refused[field_name]:
                self._error(400, reason, param=field_name, code="unsupported_parameter")
                return
        name = self.router.name
        if request.model != name:
            self._error(
                404,
                f"The model `{request.model}` does not exist; this endpoint serves `{name}`",
                param="model",
                code="model_not_found",
            )
            return
        try:
            version = self.router.choose(self.headers.get(VERSION_HEADER) or None)
        except RefusedError as refusal:
            self._error(refusal.status, refusal.message, code=refusal.code)
            return
        assert version.model is not None  # chosen versions are loaded
        messages = [{"role": m.role, "content": _text(m.content)} for m in request.messages]
        try:
            completion = version.model.complete(
                messages,
                max_tokens=request.max_completion_tokens or request.max_tokens or 256,
                temperature=request.temperature,
                top_p=request.top_p,
                seed=request.seed,
            )
        except Exception as exc:  # answer in OpenAI's shape rather than drop the connection
            self.router.answered(version, failed=True)
            self.log_message("version %s: generation failed: %r", version.label, exc)
            self._error(
                500,
                f"generation failed: {type(exc).__name__}",
                code="generation_failed",
                version=version.label,
            )
            return
        self.router.answered(version, failed=False)
        self._send(
            200,
            {
                "id": f"chatcmpl-{secrets.token_hex(12)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": name,
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
            version.label,
        )


def serve(
    name: str,
    port: int,
    ready_file: Path | None,
    *,
    routes: Path | None = None,
    model_dir: Path | None = None,
) -> None:
    """Load the versions (``routes``' table, or ``model_dir`` as ``primary``), bind
    127.0.0.1:``port`` (0: any free port) and serve until killed. TrainerError when a
    version cannot be loaded or ``routes`` holds no table."""
    router = Router(name)
    seen = None
    if routes is not None:
        seen = _stamp(routes)  # before the read: a change after it is seen by the watcher
        try:
            table = read_table(routes)
        except (OSError, ValueError) as exc:
            raise TrainerError(f"{routes}: no readable table of versions ({exc})") from None
    elif model_dir is not None:
        table = Table(versions={DEFAULT_VERSION: _Entry(model_dir=str(model_dir), weight=100)})
    else:
        raise TrainerError("give --routes or --model-dir")
    router.apply(table, wait=True)
    handler = type("Handler", (_Handler,), {"router": router})
    with ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        if routes is not None:
            threading.Thread(
                target=_watch, args=(router, routes, seen), name="routes", daemon=True
            ).start()
        bound = server.server_address[1]
        if ready_file is not None:
            write_json(ready_file, {"port": bound, "url": f"http://127.0.0.1:{bound}/v1"})
        print(f"serving {name} on http://127.0.0.1:{bound}/v1 (pid {os.getpid()})", flush=True)
        server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    """The command line; exit status 0 when stopped, 2 when a model or the port is unusable."""
    parser = argparse.ArgumentParser(prog="python -m tunefleet_local._server")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--routes", type=Path, help="a JSON table of the versions to serve, watched for changes"
    )
    source.add_argument(
        "--model-dir", type=Path, help=f"a training run's output, served as {DEFAULT_VERSION}"
    )
    parser.add_argument("--name", required=True, help="the model name requests must use")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-file", type=Path)
    args = parser.parse_args(argv)
    try:
        serve(args.name, args.port, args.ready_file, routes=args.routes, model_dir=args.model_dir)
    except TrainerError as exc:  # a model cannot be loaded; deploy shows this line
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"error: cannot serve on port {args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

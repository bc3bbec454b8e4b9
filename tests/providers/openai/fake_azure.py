"""A fake of Azure Resource Manager's Cognitive Services accounts and deployments, over TLS.

azure-core signs requests with a bearer token only over https, so this server speaks TLS
with a certificate from a throwaway CA (trustme); tests point ``REQUESTS_CA_BUNDLE`` at the
CA. It serves what the OpenAI provider's azure flavour asks of Resource Manager: the
account (for its location) and deployments of fine-tuned models, which it registers with
the fake OpenAI service so the data plane answers on them. Sign-in is a fake ``az`` on
``PATH`` (:func:`install_fake_az`), the credential DefaultAzureCredential falls back to.
"""

from __future__ import annotations

import json
import re
import ssl
import stat
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import trustme
from tests.providers.openai.fake_openai import FakeOpenAI

SUBSCRIPTION = "00000000-0000-4000-8000-000000000001"
RESOURCE_GROUP = "rg-fine-tuning"
RESOURCE = "acme-aoai"
TOKEN = "fake-entra-token"
_ACCOUNT = (
    r"/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/"
    r"Microsoft\.CognitiveServices/accounts/([^/]+)"
)


def install_fake_az(folder: Path) -> Path:
    """Write an ``az`` that hands out a token, as `az account get-access-token` does."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "az"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys, time\n"
        f"print(json.dumps({{'accessToken': {TOKEN!r}, 'expires_on': int(time.time()) + 3600,"
        " 'tokenType': 'Bearer', 'subscription': " + repr(SUBSCRIPTION) + "}))\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


class FakeAzureManagement:
    """The fake Resource Manager. ``start()`` it; ``url`` is its https root."""

    def __init__(self, data_plane: FakeOpenAI, location: str, folder: Path) -> None:
        self.data_plane = data_plane
        self.location = location
        self.requests: list[tuple[str, str]] = []
        self.deployments: dict[str, dict[str, Any]] = {}
        self.capacity_left: int | None = None
        """Deployment capacity the subscription's quota still allows (None: unlimited)."""
        self._ca = trustme.CA()
        self.ca_path = folder / "fake-arm-ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_path))
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    def start(self) -> FakeAzureManagement:
        fake = self

        class Handler(_Handler):
            service = fake

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any] | None]:
        url = urlsplit(target)
        with self._lock:
            self.requests.append((method, url.path))
            if headers.get("authorization") != f"Bearer {TOKEN}":
                return 401, _error("AuthenticationFailed", "The access token is invalid.")
            if "api-version=" not in url.query:
                return 400, _error("MissingApiVersionParameter", "api-version is required")
            account = re.fullmatch(_ACCOUNT, url.path)
            if account:
                return self._account(method, *account.groups())
            deployment = re.fullmatch(_ACCOUNT + r"/deployments/([^/]+)", url.path)
            if deployment:
                return self._deployment(method, url.path, deployment.group(4), body)
        return 404, _error("NotFound", f"no route for {method} {url.path}")

    def _account(
        self, method: str, subscription: str, group: str, name: str
    ) -> tuple[int, dict[str, Any] | None]:
        if (subscription, group, name) != (
            SUBSCRIPTION,
            RESOURCE_GROUP,
            RESOURCE,
        ) or method != "GET":
            return 404, _error("ResourceNotFound", f"account {name} not found")
        return 200, {
            "id": f"/subscriptions/{subscription}/resourceGroups/{group}/providers/"
            f"Microsoft.CognitiveServices/accounts/{name}",
            "name": name,
            "type": "Microsoft.CognitiveServices/accounts",
            "location": self.location,
            "kind": "OpenAI",
            "sku": {"name": "S0"},
            "properties": {
                "endpoint": f"https://{name}.openai.azure.com/",
                "provisioningState": "Succeeded",
            },
        }

    def _deployment(
        self, method: str, path: str, name: str, body: bytes
    ) -> tuple[int, dict[str, Any] | None]:
        if method == "PUT":
            request = json.loads(body)
            model = request["properties"]["model"]["name"]
            if model not in self.data_plane.models:
                return 400, _error("DeploymentModelNotSupported", f"model {model} not found")
            wanted = (request.get("sku") or {}).get("capacity", 1)
            if self.capacity_left is not None and wanted > self.capacity_left:
                # Resource Manager's answer, as reported from real deployments (e.g.
                # microsoft/PubSec-Info-Assistant#880): 400 with code InsufficientQuota.
                return 400, _error(
                    "InsufficientQuota",
                    f"This operation require {wanted} new capacity in quota Tokens Per Minute "
                    f"(thousands) - {model}, which is bigger than the current available "
                    f"capacity {self.capacity_left}.",
                )
            self.deployments[name] = {
                "id": path,
                "name": name,
                "type": "Microsoft.CognitiveServices/accounts/deployments",
                "sku": request.get("sku"),
                "tags": request.get("tags"),
                "properties": {**request["properties"], "provisioningState": "Creating"},
            }
            return 201, self.deployments[name]
        found = self.deployments.get(name)
        if found is None:
            return 404, _error("DeploymentNotFound", f"deployment {name} not found")
        if method == "GET":
            # Provisioned by the time anyone asks again.
            found["properties"]["provisioningState"] = "Succeeded"
            self.data_plane.deployments[name] = found["properties"]["model"]["name"]
            return 200, found
        if method == "DELETE":
            del self.deployments[name]
            self.data_plane.deployments.pop(name, None)
            return 200, None
        return 405, _error("MethodNotAllowed", method)


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class _Handler(BaseHTTPRequestHandler):
    service: FakeAzureManagement
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {key.lower(): value for key, value in self.headers.items()}
        status, answer = self.service.handle(self.command, self.path, headers, body)
        data = json.dumps(answer).encode() if answer is not None else b""
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Retry-After", "0")  # poll again at once: nothing here is slow
        self.send_header("Date", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = do_DELETE = _serve  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:
        pass

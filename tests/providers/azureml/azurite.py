"""Azurite, Microsoft's Azure Blob Storage emulator, run for tests over HTTPS with OAuth.

The Azure ML provider signs in with ``DefaultAzureCredential`` and reads and writes blobs.
To test that path as it runs against a real storage account, this module starts Azurite's
blob service (``node_modules/azurite/dist/src/blob/main.js``, npm ``azurite``
:data:`AZURITE_VERSION`) on 127.0.0.1 and writes a fake ``az`` whose tokens Azurite takes.
What each piece relies on, and where it is written down:

* HTTPS: ``--cert <pem> --key <pem>`` (Azurite README, "Certificate Configuration (HTTPS)"),
  with a server certificate issued by the caller's throwaway ``trustme.CA``. azure-core sends a
  bearer token over https only, and Azurite accepts one over https only
  (``dist/src/blob/authentication/BlobTokenAuthenticator.js``: "Authentication scheme Bearer
  is not allowed with HTTP").
* OAuth: ``--oauth basic`` (README, "OAuth Configuration": checks "issuer, audience, expiry"
  but "will NOT check token signature and permission"). ``BlobTokenAuthenticator.js``
  ``authenticateBasic`` decodes the JWT without verifying it (``jsonwebtoken.decode``), then
  requires ``nbf``, ``exp`` and ``iat`` to be present, ``nbf <= now <= exp``, ``iss`` to start
  with one of ``VALID_ISSUE_PREFIXES`` (``dist/src/common/utils/constants.js``: e.g.
  ``https://sts.windows.net/``; the tenant is not compared), and ``aud`` to match one of
  ``VALID_BLOB_AUDIENCES`` (``dist/src/blob/utils/constants.js``: ``https://storage.azure.com``
  with or without a trailing slash, the storage app id ``e406a681-f3d4-42a8-90b6-c2b029497af1``,
  or ``https://<this account>.blob.core.windows.net``). A failure is HTTP 403 with error code
  ``AuthenticationFailed`` (``dist/src/blob/errors/StorageErrorFactory.js``).
* Account and key: the emulator's well-known ``devstoreaccount1`` and its key (README,
  "Default Storage Account"; ``EMULATOR_ACCOUNT_KEY_STR`` in ``dist/src/blob/utils/constants.js``);
  IP-style URLs carry the account as the first path segment (README, "IP-style URL").
* ``--blobPort 0`` lets the OS pick a free port, which Azurite prints
  ("successfully listens on https://127.0.0.1:PORT", ``dist/src/blob/main.js``): no race
  between choosing a port and binding it.
* ``--skipApiVersionCheck``: azure-storage-blob 12.31 sends an API version newer than the
  one Azurite 3.35.0 knows (2025-11-05, README's version table), which it refuses otherwise.
* ``--inMemoryPersistence``: nothing is written to disk (README, "In-memory Persistence").

The fake ``az`` answers ``az account get-access-token`` as azure-identity's
``AzureCliCredential`` calls it (``azure/identity/_credentials/azure_cli.py``:
``account get-access-token --output json --resource R [--tenant T] [--subscription S]``),
and also ``--scope S`` as newer callers pass it, printing the fields the real CLI prints.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import re
import shutil
import signal
import ssl
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import attrs
import trustme

AZURITE_VERSION = "3.35.0"
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
STORAGE_AUDIENCE = "https://storage.azure.com"
"""The resource azure-storage-blob asks tokens for (scope ``https://storage.azure.com/.default``)."""

_MAIN_JS = Path("node_modules/azurite/dist/src/blob/main.js")
_LISTENING = re.compile(r"successfully listens on https://127\.0\.0\.1:(\d+)")
_START_TIMEOUT_S = 30.0
_STOP_GRACE_S = 5.0
_INSTALL_TIMEOUT_S = 300.0

# Run in place of main.js: exit when our end of stdin closes, which the OS does when the test
# process dies however it dies (even SIGKILL, which runs no cleanup), so node never outlives it.
# argv keeps its shape (node, script, flags...), which Azurite's option parser expects.
_SHIM_JS = """\
process.stdin.on("end", () => process.exit(0));
process.stdin.on("error", () => process.exit(0));
process.stdin.resume();
require({main_js});
"""


def azurite_home() -> Path:
    """Where Azurite is installed: ``$TUNEFLEET_AZURITE_HOME``, else ``~/.cache/tunefleet-azurite``."""
    home = os.environ.get("TUNEFLEET_AZURITE_HOME")
    return Path(home) if home else Path.home() / ".cache" / "tunefleet-azurite"


@cache  # one install attempt per test process, however many modules ask
def ensure_azurite() -> Path | None:
    """The path of Azurite's blob ``main.js``, installing it with npm if it is missing.

    None when node or npm is missing or the install fails; callers skip, saying
    :func:`why_unavailable`.
    """
    home = azurite_home()
    main_js = home / _MAIN_JS
    if shutil.which("node") is None:
        _unavailable("node is not on PATH")
        return None
    if _installed_version(home) == AZURITE_VERSION and main_js.is_file():
        return main_js
    npm = shutil.which("npm")
    if npm is None:
        _unavailable(f"not installed in {home} and npm is not on PATH")
        return None
    home.mkdir(parents=True, exist_ok=True)
    command = [npm, "install", "--prefix", str(home), "--no-audit", "--no-fund", "--silent"]
    try:
        done = subprocess.run(
            [*command, f"azurite@{AZURITE_VERSION}"],
            capture_output=True,
            text=True,
            timeout=_INSTALL_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        _unavailable(f"npm install took over {_INSTALL_TIMEOUT_S:.0f} s")
        return None
    if done.returncode != 0 or not main_js.is_file():
        _unavailable(f"npm install failed ({done.returncode}): {done.stderr.strip()}")
        return None
    return main_js


def why_unavailable() -> str:
    """Why :func:`ensure_azurite` returned None (empty if it has not)."""
    return _why_unavailable


_why_unavailable = ""


def _unavailable(reason: str) -> None:
    global _why_unavailable
    _why_unavailable = f"Azurite {AZURITE_VERSION} unavailable: {reason}"
    print(_why_unavailable, file=sys.stderr)


def _installed_version(home: Path) -> str | None:
    package = home / "node_modules" / "azurite" / "package.json"
    try:
        version = json.loads(package.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None
    return str(version)


@attrs.frozen
class Azurite:
    """A running Azurite blob service; see :func:`start_azurite`."""

    url: str
    """The account's blob endpoint, e.g. ``https://127.0.0.1:PORT/devstoreaccount1``."""
    port: int
    process: subprocess.Popen[bytes]
    ca_path: Path
    """PEM of the CA that issued the server certificate: what ``REQUESTS_CA_BUNDLE`` names."""
    account: str = ACCOUNT
    key: str = ACCOUNT_KEY

    @property
    def connection_string(self) -> str:
        """An account-key connection string, as a control plane would hand one out."""
        return (
            f"DefaultEndpointsProtocol=https;AccountName={self.account};"
            f"AccountKey={self.key};BlobEndpoint={self.url};"
        )


@contextlib.contextmanager
def start_azurite(ca: trustme.CA, folder: Path) -> Iterator[Azurite]:
    """Run Azurite's blob service on 127.0.0.1 with HTTPS and ``--oauth basic``.

    Writes the server certificate, its key, the CA and Azurite's output into ``folder``.
    Azurite runs in its own process group, which is terminated (then killed) on exit.
    """
    main_js = ensure_azurite()
    if main_js is None:
        raise RuntimeError("Azurite is not installed (ensure_azurite() returned None)")
    folder.mkdir(parents=True, exist_ok=True)
    cert, key, ca_path = folder / "azurite-cert.pem", folder / "azurite-key.pem", folder / "ca.pem"
    issued = ca.issue_cert("127.0.0.1", "localhost")
    issued.private_key_pem.write_to_path(str(key))
    # The leaf and any intermediates, so clients that trust only the root can build the chain.
    cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    ca.cert_pem.write_to_path(str(ca_path))
    shim = folder / "azurite-shim.js"
    shim.write_text(_SHIM_JS.format(main_js=json.dumps(str(main_js))))
    stdout_path, stderr_path = folder / "azurite.stdout.log", folder / "azurite.stderr.log"
    # Loopback only; in-memory; a port of the OS's choosing (read back from stdout).
    argv = [
        *("--blobHost", "127.0.0.1", "--blobPort", "0"),
        *("--cert", str(cert), "--key", str(key), "--oauth", "basic"),
        *("--inMemoryPersistence", "--skipApiVersionCheck", "--disableTelemetry", "--silent"),
    ]
    node = shutil.which("node") or "node"
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [node, str(shim), *argv],
            cwd=folder,  # Azurite resolves its workspace (--location) from the cwd
            stdin=subprocess.PIPE,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,  # its own process group, so the group can be killed
        )
    try:
        port = _wait_for_port(process, stdout_path, stderr_path)
        azurite = Azurite(
            url=f"https://127.0.0.1:{port}/{ACCOUNT}", port=port, process=process, ca_path=ca_path
        )
        _wait_until_answering(azurite, process, stdout_path, stderr_path)
        yield azurite
    finally:
        _stop(process)


def _wait_for_port(process: subprocess.Popen[bytes], stdout: Path, stderr: Path) -> int:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        found = _LISTENING.search(stdout.read_text(errors="replace"))
        if found:
            return int(found.group(1))
        _fail_if_exited(process, stdout, stderr)
        time.sleep(0.05)
    raise RuntimeError(
        f"Azurite did not listen within {_START_TIMEOUT_S:.0f} s" + _output(stdout, stderr)
    )


def _wait_until_answering(
    azurite: Azurite, process: subprocess.Popen[bytes], stdout: Path, stderr: Path
) -> None:
    """Poll until a TLS request gets an HTTP answer (any status: anonymous calls are refused)."""
    context = ssl.create_default_context(cafile=str(azurite.ca_path))
    deadline = time.monotonic() + _START_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(f"{azurite.url}?comp=list", timeout=1, context=context):
                return
        except urllib.error.HTTPError:
            return
        except OSError as exc:
            _fail_if_exited(process, stdout, stderr)
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Azurite does not answer: {exc}" + _output(stdout, stderr)
                ) from exc
            time.sleep(0.05)


def _fail_if_exited(process: subprocess.Popen[bytes], stdout: Path, stderr: Path) -> None:
    if process.poll() is not None:
        raise RuntimeError(f"Azurite exited with {process.returncode}" + _output(stdout, stderr))


def _output(stdout: Path, stderr: Path) -> str:
    return (
        f"\n--- stderr ---\n{stderr.read_text(errors='replace')}"
        f"\n--- stdout ---\n{stdout.read_text(errors='replace')}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()  # the shim exits on EOF
    _signal_group(process, signal.SIGTERM)
    try:
        process.wait(timeout=_STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        process.wait()
    # Node may have started children of its own in the group; they go too.
    _signal_group(process, signal.SIGKILL)


def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)  # start_new_session: the group id is node's pid


def fake_access_token(
    audience: str,
    tenant: str,
    *,
    lifetime_s: int = 3600,
    issuer: str | None = None,
    now: float | None = None,
) -> str:
    """An Entra ID (v1) access token's shape, unsigned: what Azurite's basic OAuth accepts.

    header.payload.signature in base64url; RS256 in the header as real tokens say, and
    random bytes for the signature, which nothing here verifies. Like Entra ID, ``iat`` and
    ``nbf`` are five minutes back (allowing for clock skew). ``lifetime_s`` may be negative
    for a token that has already expired. Self-contained (stdlib, imports inside): the fake
    ``az`` script carries this function's source.
    """
    import base64
    import json
    import os
    import time
    import uuid

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    issued = int(time.time() if now is None else now) - 300
    expires = issued + 300 + lifetime_s
    object_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"tunefleet-test-user/{tenant}"))
    header = {"typ": "JWT", "alg": "RS256", "kid": "tunefleet-fake"}
    claims = {
        "aud": audience,
        "iss": issuer or f"https://sts.windows.net/{tenant}/",
        "iat": issued,
        "nbf": issued,
        "exp": expires,
        "appid": "04b07795-8ddb-461a-bbee-02f9e1bf7b46",  # the Azure CLI's client id
        "appidacr": "0",
        "idtyp": "user",
        "name": "tunefleet test",
        "oid": object_id,
        "scp": "user_impersonation",
        "sub": object_id,
        "tid": tenant,
        "upn": "tunefleet-test@example.com",
        "uti": part(os.urandom(16)),
        "ver": "1.0",
    }
    return ".".join(
        [
            part(json.dumps(header, separators=(",", ":")).encode()),
            part(json.dumps(claims, separators=(",", ":")).encode()),
            part(os.urandom(256)),
        ]
    )


# The body of the fake `az`. Flags as the real CLI takes them (`az account get-access-token
# --help`): --resource and --scope are exclusive; neither means Resource Manager.
_AZ_MAIN = """
def main(argv):
    import datetime, json, sys, time

    if argv[:2] != ["account", "get-access-token"]:
        print("fake az: only `az account get-access-token` is faked, not: az "
              + " ".join(argv), file=sys.stderr)
        return 1
    options = {"--output": "json", "--resource": None, "--scope": None,
               "--tenant": TENANT, "--subscription": SUBSCRIPTION}
    aliases = {"-o": "--output", "-t": "--tenant"}
    rest = argv[2:]
    while rest:
        flag = aliases.get(rest[0], rest[0])
        if flag not in options or len(rest) < 2:
            print(f"fake az: unrecognized arguments: {' '.join(rest)}", file=sys.stderr)
            return 2
        options[flag], rest = rest[1], rest[2:]
    if options["--output"] != "json":
        print("fake az: only --output json is faked", file=sys.stderr)
        return 2
    if options["--resource"] and options["--scope"]:
        print("usage error: --resource and --scope can't be used together", file=sys.stderr)
        return 2
    if options["--scope"]:
        audience = options["--scope"].removesuffix("/.default")
    else:
        audience = options["--resource"] or "https://management.core.windows.net/"
    with open(LOG, "a") as log:
        log.write(json.dumps(argv) + "\\n")
    token = fake_access_token(audience, options["--tenant"])
    expires_on = int(time.time()) + 3600
    local = datetime.datetime.fromtimestamp(expires_on)
    print(json.dumps({
        "accessToken": token,
        "expiresOn": local.strftime("%Y-%m-%d %H:%M:%S.%f"),
        "expires_on": expires_on,
        "subscription": options["--subscription"],
        "tenant": options["--tenant"],
        "tokenType": "Bearer",
    }, indent=2))
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main(sys.argv[1:]))
"""


def install_fake_az(folder: Path, *, subscription: str, tenant: str) -> Path:
    """Write an executable ``az`` into ``folder`` that hands out :func:`fake_access_token`\\ s.

    It answers ``az account get-access-token`` (``--resource R`` or ``--scope S``, optional
    ``--tenant``/``--subscription``/``--output json``) with the JSON the real CLI prints, for
    any resource (storage, https://management.azure.com/, https://ml.azure.com); anything
    else exits non-zero with a message on stderr. Each call's arguments are appended, one
    JSON list a line, to ``folder / "az-calls.jsonl"``. Put ``folder`` first on ``PATH``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "az"
    script.write_text(
        f"#!{sys.executable}\n"
        '"""Fake Azure CLI for tests, written by tests/providers/azureml/azurite.py."""\n'
        f"SUBSCRIPTION = {subscription!r}\n"
        f"TENANT = {tenant!r}\n"
        f"LOG = {str(folder / 'az-calls.jsonl')!r}\n\n\n"
        + inspect.getsource(fake_access_token)
        + "\n"
        + _AZ_MAIN
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script

"""The Azurite fixture (tests/providers/azureml/azurite.py) behaves like Azure Blob Storage
for what the Azure ML provider does with it: sign in with DefaultAzureCredential through
``az``, upload in parallel blocks, read back, hand out SAS URLs, write logs with the key.

Behaviours asserted here are Azurite 3.35.0's, read from its source (paths under
``node_modules/azurite/dist/src``) and README, and cross-checked by running it; each test
says which.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from azure.core.credentials import AccessToken, AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline import PipelineResponse
from azure.identity import AzureCliCredential, DefaultAzureCredential
from azure.storage.blob import (
    BlobClient,
    BlobSasPermissions,
    BlobServiceClient,
    ContainerClient,
    ContainerEncryptionScope,
    generate_blob_sas,
)
from tests.providers.azureml.azurite import (
    ACCOUNT,
    STORAGE_AUDIENCE,
    Azurite,
    ensure_azurite,
    fake_access_token,
    install_fake_az,
    start_azurite,
    why_unavailable,
)

SUBSCRIPTION = "00000000-0000-4000-8000-0000000000a1"
TENANT = "00000000-0000-4000-8000-0000000000b2"
MIB = 1024 * 1024
# Environment variables earlier links of DefaultAzureCredential's chain read; unset, so the
# chain falls through to AzureCliCredential as it does on a developer's machine.
_CREDENTIAL_ENV = (
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_TENANT_ID",
    "AZURE_USERNAME",
    "AZURE_PASSWORD",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_TOKEN_CREDENTIALS",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "MSI_ENDPOINT",
    "MSI_SECRET",
)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def azurite(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    if ensure_azurite() is None:
        print(why_unavailable())
        pytest.skip(why_unavailable())
    with start_azurite(ca, tmp_path_factory.mktemp("azurite")) as running:
        yield running


@pytest.fixture(scope="module")
def az_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fake-az")
    install_fake_az(folder, subscription=SUBSCRIPTION, tenant=TENANT)
    return folder


@pytest.fixture
def signed_in(azurite: Azurite, az_folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fake az first on PATH, the CA trusted (requests reads REQUESTS_CA_BUNDLE, the
    ssl module SSL_CERT_FILE), no other credential configured. Returns az's folder."""
    monkeypatch.setenv("PATH", f"{az_folder}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(azurite.ca_path))
    monkeypatch.setenv("SSL_CERT_FILE", str(azurite.ca_path))
    for name in _CREDENTIAL_ENV:
        monkeypatch.delenv(name, raising=False)
    return az_folder


class StaticToken:
    """A TokenCredential that hands out one given token, to send Azurite bad ones."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        # The client is told it is valid for an hour, so it sends it whatever the JWT says.
        return AccessToken(self.token, int(datetime.now(UTC).timestamp()) + 3600)


def _container(service: BlobServiceClient, request: pytest.FixtureRequest) -> ContainerClient:
    """A fresh container named after the test (3-63 lowercase letters, digits, hyphens)."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:50]
    return service.create_container(f"{name}-{os.urandom(3).hex()}")


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


def _refusal(error: HttpResponseError) -> tuple[int | None, str | None]:
    """Status and storage error code (x-ms-error-code), which azure-storage-blob's
    process_storage_error sets as ``error_code`` on the exception it raises."""
    return error.status_code, getattr(error, "error_code", None)


def test_default_credential_uploads_in_parallel_blocks_and_reads_back(
    azurite: Azurite, signed_in: Path, request: pytest.FixtureRequest
) -> None:
    """DefaultAzureCredential -> AzureCliCredential -> the fake az; Azurite takes the token.
    A 5 MiB upload with 1 MiB blocks is staged as 5 blocks (Put Block, 4 at a time) and
    committed (Put Block List), as against a real account."""
    credential = DefaultAzureCredential(exclude_interactive_browser_credential=True)
    service = BlobServiceClient(
        azurite.url, credential=credential, max_block_size=MIB, max_single_put_size=MIB
    )
    container = _container(service, request)
    data = os.urandom(5 * MIB)
    blob = container.get_blob_client("runs/run-1/train.jsonl")

    blob.upload_blob(data, max_concurrency=4)

    committed, _ = blob.get_block_list("committed")
    assert [block.size for block in committed] == [MIB] * 5
    assert blob.download_blob(max_concurrency=4).readall() == data
    assert blob.get_blob_properties().size == len(data)
    assert blob.exists()
    assert not container.get_blob_client("runs/run-1/absent").exists()
    calls = [json.loads(line) for line in (signed_in / "az-calls.jsonl").read_text().splitlines()]
    assert calls[-1][4:6] == ["--resource", STORAGE_AUDIENCE]


@pytest.mark.parametrize(
    "audience",
    [STORAGE_AUDIENCE, f"{STORAGE_AUDIENCE}/", f"https://{ACCOUNT}.blob.core.windows.net"],
)
def test_storage_audiences_azurite_accepts(
    azurite: Azurite, signed_in: Path, audience: str
) -> None:
    """VALID_BLOB_AUDIENCES in dist/src/blob/utils/constants.js: the storage resource, with or
    without a slash, or this account's own blob endpoint."""
    token = StaticToken(fake_access_token(audience, TENANT))
    service = BlobServiceClient(azurite.url, credential=token)
    assert service.get_service_properties() is not None


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(fake_access_token(STORAGE_AUDIENCE, TENANT, lifetime_s=-60), id="expired"),
        pytest.param(
            fake_access_token("https://management.azure.com/", TENANT), id="resource-manager"
        ),
        pytest.param(
            fake_access_token("https://otheraccount.blob.core.windows.net", TENANT),
            id="other-account",
        ),
        pytest.param(
            fake_access_token(STORAGE_AUDIENCE, TENANT, issuer="https://login.example.com/"),
            id="untrusted-issuer",
        ),
        pytest.param("not-a-jwt", id="not-a-jwt"),
    ],
)
def test_bad_tokens_are_refused(azurite: Azurite, signed_in: Path, token: str) -> None:
    """authenticateBasic in BlobTokenAuthenticator.js refuses each with
    StorageErrorFactory.getAuthenticationFailed: 403 AuthenticationFailed."""
    service = BlobServiceClient(azurite.url, credential=StaticToken(token))
    with pytest.raises(HttpResponseError) as refused:
        service.create_container(f"refused-{os.urandom(3).hex()}")
    assert _refusal(refused.value) == (403, "AuthenticationFailed")


def test_account_key_writes_logs_the_signed_in_user_reads(
    azurite: Azurite, signed_in: Path, request: pytest.FixtureRequest
) -> None:
    """Shared key with the well-known devstoreaccount1 key (BlobSharedKeyAuthenticator.js),
    by credential and by connection string: a fake control plane appends log lines to an
    append blob, which an OAuth client reads."""
    keyed = BlobServiceClient(azurite.url, credential=AzureNamedKeyCredential(ACCOUNT, azurite.key))
    container = _container(keyed, request)
    log = container.get_blob_client("azureml-logs/std_log.txt")
    log.create_append_blob()
    log.append_block(b"step 1 loss 2.0\n")
    by_string = BlobServiceClient.from_connection_string(azurite.connection_string)
    by_string.get_blob_client(container.container_name, log.blob_name).append_block(
        b"step 2 loss 1.5\n"
    )

    reader = BlobServiceClient(azurite.url, credential=AzureCliCredential())
    text = reader.get_blob_client(container.container_name, log.blob_name).download_blob()
    assert text.readall() == b"step 1 loss 2.0\nstep 2 loss 1.5\n"
    assert log.get_blob_properties().blob_type == "AppendBlob"


def test_sas_url_downloads_a_range(
    azurite: Azurite, signed_in: Path, request: pytest.FixtureRequest
) -> None:
    """A service SAS signed with the account key (BlobSASAuthenticator.js) reads a byte range
    with no other credential; a SAS whose signature does not match is refused."""
    keyed = BlobServiceClient(azurite.url, credential=AzureNamedKeyCredential(ACCOUNT, azurite.key))
    container = _container(keyed, request)
    data = os.urandom(64 * 1024)
    blob = container.upload_blob("outputs/model.safetensors", data)
    sas = generate_blob_sas(
        ACCOUNT,
        container.container_name,
        blob.blob_name,
        account_key=azurite.key,
        permission=BlobSasPermissions(read=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )

    by_sas = BlobClient.from_blob_url(f"{blob.url}?{sas}")
    assert by_sas.download_blob(offset=1000, length=5000).readall() == data[1000:6000]

    forged = re.sub(r"sig=[^&]+", "sig=" + "A" * 43 + "%3D", sas)
    with pytest.raises(HttpResponseError) as refused:
        BlobClient.from_blob_url(f"{blob.url}?{forged}").download_blob().readall()
    assert _refusal(refused.value) == (403, "AuthorizationFailure")


def test_encryption_scope_is_accepted_and_ignored(
    azurite: Azurite, signed_in: Path, request: pytest.FixtureRequest
) -> None:
    """Observed: Azurite 3.35.0 takes an upload with ``x-ms-encryption-scope`` naming a scope
    that does not exist (real Azure refuses that) and neither echoes it in the response nor
    reports it in the blob's properties; a container's default scope is dropped likewise. So
    a test cannot check through Azurite that the product asks for a scope: check the request
    instead, as here. The README lists "Encryption Scope" among features not supported; only
    the customer-provided-key headers are refused (UnsupportedHeadersBlocker in
    dist/src/blob/middlewares/StrictModelMiddlewareFactory.js, unless --loose)."""
    service = BlobServiceClient(azurite.url, credential=AzureCliCredential())
    container = _container(service, request)
    exchanged: list[tuple[str | None, str | None]] = []

    def record(response: PipelineResponse[Any, Any]) -> None:
        exchanged.append(
            (
                response.http_request.headers.get("x-ms-encryption-scope"),
                response.http_response.headers.get("x-ms-encryption-scope"),
            )
        )

    blob = container.upload_blob(
        "scoped.bin", b"payload", encryption_scope="no-such-scope", raw_response_hook=record
    )

    assert exchanged == [("no-such-scope", None)]  # sent; accepted; not echoed
    assert blob.get_blob_properties().encryption_scope is None
    assert blob.download_blob().readall() == b"payload"
    scoped = service.create_container(
        f"{container.container_name}-d",
        container_encryption_scope=ContainerEncryptionScope(
            "no-such-scope", prevent_encryption_scope_override=True
        ),
    )
    assert scoped.get_container_properties().encryption_scope is None


def test_fake_az_serves_any_resource(signed_in: Path) -> None:
    """The tokens also name Resource Manager and Azure ML as audiences, with the tenant."""
    credential = AzureCliCredential()
    for scope, audience in [
        ("https://management.azure.com/.default", "https://management.azure.com"),
        ("https://ml.azure.com/.default", "https://ml.azure.com"),
    ]:
        claims = _claims(credential.get_token(scope).token)
        assert (claims["aud"], claims["tid"]) == (audience, TENANT)
        assert claims["iss"] == f"https://sts.windows.net/{TENANT}/"
        assert claims["nbf"] <= datetime.now(UTC).timestamp() < claims["exp"]

    az = str(signed_in / "az")
    by_scope = subprocess.run(
        [
            az,
            "account",
            "get-access-token",
            "--output",
            "json",
            "--scope",
            "https://ml.azure.com/.default",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    answer = json.loads(by_scope.stdout)
    assert _claims(answer["accessToken"])["aud"] == "https://ml.azure.com"
    assert (answer["subscription"], answer["tenant"], answer["tokenType"]) == (
        SUBSCRIPTION,
        TENANT,
        "Bearer",
    )
    datetime.strptime(answer["expiresOn"], "%Y-%m-%d %H:%M:%S.%f")  # as the real CLI writes it

    other = subprocess.run([az, "account", "show"], capture_output=True, text=True, check=False)
    assert other.returncode == 1
    assert "get-access-token" in other.stderr

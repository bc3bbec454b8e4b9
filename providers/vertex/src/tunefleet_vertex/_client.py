"""The Google Cloud clients, and their errors turned into tunefleet's.

Vertex AI is driven through the official ``google.cloud.aiplatform_v1`` service clients
(JobService, GenAiTuningService, ModelService, EndpointService, PredictionService) over
their REST transport, on the regional endpoint of the target's region; Cloud Storage
through ``google-cloud-storage``. Each SDK is imported by the first call that needs it, never when the provider
loads (they take seconds to import). Cloud Logging's ``entries.list`` and the requests a
client cannot make as needed go through google-auth's ``AuthorizedSession`` (:func:`post`).

Credentials are Application Default Credentials (``google.auth.default``: the
``GOOGLE_APPLICATION_CREDENTIALS`` file, ``gcloud auth application-default login``, the
metadata server of a Google Cloud machine). What fails is translated here, the one place
Google's errors become tunefleet's, by the ``google.rpc.Code`` the service answered (and
the ``ErrorInfo`` reason where it decides), never by a message's words.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tunefleet.errors import (
    AlreadyExistsError,
    ProviderBusyError,
    ProviderError,
    ProviderNotFoundError,
    QuotaExceededError,
    TransientProviderError,
)
from tunefleet_vertex.options import VertexOptions

__all__ = [
    "PROVIDER",
    "Where",
    "client",
    "credentials",
    "post",
    "storage_client",
    "translated",
]

PROVIDER = "vertex"
INSTALL_HINT = "pip install tunefleet-vertex"
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
"""The OAuth scope every call here needs (Vertex AI, Cloud Storage, Cloud Logging)."""
_TIMEOUT = 60.0


def _missing_sdk() -> ProviderError:
    return ProviderError(
        PROVIDER, f"the Google Cloud SDKs are missing: {INSTALL_HINT}", code="missing_sdk"
    )


def _adc_source() -> str:
    """What Application Default Credentials are read from, as far as the environment says:
    a process that points ``GOOGLE_APPLICATION_CREDENTIALS`` elsewhere gets new clients."""
    return os.environ.get("GOOGLE_APPLICATION_CREDENTIALS", "")


def credentials() -> Any:
    """Application Default Credentials with the cloud-platform scope, one per process and
    source (they refresh their own tokens)."""
    return _credentials(_adc_source())


@functools.cache
def _credentials(source: str) -> Any:
    try:
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError
    except ImportError:
        raise _missing_sdk() from None
    try:
        found, _ = google.auth.default(scopes=list(SCOPES))
    except DefaultCredentialsError:
        raise ProviderError(
            PROVIDER,
            "no Google Cloud credentials: run `gcloud auth application-default login`, set "
            "GOOGLE_APPLICATION_CREDENTIALS to a credentials file (a workload identity "
            "federation config, not a service account key where you can avoid one), or run "
            "on Google Cloud with a service account attached; a spec never holds keys",
            code="NoCredentials",
        ) from None
    return found


@dataclass(frozen=True)
class Where:
    """The project and region a call goes to, and through which hosts: what a job's or an
    endpoint's ref carries in its ``scope`` (no credential)."""

    project: str
    region: str
    api_endpoint: str
    storage_endpoint: str = ""
    logging_endpoint: str = ""

    @classmethod
    def of(cls, options: VertexOptions, region: str) -> Where:
        return cls(
            options.project,
            region,
            options.region_endpoint(region),
            options.storage_endpoint or "",
            options.logging_endpoint or "",
        )

    @classmethod
    def from_scope(cls, scope: Mapping[str, str]) -> Where:
        try:
            return cls(
                scope["project"],
                scope["region"],
                scope["api_endpoint"],
                scope.get("storage_endpoint", ""),
                scope.get("logging_endpoint", ""),
            )
        except KeyError as exc:
            raise ProviderError(
                PROVIDER, f"the ref lacks {exc.args[0]} (made by another provider?)"
            ) from None

    def scope(self) -> dict[str, str]:
        found = {"project": self.project, "region": self.region, "api_endpoint": self.api_endpoint}
        if self.storage_endpoint:
            found["storage_endpoint"] = self.storage_endpoint
        if self.logging_endpoint:
            found["logging_endpoint"] = self.logging_endpoint
        return found

    @property
    def parent(self) -> str:
        """The location every Vertex resource of this target lives under."""
        return f"projects/{self.project}/locations/{self.region}"


_SERVICES = {
    "job": "JobServiceClient",
    "tuning": "GenAiTuningServiceClient",
    "model": "ModelServiceClient",
    "endpoint": "EndpointServiceClient",
    "prediction": "PredictionServiceClient",
    "metadata": "MetadataServiceClient",
    "tensorboard": "TensorboardServiceClient",
}


@functools.cache
def _client(service: str, api_endpoint: str, source: str) -> Any:
    try:
        from google.api_core.client_options import ClientOptions
        from google.cloud import aiplatform_v1
    except ImportError:
        raise _missing_sdk() from None
    cls = getattr(aiplatform_v1, _SERVICES[service])
    return cls(
        credentials=credentials(),
        transport="rest",
        client_options=ClientOptions(api_endpoint=api_endpoint),
    )


def client(where: Where, service: str) -> Any:
    """The aiplatform_v1 client of ``service`` (job, tuning, model, endpoint, prediction)
    on the target's regional endpoint, one per process and endpoint."""
    return _client(service, where.api_endpoint, _adc_source())


@functools.cache
def _storage(project: str, endpoint: str, source: str) -> Any:
    try:
        from google.cloud import storage
    except ImportError:
        raise _missing_sdk() from None
    options = {"api_endpoint": endpoint} if endpoint else None
    return storage.Client(project=project, credentials=credentials(), client_options=options)


def storage_client(where: Where) -> Any:
    """The Cloud Storage client of the target's project."""
    return _storage(where.project, where.storage_endpoint, _adc_source())


def post(url: str, body: dict[str, Any], what: str) -> Any:
    """POST ``body`` as JSON to ``url`` signed with the credentials (google-auth's
    ``AuthorizedSession``, the transport the REST clients use); the answer's JSON, or its
    bytes when it is none. For the requests a client library cannot make as needed: a
    container's own answer (the REST client reads it as an HttpBody), a dedicated endpoint's
    own host, and Cloud Logging's ``entries.list`` one page at a time."""
    from google.api_core import exceptions

    session = _session(_adc_source())
    if "://" not in url:
        url = f"https://{url}"
    with translated(what):
        response = session.post(url, json=body, timeout=timeout())
        if response.status_code >= 400:
            raise exceptions.from_http_response(response)  # type: ignore[no-untyped-call]
    try:
        return response.json()
    except ValueError:
        return response.content


@functools.cache
def _session(source: str) -> Any:
    from google.auth.transport.requests import AuthorizedSession

    return AuthorizedSession(credentials())  # type: ignore[no-untyped-call]


def timeout() -> float:
    """Seconds one request may take."""
    return _TIMEOUT


_RATE_LIMITED = frozenset({"RATE_LIMIT_EXCEEDED", "RATE_LIMIT_EXCEEDED_PER_USER"})
"""ErrorInfo reasons of a RESOURCE_EXHAUSTED that is throttling, which clears by itself;
any other RESOURCE_EXHAUSTED is a quota ("Vertex AI quotas and limits",
https://cloud.google.com/vertex-ai/docs/quotas: "Quota exceeded for quota metric ...")."""
_TRANSIENT = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED", "INTERNAL", "UNKNOWN"})
"""Codes worth retrying ("Error codes", https://cloud.google.com/apis/design/errors:
"retry ... UNAVAILABLE ... ABORTED ... INTERNAL" with backoff)."""


def status_name(exc: Any) -> str:
    """The ``google.rpc.Code`` name of a google.api_core error (``NOT_FOUND``).

    Over REST, google.api_core picks the exception's class from the HTTP status alone
    (``from_http_status``: FAILED_PRECONDITION and INVALID_ARGUMENT both arrive as
    BadRequest, ALREADY_EXISTS as Conflict), so the code is read from the answer's
    ``error.status`` (Google's JSON error shape, https://cloud.google.com/apis/design/errors),
    then the exception's gRPC code, then the HTTP status (Cloud Storage's JSON API answers
    no ``status``)."""
    response = getattr(exc, "response", None)
    try:
        status = response.json()["error"]["status"] if response is not None else None
    except (AttributeError, KeyError, TypeError, ValueError):
        status = None
    if isinstance(status, str) and status.isupper():
        return status
    code = getattr(exc, "grpc_status_code", None)
    name = getattr(code, "name", None)
    if name:
        return str(name)
    return {
        400: "INVALID_ARGUMENT",
        401: "UNAUTHENTICATED",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
        409: "ALREADY_EXISTS",
        412: "FAILED_PRECONDITION",
        429: "RESOURCE_EXHAUSTED",
        499: "CANCELLED",
        500: "INTERNAL",
        501: "UNIMPLEMENTED",
        503: "UNAVAILABLE",
        504: "DEADLINE_EXCEEDED",
    }.get(int(getattr(exc, "code", 0) or 0), "UNKNOWN")


_QUERY = re.compile(r"(https?://[^\s?'\"]+)\?[^\s'\"]*")
"""A URL's query: a resumable upload's session URL carries its ``upload_id`` there, which
"acts as an authentication token" for the session ("Resumable uploads",
https://cloud.google.com/storage/docs/resumable-uploads): never put in an error."""


def _scrubbed(text: str) -> str:
    return _QUERY.sub(r"\1", text)


@contextmanager
def translated(operation: str, *, creating: bool = False) -> Iterator[None]:
    """Run Google Cloud SDK calls, raising tunefleet's errors for google.api_core's, each
    with the ``google.rpc.Code`` name as code and the HTTP status; URLs lose their queries.

    NOT_FOUND: ProviderNotFoundError. ALREADY_EXISTS (and Cloud Storage's 412 on a
    generation precondition): AlreadyExistsError. RESOURCE_EXHAUSTED: for a create
    (``creating``), QuotaExceededError unless it is throttling (ErrorInfo
    RATE_LIMIT_EXCEEDED); for anything else ProviderBusyError, since a read or a
    prediction over a per-minute limit clears by itself (Gemini's 429 carries no ErrorInfo:
    "Resource exhausted. Please try again later", "Error code 429",
    https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429). UNAVAILABLE,
    DEADLINE_EXCEEDED, ABORTED, INTERNAL, lost connections and corrupted downloads:
    TransientProviderError. No usable credential: ProviderError saying where credentials
    come from. Anything else: ProviderError with Google's code and message.
    """
    try:
        from google.api_core import exceptions as api
        from google.auth import exceptions as auth
        from google.cloud.storage import exceptions as media  # type: ignore[import-untyped]
    except ImportError:
        raise _missing_sdk() from None
    try:
        yield
    except api.GoogleAPICallError as exc:
        name = status_name(exc)
        status = int(getattr(exc, "code", 0) or 0) or None
        message = _scrubbed(str(getattr(exc, "message", "") or exc))
        text = f"{operation}: {name}: {message}"
        kind: type[ProviderError] = ProviderError
        if name == "NOT_FOUND":
            kind = ProviderNotFoundError
        elif name == "ALREADY_EXISTS" or isinstance(exc, api.PreconditionFailed):
            kind = AlreadyExistsError
        elif name == "RESOURCE_EXHAUSTED":
            quota = creating and exc.reason not in _RATE_LIMITED
            kind = QuotaExceededError if quota else ProviderBusyError
        elif name in _TRANSIENT:
            kind = TransientProviderError
        elif name in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
            text += (
                " (the credentials' principal needs the roles in docs/providers/vertex.md on "
                "the project, the bucket and the key)"
            )
        raise kind(PROVIDER, text, code=name, status=status) from None
    except api.RetryError as exc:
        raise TransientProviderError(
            PROVIDER, f"{operation}: {_scrubbed(str(exc))}", code="RETRY"
        ) from None
    except auth.DefaultCredentialsError:
        _credentials.cache_clear()
        credentials()  # raises the one-line advice
        raise
    except auth.RefreshError as exc:
        raise ProviderError(
            PROVIDER,
            f"{operation}: the credentials could not be refreshed ({type(exc).__name__}); "
            "sign in again (gcloud auth application-default login)",
            code="UNAUTHENTICATED",
        ) from None
    except auth.TransportError as exc:
        raise TransientProviderError(PROVIDER, f"{operation}: {_scrubbed(str(exc))}") from None
    except (media.DataCorruption, media.InvalidResponse) as exc:
        raise TransientProviderError(
            PROVIDER, f"{operation}: {type(exc).__name__}: {_scrubbed(str(exc))}"
        ) from None
    except _connection_errors() as exc:
        raise TransientProviderError(
            PROVIDER, f"{operation}: {type(exc).__name__}: {_scrubbed(str(exc))}"
        ) from None


@functools.cache
def _connection_errors() -> tuple[type[BaseException], ...]:
    """What a dropped or refused connection raises under the REST transports (requests)."""
    import requests

    return (requests.ConnectionError, requests.Timeout)

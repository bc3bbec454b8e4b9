"""The SDK clients, and the one place where the SDKs' exceptions become tunefleet's.

Two SDKs raise here: ``openai`` (the OpenAI API, and an Azure OpenAI resource's data plane)
through :func:`translated`, and ``azure-core`` (Azure Resource Manager) through
:func:`azure_translated`. Every error they raise carries the service's error ``code`` and
the HTTP ``status``; which tunefleet error it becomes is decided on those alone, never on
the words of a message.

The SDKs are imported by the first call that needs a client, never when the provider is
loaded. Retries happen at two levels. The SDK retries each request (``options.max_retries``
times: 429, 408, 409, 5xx and dropped connections, honouring ``Retry-After``), so one
throttled request does not fail a step made of several; what still fails is translated,
and the run engine retries the whole step when it is transient. Creating a job is the
exception: the API takes no idempotency key, so that request is never retried blindly
(see :func:`tunefleet_openai._jobs.submit`).
"""

from __future__ import annotations

import email.utils
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from tunefleet.errors import (
    ProviderError,
    ProviderNotFoundError,
    QuotaExceededError,
    TransientProviderError,
)
from tunefleet_openai.options import OpenAIOptions

if TYPE_CHECKING:
    import openai

__all__ = [
    "PROVIDER",
    "Clients",
    "ThrottledError",
    "azure_credential",
    "azure_translated",
    "make_client",
    "redact",
    "retry_after",
    "translated",
]

PROVIDER = "openai"
COGNITIVE_SERVICES_SCOPE = "https://cognitiveservices.azure.com/.default"
AZURE_INSTALL_HINT = (
    "pip install 'tunefleet-openai[azure]' (azure-identity, azure-mgmt-cognitiveservices)"
)

# Anything shaped like a key is masked before a message is shown or stored. The API
# itself echoes part of a rejected key ("Incorrect API key provided: sk-abc***xyz").
_KEY = re.compile(r"\b(?:sk|sess|rk)-[A-Za-z0-9_*-]{6,}")

# 429s that no retry will clear, by the error's code, with what clears them. OpenAI's
# error-codes guide (https://platform.openai.com/docs/guides/error-codes) documents
# `insufficient_quota` (credits or the monthly budget spent). The daily limit on
# fine-tuning job creations comes as `daily_rate_limit_exceeded`, a code the guide does not
# list. Billing failures keep the type `insufficient_quota` where the code names the cause
# more precisely (`project_spend_limit_exceeded`; see Microsoft's Dev Proxy page "OpenAI
# insufficient quota"), so the type counts too.
_QUOTAS = {
    "insufficient_quota": "add credit or raise the spend limit of the organization or "
    "project (https://platform.openai.com/settings/organization/billing)",
    "daily_rate_limit_exceeded": "wait for the daily limit to reset or ask OpenAI for a "
    "higher one (https://platform.openai.com/settings/organization/limits)",
}
# Resource Manager's code when a deployment asks for more capacity than the subscription's
# quota for the model in the region leaves (CreateOrUpdate answers 400 InsufficientQuota).
_AZURE_QUOTA = "InsufficientQuota"


class ThrottledError(TransientProviderError):
    """A 429 for the request rate: the service refused the request without acting on it,
    so even a create may be sent again."""


def redact(text: str) -> str:
    """``text`` with anything that looks like an API key masked."""
    return _KEY.sub("[redacted key]", text)


# ---------------------------------------------------------------------- clients


def azure_credential() -> Any:
    """``DefaultAzureCredential`` (environment, workload or managed identity, ``az login``);
    ProviderError saying what to install when the Azure SDKs are missing."""
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError:
        raise ProviderError(
            PROVIDER, f"flavor azure needs the Azure SDKs: {AZURE_INSTALL_HINT}", code="missing_sdk"
        ) from None
    return DefaultAzureCredential()


def make_client(options: OpenAIOptions) -> openai.OpenAI:
    """An SDK client for ``options``: the OpenAI API with credentials from the SDK's
    standard variables, or (``flavor: azure``) the resource's data plane with
    ``AZURE_OPENAI_API_KEY`` or, without one, Microsoft Entra ID."""
    import openai

    if options.flavor == "azure":
        auth: dict[str, Any] = {}
        if not os.environ.get("AZURE_OPENAI_API_KEY"):
            credential = azure_credential()
            from azure.identity import get_bearer_token_provider

            auth["azure_ad_token_provider"] = get_bearer_token_provider(
                credential, COGNITIVE_SERVICES_SCOPE
            )
        return openai.AzureOpenAI(
            azure_endpoint=options.endpoint,
            api_version=options.api_version,
            max_retries=options.max_retries,
            timeout=options.request_timeout,
            **auth,
        )
    try:
        return openai.OpenAI(
            base_url=options.base_url,
            organization=options.organization,
            project=options.project,
            max_retries=options.max_retries,
            timeout=options.request_timeout,
        )
    except openai.OpenAIError:
        raise ProviderError(
            PROVIDER,
            "no OpenAI credentials: set OPENAI_API_KEY in the environment (a spec never "
            "holds keys)",
            code="no_credentials",
        ) from None


class Clients:
    """One SDK client per distinct options, made on first use and shared by the worker
    threads the engine calls from (the SDK's clients are thread-safe)."""

    def __init__(self) -> None:
        self._made: dict[str, openai.OpenAI] = {}
        self._lock = threading.Lock()

    def get(self, options: OpenAIOptions) -> openai.OpenAI:
        """The client for ``options``."""
        key = options.model_dump_json()
        with self._lock:
            client = self._made.get(key)
            if client is None:
                client = self._made[key] = make_client(options)
            return client

    def scoped(self, scope: Mapping[str, str]) -> openai.OpenAI:
        """The client for a job or an endpoint, from the options recorded in its scope."""
        return self.get(OpenAIOptions.from_scope(scope))


# ---------------------------------------------------------------------- errors


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The wait a response asks for: ``retry-after-ms``, else ``Retry-After`` in seconds or
    as an HTTP date; None when it asks for none (or asks nonsense)."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(float(millis) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _api_error(exc: Any) -> tuple[str, str | None, str | None]:
    """The API's message, error code and error type from an APIStatusError, whose ``body``
    is the ``error`` object of ``{"error": {"message", "type", "param", "code"}}``."""
    body = getattr(exc, "body", None)
    message = getattr(exc, "message", None) or str(exc)
    code, kind = getattr(exc, "code", None), getattr(exc, "type", None)
    if isinstance(body, Mapping):
        error = body.get("error", body)  # an SDK that keeps the envelope
        if isinstance(error, Mapping):
            message = str(error.get("message") or message)
            code = error.get("code") or code
            kind = error.get("type") or kind
    return (
        message,
        str(code) if code is not None else None,
        str(kind) if kind is not None else None,
    )


def status_error(
    operation: str, status: int, exc: Any, headers: Mapping[str, str]
) -> ProviderError:
    """The tunefleet error for an API answer of HTTP ``status`` (the SDK's ``exc``).

    * 404: ProviderNotFoundError;
    * 429 whose code (or type) is a quota's: QuotaExceededError, saying what clears it;
    * any other 429: ThrottledError. OpenAI documents no code of its own for the limit on
      active fine-tuning jobs, so that limit is throttling too: retried with backoff, and
      queued before it is reached with ``options.max_concurrent_jobs``;
    * 408, 409 (a conflicting request in flight) and 5xx: TransientProviderError; both
      transient kinds carry the wait the service asked for;
    * anything else: ProviderError with the API's message and the parameter it names.
    """
    message, code, kind = _api_error(exc)
    param = getattr(exc, "param", None)
    where = f" (param {param})" if param else ""
    text = redact(f"{operation}: HTTP {status}{f' {code}' if code else ''}: {message}{where}")
    wait = retry_after(headers)
    if status == 404:
        return ProviderNotFoundError(PROVIDER, text, code=code, status=status)
    if status == 429:
        quota = _QUOTAS.get(code or "") or _QUOTAS.get(kind or "")
        if quota is not None:
            return QuotaExceededError(
                PROVIDER,
                f"{text}; a quota that no retry will clear: {quota}",
                code=code or kind,
                status=status,
            )
        return ThrottledError(PROVIDER, text, retry_after=wait, code=code, status=status)
    if status in {408, 409} or status >= 500:
        return TransientProviderError(PROVIDER, text, retry_after=wait, code=code, status=status)
    if status in {401, 403}:
        text += "; check OPENAI_API_KEY and the key's organization and project"
    return ProviderError(PROVIDER, text, code=code, status=status)


@contextmanager
def translated(operation: str) -> Iterator[None]:
    """Run ``openai`` SDK calls, raising tunefleet's errors for the SDK's (see
    :func:`status_error`); a timeout or a dropped connection is transient."""
    import openai

    try:
        yield
    except openai.APIStatusError as exc:
        raise status_error(operation, exc.status_code, exc, exc.response.headers) from None
    except openai.APIConnectionError as exc:
        timed_out = isinstance(exc, openai.APITimeoutError)
        kind = "timed out" if timed_out else "could not connect"
        raise TransientProviderError(
            PROVIDER,
            f"{operation}: {kind}: {exc.message}",
            code="timeout" if timed_out else "connection_error",
        ) from None
    except openai.OpenAIError as exc:
        raise ProviderError(PROVIDER, redact(f"{operation}: {exc}"), code="sdk_error") from None


@contextmanager
def azure_translated(operation: str) -> Iterator[None]:
    """Run Azure SDK (Resource Manager) calls, raising tunefleet's errors for azure-core's:
    404 not found; ``InsufficientQuota`` a quota; 429 and 5xx transient (with the wait
    asked for); a failed sign-in says how to sign in; the rest permanent."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )

    try:
        yield
    except ClientAuthenticationError as exc:
        raise ProviderError(
            PROVIDER,
            redact(
                f"{operation}: Azure sign-in failed ({exc.message}); sign in with `az login`, "
                "a managed identity or AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET"
            ),
            code=exc.error.code if exc.error is not None else "sign_in_failed",
            status=exc.status_code,
        ) from None
    except HttpResponseError as exc:
        status = exc.status_code or 0
        code = exc.error.code if exc.error is not None else None
        said = exc.error.message if exc.error is not None and exc.error.message else exc.reason
        text = redact(f"{operation}: HTTP {status}{f' {code}' if code else ''}: {said}")
        # Every azure-core transport's response has headers; the common type omits them.
        wait = retry_after(getattr(exc.response, "headers", None) or {})
        if status == 404:
            raise ProviderNotFoundError(PROVIDER, text, code=code, status=status) from None
        if code == _AZURE_QUOTA:
            raise QuotaExceededError(
                PROVIDER,
                f"{text}; request more quota for the model in the resource's region, or "
                "lower options.deployment_capacity",
                code=code,
                status=status,
            ) from None
        if status == 429 or status >= 500:
            raise TransientProviderError(
                PROVIDER, text, retry_after=wait, code=code, status=status
            ) from None
        raise ProviderError(PROVIDER, text, code=code, status=status) from None
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise TransientProviderError(
            PROVIDER, f"{operation}: {exc.message}", code="connection_error"
        ) from None

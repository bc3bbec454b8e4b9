"""The Azure SDK clients, and their errors turned into tunefleet's.

Azure Resource Manager is driven through azure-ai-ml's own generated client
(``azure.ai.ml._restclient.arm_ml_service``: the models and operations of api-version
2025-12-01 that the SDK itself is built on), with JSON bodies sent verbatim, so the
request `tunefleet plan` shows is the request sent (docs/decisions.md says why not the
SDK's entity layer). Blob storage goes through azure-storage-blob, autoscale through
azure-mgmt-monitor. Each SDK is imported by the first call that needs it, never when the
provider loads.

Credentials come from azure-identity's ``DefaultAzureCredential`` (environment, workload
identity, managed identity, ``az login``). azure-core retries throttled and failed
requests itself (429, 5xx, with ``Retry-After``); what still fails is translated here,
the one place Azure's errors become tunefleet's, by ARM's ``error.code`` (Storage's
``x-ms-error-code``) and the HTTP status, never by a message's words.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tunefleet.errors import (
    AlreadyExistsError,
    ProviderBusyError,
    ProviderError,
    ProviderNotFoundError,
    QuotaExceededError,
    TransientProviderError,
)
from tunefleet_azureml.options import AzureMLOptions

__all__ = [
    "API_VERSION",
    "PROVIDER",
    "Where",
    "arm",
    "arm_scope",
    "credential",
    "ensure_version",
    "error_code",
    "monitor",
    "poll_seconds",
    "translated",
]

PROVIDER = "azureml"
API_VERSION = "2025-12-01"
"""The Resource Manager api-version every Azure ML request is sent with: the version of
the models generated into azure-ai-ml, which shape the bodies tunefleet plans."""
INSTALL_HINT = "pip install tunefleet-azureml"
_TIMEOUTS: dict[str, Any] = {"connection_timeout": 10, "read_timeout": 60}
_RETRIES: dict[str, Any] = {"retry_total": 4, "retry_backoff_factor": 0.8, "retry_backoff_max": 30}

POLL_ENV = "TUNEFLEET_AZUREML_POLL_SECONDS"


def poll_seconds() -> float:
    """Seconds between polls of a long-running operation when Azure's answer names no
    ``Retry-After`` (azure-core's default is 30): ``$TUNEFLEET_AZUREML_POLL_SECONDS``,
    default 5."""
    try:
        return max(float(os.environ.get(POLL_ENV, "5")), 0.0)
    except ValueError:
        return 5.0


_QUOTA = frozenset({"QuotaExceeded", "InsufficientQuota", "QuotaLimitReached", "OutOfQuota"})
"""Codes Azure ML answers for a request over a subscription's or a workspace's quota (VM
family cores, endpoint instances): "Quotas and limits in Azure Machine Learning",
https://learn.microsoft.com/azure/machine-learning/how-to-manage-quotas; ``OutOfQuota``
for an online deployment ("Troubleshoot online endpoint deployment and scoring",
https://learn.microsoft.com/azure/machine-learning/how-to-troubleshoot-online-endpoints)."""
_BUSY = frozenset({"TooManyRequests", "Throttled"})
_TRANSIENT = frozenset({"OutOfCapacity"})
"""The region has no capacity of the VM size right now (the same page): it may later."""
_EXISTS = frozenset({"Conflict", "ResourceExists", "AlreadyExists", "ContainerAlreadyExists"})
_NOT_FOUND = frozenset(
    {
        "ResourceNotFound",
        "NotFound",
        "ResourceGroupNotFound",
        "BlobNotFound",
        "ContainerNotFound",
        "UserError.NotFound",
    }
)


@functools.cache
def credential() -> Any:
    """``DefaultAzureCredential``, one per process (it caches its tokens)."""
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError:
        raise ProviderError(
            PROVIDER, f"the Azure SDKs are missing: {INSTALL_HINT}", code="missing_sdk"
        ) from None
    return DefaultAzureCredential(exclude_interactive_browser_credential=True)


_SOVEREIGN_SCOPES = {
    "chinacloudapi.cn": "https://management.chinacloudapi.cn/.default",
    "usgovcloudapi.net": "https://management.usgovcloudapi.net/.default",
}
"""Resource Manager's token scope in the sovereign clouds ("Azure China developer guide",
"Azure Government developer guide"); any other endpoint (the public cloud, a proxy or
private link in front of it) takes the public cloud's."""


def arm_scope(url: str) -> str:
    """The scope of a token Resource Manager at ``url`` accepts: its audience is the
    cloud's, whatever host the requests go to."""
    host = urlsplit(url).hostname or ""
    for suffix, scope in _SOVEREIGN_SCOPES.items():
        if host.endswith(suffix):
            return scope
    return "https://management.azure.com/.default"


@dataclass(frozen=True)
class Where:
    """The workspace a call goes to, and through which cloud: what a job's or an
    endpoint's ref carries in its ``scope`` (no credential)."""

    subscription_id: str
    resource_group: str
    workspace: str
    management_url: str

    @classmethod
    def of(cls, options: AzureMLOptions) -> Where:
        return cls(
            options.subscription_id,
            options.resource_group,
            options.workspace,
            options.management_url,
        )

    @classmethod
    def from_scope(cls, scope: Mapping[str, str]) -> Where:
        try:
            return cls(
                scope["subscription_id"],
                scope["resource_group"],
                scope["workspace"],
                scope["management_url"],
            )
        except KeyError as exc:
            raise ProviderError(
                PROVIDER, f"the ref lacks {exc.args[0]} (made by another provider?)"
            ) from None

    def scope(self) -> dict[str, str]:
        return {
            "subscription_id": self.subscription_id,
            "resource_group": self.resource_group,
            "workspace": self.workspace,
            "management_url": self.management_url,
        }

    @property
    def workspace_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace}"
        )


@functools.cache
def _arm(subscription: str, management_url: str) -> Any:
    from azure.ai.ml._restclient.arm_ml_service import MachineLearningServicesMgmtClient

    return MachineLearningServicesMgmtClient(
        credential(),
        subscription,
        base_url=management_url,
        api_version=API_VERSION,
        credential_scopes=[arm_scope(management_url)],
        **_TIMEOUTS,
        **_RETRIES,
    )


def arm(where: Where | AzureMLOptions) -> Any:
    """Azure ML's Resource Manager client for a subscription in a cloud."""
    return _arm(where.subscription_id, where.management_url)


_VERSIONS = {
    "data": ("data_versions", "data asset"),
    "environments": ("environment_versions", "environment"),
    "models": ("model_versions", "model"),
}


def ensure_version(
    where: Where | AzureMLOptions, request: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The asset version a planned request registers (path ``<data|environments|models>/
    <name>/versions/<version>``): the one that exists already, or None once registered
    now. A version cannot change once made, so one that exists is left as it is (the
    caller checks it is the one it wants), and one registered meanwhile by another run
    counts as existing."""
    kind, name, _, version = str(request["path"]).split("/")
    attribute, noun = _VERSIONS[kind]
    operations = getattr(arm(where), attribute)
    try:
        with translated(f"read {noun} {name}:{version}"):
            return dict(operations.get(where.resource_group, where.workspace, name, version))
    except ProviderNotFoundError:
        pass
    try:
        with translated(f"register {noun} {name}:{version}"):
            operations.create_or_update(
                where.resource_group, where.workspace, name, version, request["body"]
            )
    except AlreadyExistsError:
        with translated(f"read {noun} {name}:{version}"):
            return dict(operations.get(where.resource_group, where.workspace, name, version))
    return None


@functools.cache
def _monitor(subscription: str, management_url: str) -> Any:
    from azure.mgmt.monitor import MonitorManagementClient

    return MonitorManagementClient(
        credential(),
        subscription,
        base_url=management_url,
        credential_scopes=[arm_scope(management_url)],
        **_TIMEOUTS,
        **_RETRIES,
    )


def monitor(where: Where | AzureMLOptions) -> Any:
    """Azure Monitor's client (autoscale settings) for a subscription in a cloud."""
    return _monitor(where.subscription_id, where.management_url)


def error_code(exc: Any) -> str:
    """Azure's code for a failed request: ARM's ``error.code`` or Storage's
    ``x-ms-error-code``; the HTTP status when the answer carried neither."""
    code = getattr(exc, "error_code", None)
    error = getattr(exc, "error", None)
    if not code and error is not None:
        code = getattr(error, "code", None)
    status = getattr(exc, "status_code", None)
    return str(code or status or "")


def _retry_after(exc: Any) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    try:
        return float(str(headers.get("Retry-After")))
    except ValueError:
        return None


@contextmanager
def translated(operation: str) -> Iterator[None]:
    """Run Azure SDK calls, raising tunefleet's errors for azure-core's, each with Azure's
    code and HTTP status.

    404: ProviderNotFoundError. 409 or a code saying the resource exists:
    AlreadyExistsError. A quota code: QuotaExceededError (the caller says what to request).
    429: ProviderBusyError; other 5xx and lost connections: TransientProviderError (both
    with ``Retry-After``). No usable credential: ProviderError saying where credentials
    come from. Anything else: ProviderError with Azure's code and message.
    """
    from azure.core.exceptions import (
        AzureError,
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )

    try:
        yield
    except HttpResponseError as exc:
        status = int(exc.status_code or 0)
        code = error_code(exc)
        message = getattr(getattr(exc, "error", None), "message", None) or exc.reason or ""
        text = f"{operation}: {code}: {message}".rstrip(": ")
        kind: type[ProviderError] = ProviderError
        if status == 404 or code in _NOT_FOUND:
            kind = ProviderNotFoundError
        elif code in _QUOTA:
            kind = QuotaExceededError
        elif status == 409 or code in _EXISTS:
            kind = AlreadyExistsError
        elif status == 429 or code in _BUSY:
            kind = ProviderBusyError
        elif status >= 500 or code in _TRANSIENT:
            kind = TransientProviderError
        elif isinstance(exc, ClientAuthenticationError) or status in (401, 403):
            text += (
                " (the signed-in identity needs a role on the workspace: see "
                "docs/providers/azureml.md)"
            )
        error = kind(PROVIDER, text, code=code, status=status)
        if isinstance(error, TransientProviderError):
            error.retry_after = _retry_after(exc)
        raise error from None
    except ClientAuthenticationError as exc:
        # CredentialUnavailableError is one: no source of DefaultAzureCredential answered.
        raise ProviderError(
            PROVIDER,
            f"{operation}: no Azure credentials: sign in (az login, a managed or workload "
            "identity, or AZURE_CLIENT_ID with AZURE_TENANT_ID and a secret or certificate "
            f"in the environment); a spec never holds keys ({type(exc).__name__})",
            code="NoCredentials",
        ) from None
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise TransientProviderError(PROVIDER, f"{operation}: {exc}") from None
    except AzureError as exc:
        raise ProviderError(PROVIDER, f"{operation}: {exc}") from None

"""Azure OpenAI: the data-plane client, and Resource Manager for what only it does.

The data plane (files, fine-tuning jobs, chat) is OpenAI's API under the resource's endpoint,
driven by the SDK's ``AzureOpenAI`` client. Two things go through Azure Resource Manager
with ``azure-mgmt-cognitiveservices``: reading the resource's location (so a placement policy
is checked against where the data really goes) and deploying a fine-tuned model, which on
Azure must be deployed before it answers. Credentials: ``AZURE_OPENAI_API_KEY`` for the data
plane if set, and otherwise, and always for Resource Manager, ``DefaultAzureCredential``.
Both SDKs are imported by the first call that needs them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from tunefleet.errors import ProviderError, TransientProviderError
from tunefleet_openai._client import PROVIDER, redact
from tunefleet_openai.options import OpenAIOptions

if TYPE_CHECKING:
    import openai

__all__ = ["AZURE_FINE_TUNING_REGIONS", "Management", "make_azure_client"]

AZURE_FINE_TUNING_REGIONS = ("eastus2", "northcentralus", "swedencentral")
"""Regions where an Azure OpenAI resource could run fine-tuning jobs (standard training),
from Microsoft's model availability tables as of 2025-06."""
COGNITIVE_SERVICES_SCOPE = "https://cognitiveservices.azure.com/.default"
INSTALL_HINT = (
    "pip install 'tunefleet-openai[azure]' (azure-identity, azure-mgmt-cognitiveservices)"
)


def _credential() -> Any:
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError:
        raise ProviderError(
            PROVIDER, f"flavor azure needs the Azure SDKs: {INSTALL_HINT}"
        ) from None
    return DefaultAzureCredential()


def make_azure_client(options: OpenAIOptions) -> openai.AzureOpenAI:
    """The data-plane client of the options' resource."""
    import openai

    auth: dict[str, Any] = {}
    if not os.environ.get("AZURE_OPENAI_API_KEY"):
        from azure.identity import get_bearer_token_provider

        auth["azure_ad_token_provider"] = get_bearer_token_provider(
            _credential(), COGNITIVE_SERVICES_SCOPE
        )
    return openai.AzureOpenAI(
        azure_endpoint=options.endpoint,
        api_version=options.api_version,
        max_retries=options.max_retries,
        timeout=options.request_timeout,
        **auth,
    )


@contextmanager
def _translated(operation: str) -> Iterator[None]:
    """Azure SDK errors as tunefleet's: throttling and 5xx transient, the rest permanent."""
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
        ) from None
    except HttpResponseError as exc:
        status = exc.status_code or 0
        text = redact(f"{operation}: HTTP {status}: {exc.message}")
        if status == 429 or status >= 500:
            raise TransientProviderError(PROVIDER, text) from None
        raise ProviderError(PROVIDER, text) from None
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise TransientProviderError(PROVIDER, f"{operation}: {exc.message}") from None


class Management:
    """The resource as Azure Resource Manager sees it."""

    def __init__(self, options: OpenAIOptions) -> None:
        self._options = options
        self._client: Any = None

    def _arm(self) -> Any:
        if self._client is None:
            try:
                from azure.mgmt.cognitiveservices import CognitiveServicesManagementClient
            except ImportError:
                raise ProviderError(
                    PROVIDER, f"flavor azure needs the Azure SDKs: {INSTALL_HINT}"
                ) from None
            self._client = CognitiveServicesManagementClient(
                _credential(),
                str(self._options.azure_subscription_id),
                base_url=self._options.azure_management_url,
            )
        return self._client

    @property
    def resource_id(self) -> str:
        o = self._options
        return (
            f"/subscriptions/{o.azure_subscription_id}/resourceGroups/{o.azure_resource_group}"
            f"/providers/Microsoft.CognitiveServices/accounts/{o.azure_resource}"
        )

    def location(self) -> str:
        """Where the resource is (``swedencentral``): where its data and jobs live."""
        o = self._options
        with _translated("read the Azure OpenAI resource"):
            account = self._arm().accounts.get(o.azure_resource_group, o.azure_resource)
        return str(account.location).replace(" ", "").lower()

    def deploy(self, name: str, model: str, tags: dict[str, str]) -> str:
        """Deploy ``model`` as deployment ``name``; returns its resource id once it succeeded."""
        from azure.mgmt.cognitiveservices.models import (
            Deployment,
            DeploymentModel,
            DeploymentProperties,
            Sku,
        )

        o = self._options
        deployment = Deployment(
            sku=Sku(name=o.deployment_sku, capacity=o.deployment_capacity),
            properties=DeploymentProperties(
                model=DeploymentModel(format="OpenAI", name=model, version="1")
            ),
            tags=tags or None,
        )
        with _translated(f"deploy {model} as {name}"):
            poller = self._arm().deployments.begin_create_or_update(
                o.azure_resource_group, o.azure_resource, name, deployment
            )
            done = poller.result()
        state = getattr(done.properties, "provisioning_state", None)
        if state != "Succeeded":
            raise ProviderError(PROVIDER, f"deployment {name} ended {state}, not Succeeded")
        return str(done.id)

    def delete(self, name: str) -> None:
        """Delete deployment ``name``; a missing one is already deleted."""
        from azure.core.exceptions import ResourceNotFoundError

        o = self._options
        with _translated(f"delete deployment {name}"):
            try:
                self._arm().deployments.begin_delete(
                    o.azure_resource_group, o.azure_resource, name
                ).result()
            except ResourceNotFoundError:
                return

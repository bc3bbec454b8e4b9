"""Azure OpenAI through Azure Resource Manager: what the data plane cannot do.

The data plane (files, fine-tuning jobs, chat) is OpenAI's API under the resource's
endpoint, driven by the SDK's ``AzureOpenAI`` client (:func:`tunefleet_openai._client.
make_client`). Two things go through Resource Manager with ``azure-mgmt-cognitiveservices``:
reading the resource's location (so a placement policy is checked against where the data
really goes) and deploying a fine-tuned model, which on Azure must be deployed before it
answers. Resource Manager signs in with ``DefaultAzureCredential``; its errors are
translated by :func:`tunefleet_openai._client.azure_translated`. The SDK is imported by the
first call that needs it.
"""

from __future__ import annotations

from typing import Any

from tunefleet.errors import ProviderError, ProviderNotFoundError
from tunefleet_openai._client import (
    AZURE_INSTALL_HINT,
    PROVIDER,
    azure_credential,
    azure_translated,
)
from tunefleet_openai.options import OpenAIOptions

__all__ = ["AZURE_FINE_TUNING_REGIONS", "Management"]

AZURE_FINE_TUNING_REGIONS = ("eastus2", "northcentralus", "swedencentral")
"""Regions where an Azure OpenAI resource could run fine-tuning jobs (standard training),
from Microsoft's model availability tables as of 2025-06."""


class Management:
    """The options' Azure OpenAI resource as Azure Resource Manager sees it."""

    def __init__(self, options: OpenAIOptions) -> None:
        self._options = options
        self._client: Any = None

    def _arm(self) -> Any:
        if self._client is None:
            try:
                from azure.mgmt.cognitiveservices import CognitiveServicesManagementClient
            except ImportError:
                raise ProviderError(
                    PROVIDER,
                    f"flavor azure needs the Azure SDKs: {AZURE_INSTALL_HINT}",
                    code="missing_sdk",
                ) from None
            self._client = CognitiveServicesManagementClient(
                azure_credential(),
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

    @property
    def console_url(self) -> str:
        """The resource's page in the Azure portal."""
        return f"https://portal.azure.com/#resource{self.resource_id}/overview"

    def location(self) -> str:
        """Where the resource is (``swedencentral``): where its data and jobs live."""
        o = self._options
        with azure_translated("read the Azure OpenAI resource"):
            account = self._arm().accounts.get(o.azure_resource_group, o.azure_resource)
        return str(account.location).replace(" ", "").lower()

    def deploy(self, request: dict[str, Any]) -> str:
        """Send a planned ``Deployments_CreateOrUpdate`` request, placeholders filled in;
        returns the deployment's resource id once it succeeded."""
        from azure.mgmt.cognitiveservices.models import Deployment

        name = request["deploymentName"]
        with azure_translated(f"deploy {name}"):
            poller = self._arm().deployments.begin_create_or_update(
                request["resourceGroupName"],
                request["accountName"],
                name,
                Deployment.from_dict(request["deployment"]),
            )
            done = poller.result()
        state = getattr(done.properties, "provisioning_state", None)
        if state != "Succeeded":
            raise ProviderError(
                PROVIDER,
                f"deployment {name} ended {state}, not Succeeded",
                code=str(state),
            )
        return str(done.id)

    def delete(self, name: str) -> None:
        """Delete deployment ``name``; a missing one is already deleted."""
        o = self._options
        try:
            with azure_translated(f"delete deployment {name}"):
                self._arm().deployments.begin_delete(
                    o.azure_resource_group, o.azure_resource, name
                ).result()
        except ProviderNotFoundError:
            return

"""The Azure Machine Learning provider's target options (``targets[].options`` of a spec).

Credentials are not options: azure-identity's ``DefaultAzureCredential`` supplies them
(environment, workload identity, managed identity, ``az login``). Every name that reaches
a resource path or a URL is validated here with the rule Microsoft documents for it.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

__all__ = ["AzureMLOptions"]


def _https_url(value: str) -> str:
    """An https URL without credentials, query or fragment: bearer tokens travel with
    every request, and azure-core refuses to send them over plain http."""
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError("must be an https URL")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("must not carry credentials, a query or a fragment")
    return value.rstrip("/")


def _key_prefix(value: str) -> str:
    if value.startswith("/") or ".." in value.split("/"):
        raise ValueError("must not start with / or hold a .. segment")
    return value.strip("/")


HttpsUrl = Annotated[str, AfterValidator(_https_url)]
SubscriptionId = Annotated[
    str,
    Field(pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"),
]
ResourceGroup = Annotated[str, Field(pattern=r"^[-\w.()]{0,89}[-\w()]$")]
"""1-90 letters, digits, underscores, parentheses, hyphens and periods, not ending in a
period (Naming rules for Azure resources, Microsoft.Resources/resourcegroups,
https://learn.microsoft.com/azure/azure-resource-manager/management/resource-name-rules)."""
WorkspaceName = Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_-]{2,32}$")]
"""3-33 characters, letters, digits, hyphens and underscores, starting with a letter or
digit (the same page, Microsoft.MachineLearningServices/workspaces)."""
DatastoreName = Annotated[str, Field(pattern=r"^[a-zA-Z0-9_]{1,255}$")]
"""Letters, digits and underscores (Azure ML datastores; ``workspaceblobstore`` is the
default every workspace has)."""
ComputeName = Annotated[str, Field(pattern=r"^[a-zA-Z][a-zA-Z0-9-]{1,14}[a-zA-Z0-9]$")]
"""A compute cluster: 3-16 characters, letters, digits and hyphens, starting with a
letter (Microsoft.MachineLearningServices/workspaces/computes in the naming rules)."""
VmSize = Annotated[str, Field(pattern=r"^Standard_[A-Za-z0-9_]{2,60}$")]
"""An Azure VM size as Azure ML names it (``Standard_NC24ads_A100_v4``)."""
ImageRef = Annotated[
    str,
    Field(
        pattern=r"^[a-z0-9][a-z0-9.-]*(:[0-9]+)?/[a-z0-9._/-]+(:[A-Za-z0-9_.-]+|@sha256:[0-9a-f]{64})$",
        max_length=512,
    ),
]
"""A container image with its registry and a tag or digest
(``acme.azurecr.io/tunefleet-trainer:0.1.0``)."""
EncryptionScope = Annotated[str, Field(pattern=r"^[a-zA-Z0-9]{3,63}$")]
"""A storage account's encryption scope: 3-63 letters and digits (Create an encryption
scope, https://learn.microsoft.com/azure/storage/common/encryption-scope-manage)."""
KeyVaultKey = Annotated[
    str,
    Field(
        pattern=r"^https://[a-zA-Z0-9-]{3,24}\.(vault|managedhsm)\.[a-z0-9.]+/keys/[a-zA-Z0-9-]{1,127}(/[0-9a-f]{32})?$"
    ),
]
"""A Key Vault key identifier, with or without its version."""
ExperimentName = Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$")]


class AzureMLOptions(BaseModel):
    """Options of the ``azureml`` provider."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subscription_id: SubscriptionId
    resource_group: ResourceGroup
    workspace: WorkspaceName
    """The Azure ML workspace that holds the jobs, the data assets and the endpoints. Its
    region is where everything runs: plan checks the target's region, and staging checks
    the workspace itself, before anything is uploaded."""
    management_url: HttpsUrl = "https://management.azure.com"
    """Azure Resource Manager of the cloud the workspace is in (Azure operated by 21Vianet:
    ``https://management.chinacloudapi.cn``; Azure Government:
    ``https://management.usgovcloudapi.net``)."""
    datastore: DatastoreName = "workspaceblobstore"
    """The blob datastore the datasets and the job's outputs go to."""
    storage_account_url: HttpsUrl | None = None
    """The datastore's blob endpoint, when it is not ``https://<account>.blob.<suffix>``
    as the datastore says (a custom domain, an emulator)."""
    prefix: Annotated[str, AfterValidator(_key_prefix)] = Field(
        default="tunefleet", pattern=r"^[A-Za-z0-9_./-]*$", max_length=256
    )
    """Path prefix inside the datastore's container."""
    mode: Literal["command", "finetuning"] = "command"
    """``command``: a command job runs tunefleet's trainer on open weights (every method and
    adapter). ``finetuning``: Azure ML's serverless fine-tuning of a model catalog model
    (supervised; the service chooses the adapter and most hyperparameters)."""
    training_image: ImageRef | None = None
    """The trainer image (deploy/trainer) in a registry the workspace can pull from (its
    Azure Container Registry); required in ``command`` mode."""
    compute: ComputeName | None = None
    """A compute cluster of the workspace to train on; without one, the job runs on
    serverless compute of ``instance_type``."""
    instance_type: VmSize = "Standard_NC24ads_A100_v4"
    """Serverless compute's VM size when the spec's compute names none."""
    processes_per_instance: int | None = Field(default=None, ge=1, le=16)
    """Trainer processes per node (one per GPU); more than one process or one node runs
    under torch distributed (Azure ML's PyTorch distribution sets its environment)."""
    max_runtime_hours: float = Field(default=24.0, gt=0, le=720)
    """Cancel the job after this long when the spec's compute says nothing."""
    experiment_name: ExperimentName = "tunefleet"
    """The experiment the jobs are listed under in Azure ML studio."""
    encryption_scope: EncryptionScope | None = None
    """The storage account's encryption scope (backed by your Key Vault key) the staged
    datasets are written with; required under ``placement.require_customer_managed_key``."""
    key_vault_key: KeyVaultKey | None = None
    """The Key Vault key the workspace must be encrypted with under
    ``placement.require_customer_managed_key`` (any customer key, when unset)."""
    upload_block_mb: int = Field(default=8, ge=1, le=4000)
    """Datasets go up in blocks of this size, several at once."""
    upload_concurrency: int = Field(default=4, ge=1, le=32)
    serving_image: ImageRef | None = None
    """Inference container for online deployments; default Hugging Face's TGI image from
    ghcr.io (see docs/providers/azureml.md). Under a private-network policy it must be in
    the workspace's container registry."""
    endpoint_instance_type: VmSize = "Standard_NC24ads_A100_v4"
    """Serving VM size when the spec's endpoint names none."""
    endpoint_auth: Literal["key", "aad"] = "key"
    """How callers authenticate to online endpoints: endpoint keys, or Microsoft Entra
    tokens (``aad``: no key exists to leak)."""
    mirror_percent: int | None = Field(default=None, ge=1, le=50)
    """During a canary rollout, copy this share of the live requests to the new version
    before it takes any (Azure ML's mirrored traffic: its answers are dropped), so it runs
    under real load first. Azure ML mirrors at most 50%."""
    price_per_hour: float | None = Field(default=None, ge=0)
    """USD per VM-hour, replacing the price table."""
    low_priority_discount: float = Field(default=0.8, ge=0, lt=1)
    """Share off the price assumed for spot (low-priority) capacity in estimates."""
    tokens_per_second: float | None = Field(default=None, gt=0)
    """Training throughput per VM assumed for estimates, replacing the table's."""

    @property
    def workspace_id(self) -> str:
        """The workspace's Azure Resource Manager id."""
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace}"
        )

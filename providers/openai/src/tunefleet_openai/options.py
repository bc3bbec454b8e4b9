"""The OpenAI provider's target options (``targets[].options`` of a spec)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

__all__ = ["OpenAIOptions"]

MiB = 1 << 20
_LOCAL = frozenset(
    {"suffix", "max_concurrent_jobs", "multipart_threshold_bytes", "upload_part_bytes"}
)
"""Options only planning, staging and submitting read: a later call has no use for them."""
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def _api_url(value: str) -> str:
    """An https URL, or http on this machine only: the API key travels with every request."""
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("must be an http(s) URL such as https://api.openai.com/v1")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError("must use https (plain http is allowed only to this machine)")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("must not carry credentials, a query or a fragment")
    return value.rstrip("/")


ApiUrl = Annotated[str, AfterValidator(_api_url)]


AzureName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.()-]{0,89}$")]
"""A resource group, account or deployment name as Azure Resource Manager allows them."""


class OpenAIOptions(BaseModel):
    """Options of the ``openai`` provider.

    Credentials are not options. The OpenAI API's come from ``OPENAI_API_KEY`` (and
    ``OPENAI_ORG_ID``, ``OPENAI_PROJECT_ID``); Azure OpenAI's from ``AZURE_OPENAI_API_KEY``
    or, without one, Microsoft Entra ID through azure-identity's ``DefaultAzureCredential``
    (environment, workload or managed identity, ``az login``), which deployments need anyway.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    flavor: Literal["openai", "azure"] = "openai"
    """``openai``: the OpenAI API. ``azure``: an Azure OpenAI resource, in its region."""
    azure_subscription_id: str | None = Field(
        default=None,
        pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
    )
    """Azure: the subscription holding the resource."""
    azure_resource_group: AzureName | None = None
    """Azure: the resource group holding the resource."""
    azure_resource: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{1,62}$")
    """Azure: the Azure OpenAI resource (account) name."""
    azure_endpoint: ApiUrl | None = None
    """Azure: the resource's endpoint; default ``https://<azure_resource>.openai.azure.com``."""
    api_version: str = Field(
        default="2025-04-01-preview", pattern=r"^\d{4}-\d{2}-\d{2}(-preview)?$"
    )
    """Azure: the data-plane API version."""
    azure_management_url: ApiUrl = "https://management.azure.com"
    """Azure: the Resource Manager endpoint (another for sovereign clouds)."""
    deployment_sku: str = Field(default="Standard", pattern=r"^[A-Za-z]{1,32}$")
    """Azure: the deployment type of a served model (Standard, GlobalStandard, Developer)."""
    deployment_capacity: int = Field(default=1, ge=1, le=10_000)
    """Azure: the deployment's capacity, in thousands of tokens per minute."""

    base_url: ApiUrl | None = None
    """API root; default ``$OPENAI_BASE_URL``, else https://api.openai.com/v1 (set it for a
    gateway or a regional endpoint)."""
    organization: str | None = Field(default=None, pattern=r"^org-[A-Za-z0-9]{1,64}$")
    """Organization to bill; default ``$OPENAI_ORG_ID`` or the key's default."""
    project: str | None = Field(default=None, pattern=r"^proj_[A-Za-z0-9]{1,64}$")
    """Project the jobs and files belong to; default ``$OPENAI_PROJECT_ID`` or the key's."""
    suffix: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    """Added to the fine-tuned model's name (``ft:gpt-4o-mini:acme:<suffix>:id``); default
    the run name. Letters, digits, ``-`` and ``_`` (Azure's characters). Its length is
    checked at plan against the flavour's limit: 64 on the OpenAI API
    (CreateFineTuningJobRequest.suffix), 40 on Azure, where tunefleet adds ``-`` and 16
    characters of the run key, leaving 23 (:mod:`tunefleet_openai._limits`)."""
    training_price_per_million_tokens: float | None = Field(default=None, ge=0)
    """USD per million training tokens, replacing the built-in price table."""
    max_concurrent_jobs: int | None = Field(default=None, ge=1, le=100)
    """Queue a submission while this many of the project's jobs are unfinished, to leave
    slots free for others; unset, only the service's own limit queues."""
    multipart_threshold_bytes: int = Field(default=32 * MiB, ge=1, le=512 * MiB)
    """Files at least this large go through the Uploads API in parts, with progress."""
    upload_part_bytes: int = Field(default=64 * MiB, ge=1, le=64 * MiB)
    """Size of each part of a multipart upload (the API takes at most 64 MB a part)."""
    request_timeout: float = Field(default=120.0, gt=0, le=3600)
    """Seconds one HTTP request may take."""
    max_retries: int = Field(default=3, ge=0, le=10)
    """Retries of one throttled or failed request (with backoff, honouring Retry-After)
    before the step fails and the run engine retries it: by the SDK, except for a job's
    create and each question an evaluation asks, which tunefleet retries as many times."""

    @model_validator(mode="after")
    def _flavor_settings(self) -> OpenAIOptions:
        if self.flavor == "azure":
            missing = [
                name
                for name in ("azure_subscription_id", "azure_resource_group", "azure_resource")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"flavor azure needs {', '.join(missing)}")
            if self.base_url or self.organization or self.project:
                raise ValueError(
                    "base_url, organization and project are the OpenAI API's; flavor azure "
                    "takes azure_endpoint"
                )
        else:
            azure = [
                name
                for name in ("azure_subscription_id", "azure_resource_group", "azure_resource")
                if getattr(self, name) is not None
            ]
            if azure or self.azure_endpoint:
                raise ValueError("azure_* options need flavor: azure")
        return self

    @property
    def endpoint(self) -> str:
        """Azure: the resource's data-plane endpoint."""
        return self.azure_endpoint or f"https://{self.azure_resource}.openai.azure.com"

    def scope(self) -> dict[str, str]:
        """What a job's or an endpoint's later calls need of these options (where the
        service is, whose project or resource it is, the price a job's actual cost is worked
        out with), for :attr:`JobRef.scope`; none of it is a secret."""
        wanted = self.model_dump(exclude=set(_LOCAL), exclude_none=True, exclude_defaults=True)
        return {key: str(value) for key, value in wanted.items()}

    @classmethod
    def from_scope(cls, scope: Mapping[str, str]) -> OpenAIOptions:
        """The options recorded in a job's or an endpoint's scope."""
        return cls.model_validate(scope)

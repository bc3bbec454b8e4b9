"""The Vertex AI provider's target options (``targets[].options`` of a spec).

Credentials are not options: Application Default Credentials supply them (the
``GOOGLE_APPLICATION_CREDENTIALS`` file, ``gcloud auth application-default login``, the
attached service account on Google Cloud). Every name that reaches a resource path or a URL
is validated here with the rule Google documents for it.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

__all__ = ["ADAPTER_SIZES", "VertexOptions"]


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _endpoint_url(value: str) -> str:
    """An https URL without credentials, query or fragment; plain http only to a loopback
    address (an emulator on this machine): bearer tokens travel with every request."""
    parts = urlsplit(value)
    if not parts.hostname or parts.scheme not in ("https", "http"):
        raise ValueError("must be an https URL")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise ValueError("must be an https URL (plain http only to a loopback address)")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("must not carry credentials, a query or a fragment")
    return value.rstrip("/")


def _object_prefix(value: str) -> str:
    if value.startswith("/") or ".." in value.split("/"):
        raise ValueError("must not start with / or hold a .. segment")
    return value.strip("/")


EndpointUrl = Annotated[str, AfterValidator(_endpoint_url)]
ProjectId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")]
"""6-30 lowercase letters, digits and hyphens, starting with a letter, not ending with a
hyphen ("Creating and managing projects", https://cloud.google.com/resource-manager/docs/creating-managing-projects)."""
BucketName = Annotated[
    str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$|^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
]
"""3-63 lowercase letters, digits, hyphens and underscores, starting and ending with a
letter or digit; dotted names up to 222 ("Bucket naming", https://cloud.google.com/storage/docs/buckets#naming)."""
ObjectPrefix = Annotated[str, Field(max_length=512), AfterValidator(_object_prefix)]
MachineType = Annotated[str, Field(pattern=r"^[a-z][a-z0-9]*-[a-z0-9-]{2,40}$")]
"""A Compute Engine machine type (``g2-standard-12``, ``a2-highgpu-1g``, ``n1-standard-8``)."""
AcceleratorType = Annotated[str, Field(pattern=r"^(NVIDIA|TPU)_[A-Z0-9_]{2,40}$")]
"""An ``AcceleratorType`` enum name of the Vertex API (``NVIDIA_L4``, ``NVIDIA_TESLA_A100``)."""
ImageRef = Annotated[
    str,
    Field(
        pattern=r"^[a-z0-9][a-z0-9.-]*(:[0-9]+)?/[a-z0-9._/-]+(:[A-Za-z0-9_.-]+|@sha256:[0-9a-f]{64})$",
        max_length=512,
    ),
]
"""A container image in a registry Vertex can pull (Artifact Registry:
``europe-west4-docker.pkg.dev/PROJECT/REPO/IMAGE:TAG``), by tag or digest."""
ServiceAccount = Annotated[
    str, Field(pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z0-9.-]+\.iam\.gserviceaccount\.com$")
]
Network = Annotated[
    str, Field(pattern=r"^projects/[0-9]{1,20}/global/networks/[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
]
"""A peered VPC network, as CustomJobSpec.network names it: ``projects/{project number}/
global/networks/{network}`` (the project's number, not its ID)."""
NetworkAttachment = Annotated[
    str,
    Field(
        pattern=r"^projects/[a-z0-9-]{1,30}/regions/[a-z0-9-]{1,40}/networkAttachments/[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"
    ),
]
"""A Private Service Connect network attachment (``PscInterfaceConfig.networkAttachment``)."""
KmsKeyName = Annotated[
    str,
    Field(
        pattern=r"^projects/[a-z0-9-]{1,30}/locations/[a-z0-9-]{1,40}/keyRings/[A-Za-z0-9_-]{1,63}/cryptoKeys/[A-Za-z0-9_-]{1,63}$"
    ),
]
"""A Cloud KMS key: ``projects/P/locations/L/keyRings/R/cryptoKeys/K`` (EncryptionSpec.kmsKeyName)."""

ADAPTER_SIZES = (1, 2, 4, 8, 16, 32)
"""``SupervisedHyperParameters.adapterSize``: ADAPTER_SIZE_ONE ... ADAPTER_SIZE_THIRTY_TWO."""


class VertexOptions(BaseModel):
    """Where and how a target runs on Vertex AI. ``mode`` chooses the route: ``custom``
    (tunefleet's trainer in a custom job, open-weight models) or ``tuning`` (Vertex's
    supervised tuning of a Gemini model)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    project: ProjectId
    """The Google Cloud project (its ID) jobs, models and endpoints belong to."""
    bucket: BucketName
    """The Cloud Storage bucket datasets are staged to and jobs write their outputs to; it
    should be in the target's region (Vertex reads it from there)."""
    prefix: ObjectPrefix = "tunefleet"
    """Where in the bucket tunefleet writes: ``<prefix>/datasets/``, ``<prefix>/jobs/``."""
    mode: Literal["custom", "tuning"] = "custom"

    # Custom jobs.
    training_image: ImageRef | None = None
    """tunefleet's trainer image (deploy/trainer), pushed where the job can pull it."""
    machine_type: MachineType = "g2-standard-12"
    """The machine of each replica when ``compute.instance_type`` is not set."""
    accelerator_type: AcceleratorType | None = None
    """GPUs attached to each replica; for machine families with built-in GPUs (a2, a3,
    g2) tunefleet knows the type and count, for n1 machines name them."""
    accelerator_count: int | None = Field(default=None, ge=1, le=16)
    processes_per_replica: int | None = Field(default=None, ge=1, le=16)
    """Trainer processes per replica (default: one per GPU)."""
    boot_disk_type: Literal["pd-ssd", "pd-standard", "hyperdisk-balanced"] | None = None
    """The values DiskSpec.bootDiskType takes; unset: Vertex's default for the machine
    (pd-ssd, hyperdisk-balanced for A3 Ultra machines)."""
    boot_disk_size_gb: int = Field(default=200, ge=100, le=64_000)
    """Used unless ``compute.volume_size_gb`` is set (Vertex's default is 100 GB)."""
    service_account: ServiceAccount | None = None
    """The identity the job runs as (default: Vertex's per-project service agent)."""
    network: Network | None = None
    """Run the job peered with this VPC (private services access)."""
    psc_network_attachment: NetworkAttachment | None = None
    """Or reach your VPC through a Private Service Connect interface."""
    reserved_ip_ranges: tuple[str, ...] = ()
    """Names of the peered network's reserved ranges the job may use."""
    max_runtime_hours: float = Field(default=24.0, gt=0, le=168)
    """The job's ``scheduling.timeout`` unless ``compute.max_runtime_hours`` is set."""

    # Gemini tuning.
    adapter_size: Literal[1, 2, 4, 8, 16, 32] | None = None
    """The tuning job's adapter size (LoRA rank); the service chooses when unset."""

    # Endpoints (custom jobs' models).
    serving_image: ImageRef | None = None
    """The serving container: a vLLM OpenAI server that loads a gs:// model (Vertex Model
    Garden's vLLM image) or Hugging Face's TGI container for Vertex."""
    serving_framework: Literal["vllm", "tgi"] = "vllm"
    serving_machine_type: MachineType = "g2-standard-12"
    serving_accelerator_type: AcceleratorType | None = None
    serving_accelerator_count: int | None = Field(default=None, ge=1, le=16)
    prediction_url: EndpointUrl | None = None
    """Where prediction requests go instead of the endpoint's dedicated DNS name: the
    address of a private endpoint's Private Service Connect endpoint in your network."""

    # Both.
    kms_key_name: KmsKeyName | None = None
    """The Cloud KMS key that encrypts the staged datasets, the jobs, and the models and
    endpoints tunefleet creates; required under ``require_customer_managed_key``."""
    api_endpoint: EndpointUrl | None = None
    """Vertex's API host (default ``https://{region}-aiplatform.googleapis.com``); a
    Private Service Connect endpoint for Google APIs goes here."""
    storage_endpoint: EndpointUrl | None = None
    """Cloud Storage's JSON API host (default ``https://storage.googleapis.com``)."""
    logging_endpoint: EndpointUrl | None = None
    """Cloud Logging's API host (default ``https://logging.googleapis.com``)."""
    upload_chunk_mb: int = Field(default=16, ge=1, le=1024)
    """Resumable upload chunk size (a multiple of 256 KiB, as Cloud Storage requires)."""

    # Cost.
    price_per_hour: float | None = Field(default=None, gt=0)
    """USD per replica-hour, replacing the price table's figure."""
    spot_discount: float = Field(default=0.6, ge=0, lt=1)
    """The share off on-demand assumed for Spot VMs (Google quotes 60-91%)."""
    tokens_per_second: float | None = Field(default=None, gt=0)
    """Training throughput per replica, replacing the assumed figure."""
    tuning_price_per_million_tokens: float | None = Field(default=None, gt=0)
    """USD per million training tokens of Gemini tuning, replacing the price list's."""

    @model_validator(mode="after")
    def _consistent(self) -> VertexOptions:
        if self.accelerator_count is not None and self.accelerator_type is None:
            raise ValueError("accelerator_count needs accelerator_type")
        if self.serving_accelerator_count is not None and self.serving_accelerator_type is None:
            raise ValueError("serving_accelerator_count needs serving_accelerator_type")
        if self.network is not None and self.psc_network_attachment is not None:
            raise ValueError(
                "network and psc_network_attachment exclude each other (a job is peered "
                "with a VPC or reaches it through Private Service Connect)"
            )
        if self.reserved_ip_ranges and self.network is None:
            raise ValueError("reserved_ip_ranges needs network")
        return self

    def region_endpoint(self, region: str) -> str:
        """Vertex's API host for ``region`` (the regional endpoint its resources live on)."""
        return self.api_endpoint or f"https://{region}-aiplatform.googleapis.com"

    def object_name(self, *parts: str) -> str:
        """An object name under the prefix."""
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))

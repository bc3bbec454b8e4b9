"""The HyperPod provider's target options (``targets[].options`` of a spec).

One model for both orchestrators: the cluster says which one it has (DescribeCluster's
``Orchestrator``), and plan refuses the options of the other with the reason.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from tunefleet_sagemaker.options import Bucket, ImageUri, KmsKey

__all__ = ["HyperPodOptions"]

ClusterNameOrArn = Annotated[
    str,
    Field(
        # botocore's sagemaker model, shape ClusterNameOrArn.
        pattern=r"^((arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{12}:cluster/[a-z0-9]{12})"
        r"|([a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}))$",
        max_length=256,
    ),
]
DnsLabel = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
"""A Kubernetes namespace or service account name (RFC 1123 label)."""
DnsSubdomain = Annotated[
    str,
    Field(
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", max_length=253
    ),
]
"""A Kubernetes object name such as a PersistentVolumeClaim's or a PriorityClass's."""


def _absolute(value: str) -> str:
    if not value.startswith("/") or ".." in value.split("/"):
        raise ValueError("must be an absolute path without a .. segment")
    return value.rstrip("/") or "/"


AbsolutePath = Annotated[
    str, Field(pattern=r"^/[A-Za-z0-9_./-]*$", max_length=1024), AfterValidator(_absolute)
]
LabelValue = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$", max_length=63)
]
"""A Kubernetes label value (Kueue's queue and priority class are labels)."""


def _key_prefix(value: str) -> str:
    if value.startswith("/") or ".." in value.split("/"):
        raise ValueError("must not start with / or hold a .. segment")
    return value


KeyPrefix = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9_./-]*$", max_length=256), AfterValidator(_key_prefix)
]
"""An S3 key prefix that is also a safe path on the shared storage and in a shell script
(narrower than S3 allows: no quotes, stars or brackets)."""
SlurmName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=64)]
SshDestination = Annotated[
    str, Field(pattern=r"^([a-z_][a-z0-9_-]*@)?[A-Za-z0-9][A-Za-z0-9_.:-]*$", max_length=255)
]
"""``[user@]host``: a host name, an address, or a ``Host`` alias of the ssh configuration.
A leading ``-`` is impossible, so it can never be read as an option of ``ssh``."""


class HyperPodOptions(BaseModel):
    """Options of the ``hyperpod`` provider. Credentials are not options: boto3's chain
    gives AWS's, a kubeconfig context or a token signed with them gives the cluster's, and
    ssh's own configuration (keys, agents, ProxyCommand) gives the head node's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cluster: ClusterNameOrArn
    """The HyperPod cluster, by name or ARN, in the target's region."""
    bucket: Bucket
    """S3 bucket datasets are staged to; the cluster's shared file system must show it
    (``shared_path``). It must be in the target's region."""
    prefix: KeyPrefix = "tunefleet"
    """Key prefix inside the bucket: datasets, then each job's outputs."""
    kms_key_id: KmsKey | None = None
    """Customer-managed KMS key (key id or key ARN) of the staged datasets (SSE-KMS)."""
    upload_part_mb: int | None = Field(default=None, ge=5, le=5120)
    """Datasets of this many MiB or more go to S3 in parts of this size, 8 at once (S3 takes
    parts of 5 MiB to 5 GiB, at most 10,000 of them: a size too small for a dataset is
    refused before its upload). Default: chosen from each dataset's size, boto3's 8 MiB
    parts, larger only where 10,000 of those would not hold the file."""
    shared_path: AbsolutePath = "/fsx"
    """Where the jobs see ``s3://<bucket>/`` on the cluster's shared storage: an FSx for
    Lustre file system linked to the bucket by a data repository association (auto-import
    and auto-export), or a Mountpoint for Amazon S3 volume. ``s3://<bucket>/<key>`` is the
    file ``<shared_path>/<key>``; the model and checkpoints are written there too."""
    instance_group: SlurmName | None = None
    """The instance group the job runs on; default the one of the spec's instance type
    (compute.instance_type), or the cluster's only accelerated group."""
    nproc_per_node: int | None = Field(default=None, ge=1, le=64)
    """Training processes per node; default one per GPU of the instance type (1 without).
    Required for an instance type tunefleet's table does not know (pricing.py), and then
    also the GPUs each EKS pod asks for."""
    price_per_hour: float | None = Field(default=None, ge=0)
    """USD per instance-hour of the cluster's instances, replacing the price table."""
    tokens_per_second: float | None = Field(default=None, gt=0)
    """Training throughput per instance assumed for estimates, replacing the table's."""

    # Amazon EKS orchestrator
    namespace: DnsLabel = "default"
    """Kubernetes namespace of the job (with task governance, the team's
    ``hyperpod-ns-<team>``)."""
    kube_context: str | None = Field(default=None, min_length=1, max_length=512)
    """kubeconfig context to reach the cluster's EKS API with (``$KUBECONFIG`` or
    ``~/.kube/config``); default a token signed from the AWS credential chain for the
    EKS cluster DescribeCluster names, as ``aws eks get-token`` makes."""
    training_image: ImageUri | None = None
    """The trainer image (deploy/trainer) with the HyperPod elastic agent; required on EKS."""
    service_account: DnsLabel | None = None
    """Service account of the job's pods (for EKS Pod Identity or IRSA)."""
    storage_claim: DnsSubdomain | None = None
    """PersistentVolumeClaim of the shared storage (FSx for Lustre or Mountpoint for S3),
    mounted at ``shared_path`` in every pod; required on EKS."""
    queue: LabelValue | None = None
    """Kueue local queue (HyperPod task governance: ``hyperpod-ns-<team>-localqueue``)."""
    priority_class: LabelValue | None = None
    """Kueue workload priority class (HyperPod task governance)."""
    efa_per_node: int | None = Field(default=None, ge=0, le=32)
    """Elastic Fabric Adapter devices each pod asks for (``vpc.amazonaws.com/efa``); default
    all the instance type has, as the sagemaker-hyperpod CLI asks (0 turns EFA off)."""
    max_retries: int = Field(default=3, ge=0, le=100)
    """Times HyperPod restarts the job after a node or process fault (runPolicy's
    ``jobMaxRetryCount``); the trainer resumes from its newest checkpoint."""
    serving_image: ImageUri | None = None
    """Inference container the inference operator runs for the spec's endpoint; default
    the region's Hugging Face LLM (TGI) container, which serves the merged model."""
    serving_gpus: int | None = Field(default=None, ge=1, le=64)
    """GPUs each serving replica asks for; default all its instance type has (required for
    a type tunefleet's table does not know)."""

    # Slurm orchestrator
    head_node: SshDestination | None = None
    """``[user@]host`` of the cluster's head node for ssh (a ``Host`` of your ssh
    configuration can route it through SSM Session Manager); None: tunefleet runs on the
    head node and calls Slurm's commands directly."""
    ssh_config: AbsolutePath | None = None
    """ssh configuration file (``ssh -F``); default ssh's own (``~/.ssh/config``)."""
    partition: SlurmName | None = None
    """Slurm partition; default the cluster's default partition."""
    python: AbsolutePath | None = None
    """Python of an environment on shared storage with tunefleet-trainer installed, used
    when no ``container_image`` is given."""
    container_image: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_.:/@#+-]+$", max_length=512
    )
    """Trainer image for pyxis/enroot (``srun --container-image``) on Slurm."""

"""Fixtures of the HyperPod provider's tests: moto for SageMaker, EKS, STS and S3, and a real
Kubernetes API server (:mod:`.kube`) standing for the cluster's EKS control plane.

moto 5.2.5 is corrected in ONE place, :func:`behave_like_aws`, each correction citing its
source:

- DescribeCluster answers the cluster's ``Orchestrator`` as it was created (moto drops it;
  botocore's sagemaker model, DescribeClusterResponse.Orchestrator).
- EKS's DescribeCluster answers the local API server's address and certificate authority
  (moto makes up both), so the provider reaches "the EKS cluster" exactly as it reaches a
  real one: endpoint and CA from EKS, a token signed for STS.

The API server authenticates those tokens through a webhook playing aws-iam-authenticator
against moto's STS (see :mod:`.kube`), and :class:`~.kube.Operator` plays the HyperPod
training operator and the nodes: it creates a job's pods, writes its conditions and serves
the trainer's lines where the provider reads them (the pods' logs).
"""

from __future__ import annotations

import base64
import json
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.providers.hyperpod.kube import KubeCluster, Operator, start_kube_cluster, why_unavailable
from tests.providers.hyperpod.slurm import (
    SlurmCluster,
    SshServer,
    start_slurm,
    start_sshd,
    why_slurm_unavailable,
    why_sshd_unavailable,
)

from tunefleet.provider import JobRef
from tunefleet_trainer.metrics import format_checkpoint_line, format_metric_line

ACCOUNT = "123456789012"
REGION = "eu-west-1"
BUCKET = "acme-hyperpod"
CLUSTER = "tftest"
EKS_CLUSTER = "tftest-eks"
INSTANCE_TYPE = "ml.g5.8xlarge"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/tunefleet-trainer:0.1.0"
DATA = Path(__file__).parents[3] / "examples" / "quickstart" / "data"
SUBNETS = ["subnet-0a1b2c3d4e5f60001"]
SECURITY_GROUPS = ["sg-0a1b2c3d4e5f60001"]


def behave_like_aws(monkeypatch: pytest.MonkeyPatch, kube: KubeCluster | None) -> None:
    """Correct moto where it answers otherwise than AWS (module docstring); with ``kube``,
    EKS clusters are served by that API server."""
    from moto.eks.models import EKSBackend
    from moto.sagemaker.models import Cluster
    from moto.sagemaker.responses import SageMakerResponse

    create_cluster = SageMakerResponse.create_cluster
    describe = Cluster.describe

    def create_keeping_orchestrator(self: Any) -> Any:
        answer = create_cluster(self)
        cluster = self.sagemaker_backend.clusters[self._get_param("ClusterName")]
        cluster.orchestrator = self._get_param("Orchestrator")
        return answer

    def describe_with_orchestrator(self: Any) -> dict[str, Any]:
        described = describe(self)
        if getattr(self, "orchestrator", None):
            described["Orchestrator"] = self.orchestrator
        return described

    monkeypatch.setattr(SageMakerResponse, "create_cluster", create_keeping_orchestrator)
    monkeypatch.setattr(Cluster, "describe", describe_with_orchestrator)
    if kube is None:
        return
    create_eks = EKSBackend.create_cluster

    def create_eks_served_by_the_api_server(self: Any, *args: Any, **kwargs: Any) -> Any:
        cluster = create_eks(self, *args, **kwargs)
        cluster.endpoint = kube.url
        cluster.certificate_authority = {"data": base64.b64encode(kube.ca_pem).decode()}
        return cluster

    monkeypatch.setattr(EKSBackend, "create_cluster", create_eks_served_by_the_api_server)


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory, moto_server: str) -> Iterator[KubeCluster]:
    """A real kube-apiserver with the HyperPodPyTorchJob CRD, authenticating EKS tokens
    against moto's STS, for the session."""
    reason = why_unavailable()
    if reason is not None:
        pytest.skip(reason)
    with start_kube_cluster(
        tmp_path_factory.mktemp("kube"),
        region=REGION,
        account=ACCOUNT,
        eks_name=EKS_CLUSTER,
        sts_url=moto_server,
        # The tests' AWS credentials (aws fixture): the webhook checks the tokens' SigV4
        # signatures with them, as STS would (moto checks none).
        sts_credentials={"testing": "testing"},
    ) as cluster:
        yield cluster


@dataclass
class Aws:
    """The account the tests run in: a bucket, a KMS key, an EKS cluster whose API is the
    local server, and HyperPod clusters made with :meth:`hyperpod_cluster`."""

    url: str
    kms_key: str
    eks_arn: str

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, region_name=REGION)

    def hyperpod_cluster(
        self,
        name: str = CLUSTER,
        *,
        groups: dict[str, tuple[str, int]] | None = None,
        volume_key: str | None = None,
        orchestrator: str = "eks",
        vpc: bool = True,
    ) -> str:
        """Create a HyperPod cluster (instance groups by name: (type, count)); its ARN."""
        instance_groups = []
        for group, (instance_type, count) in (groups or {"workers": (INSTANCE_TYPE, 2)}).items():
            ebs: dict[str, Any] = {"VolumeSizeInGB": 500}
            if volume_key is not None:
                ebs["VolumeKmsKeyId"] = volume_key
            instance_groups.append(
                {
                    "InstanceGroupName": group,
                    "InstanceType": instance_type,
                    "InstanceCount": count,
                    "LifeCycleConfig": {
                        "SourceS3Uri": "s3://sagemaker-lifecycle/scripts/",
                        "OnCreate": "on_create.sh",
                    },
                    "ExecutionRole": f"arn:aws:iam::{ACCOUNT}:role/hyperpod-nodes",
                    "ThreadsPerCore": 1,
                    "InstanceStorageConfigs": [{"EbsVolumeConfig": ebs}],
                }
            )
            if orchestrator == "slurm":
                node_type = "Controller" if group == "controller" else "Compute"
                instance_groups[-1]["SlurmConfig"] = {"NodeType": node_type}
        request: dict[str, Any] = {"ClusterName": name, "InstanceGroups": instance_groups}
        if orchestrator == "eks":
            request["Orchestrator"] = {"Eks": {"ClusterArn": self.eks_arn}}
        else:
            request["Orchestrator"] = {"Slurm": {"SlurmConfigStrategy": "Managed"}}
        if vpc:
            request["VpcConfig"] = {"Subnets": SUBNETS, "SecurityGroupIds": SECURITY_GROUPS}
        arn: str = self.client("sagemaker").create_cluster(**request)["ClusterArn"]
        return arn


def _account(moto_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Aws:
    """A fresh moto account (reset) with the staging bucket and a KMS key, reached by boto3
    in this process and in CLI subprocesses through the environment."""
    urllib.request.urlopen(
        urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST"), timeout=10
    ).close()
    for variable in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    # No kubeconfig of the machine's: only what a test names.
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    import boto3

    boto3.client("s3", region_name=REGION).create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    key = boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["Arn"]
    return Aws(url=moto_server, kms_key=key, eks_arn="")


@pytest.fixture
def aws(
    moto_server: str, monkeypatch: pytest.MonkeyPatch, kube: KubeCluster, tmp_path: Path
) -> Aws:
    """A fresh moto account (reset per test) with an EKS cluster backed by the local API
    server and a HyperPod cluster ``tftest`` of two ml.g5.8xlarge nodes on it."""
    behave_like_aws(monkeypatch, kube)
    account = _account(moto_server, monkeypatch, tmp_path)
    account.eks_arn = account.client("eks").create_cluster(
        name=EKS_CLUSTER,
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/eks",
        resourcesVpcConfig={"subnetIds": SUBNETS, "securityGroupIds": SECURITY_GROUPS},
    )["cluster"]["arn"]
    account.hyperpod_cluster()
    return account


@dataclass
class Training:
    """Plays a HyperPod job through its life on the API server, one step per call of
    :meth:`advance` (the conformance suite's ``advance``): the operator starts its pods,
    the first pod prints the trainer's lines with a falling loss, then the job completes."""

    operator: Operator
    namespace: str = "default"
    steps: int = 4
    fail_with: str | None = None
    ticks: dict[str, int] = field(default_factory=dict)

    def advance(self, job: JobRef) -> None:
        from tunefleet.errors import ProviderNotFoundError

        tick = self.ticks.get(job.id, 0)
        self.ticks[job.id] = tick + 1
        try:
            self.operator.get_job(self.namespace, job.id)
        except Exception as exc:  # deleted (cancelled): nothing left to play
            if "404" in str(exc) or isinstance(exc, ProviderNotFoundError):
                return
            raise
        if tick == 0:
            self.operator.start(self.namespace, job.id)
            return
        pod = f"{job.id}-pod-0"
        if tick <= self.steps:
            lines = [format_metric_line(step=tick * 10, train_loss=2.0 / tick, learning_rate=2e-4)]
            if tick == self.steps:
                lines.append(format_checkpoint_line(step=tick * 10, path=f"/fsx/ckpt/{tick * 10}"))
            self.operator.log(self.namespace, pod, lines)
            return
        job_state = self.operator.get_job(self.namespace, job.id).get("status") or {}
        if any(c.get("type") in {"Completed", "Failed"} for c in job_state.get("conditions") or []):
            return
        if self.fail_with is not None:
            self.operator.fail(self.namespace, job.id, "TrainingFailed", self.fail_with)
        else:
            self.operator.succeed(self.namespace, job.id)


@pytest.fixture
def operator(kube: KubeCluster) -> Iterator[Operator]:
    """The HyperPod operator and nodes, played (:class:`~.kube.Operator`)."""
    with Operator(kube) as played:
        yield played


@pytest.fixture
def training(operator: Operator) -> Training:
    return Training(operator)


def hyperpod_spec(
    *, options: dict[str, Any] | None = None, validation: bool = True, **top: Any
) -> str:
    """A spec (JSON is YAML) training scratch:tiny on the quickstart data on cluster tftest."""
    body: dict[str, Any] = {
        "version": 1,
        "name": "support-bot",
        "base_model": "scratch:tiny",
        "dataset": {
            "train": str(DATA / "train.jsonl"),
            "validation": str(DATA / "validation.jsonl"),
        },
        "method": {"type": "supervised", "adapter": "lora"},
        "hyperparameters": {"epochs": 2, "batch_size": 8, "learning_rate": 0.0002},
        "targets": [
            {
                "provider": "hyperpod",
                "region": REGION,
                "compute": {"instance_type": INSTANCE_TYPE, "instance_count": 2},
                "options": {
                    "cluster": CLUSTER,
                    "bucket": BUCKET,
                    "training_image": IMAGE,
                    "storage_claim": "fsx-claim",
                    **(options or {}),
                },
            }
        ],
    }
    if not validation:
        del body["dataset"]["validation"]
    body.update(top)
    return json.dumps(body)


# Slurm -----------------------------------------------------------------------------------

SLURM_CLUSTER = "tfslurm"


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A real Slurm cluster of two nodes on this host (:mod:`.slurm`), for the session; its
    shared folder stands for the HyperPod cluster's FSx for Lustre file system."""
    reason = why_slurm_unavailable()
    if reason is not None:
        pytest.skip(reason)
    with start_slurm(tmp_path_factory.mktemp("slurm"), nodes=2) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory, slurm: SlurmCluster) -> Iterator[SshServer]:
    """A real sshd on 127.0.0.1 standing for the cluster's head node (remote commands see
    the cluster's SLURM_CONF)."""
    reason = why_sshd_unavailable()
    if reason is not None:
        pytest.skip(reason)
    with start_sshd(tmp_path_factory.mktemp("sshd"), env=slurm.env) as server:
        yield server


def link_bucket_to(monkeypatch: pytest.MonkeyPatch, shared: Path) -> None:
    """Play FSx for Lustre's data repository association with the bucket (auto-import): an
    object put into the staging bucket appears as a file under ``shared`` (the job's
    ``options.shared_path``). The real import is asynchronous; the job's script waits for
    its datasets, which a test checks by not linking."""
    from moto.s3.models import S3Backend

    put_object = S3Backend.put_object

    def put_and_import(
        self: Any, bucket_name: str, key_name: str, value: bytes, *a: Any, **k: Any
    ) -> Any:
        stored = put_object(self, bucket_name, key_name, value, *a, **k)
        if bucket_name == BUCKET:
            target = shared / key_name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(bytes(value))
        return stored

    monkeypatch.setattr(S3Backend, "put_object", put_and_import)


def slurm_account(
    moto_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, shared: Path, nodes: int
) -> Aws:
    """A fresh moto account with a Slurm-orchestrated HyperPod cluster ``tfslurm`` (a
    controller and ``nodes`` compute nodes) whose bucket is linked to ``shared``."""
    behave_like_aws(monkeypatch, None)
    account = _account(moto_server, monkeypatch, tmp_path)
    account.hyperpod_cluster(
        SLURM_CLUSTER,
        groups={"controller": ("ml.c5.xlarge", 1), "workers": ("ml.c5.xlarge", nodes)},
        orchestrator="slurm",
    )
    link_bucket_to(monkeypatch, shared)
    return account


@pytest.fixture
def slurm_aws(
    moto_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, slurm: SlurmCluster
) -> Aws:
    """:func:`slurm_account` for the session's Slurm cluster (as many compute nodes), with
    SLURM_CONF set for commands run here."""
    account = slurm_account(moto_server, monkeypatch, tmp_path, slurm.shared, len(slurm.nodes))
    for name, value in slurm.env.items():
        monkeypatch.setenv(name, value)
    return account


def slurm_spec(
    slurm: SlurmCluster,
    *,
    ssh: SshServer | None = None,
    options: dict[str, Any] | None = None,
    **top: Any,
) -> str:
    """A spec training scratch:tiny for real on the local Slurm cluster's two nodes, through
    ``ssh`` (the head node) or here."""
    spec = json.loads(hyperpod_spec(**top))
    # A learning rate at which the tiny model's loss falls visibly in two short epochs.
    spec["hyperparameters"]["learning_rate"] = 0.005
    target = spec["targets"][0]
    target["compute"] = {"instance_type": "ml.c5.xlarge", "instance_count": len(slurm.nodes)}
    target["options"] = {
        "cluster": SLURM_CLUSTER,
        "bucket": BUCKET,
        "shared_path": str(slurm.shared),
        "python": sys.executable,
        **({"head_node": ssh.host_alias, "ssh_config": str(ssh.ssh_config)} if ssh else {}),
        **(options or {}),
    }
    return json.dumps(spec)

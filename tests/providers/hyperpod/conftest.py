"""Fixtures of the HyperPod provider's tests: moto for SageMaker, EKS, STS and S3, and a real
Kubernetes API server (:mod:`.kube`) standing for the cluster's EKS control plane.

moto 5.2.5 is corrected in ONE place, :func:`behave_like_aws`, each correction citing its
source:

- DescribeCluster answers the cluster's ``Orchestrator`` as it was created (moto drops it;
  botocore's sagemaker model, DescribeClusterResponse.Orchestrator).
- EKS's DescribeCluster answers the local API server's address and certificate authority
  (moto makes up both), so the provider reaches "the EKS cluster" exactly as it reaches a
  real one: endpoint and CA from EKS, a token signed for STS.
- The endpoints HyperPod's inference operator registers: moto's instance-type list predates
  the g5 family, and it has no UpdateEndpoint (:func:`.inference.correct_moto_endpoints`).
- SageMaker runtime's InvokeEndpoint refuses an endpoint that does not exist (moto answers
  any name) and answers, for one that does, as the TGI container behind it would: a chat
  completion (TGI's Messages API) saying which model folder it serves, so a test can tell
  the model a redeploy swapped in.

The API server authenticates those tokens through a webhook playing aws-iam-authenticator
against moto's STS (see :mod:`.kube`), and :class:`~.kube.Operator` plays the HyperPod
training operator and the nodes: it creates a job's pods, writes its conditions and serves
the trainer's lines where the provider reads them (the pods' logs). :class:`Training` also
plays the trainer's answers to the golden set of a job created with an evaluation, put
where the cluster's FSx would have exported them.

FSx for Lustre's data repository association is played in ONE place,
:func:`link_bucket_to`, both ways: new objects of the bucket imported as files, files the
job wrote exported as objects.
"""

from __future__ import annotations

import base64
import json
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.providers.hyperpod.inference import correct_moto_endpoints
from tests.providers.hyperpod.kube import KubeCluster, Operator, start_kube_cluster, why_unavailable
from tests.providers.hyperpod.slurm import (
    SlurmCluster,
    SshServer,
    start_slurm,
    start_sshd,
    why_slurm_unavailable,
    why_sshd_unavailable,
)
from tests.providers.trainer_files import prediction_files

from tunefleet.provider import JobRef
from tunefleet_trainer.metrics import format_checkpoint_line, format_metric_line
from tunefleet_trainer.predictions import (
    BASELINE_PREDICTIONS_NAME,
    PREDICTIONS_NAME,
    GoldenExample,
    parse_golden_line,
)

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
    from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

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
    monkeypatch.setattr(SageMakerRuntimeResponse, "invoke_endpoint", _invoke_served_model)
    correct_moto_endpoints(monkeypatch)
    if kube is None:
        return
    create_eks = EKSBackend.create_cluster

    def create_eks_served_by_the_api_server(self: Any, *args: Any, **kwargs: Any) -> Any:
        cluster = create_eks(self, *args, **kwargs)
        cluster.endpoint = kube.url
        cluster.certificate_authority = {"data": base64.b64encode(kube.ca_pem).decode()}
        return cluster

    monkeypatch.setattr(EKSBackend, "create_cluster", create_eks_served_by_the_api_server)


def served_answer(model_data: str) -> str:
    """What the played model server behind an endpoint answers: the model it loaded."""
    return f"served from {model_data}"


def _invoke_served_model(response: Any) -> tuple[int, dict[str, str], str]:
    """InvokeEndpoint as SageMaker answers it (see the module docstring). A missing endpoint
    is "ValidationError ... Endpoint <name> of account <account> not found."
    (aws/amazon-sagemaker-examples#293; the reference lists ValidationError, 400)."""
    import urllib.parse

    from moto.core.exceptions import ServiceException
    from moto.sagemaker.models import sagemaker_backends

    class AwsError(ServiceException):
        """An error with AWS's code, serialized in the SageMaker runtime's shape."""

    name = urllib.parse.unquote(response.path.split("/")[2])
    backend = sagemaker_backends[response.current_account][response.region]
    endpoint = backend.endpoints.get(name)
    if endpoint is None:
        raise AwsError(
            "ValidationError", f"Endpoint {name} of account {response.current_account} not found."
        )
    config = backend.endpoint_configs[endpoint.endpoint_config_name]
    model = backend._models[config.production_variants[0]["ModelName"]]
    text = served_answer(model.primary_container.get("ModelDataUrl", ""))
    body = {
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 4, "total_tokens": 5},
    }
    return 200, {"Content-Type": "application/json"}, json.dumps(body)


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


def expected_answer(example: GoldenExample) -> str:
    """The answer the golden example expects (the played trained model answers it)."""
    return example.expected


def unknown_answer(example: GoldenExample) -> str:
    """An answer no golden example expects (the played base model's)."""
    return "I do not know."


@dataclass
class Training:
    """Plays a HyperPod job through its life on the API server, one step per call of
    :meth:`advance` (the conformance suite's ``advance``): the operator starts its pods,
    the first pod prints the trainer's lines with a falling loss, then the job completes.
    A job whose trainer config has an evaluation answers its golden set before it
    completes (:meth:`answer_golden_set`)."""

    operator: Operator
    namespace: str = "default"
    steps: int = 4
    fail_with: str | None = None
    ticks: dict[str, int] = field(default_factory=dict)
    trained_answer: Callable[[GoldenExample], str] = expected_answer
    """What the played trained model answers a golden example."""
    baseline_answer: Callable[[GoldenExample], str] = unknown_answer
    """What the played base model answers a golden example."""

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
            self.answer_golden_set(self.operator.get_job(self.namespace, job.id))
            self.operator.succeed(self.namespace, job.id)

    def answer_golden_set(self, resource: dict[str, Any]) -> dict[str, str]:
        """Stands in for the trainer of the HyperPodPyTorchJob ``resource`` answering its
        golden set (no pod runs here) and for FSx exporting the answers: for a trainer
        config (``TUNEFLEET_TRAINER_CONFIG``) with an evaluation, the golden set is read
        from the bucket at the key its path on the shared storage shows (the volume
        ``shared`` mounted at ``options.shared_path``), its first ``max_examples`` answered
        in the trainer's format (:class:`~tunefleet_trainer.predictions.Prediction`, one a
        line, in golden-set order) and put at the keys of ``predictions_dir``'s files, the
        baseline's too when the config asks for them. Returns the S3 keys written."""
        import boto3

        (container,) = resource["spec"]["replicaSpecs"][0]["template"]["spec"]["containers"]
        env = {item["name"]: item.get("value", "") for item in container.get("env", [])}
        evaluation = json.loads(env.get("TUNEFLEET_TRAINER_CONFIG", "{}")).get("evaluation")
        if not evaluation:
            return {}
        (mount,) = [m["mountPath"] for m in container["volumeMounts"] if m["name"] == "shared"]

        def key_of(path: str) -> str:
            return path.removeprefix(mount.rstrip("/") + "/")

        s3 = boto3.client("s3", region_name=REGION)
        golden = key_of(evaluation["golden_set"])
        body = s3.get_object(Bucket=BUCKET, Key=golden)["Body"].read()
        lines = [line for line in body.splitlines() if line.strip()]
        limit = evaluation.get("max_examples") or len(lines)
        examples = [
            parse_golden_line(line, index=index, line=index + 1, source=golden)
            for index, line in enumerate(lines[:limit])
        ]

        files = prediction_files(examples, self.trained_answer, self.baseline_answer)
        names = {"predictions": PREDICTIONS_NAME}
        if evaluation.get("baseline"):
            names["baseline_predictions"] = BASELINE_PREDICTIONS_NAME
        folder = key_of(evaluation["predictions_dir"]).rstrip("/")
        written = {kind: f"{folder}/{name}" for kind, name in names.items()}
        for kind, name in names.items():
            s3.put_object(Bucket=BUCKET, Key=written[kind], Body=files[name])
        return written


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


GOLDEN = DATA / "golden.jsonl"
"""The quickstart's golden set: chat examples whose last turn is the answer expected."""
EVALUATION: dict[str, Any] = {"metrics": ["exact_match"], "max_examples": 3}
"""The evaluation of the tests' evaluated specs: exact match on three golden examples."""


def write_golden_set(folder: Path, examples: int = 4) -> Path:
    """The first ``examples`` examples of :data:`GOLDEN`, written to ``folder``/golden.jsonl."""
    lines = GOLDEN.read_text().splitlines(keepends=True)[:examples]
    path = folder / "golden.jsonl"
    path.write_text("".join(lines))
    return path


def evaluated_hyperpod_spec(folder: Path) -> Path:
    """A spec like :func:`hyperpod_spec` (EKS cluster tftest, one dataset) with an
    ``evaluation`` section, written to ``folder``/hyperpod-evaluated.yaml beside its golden
    set (:func:`write_golden_set`); returns its path. Exact match on three examples, with a
    threshold the played trainer's answers (the expected ones, :class:`Training`) meet."""
    body = json.loads(hyperpod_spec(validation=False))
    body["evaluation"] = {
        **EVALUATION,
        "golden_set": str(write_golden_set(folder)),
        "thresholds": {"exact_match": 0.9},
    }
    path = folder / "hyperpod-evaluated.yaml"
    path.write_text(json.dumps(body))
    return path


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
    """Play FSx for Lustre's data repository association with the bucket, both ways:

    - auto-import: an object put into the staging bucket appears as a file under
      ``shared`` (the job's ``options.shared_path``). The real import is asynchronous; the
      job's script waits for its datasets, which a test checks by not linking.
    - auto-export: a file the job wrote under ``shared`` (one the association did not
      import) reaches the bucket as the object of the same key. The real export is
      asynchronous too ("Amazon FSx for Lustre automatically exports the defined changes
      asynchronously once your application finishes modifying the file", FSx API
      reference, AutoExportPolicy); here it happens, at the latest, when the object is
      first asked for: a GetObject or HeadObject of a key missing from the bucket whose
      file exists under ``shared`` puts the file first. A file not there either stays
      missing (``NoSuchKey``), as an export not done yet reads.
    """
    from moto.s3.models import S3Backend

    put_object = S3Backend.put_object
    get_object = S3Backend.get_object
    imported: set[str] = set()

    def put_and_import(
        self: Any, bucket_name: str, key_name: str, value: bytes, *a: Any, **k: Any
    ) -> Any:
        stored = put_object(self, bucket_name, key_name, value, *a, **k)
        if bucket_name == BUCKET:
            target = shared / key_name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(bytes(value))
            imported.add(key_name)
        return stored

    def export_and_get(self: Any, bucket_name: str, key_name: str, *a: Any, **k: Any) -> Any:
        # HeadObject is a GetObject in moto (S3Backend.head_object calls get_object).
        written = shared / key_name
        if (
            bucket_name == BUCKET
            and key_name not in imported
            and key_name not in self.get_bucket(bucket_name).keys
            and written.is_file()
        ):
            put_object(self, bucket_name, key_name, written.read_bytes())
        return get_object(self, bucket_name, key_name, *a, **k)

    monkeypatch.setattr(S3Backend, "put_object", put_and_import)
    monkeypatch.setattr(S3Backend, "get_object", export_and_get)


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

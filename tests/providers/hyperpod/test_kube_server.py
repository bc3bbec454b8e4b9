"""The Kubernetes fixture (tests/providers/hyperpod/kube.py), checked with the real clients.

What the HyperPod provider's tests rely on: a real kube-apiserver with the HyperPodPyTorchJob
CRD (validation 422, conflicts 409, status subresource), pod logs served through the apiserver
from the fake kubelet, the operator's status transitions, and EKS token authentication (a
token built as ``aws eks get-token`` builds it, verified against moto's STS).
"""

from __future__ import annotations

import base64
import datetime as dt
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from tests.providers.hyperpod.kube import (
    CRD_NAME,
    GROUP,
    JOB_LABEL,
    PLURAL,
    VERSION,
    KubeCluster,
    Operator,
    start_kube_cluster,
    why_unavailable,
)

REGION = "eu-central-1"
ACCOUNT = "123456789012"
EKS = "tftest-eks"
AKID = "AKIATUNEFLEETTEST01"
SECRET = "tunefleet-test-secret-key"
CONTAINER = "pytorch-job-container"
STARTUP_S: list[float] = []


@pytest.fixture(scope="module")
def moto_url(moto_server: str) -> str:
    """The session's moto (tests/providers/conftest.py): STS is all this module asks of it."""
    return moto_server


@pytest.fixture(scope="module")
def cluster(moto_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    reason = why_unavailable()
    if reason is not None:
        pytest.skip(reason)
    started = time.monotonic()
    with start_kube_cluster(
        tmp_path_factory.mktemp("kube"),
        region=REGION,
        account=ACCOUNT,
        eks_name=EKS,
        sts_url=moto_url,
        sts_credentials={AKID: SECRET},
    ) as kube:
        STARTUP_S.append(time.monotonic() - started)
        print(f"kube-apiserver + etcd up, CRD Established, in {STARTUP_S[-1]:.1f} s")
        yield kube
        processes = list(kube.processes.values())
    assert all(process.poll() is not None for process in processes), "stopped on exit"


@pytest.fixture(scope="module")
def operator(cluster: KubeCluster) -> Iterator[Operator]:
    with Operator(cluster) as op:
        yield op


@pytest.fixture
def api(cluster: KubeCluster) -> Iterator[Any]:
    with cluster.api_client() as api_client:
        yield api_client


def _job(name: str, *, replicas: Any = 1, image: str = "img:1") -> dict[str, Any]:
    """A HyperPodPyTorchJob as the SDK / ``hyp create hyp-pytorch-job`` sends it."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "HyperPodPyTorchJob",
        "metadata": {"name": name},
        "spec": {
            "replicaSpecs": [
                {
                    "name": "pod",
                    "replicas": replicas,
                    "spares": 0,
                    "template": {
                        "metadata": {"name": name},
                        "spec": {
                            "containers": [
                                {
                                    "name": CONTAINER,
                                    "image": image,
                                    "command": ["python", "train.py"],
                                }
                            ]
                        },
                    },
                }
            ],
            "runPolicy": {"jobMaxRetryCount": 2, "ttlSecondsAfterFinished": -1},
        },
    }


def _create(api: Any, name: str, namespace: str = "default", **kwargs: Any) -> dict[str, Any]:
    created = client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, _job(name, **kwargs)
    )
    assert isinstance(created, dict)
    return created


def _true_conditions(job: dict[str, Any]) -> list[str]:
    return [c["type"] for c in job["status"]["conditions"] if c["status"] == "True"]


def test_crd_is_established_and_kubeconfig_names_the_context_like_eks(
    cluster: KubeCluster, api: Any
) -> None:
    crd: Any = client.ApiextensionsV1Api(api).read_custom_resource_definition(CRD_NAME)
    established = [c for c in crd.status.conditions if c.type == "Established"]
    assert established and established[0].status == "True"
    assert cluster.url.startswith("https://127.0.0.1:")
    assert STARTUP_S and STARTUP_S[0] < 30, STARTUP_S  # session-scoped in the provider's tests
    assert cluster.context == f"arn:aws:eks:{REGION}:{ACCOUNT}:cluster/{EKS}"
    contexts, active = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
        config_file=str(cluster.kubeconfig)
    )
    assert [c["name"] for c in contexts] == [cluster.context] and active["name"] == cluster.context
    # What the SDK does: the kubeconfig through the client's own loader.
    from_file = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(cluster.kubeconfig)
    )
    with from_file:
        namespaces: Any = client.CoreV1Api(from_file).list_namespace()
    names = [n.metadata.name for n in namespaces.items]
    assert "default" in names


def test_job_reads_back_with_defaults_and_bad_ones_are_refused(api: Any) -> None:
    custom = client.CustomObjectsApi(api)
    _create(api, "roundtrip")
    job: Any = custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "roundtrip")
    assert job["spec"]["replicaSpecs"][0]["template"]["spec"]["containers"][0]["name"] == CONTAINER
    assert job["spec"]["nprocPerNode"] == "auto"  # the CRD's default
    with pytest.raises(ApiException) as wrong_type:
        _create(api, "wrongtype", replicas="two")
    assert wrong_type.value.status == 422
    assert "spec.replicaSpecs.replicas" in str(wrong_type.value.body)
    with pytest.raises(ApiException) as duplicate:
        _create(api, "roundtrip")
    assert duplicate.value.status == 409


def test_status_is_a_subresource(api: Any) -> None:
    custom = client.CustomObjectsApi(api)
    _create(api, "statusjob")
    patched: Any = custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        "default",
        PLURAL,
        "statusjob",
        {"status": {"restartCount": 3, "startTime": "2026-01-01T00:00:00Z"}},
    )
    assert patched["status"]["restartCount"] == 3
    # A status in an update of the main resource is ignored, as with any status subresource.
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "statusjob", {"status": {"restartCount": 9}}
    )
    job: Any = custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "statusjob")
    assert job["status"]["restartCount"] == 3


def test_operator_runs_pods_and_walks_the_conditions(api: Any, operator: Operator) -> None:
    _create(api, "walk", replicas=2)
    job = operator.start("default", "walk")
    assert _true_conditions(job) == ["Created", "Running"]
    assert job["status"]["startTime"]
    assert [ref["name"] for ref in job["status"]["jobPods"]] == ["walk-pod-0", "walk-pod-1"]
    pods: Any = client.CoreV1Api(api).list_namespaced_pod(
        "default", label_selector=f"{JOB_LABEL}=walk"
    )
    assert sorted((p.metadata.name, p.status.phase) for p in pods.items) == [
        ("walk-pod-0", "Running"),
        ("walk-pod-1", "Running"),
    ]
    assert {p.spec.node_name for p in pods.items} == set(operator.nodes)
    restarted = operator.restart("default", "walk")
    assert restarted["status"]["restartCount"] == 1
    assert _true_conditions(restarted) == ["Created", "Restarting"]
    assert _true_conditions(operator.resume("default", "walk")) == ["Created", "Running"]
    done = operator.fail("default", "walk", "NCCLError", "rank 1 timed out")
    assert _true_conditions(done)[-1] == "Failed"
    failed = done["status"]["conditions"][-1]
    assert (failed["reason"], failed["message"]) == ("NCCLError", "rank 1 timed out")
    assert "Running" not in _true_conditions(done) and done["status"]["completionTime"]
    pod: Any = client.CoreV1Api(api).read_namespaced_pod("walk-pod-0", "default")
    assert pod.status.phase == "Failed"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 1


def test_pod_logs_come_through_the_apiserver(
    api: Any, cluster: KubeCluster, operator: Operator
) -> None:
    core = client.CoreV1Api(api)
    _create(api, "logs")
    operator.start("default", "logs")
    base = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=5)
    early = operator.log("default", "logs-pod-0", ["step 1", "step 2"], at=base)
    operator.log("default", "logs-pod-0", ["step 3"], at=base + dt.timedelta(seconds=10))

    text = core.read_namespaced_pod_log(
        "logs-pod-0", "default", container=CONTAINER, timestamps=True
    )
    lines = text.splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == ["step 1", "step 2", "step 3"]
    stamp = lines[0].split(" ", 1)[0]
    assert stamp.endswith("Z") and len(stamp.split(".")[1]) == 10  # 9 digits + Z
    assert dt.datetime.fromisoformat(stamp[:26] + "+00:00") == early[0]
    assert core.read_namespaced_pod_log("logs-pod-0", "default", tail_lines=1) == "step 3\n"
    assert core.read_namespaced_pod_log("logs-pod-0", "default", limit_bytes=4) == "step"

    # sinceTime (RFC3339, seconds) is not a parameter of the Python client: the raw request.
    since = (base + dt.timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status, body = cluster.request(
        "GET", "/api/v1/namespaces/default/pods/logs-pod-0/log", query={"sinceTime": since}
    )
    assert (status, body) == (200, b"step 3\n")

    with pytest.raises(ApiException) as no_previous:
        core.read_namespaced_pod_log("logs-pod-0", "default", previous=True)
    assert no_previous.value.status == 400
    operator.restart("default", "logs")
    operator.log("default", "logs-pod-0", ["resumed"])
    assert core.read_namespaced_pod_log("logs-pod-0", "default") == "resumed\n"
    previous = core.read_namespaced_pod_log("logs-pod-0", "default", previous=True)
    assert previous == "step 1\nstep 2\nstep 3\n"
    assert operator.succeed("default", "logs")["status"]["conditions"][-1]["type"] == "Completed"
    assert core.read_namespaced_pod_log("logs-pod-0", "default") == "resumed\n"


def _eks_token(cluster_name: str) -> str:
    """What ``aws eks get-token --cluster-name <cluster_name>`` prints as the token: a presigned
    STS GetCallerIdentity URL (60 s, x-k8s-aws-id signed), base64url without padding."""
    # A session of its own: boto3's default session keeps the credentials it first found.
    sts = boto3.session.Session().client("sts", region_name=REGION)

    def add_cluster_header(request: Any, **_: Any) -> None:
        request.headers["x-k8s-aws-id"] = cluster_name

    sts.meta.events.register("before-sign.sts.GetCallerIdentity", add_cluster_header)
    url = sts.generate_presigned_url(
        "get_caller_identity", Params={}, ExpiresIn=60, HttpMethod="GET"
    )
    return "k8s-aws-v1." + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


@pytest.fixture
def aws_env(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AKID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def _namespaces_with(cluster: KubeCluster, token: str) -> int:
    """The status of listing namespaces with ``token`` (200, or the ApiException's)."""
    with cluster.api_client(token=token) as api_client:
        try:
            client.CoreV1Api(api_client).list_namespace()
        except ApiException as exc:
            return int(exc.status)
    return 200


@pytest.mark.usefixtures("aws_env")
def test_eks_token_from_sts_authenticates_as_the_caller_arn(cluster: KubeCluster) -> None:
    cluster.clear_token_reviews()
    assert _namespaces_with(cluster, _eks_token(EKS)) == 200
    (review,) = cluster.token_reviews
    assert review.accepted, review.reason
    assert review.username is not None and review.username.startswith("arn:aws:")
    assert review.groups == ("system:masters",)
    assert review.access_key_id == AKID


@pytest.mark.usefixtures("aws_env")
def test_forged_eks_tokens_are_refused(cluster: KubeCluster, moto_url: str) -> None:
    cluster.clear_token_reviews()
    # Signed for another cluster: the x-k8s-aws-id header is under the signature.
    assert _namespaces_with(cluster, _eks_token("another-cluster")) == 401
    # The same presigned URL, pointed at a host that is not the STS endpoint.
    url = base64.urlsafe_b64decode(_eks_token(EKS)[len("k8s-aws-v1.") :] + "===").decode()
    moved = url.replace(urllib.parse.urlsplit(moto_url).netloc, "sts.example.com", 1)
    forged = "k8s-aws-v1." + base64.urlsafe_b64encode(moved.encode()).decode().rstrip("=")
    assert _namespaces_with(cluster, forged) == 401
    assert _namespaces_with(cluster, "k8s-aws-v1.bm90LWEtdXJs") == 401
    reasons = [review.reason for review in cluster.token_reviews]
    assert not any(review.accepted for review in cluster.token_reviews)
    assert reasons[0].startswith("SignatureDoesNotMatch"), reasons
    assert "unexpected hostname 'sts.example.com'" in reasons[1], reasons
    assert len(reasons) == 3


def test_suspended_job_loses_its_pods(api: Any, operator: Operator) -> None:
    _create(api, "preempted")
    operator.start("default", "preempted")
    job = operator.suspend("default", "preempted")
    assert _true_conditions(job) == ["Created", "Suspended"]
    assert operator.pod_names("default", "preempted") == []

"""A real Kubernetes API server for the HyperPod-EKS tests, with the parts a bare one lacks.

:func:`start_kube_cluster` runs etcd (Debian's ``/usr/bin/etcd``) and kube-apiserver v1.20.2
(built from Debian's ``kubernetes`` source package by ``bash scripts/test-servers.sh`` into
``$TUNEFLEET_KUBE_HOME/v1.20.2-tf1/kube-apiserver``, default ``~/.cache/tunefleet-kube``) as child
processes on free 127.0.0.1 ports, with flags as in shared/TESTING-TARGETS.md section A: a
private CA and serving certificate, a static admin token, RBAC, and three vendored CRDs
installed and Established: ``HyperPodPyTorchJob`` (``specs/hyperpod-pytorchjob-crd.yaml.gz``,
synthesized from the sagemaker-hyperpod 3.12.0 models; see specs/README.md) and the HyperPod
inference operator's ``InferenceEndpointConfig`` and ``SageMakerEndpointRegistration``
(``specs/inference/``, rendered as that folder's README.md says: :func:`render_inference_crd`).
It writes a kubeconfig whose single context is named as ``aws eks update-kubeconfig`` names it
(``arn:aws:eks:{region}:{account}:cluster/{eks_name}``). The inference operator is played by
``tests/providers/hyperpod/inference.py``.

EKS authentication, for real
----------------------------
With ``sts_url`` (a moto server's URL), kube-apiserver also authenticates bearer tokens through
a TokenReview webhook (``--authentication-token-webhook-config-file``, cache TTL 0) that plays
aws-iam-authenticator as EKS runs it. It accepts ``k8s-aws-v1.`` + base64url (no padding) of a
presigned STS GetCallerIdentity URL, which is what ``aws eks get-token`` prints, after the
checks of aws-iam-authenticator's ``tokenVerifier.Verify``
(kubernetes-sigs/aws-iam-authenticator, pkg/token/token.go): token at most 4 KiB, the prefix,
base64url, URL scheme and host those of the configured STS endpoint (there: https and the
partition's STS hosts; here: ``sts_url``'s scheme and host, as moto serves http), path ``/``,
only whitelisted query parameters (action, version, x-amz-algorithm, x-amz-credential,
x-amz-date, x-amz-expires, x-amz-security-token, x-amz-signature, x-amz-signedheaders), each
once, ``Action=GetCallerIdentity``, ``x-k8s-aws-id`` among ``X-Amz-SignedHeaders``,
``0 <= X-Amz-Expires <= 900`` (token.go; authenticators 0.3.0 and older wanted <= 60, which is
why clients send 60), ``X-Amz-Date`` present and less than 15 minutes old. Then it GETs the URL
with ``x-k8s-aws-id: <eks_name>`` and ``Accept: application/json``, as Verify does, without
following redirects, and reads the ARN from the answer (JSON or moto's XML). Real STS checks
the SigV4 signature, which covers the ``x-k8s-aws-id`` header, so a token signed for another
cluster fails there; moto checks no signatures, so the webhook checks it itself when
``sts_credentials`` gives it the secret key of the token's access key id (an unknown access key
id is then refused). An accepted token authenticates as username = the caller ARN, groups
``["system:masters"]`` (what an EKS access entry with AmazonEKSClusterAdminPolicy amounts to),
uid ``aws-iam-authenticator:<account>:<user id>``. Every review is recorded
(:attr:`KubeCluster.token_reviews`) with why it was refused.

Pods that run, and their logs
-----------------------------
A bare kube-apiserver runs nothing (no scheduler, controller-manager or kubelet): pods never
start and ``pods/log`` answers 204. :class:`Operator` plays the HyperPod training operator and
the nodes. It registers Node objects whose InternalIP is 127.0.0.1 and whose
``status.daemonEndpoints.kubeletEndpoint.Port`` is a fake kubelet's (HTTPS, self-signed
certificate): kube-apiserver 1.20 serves ``GET /api/v1/namespaces/{ns}/pods/{pod}/log`` by
proxying to ``https://<node address>:<kubelet port>/containerLogs/{ns}/{pod}/{container}``
with ``follow``, ``previous``, ``timestamps``, ``sinceSeconds``, ``sinceTime`` (RFC3339,
seconds), ``tailLines``, ``limitBytes`` (pkg/registry/core/pod/strategy.go ``LogLocation``;
address from ``--kubelet-preferred-address-types``, port from the Node's status). Without
``--kubelet-certificate-authority`` it does not verify the kubelet's certificate
(pkg/kubelet/client/kubelet_client.go sets ``Insecure`` when no CA is given), and it sends no
client certificate without ``--kubelet-client-certificate``. It needs neither a Ready node
condition nor a pod status: a pod with ``spec.nodeName`` naming a Node with an address is
enough (both are still written, as a real cluster has them). A kubelet error status comes back
through the apiserver as the same status (400 for a missing previous container, as the kubelet
answers it; 404 for an unknown pod).

What the HyperPod operator does, and where that is known from
-------------------------------------------------------------
The operator is closed source; these facts come from what its clients read:

* Pods are named ``<job>-pod-<i>`` and labelled ``HPJob=<job>``: the SDK lists a job's pods with
  ``label_selector=f"HPJob={name}"`` (aws/sagemaker-hyperpod-cli,
  src/sagemaker/hyperpod/training/hyperpod_pytorch_job.py ``list_pods``;
  src/sagemaker/hyperpod/cli/service/list_pods.py) and its integration tests look for
  ``f"{job}-pod-"`` (test/integration_tests/training/cli/test_cli_training.py); the walkthrough
  shows ``qwen3-4b-thinking-2507-fsdp-pod-0`` on node ``hyperpod-i-00b865d0114cabc20``
  (examples/end_to_end_walkthrough/01-training-job-submission/00-pytorch-training-job.md).
  ``get_logs_from_pod`` reads ``read_namespaced_pod_log(timestamps=True, container=<first
  container of replicaSpecs[0]>)``; the CLI template names it ``pytorch-job-container``.
* Status: ``startTime``, ``completionTime``, ``restartCount``, ``jobPods`` (object references),
  ``conditions`` (type, status, reason, message, lastTransitionTime, lastProbeTime)
  (``HyperPodPytorchJobStatus``). Condition types: ``Created`` (``hyp list`` takes the job's
  age from it), ``Running`` (the SDK's integration test also accepts ``PodsRunning``),
  ``Completed``, ``Failed``, ``Suspended`` (kueue preemption, shown by ``hyp list``),
  ``Restarting``; ``hyp list`` shows the type of the LAST condition whose status is "True"
  (src/sagemaker/hyperpod/cli/commands/training.py ``list_jobs``;
  test/integration_tests/init/test_pytorch_job_creation.py;
  examples/end_to_end_walkthrough/03-task-governance/00-task-governance.md). How conditions
  replace each other follows the Kubeflow job controllers HyperPod's status model comes from
  (kubeflow/common ``setCondition``/``filterOutCondition``): a condition of the same type is
  replaced and moved last; Running and Restarting replace each other; Completed or Failed flip
  Running to "False". The reasons written here (``JobCreated``...) are not known values.
* Auto-resume: for a ``HyperPodPyTorchJob`` it is ``spec.runPolicy.jobMaxRetryCount`` (the CLI's
  ``--max-retry``; the template writes ``runPolicy: {cleanPodPolicy: "None", jobMaxRetryCount:
  N}``). The annotations ``sagemaker.amazonaws.com/enable-job-auto-resume: "true"`` and
  ``sagemaker.amazonaws.com/job-max-retry-count: "N"`` are real but belong to Kubeflow
  ``PyTorchJob``s on HyperPod (the older ``hyperpod start-job`` CLI,
  src/sagemaker/hyperpod/cli/constants/command_constants.py; AWS docs "Running jobs using
  kubectl"), not to ``HyperPodPyTorchJob``.
* Node labels HyperPod puts on its nodes (names ``hyperpod-i-<instance id>``):
  ``node.kubernetes.io/instance-type`` (``ml.*``), ``sagemaker.amazonaws.com/node-health-status``
  (``Schedulable``, ``UnschedulablePendingReboot``...),
  ``sagemaker.amazonaws.com/deep-health-check-status`` (``Passed``),
  ``sagemaker.amazonaws.com/instance-group-name``, ``sagemaker.amazonaws.com/compute-type:
  hyperpod`` (command_constants.py; public manifests that select HyperPod nodes).
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import copy
import ctypes
import datetime as dt
import gzip
import hashlib
import hmac
import http.client
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

KUBE_VERSION = "1.20.2"
KUBE_BUILD = f"v{KUBE_VERSION}-tf1"
"""The folder scripts/test-servers.sh builds into: the version and its patches' revision."""
HOME_ENV = "TUNEFLEET_KUBE_HOME"
"""Where ``scripts/test-servers.sh`` puts kube-apiserver (default ``~/.cache/tunefleet-kube``)."""
APISERVER_ENV = "TUNEFLEET_KUBE_APISERVER"
"""Environment variable naming another kube-apiserver binary to run."""
ETCD_ENV = "TUNEFLEET_ETCD"
"""Environment variable naming another etcd binary to run (default: ``etcd`` on PATH)."""

SPECS = Path(__file__).parent / "specs"
CRD_FILE = SPECS / "hyperpod-pytorchjob-crd.yaml.gz"
GROUP = "sagemaker.amazonaws.com"
VERSION = "v1"
PLURAL = "hyperpodpytorchjobs"
KIND = "HyperPodPyTorchJob"
CRD_NAME = f"{PLURAL}.{GROUP}"
INFERENCE_SPECS = SPECS / "inference"
INFERENCE_CRD_FILE = (
    INFERENCE_SPECS / "inference.sagemaker.aws.amazon.com_inferenceendpointconfigs.yaml.gz"
)
REGISTRATION_CRD_FILE = (
    INFERENCE_SPECS / "inference.sagemaker.aws.amazon.com_sagemakerendpointregistrations.yaml.gz"
)
INFERENCE_GROUP = "inference.sagemaker.aws.amazon.com"
INFERENCE_VERSION = "v1"
INFERENCE_PLURAL = "inferenceendpointconfigs"
INFERENCE_KIND = "InferenceEndpointConfig"
INFERENCE_CRD_NAME = f"{INFERENCE_PLURAL}.{INFERENCE_GROUP}"
REGISTRATION_PLURAL = "sagemakerendpointregistrations"
REGISTRATION_KIND = "SageMakerEndpointRegistration"
REGISTRATION_CRD_NAME = f"{REGISTRATION_PLURAL}.{INFERENCE_GROUP}"
INFERENCE_CHART_VALUES: Mapping[str, str] = {
    "namePrefix": "hyperpod-inference-operator",
    "shortPrefix": "hyperpod-inference",
}
"""The inference-operator chart's defaults (its values.yaml) for the ``{{ .Values.* }}``
placeholders in the vendored CRDs (specs/inference/README.md)."""
JOB_LABEL = "HPJob"
"""The pod label the HyperPod SDK lists a job's pods by (value: the job's name)."""
DEFAULT_NODE = "hyperpod-i-0a1b2c3d4e5f60001"
DEFAULT_INSTANCE_TYPE = "ml.g5.8xlarge"
CLUSTER_ID_HEADER = "x-k8s-aws-id"
TOKEN_PREFIX = "k8s-aws-v1."
ADMIN_GROUPS = ("system:masters",)

_START_TIMEOUT_S = 90.0
_STOP_GRACE_S = 5.0
_STS_TIMEOUT_S = 10.0
_MAX_TOKEN_BYTES = 4 * 1024
_PRESIGNED_URL_LIFETIME = dt.timedelta(minutes=15)
# aws-iam-authenticator pkg/token/token.go parameterWhitelist
_STS_QUERY_WHITELIST = frozenset(
    {
        "action",
        "version",
        "x-amz-algorithm",
        "x-amz-credential",
        "x-amz-date",
        "x-amz-expires",
        "x-amz-security-token",
        "x-amz-signature",
        "x-amz-signedheaders",
    }
)
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def apiserver_path() -> Path:
    """The kube-apiserver binary: ``$TUNEFLEET_KUBE_APISERVER``, else the one test-servers.sh builds."""
    override = os.environ.get(APISERVER_ENV)
    if override:
        return Path(override)
    home = os.environ.get(HOME_ENV) or str(Path.home() / ".cache" / "tunefleet-kube")
    return Path(home) / KUBE_BUILD / "kube-apiserver"


def etcd_path() -> Path | None:
    """The etcd binary: ``$TUNEFLEET_ETCD``, else ``etcd`` on PATH (Debian: /usr/bin/etcd)."""
    override = os.environ.get(ETCD_ENV)
    if override:
        return Path(override)
    found = shutil.which("etcd")
    return Path(found) if found else None


def why_unavailable() -> str | None:
    """Why :func:`start_kube_cluster` cannot run here (one line, for ``pytest.skip``), or None."""
    hint = "run `bash scripts/test-servers.sh`"
    etcd = etcd_path()
    if etcd is None or not os.access(etcd, os.X_OK):
        return f"kube-apiserver test cluster unavailable: etcd is missing ({etcd or 'not on PATH'}); {hint}"
    apiserver = apiserver_path()
    if not os.access(apiserver, os.X_OK):
        return f"kube-apiserver test cluster unavailable: {apiserver} is missing; {hint}"
    for module in ("kubernetes", "cryptography", "yaml"):
        try:
            __import__(module)
        except ImportError:
            return f"kube-apiserver test cluster unavailable: python package {module!r} is not installed"
    return None


# --------------------------------------------------------------------------------------------
# Certificates


def _write_private_key(path: Path, key: Any) -> None:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _make_certificate(
    common_name: str, *, issuer: tuple[Any, Any] | None = None, ca: bool = False
) -> tuple[Any, Any]:
    """(certificate, EC P-256 key): self-signed when ``issuer`` (cert, key) is None; a serving
    certificate for 127.0.0.1 / localhost unless ``ca``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    issuer_name, signing_key = (subject, key) if issuer is None else (issuer[0].subject, issuer[1])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(signing_key, hashes.SHA256()), key


def _pem(certificate: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(certificate.public_bytes(serialization.Encoding.PEM))


@dataclass(frozen=True)
class _Pki:
    ca_pem: bytes
    ca_file: Path
    cert_file: Path
    key_file: Path
    sa_key_file: Path
    sa_pub_file: Path


def _make_pki(folder: Path) -> _Pki:
    """A CA, kube-apiserver's serving certificate, and the service-account signing key pair
    (EC P-256 throughout: key generation in milliseconds, where RSA takes a second on a busy box)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    folder.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = _make_certificate("tunefleet-test-kube-ca", ca=True)
    cert, key = _make_certificate("kube-apiserver", issuer=(ca_cert, ca_key))
    pki = _Pki(
        ca_pem=_pem(ca_cert),
        ca_file=folder / "ca.crt",
        cert_file=folder / "apiserver.crt",
        key_file=folder / "apiserver.key",
        sa_key_file=folder / "sa.key",
        sa_pub_file=folder / "sa.pub",
    )
    pki.ca_file.write_bytes(pki.ca_pem)
    pki.cert_file.write_bytes(_pem(cert) + pki.ca_pem)
    _write_private_key(pki.key_file, key)
    sa_key = ec.generate_private_key(ec.SECP256R1())
    _write_private_key(pki.sa_key_file, sa_key)
    pki.sa_pub_file.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return pki


# --------------------------------------------------------------------------------------------
# The EKS token webhook (aws-iam-authenticator's part)


@dataclass(frozen=True)
class TokenReview:
    """One TokenReview kube-apiserver sent the EKS webhook, and its answer."""

    accepted: bool
    reason: str
    """Why it was refused (aws-iam-authenticator's wording where it has one), or "ok"."""
    username: str | None = None
    """The caller ARN, when accepted."""
    uid: str | None = None
    """``aws-iam-authenticator:<account>:<user id>``, when accepted."""
    groups: tuple[str, ...] = ()
    sts_host: str | None = None
    """The host of the presigned URL in the token, once decoded."""
    access_key_id: str | None = None


def _b64url_decode(text: str) -> bytes:
    if "=" in text:
        raise ValueError("padding is not allowed (base64.RawURLEncoding)")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="-_.~")


def _sigv4_mismatch(
    url: urllib.parse.SplitResult, query: dict[str, str], cluster_id: str, secret_key: str
) -> str | None:
    """None when the presigned URL's SigV4 query signature is right for a GET carrying
    ``x-k8s-aws-id: cluster_id`` (what STS checks), else why not. The canonical request is
    botocore's ``SigV4QueryAuth`` (payload: SHA-256 of the empty body)."""
    lower = {key.lower(): value for key, value in query.items()}
    signed = lower.get("x-amz-signedheaders", "").split(";")
    headers = {"host": url.netloc, CLUSTER_ID_HEADER: cluster_id}
    if any(name not in headers for name in signed):
        return f"cannot check a signature over headers {signed}"
    canonical_query = "&".join(
        f"{_quote(key)}={_quote(value)}"
        for key, value in sorted(query.items())
        if key != "X-Amz-Signature"
    )
    canonical_request = "\n".join(
        [
            "GET",
            url.path or "/",
            canonical_query,
            "".join(f"{name}:{headers[name]}\n" for name in signed),
            ";".join(signed),
            _EMPTY_SHA256,
        ]
    )
    _akid, scope = lower.get("x-amz-credential", "/").split("/", 1)
    amz_date = lower.get("x-amz-date", "")
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            amz_date,
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = ("AWS4" + secret_key).encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, lower.get("x-amz-signature", "")):
        return "SignatureDoesNotMatch: the signature over the request (host, x-k8s-aws-id) is wrong"
    return None


def _caller_identity(body: bytes) -> dict[str, str]:
    """Arn, Account and UserId from a GetCallerIdentity answer (JSON as STS gives it to
    ``Accept: application/json``, or the query protocol's XML, as moto answers)."""
    text = body.strip()
    if text.startswith(b"{"):
        document = json.loads(text)
        result = document["GetCallerIdentityResponse"]["GetCallerIdentityResult"]
        return {key: str(result.get(key, "")) for key in ("Arn", "Account", "UserId")}
    root = ET.fromstring(text)
    found: dict[str, str] = {}
    for element in root.iter():
        name = element.tag.rsplit("}", 1)[-1]
        if name in {"Arn", "Account", "UserId"}:
            found[name] = (element.text or "").strip()
    if "Arn" not in found:
        raise ValueError("no Arn in the GetCallerIdentity answer")
    return found


class _EksWebhook:
    """aws-iam-authenticator's token verification, as kube-apiserver's TokenReview webhook."""

    def __init__(
        self, eks_name: str, sts_url: str, sts_credentials: Mapping[str, str] | None
    ) -> None:
        self.eks_name = eks_name
        sts = urllib.parse.urlsplit(sts_url)
        self.sts_scheme = sts.scheme
        self.sts_host = sts.netloc
        self.sts_credentials = dict(sts_credentials) if sts_credentials is not None else None
        self.lock = threading.Lock()
        self.reviews: list[TokenReview] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _WebhookHandler)
        self.server.daemon_threads = True
        self.server.webhook = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/authenticate"
        self.thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), name="eks-webhook", daemon=True
        )

    def review(self, token: str) -> TokenReview:
        try:
            return self._verify(token)
        except Exception as exc:  # a malformed token must be a refusal, never a 500
            return TokenReview(False, f"{type(exc).__name__}: {exc}")

    def _verify(self, token: str) -> TokenReview:
        # The checks of tokenVerifier.Verify, kubernetes-sigs/aws-iam-authenticator
        # pkg/token/token.go, in its order.
        if len(token) > _MAX_TOKEN_BYTES:
            return TokenReview(False, "input token was not properly formatted: token is too large")
        if not token.startswith(TOKEN_PREFIX):
            return TokenReview(False, f"token is missing expected {TOKEN_PREFIX!r} prefix")
        try:
            url_text = _b64url_decode(token[len(TOKEN_PREFIX) :]).decode()
        except ValueError as exc:
            return TokenReview(False, f"input token was not properly formatted: {exc}")
        url = urllib.parse.urlsplit(url_text)
        if url.scheme != self.sts_scheme:
            return TokenReview(
                False, f"unexpected scheme {url.scheme!r} in pre-signed URL", sts_host=url.netloc
            )
        if url.netloc != self.sts_host:
            return TokenReview(
                False, f"unexpected hostname {url.netloc!r} in pre-signed URL", sts_host=url.netloc
            )
        if url.path != "/":
            return TokenReview(False, "unexpected path in pre-signed URL", sts_host=url.netloc)
        pairs = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
        query: dict[str, str] = {}
        for key, value in pairs:
            if key.lower() not in _STS_QUERY_WHITELIST:
                return TokenReview(
                    False, f"non-whitelisted query parameter {key!r}", sts_host=url.netloc
                )
            if key in query:
                return TokenReview(False, "query parameter with multiple values not supported")
            query[key] = value
        lower = {key.lower(): value for key, value in query.items()}
        akid = lower.get("x-amz-credential", "").split("/")[0] or None
        refuse: dict[str, Any] = {"sts_host": url.netloc, "access_key_id": akid}
        if lower.get("action") != "GetCallerIdentity":
            return TokenReview(False, "unexpected action parameter in pre-signed URL", **refuse)
        signed = [name.lower() for name in lower.get("x-amz-signedheaders", "").split(";")]
        if CLUSTER_ID_HEADER not in signed:
            return TokenReview(
                False,
                f"client did not sign the {CLUSTER_ID_HEADER} header in the pre-signed URL",
                **refuse,
            )
        try:
            expires = int(lower.get("x-amz-expires", ""))
        except ValueError:
            expires = -1
        if not 0 <= expires <= 900:
            return TokenReview(False, "invalid X-Amz-Expires parameter in pre-signed URL", **refuse)
        date = lower.get("x-amz-date", "")
        if not date:
            return TokenReview(
                False, "X-Amz-Date parameter must be present in pre-signed URL", **refuse
            )
        try:
            signed_at = dt.datetime.strptime(date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        except ValueError:
            return TokenReview(False, f"error parsing X-Amz-Date parameter {date}", **refuse)
        if dt.datetime.now(dt.UTC) > signed_at + _PRESIGNED_URL_LIFETIME:
            return TokenReview(
                False, "X-Amz-Date parameter is expired (15 minute expiration)", **refuse
            )
        if self.sts_credentials is not None:
            # What real STS does and moto does not (see the module docstring).
            secret = self.sts_credentials.get(akid or "")
            if secret is None:
                return TokenReview(False, "InvalidClientTokenId: unknown access key id", **refuse)
            mismatch = _sigv4_mismatch(url, query, self.eks_name, secret)
            if mismatch:
                return TokenReview(False, mismatch, **refuse)
        status, body = self._get(url, query)
        if status != 200:
            return TokenReview(
                False, f"sts getCallerIdentity failed: expected 200, got {status}", **refuse
            )
        identity = _caller_identity(body)
        # Identity.UserID is the part of UserId before ":" (the session name follows it).
        uid = f"aws-iam-authenticator:{identity.get('Account', '')}:{identity.get('UserId', '').split(':')[0]}"
        return TokenReview(
            True, "ok", username=identity["Arn"], uid=uid, groups=ADMIN_GROUPS, **refuse
        )

    def _get(self, url: urllib.parse.SplitResult, query: Mapping[str, str]) -> tuple[int, bytes]:
        """GET the presigned URL as Verify does: cluster id header, JSON wanted, no redirects.

        Plus one adaptation to moto: its server picks the service from the ``Authorization``
        header's credential scope and does not read query-string (presigned) SigV4, so a bare
        presigned GET lands in its S3 backend; the same credential, signed headers and signature
        are repeated in an ``Authorization`` header for it (real STS reads them from the query).
        """
        connection: http.client.HTTPConnection
        if url.scheme == "https":
            connection = http.client.HTTPSConnection(url.netloc, timeout=_STS_TIMEOUT_S)
        else:
            connection = http.client.HTTPConnection(url.netloc, timeout=_STS_TIMEOUT_S)
        try:
            connection.request(
                "GET",
                f"{url.path}?{url.query}",
                headers={
                    CLUSTER_ID_HEADER: self.eks_name,
                    "Accept": "application/json",
                    "Authorization": (
                        f"{query.get('X-Amz-Algorithm', 'AWS4-HMAC-SHA256')}"
                        f" Credential={query.get('X-Amz-Credential', '')},"
                        f" SignedHeaders={query.get('X-Amz-SignedHeaders', '')},"
                        f" Signature={query.get('X-Amz-Signature', '')}"
                    ),
                },
            )
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


class _WebhookHandler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def do_POST(self) -> None:
        webhook: _EksWebhook = self.server.webhook  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        request = json.loads(self.rfile.read(length) or b"{}")
        token = str((request.get("spec") or {}).get("token") or "")
        review = webhook.review(token)
        with webhook.lock:
            webhook.reviews.append(review)
        status: dict[str, Any] = {"authenticated": review.accepted}
        if review.accepted:
            status["user"] = {
                "username": review.username,
                "uid": review.uid,
                "groups": list(review.groups),
                "extra": {
                    "arn": [review.username],
                    "accessKeyId": [review.access_key_id or ""],
                },
            }
        else:
            status["error"] = review.reason
        body = json.dumps(
            {
                "apiVersion": request.get("apiVersion", "authentication.k8s.io/v1"),
                "kind": "TokenReview",
                "status": status,
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


# --------------------------------------------------------------------------------------------
# The cluster


@dataclass
class KubeCluster:
    """A running etcd + kube-apiserver; see :func:`start_kube_cluster`."""

    url: str
    """``https://127.0.0.1:PORT``."""
    ca_pem: bytes
    """The CA that signed the serving certificate (PEM)."""
    ca_file: Path
    admin_token: str
    """A static token of user ``tunefleet-admin`` in group ``system:masters``."""
    kubeconfig: Path
    """A kubeconfig with the single context :attr:`context` (admin token user, CA data)."""
    context: str
    """``arn:aws:eks:{region}:{account}:cluster/{eks_name}``, as ``aws eks update-kubeconfig``
    names the cluster, user and context."""
    eks_name: str
    workdir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(repr=False)
    _webhook: _EksWebhook | None = field(default=None, repr=False)

    def api_client(self, token: str | None = None) -> ApiClient:
        """A kubernetes ``ApiClient`` for this cluster, authenticated with ``token`` (default:
        the admin token). Independent of the global kubernetes configuration."""
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.url
        configuration.ssl_ca_cert = str(self.ca_file)
        configuration.api_key = {"authorization": f"Bearer {token or self.admin_token}"}
        return client.ApiClient(configuration)

    @property
    def token_reviews(self) -> list[TokenReview]:
        """Every review the EKS webhook answered, in order (a copy; empty without ``sts_url``)."""
        if self._webhook is None:
            return []
        with self._webhook.lock:
            return list(self._webhook.reviews)

    def clear_token_reviews(self) -> None:
        if self._webhook is not None:
            with self._webhook.lock:
                self._webhook.reviews.clear()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        token: str | None = None,
    ) -> tuple[int, bytes]:
        """A raw request to the apiserver as admin (or ``token``): (status, body bytes).
        ``body`` is sent as JSON unless it is bytes. No exception for error statuses."""
        if query:
            path = f"{path}?{urllib.parse.urlencode(query)}"
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        context = ssl.create_default_context(cadata=self.ca_pem.decode())
        host = urllib.parse.urlsplit(self.url).netloc
        connection = http.client.HTTPSConnection(host, context=context, timeout=30)
        try:
            headers = {
                "Authorization": f"Bearer {token or self.admin_token}",
                "Accept": "application/json",
            }
            if data is not None:
                headers["Content-Type"] = content_type
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def json(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        """:meth:`request`, expecting a 2xx JSON answer (RuntimeError otherwise)."""
        status, data = self.request(method, path, body, **kwargs)
        if not 200 <= status < 300:
            raise RuntimeError(f"{method} {path} -> {status}: {data[:2000]!r}")
        return json.loads(data) if data else None

    def ensure_namespace(self, name: str) -> None:
        """Create the namespace unless it exists (only default, kube-system, kube-public and
        kube-node-lease do at start; objects in a missing namespace are refused)."""
        status, data = self.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
        if status not in {201, 409}:
            raise RuntimeError(f"creating namespace {name} -> {status}: {data!r}")

    def job_path(self, namespace: str, name: str | None = None) -> str:
        """The REST path of HyperPodPyTorchJobs in ``namespace`` (of one, given its name)."""
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
        return f"{path}/{name}" if name else path

    def endpoint_config_path(self, namespace: str, name: str | None = None) -> str:
        """The REST path of InferenceEndpointConfigs (``v1``) in ``namespace`` (of one, given
        its name)."""
        path = (
            f"/apis/{INFERENCE_GROUP}/{INFERENCE_VERSION}/namespaces/{namespace}/{INFERENCE_PLURAL}"
        )
        return f"{path}/{name}" if name else path


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the parent dies, however it dies (Linux)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )


def _start_etcd(workdir: Path, deadline: float) -> tuple[subprocess.Popen[bytes], str]:
    etcd = etcd_path()
    assert etcd is not None
    log = workdir / "etcd.log"
    for _attempt in range(3):  # another process may take a free port before etcd binds it
        client_port, peer_port = _free_port(), _free_port()
        client, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
        data = workdir / "etcd-data"
        shutil.rmtree(data, ignore_errors=True)
        process = _spawn(
            [
                str(etcd),
                *("--name", "default", "--data-dir", str(data)),
                *("--listen-client-urls", client, "--advertise-client-urls", client),
                *("--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer),
                *("--initial-cluster", f"default={peer}", "--listen-metrics-urls", ""),
                *("--log-level", "warn"),
            ],
            log,
        )
        while time.monotonic() < deadline and process.poll() is None:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", client_port, timeout=1)
                connection.request("GET", "/health")
                if b'"true"' in connection.getresponse().read():
                    return process, client
            except OSError:
                pass
            time.sleep(0.05)
        _stop(process)
        if time.monotonic() >= deadline:
            break
    raise RuntimeError(f"etcd did not start; {log}:\n{_tail(log)}")


def _webhook_kubeconfig(path: Path, url: str) -> None:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "eks-webhook", "cluster": {"server": url}}],
                "users": [{"name": "kube-apiserver", "user": {}}],
                "contexts": [
                    {
                        "name": "webhook",
                        "context": {"cluster": "eks-webhook", "user": "kube-apiserver"},
                    }
                ],
                "current-context": "webhook",
            }
        )
    )


def _apiserver_args(
    etcd_url: str, port: int, pki: _Pki, tokens: Path, webhook_config: Path | None
) -> list[str]:
    # As in shared/TESTING-TARGETS.md section A, plus the kubelet and webhook flags.
    args = [
        str(apiserver_path()),
        f"--etcd-servers={etcd_url}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        "--insecure-port=0",
        "--advertise-address=127.0.0.1",
        f"--tls-cert-file={pki.cert_file}",
        f"--tls-private-key-file={pki.key_file}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki.sa_pub_file}",
        f"--service-account-signing-key-file={pki.sa_key_file}",
        "--api-audiences=https://kubernetes.default.svc.cluster.local",
        "--service-cluster-ip-range=10.96.0.0/24",
        f"--token-auth-file={tokens}",
        "--authorization-mode=RBAC",
        "--disable-admission-plugins=ServiceAccount",
        "--enable-priority-and-fairness=false",
        # pods/log is proxied to the node's InternalIP (the fake kubelet on 127.0.0.1).
        "--kubelet-preferred-address-types=InternalIP",
        "--profiling=false",
        "--logtostderr=true",
        "--v=1",
    ]
    if webhook_config is not None:
        args += [
            f"--authentication-token-webhook-config-file={webhook_config}",
            "--authentication-token-webhook-version=v1",
            "--authentication-token-webhook-cache-ttl=0s",
        ]
    return args


def _wait_ready(cluster: KubeCluster, process: subprocess.Popen[bytes], deadline: float) -> bool:
    """True once /readyz is ok and the default namespace exists; False if the process exits."""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            status, _ = cluster.request("GET", "/readyz")
            if status == 200:
                status, _ = cluster.request("GET", "/api/v1/namespaces/default")
                if status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"kube-apiserver was not ready in {_START_TIMEOUT_S:.0f} s")


def _load_yaml(text: str | bytes) -> dict[str, Any]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    document = yaml.load(text, Loader=loader)
    assert isinstance(document, dict)
    return document


def render_inference_crd(path: Path = INFERENCE_CRD_FILE) -> dict[str, Any]:
    """A vendored inference-operator CRD (``specs/inference/*.yaml.gz``) as the chart installs it.

    The files are inputs to the chart's templates (``templates/default.yaml`` renders them with
    ``tpl``): the conversion webhook's service name and namespace and the cert-manager
    annotation hold ``{{ .Values.namePrefix }}`` / ``{{ .Values.shortPrefix }}``. Each is
    replaced by the chart's default (:data:`INFERENCE_CHART_VALUES`), giving service
    ``hyperpod-inference-operator-conversion-webhook`` in ``hyperpod-inference-system``.
    Unrendered, kube-apiserver 1.20 accepts the CRD but answers every request for its resource
    500 ("host must be a URL or a host:port pair"). Rendered, ``v1`` (the storage version)
    works without the webhook; ``v1alpha1`` reads fail (no webhook runs), which no test does.

    The other correction the README names (26 ``default: ""``) is not made here: the test
    kube-apiserver is built with the empty-string validation fix (scripts/test-servers.sh).
    Raises ValueError if a placeholder other than these is left.
    """
    text = gzip.decompress(path.read_bytes()).decode()
    for key, value in INFERENCE_CHART_VALUES.items():
        text = text.replace("{{ .Values." + key + " }}", value)
    if "{{" in text:
        raise ValueError(f"{path.name}: a Helm placeholder is left unrendered")
    return _load_yaml(text)


def _post_crd(cluster: KubeCluster, document: dict[str, Any]) -> None:
    cluster.json("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", document)


def _wait_served(cluster: KubeCluster, crd_name: str, probe: str, deadline: float) -> None:
    """Wait until CRD ``crd_name`` is Established and a GET of ``probe`` (a list of its
    resource in the version to be used) answers 200: Established can come a moment before the
    new resource is served."""
    path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd_name}"
    while time.monotonic() < deadline:
        crd = cluster.json("GET", path)
        conditions = (crd.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
            status, _ = cluster.request("GET", probe)
            if status == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"CRD {crd_name} was not Established and served in time")


def _install_crds(cluster: KubeCluster, deadline: float) -> None:
    """Install the job CRD and the inference operator's two and wait until all three are
    served. Each is posted and waited for in its own thread: the apiserver spends about a
    second building the InferenceEndpointConfig's handler (a 450 kB schema, two versions) on
    the first request for it, which then overlaps the job CRD's establishing."""
    crds = [
        (
            _load_yaml(gzip.decompress(CRD_FILE.read_bytes())),
            CRD_NAME,
            cluster.job_path("default"),
        ),
        (
            render_inference_crd(INFERENCE_CRD_FILE),
            INFERENCE_CRD_NAME,
            cluster.endpoint_config_path("default"),
        ),
        (
            render_inference_crd(REGISTRATION_CRD_FILE),
            REGISTRATION_CRD_NAME,
            f"/apis/{INFERENCE_GROUP}/{INFERENCE_VERSION}/namespaces/default/{REGISTRATION_PLURAL}",
        ),
    ]

    def install(document: dict[str, Any], name: str, probe: str) -> None:
        _post_crd(cluster, document)
        _wait_served(cluster, name, probe, deadline)

    with concurrent.futures.ThreadPoolExecutor(len(crds), "install-crd") as pool:
        for done in [pool.submit(install, *crd) for crd in crds]:
            done.result()  # raises what the thread raised


@contextlib.contextmanager
def start_kube_cluster(
    workdir: Path,
    *,
    region: str,
    account: str,
    eks_name: str,
    sts_url: str | None = None,
    sts_credentials: Mapping[str, str] | None = None,
) -> Iterator[KubeCluster]:
    """Run etcd + kube-apiserver v1.20.2 on 127.0.0.1 with the HyperPodPyTorchJob,
    InferenceEndpointConfig and SageMakerEndpointRegistration CRDs Established and served
    (``v1``).

    ``workdir`` receives the PKI, logs (``etcd.log``, ``kube-apiserver.log``), etcd's data and
    the kubeconfig. With ``sts_url``, bearer tokens other than the admin token are checked by
    the EKS webhook (module docstring) against that STS endpoint; ``sts_credentials``
    (access key id -> secret key) makes it check their SigV4 signatures too. On exit both
    processes are stopped and waited for. Raises RuntimeError saying
    :func:`why_unavailable` when the binaries are missing. Takes 5-15 s (most of it
    kube-apiserver's start; 2 cores).
    """
    reason = why_unavailable()
    if reason is not None:
        raise RuntimeError(reason)
    workdir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + _START_TIMEOUT_S
    pki = _make_pki(workdir / "pki")
    admin_token = base64.urlsafe_b64encode(os.urandom(24)).decode().rstrip("=")
    tokens = workdir / "pki" / "tokens.csv"
    tokens.write_text(f'{admin_token},tunefleet-admin,1000,"system:masters"\n')
    tokens.chmod(0o600)
    webhook: _EksWebhook | None = None
    webhook_config: Path | None = None
    if sts_url is not None:
        webhook = _EksWebhook(eks_name, sts_url, sts_credentials)
        webhook.thread.start()
        webhook_config = workdir / "eks-webhook.kubeconfig"
        _webhook_kubeconfig(webhook_config, webhook.url)
    context = f"arn:aws:eks:{region}:{account}:cluster/{eks_name}"
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        processes["etcd"], etcd_url = _start_etcd(workdir, deadline)
        log = workdir / "kube-apiserver.log"
        cluster: KubeCluster | None = None
        for _attempt in range(3):
            port = _free_port()
            processes["kube-apiserver"] = _spawn(
                _apiserver_args(etcd_url, port, pki, tokens, webhook_config), log
            )
            cluster = KubeCluster(
                url=f"https://127.0.0.1:{port}",
                ca_pem=pki.ca_pem,
                ca_file=pki.ca_file,
                admin_token=admin_token,
                kubeconfig=workdir / "kubeconfig",
                context=context,
                eks_name=eks_name,
                workdir=workdir,
                processes=processes,
                _webhook=webhook,
            )
            if _wait_ready(cluster, processes["kube-apiserver"], deadline):
                break
            _stop(processes["kube-apiserver"])
        else:
            raise RuntimeError(f"kube-apiserver did not start; {log}:\n{_tail(log)}")
        assert cluster is not None
        _write_kubeconfig(cluster)
        _install_crds(cluster, deadline)
        yield cluster
    finally:
        for name in ("kube-apiserver", "etcd"):
            if name in processes:
                _stop(processes[name])
        if webhook is not None:
            webhook.server.shutdown()
            webhook.server.server_close()


def _write_kubeconfig(cluster: KubeCluster) -> None:
    """What ``aws eks update-kubeconfig`` writes (cluster, user and context all named by the
    ARN), with the admin token instead of the ``aws eks get-token`` exec plugin."""
    name = cluster.context
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {
                    "server": cluster.url,
                    "certificate-authority-data": base64.b64encode(cluster.ca_pem).decode(),
                },
            }
        ],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
        "preferences": {},
        "users": [{"name": name, "user": {"token": cluster.admin_token}}],
    }
    cluster.kubeconfig.write_text(json.dumps(document, indent=2))  # JSON is YAML
    cluster.kubeconfig.chmod(0o600)


# --------------------------------------------------------------------------------------------
# The fake kubelet


def _rfc3339nano(moment: dt.datetime) -> str:
    """The kubelet's log timestamp: RFC3339 with 9 fractional digits, UTC ``Z``
    (pkg/kubelet/kuberuntime/logs/logs.go ``timeFormatOut``)."""
    utc = moment.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond * 1000:09d}Z"


def _parse_rfc3339(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class _Container:
    lines: list[tuple[dt.datetime, str]] = field(default_factory=list)
    previous: list[tuple[dt.datetime, str]] | None = None


class FakeKubelet:
    """An HTTPS server answering kube-apiserver's ``/containerLogs/{ns}/{pod}/{container}`` as a
    kubelet does, from lines recorded with :meth:`log`. Only pods made known with
    :meth:`add_pod` exist on it (others: 404, as a kubelet answers for a pod it does not run)."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        cert, key = _make_certificate("hyperpod-kubelet")
        cert_file, key_file = workdir / "kubelet.crt", workdir / "kubelet.key"
        cert_file.write_bytes(_pem(cert))
        _write_private_key(key_file, key)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        self.lock = threading.Lock()
        self.containers: dict[tuple[str, str, str], _Container] = {}
        self.requests: list[str] = []
        """The request lines received (path and query), for assertions."""
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _KubeletHandler)
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.server.kubelet = self  # type: ignore[attr-defined]
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), name="fake-kubelet", daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add_pod(self, namespace: str, pod: str, containers: list[str]) -> None:
        with self.lock:
            for container in containers:
                self.containers.setdefault((namespace, pod, container), _Container())

    def remove_pod(self, namespace: str, pod: str) -> None:
        with self.lock:
            for key in [k for k in self.containers if k[:2] == (namespace, pod)]:
                del self.containers[key]

    def log(
        self,
        namespace: str,
        pod: str,
        container: str,
        lines: list[str],
        at: dt.datetime | None = None,
    ) -> list[dt.datetime]:
        """Append lines to the container's current log; returns their timestamps: ``at`` (or
        now) for the first, each later one 1 µs on; never earlier than the log's last line
        + 1 µs (a log's timestamps only increase)."""
        stamps: list[dt.datetime] = []
        with self.lock:
            record = self.containers.setdefault((namespace, pod, container), _Container())
            moment = (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
            for line in lines:
                if record.lines and moment <= record.lines[-1][0]:
                    moment = record.lines[-1][0] + dt.timedelta(microseconds=1)
                record.lines.append((moment, line))
                stamps.append(moment)
                moment = moment + dt.timedelta(microseconds=1)
        return stamps

    def restart_container(self, namespace: str, pod: str, container: str) -> None:
        """The container restarted: its current log becomes the ``previous=true`` one."""
        with self.lock:
            record = self.containers.setdefault((namespace, pod, container), _Container())
            record.previous, record.lines = record.lines, []

    def render(
        self, namespace: str, pod: str, container: str, query: Mapping[str, str]
    ) -> tuple[int, bytes]:
        """(status, body) of ``/containerLogs`` as the kubelet answers it: tailLines first, then
        since (sinceTime, or now - sinceSeconds: lines stamped at or after it), then the
        timestamp prefix, then limitBytes (pkg/kubelet/kuberuntime/logs/logs.go ReadLogs).
        ``follow=true`` answers what there is and ends, as for a container that has exited."""
        with self.lock:
            known = [k for k in self.containers if k[:2] == (namespace, pod)]
            record = self.containers.get((namespace, pod, container))
            if not known:
                return 404, f'pod "{pod}" in namespace "{namespace}" does not exist\n'.encode()
            if record is None:
                return 404, f'container "{container}" not found in pod "{pod}"\n'.encode()
            if query.get("previous") == "true":
                if record.previous is None:
                    return 400, (
                        f'previous terminated container "{container}" in pod "{pod}" not found\n'
                    ).encode()
                lines = list(record.previous)
            else:
                lines = list(record.lines)
        if "tailLines" in query:
            tail = int(query["tailLines"])
            lines = lines[-tail:] if tail > 0 else []
        since: dt.datetime | None = None
        if "sinceTime" in query:
            since = _parse_rfc3339(query["sinceTime"])
        elif "sinceSeconds" in query:
            since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=int(query["sinceSeconds"]))
        if since is not None:
            lines = [(moment, text) for moment, text in lines if moment >= since]
        stamp = query.get("timestamps") == "true"
        body = "".join(
            f"{_rfc3339nano(moment)} {text}\n" if stamp else f"{text}\n" for moment, text in lines
        ).encode()
        if "limitBytes" in query:
            body = body[: int(query["limitBytes"])]
        return 200, body


class _KubeletHandler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def do_GET(self) -> None:
        kubelet: FakeKubelet = self.server.kubelet  # type: ignore[attr-defined]
        with kubelet.lock:
            kubelet.requests.append(self.path)
        url = urllib.parse.urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        if len(parts) != 4 or parts[0] != "containerLogs":
            status, body = 404, b"404 page not found\n"
        else:
            query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
            status, body = kubelet.render(parts[1], parts[2], parts[3], query)
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


# --------------------------------------------------------------------------------------------
# The operator


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _set_condition(
    conditions: list[dict[str, Any]], kind: str, reason: str, message: str, status: str = "True"
) -> list[dict[str, Any]]:
    """Kubeflow's setCondition/filterOutCondition (kubeflow/common pkg/util/status.go): the
    condition replaces one of its type and goes last; Running and Restarting replace each
    other; Completed/Failed flip Running to False. Same status -> unchanged (no new time)."""
    now = _now()
    for existing in conditions:
        if (existing.get("type"), existing.get("status")) == (kind, status) and (
            existing.get("reason"),
            existing.get("message"),
        ) == (reason, message):
            return conditions
    kept: list[dict[str, Any]] = []
    for existing in conditions:
        other = existing.get("type")
        if other == kind or {other, kind} == {"Running", "Restarting"}:
            continue
        if kind in {"Completed", "Failed"} and other == "Running":
            existing = {
                **existing,
                "status": "False",
                "lastTransitionTime": now,
                "lastProbeTime": now,
            }
        kept.append(existing)
    kept.append(
        {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": now,
            "lastProbeTime": now,
        }
    )
    return kept


class Operator:
    """Plays the HyperPod training operator and the nodes (with one fake kubelet for all of
    them) on a :class:`KubeCluster`. See the module docstring for what the real one does.

    Every method acts at once and returns when the apiserver has the result. Call
    :meth:`close` (or use it as a context manager) to stop the kubelet. Use one Operator per
    cluster: a node registered again points at the newest Operator's kubelet.
    """

    def __init__(self, cluster: KubeCluster) -> None:
        self.cluster = cluster
        self.kubelet = FakeKubelet(cluster.workdir / "kubelet")
        self.nodes: list[str] = []

    def __enter__(self) -> Operator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.kubelet.close()

    # Nodes

    def register_node(
        self,
        name: str = DEFAULT_NODE,
        *,
        instance_type: str = DEFAULT_INSTANCE_TYPE,
        instance_group: str = "workers",
        labels: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Create a HyperPod-labelled Node served by the fake kubelet, Ready (idempotent)."""
        node_labels = {
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "node.kubernetes.io/instance-type": instance_type,
            "sagemaker.amazonaws.com/compute-type": "hyperpod",
            "sagemaker.amazonaws.com/instance-group-name": instance_group,
            "sagemaker.amazonaws.com/node-health-status": "Schedulable",
            "sagemaker.amazonaws.com/deep-health-check-status": "Passed",
            **(labels or {}),
        }
        status, data = self.cluster.request(
            "POST", "/api/v1/nodes", {"metadata": {"name": name, "labels": node_labels}}
        )
        if status not in {201, 409}:
            raise RuntimeError(f"creating node {name} -> {status}: {data!r}")
        now = _now()
        node = self.cluster.json(
            "PATCH",
            f"/api/v1/nodes/{name}/status",
            {
                "status": {
                    "addresses": [
                        {"type": "InternalIP", "address": "127.0.0.1"},
                        {"type": "Hostname", "address": name},
                    ],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet.port}},
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "KubeletReady",
                            "message": "kubelet is posting ready status",
                            "lastHeartbeatTime": now,
                            "lastTransitionTime": now,
                        }
                    ],
                    "capacity": {
                        "cpu": "32",
                        "memory": "128Gi",
                        "nvidia.com/gpu": "1",
                        "pods": "110",
                    },
                    "allocatable": {
                        "cpu": "31",
                        "memory": "120Gi",
                        "nvidia.com/gpu": "1",
                        "pods": "110",
                    },
                    "nodeInfo": {
                        "architecture": "amd64",
                        "bootID": "00000000-0000-0000-0000-000000000001",
                        "containerRuntimeVersion": "containerd://1.7.27",
                        "kernelVersion": "5.10.0",
                        "kubeProxyVersion": f"v{KUBE_VERSION}",
                        "kubeletVersion": f"v{KUBE_VERSION}",
                        "machineID": name,
                        "operatingSystem": "linux",
                        "osImage": "Amazon Linux 2",
                        "systemUUID": name,
                    },
                }
            },
            content_type="application/merge-patch+json",
        )
        if name not in self.nodes:
            self.nodes.append(name)
        assert isinstance(node, dict)
        return node

    # Jobs

    def get_job(self, namespace: str, name: str) -> dict[str, Any]:
        job = self.cluster.json("GET", self.cluster.job_path(namespace, name))
        assert isinstance(job, dict)
        return job

    def _patch_job_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        job = self.cluster.json(
            "PATCH",
            self.cluster.job_path(namespace, name) + "/status",
            {"status": status},
            content_type="application/merge-patch+json",
        )
        assert isinstance(job, dict)
        return job

    def _conditions(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        return list((job.get("status") or {}).get("conditions") or [])

    def admit(self, namespace: str, name: str) -> dict[str, Any]:
        """The job is seen: condition Created, restartCount 0 (no pods yet)."""
        job = self.get_job(namespace, name)
        conditions = _set_condition(
            self._conditions(job), "Created", "JobCreated", f"HyperPodPyTorchJob {name} is created."
        )
        status: dict[str, Any] = {"conditions": conditions}
        if "restartCount" not in (job.get("status") or {}):
            status["restartCount"] = 0
        return self._patch_job_status(namespace, name, status)

    def pod_names(self, namespace: str, name: str) -> list[str]:
        """The job's pods (label ``HPJob=<name>``), by name."""
        pods = self.cluster.json(
            "GET",
            f"/api/v1/namespaces/{namespace}/pods",
            query={"labelSelector": f"{JOB_LABEL}={name}"},
        )
        return sorted(pod["metadata"]["name"] for pod in pods["items"])

    def start(
        self, namespace: str, name: str, replicas: int | None = None, node: str | None = None
    ) -> dict[str, Any]:
        """Admit the job (if not yet), create its pods ``<name>-pod-<i>`` (label ``HPJob``, the
        template's labels, containers with the template's names/images/commands, owner: the
        job) on ``node`` (default: the first registered node; one is registered if none is),
        make them Running, and set the job's startTime, Running condition and jobPods.
        ``replicas`` defaults to replicaSpecs[0].replicas (else 1). Returns the job."""
        job = self.admit(namespace, name)
        spec = job.get("spec") or {}
        replica_spec = (spec.get("replicaSpecs") or [{}])[0]
        template = replica_spec.get("template") or {}
        pod_spec = template.get("spec") or {}
        if replicas is None:
            replicas = int(replica_spec.get("replicas") or 1)
        if node is None:
            if not self.nodes:
                selector = pod_spec.get("nodeSelector") or {}
                self.register_node(
                    instance_type=selector.get(
                        "node.kubernetes.io/instance-type", DEFAULT_INSTANCE_TYPE
                    )
                )
            node = self.nodes[0]
        containers = [
            {
                key: value
                for key, value in container.items()
                if key in {"name", "image", "command", "args", "env", "workingDir"}
            }
            for container in pod_spec.get("containers") or []
        ]
        if not containers:
            raise ValueError(f"job {namespace}/{name} has no containers in replicaSpecs[0]")
        labels = {**((template.get("metadata") or {}).get("labels") or {}), JOB_LABEL: name}
        refs: list[dict[str, Any]] = []
        for index in range(replicas):
            pod_name = f"{name}-pod-{index}"
            body = {
                "metadata": {
                    "name": pod_name,
                    "namespace": namespace,
                    "labels": labels,
                    "ownerReferences": [
                        {
                            "apiVersion": f"{GROUP}/{VERSION}",
                            "kind": KIND,
                            "name": name,
                            "uid": job["metadata"]["uid"],
                            "controller": True,
                            "blockOwnerDeletion": True,
                        }
                    ],
                },
                "spec": {
                    "nodeName": node,
                    "restartPolicy": "Never",
                    "containers": copy.deepcopy(containers),
                },
            }
            status, data = self.cluster.request(
                "POST", f"/api/v1/namespaces/{namespace}/pods", body
            )
            if status == 409:
                pod = self.cluster.json("GET", f"/api/v1/namespaces/{namespace}/pods/{pod_name}")
            elif status == 201:
                pod = json.loads(data)
            else:
                raise RuntimeError(f"creating pod {pod_name} -> {status}: {data!r}")
            self.kubelet.add_pod(namespace, pod_name, [c["name"] for c in containers])
            self._set_pod_phase(namespace, pod_name, "Running")
            refs.append(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": pod_name,
                    "namespace": namespace,
                    "uid": pod["metadata"]["uid"],
                }
            )
        job = self.get_job(namespace, name)
        conditions = _set_condition(
            self._conditions(job), "Running", "JobRunning", f"HyperPodPyTorchJob {name} is running."
        )
        status_patch: dict[str, Any] = {"conditions": conditions, "jobPods": refs}
        if not (job.get("status") or {}).get("startTime"):
            status_patch["startTime"] = _now()
        return self._patch_job_status(namespace, name, status_patch)

    def _set_pod_phase(
        self,
        namespace: str,
        pod_name: str,
        phase: str,
        *,
        exit_code: int = 0,
        restarted: bool = False,
    ) -> None:
        pod = self.cluster.json("GET", f"/api/v1/namespaces/{namespace}/pods/{pod_name}")
        now = _now()
        previous = {s["name"]: s for s in (pod.get("status") or {}).get("containerStatuses") or []}
        statuses = []
        for container in pod["spec"]["containers"]:
            old = previous.get(container["name"], {})
            restarts = int(old.get("restartCount", 0)) + (1 if restarted else 0)
            status: dict[str, Any] = {
                "name": container["name"],
                "image": container["image"],
                "imageID": f"{container['image']}@sha256:{hashlib.sha256(container['image'].encode()).hexdigest()}",
                "containerID": "containerd://"
                + hashlib.sha256(f"{pod_name}/{container['name']}/{restarts}".encode()).hexdigest(),
                "ready": phase == "Running",
                "started": phase == "Running",
                "restartCount": restarts,
            }
            if phase == "Running":
                status["state"] = {"running": {"startedAt": now}}
                if restarted:
                    status["lastState"] = {
                        "terminated": {
                            "exitCode": 1,
                            "reason": "Error",
                            "startedAt": now,
                            "finishedAt": now,
                        }
                    }
                elif "lastState" in old:
                    status["lastState"] = old["lastState"]
            else:
                status["state"] = {
                    "terminated": {
                        "exitCode": exit_code,
                        "reason": "Completed" if exit_code == 0 else "Error",
                        "startedAt": (old.get("state", {}).get("running") or {}).get(
                            "startedAt", now
                        ),
                        "finishedAt": now,
                    }
                }
            statuses.append(status)
        ready = "True" if phase == "Running" else "False"
        self.cluster.json(
            "PATCH",
            f"/api/v1/namespaces/{namespace}/pods/{pod_name}/status",
            {
                "status": {
                    "phase": phase,
                    "hostIP": "127.0.0.1",
                    "podIP": "127.0.0.1",
                    "podIPs": [{"ip": "127.0.0.1"}],
                    "startTime": (pod.get("status") or {}).get("startTime") or now,
                    "conditions": [
                        {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                        {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                        {"type": "ContainersReady", "status": ready, "lastTransitionTime": now},
                        {"type": "Ready", "status": ready, "lastTransitionTime": now},
                    ],
                    "containerStatuses": statuses,
                }
            },
            content_type="application/merge-patch+json",
        )

    def log(
        self,
        namespace: str,
        pod: str,
        lines: list[str],
        container: str | None = None,
        at: dt.datetime | None = None,
    ) -> list[dt.datetime]:
        """Append ``lines`` to the pod's container log (default: its first container), with
        increasing timestamps from ``at`` (default now); returns the timestamps."""
        if container is None:
            spec = self.cluster.json("GET", f"/api/v1/namespaces/{namespace}/pods/{pod}")["spec"]
            container = str(spec["containers"][0]["name"])
        return self.kubelet.log(namespace, pod, container, lines, at=at)

    def _finish(
        self, namespace: str, name: str, kind: str, reason: str, message: str
    ) -> dict[str, Any]:
        exit_code = 0 if kind == "Completed" else 1
        phase = "Succeeded" if kind == "Completed" else "Failed"
        for pod_name in self.pod_names(namespace, name):
            self._set_pod_phase(namespace, pod_name, phase, exit_code=exit_code)
        job = self.get_job(namespace, name)
        conditions = _set_condition(self._conditions(job), kind, reason, message)
        return self._patch_job_status(
            namespace, name, {"conditions": conditions, "completionTime": _now()}
        )

    def succeed(self, namespace: str, name: str) -> dict[str, Any]:
        """Pods Succeeded (exit 0); condition Completed, Running -> False, completionTime."""
        return self._finish(
            namespace,
            name,
            "Completed",
            "JobCompleted",
            f"HyperPodPyTorchJob {name} completed successfully.",
        )

    def fail(
        self, namespace: str, name: str, reason: str = "JobFailed", message: str = ""
    ) -> dict[str, Any]:
        """Pods Failed (exit 1); condition Failed with ``reason``/``message``, Running ->
        False, completionTime."""
        return self._finish(
            namespace, name, "Failed", reason, message or f"HyperPodPyTorchJob {name} failed."
        )

    def restart(self, namespace: str, name: str, message: str = "") -> dict[str, Any]:
        """Auto-resume after a fault: restartCount + 1, condition Restarting (replacing
        Running); each pod's containers restart in place (container restartCount + 1,
        lastState terminated, the log so far becomes ``previous=true``). Call :meth:`resume`
        for Running again."""
        for pod_name in self.pod_names(namespace, name):
            pod = self.cluster.json("GET", f"/api/v1/namespaces/{namespace}/pods/{pod_name}")
            for container in pod["spec"]["containers"]:
                self.kubelet.restart_container(namespace, pod_name, container["name"])
            self._set_pod_phase(namespace, pod_name, "Running", restarted=True)
        job = self.get_job(namespace, name)
        conditions = _set_condition(
            self._conditions(job),
            "Restarting",
            "JobRestarting",
            message or f"HyperPodPyTorchJob {name} is restarting.",
        )
        count = int((job.get("status") or {}).get("restartCount") or 0) + 1
        return self._patch_job_status(
            namespace, name, {"conditions": conditions, "restartCount": count}
        )

    def resume(self, namespace: str, name: str) -> dict[str, Any]:
        """After :meth:`restart`: condition Running again (replacing Restarting)."""
        job = self.get_job(namespace, name)
        conditions = _set_condition(
            self._conditions(job), "Running", "JobRunning", f"HyperPodPyTorchJob {name} is running."
        )
        return self._patch_job_status(namespace, name, {"conditions": conditions})

    def suspend(self, namespace: str, name: str, message: str = "") -> dict[str, Any]:
        """Kueue preempted the job: condition Suspended, Running -> False, pods deleted."""
        for pod_name in self.pod_names(namespace, name):
            self.cluster.request(
                "DELETE",
                f"/api/v1/namespaces/{namespace}/pods/{pod_name}",
                query={"gracePeriodSeconds": "0"},
            )
            self.kubelet.remove_pod(namespace, pod_name)
        job = self.get_job(namespace, name)
        conditions = [
            {**c, "status": "False"} if c.get("type") == "Running" else c
            for c in self._conditions(job)
        ]
        conditions = _set_condition(
            conditions,
            "Suspended",
            "JobSuspended",
            message or f"HyperPodPyTorchJob {name} is suspended.",
        )
        return self._patch_job_status(namespace, name, {"conditions": conditions})

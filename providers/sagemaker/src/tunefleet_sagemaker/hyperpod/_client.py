"""The clients HyperPod needs, and the one translation of their errors into tunefleet's.

- SageMaker (DescribeCluster, ListClusterNodes) and S3: boto3 through the SageMaker
  provider's client, whose :func:`~tunefleet_sagemaker._client.translated` turns botocore's
  errors into tunefleet's by AWS's error code; here they carry this provider's name.
- The EKS cluster's Kubernetes API: the official ``kubernetes`` client (the optional
  dependency ``tunefleet-sagemaker[hyperpod]``), imported by the first call that needs it.
  Credentials are a kubeconfig context (``options.kube_context``) or, by default, a
  bearer token signed from the AWS credential chain exactly as ``aws eks get-token`` signs
  it (:func:`eks_token`), for the endpoint and certificate authority EKS's DescribeCluster
  gives. :func:`kube_translated` turns the API server's answers into tunefleet's errors by
  HTTP status and the Status object's ``reason``, never by its message.
"""

from __future__ import annotations

import base64
import shlex
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tunefleet.errors import (
    AlreadyExistsError,
    ProviderError,
    ProviderNotFoundError,
    TransientProviderError,
)
from tunefleet_sagemaker._client import client, translated

__all__ = [
    "PROVIDER",
    "Channel",
    "aws",
    "aws_translated",
    "eks_token",
    "kube_api",
    "kube_translated",
]

PROVIDER = "hyperpod"
TOKEN_PREFIX = "k8s-aws-v1."  # noqa: S105 (the scheme of EKS tokens, not a secret)
TOKEN_LIFETIME_SECONDS = 10 * 60
"""How long a signed token is used. The presigned URL says 60 s, but EKS's authenticator
accepts a token for 15 minutes after it was signed (aws-iam-authenticator,
pkg/token/token.go: ``presignedURLExpiration = 15 * time.Minute``; ``aws eks get-token``
prints an expiry 14 minutes out); re-signing after 10 leaves room for a slow call."""
_KUBE_TIMEOUT = (10, 60)
"""Connect and read timeouts of every Kubernetes API request, in seconds."""


def aws(service: str, region: str) -> Any:
    """A boto3 client for ``service`` in ``region`` (the standard credential chain)."""
    return client(service, region)


@contextmanager
def aws_translated(operation: str, *, lookup: bool = False) -> Iterator[None]:
    """botocore's errors as tunefleet's, for this provider (see the SageMaker provider's
    :func:`~tunefleet_sagemaker._client.translated`)."""
    with translated(operation, lookup=lookup, provider=PROVIDER):
        yield


def eks_token(region: str, eks_cluster: str) -> str:
    """A bearer token for ``eks_cluster``'s API, as ``aws eks get-token`` makes it
    (awscli, customizations/eks/get_token.py): a GetCallerIdentity URL of the region's STS
    endpoint, presigned for 60 s with the header ``x-k8s-aws-id: <cluster name>`` signed
    in, base64url-encoded without padding after ``k8s-aws-v1.``. EKS asks STS who signed
    it and maps that identity to Kubernetes users (access entries or ``aws-auth``)."""
    sts = aws("sts", region)

    def keep_cluster_id(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        # A parameter GetCallerIdentity does not have: taken out before validation...
        if "x-k8s-aws-id" in params:
            context["x-k8s-aws-id"] = params.pop("x-k8s-aws-id")

    def sign_cluster_id(request: Any, **_: Any) -> None:
        # ...and put back as a header, so the signature covers it.
        if "x-k8s-aws-id" in request.context:
            request.headers["x-k8s-aws-id"] = request.context["x-k8s-aws-id"]

    sts.meta.events.register("provide-client-params.sts.GetCallerIdentity", keep_cluster_id)
    sts.meta.events.register("before-sign.sts.GetCallerIdentity", sign_cluster_id)
    with aws_translated("sign an EKS token (STS GetCallerIdentity)"):
        url = sts.generate_presigned_url(
            "get_caller_identity",
            Params={"x-k8s-aws-id": eks_cluster},
            ExpiresIn=60,
            HttpMethod="GET",
        )
    encoded = base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")
    return TOKEN_PREFIX + encoded


class _KubeClients:
    """Kubernetes API clients by (context or EKS cluster), re-signed before tokens expire."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, ...], tuple[float, Any]] = {}
        self._ca_files: dict[str, str] = {}

    def get(self, key: tuple[str, ...], make: Any) -> Any:
        with self._lock:
            found = self._clients.get(key)
            if found is not None and found[0] > time.time():
                return found[1]
        made, lifetime = make()
        with self._lock:
            # Wall-clock time: a monotonic clock stops while a laptop sleeps, and the token
            # expires 15 minutes after it was signed whatever the machine did meanwhile.
            self._clients[key] = (time.time() + lifetime, made)
        return made

    def ca_file(self, pem: bytes) -> str:
        """A file holding ``pem`` (the client reads a CA only from a file), one per CA."""
        key = pem.decode()
        with self._lock:
            if key not in self._ca_files:
                with tempfile.NamedTemporaryFile(
                    "wb", prefix="tunefleet-eks-ca-", suffix=".pem", delete=False
                ) as handle:
                    handle.write(pem)
                self._ca_files[key] = handle.name
            return self._ca_files[key]


_CLIENTS = _KubeClients()


def _kubernetes() -> Any:
    try:
        import kubernetes
    except ImportError:
        raise ProviderError(
            PROVIDER,
            "HyperPod clusters orchestrated by Amazon EKS need the Kubernetes client: "
            "pip install 'tunefleet-sagemaker[hyperpod]'",
            code="missing_dependency",
        ) from None
    return kubernetes


def kube_api(*, region: str, eks_cluster_arn: str, context: str | None) -> Any:
    """A ``kubernetes.client.ApiClient`` for the EKS cluster ``eks_cluster_arn``: from the
    kubeconfig ``context`` when given, else with the endpoint and CA EKS describes and a
    token signed from the AWS credential chain (:func:`eks_token`)."""
    kubernetes = _kubernetes()
    if context is not None:

        def from_kubeconfig() -> tuple[Any, float]:
            try:
                made = kubernetes.config.new_client_from_config(context=context)
            except (kubernetes.config.ConfigException, OSError) as exc:
                raise ProviderError(
                    PROVIDER,
                    f"kubeconfig context {context!r}: {exc} (options.kube_context names a "
                    "context of $KUBECONFIG or ~/.kube/config)",
                    code="kubeconfig",
                ) from None
            # An exec plugin's token (aws eks get-token) expires; read it anew now and then.
            return made, float(TOKEN_LIFETIME_SECONDS)

        return _CLIENTS.get(("context", context), from_kubeconfig)

    name = eks_cluster_arn.rsplit("/", 1)[-1]

    def from_eks() -> tuple[Any, float]:
        eks = aws("eks", region)
        with aws_translated(f"describe EKS cluster {name}", lookup=True):
            described = eks.describe_cluster(name=name)["cluster"]
        endpoint = described.get("endpoint")
        authority = (described.get("certificateAuthority") or {}).get("data")
        if not endpoint or not authority:
            raise ProviderError(
                PROVIDER,
                f"EKS cluster {name} has no API endpoint or certificate authority yet "
                f"(status {described.get('status')})",
                code="eks_not_ready",
            )
        configuration = kubernetes.client.Configuration()
        configuration.host = endpoint
        configuration.ssl_ca_cert = _CLIENTS.ca_file(base64.b64decode(authority))
        configuration.api_key = {"authorization": eks_token(region, name)}
        configuration.api_key_prefix = {"authorization": "Bearer"}
        return kubernetes.client.ApiClient(configuration), float(TOKEN_LIFETIME_SECONDS)

    return _CLIENTS.get(("eks", region, eks_cluster_arn), from_eks)


def kube_request_options() -> dict[str, Any]:
    """Keyword arguments every Kubernetes API call takes: its timeouts."""
    return {"_request_timeout": _KUBE_TIMEOUT}


@contextmanager
def kube_translated(operation: str) -> Iterator[None]:
    """Run Kubernetes API calls, raising tunefleet's errors for the client's, each with the
    HTTP status and the Status object's ``reason`` (Kubernetes API conventions, "Response
    Status Kind"): 404 ProviderNotFoundError; 409 with reason AlreadyExists
    AlreadyExistsError (a name is the idempotency key); 429, 5xx and connection failures
    TransientProviderError; 401/403 ProviderError saying whose credentials were refused;
    422 (Invalid: the object breaks the CRD's schema) and anything else ProviderError."""
    kubernetes = _kubernetes()
    import urllib3

    try:
        yield
    except kubernetes.client.ApiException as exc:
        status = int(exc.status or 0)
        reason, message = _status_of(exc)
        text = f"{operation}: {status} {reason}: {message}"
        if status == 404:
            raise ProviderNotFoundError(PROVIDER, text, code=reason, status=status) from None
        if status == 409 and reason == "AlreadyExists":
            raise AlreadyExistsError(PROVIDER, text, code=reason, status=status) from None
        if status == 429 or status >= 500:
            raise TransientProviderError(PROVIDER, text, code=reason, status=status) from None
        if status in {401, 403}:
            text += (
                " (the Kubernetes API refused these credentials: check options.kube_context, "
                "or the EKS access entry of your AWS identity)"
            )
        raise ProviderError(PROVIDER, text, code=reason, status=status) from None
    except urllib3.exceptions.HTTPError as exc:
        raise TransientProviderError(PROVIDER, f"{operation}: {type(exc).__name__}") from None


def _status_of(exc: Any) -> tuple[str, str]:
    """The ``reason`` and ``message`` of the Status object an API error carries."""
    import json

    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        body = {}
    if not isinstance(body, dict):
        body = {}
    reason = str(body.get("reason") or exc.reason or "Unknown")
    message = str(body.get("message") or "")[:500]
    return reason, message


class Channel:
    """Runs shell commands on a Slurm cluster's head node: over ``ssh`` (``head_node``,
    with ``ssh_config`` as ``ssh -F``; a ``Host`` of the ssh configuration can go through
    SSM Session Manager with ``ProxyCommand``), or here when tunefleet runs on the head
    node (``head_node`` None).

    ssh runs in batch mode (no password or host-key prompt can hang a run) with its own
    configuration deciding keys, agents and known hosts. Its exit status 255 (it could not
    connect) is a TransientProviderError; a command that fails is a ProviderError with its
    exit status as the code and the first line it printed to stderr.
    """

    def __init__(self, head_node: str | None, ssh_config: str | None = None) -> None:
        self.head_node = head_node
        self.ssh_config = ssh_config

    def argv(self, command: str) -> list[str]:
        """The process that runs ``command`` (a shell command line) on the head node."""
        if self.head_node is None:
            return ["/bin/sh", "-c", command]
        ssh = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20"]
        if self.ssh_config is not None:
            ssh += ["-F", self.ssh_config]
        # A login shell: HyperPod puts Slurm's commands on PATH in /etc/profile.d, which a
        # non-interactive ssh command's shell does not read.
        return [*ssh, "--", self.head_node, f"bash -lc {shlex.quote(command)}"]

    def run(
        self,
        command: str,
        *,
        operation: str,
        stdin: str | None = None,
        timeout: float = 120,
        read_only: bool = False,
    ) -> str:
        """``command``'s standard output; raises as the class docstring says. A
        ``read_only`` command (squeue, reading a file) that fails is a
        TransientProviderError: tried again, it can only succeed or fail the same way, and
        Slurm's commands fail alike (exit 1) whether the controller is busy or gone."""
        import subprocess

        where = "the head node" if self.head_node is None else self.head_node
        try:
            done = subprocess.run(
                self.argv(command),
                input=stdin,
                capture_output=True,
                text=True,
                # Bytes that are not UTF-8 (a log line cut by a crash) survive a round trip.
                errors="surrogateescape",
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError as exc:
            raise ProviderError(
                PROVIDER,
                f"{operation}: {exc.filename} is not installed here (the Slurm cluster is "
                f"reached with {'ssh' if self.head_node else 'its own commands'})",
                code="missing_command",
            ) from None
        except subprocess.TimeoutExpired:
            raise TransientProviderError(
                PROVIDER, f"{operation}: no answer from {where} in {timeout:.0f} s"
            ) from None
        if done.returncode == 0:
            return done.stdout
        said = next((line for line in done.stderr.splitlines() if line.strip()), "")[:300]
        if self.head_node is not None and done.returncode == 255:
            raise TransientProviderError(
                PROVIDER, f"{operation}: cannot reach {where} over ssh: {said}", code="ssh"
            )
        kind = TransientProviderError if read_only else ProviderError
        raise kind(
            PROVIDER,
            f"{operation} on {where} failed (exit {done.returncode}): {said}",
            code=f"exit {done.returncode}",
        )

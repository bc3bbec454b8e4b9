"""A fake of Azure Machine Learning's control plane, over TLS on 127.0.0.1.

:class:`FakeAzureML` answers what the Azure ML provider asks of Azure, through azure-ai-ml's
generated ``MachineLearningServicesMgmtClient`` (api-version 2025-12-01 by default) and
azure-mgmt-monitor's ``MonitorManagementClient``:

* Resource Manager, ``W`` = ``/subscriptions/{sub}/resourceGroups/{rg}/providers/
  Microsoft.MachineLearningServices/workspaces/{ws}``: the workspace, datastores (and
  ``listSecrets``), computes, data / environment / model containers and versions, jobs
  (``Command`` and serverless ``FineTuning``) with cancel, online endpoints (``listKeys``,
  ``regenerateKeys``) and their deployments (``getLogs``), with Resource Manager's
  long-running-operation protocol: ``Azure-AsyncOperation`` and ``Location`` headers, an
  operation status resource (``mfeOperationsStatus``) and an operation result resource
  (``mfeOperationResults``), ``x-ms-retry-after-ms`` so pollers hardly wait.
* Azure Monitor autoscale settings (``Microsoft.Insights/autoscalesettings``, the route the
  autoscale of an online deployment takes).
* The workspace's discovery document and RunHistory's run details, which is how
  azure-ai-ml's ``jobs.stream`` finds a running job's logs: ``logFiles`` maps
  ``user_logs/std_log.txt`` to a SAS URL of the blob the fake writes in the real Azurite.
* The endpoints' scoring URI (``https://127.0.0.1:P/score/{endpoint}``), answering chat
  completions as a vLLM/TGI OpenAI-compatible server does.

Each request body is checked against the models of the SDK
(:mod:`tests.providers.azureml.arm_contract`) and against Azure's naming rules; what is
wrong lands in ``violations`` (a test fails on it) and, where Azure refuses it, is refused.
Each answer is checked too (``answer_violations``): the fake must not teach the provider a
shape Azure never sends. Every behaviour modelled cites where it is written down; where
Azure's exact wording could not be found, the comment says the wording is the fake's.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import random
import re
import secrets
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol, Self
from urllib.parse import parse_qs, quote, urlsplit

import trustme
from tests.providers.azureml.arm_contract import violations as contract_violations
from tests.providers.trainer_files import lora_outputs, loss_at, prediction_files

from tunefleet_trainer.metrics import format_checkpoint_line, format_metric_line
from tunefleet_trainer.predictions import GoldenExample, parse_golden_line

SUBSCRIPTION = "00000000-0000-4000-8000-0000000000a1"
RESOURCE_GROUP = "rg-tunefleet"
WORKSPACE = "tunefleet-ws"
TENANT = "00000000-0000-4000-8000-0000000000b2"
PROVIDER = "Microsoft.MachineLearningServices"
LOG_CONTAINER = "azureml"
"""Where job logs go in the workspace's storage account (``ExperimentRun/dcid.{job}/...``)."""
LOG_NAME = "user_logs/std_log.txt"
"""The log azure-ai-ml streams: ``JobLogPattern.COMMON_RUNTIME_STREAM_LOG_PATTERN`` is
``user_logs/std_log[\\D]*[0]*(?:_ps)?\\.txt`` (azure/ai/ml/constants/_job/job.py)."""
JOB_STATES = ("NotStarted", "Queued", "Preparing", "Running", "Finalizing", "Completed")
"""A job's way through JobStatus, the enum of ``properties.status`` (NotStarted, Starting,
Provisioning, Preparing, Queued, Running, Finalizing, CancelRequested, Completed, Failed,
Canceled, NotResponding, Paused, Unknown: Jobs - Get, https://learn.microsoft.com/rest/api/azureml/jobs/get;
``JobStatus`` in azure-ai-ml's generated models); azure-ai-ml's ``jobs.stream`` takes NotStarted,
Queued, Preparing, Provisioning, Starting and Running as in progress and waits out Finalizing
(``RunHistoryConstants.IN_PROGRESS_STATUSES``, azure/ai/ml/operations/_run_history_constants.py)."""
TERMINAL = frozenset({"Completed", "Failed", "Canceled"})
ARM_AUDIENCES = (
    "https://management.core.windows.net/",
    "https://management.core.windows.net",
    "https://management.azure.com/",
    "https://management.azure.com",
)
"""What Resource Manager accepts as a token's ``aud``, in the order its
InvalidAuthenticationTokenAudience message lists them."""
ML_AUDIENCES = ("https://ml.azure.com", "https://ml.azure.com/")
"""The audience of a token for an endpoint with ``authMode: AADToken`` ("Authenticate
clients for online endpoints": the token's resource is https://ml.azure.com,
https://learn.microsoft.com/azure/machine-learning/how-to-authenticate-online-endpoint)."""

# --- naming rules ------------------------------------------------------------------------

WORKSPACE_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{2,32}$")
"""The ``workspaceName`` path parameter's pattern in the REST reference (e.g. Jobs - Create Or
Update, https://learn.microsoft.com/rest/api/azureml/jobs/create-or-update)."""
RESOURCE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
"""Job and asset (data, environment, model) names. The service's own words, as quoted from
real registrations in public code (a model named ``kanana2-1.3b`` refused): "(RequestInvalid)
Resource name is invalid. Resource name can only contain alphanumeric characters, dashes, and
underscores, with a limit of 255 characters."; azure-ai-ml holds output names to the same
rule (its pipeline tests: "can only contain alphanumeric characters, dashes and underscores,
with a limit of 255 characters")."""
RESOURCE_NAME_MESSAGE = (
    "Resource name is invalid. Resource name can only contain alphanumeric characters, "
    "dashes, and underscores, with a limit of 255 characters."
)
ENDPOINT_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]$")
"""Online endpoint and deployment names: "Begin with a letter; Be 3-32 characters in length;
Only consist of letters and numbers", dashes accepted ("Manage and increase quotas and limits
for resources with Azure Machine Learning", table of online endpoint limits,
https://learn.microsoft.com/azure/machine-learning/how-to-manage-quotas#azure-machine-learning-online-endpoints-and-batch-endpoints);
azure-ai-ml checks the same before sending (``validate_endpoint_or_deployment_name``: 3 to 32
characters, ``^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$``)."""

# --- Azure's answers -------------------------------------------------------------------

JOB_IMMUTABLE = (
    "A job with this name already exists. If you are trying to create a new job, use a "
    "different name. If you are trying to update an existing job, the existing job's "
    "{property} cannot be changed. Only description, tags, displayName, properties, and "
    "isArchived can be updated."
)
"""Azure ML's refusal of a PUT that changes an existing job (code ``UserError``, inner error
``Immutable`` / ``JobPropertyImmutable``), as reported in MicrosoftDocs/azure-docs#122250
and Azure/azure-sdk-for-python#42156 / #47389. The REST reference says the same from the
other side: "For update case, the Tags in the definition passed in will replace Tags in the
existing job" (https://learn.microsoft.com/rest/api/azureml/jobs/create-or-update)."""
JOB_MUTABLE = frozenset({"description", "tags", "displayName", "properties", "isArchived"})
CORE_QUOTA = (
    "Job submission to AzureML Compute encountered an Exception with status code "
    "JobNodeCountExceedsCoreQuota, The specified subscription has a {family} vCPU quota of "
    "{quota} and is less than the requested job node count of {nodes} which maps to {vcpus} "
    "vCPUs. Talk to your Subscription Admin or refer to "
    "https://docs.microsoft.com/azure/machine-learning/how-to-manage-quotas#request-quota-increases "
    "to increase the {family} vCPU quota"
)
"""How a job that needs more cores than the subscription's VM-family quota fails, as the
service words it (MicrosoftLearning/mslearn-dp100#35). The job is accepted and then fails:
quota is checked when the job is submitted to the cluster, not when it is created."""
VM_SIZES: dict[str, tuple[int, str]] = {
    # vCPUs and quota family, from the VM size pages on Microsoft Learn
    # (https://learn.microsoft.com/azure/virtual-machines/sizes/overview).
    "Standard_DS3_v2": (4, "Standard DSv2 Family"),
    "Standard_E4s_v3": (4, "Standard ESv3 Family"),
    "Standard_NC6s_v3": (6, "Standard NCSv3 Family"),
    "Standard_NC24ads_A100_v4": (24, "Standard NCADSA100v4 Family"),
    "Standard_NC40ads_H100_v5": (40, "Standard NCadsH100v5 Family"),
    "Standard_ND96asr_v4": (96, "Standard NDASv4_A100 Family"),
}


class BlobStore(Protocol):
    """The workspace's storage account: Azurite in tests (``tests/providers/azureml/azurite.py``)."""

    @property
    def url(self) -> str:
        """The account's blob endpoint, e.g. ``https://127.0.0.1:PORT/devstoreaccount1``."""
        ...

    @property
    def account(self) -> str: ...

    @property
    def key(self) -> str: ...


@dataclass(frozen=True)
class BlobAccount:
    """A :class:`BlobStore` by value."""

    url: str
    account: str
    key: str


@dataclass(frozen=True)
class Recorded:
    """One request as it arrived (the body parsed as JSON when it was JSON)."""

    method: str
    path: str
    api_version: str | None
    body: Any
    query: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Scored:
    """One request a deployment answered at an endpoint's scoring URI."""

    endpoint: str
    deployment: str
    body: Any
    mirrored: bool
    """True for the copy mirrorTraffic sent to a shadow deployment (its answer is dropped)."""


@dataclass
class FakeJob:
    """A job as the fake keeps it: the ``properties`` sent, and where it is in its life."""

    name: str
    properties: dict[str, Any]
    """As answered: what was sent, with the defaults Azure fills in (output locations)."""
    created_at: str
    created_by: str
    sent: dict[str, Any] = field(default_factory=dict)
    """The ``properties`` of the PUT that created it: what a later PUT is compared with."""
    status: str = "NotStarted"
    modified_at: str = ""
    steps_logged: int = 0
    log: list[str] = field(default_factory=list)
    error: dict[str, Any] | None = None
    fail_with: tuple[str, str] | None = None
    """(code, message) the job fails with when next it would advance (see ``fail_job``)."""
    started_at: str | None = None
    ended_at: str | None = None

    @property
    def job_type(self) -> str:
        return str(self.properties.get("jobType"))


@dataclass
class _Injected:
    method: str
    path: re.Pattern[str]
    status: int
    error: dict[str, Any]
    times: int
    headers: dict[str, str]


@dataclass
class _Operation:
    """A long-running operation: ``polls`` answers "InProgress", then ``finish`` runs."""

    id: str
    polls: int
    finish: Callable[[], None]
    started: str
    resource: str | None = None
    """The resource the operation changes: a read of it counts as a poll."""
    status: str = "InProgress"


Answer = tuple[int, dict[str, str], Any]


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _error(
    code: str,
    message: str,
    *,
    target: str | None = None,
    details: list[dict[str, Any]] | None = None,
    inner: list[str] | None = None,
) -> dict[str, Any]:
    """Resource Manager's error body, ``{"error": {"code", "message", "target"?, "details"?}}``
    ("Common error response", https://github.com/Azure/azure-resource-manager-rpc/blob/master/v1.0/common-api-details.md#error-response-content);
    Azure ML nests ``innerError`` codes beneath it (e.g. Immutable / JobPropertyImmutable)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if target is not None:
        error["target"] = target
    if details is not None:
        error["details"] = details
    if inner:
        nested: dict[str, Any] = {}
        cursor = nested
        for index, code_ in enumerate(inner):
            cursor["code"] = code_
            if index < len(inner) - 1:
                cursor["innerError"] = {}
                cursor = cursor["innerError"]
        error["innerError"] = nested
    return {"error": error}


def _jwt_claims(token: str) -> dict[str, Any] | None:
    """The claims of a JWT, unverified; None if ``token`` is not one (a test's plain token)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, binascii.Error):
        return None
    return claims if isinstance(claims, dict) else None


def trainer_outputs(job: FakeJob) -> dict[str, bytes]:
    """What the tunefleet trainer leaves in its output directory for a LoRA run."""
    return lora_outputs(
        steps=job.steps_logged,
        base_model=job.properties.get("environmentVariables", {}).get(
            "TUNEFLEET_BASE_MODEL", "Qwen/Qwen2.5-0.5B-Instruct"
        ),
        started_at=job.started_at or job.created_at,
        finished_at=_now(),
    )


def default_answer(deployment: str, request: dict[str, Any]) -> str:
    """A deployment's reply to a chat request: names itself and echoes the last message."""
    messages = request.get("messages") or [{}]
    last = messages[-1].get("content", "") if isinstance(messages[-1], dict) else ""
    return f"[{deployment}] {last}".strip()


class FakeAzureML:
    """The fake control plane. ``start()`` it; ``url`` is its https root (the management
    endpoint, the RunHistory ``api`` host and the scoring host at once)."""

    def __init__(
        self,
        *,
        ca: trustme.CA,
        folder: Path,
        blob: BlobStore,
        subscription: str = SUBSCRIPTION,
        resource_group: str = RESOURCE_GROUP,
        workspace: str = WORKSPACE,
        location: str = "swedencentral",
        tenant: str = TENANT,
    ) -> None:
        self.subscription = subscription
        self.resource_group = resource_group
        self.workspace = workspace
        self.location = location
        self.tenant = tenant
        self.blob = blob
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.ca_path = folder / "fake-azureml-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_path))
        self._ca = ca
        self.requests: list[Recorded] = []
        self.violations: list[str] = []
        """What the provider sent that Azure's models or rules do not allow."""
        self.answer_violations: list[str] = []
        """What the fake answered that Azure's models do not allow (a bug of the fake)."""
        self.jobs: dict[str, FakeJob] = {}
        self.endpoints: dict[str, dict[str, Any]] = {}
        """Endpoint name -> the resource as GET answers it."""
        self.deployments: dict[str, dict[str, dict[str, Any]]] = {}
        """Endpoint name -> deployment name -> the resource as GET answers it."""
        self.endpoint_keys: dict[str, tuple[str, str]] = {}
        """Endpoint name -> (primary, secondary) key."""
        self.assets: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
            "data": {},
            "environments": {},
            "models": {},
        }
        self._asset_sent: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.autoscale: dict[str, dict[str, Any]] = {}
        """Autoscale setting name, lower-cased -> the resource as GET answers it."""
        self.scored: list[Scored] = []
        self.computes: dict[str, dict[str, Any]] = {}
        self.datastores: dict[str, dict[str, Any]] = {}
        self.steps = 6
        """Training steps a job logs while Running (two per read)."""
        self.epochs = 2
        self.auto_advance = True
        """Each read of a job (ARM or RunHistory) moves it one state on; False: only
        :meth:`advance` does."""
        self.operation_polls = 1
        """Polls a long-running operation answers InProgress before it finishes."""
        self.poll_delay_ms = 10
        """What the fake asks pollers to wait between polls (``x-ms-retry-after-ms``)."""
        self.vcpu_quota: int | None = None
        """The VM family's vCPU quota jobs are held to (None: unlimited; see CORE_QUOTA)."""
        self.outputs_for: Callable[[FakeJob], dict[str, bytes]] = trainer_outputs
        """The files a completed job writes to its model output (path -> bytes)."""
        self.answer: Callable[[str, dict[str, Any]], str] = default_answer
        """A deployment's reply to a chat request: (deployment, request) -> content."""
        self.trained_answer: Callable[[GoldenExample], str] = lambda example: example.expected
        """The trained model's answer to a golden example, in a job's predictions."""
        self.baseline_answer: Callable[[GoldenExample], str] = lambda example: "I do not know."
        """The base model's answer to a golden example, in a job's predictions."""
        self.workspace_id = str(uuid.uuid4())  # and so a datastore container of its own
        self.workspace_properties: dict[str, Any] = {}
        self._injected: list[_Injected] = []
        self._operations: dict[str, _Operation] = {}
        self._random = random.Random(0)  # traffic split and mirroring: reproducible
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.RLock()
        self._blob_service: Any = None
        self.workspace_settings()
        self.add_datastore(
            "workspaceblobstore",
            container=f"azureml-blobstore-{self.workspace_id}",
            default=True,
        )
        self.add_compute("gpu-cluster")

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> Self:
        handler = type("Handler", (_Handler,), {"service": self})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        for datastore in self.datastores.values():
            self._create_container(datastore["container"])
        self._create_container(LOG_CONTAINER)
        return self

    def _create_container(self, name: str) -> None:
        from azure.core.exceptions import ResourceExistsError

        # Another fake on the same Azurite may have made it: it is the workspace's either way.
        with contextlib.suppress(ResourceExistsError):
            self._blobs().get_container_client(name).create_container()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    @property
    def workspace_path(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/{PROVIDER}/workspaces/{self.workspace}"
        )

    # --- set-up and inspection -----------------------------------------------------------

    def workspace_settings(
        self,
        *,
        public_network_access: str = "Enabled",
        isolation_mode: str = "Disabled",
        cmk_key: str | None = None,
        cmk_vault: str | None = None,
        location: str | None = None,
    ) -> None:
        """What GET workspace answers: public network access ("Enabled"/"Disabled"), managed
        network isolation ("Disabled", "AllowInternetOutbound", "AllowOnlyApprovedOutbound"),
        a customer-managed key (key URL and vault ARM id), and the region
        (WorkspaceProperties in the REST reference,
        https://learn.microsoft.com/rest/api/azureml/workspaces/get)."""
        if location is not None:
            self.location = location
        properties: dict[str, Any] = {
            "friendlyName": self.workspace,
            "publicNetworkAccess": public_network_access,
            "managedNetwork": {
                "isolationMode": isolation_mode,
                "status": {"status": "Active" if isolation_mode != "Disabled" else "Inactive"},
            },
            "hbiWorkspace": False,
            "v1LegacyMode": False,
        }
        if cmk_key is not None:
            properties["encryption"] = {
                "status": "Enabled",
                "keyVaultProperties": {
                    "keyIdentifier": cmk_key,
                    "keyVaultArmId": cmk_vault
                    or f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
                    "/providers/Microsoft.KeyVault/vaults/tunefleet-kv",
                },
            }
        self.workspace_properties = properties

    def add_datastore(self, name: str, *, container: str, default: bool = False) -> None:
        """An AzureBlob datastore on the blob store's account."""
        self.datastores[name] = {"container": container, "default": default}
        if self._server is not None:
            self._create_container(container)

    def add_compute(
        self,
        name: str,
        *,
        vm_size: str = "Standard_NC24ads_A100_v4",
        max_nodes: int = 2,
        min_nodes: int = 0,
        subnet: str | None = None,
        enable_node_public_ip: bool = True,
        vm_priority: str = "Dedicated",
    ) -> None:
        """An AmlCompute cluster (AmlComputeProperties, https://learn.microsoft.com/rest/api/azureml/compute/get)."""
        self.computes[name] = {
            "vmSize": vm_size,
            "vmPriority": vm_priority,
            "scaleSettings": {
                "maxNodeCount": max_nodes,
                "minNodeCount": min_nodes,
                "nodeIdleTimeBeforeScaleDown": "PT2M",
            },
            "subnet": {"id": subnet} if subnet else None,
            "enableNodePublicIp": enable_node_public_ip,
        }

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int,
        code: str,
        message: str,
        *,
        times: int = 1,
        target: str | None = None,
        inner: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next ``times`` requests of ``method`` whose path matches ``path_regex``
        (``re.search``) with ``status`` and Resource Manager's error body. A 429 or 5xx is
        retried by azure-core's RetryPolicy (up to 3 retries), so inject ``times=4`` for one
        to reach the caller."""
        self._injected.append(
            _Injected(
                method=method.upper(),
                path=re.compile(path_regex),
                status=status,
                error=_error(code, message, target=target, inner=inner),
                times=times,
                headers=headers or {},
            )
        )

    def fail_job(self, name: str, code: str, message: str) -> None:
        """Fail job ``name`` when next it would advance, with ``code`` and ``message`` as its
        error (what RunHistory's run details then carry)."""
        with self._lock:
            self.jobs[name].fail_with = (code, message)

    def advance(self, name: str, *, to: str | None = None) -> str:
        """Move job ``name`` one state on (or on until ``to``); returns its status."""
        with self._lock:
            job = self.jobs[name]
            for _ in range(len(JOB_STATES) + self.steps + 2):  # more than a whole life takes
                self._advance(job)
                if to is None or job.status == to or job.status in TERMINAL:
                    break
            return job.status

    def log_text(self, name: str) -> str:
        """The job's std_log.txt as the fake last wrote it."""
        return "".join(line + "\n" for line in self.jobs[name].log)

    def log_blob(self, name: str) -> str:
        return f"ExperimentRun/dcid.{name}/{LOG_NAME}"

    def log_url(self, name: str) -> str:
        """A read SAS URL of the job's std_log.txt blob (what RunHistory hands out)."""
        return self._sas_url(LOG_CONTAINER, self.log_blob(name))

    def blob_text(self, container: str, name: str) -> bytes:
        return bytes(self._blobs().get_blob_client(container, name).download_blob().readall())

    def datastore_container(self, name: str = "workspaceblobstore") -> str:
        return str(self.datastores[name]["container"])

    # --- HTTP ----------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Answer:
        url = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
        path = url.path
        with self._lock:
            self.requests.append(Recorded(method, path, query.get("api-version"), body, query))
            for injected in self._injected:
                if injected.times > 0 and injected.method == method and injected.path.search(path):
                    injected.times -= 1
                    return injected.status, injected.headers, injected.error
            if path == "/discovery" and method == "GET":
                return 200, {}, self._discovery()
            if path.startswith("/score/"):
                return self._score(method, path.removeprefix("/score/"), headers, body)
            refused = self._authenticate(headers, ARM_AUDIENCES)
            if refused is not None:
                return refused
            if path.startswith("/history/v1.0/"):
                return self._run_history(method, path.removeprefix("/history/v1.0"))
            if "api-version" not in query:
                # Resource Manager's words for a request without one.
                return (
                    400,
                    {},
                    _error(
                        "MissingApiVersionParameter",
                        "The api-version query parameter (?api-version=) is required for all requests.",
                    ),
                )
            return self._arm(method, path, query, body)

    def _authenticate(self, headers: dict[str, str], audiences: tuple[str, ...]) -> Answer | None:
        """Resource Manager's checks of the bearer token, in its codes and words:
        AuthenticationFailed "Authentication failed. The 'Authorization' header is missing."
        (hashicorp/terraform-provider-azurerm#3612); AuthenticationFailedInvalidHeader "...
        provided in an invalid format." (Azure/azure-sdk-for-python#4124);
        InvalidAuthenticationTokenAudience "The access token has been obtained for wrong
        audience or resource '...'. It should exactly match with one of the allowed audiences
        ..." (Azure-Samples/active-directory-dotnetcore-daemon-v2#145); ExpiredAuthenticationToken.
        A token that is not a JWT (a test's plain string) is taken as valid; a JWT's signature
        is not checked."""
        authorization = headers.get("authorization", "")
        if not authorization:
            return (
                401,
                {},
                _error(
                    "AuthenticationFailed",
                    "Authentication failed. The 'Authorization' header is missing.",
                ),
            )
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return (
                401,
                {},
                _error(
                    "AuthenticationFailedInvalidHeader",
                    "Authentication failed. The 'Authorization' header is provided in an invalid format.",
                ),
            )
        claims = _jwt_claims(token)
        if claims is None:
            return None
        if claims.get("aud") not in audiences:
            allowed = ",".join(f"'{a}'" for a in audiences)
            return (
                401,
                {},
                _error(
                    "InvalidAuthenticationTokenAudience",
                    f"The access token has been obtained for wrong audience or resource "
                    f"'{claims.get('aud')}'. It should exactly match with one of the allowed "
                    f"audiences {allowed}.",
                ),
            )
        expires = float(claims.get("exp", 0))
        if expires < time.time():
            stamp = "%m/%d/%Y %I:%M:%S %p"
            return (
                401,
                {},
                _error(
                    "ExpiredAuthenticationToken",
                    f"The access token expiry UTC time '{datetime.fromtimestamp(expires, UTC):{stamp}}'"
                    f" is earlier than current UTC time '{datetime.now(UTC):{stamp}}'.",
                ),
            )
        return None

    def _caller(self) -> str:
        return "tunefleet-test@example.com"

    # --- Resource Manager routes ----------------------------------------------------------

    def _arm(self, method: str, path: str, query: dict[str, str], body: Any) -> Answer:
        operation = re.fullmatch(
            rf"/subscriptions/([^/]+)/providers/{PROVIDER}/locations/([^/]+)"
            r"/(mfeOperationsStatus|mfeOperationResults)/([^/]+)",
            path,
            re.IGNORECASE,
        )
        if operation:
            return self._operation(operation.group(3), operation.group(4))
        autoscale = re.fullmatch(
            r"/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.Insights"
            r"/autoscalesettings/([^/]+)",
            path,
            re.IGNORECASE,
        )
        if autoscale:
            subscription, group, name = autoscale.groups()
            return self._autoscale(method, path, subscription, group, name, body)
        workspace = re.fullmatch(
            rf"/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/{PROVIDER}"
            r"/workspaces/([^/]+)(/.*)?",
            path,
            re.IGNORECASE,
        )
        if not workspace:
            return 404, {}, _error("NotFound", f"No route for {method} {path}.")
        subscription, group, name, rest = workspace.groups()
        if subscription != self.subscription:
            return (
                404,
                {},
                _error(
                    "SubscriptionNotFound", f"The subscription '{subscription}' could not be found."
                ),
            )
        if group.lower() != self.resource_group.lower():
            return (
                404,
                {},
                _error("ResourceGroupNotFound", f"Resource group '{group}' could not be found."),
            )
        if not WORKSPACE_NAME.match(name):
            self._violate(
                method, path, f"workspace name {name!r} does not match {WORKSPACE_NAME.pattern}"
            )
        if name.lower() != self.workspace.lower():
            return 404, {}, self._arm_not_found(f"{PROVIDER}/workspaces/{name}")
        rest = rest or ""
        routes: list[tuple[str, Callable[..., Answer]]] = [
            (r"", self._workspace),
            (r"/datastores", self._datastore_list),
            (r"/datastores/([^/]+)", self._datastore),
            (r"/datastores/([^/]+)/listSecrets", self._datastore_secrets),
            (r"/computes/([^/]+)", self._compute),
            (r"/(data|environments|models)/([^/]+)", self._container),
            (r"/(data|environments|models)/([^/]+)/versions", self._version_list),
            (r"/(data|environments|models)/([^/]+)/versions/([^/]+)", self._version),
            (r"/jobs/([^/]+)", self._job),
            (r"/jobs/([^/]+)/cancel", self._cancel),
            (r"/onlineEndpoints", self._endpoint_list),
            (r"/onlineEndpoints/([^/]+)", self._endpoint),
            (r"/onlineEndpoints/([^/]+)/listKeys", self._list_keys),
            (r"/onlineEndpoints/([^/]+)/regenerateKeys", self._regenerate_keys),
            (r"/onlineEndpoints/([^/]+)/deployments", self._deployment_list),
            (r"/onlineEndpoints/([^/]+)/deployments/([^/]+)", self._deployment),
            (r"/onlineEndpoints/([^/]+)/deployments/([^/]+)/getLogs", self._deployment_logs),
        ]
        for pattern, route in routes:
            found = re.fullmatch(pattern, rest)
            if found:
                return route(method, path, query, body, *found.groups())
        return 404, {}, _error("NotFound", f"No route for {method} {path}.")

    def _arm_not_found(self, resource: str) -> dict[str, Any]:
        # Resource Manager's generic words for a missing resource ("Resolve resource not found
        # errors", https://learn.microsoft.com/azure/azure-resource-manager/troubleshooting/error-not-found).
        return _error(
            "ResourceNotFound",
            f"The Resource '{resource}' under resource group '{self.resource_group}' was not "
            "found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
        )

    def _check(self, method: str, path: str, model: str, body: Any, package: str = "ml") -> None:
        for problem in contract_violations(model, body, package=package):  # type: ignore[arg-type]
            self._violate(method, path, f"{model}: {problem}")

    def _violate(self, method: str, path: str, problem: str) -> None:
        self.violations.append(f"{method} {path}: {problem}")

    def _answer(self, model: str, body: dict[str, Any], package: str = "ml") -> dict[str, Any]:
        for problem in contract_violations(model, body, package=package, response=True):  # type: ignore[arg-type]
            self.answer_violations.append(f"{model}: {problem}")
        return body

    def _system_data(self, created: str, modified: str | None = None) -> dict[str, Any]:
        return {
            "createdAt": created,
            "createdBy": self._caller(),
            "createdByType": "User",
            "lastModifiedAt": modified or created,
            "lastModifiedBy": self._caller(),
            "lastModifiedByType": "User",
        }

    def _method_not_allowed(self, method: str, path: str) -> Answer:
        return (
            405,
            {},
            _error(
                "MethodNotAllowed",
                f"The requested resource does not support http method '{method}'.",
            ),
        )

    def _invalid_name(
        self, method: str, path: str, name: str, pattern: re.Pattern[str]
    ) -> Answer | None:
        if pattern.match(name):
            return None
        self._violate(method, path, f"name {name!r} does not match {pattern.pattern}")
        return 400, {}, _error("RequestInvalid", RESOURCE_NAME_MESSAGE)

    # --- workspace, datastores, computes -------------------------------------------------

    def _workspace(self, method: str, path: str, query: Any, body: Any) -> Answer:
        if method != "GET":
            return self._method_not_allowed(method, path)
        storage = (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.Storage/storageAccounts/{self.blob.account}"
        )
        properties = {
            **self.workspace_properties,
            "storageAccount": storage,
            "keyVault": f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            "/providers/Microsoft.KeyVault/vaults/tunefleet-kv",
            "applicationInsights": f"/subscriptions/{self.subscription}/resourceGroups/"
            f"{self.resource_group}/providers/Microsoft.Insights/components/tunefleet-ai",
            "discoveryUrl": f"{self.url}/discovery",
            "workspaceId": self.workspace_id,
            "mlFlowTrackingUri": f"azureml://{self.location}.api.azureml.ms/mlflow/v1.0"
            + self.workspace_path,
            "provisioningState": "Succeeded",
            "tenantId": self.tenant,
        }
        return (
            200,
            {},
            self._answer(
                "Workspace",
                {
                    "id": self.workspace_path,
                    "name": self.workspace,
                    "type": f"{PROVIDER}/workspaces",
                    "location": self.location,
                    "kind": "Default",
                    "sku": {"name": "Basic", "tier": "Basic"},
                    "identity": {
                        "type": "SystemAssigned",
                        "principalId": str(uuid.uuid5(uuid.NAMESPACE_URL, self.workspace_id)),
                        "tenantId": self.tenant,
                    },
                    "systemData": self._system_data("2025-01-01T00:00:00+00:00"),
                    "properties": properties,
                },
            ),
        )

    def _discovery(self) -> dict[str, Any]:
        """The workspace's discovery document: service name -> base URL. azure-ai-ml reads
        ``api`` for RunHistory (``JobOperations._get_workspace_url``,
        ``WorkspaceDiscoveryUrlKey.API``)."""
        keys = ("api", "catalog", "experimentation", "gallery", "history", "hyperdrive")
        more = ("labeling", "modelmanagement", "pipelines", "studiobackend")
        return dict.fromkeys((*keys, *more), self.url)

    def _datastore_body(self, name: str) -> dict[str, Any]:
        datastore = self.datastores[name]
        return self._answer(
            "Datastore",
            {
                "id": f"{self.workspace_path}/datastores/{name}",
                "name": name,
                "type": f"{PROVIDER}/workspaces/datastores",
                "systemData": self._system_data("2025-01-01T00:00:00+00:00"),
                "properties": {
                    # AzureBlobDatastore as Azure answers for the workspace's default store:
                    # endpoint is the storage DNS suffix, protocol https (REST reference,
                    # Datastores - Get, https://learn.microsoft.com/rest/api/azureml/datastores/get).
                    "datastoreType": "AzureBlob",
                    "accountName": self.blob.account,
                    "containerName": datastore["container"],
                    "endpoint": "core.windows.net",
                    "protocol": "https",
                    "credentials": {"credentialsType": "AccountKey"},
                    "isDefault": datastore["default"],
                    "subscriptionId": self.subscription,
                    "resourceGroup": self.resource_group,
                    "serviceDataAccessAuthIdentity": "WorkspaceSystemAssignedIdentity",
                    "properties": {},
                    "tags": {},
                },
            },
        )

    def _datastore_list(self, method: str, path: str, query: dict[str, str], body: Any) -> Answer:
        if method != "GET":
            return self._method_not_allowed(method, path)
        names = list(self.datastores)
        if query.get("isDefault", "").lower() == "true":
            names = [n for n in names if self.datastores[n]["default"]]
        return 200, {}, {"value": [self._datastore_body(n) for n in names]}

    def _datastore(self, method: str, path: str, query: Any, body: Any, name: str) -> Answer:
        if method != "GET":
            return self._method_not_allowed(method, path)
        if name not in self.datastores:
            return (
                404,
                {},
                _error("UserError", f"Could not find datastore: {name}.", inner=["NotFound"]),
            )
        return 200, {}, self._datastore_body(name)

    def _datastore_secrets(
        self, method: str, path: str, query: Any, body: Any, name: str
    ) -> Answer:
        if method != "POST":
            return self._method_not_allowed(method, path)
        if name not in self.datastores:
            return (
                404,
                {},
                _error("UserError", f"Could not find datastore: {name}.", inner=["NotFound"]),
            )
        return (
            200,
            {},
            self._answer(
                "AccountKeyDatastoreSecrets", {"secretsType": "AccountKey", "key": self.blob.key}
            ),
        )

    def _compute(self, method: str, path: str, query: Any, body: Any, name: str) -> Answer:
        if method != "GET":
            return self._method_not_allowed(method, path)
        compute = self.computes.get(name)
        if compute is None:
            return (
                404,
                {},
                self._arm_not_found(f"{PROVIDER}/workspaces/{self.workspace}/computes/{name}"),
            )
        properties = {k: v for k, v in compute.items() if v is not None}
        properties.update(
            {
                "osType": "Linux",
                "allocationState": "Steady",
                "allocationStateTransitionTime": "2025-01-01T00:00:00+00:00",
                "currentNodeCount": 0,
                "targetNodeCount": 0,
                "isolatedNetwork": False,
                "remoteLoginPortPublicAccess": "Disabled",
            }
        )
        return (
            200,
            {},
            self._answer(
                "ComputeResource",
                {
                    "id": f"{self.workspace_path}/computes/{name}",
                    "name": name,
                    "type": f"{PROVIDER}/workspaces/computes",
                    "location": self.location,
                    "systemData": self._system_data("2025-01-01T00:00:00+00:00"),
                    "properties": {
                        "computeType": "AmlCompute",
                        "computeLocation": self.location,
                        "provisioningState": "Succeeded",
                        "isAttachedCompute": False,
                        "disableLocalAuth": True,
                        "properties": properties,
                    },
                },
            ),
        )

    # --- assets ----------------------------------------------------------------------------

    _ASSET_MODELS = {
        "data": "DataVersionBase",
        "environments": "EnvironmentVersion",
        "models": "ModelVersion",
    }
    _CONTAINER_MODELS = {
        "data": "DataContainer",
        "environments": "EnvironmentContainer",
        "models": "ModelContainer",
    }

    def _version_list(
        self, method: str, path: str, query: Any, body: Any, kind: str, name: str
    ) -> Answer:
        """Versions - List: every version of an asset, one page (an unknown asset has none:
        the list is empty, as Resource Manager lists answer)."""
        if method != "GET":
            return self._method_not_allowed(method, path)
        versions = self.assets[kind].get(name) or {}
        return 200, {}, {"value": list(versions.values())}

    def _container(
        self, method: str, path: str, query: Any, body: Any, kind: str, name: str
    ) -> Answer:
        if method != "GET":
            return self._method_not_allowed(method, path)
        versions = self.assets[kind].get(name)
        if not versions:
            return 404, {}, self._asset_not_found(kind, name, None)
        numeric = [int(v) for v in versions if v.isdigit()]
        latest = list(versions)[-1]
        properties: dict[str, Any] = {
            "latestVersion": latest,
            "nextVersion": str(max(numeric) + 1) if numeric else "1",
            "isArchived": False,
            "provisioningState": "Succeeded",
        }
        if kind == "data":
            properties["dataType"] = versions[latest]["properties"]["dataType"]
        return (
            200,
            {},
            self._answer(
                self._CONTAINER_MODELS[kind],
                {
                    "id": f"{self.workspace_path}/{kind}/{name}",
                    "name": name,
                    "type": f"{PROVIDER}/workspaces/{kind}",
                    "systemData": versions[latest]["systemData"],
                    "properties": properties,
                },
            ),
        )

    def _asset_not_found(self, kind: str, name: str, version: str | None) -> dict[str, Any]:
        # The wording is the fake's: Azure ML's exact 404 text for a missing asset was not
        # found written down; its error shape (UserError with an inner NotFound) is Azure ML's.
        what = f"{name}:{version}" if version else name
        return _error("UserError", f"Could not find asset {kind}/{what}.", inner=["NotFound"])

    def _version(
        self, method: str, path: str, query: Any, body: Any, kind: str, name: str, version: str
    ) -> Answer:
        versions = self.assets[kind].setdefault(name, {})
        if method == "GET":
            found = versions.get(version)
            if found is None:
                if not versions:
                    del self.assets[kind][name]
                return 404, {}, self._asset_not_found(kind, name, version)
            return 200, {}, self._answer(self._ASSET_MODELS[kind], found)
        if method != "PUT":
            return self._method_not_allowed(method, path)
        self._check(method, path, self._ASSET_MODELS[kind], body)
        refused = self._invalid_name(method, path, name, RESOURCE_NAME)
        if refused is not None:
            if not versions:
                del self.assets[kind][name]
            return refused
        if not isinstance(body, dict) or not isinstance(body.get("properties"), dict):
            return 400, {}, _error("UserError", "The request body must carry properties.")
        sent = dict(body["properties"])
        existing = versions.get(version)
        now = _now()
        if existing is not None:
            kept = existing["properties"]
            first = self._asset_sent[(kind, name, version)]
            mutable = {"description", "tags", "properties", "isArchived", "stage"}
            changed = sorted(
                k
                for k in set(sent) | set(first)
                if k not in mutable and sent.get(k) != first.get(k)
            )
            if changed:
                # azure-ai-ml expects 409 (ResourceExistsError) for an existing version with
                # other content: EnvironmentOperations._try_update_latest_version retries the
                # next version on it. The wording is the fake's.
                return (
                    409,
                    {},
                    _error(
                        "UserError",
                        f"Conflict: version {version} of {kind} {name} already exists and its "
                        f"{', '.join(changed)} cannot be changed.",
                        inner=["Conflict"],
                    ),
                )
            kept.update({k: v for k, v in sent.items() if k in mutable})
            existing["systemData"]["lastModifiedAt"] = now
            return 200, {}, self._answer(self._ASSET_MODELS[kind], existing)
        self._asset_sent[(kind, name, version)] = sent
        properties = dict(sent)
        if kind != "data":  # DataVersionBaseProperties has no provisioningState
            properties["provisioningState"] = "Succeeded"
        properties.setdefault("isArchived", False)
        properties.setdefault("isAnonymous", False)
        if kind == "environments":
            properties.setdefault("environmentType", "UserCreated")
            properties.setdefault("osType", "Linux")
        versions[version] = {
            "id": f"{self.workspace_path}/{kind}/{name}/versions/{version}",
            "name": version,
            "type": f"{PROVIDER}/workspaces/{kind}/versions",
            "systemData": self._system_data(now),
            "properties": properties,
        }
        return 201, {}, self._answer(self._ASSET_MODELS[kind], versions[version])

    def register_model(self, name: str, properties: dict[str, Any]) -> str:
        """Register the next version of model ``name`` (what a fine-tuning job does)."""
        versions = self.assets["models"].setdefault(name, {})
        version = str(max((int(v) for v in versions if v.isdigit()), default=0) + 1)
        versions[version] = {
            "id": f"{self.workspace_path}/models/{name}/versions/{version}",
            "name": version,
            "type": f"{PROVIDER}/workspaces/models/versions",
            "systemData": self._system_data(_now()),
            "properties": {
                "isArchived": False,
                "isAnonymous": False,
                **properties,
                "provisioningState": "Succeeded",
            },
        }
        return version

    # --- jobs ------------------------------------------------------------------------------

    def _job(self, method: str, path: str, query: Any, body: Any, name: str) -> Answer:
        if method == "GET":
            job = self.jobs.get(name)
            if job is None:
                return 404, {}, self._job_not_found(name)
            if self.auto_advance:
                self._advance(job)
            return 200, {}, self._job_body(job)
        if method != "PUT":
            return self._method_not_allowed(method, path)
        self._check(method, path, "JobBase", body)
        refused = self._invalid_name(method, path, name, RESOURCE_NAME)
        if refused is not None:
            return refused
        if not isinstance(body, dict) or not isinstance(body.get("properties"), dict):
            return 400, {}, _error("UserError", "The request body must carry properties.")
        sent: dict[str, Any] = dict(body["properties"])
        existing = self.jobs.get(name)
        if existing is not None:
            first = existing.sent
            changed = sorted(
                k
                for k in set(sent) | set(first)
                if k not in JOB_MUTABLE and sent.get(k) != first.get(k)
            )
            if changed:
                return (
                    400,
                    {},
                    _error(
                        "UserError",
                        JOB_IMMUTABLE.format(property=", ".join(changed)),
                        inner=["Immutable", "JobPropertyImmutable"],
                    ),
                )
            for key in JOB_MUTABLE & set(sent):
                existing.properties[key] = existing.sent[key] = sent[key]
            existing.modified_at = _now()
            return 200, {}, self._job_body(existing)
        compute = str(sent.get("computeId") or "")
        if compute and compute.rsplit("/", 1)[-1] not in self.computes:
            # The wording is the fake's; Azure ML refuses a job on a compute it cannot find.
            return (
                400,
                {},
                _error(
                    "UserError",
                    f"Compute {compute.rsplit('/', 1)[-1]} not found in workspace {self.workspace}.",
                    inner=["NotFound"],
                ),
            )
        now = _now()
        job = FakeJob(
            name=name,
            properties=self._with_default_outputs(name, sent),
            sent=sent,
            created_at=now,
            created_by=self._caller(),
            modified_at=now,
        )
        self.jobs[name] = job
        return 201, {}, self._job_body(job)

    def _with_default_outputs(self, name: str, properties: dict[str, Any]) -> dict[str, Any]:
        """A named output sent without a uri gets the location Azure gives it,
        ``azureml://datastores/workspaceblobstore/paths/azureml/{job}/{output}/``: the shape
        real jobs' outputs are read back from in public code (e.g. fine-tuning pipelines read
        ``azureml/{run_id}/output_model`` on the datastore; a project's notes record "Where a
        declared output with no explicit path actually lands" as this template). Not found in
        Microsoft Learn in these words."""
        outputs = properties.get("outputs")
        if not isinstance(outputs, dict):
            return properties
        filled: dict[str, Any] = {}
        for output, spec in outputs.items():
            if (
                isinstance(spec, dict)
                and spec.get("jobOutputType")
                in ("uri_folder", "uri_file", "custom_model", "mlflow_model")
                and not spec.get("uri")
            ):
                spec = {
                    **spec,
                    "uri": f"azureml://datastores/workspaceblobstore/paths/azureml/{name}/{output}/",
                }
            filled[output] = spec
        return {**properties, "outputs": filled}

    def _job_not_found(self, name: str) -> dict[str, Any]:
        # Azure ML's words for a job that does not exist: "(UserError) Job nertrain not found."
        # (Azure/azureml-previews#267), with the inner NotFound code of Azure ML's errors.
        return _error("UserError", f"Job {name} not found.", inner=["NotFound"])

    def _job_body(self, job: FakeJob) -> dict[str, Any]:
        studio = f"{self.url}/studio/runs/{job.name}?wsid={self.workspace_path}"
        properties = {
            **job.properties,
            "status": job.status,
            "services": {
                "Tracking": {
                    "jobServiceType": "Tracking",
                    "endpoint": f"azureml://{self.location}.api.azureml.ms/mlflow/v1.0"
                    + self.workspace_path,
                },
                "Studio": {"jobServiceType": "Studio", "endpoint": studio},
            },
        }
        properties.setdefault("experimentName", "Default")
        properties.setdefault("isArchived", False)
        properties.setdefault("tags", {})
        properties.setdefault("properties", {})
        return self._answer(
            "JobBase",
            {
                "id": f"{self.workspace_path}/jobs/{job.name}",
                "name": job.name,
                "type": f"{PROVIDER}/workspaces/jobs",
                "systemData": self._system_data(job.created_at, job.modified_at),
                "properties": properties,
            },
        )

    def _cancel(
        self, method: str, path: str, query: dict[str, str], body: Any, name: str
    ) -> Answer:
        """Jobs - Cancel: 202 with a Location to poll (the REST reference's responses are 200
        and 202 with Location and Retry-After, https://learn.microsoft.com/rest/api/azureml/jobs/cancel).
        The job says CancelRequested until the operation completes, then Canceled."""
        if method != "POST":
            return self._method_not_allowed(method, path)
        job = self.jobs.get(name)
        if job is None:
            return 404, {}, self._job_not_found(name)
        if job.status in TERMINAL:
            return 200, {}, None

        def finish() -> None:
            if job.status not in TERMINAL:
                self._set_status(job, "Canceled")
                self._write_log(job, "The job was canceled.")

        self._set_status(job, "CancelRequested")
        return self._accepted(query, finish, location_only=True)

    def _set_status(self, job: FakeJob, status: str) -> None:
        job.status = status
        job.modified_at = _now()
        if status == "Running" and job.started_at is None:
            job.started_at = job.modified_at
        if status in TERMINAL:
            job.ended_at = job.modified_at

    def _advance(self, job: FakeJob) -> None:
        """One step of a job's life (see JOB_STATES): logs while Running, outputs on
        completion, CancelRequested -> Canceled."""
        if job.status in TERMINAL:
            return
        if job.status == "CancelRequested":
            self._set_status(job, "Canceled")
            self._write_log(job, "The job was canceled.")
            return
        if job.fail_with is not None:
            code, message = job.fail_with
            job.error = {"code": code, "message": message}
            self._write_log(job, f"Error: {message}")
            self._set_status(job, "Failed")
            return
        if job.status == "Queued" and self._over_quota(job):
            return
        if job.status == "Running":
            if job.steps_logged < self.steps:
                self._train(job)
                return
            self._set_status(job, "Finalizing")
            self._write_log(job, "wrote /mnt/azureml/cr/j/outputs/model/adapter")
            self._write_log(job, "wrote /mnt/azureml/cr/j/outputs/model/manifest.json")
            return
        if job.status == "Finalizing":
            self._complete(job)
            self._set_status(job, "Completed")
            return
        following = JOB_STATES[JOB_STATES.index(job.status) + 1]
        self._set_status(job, following)
        if following == "Running":
            self._write_log(job, "tunefleet trainer starting", "loading the base model")

    def _over_quota(self, job: FakeJob) -> bool:
        if self.vcpu_quota is None:
            return False
        compute = self.computes.get(str(job.properties.get("computeId", "")).rsplit("/", 1)[-1])
        if compute is None:
            return False
        vcpus, family = VM_SIZES.get(compute["vmSize"], (0, "Unknown Family"))
        nodes = int((job.properties.get("resources") or {}).get("instanceCount") or 1)
        if nodes * vcpus <= self.vcpu_quota:
            return False
        message = CORE_QUOTA.format(
            family=family, quota=self.vcpu_quota, nodes=nodes, vcpus=nodes * vcpus
        )
        job.error = {"code": "UserError", "message": message}
        self._set_status(job, "Failed")
        return True

    def _train(self, job: FakeJob) -> None:
        per_epoch = max(1, self.steps // self.epochs)
        lines = []
        for step in range(job.steps_logged + 1, min(job.steps_logged + 2, self.steps) + 1):
            lines.append(
                format_metric_line(
                    step=step,
                    total_steps=self.steps,
                    epoch=round(step / per_epoch, 4),
                    train_loss=loss_at(step),
                    learning_rate=1e-4,
                )
            )
            if step % per_epoch == 0:
                lines.append(
                    format_checkpoint_line(
                        step=step, path=f"/mnt/azureml/cr/j/outputs/checkpoints/checkpoint-{step}"
                    )
                )
            job.steps_logged = step
        self._write_log(job, *lines)

    def _write_log(self, job: FakeJob, *lines: str) -> None:
        job.log.extend(lines)
        self._blobs().get_blob_client(LOG_CONTAINER, self.log_blob(job.name)).upload_blob(
            self.log_text(job.name).encode(), overwrite=True
        )

    def _complete(self, job: FakeJob) -> None:
        outputs = job.properties.get("outputs") or {}
        if job.job_type == "FineTuning":
            spec = outputs.get("registered_model") or {}
            uri = f"azureml://datastores/workspaceblobstore/paths/azureml/{job.name}/registered_model/"
            self._write_outputs(job, uri)
            if spec.get("assetName"):
                self.register_model(
                    str(spec["assetName"]),
                    {"modelType": "mlflow_model", "modelUri": uri, "jobName": job.name},
                )
            return
        spec = outputs.get("model")
        if not isinstance(spec, dict):
            spec = next((o for o in outputs.values() if isinstance(o, dict) and o.get("uri")), None)
        if spec and spec.get("uri"):
            self._write_outputs(job, str(spec["uri"]))
        answers = outputs.get("predictions")
        if isinstance(answers, dict) and answers.get("uri"):
            self._write_files(str(answers["uri"]), self._predictions(job))

    def _golden(self, job: FakeJob) -> list[GoldenExample]:
        """The golden examples a command job with an evaluation answers: its ``golden``
        input's data asset, read from the datastore, the first ``max_examples`` of them (the
        trainer's config in the job's environment)."""
        config = json.loads(
            (job.properties.get("environmentVariables") or {}).get("TUNEFLEET_TRAINER_CONFIG", "{}")
        )
        evaluation = config.get("evaluation") or {}
        uri = str(((job.properties.get("inputs") or {}).get("golden") or {}).get("uri", ""))
        asset = re.search(r"/data/([^/]+)/versions/([^/]+)$", uri)
        if not evaluation or asset is None:
            return []
        data_uri = self.assets["data"][asset.group(1)][asset.group(2)]["properties"]["dataUri"]
        found = re.fullmatch(r"azureml://datastores/([^/]+)/paths/(.*)", data_uri)
        assert found is not None, data_uri
        container = self.datastores[found.group(1)]["container"]
        lines = [
            line for line in self.blob_text(container, found.group(2)).splitlines() if line.strip()
        ]
        limit = evaluation.get("max_examples") or len(lines)
        return [
            parse_golden_line(line, index=index, line=index + 1, source=uri)
            for index, line in enumerate(lines[:limit])
        ]

    def _predictions(self, job: FakeJob) -> dict[str, bytes]:
        """What the trainer writes to the predictions output: the trained model's answers
        (:attr:`trained_answer`) and, with a baseline, the base model's."""
        return prediction_files(self._golden(job), self.trained_answer, self.baseline_answer)

    def _write_outputs(self, job: FakeJob, uri: str) -> None:
        self._write_files(uri, self.outputs_for(job))

    def _write_files(self, uri: str, files: dict[str, bytes]) -> None:
        """Upload ``files`` under a datastore URI, as Azure ML uploads an output folder."""
        found = re.fullmatch(r"azureml://datastores/([^/]+)/paths/(.*)", uri)
        if not found or found.group(1) not in self.datastores:
            return
        container = self.datastores[found.group(1)]["container"]
        prefix = found.group(2).rstrip("/")
        for name, data in files.items():
            self._blobs().get_blob_client(container, f"{prefix}/{name}").upload_blob(
                data, overwrite=True
            )

    # --- RunHistory ------------------------------------------------------------------------

    def _run_history(self, method: str, path: str) -> Answer:
        """RunHistory's run and run details, as azure-ai-ml's RunHistoryClient reads them
        (``/history/v1.0{W}/runs/{runId}[/details]``, azure/ai/ml/_restclient/runhistory)."""
        found = re.fullmatch(
            re.escape(self.workspace_path) + r"/runs/([^/]+)(/details)?", path, re.IGNORECASE
        )
        if method != "GET" or not found:
            return 404, {}, _error("NotFound", f"No route for {method} {path}.")
        job = self.jobs.get(found.group(1))
        if job is None:
            # RunHistory's words: "Run 01-regression was not found" (Azure/AutoML-vNext-Preview#3).
            return 404, {}, _error("UserError", f"Run {found.group(1)} was not found")
        if self.auto_advance:
            self._advance(job)
        run: dict[str, Any] = {
            "runId": job.name,
            "runUuid": str(uuid.uuid5(uuid.NAMESPACE_URL, job.name)),
            "status": job.status,
            "target": str(job.properties.get("computeId", "")).rsplit("/", 1)[-1] or None,
            "createdTimeUtc": job.created_at,
            "startTimeUtc": job.started_at,
            "endTimeUtc": job.ended_at,
            "tags": job.properties.get("tags") or {},
            "properties": job.properties.get("properties") or {},
            "warnings": [],
            "error": {"error": job.error} if job.error else None,
        }
        if found.group(2):
            started = job.status not in ("NotStarted", "Queued", "Preparing") or bool(job.log)
            run["logFiles"] = {LOG_NAME: self.log_url(job.name)} if started else {}
        return 200, {}, run

    def _blobs(self) -> Any:
        if self._blob_service is None:
            from azure.core.credentials import AzureNamedKeyCredential
            from azure.storage.blob import BlobServiceClient

            self._blob_service = BlobServiceClient(
                self.blob.url,
                credential=AzureNamedKeyCredential(self.blob.account, self.blob.key),
                connection_verify=str(self.ca_path),
            )
        return self._blob_service

    def _sas_url(self, container: str, name: str) -> str:
        from azure.storage.blob import BlobSasPermissions, generate_blob_sas

        sas = generate_blob_sas(
            account_name=self.blob.account,
            container_name=container,
            blob_name=name,
            account_key=self.blob.key,
            permission=BlobSasPermissions(read=True),
            expiry=datetime.now(UTC) + timedelta(hours=1),
        )
        return f"{self.blob.url}/{container}/{quote(name)}?{sas}"

    # --- long-running operations -----------------------------------------------------------

    def _accepted(
        self,
        query: dict[str, str],
        finish: Callable[[], None],
        *,
        status: int = 202,
        body: Any = None,
        location_only: bool = False,
        resource: str | None = None,
    ) -> Answer:
        """Start a long-running operation: Resource Manager's ``Azure-AsyncOperation`` (status
        resource) and ``Location`` (result resource) headers ("Asynchronous operations",
        https://github.com/Azure/azure-resource-manager-rpc/blob/master/v1.0/async-api-reference.md),
        under Azure ML's ``mfeOperationsStatus`` / ``mfeOperationResults`` paths."""
        operation = _Operation(
            id=uuid.uuid4().hex,
            polls=self.operation_polls,
            finish=finish,
            started=_now(),
            resource=resource,
        )
        self._operations[operation.id] = operation
        base = (
            f"{self.url}/subscriptions/{self.subscription}/providers/{PROVIDER}"
            f"/locations/{self.location}"
        )
        version = quote(query.get("api-version", "2025-12-01"))
        headers = {
            "Location": f"{base}/mfeOperationResults/{operation.id}?api-version={version}",
        }
        if not location_only:
            headers["Azure-AsyncOperation"] = (
                f"{base}/mfeOperationsStatus/{operation.id}?api-version={version}"
            )
            headers["x-ms-async-operation-timeout"] = "PT2H"
        return status, headers, body

    def _tick(self, operation: _Operation) -> None:
        if operation.status != "InProgress":
            return
        if operation.polls > 0:
            operation.polls -= 1
            return
        operation.finish()
        operation.status = "Succeeded"

    def _operation(self, kind: str, operation_id: str) -> Answer:
        operation = self._operations.get(operation_id)
        if operation is None:
            return 404, {}, _error("NotFound", f"Operation {operation_id} not found.")
        self._tick(operation)
        if kind.lower() == "mfeoperationsstatus":
            body: dict[str, Any] = {
                "id": operation.id,
                "name": operation.id,
                "status": operation.status,
                "startTime": operation.started,
            }
            if operation.status != "InProgress":
                body["endTime"] = _now()
            return 200, {}, body
        if operation.status == "InProgress":
            return 202, {}, None
        return 200, {}, None

    def _pending(self, resource_id: str) -> None:
        """A read of a resource counts as a poll of the operation changing it (so a caller
        that polls the resource rather than the operation sees it finish)."""
        for operation in list(self._operations.values()):
            if operation.status == "InProgress" and operation.resource == resource_id:
                self._tick(operation)

    # --- online endpoints ------------------------------------------------------------------

    def _endpoint_id(self, name: str) -> str:
        return f"{self.workspace_path}/onlineEndpoints/{name}"

    def _endpoint_body(self, name: str) -> dict[str, Any]:
        return self._answer("OnlineEndpoint", self.endpoints[name])

    def _endpoint_list(self, method: str, path: str, query: Any, body: Any) -> Answer:
        if method != "GET":
            return self._method_not_allowed(method, path)
        return 200, {}, {"value": [self._endpoint_body(n) for n in self.endpoints]}

    def _endpoint_not_found(self) -> dict[str, Any]:
        # Azure ML's answer for an endpoint or deployment that is not there: code NotFound,
        # "The specified resource was not found." (Azure/azure-cli-extensions#7660, #7107).
        return _error("NotFound", "The specified resource was not found.")

    def _endpoint(
        self, method: str, path: str, query: dict[str, str], body: Any, name: str
    ) -> Answer:
        resource = self._endpoint_id(name)
        if method == "GET":
            if name not in self.endpoints:
                return 404, {}, self._endpoint_not_found()
            self._pending(resource)
            return 200, {}, self._endpoint_body(name)
        if method == "DELETE":
            if name not in self.endpoints:
                return 204, {}, None

            def gone() -> None:
                self.endpoints.pop(name, None)
                self.deployments.pop(name, None)
                self.endpoint_keys.pop(name, None)

            self.endpoints[name]["properties"]["provisioningState"] = "Deleting"
            return self._accepted(query, gone, resource=resource)
        if method == "PATCH":
            self._check(method, path, "PartialMinimalTrackedResourceWithIdentity", body)
            if name not in self.endpoints:
                return 404, {}, self._endpoint_not_found()
            if isinstance(body, dict):
                for key in ("tags", "identity"):
                    if key in body:
                        self.endpoints[name][key] = body[key]
            return self._changing(query, resource, self.endpoints[name], status=202)
        if method != "PUT":
            return self._method_not_allowed(method, path)
        self._check(method, path, "OnlineEndpoint", body)
        if not ENDPOINT_NAME.match(name):
            self._violate(
                method, path, f"endpoint name {name!r} does not match {ENDPOINT_NAME.pattern}"
            )
            # The wording is the fake's (Azure's own for this case was not found written down).
            return (
                400,
                {},
                _error(
                    "BadArgument",
                    "Endpoint name must begin with a letter, be 3-32 characters in length and "
                    "only consist of letters, numbers and dashes.",
                ),
            )
        if not isinstance(body, dict) or not isinstance(body.get("properties"), dict):
            return 400, {}, _error("BadArgument", "The request body must carry properties.")
        sent = dict(body["properties"])
        refused = self._traffic_refusal(name, sent)
        if refused is not None:
            self._violate(method, path, str(refused[2]["error"]["message"]))
            return refused
        keys = sent.pop("keys", None)
        existing = self.endpoints.get(name)
        now = _now()
        if name not in self.endpoint_keys or keys:
            primary = (keys or {}).get("primaryKey") or secrets.token_urlsafe(24)
            secondary = (keys or {}).get("secondaryKey") or secrets.token_urlsafe(24)
            self.endpoint_keys[name] = (primary, secondary)
        properties = {
            **sent,
            "scoringUri": f"{self.url}/score/{name}",
            "swaggerUri": f"{self.url}/score/{name}/swagger.json",
            "provisioningState": "Updating" if existing else "Creating",
        }
        properties.setdefault("traffic", {})
        properties.setdefault("publicNetworkAccess", "Enabled")
        properties.setdefault("properties", {})
        properties["properties"].setdefault("azureml.onlineendpointid", resource)
        self.endpoints[name] = {
            "id": resource,
            "name": name,
            "type": f"{PROVIDER}/workspaces/onlineEndpoints",
            "location": body.get("location", self.location),
            "tags": body.get("tags") or {},
            "kind": body.get("kind") or "Managed",
            "identity": {
                "type": "SystemAssigned",
                "principalId": str(uuid.uuid5(uuid.NAMESPACE_URL, resource)),
                "tenantId": self.tenant,
            },
            "systemData": self._system_data(
                existing["systemData"]["createdAt"] if existing else now, now
            ),
            "properties": properties,
        }
        return self._changing(
            query, resource, self.endpoints[name], status=200 if existing else 201
        )

    def _changing(
        self, query: dict[str, str], resource: str, entity: dict[str, Any], *, status: int
    ) -> Answer:
        """Answer a create or update in flight; the resource is Succeeded when its operation
        is (Online Endpoints - Create Or Update answers 200/201 with Azure-AsyncOperation,
        https://learn.microsoft.com/rest/api/azureml/online-endpoints/create-or-update)."""

        def done() -> None:
            entity["properties"]["provisioningState"] = "Succeeded"

        if status == 202:
            entity["properties"]["provisioningState"] = "Updating"
            return self._accepted(query, done, status=202, resource=resource)
        answer = self._answer(
            "OnlineEndpoint" if "/deployments/" not in resource else "OnlineDeployment", entity
        )
        return self._accepted(query, done, status=status, body=answer, resource=resource)

    def _traffic_refusal(self, name: str, properties: dict[str, Any]) -> Answer | None:
        """Azure's rules for traffic and mirrored traffic (wordings are the fake's):

        * "The sum of traffic values must be 100" (the endpoint configuration table of
          "Deploy an ML model by using an online endpoint", as quoted in
          MicrosoftDocs/azure-docs#85546); 0 while no deployment takes traffic.
        * "You can mirror traffic to only one deployment in an endpoint", "The maximum
          percentage of traffic you can mirror is 50 percent", "You can configure a deployment
          to receive only live traffic or mirrored traffic, not both" ("Perform safe rollout
          of new deployments for real-time inference",
          https://learn.microsoft.com/azure/machine-learning/how-to-safely-rollout-online-endpoints).
        * Traffic can only name deployments of the endpoint.
        """
        traffic = properties.get("traffic") or {}
        mirror = properties.get("mirrorTraffic") or {}
        known = self.deployments.get(name, {})
        problems = []
        unknown = sorted(d for d in {**traffic, **mirror} if d not in known)
        if unknown:
            problems.append(f"deployments {', '.join(unknown)} do not exist in endpoint {name}")
        total = sum(v for v in traffic.values() if isinstance(v, int))
        if total not in (0, 100):
            problems.append(f"traffic adds up to {total}, not 100")
        if len([d for d, v in mirror.items() if v]) > 1:
            problems.append("traffic can be mirrored to only one deployment")
        if any(isinstance(v, int) and v > 50 for v in mirror.values()):
            problems.append("at most 50 percent of traffic can be mirrored")
        both = sorted(d for d, v in mirror.items() if v and traffic.get(d))
        if both:
            problems.append(f"deployments {', '.join(both)} take both live and mirrored traffic")
        if not problems:
            return None
        return 400, {}, _error("BadArgument", "Invalid traffic: " + "; ".join(problems) + ".")

    def _list_keys(self, method: str, path: str, query: Any, body: Any, name: str) -> Answer:
        if method != "POST":
            return self._method_not_allowed(method, path)
        if name not in self.endpoints:
            return 404, {}, self._endpoint_not_found()
        primary, secondary = self.endpoint_keys[name]
        return (
            200,
            {},
            self._answer("EndpointAuthKeys", {"primaryKey": primary, "secondaryKey": secondary}),
        )

    def _regenerate_keys(
        self, method: str, path: str, query: dict[str, str], body: Any, name: str
    ) -> Answer:
        if method != "POST":
            return self._method_not_allowed(method, path)
        self._check(method, path, "RegenerateEndpointKeysRequest", body)
        if name not in self.endpoints:
            return 404, {}, self._endpoint_not_found()
        which = str((body or {}).get("keyType", "Primary"))
        value = (body or {}).get("keyValue") or secrets.token_urlsafe(24)

        def regenerate() -> None:
            primary, secondary = self.endpoint_keys[name]
            self.endpoint_keys[name] = (
                (value, secondary) if which == "Primary" else (primary, value)
            )

        return self._accepted(query, regenerate, location_only=True)

    # --- deployments -----------------------------------------------------------------------

    def _deployment_list(
        self, method: str, path: str, query: Any, body: Any, endpoint: str
    ) -> Answer:
        if method != "GET":
            return self._method_not_allowed(method, path)
        if endpoint not in self.endpoints:
            return 404, {}, self._endpoint_not_found()
        found = self.deployments.get(endpoint, {})
        return 200, {}, {"value": [self._answer("OnlineDeployment", d) for d in found.values()]}

    def _deployment(
        self, method: str, path: str, query: dict[str, str], body: Any, endpoint: str, name: str
    ) -> Answer:
        resource = f"{self._endpoint_id(endpoint)}/deployments/{name}"
        deployments = self.deployments.setdefault(endpoint, {})
        if method == "GET":
            if name not in deployments:
                return 404, {}, self._endpoint_not_found()
            self._pending(resource)
            return 200, {}, self._answer("OnlineDeployment", deployments[name])
        if method == "DELETE":
            if name not in deployments:
                return 204, {}, None

            def gone() -> None:
                deployments.pop(name, None)

            deployments[name]["properties"]["provisioningState"] = "Deleting"
            return self._accepted(query, gone, resource=resource)
        if method == "PATCH":
            self._check(method, path, "PartialMinimalTrackedResourceWithSku", body)
            if name not in deployments:
                return 404, {}, self._endpoint_not_found()
            if isinstance(body, dict):
                if "tags" in body:
                    deployments[name]["tags"] = body["tags"]
                if isinstance(body.get("sku"), dict):
                    deployments[name]["sku"].update(body["sku"])
            return self._changing(query, resource, deployments[name], status=202)
        if method != "PUT":
            return self._method_not_allowed(method, path)
        self._check(method, path, "OnlineDeployment", body)
        if endpoint not in self.endpoints:
            return 404, {}, self._endpoint_not_found()
        if not ENDPOINT_NAME.match(name):
            self._violate(
                method, path, f"deployment name {name!r} does not match {ENDPOINT_NAME.pattern}"
            )
            return (
                400,
                {},
                _error(
                    "BadArgument",
                    "Deployment name must begin with a letter, be 3-32 characters in length and "
                    "only consist of letters, numbers and dashes.",
                ),
            )
        if not isinstance(body, dict) or not isinstance(body.get("properties"), dict):
            return 400, {}, _error("BadArgument", "The request body must carry properties.")
        existing = deployments.get(name)
        now = _now()
        properties = {
            **body["properties"],
            "provisioningState": "Updating" if existing else "Creating",
        }
        # Deployments come back with scaleSettings even when none was sent (azure-ai-ml reads
        # ``scale_settings.scale_type`` of every answer: ../shared/TESTING-TARGETS.md, D).
        properties.setdefault("scaleSettings", {"scaleType": "Default"})
        properties.setdefault("properties", {})
        properties.setdefault("environmentVariables", {})
        properties.setdefault("appInsightsEnabled", False)
        properties.setdefault("egressPublicNetworkAccess", "Enabled")
        sku = body.get("sku") or {"name": "Default", "capacity": 1}
        deployments[name] = {
            "id": resource,
            "name": name,
            "type": f"{PROVIDER}/workspaces/onlineEndpoints/deployments",
            "location": body.get("location", self.location),
            "tags": body.get("tags") or {},
            "kind": body.get("kind") or "Managed",
            "sku": sku,
            "systemData": self._system_data(
                existing["systemData"]["createdAt"] if existing else now, now
            ),
            "properties": properties,
        }
        return self._changing(query, resource, deployments[name], status=200 if existing else 201)

    def _deployment_logs(
        self, method: str, path: str, query: Any, body: Any, endpoint: str, name: str
    ) -> Answer:
        if method != "POST":
            return self._method_not_allowed(method, path)
        if name not in self.deployments.get(endpoint, {}):
            return 404, {}, self._endpoint_not_found()
        served = [s for s in self.scored if s.endpoint == endpoint and s.deployment == name]
        lines = [f"Scoring request {i}" for i, _ in enumerate(served, 1)] or ["Server started"]
        return 200, {}, self._answer("DeploymentLogs", {"content": "\n".join(lines) + "\n"})

    # --- scoring -----------------------------------------------------------------------------

    def _score(self, method: str, rest: str, headers: dict[str, str], body: Any) -> Answer:
        """The endpoint's scoring URI, answering as a vLLM/TGI OpenAI-compatible server does.

        Authentication by endpoint key (``Authorization: Bearer <key>``) or, for an AADToken
        endpoint, an Entra token for https://ml.azure.com ("Authenticate clients for online
        endpoints", https://learn.microsoft.com/azure/machine-learning/how-to-authenticate-online-endpoint).
        The ``azureml-model-deployment`` header picks a deployment; otherwise the endpoint's
        traffic weights do. Mirrored traffic copies a share of the requests that were routed by
        weight, never those that named a deployment ("Perform safe rollout of new
        deployments", https://learn.microsoft.com/azure/machine-learning/how-to-safely-rollout-online-endpoints).
        Wordings of the refusals are the fake's."""
        name = rest.split("/", 1)[0]
        endpoint = self.endpoints.get(name)
        if method != "POST" or endpoint is None or rest != name:
            return 404, {}, {"message": f"No endpoint {rest}."}
        mode = str(endpoint["properties"].get("authMode", "Key")).lower()
        token = headers.get("authorization", "").partition(" ")[2]
        if mode == "aadtoken":
            claims = _jwt_claims(token)
            allowed = bool(token) and (claims is None or claims.get("aud") in ML_AUDIENCES)
        else:
            allowed = token in self.endpoint_keys.get(name, ())
        if not allowed:
            return 401, {}, {"message": "Unauthorized: the key or token is missing or invalid."}
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return (
                400,
                {},
                {
                    "object": "error",
                    "message": "messages: field required",
                    "type": "BadRequestError",
                    "code": 400,
                },
            )
        deployments = self.deployments.get(name, {})
        chosen = headers.get("azureml-model-deployment")
        if chosen:
            if chosen not in deployments:
                return 404, {}, {"message": f"Deployment {chosen} not found in endpoint {name}."}
        else:
            traffic = {d: w for d, w in (endpoint["properties"].get("traffic") or {}).items() if w}
            if not traffic:
                return 404, {}, {"message": f"No deployment of endpoint {name} takes traffic."}
            chosen = self._random.choices(list(traffic), weights=list(traffic.values()))[0]
            for shadow, share in (endpoint["properties"].get("mirrorTraffic") or {}).items():
                if share and self._random.random() * 100 < share and shadow in deployments:
                    self.scored.append(Scored(name, shadow, body, mirrored=True))
        if deployments[chosen]["properties"].get("provisioningState") != "Succeeded":
            return 503, {}, {"message": f"Deployment {chosen} is not ready."}
        self.scored.append(Scored(name, chosen, body, mirrored=False))
        return 200, {"azureml-model-deployment": chosen}, self._completion(chosen, body)

    def _completion(self, deployment: str, request: dict[str, Any]) -> dict[str, Any]:
        """A chat.completion as vLLM's OpenAI server writes one (choices[].message,
        finish_reason "stop" or "length" at max_tokens, usage)."""
        words = self.answer(deployment, request).split()
        limit = request.get("max_tokens") or request.get("max_completion_tokens")
        finish = "stop"
        if isinstance(limit, int) and len(words) > limit:
            words, finish = words[:limit], "length"
        prompt = sum(
            len(str(m.get("content", "")).split())
            for m in request["messages"]
            if isinstance(m, dict)
        )
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(request.get("model") or deployment),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": " ".join(words)},
                    "logprobs": None,
                    "finish_reason": finish,
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": len(words),
                "total_tokens": prompt + len(words),
            },
        }

    # --- Azure Monitor autoscale ------------------------------------------------------------

    def _autoscale(
        self, method: str, path: str, subscription: str, group: str, name: str, body: Any
    ) -> Answer:
        """Autoscale settings (Microsoft.Insights, api-version 2022-10-01 as azure-mgmt-monitor
        7.0.0 sends it; https://learn.microsoft.com/rest/api/monitor/autoscale-settings):
        PUT answers 200 or 201 with the resource, DELETE 200 or 204, GET 404 when missing."""
        resource = (
            f"/subscriptions/{subscription}/resourceGroups/{group}/providers/"
            f"microsoft.insights/autoscalesettings/{name}"
        )
        if subscription != self.subscription or group.lower() != self.resource_group.lower():
            return (
                404,
                {},
                _error("ResourceGroupNotFound", f"Resource group '{group}' could not be found."),
            )
        key = name.lower()
        if method == "GET":
            if key not in self.autoscale:
                return 404, {}, self._arm_not_found(f"microsoft.insights/autoscalesettings/{name}")
            return 200, {}, self._answer("AutoscaleSettingResource", self.autoscale[key], "monitor")
        if method == "DELETE":
            return (200 if self.autoscale.pop(key, None) else 204), {}, None
        if method == "PATCH":
            self._check(method, path, "AutoscaleSettingResourcePatch", body, "monitor")
            if key not in self.autoscale:
                return 404, {}, self._arm_not_found(f"microsoft.insights/autoscalesettings/{name}")
            if isinstance(body, dict):
                self.autoscale[key]["properties"].update(body.get("properties") or {})
                if "tags" in body:
                    self.autoscale[key]["tags"] = body["tags"]
            return 200, {}, self._answer("AutoscaleSettingResource", self.autoscale[key], "monitor")
        if method != "PUT":
            return self._method_not_allowed(method, path)
        self._check(method, path, "AutoscaleSettingResource", body, "monitor")
        if not isinstance(body, dict) or not isinstance(body.get("properties"), dict):
            return 400, {}, _error("InvalidRequestContent", "The request content was invalid.")
        properties = dict(body["properties"])
        target = str(properties.get("targetResourceUri", ""))
        if not self._deployment_exists(target):
            self._violate(
                method, path, f"targetResourceUri {target!r} is not a deployment of this workspace"
            )
        properties.setdefault("enabled", True)
        properties.setdefault("name", name)
        properties.setdefault("notifications", [])
        existing = key in self.autoscale
        self.autoscale[key] = {
            "id": resource,
            "name": name,
            "type": "Microsoft.Insights/autoscaleSettings",
            "location": body.get("location", self.location),
            "tags": body.get("tags") or {},
            "properties": properties,
        }
        return (
            (200 if existing else 201),
            {},
            self._answer("AutoscaleSettingResource", self.autoscale[key], "monitor"),
        )

    def _deployment_exists(self, resource: str) -> bool:
        found = re.fullmatch(
            re.escape(self.workspace_path) + r"/onlineEndpoints/([^/]+)/deployments/([^/]+)",
            resource,
            re.IGNORECASE,
        )
        return bool(found) and found.group(2) in self.deployments.get(found.group(1), {})  # type: ignore[union-attr]


class _Handler(BaseHTTPRequestHandler):
    service: FakeAzureML
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {key.lower(): value for key, value in self.headers.items()}
        status, extra, answer = self.service.handle(self.command, self.path, headers, raw)
        data = json.dumps(answer).encode() if answer is not None else b""
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        self.send_header(
            "x-ms-correlation-request-id", headers.get("x-ms-client-request-id", str(uuid.uuid4()))
        )
        # Poll again almost at once: nothing here is slow. Resource Manager says Retry-After
        # in seconds, but azure-core reads "Retry-After: 0" as no delay given and waits its
        # polling_interval (30 s by default); it honours x-ms-retry-after-ms too
        # (azure/core/pipeline/policies/_utils.py, get_retry_after). Never on an error: its
        # RetryPolicy retries any error that carries Retry-After.
        if status < 400:
            extra = {"x-ms-retry-after-ms": str(self.service.poll_delay_ms), **extra}
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = _serve  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:
        pass

"""A fake of Google Vertex AI (and of the bits of OAuth2 and Cloud Logging it needs), over
plain HTTP on 127.0.0.1.

:class:`FakeVertex` answers what the Vertex provider asks of Google through the official
``google.cloud.aiplatform_v1`` clients (``transport="rest"``, ``client_options={"api_endpoint":
fake.url}``) and ``google.cloud.logging``'s HTTP client:

* ``POST /token``: Google's OAuth2 token endpoint, as an ``authorized_user`` ADC file's
  ``token_uri`` reaches it (:func:`write_adc_file`). Every API call must then carry
  ``Authorization: Bearer ya29.fake-N`` with a token it issued, else 401 UNAUTHENTICATED.
* JobService customJobs (create, get, list with filter and pages, cancel, delete), with a
  lifecycle that moves on one step per read and a trainer that logs falling loss, reads its
  training data from, and writes its outputs to, a fake-gcs-server (``gcs_url``).
* GenAiTuningService tuningJobs (create, get, list, cancel): the dataset is read from GCS and
  checked line by line as Gemini's supervised tuning format; the tuned model's endpoint
  answers ``generateContent``. A running job publishes its tuning metrics where Vertex does:
  its ``experiment`` context (MetadataService contexts get and list) names a backing
  TensorBoard, whose experiment run holds the ``/train_*`` (and, with validation data,
  ``/eval_*``) time series (TensorboardService timeSeries list and read).
* ModelService (``models:upload``, get, delete), EndpointService (create, get, list, delete,
  deployModel, undeployModel, patch of the traffic split) and PredictionService
  (``rawPredict``, ``deployedModels/{id}/invoke/...``), as a vLLM/TGI container answers
  OpenAI chat completions.
* Long-running operations, ``GET /v1/{resource}/operations/{id}`` (and ``/ui/...``, the first
  path templates the aiplatform REST operations client tries), done after ``operation_polls``
  polls.
* Cloud Logging ``POST /v2/entries:list`` for the jobs' ``ml_job`` log entries.

Each request body is decoded with its proto type and walked against Google's discovery
document (:mod:`tests.providers.vertex.discovery_contract`); what breaks it or a documented
rule lands in ``violations`` (a test fixture fails on it) and, where Vertex refuses it, is
refused with Google's error body ``{"error": {"code", "message", "status", "details"}}``.
Every behaviour played cites where it is written down; where Google's exact wording could not
be found, the comment says the wording is the fake's.
"""

from __future__ import annotations

import base64
import itertools
import json
import random
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, quote, unquote, urlsplit

import httpx
from tests.providers.trainer_files import lora_outputs, loss_at, prediction_files
from tests.providers.vertex import discovery_contract

from tunefleet_trainer.metrics import format_checkpoint_line, format_metric_line
from tunefleet_trainer.predictions import GoldenExample, parse_golden_line

PROJECT = "tunefleet-test"
PROJECT_NUMBER = "123456789012"
LOCATION = "europe-west4"
API = "type.googleapis.com/google.cloud.aiplatform.v1."
EMPTY = "type.googleapis.com/google.protobuf.Empty"

CLIENT_ID = "fake-client-id.apps.googleusercontent.com"
CLIENT_SECRET = "fake-client-secret"
REFRESH_TOKEN = "1//fake-refresh-token"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
SERVICE_ACCOUNT = f"tunefleet-runner@{PROJECT}.iam.gserviceaccount.com"

# --- Google's error model ------------------------------------------------------------------

GRPC_CODES = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}
"""google.rpc.Code (googleapis/google/rpc/code.proto)."""
HTTP_STATUS = {
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}
"""The HTTP status each code travels with over REST (the mapping in code.proto's comments;
"Errors", https://cloud.google.com/apis/design/errors#handling_errors). NB google.api_core
builds a REST error's exception from the HTTP status alone (``exceptions.from_http_response``
-> ``from_http_status``): FAILED_PRECONDITION and INVALID_ARGUMENT both arrive as
``BadRequest``, ALREADY_EXISTS as ``Conflict``, RESOURCE_EXHAUSTED as ``TooManyRequests``,
PERMISSION_DENIED as ``Forbidden``; the ``status`` string is only in ``exc.response``."""

JOB_STATES = (
    "JOB_STATE_UNSPECIFIED",
    "JOB_STATE_QUEUED",
    "JOB_STATE_PENDING",
    "JOB_STATE_RUNNING",
    "JOB_STATE_SUCCEEDED",
    "JOB_STATE_FAILED",
    "JOB_STATE_CANCELLING",
    "JOB_STATE_CANCELLED",
    "JOB_STATE_PAUSED",
    "JOB_STATE_EXPIRED",
    "JOB_STATE_UPDATING",
    "JOB_STATE_PARTIALLY_SUCCEEDED",
)
"""JobState, the enum of ``CustomJob.state`` / ``TuningJob.state`` in the discovery document."""
TERMINAL = frozenset(
    {
        "JOB_STATE_SUCCEEDED",
        "JOB_STATE_FAILED",
        "JOB_STATE_CANCELLED",
        "JOB_STATE_EXPIRED",
        "JOB_STATE_PARTIALLY_SUCCEEDED",
    }
)
"""States a job does not leave ("endTime: Time when the CustomJob entered any of the following
states: JOB_STATE_SUCCEEDED, JOB_STATE_FAILED, JOB_STATE_CANCELLED"; TuningJob adds EXPIRED)."""

REPLICA_FAILED = (
    "The replica {task} exited with a non-zero status of {status}. Termination reason: Error."
)
"""How Vertex fails a custom job whose container exits non-zero: state FAILED, ``error.code``
3, this message (quoted from the service in GoogleCloudPlatform/vertex-ai-samples#1898 and
#1504: "code: 3 message: The replica workerpool0-0 exited with a non-zero status of 128.
Termination reason: StartError ...")."""

SUPPORTED_TUNING_MODELS = (
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "gemini-2.0-flash-001",
    "gemini-2.0-flash-lite-001",
)
"""Base models supervised tuning accepts ("Supported models",
https://cloud.google.com/vertex-ai/generative-ai/docs/models/gemini-supervised-tuning#supported_models);
a set small enough for tests, settable per fake (``tuning_models``)."""

TUNING_TRAIN_SERIES = (
    "/train_total_loss",
    "/train_fraction_of_correct_next_step_preds",
    "/train_num_predictions",
)
TUNING_EVAL_SERIES = (
    "/eval_total_loss",
    "/eval_fraction_of_correct_next_step_preds",
    "/eval_num_predictions",
)
"""The metrics a supervised tuning job collects at each training step, and with a validation
dataset at each validation step ("Tune Gemini models by using supervised fine-tuning",
"Tuning and validation metrics",
https://cloud.google.com/vertex-ai/generative-ai/docs/models/gemini-use-supervised-tuning);
they are the display names of the TensorBoard time series (Google's tuning notebook reads
``metrics["/train_total_loss"]``, GoogleCloudPlatform/generative-ai
gemini/tuning/sft_gemini_summarization.ipynb)."""
BACKING_TENSORBOARD_KEY = "backing_tensorboard_resource"
"""The key of an experiment context's metadata that names its TensorBoard (the Vertex AI
SDK's ``metadata.constants._BACKING_TENSORBOARD_RESOURCE_KEY``)."""
TENSORBOARD_ID = "8123456789012345678"
"""The fake's one TensorBoard (the project's default one a tuning job's experiment uses)."""
MAX_DATA_POINTS = 10_000
"""``timeSeries.read``: "By default, if the number of data points stored is less than 1000,
all data is returned. Otherwise, 1000 data points is randomly selected ... This value can be
changed by changing max_data_points, which can't be greater than 10k." (discovery
document)."""

AUTOSCALING_METRICS = frozenset(
    {
        "aiplatform.googleapis.com/prediction/online/accelerator/duty_cycle",
        "aiplatform.googleapis.com/prediction/online/cpu/utilization",
        "aiplatform.googleapis.com/prediction/online/request_count",
        "pubsub.googleapis.com/subscription/num_undelivered_messages",
        "prometheus.googleapis.com/vertex_dcgm_fi_dev_gpu_util",
        "prometheus.googleapis.com/vertex_vllm_gpu_cache_usage_perc",
        "prometheus.googleapis.com/vertex_vllm_num_requests_waiting",
    }
)
"""``AutoscalingMetricSpec.metricName``: "Supported metrics" in its description in the
discovery document (revision 20261106)."""

LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
MAX_LABELS = 64
"""Labels: "Each resource can have multiple labels, up to a maximum of 64"; "Keys have a
minimum length of 1 character and a maximum length of 63 characters"; "Values can be empty,
and have a maximum length of 63 characters"; "Keys and values can contain only lowercase
letters, numeric characters, underscores, and dashes. All characters must use UTF-8 encoding,
and international characters are allowed"; "Keys must start with a lowercase letter or
international character" ("Requirements for labels",
https://cloud.google.com/resource-manager/docs/labels-overview#requirements). International
letters are let through below when they are lower case."""

ENDPOINT_ID = re.compile(r"^(?:[a-z][a-z0-9-]{0,61}[a-z0-9]|[a-z]|[1-9][0-9]{0,8})$")
"""``endpointId`` of endpoints.create: "If the first character is a letter, this value may be
up to 63 characters, and valid characters are `[a-z0-9-]`. The last character must be a letter
or number. If the first character is a number, this value may be up to 9 characters, and
valid characters are `[0-9]` with no leading zeros." (discovery document)."""


@dataclass(frozen=True)
class Recorded:
    """One request as it arrived: the body parsed as JSON when it was JSON."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


class GoogleError(Exception):
    """An answer in Google's error shape; raised inside a handler, answered by :meth:`handle`."""

    def __init__(
        self,
        status: str,
        message: str,
        *,
        http_status: int | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.http_status = http_status or HTTP_STATUS.get(status, 500)
        self.details = details or []

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": self.http_status,
            "message": self.message,
            "status": self.status,
        }
        if self.details:
            error["details"] = self.details
        return {"error": error}


def error_body(http_status: int, status: str, message: str) -> dict[str, Any]:
    """Google's JSON error body over REST, ``{"error": {"code": <HTTP status>, "message",
    "status": <google.rpc.Code name>}}`` ("Errors", https://cloud.google.com/apis/design/errors#http_mapping)."""
    return GoogleError(status, message, http_status=http_status).body()


def not_found(kind: str, name: str) -> GoogleError:
    """Vertex's words for a missing resource: "Endpoint `projects/575157790123/locations/
    us-central1/endpoints/7070905402157694976` not found." (status NOT_FOUND, quoted in
    googleapis/python-genai#1706); the fake says the same of every kind."""
    return GoogleError("NOT_FOUND", f"{kind} `{name}` not found.")


def required_missing(fields: list[str]) -> GoogleError:
    """Vertex's refusal of a request that leaves out a required field: "400 INVALID_ARGUMENT:
    Field: reasoning_engine.spec.deployment_spec.env[6].value; Message: Required field is not
    set." (quoted from the service in public deployment notes); with several, Google's
    validation prefixes "List of found errors:" and numbers them."""
    if len(fields) == 1:
        return GoogleError(
            "INVALID_ARGUMENT", f"Field: {fields[0]}; Message: Required field is not set."
        )
    listed = "\t".join(
        f"{index}.Field: {name}; Message: Required field is not set."
        for index, name in enumerate(fields, 1)
    )
    return GoogleError("INVALID_ARGUMENT", f"List of found errors:\t{listed}\t")


def _snake(json_path: str, root: str) -> str:
    """``$.jobSpec.workerPoolSpecs[0].containerSpec`` -> ``custom_job.job_spec.worker_pool_specs[0].container_spec``."""
    path = json_path.removeprefix("$").lstrip(".")
    path = re.sub(r"(?<=[a-z0-9])([A-Z])", lambda m: "_" + m.group(1).lower(), path)
    return ".".join(part for part in (root, path) if part)


def write_adc_file(
    path: Path,
    *,
    token_uri: str,
    kind: str = "service_account",
    project: str = PROJECT,
    quota_project: str | None = None,
) -> Path:
    """Write an Application Default Credentials file whose token endpoint is the fake's
    (``f"{fake.url}/token"``); point ``GOOGLE_APPLICATION_CREDENTIALS`` at it.

    ``kind="service_account"`` (the default): a service account key (a fresh RSA key,
    ``client_email``, ``private_key``, ``token_uri``...). google-auth signs a JWT with it and
    posts the JWT-bearer grant to ``token_uri``, which it takes from the file
    (``service_account.Credentials.from_service_account_info``: ``token_uri=info["token_uri"]``).

    ``kind="authorized_user"``: ``client_id``, ``client_secret``, ``refresh_token``,
    ``token_uri``. NB google-auth 2.63 IGNORES this file's ``token_uri``:
    ``google.oauth2.credentials.Credentials.from_authorized_user_info`` passes
    ``token_uri=_GOOGLE_OAUTH2_TOKEN_ENDPOINT,  # always overrides``, so ``google.auth.default()``
    would refresh at https://oauth2.googleapis.com/token. Use it with
    ``creds.with_token_uri(fake.token_uri)`` or monkeypatch
    ``google.oauth2.credentials._GOOGLE_OAUTH2_TOKEN_ENDPOINT``."""
    info: dict[str, Any]
    if kind == "authorized_user":
        info = {
            "type": "authorized_user",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "refresh_token": REFRESH_TOKEN,
            "token_uri": token_uri,
        }
    elif kind == "service_account":
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        info = {
            "type": "service_account",
            "project_id": project,
            "private_key_id": "fake-key-1",
            "private_key": pem,
            "client_email": SERVICE_ACCOUNT,
            "client_id": "100000000000000000001",
            "token_uri": token_uri,
        }
    else:
        raise ValueError(f"kind must be service_account or authorized_user, not {kind!r}")
    if quota_project:
        info["quota_project_id"] = quota_project
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info, indent=2), encoding="utf-8")
    return path


def _jwt_claims(token: str) -> dict[str, Any] | None:
    """The claims of a JWT, unverified; None if ``token`` is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    return claims if isinstance(claims, dict) else None


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(moment: datetime | None = None) -> str:
    """RFC 3339, Z-normalized, microseconds (what Google's JSON writes)."""
    return (moment or _now()).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: str) -> datetime:
    text = text.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- the trainer's outputs ----------------------------------------------------------------


def trainer_outputs(job: FakeCustomJob) -> dict[str, bytes]:
    """What the tunefleet trainer leaves in its output directory for a LoRA run."""
    return lora_outputs(
        steps=job.steps_logged,
        base_model=job.arg("--base-model")
        or job.env.get("TUNEFLEET_BASE_MODEL", "Qwen/Qwen2.5-0.5B-Instruct"),
        started_at=job.resource.get("startTime") or job.resource["createTime"],
        finished_at=_stamp(),
    )


def default_answer(deployed_model_id: str, request: dict[str, Any]) -> str:
    """A deployed model's reply to a chat request: names itself and echoes the last message."""
    messages = request.get("messages") or [{}]
    last = messages[-1].get("content", "") if isinstance(messages[-1], dict) else ""
    if isinstance(last, list):
        last = " ".join(str(part.get("text", "")) for part in last if isinstance(part, dict))
    return f"[{deployed_model_id}] {last}".strip()


# --- state ---------------------------------------------------------------------------------


@dataclass
class FakeCustomJob:
    """A custom job as the fake keeps it: ``resource`` is what GET answers."""

    id: str
    resource: dict[str, Any]
    steps_logged: int = 0
    fail_with: tuple[int, str] | None = None
    """(code, message) the job fails with when next it would advance (:meth:`FakeVertex.fail_job`)."""

    @property
    def state(self) -> str:
        return str(self.resource["state"])

    @property
    def pool(self) -> dict[str, Any]:
        pools = self.resource.get("jobSpec", {}).get("workerPoolSpecs") or [{}]
        return pools[0] if isinstance(pools[0], dict) else {}

    @property
    def args(self) -> list[str]:
        container = self.pool.get("containerSpec") or {}
        return [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]

    @property
    def env(self) -> dict[str, str]:
        container = self.pool.get("containerSpec") or {}
        return {
            str(e.get("name")): str(e.get("value", ""))
            for e in container.get("env") or []
            if isinstance(e, dict)
        }

    def arg(self, flag: str) -> str | None:
        """The value of ``--flag VALUE`` or ``--flag=VALUE`` among the container's args."""
        args = self.args
        for index, arg in enumerate(args):
            if arg == flag and index + 1 < len(args):
                return args[index + 1]
            if arg.startswith(flag + "="):
                return arg.split("=", 1)[1]
        return None


@dataclass
class FakeTuningJob:
    id: str
    resource: dict[str, Any]
    examples: list[dict[str, Any]] = field(default_factory=list)
    fail_with: tuple[int, str] | None = None
    steps_published: int = 0
    """Training steps whose metrics the job has published to its TensorBoard run."""

    @property
    def state(self) -> str:
        return str(self.resource["state"])


@dataclass
class _Operation:
    name: str
    metadata: dict[str, Any]
    finish: Callable[[], dict[str, Any]]
    """Runs when the operation completes; returns the ``response`` (or raises GoogleError)."""
    polls: int
    done: bool = False
    response: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    def resource(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"name": self.name, "metadata": self.metadata, "done": self.done}
        if self.done and self.error is not None:
            answer["error"] = self.error
        elif self.done:
            answer["response"] = self.response or {"@type": EMPTY}
        return answer


@dataclass
class _Injected:
    method: str
    path: re.Pattern[str]
    http_status: int
    status: str
    message: str
    times: int
    after: bool = False
    """Carry the request out, then answer the error: an answer lost on the way back."""


Answer = tuple[int, dict[str, str], Any]


class FakeVertex:
    """The fake. ``start()`` it; ``url`` is its http root (Vertex's api_endpoint, the OAuth2
    token endpoint and Cloud Logging's api_endpoint at once)."""

    def __init__(
        self,
        *,
        project: str = PROJECT,
        project_number: str = PROJECT_NUMBER,
        location: str = LOCATION,
        gcs_url: str | None = None,
        steps: int = 6,
    ) -> None:
        self.project = project
        self.project_number = project_number
        self.location = location
        self.gcs_url = gcs_url.rstrip("/") if gcs_url else None
        self.steps = steps
        """Training steps a custom job logs while RUNNING (two per read)."""
        self.epochs = 2
        self.requests: list[Recorded] = []
        self.violations: list[str] = []
        """What the provider sent that the discovery document or a documented rule forbids."""
        self.custom_jobs: dict[str, FakeCustomJob] = {}
        self.tuning_jobs: dict[str, FakeTuningJob] = {}
        self.models: dict[str, dict[str, Any]] = {}
        """Model id -> the Model as GET answers it."""
        self.endpoints: dict[str, dict[str, Any]] = {}
        """Endpoint id -> the Endpoint as GET answers it."""
        self.operations: dict[str, _Operation] = {}
        self.log_entries: dict[str, list[dict[str, Any]]] = {}
        """Custom job id -> its Cloud Logging entries, oldest first."""
        self.contexts: dict[str, dict[str, Any]] = {}
        """Vertex ML Metadata context id (store ``default``) -> the Context as GET answers it."""
        self.time_series: dict[str, dict[str, Any]] = {}
        """TensorBoard run name (with the project number) -> {time series id ->
        ``{"resource": TensorboardTimeSeries, "points": [TimeSeriesDataPoint, ...]}``}."""
        self._series_ids = itertools.count(4_200_000_000_000_000_001)
        self.served: list[tuple[str, str, Any]] = []
        """(endpoint id, deployed model id, request body) of each prediction answered."""
        self.auto_advance = True
        """Each GET of a job (and each entries:list naming it) moves it one step on; False:
        only :meth:`advance` does."""
        self.operation_polls = 1
        """The poll at which an operation is done (1: the first GET answers done)."""
        self.require_auth = True
        self.log_payload = "text"
        """How a trainer line is logged: "text" (``textPayload``) or "json" (``jsonPayload``
        ``{"message": line}``); a reader must take both (see :meth:`_log`)."""
        self.tuning_models = SUPPORTED_TUNING_MODELS
        self.trained_answer: Callable[[GoldenExample], str] = lambda example: example.expected
        """The trained model's answer to a golden example, in a job's predictions."""
        self.baseline_answer: Callable[[GoldenExample], str] = lambda example: "I do not know."
        self.answer: Callable[[str, dict[str, Any]], str] = default_answer
        """A deployed model's reply to a chat request: (deployed model id, request) -> text."""
        self.outputs_for: Callable[[FakeCustomJob], dict[str, bytes]] = trainer_outputs
        self.fake_errors: list[str] = []
        """Exceptions the fake raised while answering (its own bugs), answered as 500."""
        self.tokens: set[str] = set()
        """Access tokens the token endpoint issued (the only bearer tokens taken, besides a
        service account's self-signed JWT)."""
        self.jwt_callers: list[str] = []
        """The service account of each call authorized by a self-signed JWT."""
        self._token_count = itertools.count(1)
        self._injected: list[_Injected] = []
        self._random = random.Random(0)
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._last_log_time = _now() - timedelta(seconds=1)
        self._http = httpx.Client(timeout=10)

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> Self:
        handler = type("Handler", (_Handler,), {"service": self})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self._http.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    @property
    def parent(self) -> str:
        """``projects/{project ID}/locations/{location}``: what the provider sends."""
        return f"projects/{self.project}/locations/{self.location}"

    @property
    def parent_number(self) -> str:
        """``projects/{project number}/locations/{location}``: what names in answers use."""
        return f"projects/{self.project_number}/locations/{self.location}"

    def write_adc_file(self, path: Path, *, kind: str = "service_account") -> Path:
        """:func:`write_adc_file` with this fake's token endpoint and project."""
        return write_adc_file(path, token_uri=self.token_uri, kind=kind, project=self.project)

    # --- control -----------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        path_regex: str,
        http_status: int,
        grpc_status: str,
        message: str,
        *,
        times: int = 1,
        after: bool = False,
    ) -> None:
        """Answer the next ``times`` requests of ``method`` whose path (without query)
        matches ``path_regex`` (``re.search``) with ``http_status`` and Google's error body
        naming ``grpc_status`` (e.g. 429 "RESOURCE_EXHAUSTED"). With ``after`` the request is
        carried out first (a create that succeeded, its answer lost: a 504 from a proxy).
        The aiplatform clients do not retry by default over REST, except where a method's
        default retry says so."""
        self._injected.append(
            _Injected(
                method.upper(),
                re.compile(path_regex),
                http_status,
                grpc_status,
                message,
                times,
                after,
            )
        )

    def advance(self, job_id: str, to: str | None = None) -> str:
        """Move a custom or tuning job one step on its way (PENDING -> RUNNING -> ... ->
        SUCCEEDED), or on until state ``to``. A ``to`` off that way (QUEUED, PAUSED, EXPIRED,
        UPDATING, PARTIALLY_SUCCEEDED, CANCELLING, CANCELLED, FAILED, UNSPECIFIED) is set at
        once (FAILED with a generic error, CANCELLED with code 1). Returns the state."""
        with self._lock:
            job = self.custom_jobs.get(job_id) or self.tuning_jobs.get(job_id)
            if job is None:
                raise KeyError(job_id)
            if to is not None and to not in JOB_STATES:
                raise ValueError(f"{to!r} is not a JobState")
            if to is not None and job.state == to:
                return job.state
            on_the_way = {"JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED"}
            if to is not None and to not in on_the_way:
                if to == "JOB_STATE_FAILED":
                    self._fail(job, 13, "Internal error occurred. (set by the test)")
                elif to == "JOB_STATE_CANCELLED":
                    self._cancelled(job)
                else:
                    self._set_state(job, to)
                return job.state
            for _ in range(self.steps + 8):  # more than a whole life takes
                self._advance(job)
                if to is None or job.state == to or job.state in TERMINAL:
                    break
            return job.state

    def fail_job(self, job_id: str, code: int | str, message: str) -> None:
        """Fail a job when next it would advance, with ``error`` ``{"code", "message"}``
        (``code`` a google.rpc.Code number or name)."""
        number = GRPC_CODES[code] if isinstance(code, str) else int(code)
        with self._lock:
            job = self.custom_jobs.get(job_id) or self.tuning_jobs.get(job_id)
            if job is None:
                raise KeyError(job_id)
            job.fail_with = (number, message)

    def log_lines(self, job_id: str) -> list[str]:
        """The text of a custom job's log entries so far."""
        return [
            e.get("textPayload") or e.get("jsonPayload", {}).get("message", "")
            for e in self.log_entries.get(job_id, [])
        ]

    def violations_of(self, path_part: str) -> list[str]:
        return [v for v in self.violations if path_part in v]

    # --- HTTP ------------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Answer:
        url = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        path = unquote(url.path)
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
        with self._lock:
            self.requests.append(Recorded(method, path, query, dict(headers), body))
            for injected in self._injected:
                if injected.times > 0 and injected.method == method and injected.path.search(path):
                    injected.times -= 1
                    if injected.after:
                        self._route(method, path, query, body, raw)
                    return (
                        injected.http_status,
                        {},
                        error_body(injected.http_status, injected.status, injected.message),
                    )
            try:
                if path == "/token" and method == "POST":
                    return self._token(raw)
                self._authenticate(headers)
                if path == "/v2/entries:list" and method == "POST":
                    return 200, {}, self._entries_list(body)
                return self._route(method, path, query, body, raw)
            except GoogleError as error:
                return error.http_status, {}, error.body()
            except Exception as error:  # a bug of the fake: answered, and kept for the test
                self.fake_errors.append(f"{method} {path}: {type(error).__name__}: {error}")
                return 500, {}, error_body(500, "INTERNAL", f"fake error: {error}")

    def _token(self, raw: bytes) -> Answer:
        """Google's OAuth2 token endpoint. The refresh grant (RFC 6749 section 6) of an
        authorized user, and the JWT-bearer grant (RFC 7523,
        ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>``) of a
        service account ("Using OAuth 2.0 for Server to Server Applications",
        https://developers.google.com/identity/protocols/oauth2/service-account#httprest):
        ``{"access_token", "expires_in", "token_type": "Bearer"}``; a bad grant is ``400
        {"error": "invalid_grant"}``. The JWT's signature is not checked; its ``aud`` must be
        Google's token endpoint (google-auth always writes https://oauth2.googleapis.com/token
        there, whatever the file's token_uri) or the fake's."""
        form = {k: v[-1] for k, v in parse_qs(raw.decode()).items()}
        grant = form.get("grant_type")
        if grant == "refresh_token":
            if form.get("refresh_token") != REFRESH_TOKEN or form.get("client_id") != CLIENT_ID:
                return 400, {}, {"error": "invalid_grant", "error_description": "Bad Request"}
        elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            claims = _jwt_claims(form.get("assertion", ""))
            if claims is None or claims.get("aud") not in (GOOGLE_TOKEN_URI, self.token_uri):
                return 400, {}, {"error": "invalid_grant", "error_description": "Invalid JWT."}
        else:
            return 400, {}, {"error": "unsupported_grant_type"}
        token = f"ya29.fake-{next(self._token_count)}"
        self.tokens.add(token)
        return 200, {}, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}

    def _authenticate(self, headers: dict[str, str]) -> None:
        """Google's answer to a call without valid credentials: 401 UNAUTHENTICATED "Request
        had invalid authentication credentials. Expected OAuth 2 access token, login cookie or
        other valid authentication credential. See
        https://developers.google.com/identity/sign-in/web/devconsole-project." (the wording
        every Google API answers, e.g. googleapis/google-cloud-python issues)."""
        if not self.require_auth:
            return
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token in self.tokens:
            return
        claims = _jwt_claims(token) if scheme.lower() == "bearer" else None
        if (
            claims is not None
            and str(claims.get("iss", "")).endswith(".iam.gserviceaccount.com")
            and float(claims.get("exp", 0)) > _now().timestamp()
        ):
            # A service account's self-signed JWT: the aiplatform clients give their
            # credentials always_use_jwt_access, so a service account key signs its own
            # token and the token endpoint is never asked ("Addendum: Service account
            # authorization without OAuth", https://developers.google.com/identity/protocols/oauth2/service-account#jwt-auth).
            # The signature is not checked.
            self.jwt_callers.append(str(claims["iss"]))
            return
        message = (
            "Request is missing required authentication credential. Expected OAuth 2 access "
            "token, login cookie or other valid authentication credential. See "
            "https://developers.google.com/identity/sign-in/web/devconsole-project."
            if not token
            else "Request had invalid authentication credentials. Expected OAuth 2 access "
            "token, login cookie or other valid authentication credential. See "
            "https://developers.google.com/identity/sign-in/web/devconsole-project."
        )
        raise GoogleError("UNAUTHENTICATED", message)

    def _violation(self, method: str, path: str, what: str) -> None:
        self.violations.append(f"{method} {path}: {what}")

    def _route(
        self, method: str, path: str, query: dict[str, str], body: Any, raw: bytes
    ) -> Answer:
        operation = re.fullmatch(r"/(v1|ui)/(.+)/operations/([^/:]+)", path)
        if operation and method == "GET":
            return 200, {}, self._get_operation(operation.group(2), operation.group(3))
        found = re.fullmatch(r"/v1/projects/([^/]+)/locations/([^/]+)/(.+)", path)
        if not found:
            return self._no_route(path)
        project, location, rest = found.groups()
        if project not in (self.project, self.project_number):
            raise GoogleError(
                "PERMISSION_DENIED",
                f"Permission denied on resource project {project}.",
            )
        if location != self.location:
            # The fake serves one region; Vertex's regional endpoints refuse others (the
            # fake's wording).
            self._violation(method, path, f"location {location} is not the fake's {self.location}")
            raise GoogleError(
                "INVALID_ARGUMENT",
                f"Request location {location} does not match the endpoint's region {self.location}.",
            )
        if "$alt" in query and not query["$alt"].startswith("json"):
            self._violation(method, path, f"$alt={query['$alt']}")
        ctx = _Request(method, path, query, body, raw)
        for pattern, handler in self._routes():
            matched = re.fullmatch(pattern[1], rest)
            if matched and pattern[0] == method:
                return 200, *handler(ctx, *matched.groups())
        return self._no_route(path)

    def _routes(self) -> list[tuple[tuple[str, str], Callable[..., tuple[dict[str, str], Any]]]]:
        return [
            (("POST", r"customJobs"), self._create_custom_job),
            (("GET", r"customJobs"), self._list_custom_jobs),
            (("GET", r"customJobs/([^/:]+)"), self._get_custom_job),
            (("POST", r"customJobs/([^/:]+):cancel"), self._cancel_custom_job),
            (("DELETE", r"customJobs/([^/:]+)"), self._delete_custom_job),
            (("POST", r"tuningJobs"), self._create_tuning_job),
            (("GET", r"tuningJobs"), self._list_tuning_jobs),
            (("GET", r"tuningJobs/([^/:]+)"), self._get_tuning_job),
            (("POST", r"tuningJobs/([^/:]+):cancel"), self._cancel_tuning_job),
            (("GET", r"metadataStores/([^/:]+)/contexts"), self._list_contexts),
            (("GET", r"metadataStores/([^/:]+)/contexts/([^/:]+)"), self._get_context),
            (
                ("GET", r"tensorboards/([^/:]+)/experiments/([^/:]+)/runs/([^/:]+)/timeSeries"),
                self._list_time_series,
            ),
            (
                (
                    "GET",
                    r"tensorboards/([^/:]+)/experiments/([^/:]+)/runs/([^/:]+)/timeSeries/([^/:]+):read",
                ),
                self._read_time_series,
            ),
            (("POST", r"models:upload"), self._upload_model),
            (("GET", r"models/([^/:@]+)(?:@([^/:]+))?"), self._get_model),
            (("DELETE", r"models/([^/:@]+)"), self._delete_model),
            (("POST", r"endpoints"), self._create_endpoint),
            (("GET", r"endpoints"), self._list_endpoints),
            (("GET", r"endpoints/([^/:]+)"), self._get_endpoint),
            (("DELETE", r"endpoints/([^/:]+)"), self._delete_endpoint),
            (("PATCH", r"endpoints/([^/:]+)"), self._patch_endpoint),
            (("POST", r"endpoints/([^/:]+):deployModel"), self._deploy_model),
            (("POST", r"endpoints/([^/:]+):undeployModel"), self._undeploy_model),
            (("POST", r"endpoints/([^/:]+):rawPredict"), self._raw_predict),
            (("POST", r"endpoints/([^/:]+)/invoke/(.+)"), self._invoke_endpoint),
            (("POST", r"endpoints/([^/:]+):generateContent"), self._generate_content),
            (
                ("POST", r"endpoints/([^/:]+)/deployedModels/([^/:]+)/invoke/(.+)"),
                self._invoke,
            ),
        ]

    def _no_route(self, path: str) -> Answer:
        """Google's front end answers a URL no method has with an HTML 404 page: "The
        requested URL <code>/v1/projects/.../cachedContents</code> was not found on this
        server. That's all we know." (quoted in BerriAI/litellm#15496)."""
        page = (
            "<!DOCTYPE html>\n<html lang=en>\n  <title>Error 404 (Not Found)!!1</title>\n"
            f"  <p><b>404.</b> <ins>That's an error.</ins>\n  <p>The requested URL <code>{path}"
            "</code> was not found on this server.  <ins>That's all we know.</ins>\n"
        )
        return 404, {"Content-Type": "text/html; charset=UTF-8"}, page.encode()

    # --- request checks ----------------------------------------------------------------------

    def _checked(self, ctx: _Request, type_name: str, root: str) -> dict[str, Any]:
        """Decode ``ctx.raw`` as ``type_name`` and walk it against the discovery document.
        Unknown fields and wrong types are refused as Google's JSON front end refuses them
        ("Invalid JSON payload received. Unknown name \\"x\\" at 'custom_job': Cannot find
        field.", the wording of Google's REST front end for any API); missing "Required."
        fields are refused as Vertex refuses them (:func:`required_missing`); output-only
        fields sent are recorded and otherwise ignored, as AIP-203 says a service does
        ("Output only ... must be ignored" on input, https://google.aip.dev/203#output-only)."""
        if not isinstance(ctx.body, dict):
            self._violation(ctx.method, ctx.path, "body is not a JSON object")
            raise GoogleError("INVALID_ARGUMENT", "Invalid JSON payload received.")
        decoded, problems = discovery_contract.request_violations(type_name, ctx.raw)
        for problem in problems:
            self._violation(ctx.method, ctx.path, problem)
        if decoded is None:
            unknown = re.search(r'has no field named "([^"]+)"', problems[0])
            if unknown:
                raise GoogleError(
                    "INVALID_ARGUMENT",
                    f'Invalid JSON payload received. Unknown name "{unknown.group(1)}" at '
                    f"'{root}': Cannot find field.",
                )
            raise GoogleError("INVALID_ARGUMENT", f"Invalid JSON payload received. {problems[0]}")
        missing = [
            _snake(p.split(":", 1)[0], root) for p in problems if "required property missing" in p
        ]
        if missing:
            raise required_missing(missing)
        wrong = [p for p in problems if "output-only" not in p and "required property" not in p]
        if wrong:
            raise GoogleError("INVALID_ARGUMENT", f"Invalid JSON payload received. {wrong[0]}")
        return decoded

    def _check_labels(self, ctx: _Request, labels: Any) -> None:
        """Google's label rules (``LABEL_KEY``); Vertex refuses a resource whose labels break
        them with INVALID_ARGUMENT (the message is the fake's)."""
        if not labels:
            return
        problems = label_violations(labels)
        for problem in problems:
            self._violation(ctx.method, ctx.path, problem)
        if problems:
            raise GoogleError("INVALID_ARGUMENT", f"Invalid labels: {problems[0]}")

    def _new_id(self) -> str:
        return str(self._random.randrange(10**18, 9 * 10**18))

    # --- operations ----------------------------------------------------------------------------

    def _start_operation(
        self,
        resource: str,
        metadata_type: str,
        finish: Callable[[], dict[str, Any]],
        *,
        metadata_extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A google.longrunning.Operation on ``resource`` (a name with the project number):
        ``{"name": "<resource>/operations/<id>", "metadata": {"@type", "genericMetadata"},
        "done": false}`` (Operation in the discovery document, GoogleLongrunningOperation)."""
        op_id = self._new_id()
        now = _stamp()
        metadata = {
            "@type": API + metadata_type,
            "genericMetadata": {"createTime": now, "updateTime": now},
            **(metadata_extra or {}),
        }
        operation = _Operation(
            name=f"{resource}/operations/{op_id}",
            metadata=metadata,
            finish=finish,
            polls=self.operation_polls,
        )
        self.operations[op_id] = operation
        return operation.resource()

    def _get_operation(self, resource: str, op_id: str) -> dict[str, Any]:
        operation = self.operations.get(op_id)
        if operation is None or not self._same_name(
            operation.name, f"{resource}/operations/{op_id}"
        ):
            raise not_found("Operation", f"{resource}/operations/{op_id}")
        if not operation.done:
            operation.polls -= 1
            if operation.polls <= 0:
                operation.done = True
                operation.metadata["genericMetadata"]["updateTime"] = _stamp()
                try:
                    operation.response = operation.finish()
                except GoogleError as error:
                    operation.error = {
                        "code": GRPC_CODES.get(error.status, 2),
                        "message": error.message,
                    }
        return operation.resource()

    def _same_name(self, a: str, b: str) -> bool:
        return self._normal(a) == self._normal(b)

    def _normal(self, name: str) -> str:
        return re.sub(r"^projects/[^/]+/", f"projects/{self.project_number}/", name)

    # --- customJobs -----------------------------------------------------------------------------

    def _create_custom_job(self, ctx: _Request) -> tuple[dict[str, str], Any]:
        """projects.locations.customJobs.create: the body is a CustomJob; the answer the
        CustomJob with its output-only fields (name with a numeric id, state
        JOB_STATE_PENDING, createTime, updateTime)."""
        body = self._checked(ctx, "CustomJob", "custom_job")
        self._check_labels(ctx, body.get("labels"))
        job_id = self._new_id()
        now = _stamp()
        resource = {
            key: value
            for key, value in body.items()
            if key
            not in ("name", "state", "createTime", "updateTime", "startTime", "endTime", "error")
        }
        resource.update(
            name=f"{self.parent_number}/customJobs/{job_id}",
            state="JOB_STATE_PENDING",
            createTime=now,
            updateTime=now,
        )
        self._check_custom_job(ctx, resource)
        job = FakeCustomJob(job_id, resource)
        self.custom_jobs[job_id] = job
        self.log_entries[job_id] = []
        return {}, resource

    def _check_custom_job(self, ctx: _Request, job: dict[str, Any]) -> None:
        spec = job.get("jobSpec") or {}
        for index, pool in enumerate(spec.get("workerPoolSpecs") or []):
            machine = pool.get("machineSpec") or {}
            if not machine.get("machineType"):
                self._violation(
                    ctx.method,
                    ctx.path,
                    f"$.jobSpec.workerPoolSpecs[{index}].machineSpec.machineType missing",
                )
                raise required_missing(
                    [f"custom_job.job_spec.worker_pool_specs[{index}].machine_spec.machine_type"]
                )
            if machine.get("acceleratorType") and not machine.get("acceleratorCount"):
                self._violation(
                    ctx.method,
                    ctx.path,
                    f"workerPoolSpecs[{index}]: acceleratorType without acceleratorCount",
                )
            if "containerSpec" not in pool and "pythonPackageSpec" not in pool:
                self._violation(
                    ctx.method,
                    ctx.path,
                    f"workerPoolSpecs[{index}]: neither containerSpec nor pythonPackageSpec",
                )
                raise GoogleError(
                    "INVALID_ARGUMENT", "Either container_spec or python_package_spec must be set."
                )
        output = (spec.get("baseOutputDirectory") or {}).get("outputUriPrefix")
        if output is not None and not str(output).startswith("gs://"):
            self._violation(
                ctx.method, ctx.path, f"baseOutputDirectory.outputUriPrefix {output!r} is not gs://"
            )
            raise GoogleError("INVALID_ARGUMENT", f"Invalid Cloud Storage URI: {output}")

    def _custom_job(self, job_id: str) -> FakeCustomJob:
        job = self.custom_jobs.get(job_id)
        if job is None:
            raise not_found("CustomJob", f"{self.parent_number}/customJobs/{job_id}")
        return job

    def _get_custom_job(self, ctx: _Request, job_id: str) -> tuple[dict[str, str], Any]:
        job = self._custom_job(job_id)
        if self.auto_advance:
            self._advance(job)
        return {}, job.resource

    def _list_custom_jobs(self, ctx: _Request) -> tuple[dict[str, str], Any]:
        """customJobs.list: ``filter`` (the subset :func:`parse_list_filter` reads),
        ``pageSize``, ``pageToken``; answers ``{"customJobs": [...], "nextPageToken"}``."""
        jobs = [j.resource for j in self.custom_jobs.values()]
        return {}, self._page(ctx, jobs, "customJobs")

    def _page(self, ctx: _Request, items: list[dict[str, Any]], key: str) -> dict[str, Any]:
        try:
            terms = parse_list_filter(ctx.query.get("filter", ""))
        except ValueError as error:
            self._violation(ctx.method, ctx.path, f"filter: {error}")
            raise GoogleError("INVALID_ARGUMENT", f"Invalid filter: {error}") from None
        chosen = [item for item in items if all(term(item) for term in terms)]
        return self._slice(ctx, chosen, key)

    def _slice(
        self, ctx: _Request, chosen: list[dict[str, Any]], key: str, *, default_size: int = 100
    ) -> dict[str, Any]:
        """One page of ``chosen`` (``pageSize``, ``pageToken``) under ``key``."""
        size = int(ctx.query.get("pageSize") or 0) or default_size
        token = ctx.query.get("pageToken") or ""
        start = 0
        if token:
            try:
                start = int(base64.urlsafe_b64decode(token.encode()).decode())
            except ValueError:
                raise GoogleError("INVALID_ARGUMENT", "Invalid page token.") from None
        answer: dict[str, Any] = {key: chosen[start : start + size]}
        if start + size < len(chosen):
            answer["nextPageToken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
        return answer

    def _cancel_custom_job(self, ctx: _Request, job_id: str) -> tuple[dict[str, str], Any]:
        """customJobs.cancel: "Starts asynchronous cancellation ... On successful
        cancellation ... it becomes a job with a CustomJob.error value with a
        google.rpc.Status.code of 1, corresponding to `Code.CANCELLED`, and CustomJob.state is
        set to `CANCELLED`." (discovery document). The fake goes CANCELLING, then CANCELLED on
        the next read. A job already done cannot be: FAILED_PRECONDITION (the fake's
        wording)."""
        job = self._custom_job(job_id)
        return {}, self._cancel(job, "CustomJob")

    def _cancel(self, job: FakeCustomJob | FakeTuningJob, kind: str) -> dict[str, Any]:
        if job.state in TERMINAL or job.state == "JOB_STATE_CANCELLING":
            raise GoogleError(
                "FAILED_PRECONDITION",
                f"Cannot cancel {kind} `{job.resource['name']}` in state {job.state}.",
            )
        self._set_state(job, "JOB_STATE_CANCELLING")
        return {}

    def _delete_custom_job(self, ctx: _Request, job_id: str) -> tuple[dict[str, str], Any]:
        """customJobs.delete, a long-running operation (DeleteOperationMetadata,
        google.protobuf.Empty); a running job cannot be deleted (FAILED_PRECONDITION, the
        fake's wording)."""
        job = self._custom_job(job_id)
        if job.state not in TERMINAL:
            raise GoogleError(
                "FAILED_PRECONDITION",
                f"CustomJob `{job.resource['name']}` is in state {job.state}; cancel it before deleting it.",
            )

        def finish() -> dict[str, Any]:
            self.custom_jobs.pop(job_id, None)
            return {"@type": EMPTY}

        return {}, self._start_operation(job.resource["name"], "DeleteOperationMetadata", finish)

    # --- a job's life ----------------------------------------------------------------------------

    def _set_state(self, job: FakeCustomJob | FakeTuningJob, state: str) -> None:
        now = _stamp()
        job.resource["state"] = state
        job.resource["updateTime"] = now
        if state == "JOB_STATE_RUNNING" and "startTime" not in job.resource:
            job.resource["startTime"] = now
        if state in TERMINAL:
            job.resource["endTime"] = now

    def _fail(self, job: FakeCustomJob | FakeTuningJob, code: int, message: str) -> None:
        job.resource["error"] = {"code": code, "message": message}
        self._set_state(job, "JOB_STATE_FAILED")

    def _cancelled(self, job: FakeCustomJob | FakeTuningJob) -> None:
        job.resource["error"] = {"code": 1, "message": "CANCELED"}
        self._set_state(job, "JOB_STATE_CANCELLED")

    def _advance(self, job: FakeCustomJob | FakeTuningJob) -> None:
        if isinstance(job, FakeTuningJob):
            self._advance_tuning(job)
            return
        state = job.state
        if state in TERMINAL:
            return
        if state == "JOB_STATE_CANCELLING":
            self._cancelled(job)
            return
        if job.fail_with is not None:
            code, message = job.fail_with
            self._log(job, f"Traceback (most recent call last): ... {message}", severity="ERROR")
            self._fail(job, code, message)
            return
        if state in ("JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_UNSPECIFIED"):
            self._set_state(job, "JOB_STATE_RUNNING")
            self._log(job, "tunefleet trainer: starting")
            missing = self._missing_training_data(job)
            if missing is not None:
                self._log(
                    job, f"FileNotFoundError: training data not found: {missing}", severity="ERROR"
                )
                self._fail(job, 3, REPLICA_FAILED.format(task="workerpool0-0", status=1))
            return
        if state in ("JOB_STATE_PAUSED", "JOB_STATE_UPDATING"):
            self._set_state(job, "JOB_STATE_RUNNING")
            return
        if state == "JOB_STATE_RUNNING":
            if job.steps_logged < self.steps:
                self._train(job)
                return
            self._complete(job)
            self._set_state(job, "JOB_STATE_SUCCEEDED")

    def _train(self, job: FakeCustomJob) -> None:
        """Two training steps' lines (the trainer's ``format_metric_line`` /
        ``format_checkpoint_line``), loss 2.5 / (1 + 0.4 step)."""
        per_epoch = max(1, self.steps // self.epochs)
        checkpoints = job.arg("--checkpoint-dir") or "/gcs/checkpoints"
        for step in range(job.steps_logged + 1, min(job.steps_logged + 2, self.steps) + 1):
            self._log(
                job,
                format_metric_line(
                    step=step,
                    total_steps=self.steps,
                    epoch=round(step / per_epoch, 4),
                    train_loss=loss_at(step),
                    learning_rate=1e-4,
                ),
            )
            if step % per_epoch == 0:
                self._log(
                    job,
                    format_checkpoint_line(
                        step=step, path=f"{checkpoints.rstrip('/')}/checkpoint-{step}"
                    ),
                )
            job.steps_logged = step

    def _log(self, job: FakeCustomJob, line: str, *, severity: str = "INFO") -> None:
        """One Cloud Logging entry of the job's container. Vertex writes a custom job's
        stdout/stderr to Cloud Logging under the monitored resource ``ml_job`` (labels
        ``project_id``, ``job_id``, ``task_name``: https://cloud.google.com/logging/docs/api/v2/resource-list),
        one log per replica (``projects/P/logs/workerpool0-0``); gcloud's ``ai custom-jobs
        stream-logs`` reads it with the filter ``resource.type="ml_job" AND
        resource.labels.job_id="ID"`` and takes the text from ``jsonPayload.message`` when
        there is a jsonPayload, else from ``textPayload`` (googlecloudsdk/command_lib/ai/
        log_util.py, ``_EntryToDict``). A trainer line is a prefix and JSON
        (``tunefleet.metric {...}``), not a JSON object, so an agent that parses JSON lines
        leaves it text: ``textPayload`` by default; ``log_payload = "json"`` writes
        ``jsonPayload {"message", "levelname"}`` instead, as older AI Platform jobs did."""
        moment = max(_now(), self._last_log_time + timedelta(microseconds=1))
        self._last_log_time = moment
        entry: dict[str, Any] = {
            "logName": f"projects/{self.project}/logs/workerpool0-0",
            "resource": {
                "type": "ml_job",
                "labels": {
                    "project_id": self.project,
                    "job_id": job.id,
                    "task_name": "workerpool0-0",
                },
            },
            "timestamp": _stamp(moment),
            "receiveTimestamp": _stamp(moment + timedelta(milliseconds=5)),
            "severity": severity,
            "insertId": f"{self._random.getrandbits(48):012x}",
            "labels": {
                "compute.googleapis.com/resource_name": f"cmle-training-{job.id[-8:]}",
                "compute.googleapis.com/zone": f"{self.location}-a",
                "ml.googleapis.com/job_id/log_area": "root",
            },
        }
        if self.log_payload == "json":
            entry["jsonPayload"] = {"message": line, "levelname": severity}
        else:
            entry["textPayload"] = line
        self.log_entries.setdefault(job.id, []).append(entry)

    def _missing_training_data(self, job: FakeCustomJob) -> str | None:
        """The ``--train`` file (a Cloud Storage FUSE path ``/gcs/BUCKET/PATH`` or
        ``gs://...``; a folder holding a .jsonl counts), or None when it is there (or when
        there is no GCS to look in)."""
        train = job.arg("--train")
        if train is None or self.gcs_url is None:
            return None
        location = gcs_location(train)
        if location is None:
            return train
        bucket, name = location
        if self._gcs_get(bucket, name) is not None:
            return None
        prefix = name.rstrip("/") + "/"
        if any(o.endswith(".jsonl") for o in self._gcs_list(bucket, prefix)):
            return None
        return train

    def _complete(self, job: FakeCustomJob) -> None:
        """At SUCCEEDED: the trainer's outputs go to ``--output-dir`` when the args name one,
        else to AIP_MODEL_DIR, which Vertex sets to ``<baseOutputDirectory>/model/`` ("For
        CustomJob: AIP_MODEL_DIR = <base_output_directory>/model/", CustomJobSpec.
        base_output_directory in the API reference, e.g.
        https://cloud.google.com/java/docs/reference/google-cloud-aiplatform/latest/com.google.cloud.aiplatform.v1.CustomJobSpec);
        with ``--golden-set`` and ``--predictions-dir``, predictions.jsonl and
        baseline_predictions.jsonl go to the latter."""
        self._log(job, "tunefleet trainer: done")
        if self.gcs_url is None:
            return
        out = self.model_dir(job)
        if out is not None:
            self._write_files(out, self.outputs_for(job))
        predictions = job.arg("--predictions-dir")
        golden = job.arg("--golden-set")
        if predictions and golden:
            folder = gcs_location(predictions)
            if folder is not None:
                self._write_files(folder, self._predictions(job, golden))

    def model_dir(self, job: FakeCustomJob) -> tuple[str, str] | None:
        """(bucket, prefix) where the job's trainer writes its outputs."""
        output = job.arg("--output-dir")
        if output and "AIP_MODEL_DIR" not in output:
            return gcs_location(output)
        base = (job.resource.get("jobSpec", {}).get("baseOutputDirectory") or {}).get(
            "outputUriPrefix"
        )
        if not base:
            return None
        return gcs_location(str(base).rstrip("/") + "/model/")

    def _predictions(self, job: FakeCustomJob, golden: str) -> dict[str, bytes]:
        return prediction_files(
            self._golden(job, golden), self.trained_answer, self.baseline_answer
        )

    def _golden(self, job: FakeCustomJob, golden: str) -> list[GoldenExample]:
        location = gcs_location(golden)
        if location is None:
            return []
        data = self._gcs_get(*location)
        if data is None:
            names = [
                o
                for o in self._gcs_list(location[0], location[1].rstrip("/") + "/")
                if o.endswith(".jsonl")
            ]
            data = self._gcs_get(location[0], names[0]) if names else b""
        config = json.loads(job.env.get("TUNEFLEET_TRAINER_CONFIG", "{}") or "{}")
        lines = [line for line in (data or b"").splitlines() if line.strip()]
        limit = (config.get("evaluation") or {}).get("max_examples") or len(lines)
        return [
            parse_golden_line(line, index=index, line=index + 1, source=golden)
            for index, line in enumerate(lines[:limit])
        ]

    # --- Cloud Storage (fake-gcs-server's JSON API) ---------------------------------------------

    def _gcs_get(self, bucket: str, name: str) -> bytes | None:
        assert self.gcs_url is not None
        response = self._http.get(
            f"{self.gcs_url}/storage/v1/b/{bucket}/o/{quote(name, safe='')}",
            params={"alt": "media"},
        )
        return response.content if response.status_code == 200 else None

    def _gcs_list(self, bucket: str, prefix: str) -> list[str]:
        assert self.gcs_url is not None
        response = self._http.get(
            f"{self.gcs_url}/storage/v1/b/{bucket}/o", params={"prefix": prefix}
        )
        if response.status_code != 200:
            return []
        return [str(item["name"]) for item in response.json().get("items", [])]

    def _gcs_put(self, bucket: str, name: str, data: bytes) -> None:
        assert self.gcs_url is not None
        response = self._http.post(
            f"{self.gcs_url}/upload/storage/v1/b/{bucket}/o",
            params={"uploadType": "media", "name": name},
            content=data,
        )
        response.raise_for_status()

    def _write_files(self, folder: tuple[str, str], files: dict[str, bytes]) -> None:
        bucket, prefix = folder
        prefix = prefix.strip("/")
        for name, data in files.items():
            self._gcs_put(bucket, f"{prefix}/{name}" if prefix else name, data)

    # --- Cloud Logging -----------------------------------------------------------------------------

    def _entries_list(self, body: Any) -> dict[str, Any]:
        """Cloud Logging ``entries.list`` (https://cloud.google.com/logging/docs/reference/v2/rest/v2/entries/list):
        body ``resourceNames``, ``filter``, ``orderBy`` ("timestamp asc" or "timestamp desc"),
        ``pageSize``, ``pageToken``; answers ``{"entries", "nextPageToken"}``. The filter
        subset read is :func:`parse_log_filter`; anything else is INVALID_ARGUMENT (Logging's
        refusal of a filter it cannot parse; the wording is the fake's)."""
        path = "/v2/entries:list"
        if not isinstance(body, dict):
            raise GoogleError("INVALID_ARGUMENT", "Invalid JSON payload received.")
        known = {"resourceNames", "filter", "orderBy", "pageSize", "pageToken", "projectIds"}
        for key in body:
            if key not in known:
                self._violation("POST", path, f"unknown property {key}")
                raise GoogleError(
                    "INVALID_ARGUMENT",
                    f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.',
                )
        names = body.get("resourceNames") or []
        if not names:
            self._violation("POST", path, "resourceNames missing")
            raise required_missing(["resource_names"])
        for name in names:
            if name not in (f"projects/{self.project}", f"projects/{self.project_number}"):
                raise GoogleError(
                    "PERMISSION_DENIED", f"The caller does not have permission to read {name}."
                )
        order = body.get("orderBy") or "timestamp asc"
        if order not in ("timestamp asc", "timestamp desc"):
            self._violation("POST", path, f"orderBy {order!r}")
            raise GoogleError("INVALID_ARGUMENT", f"Invalid orderBy: {order}")
        try:
            wanted = parse_log_filter(body.get("filter") or "")
        except ValueError as error:
            self._violation("POST", path, f"filter: {error}")
            raise GoogleError("INVALID_ARGUMENT", f"Unparseable filter: {error}") from None
        job_id = wanted.get("job_id")
        if self.auto_advance and job_id in self.custom_jobs:
            job = self.custom_jobs[job_id]
            if job.state == "JOB_STATE_RUNNING" and job.steps_logged < self.steps:
                self._train(job)
        entries = [e for entries in self.log_entries.values() for e in entries if wanted.match(e)]
        entries.sort(key=lambda e: e["timestamp"], reverse=order == "timestamp desc")
        size = int(body.get("pageSize") or 0) or 1000
        start = (
            int(body.get("pageToken") or 0) if str(body.get("pageToken") or "0").isdigit() else 0
        )
        answer: dict[str, Any] = {"entries": entries[start : start + size]}
        if start + size < len(entries):
            answer["nextPageToken"] = str(start + size)
        return answer

    # --- tuningJobs ----------------------------------------------------------------------------

    def _create_tuning_job(self, ctx: _Request) -> tuple[dict[str, str], Any]:
        """tuningJobs.create: "Creates a TuningJob. A created TuningJob right away will be
        attempted to be run." (discovery document). The base model must be one of
        ``tuning_models``; the dataset is read (and the job failed on a bad one) when it
        first moves on, as the service validates the dataset after accepting the job."""
        body = self._checked(ctx, "TuningJob", "tuning_job")
        self._check_labels(ctx, body.get("labels"))
        base = body.get("baseModel")
        if not base:
            self._violation(ctx.method, ctx.path, "$.baseModel missing (source_model oneof)")
            raise required_missing(["tuning_job.base_model"])
        if base not in self.tuning_models:
            # The fake's wording, after the service's refusal of an unsupported base model.
            raise GoogleError(
                "INVALID_ARGUMENT",
                f"Base model {base} is not supported for supervised tuning. Supported base models: "
                + ", ".join(self.tuning_models)
                + ".",
            )
        spec = body.get("supervisedTuningSpec")
        if not isinstance(spec, dict):
            self._violation(ctx.method, ctx.path, "$.supervisedTuningSpec missing")
            raise required_missing(["tuning_job.supervised_tuning_spec"])
        for key in ("trainingDatasetUri", "validationDatasetUri"):
            uri = spec.get(key)
            if uri is not None and not str(uri).startswith("gs://"):
                self._violation(
                    ctx.method, ctx.path, f"$.supervisedTuningSpec.{key} {uri!r} is not gs://"
                )
                raise GoogleError(
                    "INVALID_ARGUMENT", f"{key} must be a Cloud Storage URI (gs://): {uri}"
                )
        job_id = self._new_id()
        now = _stamp()
        resource = dict(body)
        resource.update(
            name=f"{self.parent_number}/tuningJobs/{job_id}",
            state="JOB_STATE_PENDING",
            createTime=now,
            updateTime=now,
        )
        job = FakeTuningJob(job_id, resource)
        self.tuning_jobs[job_id] = job
        return {}, resource

    def _tuning_job(self, job_id: str) -> FakeTuningJob:
        job = self.tuning_jobs.get(job_id)
        if job is None:
            raise not_found("TuningJob", f"{self.parent_number}/tuningJobs/{job_id}")
        return job

    def _get_tuning_job(self, ctx: _Request, job_id: str) -> tuple[dict[str, str], Any]:
        job = self._tuning_job(job_id)
        if self.auto_advance:
            self._advance(job)
        return {}, job.resource

    def _list_tuning_jobs(self, ctx: _Request) -> tuple[dict[str, str], Any]:
        return {}, self._page(ctx, [j.resource for j in self.tuning_jobs.values()], "tuningJobs")

    def _cancel_tuning_job(self, ctx: _Request, job_id: str) -> tuple[dict[str, str], Any]:
        return {}, self._cancel(self._tuning_job(job_id), "TuningJob")

    def _advance_tuning(self, job: FakeTuningJob) -> None:
        state = job.state
        if state in TERMINAL:
            return
        if state == "JOB_STATE_CANCELLING":
            self._cancelled(job)
            return
        if job.fail_with is not None:
            self._fail(job, *job.fail_with)
            return
        if state in ("JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_UNSPECIFIED"):
            problem = self._read_tuning_dataset(job)
            if problem is not None:
                self._fail(job, 3, problem)
                return
            self._set_state(job, "JOB_STATE_RUNNING")
            job.resource["tuningDataStats"] = {"supervisedTuningDataStats": self._data_stats(job)}
            self._start_tuning_metrics(job)
            self._publish_tuning_metrics(job, self._tuning_steps(job) // 2)
            return
        if state in ("JOB_STATE_RUNNING", "JOB_STATE_PAUSED", "JOB_STATE_UPDATING"):
            self._publish_tuning_metrics(job, self._tuning_steps(job))
            self._finish_tuning(job)

    def _read_tuning_dataset(self, job: FakeTuningJob) -> str | None:
        """Read the training (and validation) dataset from Cloud Storage and check each line
        (:func:`gemini_example_problem`); returns why the job fails, or None."""
        spec = job.resource.get("supervisedTuningSpec") or {}
        if self.gcs_url is None:
            return None
        for key in ("trainingDatasetUri", "validationDatasetUri"):
            uri = spec.get(key)
            if not uri:
                continue
            location = gcs_location(str(uri))
            data = self._gcs_get(*location) if location else None
            if data is None:
                return f"Failed to read dataset {uri}: the file does not exist or cannot be read."
            examples = []
            for number, line in enumerate(data.splitlines(), 1):
                if not line.strip():
                    continue
                problem = gemini_example_problem(line)
                if problem is not None:
                    return f"Dataset {uri} is invalid: line {number}: {problem}"
                examples.append(json.loads(line))
            if not examples:
                return f"Dataset {uri} is invalid: it holds no examples."
            if key == "trainingDatasetUri":
                job.examples = examples
        return None

    def _data_stats(self, job: FakeTuningJob) -> dict[str, Any]:
        """SupervisedTuningDataStats (int64s as strings): example count, characters and a
        token estimate (a character count over 4), steps from the epochs asked for."""
        characters = sum(
            len(part.get("text", ""))
            for example in job.examples
            for content in example.get("contents", [])
            for part in content.get("parts", [])
        )
        hyper = (job.resource.get("supervisedTuningSpec") or {}).get("hyperParameters") or {}
        epochs = int(hyper.get("epochCount") or 3)
        return {
            "tuningDatasetExampleCount": str(len(job.examples)),
            "totalTuningCharacterCount": str(characters),
            "totalBillableTokenCount": str(max(1, characters // 4) * epochs),
            "tuningStepCount": str(max(1, len(job.examples)) * epochs),
        }

    # --- a tuning job's metrics: Vertex ML Metadata and TensorBoard --------------------------

    def tuning_metrics(self, job_id: str) -> dict[str, list[tuple[int, float]]]:
        """What tuning job ``job_id`` has published so far: time series display name ->
        ``[(step, value), ...]``, oldest first."""
        with self._lock:
            job = self._tuning_job(job_id)
            series = self.time_series.get(self._tensorboard_run(job), {})
            return {
                entry["resource"]["displayName"]: [
                    (int(point["step"]), float(point["scalar"]["value"]))
                    for point in entry["points"]
                ]
                for entry in series.values()
            }

    def _tuning_steps(self, job: FakeTuningJob) -> int:
        stats = (job.resource.get("tuningDataStats") or {}).get("supervisedTuningDataStats") or {}
        return int(stats.get("tuningStepCount") or 0)

    def _tensorboard_run(self, job: FakeTuningJob) -> str:
        """The TensorBoard run of a tuning job's experiment: ``tensorboards/<the fake's>/
        experiments/tuning-experiment-<job id>/runs/run-<job id>`` (the IDs are the fake's)."""
        return (
            f"{self.parent_number}/tensorboards/{TENSORBOARD_ID}/experiments/"
            f"tuning-experiment-{job.id}/runs/run-{job.id}"
        )

    def _start_tuning_metrics(self, job: FakeTuningJob) -> None:
        """The job's experiment, laid out as the Vertex AI SDK lays out one (and Google's
        tuning notebook reads it back, GoogleCloudPlatform/generative-ai
        gemini/tuning/sft_gemini_summarization.ipynb): the TuningJob's ``experiment`` is a
        ``system.Experiment`` context whose metadata names its TensorBoard
        (``backing_tensorboard_resource``); its run is a ``system.ExperimentRun`` child
        context ``<experiment>-<run>`` (``_format_experiment_run_resource_id``); the
        TensorBoard experiment is named after the experiment and its run after the run
        (``ExperimentRun._assign_backing_tensorboard``), with one SCALAR time series per
        metric (``/eval_*`` only with a validation dataset)."""
        experiment, run = f"tuning-experiment-{job.id}", f"run-{job.id}"
        store = f"{self.parent_number}/metadataStores/default"
        experiment_name = f"{store}/contexts/{experiment}"
        now = _stamp()
        job.resource["experiment"] = experiment_name
        self.contexts[experiment] = {
            "name": experiment_name,
            "displayName": experiment,
            "schemaTitle": "system.Experiment",
            "schemaVersion": "0.0.1",
            "metadata": {
                BACKING_TENSORBOARD_KEY: f"{self.parent_number}/tensorboards/{TENSORBOARD_ID}"
            },
            "createTime": now,
            "updateTime": now,
        }
        self.contexts[f"{experiment}-{run}"] = {
            "name": f"{store}/contexts/{experiment}-{run}",
            "displayName": run,
            "schemaTitle": "system.ExperimentRun",
            "schemaVersion": "0.0.1",
            "parentContexts": [experiment_name],
            "metadata": {},
            "createTime": now,
            "updateTime": now,
        }
        spec = job.resource.get("supervisedTuningSpec") or {}
        names = TUNING_TRAIN_SERIES + (
            TUNING_EVAL_SERIES if spec.get("validationDatasetUri") else ()
        )
        run_name = self._tensorboard_run(job)
        series: dict[str, dict[str, Any]] = {}
        for display_name in names:
            series_id = str(next(self._series_ids))
            series[series_id] = {
                "resource": {
                    "name": f"{run_name}/timeSeries/{series_id}",
                    "displayName": display_name,
                    "valueType": "SCALAR",
                    "pluginName": "scalars",
                    "createTime": now,
                    "updateTime": now,
                },
                "points": [],
            }
        self.time_series[run_name] = series

    def _publish_tuning_metrics(self, job: FakeTuningJob, until: int) -> None:
        """Publish the job's steps after ``steps_published`` up to ``until`` (steps count
        from 1): training loss 2.5 / (1 + 0.05 step), falling; token accuracy rising; a
        validation point every sixth of the run and at its last step, a little worse."""
        series = self.time_series.get(self._tensorboard_run(job))
        if series is None:
            return
        by_name = {entry["resource"]["displayName"]: entry for entry in series.values()}
        total = self._tuning_steps(job)
        every = max(1, total // 6)
        for step in range(job.steps_published + 1, until + 1):
            now = _stamp()
            loss = 2.5 / (1 + 0.05 * step)
            accuracy = 0.9 - 0.5 / (1 + 0.05 * step)
            values = {
                "/train_total_loss": loss,
                "/train_fraction_of_correct_next_step_preds": accuracy,
                "/train_num_predictions": 512.0,
            }
            if step % every == 0 or step == total:
                values.update(
                    {
                        "/eval_total_loss": loss * 1.1 + 0.05,
                        "/eval_fraction_of_correct_next_step_preds": accuracy - 0.02,
                        "/eval_num_predictions": 128.0,
                    }
                )
            for display_name, value in values.items():
                entry = by_name.get(display_name)
                if entry is None:
                    continue
                entry["points"].append(
                    {"step": str(step), "wallTime": now, "scalar": {"value": value}}
                )
                entry["resource"]["updateTime"] = now
                entry["resource"]["metadata"] = {"maxStep": str(step), "maxWallTime": now}
        job.steps_published = max(job.steps_published, until)

    def _get_context(
        self, ctx: _Request, store: str, context_id: str
    ) -> tuple[dict[str, str], Any]:
        """metadataStores.contexts.get: the Context."""
        context = self.contexts.get(context_id) if store == "default" else None
        if context is None:
            raise not_found(
                "Context", f"{self.parent_number}/metadataStores/{store}/contexts/{context_id}"
            )
        return {}, context

    def _list_contexts(self, ctx: _Request, store: str) -> tuple[dict[str, str], Any]:
        """metadataStores.contexts.list: ``filter`` (the subset :func:`parse_context_filter`
        reads), ``pageSize`` ("Must be in range 1-100, inclusive. Defaults to 100."),
        ``pageToken``; answers ``{"contexts": [...], "nextPageToken"}``."""
        try:
            terms = parse_context_filter(ctx.query.get("filter", ""), self._normal)
        except ValueError as error:
            self._violation(ctx.method, ctx.path, f"filter: {error}")
            raise GoogleError("INVALID_ARGUMENT", f"Invalid filter: {error}") from None
        size = ctx.query.get("pageSize")
        if size is not None and not (size.isdigit() and 1 <= int(size) <= 100):
            self._violation(ctx.method, ctx.path, f"pageSize {size} is not in 1-100")
            raise GoogleError("INVALID_ARGUMENT", f"page_size must be in range 1-100: {size}")
        chosen = [
            context
            for context in (self.contexts.values() if store == "default" else ())
            if all(term(context) for term in terms)
        ]
        return {}, self._slice(ctx, chosen, "contexts")

    def _series_of(self, tensorboard: str, experiment: str, run: str) -> tuple[str, dict[str, Any]]:
        name = (
            f"{self.parent_number}/tensorboards/{tensorboard}/experiments/{experiment}/runs/{run}"
        )
        series = self.time_series.get(name)
        if series is None:
            raise not_found("TensorboardRun", name)
        return name, series

    def _list_time_series(
        self, ctx: _Request, tensorboard: str, experiment: str, run: str
    ) -> tuple[dict[str, str], Any]:
        """tensorboards.experiments.runs.timeSeries.list: ``pageSize`` ("If unspecified, at
        most 50 ... The maximum value is 1000"), ``pageToken``; a run that does not exist is
        NOT_FOUND."""
        _, series = self._series_of(tensorboard, experiment, run)
        if ctx.query.get("filter"):
            self._violation(ctx.method, ctx.path, "filter: the fake reads no time series filter")
        resources = [entry["resource"] for entry in series.values()]
        return {}, self._slice(ctx, resources, "tensorboardTimeSeries", default_size=50)

    def _read_time_series(
        self, ctx: _Request, tensorboard: str, experiment: str, run: str, series_id: str
    ) -> tuple[dict[str, str], Any]:
        """tensorboards.experiments.runs.timeSeries.read: ``{"timeSeriesData": {
        "tensorboardTimeSeriesId", "valueType", "values": [TimeSeriesDataPoint]}}``; all the
        points when there are no more than ``maxDataPoints`` (default 1000, at most
        :data:`MAX_DATA_POINTS`, -1 for all), else that many chosen at random, as the
        discovery document says."""
        name, series = self._series_of(tensorboard, experiment, run)
        entry = series.get(series_id)
        if entry is None:
            raise not_found("TensorboardTimeSeries", f"{name}/timeSeries/{series_id}")
        if ctx.query.get("filter"):
            self._violation(ctx.method, ctx.path, "filter: the fake reads no data point filter")
        points: list[dict[str, Any]] = entry["points"]
        limit = 1000
        asked = ctx.query.get("maxDataPoints")
        if asked is not None:
            number = int(asked) if re.fullmatch(r"-?\d+", asked) else 0
            if number == -1:
                limit = len(points)
            elif 1 <= number <= MAX_DATA_POINTS:
                limit = number
            else:
                # The fake's wording.
                self._violation(ctx.method, ctx.path, f"maxDataPoints {asked}")
                raise GoogleError(
                    "INVALID_ARGUMENT",
                    f"max_data_points must be positive and at most {MAX_DATA_POINTS}: {asked}",
                )
        if len(points) > limit:
            chosen = random.Random(len(points)).sample(points, limit)
            points = sorted(chosen, key=lambda point: int(point["step"]))
        return {}, {
            "timeSeriesData": {
                "tensorboardTimeSeriesId": series_id,
                "valueType": entry["resource"]["valueType"],
                "values": points,
            }
        }

    def _finish_tuning(self, job: FakeTuningJob) -> None:
        """SUCCEEDED with ``tunedModel`` ``{model: ".../models/M@1", endpoint:
        ".../endpoints/E"}`` (TunedModel in the discovery document); the model and the
        endpoint exist in the fake, and the endpoint answers generateContent."""
        model_id, endpoint_id, deployed_id = self._new_id(), self._new_id(), self._new_id()
        model_name = f"{self.parent_number}/models/{model_id}"
        endpoint_name = f"{self.parent_number}/endpoints/{endpoint_id}"
        now = _stamp()
        display = job.resource.get("tunedModelDisplayName") or f"tuned-{job.id}"
        self.models[model_id] = {
            "name": model_name,
            "displayName": display,
            "versionId": "1",
            "versionAliases": ["default"],
            "createTime": now,
            "updateTime": now,
            "labels": job.resource.get("labels", {}),
            "deployedModels": [{"endpoint": endpoint_name, "deployedModelId": deployed_id}],
        }
        self.endpoints[endpoint_id] = {
            "name": endpoint_name,
            "displayName": display,
            "deployedModels": [
                {"id": deployed_id, "model": model_name, "modelVersionId": "1", "createTime": now}
            ],
            "trafficSplit": {deployed_id: 100},
            "createTime": now,
            "updateTime": now,
            "etag": "AMEw9yN=",
        }
        job.resource["tunedModel"] = {"model": f"{model_name}@1", "endpoint": endpoint_name}
        self._set_state(job, "JOB_STATE_SUCCEEDED")

    def _generate_content(self, ctx: _Request, endpoint_id: str) -> tuple[dict[str, str], Any]:
        """endpoints.generateContent on a tuned model's endpoint: a GenerateContentResponse
        whose text echoes the last user turn (``[tuned <endpoint id>] <text>``)."""
        endpoint = self._endpoint(endpoint_id)
        body = self._checked(ctx, "GenerateContentRequest", "")
        last = ""
        for content in body.get("contents") or []:
            if content.get("role", "user") == "user":
                last = " ".join(p.get("text", "") for p in content.get("parts") or [])
        text = f"[tuned {endpoint_id}] {last}".strip()
        self.served.append(
            (
                endpoint_id,
                endpoint["deployedModels"][0]["id"] if endpoint.get("deployedModels") else "",
                body,
            )
        )
        prompt_tokens = max(1, len(last) // 4)
        return {}, {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [{"text": text}]},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": {
                "promptTokenCount": prompt_tokens,
                "candidatesTokenCount": max(1, len(text) // 4),
                "totalTokenCount": prompt_tokens + max(1, len(text) // 4),
            },
            "modelVersion": "1",
            "createTime": _stamp(),
            "responseId": f"resp-{self._random.getrandbits(32):08x}",
        }

    # --- models ------------------------------------------------------------------------------

    def _upload_model(self, ctx: _Request) -> tuple[dict[str, str], Any]:
        """models:upload, a long-running operation whose response is an UploadModelResponse
        ``{model, modelVersionId: "1"}``. ``containerSpec.imageUri`` is required (the
        discovery document: "Required. Immutable. URI of the Docker image"); ``predictRoute``
        and ``healthRoute`` must be paths (the fake's check)."""
        body = self._checked(ctx, "UploadModelRequest", "")
        model = body.get("model") or {}
        self._check_labels(ctx, model.get("labels"))
        container = model.get("containerSpec") or {}
        if container.get("predictRoute") and container.get("invokeRoutePrefix"):
            # ModelContainerSpec.invokeRoutePrefix: "Only one of `predict_route` or
            # `invoke_route_prefix` can be set" (the discovery document).
            self._violation(ctx.method, ctx.path, "predictRoute and invokeRoutePrefix both set")
            raise GoogleError(
                "INVALID_ARGUMENT",
                "Only one of predict_route or invoke_route_prefix can be set.",
            )
        for key in ("predictRoute", "healthRoute"):
            route = container.get(key)
            if route is not None and not str(route).startswith("/"):
                self._violation(
                    ctx.method, ctx.path, f"containerSpec.{key} {route!r} is not a path"
                )
                raise GoogleError(
                    "INVALID_ARGUMENT", f"containerSpec.{key} must start with '/': {route}"
                )
        model_id = body.get("modelId") or self._new_id()
        name = f"{self.parent_number}/models/{model_id}"

        def finish() -> dict[str, Any]:
            now = _stamp()
            self.models[model_id] = {
                **model,
                "name": name,
                "versionId": "1",
                "versionAliases": ["default"],
                "versionCreateTime": now,
                "versionUpdateTime": now,
                "createTime": now,
                "updateTime": now,
            }
            return {"@type": API + "UploadModelResponse", "model": name, "modelVersionId": "1"}

        return {}, self._start_operation(
            f"{self.parent_number}/models/{model_id}", "UploadModelOperationMetadata", finish
        )

    def _model(self, model_id: str) -> dict[str, Any]:
        model = self.models.get(model_id)
        if model is None:
            raise not_found("Model", f"{self.parent_number}/models/{model_id}")
        return model

    def _get_model(
        self, ctx: _Request, model_id: str, version: str | None
    ) -> tuple[dict[str, str], Any]:
        model = self._model(model_id)
        if version not in (None, "1", "default"):
            raise not_found("Model", f"{self.parent_number}/models/{model_id}@{version}")
        return {}, model

    def _delete_model(self, ctx: _Request, model_id: str) -> tuple[dict[str, str], Any]:
        """models.delete: "A model cannot be deleted if any Endpoint resource has a
        DeployedModel based on the model in its deployed_models field." (the method's
        description in the discovery document): FAILED_PRECONDITION (the fake's wording)."""
        model = self._model(model_id)
        deployed = [
            endpoint["name"]
            for endpoint in self.endpoints.values()
            for d in endpoint.get("deployedModels", [])
            if self._same_name(d.get("model", "").split("@")[0], model["name"])
        ]
        if deployed:
            raise GoogleError(
                "FAILED_PRECONDITION",
                f"Model `{model['name']}` is deployed to Endpoint(s): {', '.join(deployed)}. "
                "Undeploy it before deleting it.",
            )

        def finish() -> dict[str, Any]:
            self.models.pop(model_id, None)
            return {"@type": EMPTY}

        return {}, self._start_operation(model["name"], "DeleteOperationMetadata", finish)

    # --- endpoints -----------------------------------------------------------------------------

    def _create_endpoint(self, ctx: _Request) -> tuple[dict[str, str], Any]:
        """endpoints.create (POST with ``endpointId`` in the query, ``ENDPOINT_ID``), a
        long-running operation (CreateEndpointOperationMetadata, the Endpoint)."""
        body = self._checked(ctx, "Endpoint", "endpoint")
        self._check_labels(ctx, body.get("labels"))
        given = ctx.query.get("endpointId") or ctx.query.get("endpoint_id")
        endpoint_id = given or self._new_id()
        if given is not None and not ENDPOINT_ID.match(given):
            self._violation(ctx.method, ctx.path, f"endpointId {endpoint_id!r}")
            raise GoogleError("INVALID_ARGUMENT", f"Invalid endpoint_id: {endpoint_id}")
        if endpoint_id in self.endpoints:
            raise GoogleError(
                "ALREADY_EXISTS",
                f"Endpoint `{self.parent_number}/endpoints/{endpoint_id}` already exists.",
            )
        if not body.get("displayName"):
            self._violation(ctx.method, ctx.path, "$.displayName missing")
            raise required_missing(["endpoint.display_name"])
        psc = body.get("privateServiceConnectConfig")
        if psc and body.get("network"):
            self._violation(
                ctx.method, ctx.path, "network and privateServiceConnectConfig both set"
            )
            raise GoogleError(
                "INVALID_ARGUMENT",
                "network and private_service_connect_config are mutually exclusive.",
            )
        name = f"{self.parent_number}/endpoints/{endpoint_id}"

        def finish() -> dict[str, Any]:
            now = _stamp()
            endpoint = {
                **{
                    k: v
                    for k, v in body.items()
                    if k not in ("deployedModels", "createTime", "updateTime", "name")
                },
                "name": name,
                "createTime": now,
                "updateTime": now,
                "etag": "AMEw9yN=",
            }
            if body.get("dedicatedEndpointEnabled"):
                endpoint["dedicatedEndpointDns"] = (
                    f"{endpoint_id}.{self.location}-{self.project_number}.prediction.vertexai.goog"
                )
            self.endpoints[endpoint_id] = endpoint
            return {"@type": API + "Endpoint", **endpoint}

        return {}, self._start_operation(name, "CreateEndpointOperationMetadata", finish)

    def _endpoint(self, endpoint_id: str) -> dict[str, Any]:
        endpoint = self.endpoints.get(endpoint_id)
        if endpoint is None:
            raise not_found("Endpoint", f"{self.parent_number}/endpoints/{endpoint_id}")
        return endpoint

    def _get_endpoint(self, ctx: _Request, endpoint_id: str) -> tuple[dict[str, str], Any]:
        return {}, self._endpoint(endpoint_id)

    def _list_endpoints(self, ctx: _Request) -> tuple[dict[str, str], Any]:
        return {}, self._page(ctx, list(self.endpoints.values()), "endpoints")

    def _delete_endpoint(self, ctx: _Request, endpoint_id: str) -> tuple[dict[str, str], Any]:
        """endpoints.delete, a long-running operation; refused while models are deployed
        (FAILED_PRECONDITION; the fake's wording)."""
        endpoint = self._endpoint(endpoint_id)
        if endpoint.get("deployedModels"):
            ids = ", ".join(d["id"] for d in endpoint["deployedModels"])
            raise GoogleError(
                "FAILED_PRECONDITION",
                f"Endpoint `{endpoint['name']}` has deployed models ({ids}); undeploy them before deleting it.",
            )

        def finish() -> dict[str, Any]:
            self.endpoints.pop(endpoint_id, None)
            return {"@type": EMPTY}

        return {}, self._start_operation(endpoint["name"], "DeleteOperationMetadata", finish)

    def _check_traffic(
        self, ctx: _Request, split: dict[str, Any], ids: set[str], *, field_name: str
    ) -> dict[str, int]:
        """A traffic split: ids of deployed models, percentages summing to 100
        (DeployModelRequest.trafficSplit: "The traffic percentage values must add up to
        100."; Endpoint.trafficSplit the same)."""
        split = {str(k): int(v) for k, v in split.items()}
        unknown = sorted(set(split) - ids)
        total = sum(split.values())
        if unknown:
            self._violation(ctx.method, ctx.path, f"{field_name}: ids not deployed: {unknown}")
            raise GoogleError(
                "INVALID_ARGUMENT",
                f"{field_name} contains DeployedModel ids that are not deployed: {', '.join(unknown)}.",
            )
        if split and total != 100:
            self._violation(ctx.method, ctx.path, f"{field_name} sums to {total}, not 100")
            raise GoogleError(
                "INVALID_ARGUMENT", f"The sum of {field_name} must be 100, got {total}."
            )
        return split

    def _deploy_model(self, ctx: _Request, endpoint_id: str) -> tuple[dict[str, str], Any]:
        """endpoints.deployModel (LRO, DeployModelResponse ``{deployedModel}``): the model
        must exist, ``dedicatedResources`` must name a machine, ``minReplicaCount`` >= 1 and
        ``maxReplicaCount`` >= it, autoscaling metrics must be the documented ones
        (``AUTOSCALING_METRICS``); ``trafficSplit`` key "0" is the model being deployed
        (DeployModelRequest.trafficSplit in the discovery document)."""
        endpoint = self._endpoint(endpoint_id)
        body = self._checked(ctx, "DeployModelRequest", "")
        deployed = dict(body.get("deployedModel") or {})
        model_name = str(deployed.get("model", ""))
        model_id = (
            model_name.split("/models/")[-1].split("@")[0] if "/models/" in model_name else ""
        )
        if not model_id or model_id not in self.models:
            raise not_found("Model", model_name or "(none)")
        prefix = (self.models[model_id].get("containerSpec") or {}).get("invokeRoutePrefix")
        if prefix and not endpoint.get("dedicatedEndpointEnabled"):
            # "If this field is set, the Model can only be deployed to dedicated endpoint"
            # (ModelContainerSpec.invokeRoutePrefix, the discovery document).
            self._violation(ctx.method, ctx.path, "an invoke-route model on a shared endpoint")
            raise GoogleError(
                "FAILED_PRECONDITION",
                "A model with invoke_route_prefix can only be deployed to a dedicated endpoint.",
            )
        resources = deployed.get("dedicatedResources")
        if resources is None and deployed.get("automaticResources") is None:
            self._violation(
                ctx.method,
                ctx.path,
                "deployedModel has neither dedicatedResources nor automaticResources",
            )
            raise GoogleError(
                "INVALID_ARGUMENT", "Model requires dedicated_resources to be deployed."
            )
        if resources is not None:
            self._check_resources(ctx, resources)
        deployed_id = str(deployed.get("id") or self._new_id())
        current = {d["id"] for d in endpoint.get("deployedModels", [])}
        if deployed_id in current:
            raise GoogleError(
                "ALREADY_EXISTS", f"DeployedModel with id {deployed_id} already exists."
            )
        split = body.get("trafficSplit")
        if split:
            split = self._check_traffic(ctx, split, current | {"0"}, field_name="traffic_split")
            split = {(deployed_id if k == "0" else k): v for k, v in split.items()}
        elif not current:
            split = {deployed_id: 100}

        def finish() -> dict[str, Any]:
            now = _stamp()
            record = {**deployed, "id": deployed_id, "createTime": now, "modelVersionId": "1"}
            record["model"] = self._normal(model_name.split("@")[0])
            endpoint.setdefault("deployedModels", []).append(record)
            if split:
                endpoint["trafficSplit"] = split
            endpoint["updateTime"] = now
            self.models[model_id].setdefault("deployedModels", []).append(
                {"endpoint": endpoint["name"], "deployedModelId": deployed_id}
            )
            return {"@type": API + "DeployModelResponse", "deployedModel": record}

        return {}, self._start_operation(endpoint["name"], "DeployModelOperationMetadata", finish)

    def _check_resources(self, ctx: _Request, resources: dict[str, Any]) -> None:
        machine = resources.get("machineSpec") or {}
        if not machine.get("machineType"):
            self._violation(
                ctx.method, ctx.path, "dedicatedResources.machineSpec.machineType missing"
            )
            raise required_missing(["deployed_model.dedicated_resources.machine_spec.machine_type"])
        minimum = int(resources.get("minReplicaCount") or 0)
        maximum = int(resources.get("maxReplicaCount") or minimum)
        if minimum < 1:
            self._violation(ctx.method, ctx.path, "dedicatedResources.minReplicaCount < 1")
            raise GoogleError(
                "INVALID_ARGUMENT", "min_replica_count must be greater than or equal to 1."
            )
        if maximum < minimum:
            self._violation(ctx.method, ctx.path, "maxReplicaCount < minReplicaCount")
            raise GoogleError(
                "INVALID_ARGUMENT",
                "max_replica_count must be greater than or equal to min_replica_count.",
            )
        for spec in resources.get("autoscalingMetricSpecs") or []:
            name = spec.get("metricName")
            if name not in AUTOSCALING_METRICS:
                self._violation(
                    ctx.method, ctx.path, f"autoscaling metric {name!r} is not a supported one"
                )
                raise GoogleError("INVALID_ARGUMENT", f"Unsupported autoscaling metric: {name}.")
            target = spec.get("target")
            if target is not None and "utilization" in str(name) and not 0 < int(target) <= 100:
                self._violation(ctx.method, ctx.path, f"autoscaling target {target} for {name}")
                raise GoogleError("INVALID_ARGUMENT", f"Invalid target {target} for {name}.")

    def _undeploy_model(self, ctx: _Request, endpoint_id: str) -> tuple[dict[str, str], Any]:
        """endpoints.undeployModel (LRO): "A DeployedModel will be successfully undeployed only
        if it doesn't have any traffic assigned to it when this method executes, or if this
        field unassigns any traffic to it." and "If last DeployedModel is being undeployed
        from the Endpoint, the [Endpoint.traffic_split] will always end up empty"
        (UndeployModelRequest.trafficSplit)."""
        endpoint = self._endpoint(endpoint_id)
        body = self._checked(ctx, "UndeployModelRequest", "")
        deployed_id = str(body.get("deployedModelId"))
        current = {d["id"] for d in endpoint.get("deployedModels", [])}
        if deployed_id not in current:
            raise not_found("DeployedModel", f"{endpoint['name']}/deployedModels/{deployed_id}")
        remaining = current - {deployed_id}
        split = body.get("trafficSplit")
        if split:
            split = self._check_traffic(ctx, split, current, field_name="traffic_split")
            if split.get(deployed_id):
                raise GoogleError(
                    "FAILED_PRECONDITION",
                    f"traffic_split still assigns traffic to DeployedModel {deployed_id}.",
                )
        elif remaining and endpoint.get("trafficSplit", {}).get(deployed_id):
            self._violation(
                ctx.method, ctx.path, f"undeploying {deployed_id} which still has traffic"
            )
            raise GoogleError(
                "FAILED_PRECONDITION",
                f"DeployedModel {deployed_id} has traffic assigned; set traffic_split so it gets none.",
            )

        def finish() -> dict[str, Any]:
            endpoint["deployedModels"] = [
                d for d in endpoint["deployedModels"] if d["id"] != deployed_id
            ]
            if split:
                endpoint["trafficSplit"] = {k: v for k, v in split.items() if v}
            else:
                traffic = {
                    k: v for k, v in endpoint.get("trafficSplit", {}).items() if k != deployed_id
                }
                endpoint["trafficSplit"] = traffic if remaining else {}
            if not endpoint["trafficSplit"]:
                endpoint.pop("trafficSplit")
            if not endpoint["deployedModels"]:
                endpoint.pop("deployedModels")
            for model in self.models.values():
                model["deployedModels"] = [
                    d
                    for d in model.get("deployedModels", [])
                    if d.get("deployedModelId") != deployed_id
                ]
            return {"@type": API + "UndeployModelResponse"}

        return {}, self._start_operation(endpoint["name"], "UndeployModelOperationMetadata", finish)

    def _patch_endpoint(self, ctx: _Request, endpoint_id: str) -> tuple[dict[str, str], Any]:
        """endpoints.patch with ``updateMask`` (required: "Required. The update mask applies
        to the resource."): ``traffic_split`` / ``trafficSplit``, ``display_name``,
        ``description``, ``labels``. Answers the Endpoint (not an operation)."""
        endpoint = self._endpoint(endpoint_id)
        body = self._checked(ctx, "Endpoint", "endpoint")
        mask = [
            m.strip()
            for m in (ctx.query.get("updateMask") or ctx.query.get("update_mask") or "").split(",")
            if m.strip()
        ]
        if not mask:
            self._violation(ctx.method, ctx.path, "updateMask missing")
            raise required_missing(["update_mask"])
        allowed = {
            "traffic_split": "trafficSplit",
            "display_name": "displayName",
            "description": "description",
            "labels": "labels",
        }
        for path in mask:
            key = allowed.get(path) or (path if path in allowed.values() else None)
            if key is None:
                self._violation(ctx.method, ctx.path, f"updateMask path {path!r}")
                raise GoogleError("INVALID_ARGUMENT", f"Invalid update_mask path: {path}")
            if key == "trafficSplit":
                ids = {d["id"] for d in endpoint.get("deployedModels", [])}
                split = self._check_traffic(
                    ctx, body.get("trafficSplit") or {}, ids, field_name="traffic_split"
                )
                if ids and not split:
                    self._violation(
                        ctx.method, ctx.path, "traffic_split emptied with models deployed"
                    )
                    raise GoogleError(
                        "INVALID_ARGUMENT", "The sum of traffic_split must be 100, got 0."
                    )
                endpoint["trafficSplit"] = split
            elif key == "labels":
                self._check_labels(ctx, body.get("labels"))
                endpoint["labels"] = body.get("labels") or {}
            elif key in body:
                endpoint[key] = body[key]
        endpoint["updateTime"] = _stamp()
        return {}, endpoint

    # --- prediction ----------------------------------------------------------------------------

    def _raw_predict(self, ctx: _Request, endpoint_id: str) -> tuple[dict[str, str], Any]:
        """endpoints.rawPredict: the body goes to the container's predictRoute as it is, and
        the container's answer comes back as it is, with the headers ``X-Vertex-AI-Endpoint-Id``
        and ``X-Vertex-AI-Deployed-Model-Id`` (the method's description in the discovery
        document). The deployed model is drawn by the traffic split. A body of the gapic
        REST client's shape ``{"httpBody": {"data": base64}}`` is unwrapped."""
        endpoint = self._endpoint(endpoint_id)
        deployed_id = self._by_traffic(endpoint)
        if self._invoke_prefix(endpoint, deployed_id):
            # "If invokeRoutePrefix field is set on a Model, all other Vertex routes besides
            # invoke (e.g. :predict, :rawPredict ..) will be disabled once deployed" ("Use
            # arbitrary custom routes", cloud.google.com/vertex-ai/docs/predictions).
            self._violation(ctx.method, ctx.path, "rawPredict of an invoke-route model")
            raise GoogleError(
                "FAILED_PRECONDITION", "rawPredict is disabled for a model with invoke routes."
            )
        return self._serve_chat(ctx, endpoint, deployed_id)

    def _by_traffic(self, endpoint: dict[str, Any]) -> str:
        split = endpoint.get("trafficSplit") or {}
        if not endpoint.get("deployedModels") or not any(split.values()):
            raise GoogleError(
                "FAILED_PRECONDITION",
                f"Endpoint `{endpoint['name']}` does not have any deployed models with traffic.",
            )
        ids = [i for i in split if split[i]]
        return str(self._random.choices(ids, weights=[split[i] for i in ids])[0])

    def _invoke_prefix(self, endpoint: dict[str, Any], deployed_id: str) -> str | None:
        """The invoke route prefix of the model a deployed model serves."""
        for deployed in endpoint.get("deployedModels", []):
            if deployed["id"] == deployed_id:
                model_id = str(deployed.get("model", "")).split("/models/")[-1].split("@")[0]
                spec = (self.models.get(model_id) or {}).get("containerSpec") or {}
                return spec.get("invokeRoutePrefix")
        return None

    def _invoke_endpoint(
        self, ctx: _Request, endpoint_id: str, route: str
    ) -> tuple[dict[str, str], Any]:
        """endpoints/{e}/invoke/{path} (``endpoints.invoke.invoke``): a custom route of the
        model the traffic split draws; only for models uploaded with an invoke route prefix."""
        endpoint = self._endpoint(endpoint_id)
        deployed_id = self._by_traffic(endpoint)
        if not self._invoke_prefix(endpoint, deployed_id):
            raise GoogleError(
                "FAILED_PRECONDITION", "The deployed model has no invoke_route_prefix."
            )
        return self._serve_chat(ctx, endpoint, deployed_id)

    def _invoke(
        self, ctx: _Request, endpoint_id: str, deployed_id: str, route: str
    ) -> tuple[dict[str, str], Any]:
        """endpoints/{e}/deployedModels/{id}/invoke/{path}: one deployed model, bypassing the
        traffic split (DeployedModel invoke in the discovery document)."""
        endpoint = self._endpoint(endpoint_id)
        if deployed_id not in {d["id"] for d in endpoint.get("deployedModels", [])}:
            raise not_found("DeployedModel", f"{endpoint['name']}/deployedModels/{deployed_id}")
        if not self._invoke_prefix(endpoint, deployed_id):
            raise GoogleError(
                "FAILED_PRECONDITION", "The deployed model has no invoke_route_prefix."
            )
        return self._serve_chat(ctx, endpoint, deployed_id)

    def _serve_chat(
        self, ctx: _Request, endpoint: dict[str, Any], deployed_id: str
    ) -> tuple[dict[str, str], Any]:
        payload = ctx.body
        if isinstance(payload, dict) and set(payload) <= {"httpBody"} and "httpBody" in payload:
            data = base64.b64decode(payload["httpBody"].get("data", ""))
            payload = json.loads(data) if data else {}
        if not isinstance(payload, dict) or not isinstance(payload.get("messages"), list):
            # What a vLLM / TGI OpenAI-compatible server answers a body that is not a chat
            # request (the fake's wording).
            raise GoogleError(
                "INVALID_ARGUMENT", "The request body is not an OpenAI chat completion request."
            )
        endpoint_id = endpoint["name"].rsplit("/", 1)[-1]
        self.served.append((endpoint_id, deployed_id, payload))
        text = self.answer(deployed_id, payload)
        prompt_tokens = sum(len(str(m.get("content", ""))) // 4 + 1 for m in payload["messages"])
        completion = {
            "id": f"chatcmpl-{self._random.getrandbits(64):016x}",
            "object": "chat.completion",
            "created": int(_now().timestamp()),
            "model": str(payload.get("model") or deployed_id),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(text) // 4 + 1,
                "total_tokens": prompt_tokens + len(text) // 4 + 1,
            },
        }
        headers = {
            "X-Vertex-AI-Endpoint-Id": endpoint_id,
            "X-Vertex-AI-Deployed-Model-Id": deployed_id,
        }
        return headers, completion


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    raw: bytes


# --- rules as functions ------------------------------------------------------------------------


def label_violations(labels: Any) -> list[str]:
    """What breaks Google's label rules (``LABEL_KEY`` / ``LABEL_VALUE`` / ``MAX_LABELS``)."""
    if not isinstance(labels, dict):
        return [f"labels must be a map of strings, got {type(labels).__name__}"]
    problems = []
    if len(labels) > MAX_LABELS:
        problems.append(f"{len(labels)} labels, more than {MAX_LABELS}")
    for key, value in labels.items():
        if not _label_text(str(key), key=True):
            problems.append(
                f"label key {key!r}: 1-63 lowercase letters, digits, '_' or '-', starting with a lowercase letter"
            )
        if not isinstance(value, str) or not _label_text(value, key=False):
            problems.append(
                f"label value {value!r} of {key!r}: 0-63 lowercase letters, digits, '_' or '-'"
            )
    return problems


def _label_text(text: str, *, key: bool) -> bool:
    if len(text) > 63 or (key and not text):
        return False
    if key and not (text[0].isalpha() and not text[0].isupper()):
        return False
    return all(
        c.isdigit()
        or c in "_-"
        or (c.isalpha() and not c.isupper() and (c.isascii() is False or c.islower()))
        for c in text
    )


def gcs_location(path: str) -> tuple[str, str] | None:
    """(bucket, object name) of ``gs://B/N`` or of a Cloud Storage FUSE path ``/gcs/B/N``
    (Vertex mounts buckets at /gcs/: "Use Cloud Storage FUSE",
    https://cloud.google.com/vertex-ai/docs/training/cloud-storage-file-system)."""
    found = re.fullmatch(r"(?:gs://|/gcs/)([^/]+)/?(.*)", path.strip())
    return (found.group(1), found.group(2)) if found else None


_LIST_TERM = re.compile(
    r"^\s*(?:(labels\.[A-Za-z0-9_\-]+)\s*(=|:)\s*(\"[^\"]*\"|[^\s\"]+)"
    r"|(display_name|displayName|state)\s*(=|!=)\s*(\"[^\"]*\"|[^\s\"]+))\s*$"
)


def parse_list_filter(text: str) -> list[Callable[[dict[str, Any]], bool]]:
    """The subset of the list filter of customJobs.list (and tuningJobs / endpoints .list)
    the fake reads: terms joined by ``AND``, each ``labels.KEY="VALUE"`` (or ``labels.KEY:*``,
    key existence), ``display_name="..."`` (also ``displayName``), ``state=...`` / ``!=``
    ("Supported fields: display_name supports =, != ... state supports =, != ... labels
    supports general map functions that is: labels.key=value - key:value equality
    labels.key:* - key existence", customJobs.list ``filter`` in the discovery document).
    Anything else raises ValueError (the service's INVALID_ARGUMENT)."""
    if not text.strip():
        return []
    terms: list[Callable[[dict[str, Any]], bool]] = []
    for part in re.split(r"\s+AND\s+", text.strip()):
        found = _LIST_TERM.match(part)
        if not found:
            raise ValueError(f"unsupported term {part!r}")
        label, label_op, label_value, field_name, op, value = found.groups()
        if label:
            key = label.removeprefix("labels.")
            wanted = label_value.strip('"')
            if label_op == ":":
                if wanted != "*":
                    raise ValueError(f"unsupported term {part!r}")
                terms.append(lambda item, key=key: key in (item.get("labels") or {}))
            else:
                terms.append(
                    lambda item, key=key, wanted=wanted: (
                        (item.get("labels") or {}).get(key) == wanted
                    )
                )
            continue
        wanted = value.strip('"')
        attribute = "displayName" if field_name in ("display_name", "displayName") else "state"
        if attribute == "state" and wanted not in JOB_STATES:
            raise ValueError(f"unknown state {wanted!r}")
        if op == "=":
            terms.append(lambda item, a=attribute, w=wanted: item.get(a) == w)
        else:
            terms.append(lambda item, a=attribute, w=wanted: item.get(a) != w)
    return terms


_CONTEXT_TERM = re.compile(
    r'^(?:(?P<field>name|display_name|schema_title)\s*=\s*"(?P<value>[^"]*)"'
    r'|parent_contexts\s*:\s*"(?P<parent>[^"]*)")$'
)


def parse_context_filter(
    text: str, normal: Callable[[str], str]
) -> list[Callable[[dict[str, Any]], bool]]:
    """The subset of contexts.list's filter (AIP-160: "Attribute filtering ... Supported
    fields include: `name`, `display_name`, `schema_title`"; "Parent Child filtering ...
    `parent_contexts: \"projects/<project_id>/locations/<location>/metadataStores/<metadatastore_id>/contexts/<context_id>\"`",
    the discovery document) that the Vertex AI SDK's ``_make_filter_string`` writes: terms
    joined by AND. ``normal`` makes names comparable whether they carry the project's ID or
    its number. Anything else is a ValueError."""
    terms: list[Callable[[dict[str, Any]], bool]] = []
    if not text.strip():
        return terms
    for part in re.split(r"\s+AND\s+", text.strip()):
        found = _CONTEXT_TERM.match(part.strip())
        if not found:
            raise ValueError(f"the fake cannot read {part!r}")
        if found.group("parent") is not None:
            parent = normal(found.group("parent"))
            terms.append(
                lambda c, parent=parent: parent in {normal(p) for p in c.get("parentContexts", [])}
            )
            continue
        key = {"name": "name", "display_name": "displayName", "schema_title": "schemaTitle"}[
            found.group("field")
        ]
        value = found.group("value")
        if key == "name":
            terms.append(lambda c, value=value: normal(c["name"]) == normal(value))
        else:
            terms.append(lambda c, key=key, value=value: c.get(key) == value)
    return terms


@dataclass
class LogFilter:
    """What a Cloud Logging filter of the supported subset asks for."""

    resource_type: str | None = None
    job_id: str | None = None
    task_name: str | None = None
    after: list[tuple[str, datetime]] = field(default_factory=list)

    def get(self, key: str) -> str | None:
        return getattr(self, key)  # type: ignore[no-any-return]

    def match(self, entry: dict[str, Any]) -> bool:
        resource = entry.get("resource", {})
        labels = resource.get("labels", {})
        if self.resource_type is not None and resource.get("type") != self.resource_type:
            return False
        if self.job_id is not None and labels.get("job_id") != self.job_id:
            return False
        if self.task_name is not None and labels.get("task_name") != self.task_name:
            return False
        moment = _parse_time(entry["timestamp"])
        for op, bound in self.after:
            if (op == ">=" and moment < bound) or (op == ">" and moment <= bound):
                return False
        return True


_LOG_TERM = re.compile(
    r"^\s*(resource\.type|resource\.labels\.job_id|resource\.labels\.task_name|timestamp)"
    r"\s*(>=|>|=)\s*(\"[^\"]*\"|[^\s\"()]+)\s*$"
)


def parse_log_filter(text: str) -> LogFilter:
    """The subset of the Logging query language (https://cloud.google.com/logging/docs/view/logging-query-language)
    the fake reads: terms joined by ``AND`` (or by a new line, which means AND there), each
    ``resource.type="ml_job"``, ``resource.labels.job_id="ID"``,
    ``resource.labels.task_name="..."`` or ``timestamp>="RFC3339"`` / ``timestamp>"..."``.
    google.cloud.logging adds ``AND timestamp>="<a day ago>"`` to a filter without a
    timestamp (logging_v2/_helpers.py ``_add_defaults_to_filter``). Anything else raises
    ValueError."""
    wanted = LogFilter()
    if not text.strip():
        return wanted
    for part in re.split(r"\s+AND\s+|\n+", text.strip()):
        if not part.strip():
            continue
        found = _LOG_TERM.match(part)
        if not found:
            raise ValueError(f"unsupported term {part!r}")
        name, op, value = found.groups()
        value = value.strip('"')
        if name == "timestamp":
            if op == "=":
                raise ValueError(f"unsupported term {part!r}")
            try:
                wanted.after.append((op, _parse_time(value)))
            except ValueError:
                raise ValueError(f"invalid timestamp {value!r}") from None
            continue
        if op != "=":
            raise ValueError(f"unsupported term {part!r}")
        attribute = {
            "resource.type": "resource_type",
            "resource.labels.job_id": "job_id",
            "resource.labels.task_name": "task_name",
        }[name]
        setattr(wanted, attribute, value)
    return wanted


_ROLES = ("user", "model")


def gemini_example_problem(line: bytes | str) -> str | None:
    """Why one JSONL line is not a Gemini supervised tuning example, or None. The format
    ("Prepare supervised fine-tuning data for Gemini models",
    https://cloud.google.com/vertex-ai/generative-ai/docs/models/gemini-supervised-tuning-prepare):
    an object with ``contents`` (required: a list of Content, ``role`` "user" or "model",
    ``parts`` a list of Part with ``text`` or ``fileData``), optional ``systemInstruction``
    (a Content whose role is ignored) and ``tools``. The fake also requires what makes a
    line an example to learn from: a model turn, and the last turn the model's (the
    answer); the wording is the fake's. An OpenAI chat line (``messages``) is refused."""
    try:
        example = json.loads(line)
    except ValueError as error:
        return f"not valid JSON ({error})"
    if not isinstance(example, dict):
        return "an example must be a JSON object"
    unknown = set(example) - {"contents", "systemInstruction", "system_instruction", "tools"}
    if "messages" in example:
        return (
            "found field 'messages' (OpenAI chat format); Gemini tuning examples hold "
            "'contents' with 'role' user/model and 'parts'"
        )
    if unknown:
        return f"unknown field(s) {', '.join(sorted(unknown))}"
    contents = example.get("contents")
    if not isinstance(contents, list) or not contents:
        return "'contents' is required and must be a non-empty list"
    for index, content in enumerate(contents):
        if not isinstance(content, dict):
            return f"contents[{index}] must be an object"
        role = content.get("role")
        if role not in _ROLES:
            return f"contents[{index}].role must be 'user' or 'model', got {role!r}"
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            return f"contents[{index}].parts must be a non-empty list"
        for number, part in enumerate(parts):
            if not isinstance(part, dict) or not (
                isinstance(part.get("text"), str) or isinstance(part.get("fileData"), dict)
            ):
                return f"contents[{index}].parts[{number}] must hold 'text' or 'fileData'"
    if contents[-1].get("role") != "model":
        return "the last content must be the model's response (role 'model')"
    system = example.get("systemInstruction", example.get("system_instruction"))
    if system is not None and (
        not isinstance(system, dict)
        or not isinstance(system.get("parts"), list)
        or not all(isinstance(p, dict) and isinstance(p.get("text"), str) for p in system["parts"])
    ):
        return "systemInstruction must be a Content whose parts hold 'text'"
    return None


class _Handler(BaseHTTPRequestHandler):
    service: FakeVertex
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {key.lower(): value for key, value in self.headers.items()}
        status, extra, answer = self.service.handle(self.command, self.path, headers, raw)
        if isinstance(answer, bytes):
            data = answer
        else:
            data = json.dumps(answer).encode() if answer is not None else b""
        self.send_response(status)
        if data and "Content-Type" not in extra:
            self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:
        pass

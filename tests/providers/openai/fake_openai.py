"""A stateful fake of the OpenAI API's files, uploads, fine-tuning and chat endpoints.

No emulator of the OpenAI API exists, so the tests run the real ``openai`` SDK against this
server on 127.0.0.1. It plays a job's life as the service does -- validating_files, queued,
running with metric events and epoch checkpoints, then succeeded (or failed, cancelled,
paused) -- advancing a few steps each time the job is retrieved, and it can misbehave on
demand: 429 storms with Retry-After, a limit on active jobs, a daily limit, files the
service rejects, a wrong API key. Every request it receives and every answer it gives is
checked against OpenAI's published API description where that file is present
(:mod:`tests.openapi_contract`); ``violations`` collects what did not conform.

It refuses what the service refuses: a request its API description does not allow (a
suffix over 64 characters, a seed or hyperparameter out of range) with a 400 worded as the
API words its validation errors, and the limits written only in prose -- metadata (16 keys,
keys up to 64 characters, values up to 512), files over 512 MB, Uploads over 8 GB, parts
over 64 MB -- each where the limit is documented.

Chat completions answer deterministically, so an evaluation can be scored: a fine-tuned
model (one its jobs produced, or a checkpoint) answers a question whose messages are a
training example's prompt (its messages before the last assistant turn; a preference
example's input) with that example's answer (the preferred one); any other question, and
every question to a base model, gets ``[<model>] You asked: <question>``, which no expected
answer equals. A test makes a model a judge with :meth:`FakeOpenAI.judge` and decides its
replies. Chat requests are refused as the service refuses them: an unknown model (404
``model_not_found``), more tokens than the model generates (400 ``invalid_value``), and on
a reasoning model a temperature other than 1 or the deprecated ``max_tokens``.

Under ``/openai`` it is an Azure OpenAI resource's data plane, answering as Azure's
2025-04-01-preview description says (:mod:`tests.providers.openai.azure_openai_contract`,
which the job operations are checked against there): jobs are created with 201 and start
``pending``, carry ``suffix`` and no metadata (Azure's jobs have none, and its job list no
metadata filter), pause to ``paused`` and resume through ``resuming``; errors are Azure's
``{"error": {"code", "message"}}``, suffixes over Azure's 40 characters and Uploads over its
9 GB are refused.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import itertools
import json
import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import jsonschema
from tests.openapi_contract import OpenAPIContract, form_files
from tests.providers.openai import azure_openai_contract as azure_contract

API_KEY = "sk-fake-tunefleet-test-key-0000"
ENTRA_TOKEN = "fake-entra-token"
"""What the fake `az` hands out (tests.providers.openai.fake_azure)."""
ORGANIZATION = "org-fake"
BASE_MODELS = ("gpt-4o-mini-2024-07-18", "gpt-4.1-mini-2025-04-14", "gpt-4o-2024-08-06")
REASONING_MODELS = ("o3-mini-2025-01-31",)
"""Reasoning models: they answer chat requests, and no supervised or DPO job tunes them
(the fine-tuning guide lists GPT models for those methods)."""
MAX_OUTPUT_TOKENS = {
    "gpt-4o-mini-2024-07-18": 16_384,
    "gpt-4.1-mini-2025-04-14": 32_768,
    "gpt-4o-2024-08-06": 16_384,
    "o3-mini-2025-01-31": 100_000,
}
"""Tokens a chat completion of each model (and of a model fine-tuned from it) may generate:
"Max output tokens" on OpenAI's model pages (https://platform.openai.com/docs/models)."""
MIN_EXAMPLES = 10
"""The service refuses training files with fewer examples (its documented minimum)."""
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
ACTIVE = frozenset(
    {"validating_files", "queued", "running", "created", "pending", "pausing", "resuming"}
)
"""Statuses of a job holding or awaiting a training slot, OpenAI's and Azure's."""
FILES_API_MAX_BYTES = 512 << 20
"""createFile (openai-openapi.json, paths /files post): "Individual files can be up to
512 MB" (binary units, as the SDK's chunked upload reads "64 MB": 67108864)."""
UPLOAD_MAX_BYTES = 8 << 30
"""createUpload (paths /uploads post): "an Upload can accept at most 8 GB in total"."""
UPLOAD_PART_MAX_BYTES = 64 << 20
"""addUploadPart (paths /uploads/{upload_id}/parts post): "Each Part can be at most 64 MB"."""
METADATA_MAX_KEYS, METADATA_MAX_KEY, METADATA_MAX_VALUE = 16, 64, 512
"""components.schemas.Metadata: "Set of 16 key-value pairs ... Keys are strings with a
maximum length of 64 characters. Values are strings with a maximum length of 512
characters." (prose only: the schema itself has no maxProperties or maxLength)."""
UNSAFE_TRAINING_FILE = (
    "The job failed due to an invalid training file. This training file was blocked by our "
    "moderation system because it contains too many examples that violate OpenAI's usage "
    "policies"
)
"""How a job fails when the service's safety checks block its training file, as the
service words it (quoted from real jobs; the fine-tuning guide's "Safety checks" section
describes the checks)."""


@dataclass
class Misbehaviour:
    """Answer the next ``times`` requests matching ``operation`` ("*" for any) with an error."""

    status: int
    code: str | None
    message: str
    operation: str = "*"
    times: int = 1
    retry_after: str | None = None
    every: int = 1
    """Fail one matching request in ``every`` (2: every other one)."""
    lose_answer: bool = False
    """Do what the request asks, then answer with the error: a create whose answer was
    lost on the way back (a gateway's 502 or 504 after the service acted)."""
    _seen: int = 0


@dataclass
class Job:
    """A fine-tuning job and what the fake knows about it beyond the API object."""

    body: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    step: int = 0
    total_steps: int = 0
    epochs: int = 1
    steps_per_epoch: int = 1
    tokens_per_epoch: int = 0
    rejection: str | None = None
    azure: bool = False
    """Created through an Azure OpenAI resource: answers in Azure's shape and statuses."""


class FakeOpenAI:
    """The fake service. ``start()`` it, point the SDK at ``base_url``, ``stop()`` it."""

    def __init__(self, contract: OpenAPIContract | None) -> None:
        self.contract = contract
        self.violations: list[str] = []
        self.requests: list[tuple[str, dict[str, Any]]] = []
        """(operation, JSON body or query) of each request, in order."""
        self.files: dict[str, dict[str, Any]] = {}
        self.contents: dict[str, bytes] = {}
        self.uploads: dict[str, dict[str, Any]] = {}
        self.parts: dict[str, bytes] = {}
        self.jobs: dict[str, Job] = {}
        self.models: dict[str, dict[str, Any]] = {
            model: {"id": model, "object": "model", "created": 1_700_000_000, "owned_by": "openai"}
            for model in (*BASE_MODELS, *REASONING_MODELS)
        }
        self.bases: dict[str, str] = {}
        """The base model of each fine-tuned model (and checkpoint) a job produced."""
        self.trained: dict[str, dict[str, str]] = {}
        """What each fine-tuned model learnt: a prompt (its messages, as JSON) -> answer."""
        self.judges: dict[str, Callable[[dict[str, Any]], str]] = {}
        """Judge models, each with the function that decides its reply to a request body."""
        self.steps_per_poll = 3
        self.unsafe_training_files = False
        """Fail every new job's training file as the service's safety checks do."""
        self.max_active_jobs: int | None = None
        self.daily_job_limit: int | None = None
        self.misbehaviours: list[Misbehaviour] = []
        self.deployments: dict[str, str] = {}
        """Azure deployments (name -> model), kept by the fake Resource Manager."""
        self._azure = False
        self._clock = itertools.count(1_750_000_000)
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeOpenAI:
        fake = self

        class Handler(_Handler):
            service = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def misbehave(self, **kwargs: Any) -> None:
        """Queue a :class:`Misbehaviour` (see its fields)."""
        with self._lock:
            self.misbehaviours.append(Misbehaviour(**kwargs))

    def judge(self, model: str, decide: Callable[[dict[str, Any]], str]) -> None:
        """Make ``model`` a judge: it answers each chat request with ``decide(body)`` (a
        model the service does not list yet is added)."""
        with self._lock:
            self.judges[model] = decide
            self.models.setdefault(
                model,
                {"id": model, "object": "model", "created": 1_700_000_000, "owned_by": "openai"},
            )

    def chat_requests(self) -> list[dict[str, Any]]:
        """The body of each createChatCompletion request, refused ones included."""
        return [body for operation, body in self.requests if operation == "createChatCompletion"]

    def operations(self) -> list[str]:
        return [operation for operation, _ in self.requests]

    def _now(self) -> int:
        return next(self._clock)

    def _id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}fake"

    # ------------------------------------------------------------------ dispatch

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        url = urlsplit(target)
        path = url.path
        query = parse_qs(url.query, keep_blank_values=True)
        azure = path.startswith("/openai/")
        if azure:
            # Azure OpenAI: the same API under /openai, versioned by a query parameter, with
            # chat completions addressed to a deployment rather than a model.
            if not query.pop("api-version", None):
                return _error(400, "missing_api_version", "api-version query parameter required")
            path = "/v1" + re.sub(r"^/openai(/deployments/[^/]+)?", "", path)
        content_type = headers.get("content-type")
        name = self._operation(method, path)
        parsed: Any = {}
        if content_type and content_type.startswith("application/json") and body:
            parsed = json.loads(body)
        elif content_type and content_type.startswith("multipart/form-data"):
            parsed = _form(content_type, body)
        # Azure's job operations answer as Azure's own description says; the rest of its
        # data plane is OpenAI's API, checked against OpenAI's description.
        azure_checked = azure and name in azure_contract.AZURE_OPERATIONS
        if azure_checked:
            self.violations += azure_contract.check_request(name, query, parsed)
        elif self.contract is not None:
            self.violations += self.contract.check_request(method, path, query, content_type, body)
        with self._lock:
            self.requests.append((name, parsed or {k: v[-1] for k, v in query.items()}))
            self._azure = azure
            status, answer, extra = self._answer(method, path, query, headers, body, name)
        if azure and status >= 400:
            answer = _as_azure_error(status, answer)
        if azure_checked or (azure and status >= 400):  # Azure's errors are its own shape
            self.violations += azure_contract.check_response(name, status, answer)
        elif self.contract is not None:
            self.violations += self.contract.check_response(method, path, status, answer)
        return status, answer, extra

    def _answer(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: bytes,
        operation: str,
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        signed_in = headers.get("authorization") in {f"Bearer {API_KEY}", f"Bearer {ENTRA_TOKEN}"}
        if not signed_in and headers.get("api-key") != API_KEY:
            given = headers.get("authorization", "").removeprefix("Bearer ")
            shown = f"{given[:5]}***{given[-4:]}" if len(given) > 9 else "(none)"
            return _error(401, "invalid_api_key", f"Incorrect API key provided: {shown}.")
        for trouble in self.misbehaviours:
            if trouble.times > 0 and trouble.operation in {"*", operation}:
                trouble._seen += 1
                if (trouble._seen - 1) % trouble.every == 0:
                    trouble.times -= 1
                    extra = {"Retry-After": trouble.retry_after} if trouble.retry_after else {}
                    if trouble.lose_answer:
                        self._route(method, path, query, headers, body)
                    status, answer, _ = _error(trouble.status, trouble.code, trouble.message)
                    return status, answer, extra
        return self._route(method, path, query, headers, body)

    def _route(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: bytes,
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        refused = self._refusal(method, path, headers, body)
        if refused is not None:
            return refused
        for pattern, verb, _, handler in self._routes():
            match = re.fullmatch(pattern, path)
            if match and verb == method:
                result: tuple[int, dict[str, Any], dict[str, str]] = handler(
                    query, headers, body, *map(unquote, match.groups())
                )
                return result
        return _error(404, None, f"Invalid URL ({method} {path})")

    def _refusal(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        """The 400 the OpenAI API answers a JSON request its description does not allow
        (a suffix too long, a seed or an epoch count out of range), or None. Azure's
        requests are checked by their handlers, against Azure's own limits."""
        if self._azure or self.contract is None or method != "POST":
            return None
        if not headers.get("content-type", "").startswith("application/json") or not body:
            return None
        operation = self.contract.operation(method, path)
        request_body = (operation.spec.get("requestBody") or {}) if operation else {}
        schema = request_body.get("content", {}).get("application/json", {}).get("schema")
        if schema is None:
            return None
        rooted = {**schema, "components": self.contract.document["components"]}
        errors = sorted(
            jsonschema.Draft202012Validator(rooted).iter_errors(json.loads(body)),
            key=lambda e: list(e.absolute_path),
        )
        if not errors:
            return None
        code, message, param = _openai_validation_error(errors[0])
        return _error(400, code, message, param)

    def _operation(self, method: str, path: str) -> str:
        """The operation id (as OpenAI's description names it) of a request."""
        for pattern, verb, operation, _ in self._routes():
            if verb == method and re.fullmatch(pattern, path):
                return operation
        return f"{method} {path}"

    def _routes(self) -> list[tuple[str, str, str, Callable[..., Any]]]:
        job = r"/v1/fine_tuning/jobs/([^/]+)"
        return [
            (r"/v1/files", "POST", "createFile", self._create_file),
            (r"/v1/files", "GET", "listFiles", self._list_files),
            (r"/v1/files/([^/]+)", "GET", "retrieveFile", self._retrieve_file),
            (r"/v1/uploads", "POST", "createUpload", self._create_upload),
            (r"/v1/uploads/([^/]+)/parts", "POST", "addUploadPart", self._add_part),
            (r"/v1/uploads/([^/]+)/complete", "POST", "completeUpload", self._complete_upload),
            (r"/v1/uploads/([^/]+)/cancel", "POST", "cancelUpload", self._cancel_upload),
            (r"/v1/fine_tuning/jobs", "POST", "createFineTuningJob", self._create_job),
            (r"/v1/fine_tuning/jobs", "GET", "listPaginatedFineTuningJobs", self._list_jobs),
            (job, "GET", "retrieveFineTuningJob", self._retrieve_job),
            (job + "/cancel", "POST", "cancelFineTuningJob", self._cancel_job),
            (job + "/pause", "POST", "pauseFineTuningJob", self._pause_job),
            (job + "/resume", "POST", "resumeFineTuningJob", self._resume_job),
            (job + "/events", "GET", "listFineTuningEvents", self._list_events),
            (job + "/checkpoints", "GET", "listFineTuningJobCheckpoints", self._list_checkpoints),
            (r"/v1/models/(.+)", "GET", "retrieveModel", self._retrieve_model),
            (r"/v1/chat/completions", "POST", "createChatCompletion", self._chat),
        ]

    # ------------------------------------------------------------------ files

    def _new_file(self, filename: str, purpose: str, data: bytes) -> dict[str, Any]:
        file = {
            "id": self._id("file-"),
            "object": "file",
            "bytes": len(data),
            "created_at": self._now(),
            "filename": filename,
            "purpose": purpose,
            "status": "uploaded" if self._azure else "processed",
        }
        self.files[file["id"]] = file
        self.contents[file["id"]] = data
        return file

    def _create_file(self, query: Any, headers: dict[str, str], body: bytes) -> Any:
        parts = form_files(headers.get("content-type", ""), body)
        filename, data = parts.get("file", (None, b""))
        purpose = parts.get("purpose", (None, b""))[1].decode()
        if not filename or purpose not in {"fine-tune", "batch", "assistants", "user_data"}:
            return _error(400, "invalid_request_error", "a file and a valid purpose are required")
        if self._azure and len(data) > azure_contract.FILE_MAX_BYTES:
            # Azure's quotas page: max file size for fine-tuning, 512 MB.
            return _azure_error(
                400,
                "invalidPayload",
                f"The file is {len(data)} bytes; the maximum file size for fine-tuning is 512 MB.",
                "file",
            )
        if len(data) > FILES_API_MAX_BYTES:
            return _error(
                400,
                None,
                f"File is too large ({len(data)} bytes): individual files can be up to 512 MB. "
                "Use the Uploads API for larger files.",
                "file",
            )
        return 200, self._new_file(filename, purpose, data), {}

    def _list_files(self, query: dict[str, list[str]], *_: Any) -> Any:
        purpose = query.get("purpose", [None])[-1]
        files = [f for f in self.files.values() if purpose is None or f["purpose"] == purpose]
        files.sort(
            key=lambda f: f["created_at"], reverse=query.get("order", ["desc"])[-1] == "desc"
        )
        page, more = _page(files, query, default_limit=10_000)
        return 200, _list(page, more, empty_id=""), {}

    def _retrieve_file(self, query: Any, headers: Any, body: Any, file_id: str) -> Any:
        if file_id not in self.files:
            return _error(404, None, f"No such File object: {file_id}")
        file = self.files[file_id]
        if file["status"] == "uploaded":  # imported by the time anyone asks again
            file["status"] = "processed"
        return 200, file, {}

    def _create_upload(self, query: Any, headers: Any, body: bytes) -> Any:
        request = json.loads(body)
        size = request["bytes"]
        if self._azure and size > azure_contract.UPLOAD_MAX_BYTES:
            # UploadFile_Start: "an Upload size can be a maximum of 9 GB in total".
            return _azure_error(
                400,
                "invalidPayload",
                f"An Upload size can be a maximum of 9 GB in total; got {size} bytes.",
                "bytes",
            )
        if not self._azure and size > UPLOAD_MAX_BYTES:
            # createUpload: "an Upload can accept at most 8 GB in total".
            return _error(
                400,
                None,
                f"Invalid 'bytes': an Upload can accept at most 8 GB in total, but got {size} "
                "bytes.",
                "bytes",
            )
        upload = {
            "id": self._id("upload_"),
            "object": "upload",
            "bytes": request["bytes"],
            "created_at": self._now(),
            "expires_at": self._now() + 3600,
            "filename": request["filename"],
            "purpose": request["purpose"],
            "status": "pending",
            "_parts": [],
        }
        self.uploads[upload["id"]] = upload
        return 200, _public(upload), {}

    def _add_part(self, query: Any, headers: dict[str, str], body: bytes, upload_id: str) -> Any:
        upload = self.uploads.get(upload_id)
        if upload is None or upload["status"] != "pending":
            return _error(404, None, f"No pending Upload {upload_id}")
        data = form_files(headers.get("content-type", ""), body).get("data", (None, b""))[1]
        if self._azure and len(data) > azure_contract.FILE_MAX_BYTES:
            # UploadFile_Part: a Part can be up to the file size limit of its purpose.
            return _azure_error(
                400, "invalidPayload", "A Part can be at most 512 MB for fine-tuning.", "data"
            )
        if not self._azure and len(data) > UPLOAD_PART_MAX_BYTES:
            return _error(
                400,
                None,
                f"Invalid 'data': each Part can be at most 64 MB, but got {len(data)} bytes.",
                "data",
            )
        part_id = self._id("part_")
        self.parts[part_id] = data
        upload["_parts"].append(part_id)
        answer = {
            "id": part_id,
            "object": "upload.part",
            "created_at": self._now(),
            "upload_id": upload_id,
        }
        return 200, answer, {}

    def _complete_upload(self, query: Any, headers: Any, body: bytes, upload_id: str) -> Any:
        upload = self.uploads.get(upload_id)
        if upload is None or upload["status"] != "pending":
            return _error(404, None, f"No pending Upload {upload_id}")
        request = json.loads(body)
        data = b"".join(self.parts[part] for part in request["part_ids"])
        if len(data) != upload["bytes"]:
            return _error(
                400,
                "invalid_request_error",
                f"the parts hold {len(data)} bytes, the Upload was created for {upload['bytes']}",
            )
        md5 = request.get("md5")
        if md5 is not None and hashlib.md5(data, usedforsecurity=False).hexdigest() != md5:
            return _error(400, "invalid_request_error", "md5 does not match the uploaded bytes")
        upload["status"] = "completed"
        upload["file"] = self._new_file(upload["filename"], upload["purpose"], data)
        return 200, _public(upload), {}

    def _cancel_upload(self, query: Any, headers: Any, body: Any, upload_id: str) -> Any:
        upload = self.uploads.get(upload_id)
        if upload is None:
            return _error(404, None, f"No such Upload {upload_id}")
        upload["status"] = "cancelled"
        return 200, _public(upload), {}

    # ------------------------------------------------------------------ jobs

    def _create_job(self, query: Any, headers: Any, body: bytes) -> Any:
        request = json.loads(body)
        refused = self._azure_job_refusal(request) if self._azure else _metadata_refusal(request)
        if refused is not None:
            return refused
        active = sum(1 for job in self.jobs.values() if job.body["status"] in ACTIVE)
        if self.max_active_jobs is not None and active >= self.max_active_jobs:
            # OpenAI documents no error code of its own for its limit on active
            # fine-tuning jobs: neither the API reference (../shared/specs/
            # openai-openapi.json, which lists no error responses for createFineTuningJob)
            # nor the error-codes guide (https://platform.openai.com/docs/guides/error-codes)
            # names one. It is a 429, answered here with the rate-limit code the reference
            # does list (`rate_limit_exceeded`, in ResponseErrorCode), so a client can tell
            # it from throttling only by the message's words -- which tunefleet never reads.
            return _error(
                429,
                "rate_limit_exceeded",
                f"You have reached the maximum number of active fine-tuning jobs "
                f"({self.max_active_jobs}). Wait for a running job to finish.",
            )
        if self.daily_job_limit is not None and len(self.jobs) >= self.daily_job_limit:
            return _error(
                429,
                "daily_rate_limit_exceeded",
                "This fine-tune request has been rate-limited. Your organization has reached "
                f"the maximum of {self.daily_job_limit} fine-tuning requests per day for the "
                f"model '{request['model']}'.",
            )
        if request["model"] not in self.models or request["model"] in REASONING_MODELS:
            return _error(400, "model_not_available", f"Model {request['model']} is not available")
        for key in ("training_file", "validation_file"):
            file_id = request.get(key)
            if file_id is not None and file_id not in self.files:
                return _error(400, "invalid_request_error", f"File {file_id} not found", key)
            if file_id is not None and self.files[file_id]["status"] != "processed":
                return _error(400, "invalid_request_error", f"File {file_id} is not processed", key)
        method = request.get("method") or {"type": "supervised"}
        kind = method["type"]
        # The method's own hyperparameters, else the job's (where Azure's description puts
        # a supervised job's: FineTuningJobCreation.hyperparameters).
        hyper = dict(
            (method.get(kind) or {}).get("hyperparameters") or request.get("hyperparameters") or {}
        )
        data = self.contents[request["training_file"]]
        lines = [line for line in data.splitlines() if line.strip()]
        examples = len(lines)
        epochs = hyper.get("n_epochs") or 3
        batch = hyper.get("batch_size") or max(1, min(8, examples // 4 or 1))
        hyper.update(n_epochs=epochs, batch_size=batch)
        hyper.setdefault("learning_rate_multiplier", 1.8)
        if kind == "dpo":
            hyper.setdefault("beta", 0.1)
        job_id = self._id("ftjob-")
        body_out = {
            "object": "fine_tuning.job",
            "id": job_id,
            "model": request["model"],
            "created_at": self._now(),
            "error": None,
            "fine_tuned_model": None,
            "finished_at": None,
            "hyperparameters": {
                k: v
                for k, v in hyper.items()
                if k in {"n_epochs", "batch_size", "learning_rate_multiplier"}
            },
            "method": {"type": kind, kind: {"hyperparameters": hyper}},
            "organization_id": ORGANIZATION,
            "result_files": [],
            # Azure's jobs start `pending` (FineTuning_Create's example answers so).
            "status": "pending" if self._azure else "validating_files",
            "trained_tokens": None,
            "training_file": request["training_file"],
            "validation_file": request.get("validation_file"),
            "integrations": [],
            "seed": request.get("seed", 42),
            "estimated_finish": None,
            # An Azure job keeps no metadata: FineTuningJobCreation and FineTuningJob have none.
            "metadata": None if self._azure else request.get("metadata"),
            "user_provided_suffix": request.get("suffix"),
        }
        job = Job(body=body_out, epochs=epochs, azure=self._azure)
        job.steps_per_epoch = math.ceil(examples / batch) if examples else 1
        job.total_steps = job.steps_per_epoch * epochs
        job.tokens_per_epoch = len(data) // 4
        if examples < MIN_EXAMPLES:
            job.rejection = (
                f"The job failed due to an invalid training file. Training file has "
                f"{examples} example(s), but must have at least {MIN_EXAMPLES} examples"
            )
        elif self.unsafe_training_files:
            job.rejection = UNSAFE_TRAINING_FILE
        self.jobs[job_id] = job
        self._event(job, f"Created fine-tuning job: {job_id}")
        self._event(job, f"Validating training file: {request['training_file']}")
        # FineTuning_Create answers 201 on Azure; createFineTuningJob 200 on the OpenAI API.
        return (201 if job.azure else 200), self._view(job), {}

    def _azure_job_refusal(self, request: dict[str, Any]) -> Any:
        """Azure's refusal of a job its description does not allow, or None. Its suffix
        "can contain up to 40 characters (a-z, A-Z, 0-9,- and _)" (FineTuningJobCreation);
        fields Azure does not define (metadata) are not kept, and the Azure contract records
        them as a violation of the client."""
        suffix = request.get("suffix")
        if suffix is not None and not re.fullmatch(
            rf"[A-Za-z0-9_-]{{1,{azure_contract.SUFFIX_MAX}}}", str(suffix)
        ):
            return _azure_error(
                400,
                "invalidPayload",
                "The suffix can contain up to 40 characters (a-z, A-Z, 0-9,- and _).",
                "suffix",
            )
        return None

    def _view(self, job: Job) -> dict[str, Any]:
        """The job as the service answers it: OpenAI's FineTuningJob, or Azure's (its
        FineTuningJob: ``suffix``, ``organisation_id``, no metadata, absent fields left
        out, the method as its type and DPO settings)."""
        body = job.body
        if not job.azure:
            return body
        method = body["method"]
        view = {
            "object": "fine_tuning.job",
            "id": body["id"],
            "created_at": body["created_at"],
            "status": body["status"],
            "model": body["model"],
            "fine_tuned_model": body["fine_tuned_model"],
            "training_file": body["training_file"],
            "validation_file": body["validation_file"],
            "result_files": body["result_files"],
            "finished_at": body["finished_at"],
            "organisation_id": ORGANIZATION,
            "trained_tokens": body["trained_tokens"],
            "error": body["error"],
            "hyperparameters": body["hyperparameters"],
            "suffix": body["user_provided_suffix"],
            "seed": body["seed"],
            "method": (
                {"type": "dpo", "dpo": method["dpo"]}
                if method["type"] == "dpo"
                else {"type": method["type"]}
            ),
        }
        return {key: value for key, value in view.items() if value is not None}

    def _event(
        self, job: Job, message: str, *, level: str = "info", data: dict[str, Any] | None = None
    ) -> None:
        job.events.append(
            {
                "object": "fine_tuning.job.event",
                "id": self._id("ftevent-"),
                "created_at": self._now(),
                "level": level,
                "message": message,
                "type": "metrics" if data else "message",
                "data": data or {},
            }
        )

    def _advance(self, job: Job) -> None:
        """One retrieve's worth of progress: a stage change, or a few training steps."""
        body = job.body
        status = body["status"]
        if status in {"validating_files", "pending"}:
            if job.rejection is not None:
                self._finish(job, "failed", error=job.rejection)
            elif job.azure:
                # Azure goes from pending to running (FineTuningState has no queued).
                body["status"] = "running"
                self._event(job, "Fine-tuning job started")
            else:
                body["status"] = "queued"
                self._event(job, "Files validated, moving job to queued state")
        elif status in {"queued", "resuming"}:
            body["status"] = "running"
            self._event(job, "Fine-tuning job started")
        elif status == "running":
            for _ in range(self.steps_per_poll):
                if job.step >= job.total_steps:
                    break
                job.step += 1
                self._train_step(job)
            if job.step >= job.total_steps:
                model = (
                    # Azure names a fine-tuned model <base>.ft-<job id> (its fine-tuning
                    # deployment guide: gpt-35-turbo-0613.ft-b044a9d3cf9c...).
                    f"{body['model']}.ft-{body['id'].removeprefix('ftjob-')}"
                    if job.azure
                    else f"ft:{body['model']}:{ORGANIZATION}:"
                    f"{body['user_provided_suffix'] or 'ft'}:{body['id'][-10:]}"
                )
                self.models[model] = {
                    "id": model,
                    "object": "model",
                    "created": self._now(),
                    "owned_by": ORGANIZATION,
                }
                self._learn(model, job)
                body["fine_tuned_model"] = model
                body["trained_tokens"] = job.tokens_per_epoch * job.epochs
                result = self._new_file(
                    "step_metrics.csv", "fine-tune-results", b"step,train_loss\n"
                )
                body["result_files"] = [result["id"]]
                self._event(job, f"New fine-tuned model created: {model}")
                self._finish(job, "succeeded")

    def _train_step(self, job: Job) -> None:
        step = job.step
        loss = round(2.5 * math.exp(-step / max(job.total_steps / 3, 1)) + 0.05, 4)
        data: dict[str, Any] = {
            "step": step,
            "train_loss": loss,
            "total_steps": job.total_steps,
            "train_mean_token_accuracy": round(
                min(0.99, 0.4 + step / (job.total_steps + 1) / 2), 4
            ),
        }
        epoch_end = step % job.steps_per_epoch == 0
        if job.body["validation_file"]:
            data["valid_loss"] = round(loss * 1.1, 4)
            data["valid_mean_token_accuracy"] = data["train_mean_token_accuracy"]
            if epoch_end:
                data["full_valid_loss"] = round(loss * 1.05, 4)
                data["full_valid_mean_token_accuracy"] = data["train_mean_token_accuracy"]
        self._event(job, f"Step {step}/{job.total_steps}: training loss={loss:.2f}", data=data)
        if epoch_end and step > (job.epochs - 3) * job.steps_per_epoch:  # the last 3 epochs
            suffix = job.body["user_provided_suffix"] or "ft"
            checkpoint = {
                "object": "fine_tuning.job.checkpoint",
                "id": self._id("ftckpt_"),
                "created_at": self._now(),
                "fine_tuned_model_checkpoint": f"ft:{job.body['model']}:{ORGANIZATION}:{suffix}:{job.body['id'][-10:]}:ckpt-step-{step}",
                "fine_tuning_job_id": job.body["id"],
                "metrics": {"step": step, "train_loss": loss},
                "step_number": step,
            }
            job.checkpoints.append(checkpoint)
            self._learn(checkpoint["fine_tuned_model_checkpoint"], job)
            self.models[checkpoint["fine_tuned_model_checkpoint"]] = {
                "id": checkpoint["fine_tuned_model_checkpoint"],
                "object": "model",
                "created": self._now(),
                "owned_by": ORGANIZATION,
            }
            self._event(job, f"Checkpoint created at step {step}")

    def _finish(self, job: Job, status: str, *, error: str | None = None) -> None:
        body = job.body
        body["status"] = status
        body["finished_at"] = self._now()
        if error is not None:
            body["error"] = {
                "code": "invalid_training_file",
                "message": error,
                "param": "training_file",
            }
            self._event(job, error, level="error")
        elif status == "succeeded":
            self._event(job, "The job has successfully completed")
        elif status == "cancelled":
            self._event(job, "Fine-tuning job cancelled")

    def _job(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def _retrieve_job(self, query: Any, headers: Any, body: Any, job_id: str) -> Any:
        job = self._job(job_id)
        if job is None:
            return _error(404, None, f"Could not find fine tune: {job_id}")
        self._advance(job)
        return 200, self._view(job), {}

    def _list_jobs(self, query: dict[str, list[str]], *_: Any) -> Any:
        # Azure's FineTuning_List takes no metadata filter (and its jobs have no metadata):
        # it lists every job of the resource, whatever the query says.
        wanted = {
            key[len("metadata[") : -1]: values[-1]
            for key, values in query.items()
            if key.startswith("metadata[") and key.endswith("]") and not self._azure
        }
        jobs = [
            self._view(job)
            for job in sorted(self.jobs.values(), key=lambda j: j.body["created_at"], reverse=True)
            if all((job.body["metadata"] or {}).get(k) == v for k, v in wanted.items())
        ]
        page, more = _page(jobs, query, default_limit=20)
        return 200, {"object": "list", "data": page, "has_more": more}, {}

    def _cancel_job(self, query: Any, headers: Any, body: Any, job_id: str) -> Any:
        job = self._job(job_id)
        if job is None:
            return _error(404, None, f"Could not find fine tune: {job_id}")
        if job.body["status"] in TERMINAL:
            return _error(400, "invalid_request_error", f"Job {job_id} has already completed.")
        self._finish(job, "cancelled")
        return 200, self._view(job), {}

    def _pause_job(self, query: Any, headers: Any, body: Any, job_id: str) -> Any:
        job = self._job(job_id)
        if job is None:
            return _error(404, None, f"Could not find fine tune: {job_id}")
        if job.body["status"] != "running":
            return _error(400, "invalid_request_error", f"Job {job_id} is not running.")
        # Both answer `paused` (pauseFineTuningJob's example; Azure's FineTuning_Pause's).
        job.body["status"] = "paused"
        self._event(job, "Fine-tuning job paused")
        return 200, self._view(job), {}

    def _resume_job(self, query: Any, headers: Any, body: Any, job_id: str) -> Any:
        job = self._job(job_id)
        if job is None:
            return _error(404, None, f"Could not find fine tune: {job_id}")
        if job.body["status"] != "paused":
            return _error(400, "invalid_request_error", f"Job {job_id} is not paused.")
        # Azure's FineTuning_Resume example answers `resuming`; OpenAI queues the job again.
        job.body["status"] = "resuming" if job.azure else "queued"
        self._event(job, "Fine-tuning job resumed")
        return 200, self._view(job), {}

    def _list_events(
        self, query: dict[str, list[str]], headers: Any, body: Any, job_id: str
    ) -> Any:
        job = self._job(job_id)
        if job is None:
            return _error(404, None, f"Could not find fine tune: {job_id}")
        page, more = _page(job.events[::-1], query, default_limit=20)
        return 200, {"object": "list", "data": page, "has_more": more}, {}

    def _list_checkpoints(
        self, query: dict[str, list[str]], headers: Any, body: Any, job_id: str
    ) -> Any:
        job = self._job(job_id)
        if job is None:
            return _error(404, None, f"Could not find fine tune: {job_id}")
        page, more = _page(job.checkpoints[::-1], query, default_limit=10)
        return 200, _list(page, more, empty_id=None), {}

    # ------------------------------------------------------------------ models and chat

    def _retrieve_model(self, query: Any, headers: Any, body: Any, model: str) -> Any:
        if model not in self.models:
            return _error(404, "model_not_found", f"The model '{model}' does not exist")
        return 200, self.models[model], {}

    def _learn(self, model: str, job: Job) -> None:
        """Remember what ``model`` was trained on: each training example's prompt and answer."""
        self.bases[model] = job.body["model"]
        learnt: dict[str, str] = {}
        for line in self.contents[job.body["training_file"]].splitlines():
            if not line.strip():
                continue
            example = json.loads(line)
            if "messages" in example:
                messages = example["messages"]
                last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
                prompt, answer = messages[:last], messages[last]["content"]
            else:  # a preference example: its input, and the preferred output
                prompt = example["input"]["messages"]
                answer = example["preferred_output"][-1]["content"]
            learnt[_prompt_key(prompt)] = answer
        self.trained[model] = learnt

    def _chat(self, query: Any, headers: Any, body: bytes) -> Any:
        request = json.loads(body)
        model = request["model"]
        if self._azure:
            if model not in self.deployments:
                return _error(404, "DeploymentNotFound", f"The deployment '{model}' does not exist")
            model = self.deployments[model]
        if model not in self.models:
            # As api.openai.com answers a chat request for a model it does not know, or one
            # the key may not use (the words client libraries quote from it).
            return _error(
                404,
                "model_not_found",
                f"The model `{model}` does not exist or you do not have access to it.",
            )
        refused = _chat_refusal(model, self.bases.get(model, model), request)
        if refused is not None:
            return refused
        messages = request["messages"]
        question = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        if model in self.judges:
            text = self.judges[model](request)
        else:
            learnt = self.trained.get(model, {}).get(_prompt_key(messages))
            text = learnt if learnt is not None else f"[{model}] You asked: {question}"
        words = text.split()  # a word is a token here
        limit = request.get("max_completion_tokens") or request.get("max_tokens") or 256
        finish = "length" if len(words) > limit else "stop"
        if finish == "length":
            text = " ".join(words[:limit])
        answer = {
            "id": self._id("chatcmpl-"),
            "object": "chat.completion",
            "created": self._now(),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "finish_reason": finish,
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": sum(len(str(m["content"]).split()) for m in messages),
                "completion_tokens": min(len(words), limit),
                "total_tokens": 0,
            },
        }
        answer["usage"]["total_tokens"] = (
            answer["usage"]["prompt_tokens"] + answer["usage"]["completion_tokens"]
        )
        return 200, answer, {}


def _prompt_key(messages: list[dict[str, Any]]) -> str:
    """A prompt as the fake compares prompts: each message's role and content."""
    return json.dumps([[m["role"], m.get("content")] for m in messages])


def _chat_refusal(model: str, base: str, request: dict[str, Any]) -> Any:
    """The 400 the service answers a chat request its model cannot take, or None.

    * More tokens than the model generates ("Max output tokens" on its model page; a
      fine-tuned model generates as many as its base): "max_tokens is too large: 999999.
      This model supports at most 16384 completion tokens, whereas you provided 999999."
      with param max_tokens (whichever field was sent) and code invalid_value, as
      api.openai.com answered gpt-4o-mini in a live call recorded 2026-06-21 (the same words,
      with code null in 2023: ChatGPTNextWeb/NextChat#3195).
    * A reasoning model takes no temperature but its default, 1: "Unsupported value:
      'temperature' does not support 0.5 with this model. Only the default (1) value is
      supported." code unsupported_value (leafo/lua-openai#12); nor the deprecated
      max_tokens, which the API description says "is not compatible with o-series models":
      "Unsupported parameter: 'max_tokens' is not supported with this model. Use
      'max_completion_tokens' instead." code unsupported_parameter
      (griptape-ai/ComfyUI-Griptape#312).
    """
    if base in REASONING_MODELS:
        if request.get("max_tokens") is not None:
            return _error(
                400,
                "unsupported_parameter",
                "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
                "'max_completion_tokens' instead.",
                "max_tokens",
            )
        temperature = request.get("temperature")
        if temperature is not None and temperature != 1:
            return _error(
                400,
                "unsupported_value",
                f"Unsupported value: 'temperature' does not support {temperature} with this "
                "model. Only the default (1) value is supported.",
                "temperature",
            )
    asked = request.get("max_completion_tokens") or request.get("max_tokens")
    most = MAX_OUTPUT_TOKENS.get(base)
    if asked is not None and most is not None and asked > most:
        return _error(
            400,
            "invalid_value",
            f"max_tokens is too large: {asked}. This model supports at most {most} completion "
            f"tokens, whereas you provided {asked}.",
            "max_tokens",
        )
    return None


def _metadata_refusal(request: dict[str, Any]) -> Any:
    """The OpenAI API's 400 for metadata over its prose limits (components.schemas.Metadata:
    16 pairs, keys up to 64 characters, values up to 512), or None. The wording and codes
    are the API's validation errors: "Invalid 'metadata': too many properties. Expected an
    object with at most 16 properties, but got an object with 17 properties instead." with
    code object_above_max_properties is reported from the service (Microsoft's
    foundry-samples, infrastructure-setup-bicep/19-hybrid-private-resources-agent-setup/
    docs/metadata), and "string too long" with string_above_max_length is how it words
    every over-long string (home-assistant/core#121325)."""
    metadata = request.get("metadata")
    if not isinstance(metadata, dict):
        return None
    if len(metadata) > METADATA_MAX_KEYS:
        return _error(
            400,
            "object_above_max_properties",
            "Invalid 'metadata': too many properties. Expected an object with at most "
            f"{METADATA_MAX_KEYS} properties, but got an object with {len(metadata)} "
            "properties instead.",
            "metadata",
        )
    for key, value in metadata.items():
        if len(key) > METADATA_MAX_KEY:
            return _error(
                400,
                "string_above_max_length",
                f"Invalid 'metadata': key too long. Expected a string with maximum length "
                f"{METADATA_MAX_KEY}, but got a string with length {len(key)} instead.",
                "metadata",
            )
        if isinstance(value, str) and len(value) > METADATA_MAX_VALUE:
            return _error(
                400,
                "string_above_max_length",
                f"Invalid 'metadata.{key}': string too long. Expected a string with maximum "
                f"length {METADATA_MAX_VALUE}, but got a string with length {len(value)} "
                "instead.",
                f"metadata.{key}",
            )
    return None


def _leaf(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """The error that says what is wrong: for a value failing every branch of a oneOf
    ("auto" or an integer up to 50), the branch's bound rather than "not 'auto'"."""
    if error.validator in {"oneOf", "anyOf"} and error.context:
        bounds = [e for e in error.context if e.validator not in {"type", "enum", "const"}]
        if bounds:
            return _leaf(bounds[0])
    return error


def _openai_validation_error(error: jsonschema.ValidationError) -> tuple[str | None, str, str]:
    """(code, message, param) of the API's 400 for ``error``, worded as the API words its
    validation errors: e.g. "Invalid 'n': integer above maximum value. Expected a value <=
    128, but got 130 instead." (code integer_above_max_value; thisisartium/continuous-
    alignment-testing#25), "Invalid 'max_tokens': integer below minimum value. Expected a
    value >= 1, ..." (Skytliang/Multi-Agents-Debate#8), "Invalid 'tools[11].function.name':
    string too long. ..." (string_above_max_length; home-assistant/core#121325)."""
    error = _leaf(error)
    param = ""
    for step in error.absolute_path:
        param += f"[{step}]" if isinstance(step, int) else (f".{step}" if param else str(step))
    value, limit, keyword = error.instance, error.validator_value, error.validator
    number = "decimal" if isinstance(value, float) else "integer"
    if keyword == "maxLength":
        return (
            "string_above_max_length",
            f"Invalid '{param}': string too long. Expected a string with maximum length "
            f"{limit}, but got a string with length {len(value)} instead.",
            param,
        )
    if keyword == "minLength":
        return (
            "string_below_min_length",
            f"Invalid '{param}': string too short. Expected a string with minimum length "
            f"{limit}, but got a string with length {len(value)} instead.",
            param,
        )
    if keyword in {"maximum", "exclusiveMaximum"}:
        bound = "<=" if keyword == "maximum" else "<"
        return (
            f"{number}_above_max_value",
            f"Invalid '{param}': {number} above maximum value. Expected a value {bound} "
            f"{limit}, but got {value} instead.",
            param,
        )
    if keyword in {"minimum", "exclusiveMinimum"}:
        bound = ">=" if keyword == "minimum" else ">"
        return (
            f"{number}_below_min_value",
            f"Invalid '{param}': {number} below minimum value. Expected a value {bound} "
            f"{limit}, but got {value} instead.",
            param,
        )
    if keyword == "required":
        missing = str(error.message).split("'")[1]
        return "missing_required_parameter", f"Missing required parameter: '{missing}'.", missing
    if keyword == "enum":
        supported = ", ".join(f"'{v}'" for v in limit)
        return (
            "invalid_value",
            f"Invalid value: '{value}'. Supported values are: {supported}.",
            param,
        )
    return None, f"Invalid '{param}': {error.message}", param


def _form(content_type: str, body: bytes) -> dict[str, Any]:
    """A multipart request as the fake records it: each text field's value, and for each
    file part its name, type and size (what a plan shows of an upload)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        if not isinstance(name, str):
            continue
        filename = part.get_filename()
        if filename is None and name != "data":
            fields[name] = data.decode("utf-8", "replace")
            continue
        entry: dict[str, Any] = {"bytes": len(data)}
        if name != "data":  # an Upload's part is bytes alone (AddUploadPartRequest)
            entry.update(filename=filename, content_type=part.get_content_type())
        fields[name] = entry
    return fields


def _public(upload: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in upload.items() if not key.startswith("_")}


def _page(
    items: list[dict[str, Any]], query: dict[str, list[str]], default_limit: int
) -> tuple[list[dict[str, Any]], bool]:
    after = query.get("after", [None])[-1]
    limit = int(query.get("limit", [default_limit])[-1])
    start = 0
    if after is not None:
        ids = [item["id"] for item in items]
        start = ids.index(after) + 1 if after in ids else len(items)
    page = items[start : start + limit]
    return page, start + limit < len(items)


def _list(page: list[dict[str, Any]], more: bool, *, empty_id: str | None) -> dict[str, Any]:
    """A list page with first_id/last_id; ``empty_id`` stands in for them on an empty page
    (ListFilesResponse requires strings, the checkpoints' list allows null)."""
    return {
        "object": "list",
        "data": page,
        "has_more": more,
        "first_id": page[0]["id"] if page else empty_id,
        "last_id": page[-1]["id"] if page else empty_id,
    }


_AZURE_CODES = {
    400: "invalidPayload",
    401: "unauthorized",
    403: "forbidden",
    404: "notFound",
    409: "conflict",
    429: "tooManyRequests",
    503: "serviceUnavailable",
}
"""Azure's ErrorCode for an answer the fake words OpenAI's way without a code."""


def _as_azure_error(status: int, answer: dict[str, Any]) -> dict[str, Any]:
    """An error answer in Azure's shape ({"error": {"code", "message", "target"?}})."""
    error = answer.get("error") or {}
    code = error.get("code") or _AZURE_CODES.get(status, "internalFailure")
    shaped: dict[str, Any] = {"code": code, "message": error.get("message") or "error"}
    target = error.get("target") or error.get("param")
    if target:
        shaped["target"] = target
    return {"error": shaped}


def _azure_error(
    status: int, code: str, message: str, target: str | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """An Azure OpenAI error: ErrorResponse of its description, {"error": {"code",
    "message", "target"}}, the code one of its ErrorCode values (invalidPayload, ...)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if target is not None:
        error["target"] = target
    return status, {"error": error}, {}


def _error(
    status: int, code: str | None, message: str, param: str | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    kind = {401: "invalid_request_error", 404: "invalid_request_error", 429: "requests"}.get(
        status, "invalid_request_error" if status < 500 else "server_error"
    )
    return status, {"error": {"message": message, "type": kind, "param": param, "code": code}}, {}


class _Handler(BaseHTTPRequestHandler):
    service: FakeOpenAI
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {key.lower(): value for key, value in self.headers.items()}
        try:
            status, answer, extra = self.service.handle(self.command, self.path, headers, body)
        except Exception as exc:  # a fake's bug is a 500 the test sees, not a hang
            self.service.violations.append(f"fake crashed on {self.command} {self.path}: {exc!r}")
            status, answer, extra = _error(500, None, f"fake crashed: {exc!r}")
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _serve  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:
        pass

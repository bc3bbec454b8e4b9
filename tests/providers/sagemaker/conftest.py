"""Fixtures of the SageMaker provider's tests: moto in server mode, and a job lifecycle.

moto is a real local AWS endpoint for S3, KMS, SageMaker, CloudWatch Logs and Application
Auto Scaling; boto3 reaches it through ``AWS_ENDPOINT_URL``. What moto 5.2.5 does not do is
added here, in this process (the server runs in a thread of it), without touching
tunefleet: training jobs that take time (moto's are ``Completed`` at once) and write the
trainer's lines to CloudWatch as they train, ``StopTrainingJob`` and ``UpdateEndpoint``
(moto answers 500 to both). Where moto's answer differs from AWS's, it is corrected here:
DescribeTrainingJob of a missing job answers AWS's own ``ValidationException: Requested
resource not found.`` (moto says "Could not find training job ..."). botocore still
validates every request against the service model.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tunefleet_trainer.metrics import format_checkpoint_line, format_metric_line

ACCOUNT = "123456789012"
REGION = "eu-west-1"
BUCKET = "acme-fine-tuning"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/tunefleet-training"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/tunefleet-trainer:0.1.0"
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
AWS_MISSING_JOB = "Requested resource not found."
DATA = Path(__file__).parents[3] / "examples" / "quickstart" / "data"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto on 127.0.0.1 for the session; yields its URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@dataclass
class Lifecycle:
    """Training jobs that start, train (logging the trainer's lines), and finish."""

    steps: int = 6
    epochs: int = 2
    fail_with: str | None = None
    """A FailureReason to end every job with, instead of completing it."""
    created: list[str] = field(default_factory=list)
    """CreateTrainingJob calls, by job name, in order (moto itself overwrites a duplicate)."""
    updates: list[dict[str, Any]] = field(default_factory=list)
    """UpdateEndpoint requests, as sent."""
    _ticks: dict[str, int] = field(default_factory=dict)

    STAGES = ("Starting", "Downloading", "Training", "Uploading")

    def on_create(self, job: Any) -> None:
        self.created.append(job.training_job_name)
        self._ticks[job.training_job_name] = 0
        now = datetime.now(UTC)
        job.training_job_status = "InProgress"
        job.secondary_status = "Starting"
        job.secondary_status_transitions = [
            {
                "Status": "Starting",
                "StartTime": now,
                "StatusMessage": "Launching requested ML instances",
            }
        ]
        job.training_end_time = None

    def on_describe(self, backend: Any, job: Any) -> None:
        """Move the job one stage on, as time would."""
        name = job.training_job_name
        if name not in self._ticks or job.training_job_status not in {"InProgress", "Stopping"}:
            return
        now = datetime.now(UTC)
        if job.training_job_status == "Stopping":
            self._end(job, "Stopped", "Stopped", "Training job stopped")
            return
        tick = self._ticks[name] = self._ticks[name] + 1
        if tick < len(self.STAGES):
            stage = self.STAGES[tick]
            job.secondary_status = stage
            job.secondary_status_transitions[-1]["EndTime"] = now
            job.secondary_status_transitions.append(
                {"Status": stage, "StartTime": now, "StatusMessage": f"{stage} in progress"}
            )
            if stage == "Training":
                self._log(backend, job)
            return
        if self.fail_with is not None:
            self._end(job, "Failed", "Failed", self.fail_with)
            job.failure_reason = self.fail_with
        else:
            self._end(job, "Completed", "Completed", "Training job completed")
            job.billable_time_in_seconds = 1234

    def _end(self, job: Any, primary: str, secondary: str, message: str) -> None:
        now = datetime.now(UTC)
        job.training_job_status = primary
        job.secondary_status = secondary
        job.secondary_status_transitions[-1]["EndTime"] = now
        job.secondary_status_transitions.append(
            {"Status": secondary, "StartTime": now, "EndTime": now, "StatusMessage": message}
        )
        job.training_end_time = now

    def _log(self, backend: Any, job: Any) -> None:
        """The trainer's lines, written where SageMaker writes a container's output."""
        from moto.logs.models import logs_backends

        logs = logs_backends[backend.account_id][backend.region_name]
        if LOG_GROUP not in logs.groups:
            logs.create_log_group(LOG_GROUP, tags={})
        stream = f"{job.training_job_name}/algo-1-{int(time.time())}"
        group = logs.groups[LOG_GROUP]
        group.create_log_stream(stream)
        base = int(time.time() * 1000)
        lines = ["tunefleet trainer starting", "loading the base model"]
        per_epoch = self.steps // self.epochs
        for step in range(1, self.steps + 1):
            lines.append(
                format_metric_line(
                    step=step,
                    total_steps=self.steps,
                    epoch=step / per_epoch,
                    train_loss=round(3.0 / step, 4),
                    learning_rate=1e-4,
                )
            )
            if step % per_epoch == 0:
                lines.append(
                    format_checkpoint_line(step=step, path=f"/opt/ml/checkpoints/checkpoint-{step}")
                )
        group.put_log_events(
            stream, [{"timestamp": base + i, "message": line} for i, line in enumerate(lines)]
        )


@pytest.fixture
def lifecycle(monkeypatch: pytest.MonkeyPatch) -> Lifecycle:
    from moto.sagemaker import responses
    from moto.sagemaker.models import SageMakerModelBackend

    life = Lifecycle()
    create = SageMakerModelBackend.create_training_job
    describe = SageMakerModelBackend.describe_training_job

    def create_training_job(backend: Any, *args: Any, **kwargs: Any) -> Any:
        job = create(backend, *args, **kwargs)
        life.on_create(job)
        return job

    def describe_training_job(backend: Any, training_job_name: str) -> dict[str, Any]:
        from moto.sagemaker.exceptions import ValidationError

        job = backend.training_jobs.get(training_job_name)
        if job is None:
            # AWS's answer for a job that does not exist (the issue that found it quotes
            # it; the API reference lists ResourceNotFound, which AWS does not send here).
            raise ValidationError(message=AWS_MISSING_JOB)
        life.on_describe(backend, job)
        return describe(backend, training_job_name)

    def stop_training_job(response: Any) -> Any:
        # Not in moto 5.2.5 (it answers 500); SageMaker's behaviour: Stopping, then Stopped.
        from moto.core.responses import ActionResult

        name = response._get_param("TrainingJobName")
        job = response.sagemaker_backend.training_jobs[name]
        if job.training_job_status == "InProgress":
            job.training_job_status = "Stopping"
            job.secondary_status = "Stopping"
        return ActionResult({})

    def update_endpoint(response: Any) -> Any:
        # Not in moto 5.2.5 (it answers 500): record the request, switch the config.
        from moto.core.responses import ActionResult

        request = json.loads(response.body)
        life.updates.append(request)
        endpoint = response.sagemaker_backend.endpoints[request["EndpointName"]]
        endpoint.endpoint_config_name = request["EndpointConfigName"]
        return ActionResult({"EndpointArn": endpoint.arn})

    monkeypatch.setattr(
        responses.SageMakerResponse, "update_endpoint", update_endpoint, raising=False
    )
    monkeypatch.setattr(SageMakerModelBackend, "create_training_job", create_training_job)
    monkeypatch.setattr(SageMakerModelBackend, "describe_training_job", describe_training_job)
    monkeypatch.setattr(
        responses.SageMakerResponse, "stop_training_job", stop_training_job, raising=False
    )
    return life


@dataclass
class Aws:
    """The account the tests run in: a bucket in eu-west-1 and a KMS key."""

    url: str
    kms_key: str

    def client(self, service: str, region: str = REGION) -> Any:
        import boto3

        return boto3.client(service, region_name=region)

    def endpoint_results(self, *bodies: dict[str, Any]) -> None:
        """Queue what moto's InvokeEndpoint answers next."""
        payload = {
            "account_id": ACCOUNT,
            "region": REGION,
            "results": [
                {"Body": json.dumps(body), "ContentType": "application/json"} for body in bodies
            ],
        }
        request = urllib.request.Request(
            f"{self.url}/moto-api/static/sagemaker/endpoint-results",
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=10).close()


@pytest.fixture
def aws(moto_server: str, monkeypatch: pytest.MonkeyPatch, lifecycle: Lifecycle) -> Aws:
    """A fresh moto account (reset per test) that boto3 in this process and in CLI
    subprocesses reaches through the environment."""
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
    import boto3

    boto3.client("s3", region_name=REGION).create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    key = boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["Arn"]
    return Aws(url=moto_server, kms_key=key)


def sagemaker_spec(
    aws: Aws, *, options: dict[str, Any] | None = None, validation: bool = True, **top: Any
) -> str:
    """A spec (JSON is YAML) training scratch:tiny on the quickstart data on SageMaker."""
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
                "provider": "sagemaker",
                "region": REGION,
                "compute": {"instance_type": "ml.g5.2xlarge"},
                "options": {
                    "role_arn": ROLE,
                    "bucket": BUCKET,
                    "training_image": IMAGE,
                    "endpoint_instance_type": "ml.m5.xlarge",
                    **(options or {}),
                },
            }
        ],
    }
    if not validation:
        del body["dataset"]["validation"]
    body.update(top)
    return json.dumps(body)

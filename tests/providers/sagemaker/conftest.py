"""Fixtures of the SageMaker provider's tests: moto in server mode, and a job lifecycle.

moto is a real local AWS endpoint for S3, KMS, SageMaker and its runtime, CloudWatch Logs
and alarms, Application Auto Scaling and Service Quotas; boto3 reaches it through
``AWS_ENDPOINT_URL``. botocore still validates every request against the service model.
Where moto 5.2.5 does less than AWS, or
answers otherwise, it is corrected in ONE place, :func:`behave_like_aws` (installed by the
``lifecycle`` fixture, so by every test that talks to AWS), in this process (the server
runs in a thread of it), without touching tunefleet. Each correction cites its source:

- Training jobs take time (moto's are ``Completed`` at once) and write the trainer's lines
  to CloudWatch as they train; ``StopTrainingJob`` exists (moto answers 500).
- A missing training job, model, endpoint config or endpoint is answered in AWS's words
  (moto words them its own way); a model, endpoint config or endpoint created under a name
  that is taken is refused (moto overwrites it).
- Endpoints (:func:`_endpoints_like_aws`): ``UpdateEndpoint`` exists (moto answers 500) and
  honours RetainAllVariantProperties; it and ``UpdateEndpointWeightsAndCapacities`` leave the
  endpoint Updating for a while, during which SageMaker refuses to change it; weights are
  kept as SageMaker keeps them (0, and 1.0 when unset); an update may not remove a variant
  registered for autoscaling or change its instance type; ``InvokeEndpoint`` refuses an
  endpoint or a TargetVariant that does not exist, routes to the target, and names the
  variant that answered.
- CreateTrainingJob keeps ``Environment``, ``RetryStrategy`` and ``MetricDefinitions`` as
  sent (moto drops the first two and replaces the third), refuses ``VolumeKmsKeyId`` on an
  instance type with local NVMe storage as SageMaker does, and answers
  ``ResourceLimitExceeded`` when the account's quota for the instance type (``quotas``
  below) cannot fit the job next to the instances running jobs hold.
- CreateEndpointConfig refuses ``KmsKeyId`` when a variant's instance type has local NVMe
  storage.
- S3 records the ARN of the KMS key an object is encrypted with, however the request named
  it (moto echoes the alias or id back), and refuses a key it cannot find or one in
  another region.
- Application Auto Scaling tags a scalable target when it is registered and lists its
  tags (moto drops them and has no ListTagsForResource).
- Service Quotas knows SageMaker's training quotas (moto knows only VPC's) and answers
  ListServiceQuotas (moto does not implement it).

moto runs no container. What the trainer would write is written for it: its lines to
CloudWatch while a job trains (``Lifecycle._log``), and, for a job created with an
evaluation, the golden set's answers uploaded as SageMaker uploads ``/opt/ml/output/data``
when a job ends (:func:`container_output_data`, the one stand-in for the container's
output files). Behind an endpoint, a model answers the golden questions of the job that
trained it as that job did (:meth:`Lifecycle.served_answer`); anything else is answered from
moto's queued results (:meth:`Aws.endpoint_results`).
"""

from __future__ import annotations

import inspect
import io
import json
import random
import tarfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tunefleet_trainer.metrics import format_checkpoint_line, format_metric_line
from tunefleet_trainer.predictions import (
    BASELINE_PREDICTIONS_NAME,
    PREDICTIONS_NAME,
    GoldenExample,
    Prediction,
    parse_golden_line,
)

ACCOUNT = "123456789012"
REGION = "eu-west-1"
BUCKET = "acme-fine-tuning"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/tunefleet-training"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/tunefleet-trainer:0.1.0"
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
AWS_MISSING_JOB = "Requested resource not found."
DATA = Path(__file__).parents[3] / "examples" / "quickstart" / "data"


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
    weight_updates: list[dict[str, Any]] = field(default_factory=list)
    """UpdateEndpointWeightsAndCapacities requests, as sent."""
    creates: list[tuple[str, str]] = field(default_factory=list)
    """(kind, name) of each model, endpoint config and endpoint created, in order."""
    changing_for: int = 1
    """DescribeEndpoint answers during which an updated endpoint is still ``Updating``."""
    failing_update: str | None = None
    """A FailureReason each UpdateEndpoint ends with, rolled back, instead of being made."""
    quotas: dict[str, float] = field(default_factory=dict)
    """Applied SageMaker quotas by name ("ml.g5.2xlarge for training job usage"), as the
    account's Service Quotas lists them; a quota not here is not enforced."""
    default_quotas: dict[str, float] = field(default_factory=dict)
    """Default SageMaker quotas by name (ListAWSDefaultServiceQuotas), used where no applied
    value is listed; a quota in neither is not enforced."""
    quotas_readable: bool = True
    """False: Service Quotas answers AccessDeniedException (the caller may not read it)."""
    trained_answer: Callable[[GoldenExample], str] = lambda example: example.expected
    """What the trained model answers a golden example (by default, what it expects)."""
    baseline_answer: Callable[[GoldenExample], str] = lambda example: "I do not know."
    """What the base model answers a golden example."""
    output_data: dict[str, bytes] | None = None
    """Files the container leaves in /opt/ml/output/data instead of the golden set's answers
    (None: the answers, for a job created with an evaluation)."""
    _ticks: dict[str, int] = field(default_factory=dict)
    _trained: dict[str, Callable[[GoldenExample], str]] = field(default_factory=dict)

    STAGES = ("Starting", "Downloading", "Training", "Uploading")

    def on_create(self, job: Any) -> None:
        self.created.append(job.training_job_name)
        self._ticks[job.training_job_name] = 0
        self._trained[job.training_job_name] = self.trained_answer
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
            files = (
                self.output_data if self.output_data is not None else self._answers(backend, job)
            )
            if files:
                container_output_data(backend, job, files)
            self._end(job, "Completed", "Completed", "Training job completed")
            job.billable_time_in_seconds = 1234

    def _golden(self, backend: Any, job: Any, limited: bool = True) -> list[GoldenExample]:
        """The golden examples a job created with an evaluation answers: its config read from
        the job's hyperparameter, the golden set from its channel (the first
        ``max_examples`` of them unless not ``limited``)."""
        from moto.s3.models import s3_backends

        config = json.loads((job.hyper_parameters or {}).get("tunefleet_config", "{}"))
        evaluation = config.get("evaluation")
        if not evaluation:
            return []
        channel = evaluation["golden_set"].rsplit("/", 1)[1]
        (uri,) = [
            c["DataSource"]["S3DataSource"]["S3Uri"]
            for c in job.input_data_config
            if c["ChannelName"] == channel
        ]
        bucket, key = uri.removeprefix("s3://").split("/", 1)
        s3 = s3_backends[backend.account_id]["global"]
        lines = [line for line in s3.get_object(bucket, key).value.splitlines() if line.strip()]
        limit = (limited and evaluation.get("max_examples")) or len(lines)
        return [
            parse_golden_line(line, index=index, line=index + 1, source=uri)
            for index, line in enumerate(lines[:limit])
        ]

    def served_answer(self, backend: Any, model_data: str, request: Any) -> str | None:
        """What the model in ``model_data`` answers a chat request behind an endpoint (moto
        runs no container): for a golden question of the job that trained it, what that job's
        trained model answered (:attr:`trained_answer` when the job was created); None for
        anything else (moto's queued results answer then)."""
        messages = request.get("messages") if isinstance(request, dict) else None
        for job in backend.training_jobs.values():
            if job.model_artifacts.get("S3ModelArtifacts") != model_data:
                continue
            answer = self._trained.get(job.training_job_name, self.trained_answer)
            for example in self._golden(backend, job, limited=False):
                if example.prompt == messages:
                    return answer(example)
        return None

    def _answers(self, backend: Any, job: Any) -> dict[str, bytes]:
        """The predictions files the trainer writes for a job created with an evaluation."""
        config = json.loads((job.hyper_parameters or {}).get("tunefleet_config", "{}"))
        evaluation = config.get("evaluation")
        if not evaluation:
            return {}
        examples = self._golden(backend, job)

        def answers(answer: Callable[[GoldenExample], str]) -> bytes:
            return b"".join(
                Prediction(index=e.index, text=answer(e), finish_reason="stop")
                .model_dump_json(exclude_none=True)
                .encode()
                + b"\n"
                for e in examples
            )

        files = {PREDICTIONS_NAME: answers(self.trained_answer)}
        if evaluation.get("baseline"):
            files[BASELINE_PREDICTIONS_NAME] = answers(self.baseline_answer)
        return files

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


def output_tar_gz(files: dict[str, bytes]) -> bytes:
    """A gzip-compressed tar of ``files`` at its root, as SageMaker packs a directory."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = int(time.time())
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def container_output_data(backend: Any, job: Any, files: dict[str, bytes]) -> str:
    """Stands in for the training container and SageMaker's upload of its output data
    (moto runs no container): the ``files`` the container left in /opt/ml/output/data,
    packed as "a single object in compressed tar format" when the job ends (How Amazon
    SageMaker AI Processes Training Output,
    https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo-output.html)
    at ``<S3OutputPath>/<job>/output/output.tar.gz`` beside model.tar.gz (the key AWS's
    sagemaker-core builds, ``build_nova_output_tar_gz_s3_uri``), encrypted with
    OutputDataConfig.KmsKeyId ("SageMaker uses server-side encryption with KMS-managed keys
    for OutputDataConfig", API_OutputDataConfig.html). Returns the object's S3 URI."""
    from moto.s3.models import s3_backends

    output = job.output_data_config
    uri = f"{output['S3OutputPath'].rstrip('/')}/{job.training_job_name}/output/output.tar.gz"
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    s3 = s3_backends[backend.account_id]["global"]
    encryption: dict[str, Any] = {}
    if output.get("KmsKeyId"):
        encryption = {"encryption": "aws:kms", "kms_key_id": output["KmsKeyId"]}
    s3.put_object(bucket, key, output_tar_gz(files), **encryption)
    return uri


AWS_MISSING = {
    "model": 'Could not find model "{arn}".',
    "endpoint-config": 'Could not find endpoint configuration "{arn}".',
    "endpoint": 'Could not find endpoint "{arn}".',
}
"""AWS's words for a Describe of a model, endpoint config or endpoint that does not exist
(a ValidationException), as users quote them: "Could not find endpoint configuration
\"arn:aws:sagemaker:us-west-2:521695447989:endpoint-config/...\"."
(https://github.com/aws/amazon-sagemaker-examples/issues/2339); moto writes single quotes."""

LOCAL_STORAGE_FAMILIES = frozenset(
    {
        "c5d", "m5d", "r5d", "c6gd", "m6gd", "r6gd", "r7gd", "g4dn", "p3dn", "dl1",
        "p4d", "p4de", "p5", "p5e", "p5en", "g5", "g6", "g6e", "g7e",
        "trn1", "trn1n", "trn2", "p6-b200", "p6-b300", "p6e-gb200",
    }
)  # fmt: skip
"""Families of the SageMaker instance types that come with NVMe instance store volumes, from
EC2's instance type specifications ("Instance store specifications",
https://docs.aws.amazon.com/ec2/latest/instancetypes/), written here independently of the
provider's rule so that a wrong rule there fails a test."""

QUOTA_CODES = {
    "ml.g4dn.xlarge for training job usage": "L-3F53BF0F",
}
"""Real quota codes where known (aws-samples/amazon-sagemaker-promote-code-not-models,
terraform/main/service_quotas.tf); others get a stable made-up code of the same form."""


def quota_code(name: str) -> str:
    import hashlib

    return QUOTA_CODES.get(name) or "L-" + hashlib.sha256(name.encode()).hexdigest()[:8].upper()


def quota(name: str, value: float, region: str = REGION) -> dict[str, Any]:
    """One quota as Service Quotas describes it (ServiceQuota shape of its API reference)."""
    code = quota_code(name)
    return {
        "ServiceCode": "sagemaker",
        "ServiceName": "Amazon SageMaker",
        "QuotaArn": f"arn:aws:servicequotas:{region}:{ACCOUNT}:sagemaker/{code}",
        "QuotaCode": code,
        "QuotaName": name,
        "Value": float(value),
        "Unit": "None",
        "Adjustable": True,
        "GlobalQuota": False,
    }


OTHER_QUOTAS = {
    "ml.g4dn.xlarge for training job usage": 0.0,
    "ml.m5.xlarge for training job usage": 4.0,
    "ml.m5.xlarge for spot training job usage": 4.0,
    "Number of instances across all training jobs": 4.0,
}
"""Default SageMaker quotas listed beside the ones a test sets, so a lookup must find its
quota by name among others (0 for GPU types is what new accounts get)."""


def _aws_error() -> type[Exception]:
    from moto.core.exceptions import ServiceException

    class AwsError(ServiceException):
        """An error with AWS's code and words, which moto serializes in the shape the
        answering service's model gives that code (a class outside moto's packages is
        looked up in the model of the service that was called)."""

    return AwsError


@pytest.fixture
def lifecycle(monkeypatch: pytest.MonkeyPatch) -> Lifecycle:
    """Training jobs with a lifecycle, and moto behaving like AWS (:func:`behave_like_aws`)."""
    life = Lifecycle()
    behave_like_aws(monkeypatch, life)
    return life


def behave_like_aws(monkeypatch: pytest.MonkeyPatch, life: Lifecycle) -> None:
    """THE place where moto is made to behave like AWS, each correction with its source."""
    from moto.applicationautoscaling.responses import ApplicationAutoScalingResponse
    from moto.core.responses import ActionResult
    from moto.kms.models import kms_backends
    from moto.s3.exceptions import S3ClientError
    from moto.s3.models import S3Backend
    from moto.sagemaker import responses
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.models import SageMakerModelBackend
    from moto.servicequotas.models import ServiceQuotasBackend
    from moto.servicequotas.responses import ServiceQuotasResponse

    AwsError = _aws_error()  # noqa: N806 (a class)

    def local_storage(instance_type: str) -> bool:
        return instance_type.split(".")[1] in LOCAL_STORAGE_FAMILIES

    # -- SageMaker training jobs -------------------------------------------------------------
    create = SageMakerModelBackend.create_training_job
    describe = SageMakerModelBackend.describe_training_job
    create_response = responses.SageMakerResponse.create_training_job

    def create_training_job(backend: Any, *args: Any, **kwargs: Any) -> Any:
        job = create(backend, *args, **kwargs)
        life.on_create(job)
        return job

    def create_training_job_response(response: Any) -> Any:
        request = json.loads(response.body)
        resources = request["ResourceConfig"]
        instance, count = resources["InstanceType"], resources["InstanceCount"]
        if "VolumeKmsKeyId" in resources and local_storage(instance):
            # ResourceConfig.VolumeKmsKeyId: "You can't request a VolumeKmsKeyId when using
            # an instance type with local storage." (API_ResourceConfig.html). The
            # reference quotes no wording; the code is the one SageMaker uses for a refused
            # request.
            raise ValidationError(
                message=f"Instance type {instance} has local NVMe instance storage, which is "
                "encrypted by the instance; VolumeKmsKeyId is not supported for it."
            )
        spot = bool(request.get("EnableManagedSpotTraining"))
        name = f"{instance} for {'spot ' if spot else ''}training job usage"
        limit = life.quotas.get(name, life.default_quotas.get(name))
        if limit is not None:
            held = sum(
                job.resource_config["InstanceCount"]
                for job in response.sagemaker_backend.training_jobs.values()
                if job.training_job_status in {"InProgress", "Stopping"}
                and job.resource_config["InstanceType"] == instance
                and bool(job.enable_managed_spot_training) == spot
            )
            if held + count > limit:
                # SageMaker's answer, as users quote it (CreateTrainingJob "Errors":
                # ResourceLimitExceeded, HTTP 400; the wording from
                # https://github.com/vietanhdev/sagemaker-yolo-terraform docs and AWS re:Post).
                raise AwsError(
                    "ResourceLimitExceeded",
                    f"The account-level service limit '{name}' is {limit:g} Instances, with "
                    f"current utilization of {held} Instances and a request delta of {count} "
                    "Instances. Please use AWS Service Quotas to request an increase for this "
                    "quota. If AWS Service Quotas is not available, contact AWS support to "
                    "request an increase for this quota.",
                )
        result = create_response(response)
        # Kept as sent: moto drops Environment and RetryStrategy and replaces
        # MetricDefinitions with its own (DescribeTrainingJob returns all three as created).
        job = response.sagemaker_backend.training_jobs[request["TrainingJobName"]]
        job.environment = request.get("Environment")
        job.retry_strategy = request.get("RetryStrategy")
        job.algorithm_specification = request["AlgorithmSpecification"]
        return result

    def describe_training_job(backend: Any, training_job_name: str) -> dict[str, Any]:
        job = backend.training_jobs.get(training_job_name)
        if job is None:
            # AWS's answer for a job that does not exist (the issue that found it quotes
            # it; the API reference lists ResourceNotFound, which AWS does not send here).
            raise ValidationError(message=AWS_MISSING_JOB)
        life.on_describe(backend, job)
        return describe(backend, training_job_name)

    def stop_training_job(response: Any) -> Any:
        # Not in moto 5.2.5 (it answers 500); SageMaker's behaviour: Stopping, then Stopped.
        name = response._get_param("TrainingJobName")
        job = response.sagemaker_backend.training_jobs[name]
        if job.training_job_status == "InProgress":
            job.training_job_status = "Stopping"
            job.secondary_status = "Stopping"
        return ActionResult({})

    # -- S3 with SSE-KMS ----------------------------------------------------------------------
    put_object = S3Backend.put_object
    put_signature = inspect.signature(put_object)

    def s3_put_object(backend: Any, *args: Any, **kwargs: Any) -> Any:
        bound = put_signature.bind(backend, *args, **kwargs)
        given = bound.arguments.get("kms_key_id")
        if given and bound.arguments.get("encryption") == "aws:kms":
            bucket = backend.get_bucket(bound.arguments["bucket_name"])
            kms = kms_backends[backend.account_id][bucket.region_name]
            named_region = given.split(":")[3] if given.startswith("arn:") else None
            if named_region is not None and named_region != bucket.region_name:
                # A key in another region than the bucket: "KMS.NotFoundException: Invalid
                # arn <region>" (AWS's answer, as https://github.com/apache/hadoop/pull/4637
                # and localstack PR 7448 quote it).
                raise S3ClientError("KMS.NotFoundException", f"Invalid arn {named_region}")
            try:
                key_id = kms.any_id_to_key_id(given)
            except (AttributeError, TypeError):  # moto's lookup of an alias that is not there
                key_id = None
            if key_id not in kms.keys:
                # "KMS.NotFoundException: Invalid keyId ..." (https://github.com/aws/aws-cli/issues/4507)
                raise S3ClientError("KMS.NotFoundException", f"Invalid keyId {given}")
            # S3 records the key's ARN whatever named it ("Key 'arn:aws:kms:...:key/...' does
            # not exist" for a key given by id, https://github.com/minio/minio/issues/6582);
            # HeadObject answers it in x-amz-server-side-encryption-aws-kms-key-id.
            bound.arguments["kms_key_id"] = kms.keys[key_id].arn
        return put_object(*bound.args, **bound.kwargs)

    # -- Application Auto Scaling tags ------------------------------------------------------
    register_response = ApplicationAutoScalingResponse.register_scalable_target

    def register_scalable_target(response: Any) -> Any:
        backend = response.applicationautoscaling_backend
        resource, dimension = (
            response._get_param("ResourceId"),
            response._get_param("ScalableDimension"),
        )
        existed = backend._scalable_target_exists(resource, dimension)
        result = register_response(response)
        tags = response._get_param("Tags")
        if tags and not existed:
            # RegisterScalableTarget.Tags: "Use this parameter to tag the scalable target
            # when it is created. To tag an existing scalable target, use the TagResource
            # operation."
            backend.targets[dimension][resource].tags = dict(tags)
        return result

    def list_tags_for_resource(response: Any) -> Any:
        # ListTagsForResource (API_ListTagsForResource.html): the target's tags by its ARN.
        arn = response._get_param("ResourceARN")
        backend = response.applicationautoscaling_backend
        for targets in backend.targets.values():
            for target in targets.values():
                if target.arn == arn:
                    return json.dumps({"Tags": getattr(target, "tags", {})})
        raise AwsError("ResourceNotFoundException", f"No scalable target {arn}")

    # -- Service Quotas -------------------------------------------------------------------------
    list_defaults = ServiceQuotasBackend.list_aws_default_service_quotas

    def readable() -> None:
        if not life.quotas_readable:
            # Service Quotas' error for a caller without servicequotas:List* permissions.
            raise AwsError(
                "AccessDeniedException", "You do not have sufficient access to perform this action."
            )

    def list_aws_default_service_quotas(backend: Any, service_code: str) -> Any:
        readable()
        if service_code == "sagemaker":
            defaults = {**OTHER_QUOTAS, **life.default_quotas}
            return [quota(n, v, backend.region_name) for n, v in defaults.items()]
        return list_defaults(backend, service_code)

    def list_service_quotas(response: Any) -> Any:
        # ListServiceQuotas: "Lists the applied quota values ... If the applied quota value
        # is not available for a quota, the quota is not retrieved."
        readable()
        code = json.loads(response.body).get("ServiceCode")
        if code != "sagemaker":
            raise AwsError("NoSuchResourceException", f"No applied quotas for {code}")
        applied = [quota(n, v, response.backend.region_name) for n, v in life.quotas.items()]
        return json.dumps({"Quotas": applied})

    monkeypatch.setattr(SageMakerModelBackend, "create_training_job", create_training_job)
    monkeypatch.setattr(SageMakerModelBackend, "describe_training_job", describe_training_job)
    monkeypatch.setattr(
        responses.SageMakerResponse, "create_training_job", create_training_job_response
    )
    monkeypatch.setattr(
        responses.SageMakerResponse, "stop_training_job", stop_training_job, raising=False
    )
    _endpoints_like_aws(monkeypatch, life, local_storage)
    monkeypatch.setattr(S3Backend, "put_object", s3_put_object)
    monkeypatch.setattr(
        ApplicationAutoScalingResponse, "register_scalable_target", register_scalable_target
    )
    monkeypatch.setattr(
        ApplicationAutoScalingResponse,
        "list_tags_for_resource",
        list_tags_for_resource,
        raising=False,
    )
    monkeypatch.setattr(
        ServiceQuotasBackend, "list_aws_default_service_quotas", list_aws_default_service_quotas
    )
    monkeypatch.setattr(
        ServiceQuotasResponse, "list_service_quotas", list_service_quotas, raising=False
    )


SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"


def _variant_summaries(
    variants: list[dict[str, Any]],
    before: list[dict[str, Any]] | None = None,
    excluded: frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """DescribeEndpoint's ProductionVariants for a config's ``variants``: each weight its
    InitialVariantWeight, 1.0 when unset ("If unspecified, it defaults to 1.0",
    ProductionVariant), 0 when 0 (moto drops a weight of 0 and an unset one); with
    ``before`` (UpdateEndpoint's RetainAllVariantProperties), a variant of the same name
    keeps its current weight and instance count, but what ``excluded``
    (ExcludeRetainedVariantProperties) names."""
    kept = {v["VariantName"]: v for v in before or []}
    summaries = []
    for variant in variants:
        weight = float(variant.get("InitialVariantWeight", 1.0))
        count = variant.get("InitialInstanceCount")
        old = kept.get(variant["VariantName"])
        if old is not None:
            if "DesiredWeight" not in excluded:
                weight = old.get("CurrentWeight", weight)
            if "DesiredInstanceCount" not in excluded:
                count = old.get("CurrentInstanceCount", count)
        summary: dict[str, Any] = {
            "VariantName": variant["VariantName"],
            "CurrentWeight": weight,
            "DesiredWeight": weight,
        }
        if count is not None:
            summary.update(CurrentInstanceCount=count, DesiredInstanceCount=count)
        summaries.append(summary)
    return summaries


def _endpoints_like_aws(
    monkeypatch: pytest.MonkeyPatch, life: Lifecycle, local_storage: Callable[[str], bool]
) -> None:
    """:func:`behave_like_aws` for SageMaker endpoints and their runtime, each correction
    with its source."""
    from moto.applicationautoscaling.models import applicationautoscaling_backends
    from moto.core.responses import ActionResult
    from moto.sagemaker import responses
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.models import FakeEndpoint, SageMakerModelBackend, sagemaker_backends
    from moto.sagemaker.utils import arn_formatter
    from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

    AwsError = _aws_error()  # noqa: N806 (a class)
    changing: dict[tuple[str, str, str], list[Any]] = {}
    """Endpoints being updated: DescribeEndpoint answers left while Updating, and what the
    update does when it is done."""

    def arn(backend: Any, kind: str, name: str) -> str:
        return arn_formatter(kind, name, backend.account_id, backend.region_name)

    def missing(backend: Any, kind: str, name: str) -> Exception:
        return ValidationError(message=AWS_MISSING[kind].format(arn=arn(backend, kind, name)))

    def in_progress(endpoint: Any) -> Exception:
        # SageMaker refuses UpdateEndpoint, UpdateEndpointWeightsAndCapacities and
        # DeleteEndpoint while an endpoint changes, in these words (AWS's SageMaker Operator
        # for Kubernetes, aws/amazon-sagemaker-operator-for-k8s,
        # controllers/sdkutil/clientwrapper/sagemaker_client.go:
        # DeleteEndpointInProgressMessagePrefix "Cannot update in-progress endpoint", code
        # ValidationException; users quote the same for UpdateEndpointWeightsAndCapacities).
        return ValidationError(message=f'Cannot update in-progress endpoint "{endpoint.arn}".')

    def key(backend: Any, name: str) -> tuple[str, str, str]:
        return (backend.account_id, backend.region_name, name)

    def changes(backend: Any, endpoint: Any, done: Callable[[], None]) -> None:
        """Updating for :attr:`Lifecycle.changing_for` DescribeEndpoint answers, then
        InService with ``done`` done ("When SageMaker receives the request, it sets the
        endpoint status to Updating. After updating the endpoint, it sets the status to
        InService", UpdateEndpoint and UpdateEndpointWeightsAndCapacities)."""
        endpoint.endpoint_status = "Updating"

        def finish() -> None:
            done()
            endpoint.endpoint_status = "InService"

        if life.changing_for <= 0:
            finish()
        else:
            changing[key(backend, endpoint.endpoint_name)] = [life.changing_for, finish]

    # -- Creates: a name that is taken is refused -------------------------------------------
    def refusing_duplicates(kind: str, label: str, argument: str, table: str, original: Any) -> Any:
        def create(response: Any) -> Any:
            backend = response.sagemaker_backend
            name = json.loads(response.body)[argument]
            if name in getattr(backend, table):
                # moto overwrites a resource created again; SageMaker refuses: "Cannot create
                # already existing model" (AWS's SDK, sagemaker.session.Session.create_model,
                # which reuses the model on ValidationException with these words; the same for
                # endpoint configurations and endpoints).
                raise ValidationError(
                    message=f'Cannot create already existing {label} "{arn(backend, kind, name)}".'
                )
            result = original(response)
            life.creates.append((kind, name))
            return result

        return create

    create_config = responses.SageMakerResponse.create_endpoint_config

    def create_endpoint_config(response: Any) -> Any:
        request = json.loads(response.body)
        if request.get("KmsKeyId"):
            for variant in request.get("ProductionVariants", []):
                if local_storage(variant.get("InstanceType", "ml.none.none")):
                    # CreateEndpointConfig.KmsKeyId: "If you specify a value for KmsKeyId
                    # when using any nitro-based instances with local storage, the call to
                    # CreateEndpointConfig fails." (API_CreateEndpointConfig.html)
                    raise ValidationError(
                        message=f"KmsKeyId is not supported for {variant['InstanceType']}, "
                        "which has local NVMe instance storage."
                    )
        return create_config(response)

    # -- Describes in AWS's words; endpoints that take time ----------------------------------
    def in_aws_words(kind: str, table: str, original: Any) -> Any:
        def lookup(backend: Any, name: str) -> Any:
            if name not in getattr(backend, table):
                raise missing(backend, kind, name)
            if kind == "endpoint":
                pending = changing.get(key(backend, name))
                if pending is not None:
                    if pending[0] <= 0:
                        del changing[key(backend, name)]
                        pending[1]()
                    else:
                        pending[0] -= 1
            return original(backend, name)

        return lookup

    def describe_endpoint_config(response: Any) -> Any:
        described = dict(
            response.sagemaker_backend.describe_endpoint_config(
                response._get_param("EndpointConfigName")
            )
        )
        if not described.get("DataCaptureConfig"):
            # moto answers an empty DataCaptureConfig for a config without one; SageMaker
            # leaves it out (DescribeEndpointConfig: an optional member, set when capturing).
            described.pop("DataCaptureConfig", None)
        return ActionResult(described)

    # -- UpdateEndpoint ----------------------------------------------------------------------
    def update_endpoint(response: Any) -> Any:
        # Not in moto 5.2.5 (it answers 500). As SageMaker does it (UpdateEndpoint): the
        # endpoint is Updating, then serves the config's variants; with
        # RetainAllVariantProperties, a variant of the same name keeps its instance count and
        # weight "regardless of the values of the InitialInstanceCount field in the new
        # EndpointConfig" (Update endpoints that use automatic scaling).
        request = json.loads(response.body)
        life.updates.append(request)
        backend = response.sagemaker_backend
        name, config_name = request["EndpointName"], request["EndpointConfigName"]
        endpoint = backend.endpoints.get(name)
        if endpoint is None:
            raise missing(backend, "endpoint", name)
        if endpoint.endpoint_status != "InService":
            raise in_progress(endpoint)
        config = backend.endpoint_configs.get(config_name)
        if config is None:
            raise missing(backend, "endpoint-config", config_name)
        old = backend.endpoint_configs.get(endpoint.endpoint_config_name)
        types = {v["VariantName"]: v.get("InstanceType") for v in config.production_variants}
        scaled = applicationautoscaling_backends[backend.account_id][backend.region_name]
        targets = scaled.targets.get(SCALABLE_DIMENSION, {})
        blocked = sorted(
            v["VariantName"]
            for v in (old.production_variants if old else [])
            if f"endpoint/{name}/variant/{v['VariantName']}" in targets
            and types.get(v["VariantName"], "(removed)") != v.get("InstanceType")
        )
        if blocked:
            # "If the update would change the instance type for any model that is a target
            # for automatic scaling, the update fails", and so does removing such a variant
            # (Update endpoints that use automatic scaling; AWS does not quote its words).
            raise ValidationError(
                message=f"The variant(s) {', '.join(blocked)} of endpoint {name} are targets of "
                "automatic scaling; deregister them before an update removes them or changes "
                "their instance type."
            )
        retain = bool(request.get("RetainAllVariantProperties"))
        excluded = frozenset(
            p["VariantPropertyType"] for p in request.get("ExcludeRetainedVariantProperties", [])
        )

        def done() -> None:
            if life.failing_update is not None:
                # A failed update is rolled back: "If an update fails, the endpoint goes back
                # to InService state with a FailureReason about the error" (AWS's SageMaker
                # controller for Kubernetes, aws-controllers-k8s/sagemaker-controller#7), with
                # its previous config (hashicorp/terraform-provider-aws#48997).
                endpoint.failure_reason = life.failing_update
                return
            endpoint.failure_reason = None
            endpoint.endpoint_config_name = config_name
            endpoint.production_variants = _variant_summaries(
                config.production_variants,
                endpoint.production_variants if retain else None,
                excluded,
            )

        changes(backend, endpoint, done)
        return ActionResult({"EndpointArn": endpoint.arn})

    # -- UpdateEndpointWeightsAndCapacities -------------------------------------------------
    def update_weights(
        backend: Any, endpoint_name: str, desired_weights_and_capacities: list[dict[str, Any]]
    ) -> str:
        # moto changes the weights at once, keeps no Updating status, and sets the instance
        # count of a variant it was not given to None. SageMaker: Updating, then InService
        # with the weights (UpdateEndpointWeightsAndCapacities); DescribeEndpoint shows the
        # DesiredWeight asked for and the CurrentWeight until then ("If you sent a request to
        # the UpdateEndpointWeightsAndCapacities API and the endpoint status is Updating, you
        # get different desired and current values", ProductionVariantSummary); a count not
        # asked for is kept.
        life.weight_updates.append(
            {
                "EndpointName": endpoint_name,
                "DesiredWeightsAndCapacities": desired_weights_and_capacities,
            }
        )
        endpoint = backend.endpoints.get(endpoint_name)
        if endpoint is None:
            raise missing(backend, "endpoint", endpoint_name)
        if endpoint.endpoint_status != "InService":
            raise in_progress(endpoint)
        variants = {v["VariantName"]: v for v in endpoint.production_variants}
        names = [entry["VariantName"] for entry in desired_weights_and_capacities]
        for name in names:
            # moto's words for these two (the reference quotes none).
            if names.count(name) > 1:
                raise ValidationError(
                    message=f'The variant name "{name}" was non-unique within the request.'
                )
            if name not in variants:
                raise ValidationError(
                    message=f'The variant name(s) "{name}" is/are not present within endpoint '
                    f'configuration "{endpoint.endpoint_config_name}".'
                )
        for entry in desired_weights_and_capacities:
            variant = variants[entry["VariantName"]]
            if "DesiredWeight" in entry:
                variant["DesiredWeight"] = float(entry["DesiredWeight"])
            if "DesiredInstanceCount" in entry:
                variant["DesiredInstanceCount"] = entry["DesiredInstanceCount"]

        def done() -> None:
            for variant in endpoint.production_variants:
                variant["CurrentWeight"] = variant.get("DesiredWeight", 1.0)
                if "DesiredInstanceCount" in variant:
                    variant["CurrentInstanceCount"] = variant["DesiredInstanceCount"]

        changes(backend, endpoint, done)
        return str(endpoint.arn)

    delete_original = SageMakerModelBackend.delete_endpoint

    def delete_endpoint(backend: Any, endpoint_name: str) -> None:
        endpoint = backend.endpoints.get(endpoint_name)
        if endpoint is not None and endpoint.endpoint_status != "InService":
            raise in_progress(endpoint)
        changing.pop(key(backend, endpoint_name), None)
        delete_original(backend, endpoint_name)

    # -- InvokeEndpoint ----------------------------------------------------------------------
    invoke_original = SageMakerRuntimeResponse.invoke_endpoint

    def invoke_endpoint(response: Any) -> Any:
        # moto answers any endpoint name, ignores TargetVariant and names no variant.
        # SageMaker: an endpoint that does not exist is "ValidationError ... Endpoint <name>
        # of account <account> not found." (https://github.com/aws/amazon-sagemaker-examples/
        # issues/293); TargetVariant routes to that variant, "the targeted routing overrides
        # the random traffic distribution" (Testing models with production variants); the
        # answer names the variant that answered (x-Amzn-Invoked-Production-Variant,
        # InvokeEndpoint). A variant that does not exist is a ValidationError too (the
        # reference lists ValidationError, 400; its words are not published).
        # The name is in the path, /endpoints/<name>/invocations (moto's own handler reads
        # no name: its results are queued for any endpoint).
        name = urllib.parse.unquote(response.path.split("/")[2])
        backend = sagemaker_backends[response.current_account][response.region]
        endpoint = backend.endpoints.get(name)
        if endpoint is None:
            raise AwsError(
                "ValidationError",
                f"Endpoint {name} of account {response.current_account} not found.",
            )
        variants = {v["VariantName"]: v for v in endpoint.production_variants}
        target = response.headers.get("X-Amzn-SageMaker-Target-Variant")
        if target is not None and target not in variants:
            raise AwsError(
                "ValidationError",
                f"The variant {target} is not a production variant of endpoint {name}.",
            )
        chosen = (
            target
            or random.choices(
                list(variants),
                weights=[float(v.get("CurrentWeight", 1.0)) for v in variants.values()],
            )[0]
        )
        config = backend.endpoint_configs[endpoint.endpoint_config_name]
        (variant,) = [v for v in config.production_variants if v["VariantName"] == chosen]
        model = backend._models[variant["ModelName"]]
        try:
            request = json.loads(response.body)
        except ValueError:
            request = None
        text = life.served_answer(backend, model.primary_container.get("ModelDataUrl", ""), request)
        if text is None:
            status, headers, body = invoke_original(response)
        else:
            status, headers = 200, {"Content-Type": "application/json"}
            body = json.dumps(
                {
                    "choices": [
                        {"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1},
                }
            )
        headers["x-Amzn-Invoked-Production-Variant"] = chosen
        return status, headers, body

    for kind, label, method, argument, table in (
        ("model", "model", "create_model", "ModelName", "_models"),
        (
            "endpoint-config",
            "endpoint configuration",
            "create_endpoint_config",
            "EndpointConfigName",
            "endpoint_configs",
        ),
        ("endpoint", "endpoint", "create_endpoint", "EndpointName", "endpoints"),
    ):
        original = (
            create_endpoint_config
            if method == "create_endpoint_config"
            else getattr(responses.SageMakerResponse, method)
        )
        monkeypatch.setattr(
            responses.SageMakerResponse,
            method,
            refusing_duplicates(kind, label, argument, table, original),
        )
    for kind, method, table in (
        ("model", "describe_model", "_models"),
        ("endpoint-config", "describe_endpoint_config", "endpoint_configs"),
        ("endpoint", "describe_endpoint", "endpoints"),
    ):
        original = getattr(SageMakerModelBackend, method)
        monkeypatch.setattr(SageMakerModelBackend, method, in_aws_words(kind, table, original))
    monkeypatch.setattr(
        FakeEndpoint,
        "_process_production_variants",
        lambda self, variants: _variant_summaries(variants),
    )
    monkeypatch.setattr(
        responses.SageMakerResponse, "describe_endpoint_config", describe_endpoint_config
    )
    monkeypatch.setattr(
        responses.SageMakerResponse, "update_endpoint", update_endpoint, raising=False
    )
    monkeypatch.setattr(
        SageMakerModelBackend, "update_endpoint_weights_and_capacities", update_weights
    )
    monkeypatch.setattr(SageMakerModelBackend, "delete_endpoint", delete_endpoint)
    monkeypatch.setattr(SageMakerRuntimeResponse, "invoke_endpoint", invoke_endpoint)


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


GOLDEN = DATA / "validation.jsonl"
"""The quickstart's validation examples serve as a golden set: chat examples whose last
turn is the answer expected."""
EVALUATION: dict[str, Any] = {
    "golden_set": str(GOLDEN),
    "metrics": ["exact_match"],
    "max_examples": 3,
}


def evaluated_spec(aws: Aws) -> str:
    """:func:`sagemaker_spec` with an evaluation on :data:`GOLDEN` whose threshold the
    stand-in's answers (the expected ones, by default) meet."""
    body = json.loads(sagemaker_spec(aws))
    body["evaluation"] = {**EVALUATION, "thresholds": {"exact_match": 0.9}}
    return json.dumps(body)

"""The SageMaker provider against moto made to behave like AWS (conftest's
``behave_like_aws``): quotas that will never fit a job, keys S3 reports by ARN, tags on
staged data; and the stand-in itself, which must refuse what AWS refuses."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from tests.providers.sagemaker.conftest import (
    BUCKET,
    DATA,
    IMAGE,
    REGION,
    ROLE,
    Aws,
    Lifecycle,
    quota_code,
    sagemaker_spec,
)
from tests.runcli import Cli

from tunefleet.errors import ProviderBusyError, QuotaExceededError
from tunefleet.planning import plan_run
from tunefleet.plugins import discover
from tunefleet.provider import DatasetRef, Plan
from tunefleet.spec import parse_spec
from tunefleet_sagemaker.provider import SageMakerProvider

G5 = "ml.g5.2xlarge for training job usage"
G5_SPOT = "ml.g5.2xlarge for spot training job usage"


def plan_of(aws: Aws, *, spot: bool = False, **options: Any) -> Plan:
    body = json.loads(sagemaker_spec(aws, options=options, validation=False))
    body["targets"][0]["compute"]["spot"] = spot
    (plan,) = plan_run(parse_spec(json.dumps(body)), registry=discover()).plans
    assert plan.ok, plan.unmet
    return plan


def submit(plan: Plan, run_key: str) -> Any:
    uri = f"s3://{BUCKET}/tunefleet/datasets/{'0' * 64}.jsonl"
    datasets = {
        "train": DatasetRef(
            provider="sagemaker", role="train", uri=uri, sha256="0" * 64, size_bytes=1
        )
    }
    return SageMakerProvider().submit(plan, datasets, run_key)


# 4. ResourceLimitExceeded: a quota that can never fit, or instances in use ---------------


def test_a_quota_of_zero_fails_naming_the_quota_to_raise(aws: Aws, lifecycle: Lifecycle) -> None:
    lifecycle.quotas[G5] = 0
    with pytest.raises(QuotaExceededError) as raised:
        submit(plan_of(aws), "a" * 32)
    message = str(raised.value)
    assert f"the applied quota '{G5}', code {quota_code(G5)}, is 0 instance(s)" in message
    assert f"request an increase of quota {quota_code(G5)} of service code sagemaker" in message
    assert raised.value.code == "ResourceLimitExceeded"
    assert not lifecycle.created


def test_a_default_quota_of_zero_counts_when_none_is_applied(
    aws: Aws, lifecycle: Lifecycle
) -> None:
    """ListServiceQuotas leaves out a quota with no applied value; the default decides."""
    lifecycle.default_quotas[G5_SPOT] = 0
    with pytest.raises(QuotaExceededError) as raised:
        submit(plan_of(aws, spot=True), "b" * 32)
    assert f"the default quota '{G5_SPOT}'" in str(raised.value)


def test_instances_held_by_other_jobs_queue_the_target(aws: Aws, lifecycle: Lifecycle) -> None:
    lifecycle.quotas[G5] = 1
    plan = plan_of(aws)
    submit(plan, "c" * 32)
    with pytest.raises(ProviderBusyError) as raised:
        submit(plan, "d" * 32)
    assert type(raised.value) is ProviderBusyError
    assert f"the quota '{G5}' is 1 instance(s); other jobs hold them now" in str(raised.value)


def test_a_quota_that_cannot_be_read_queues_saying_so(aws: Aws, lifecycle: Lifecycle) -> None:
    lifecycle.quotas[G5] = 0
    lifecycle.quotas_readable = False
    with pytest.raises(ProviderBusyError) as raised:
        submit(plan_of(aws), "e" * 32)
    assert f"the quota '{G5}' could not be checked in Service Quotas: AccessDeniedException" in (
        str(raised.value)
    )


def test_a_run_on_a_quota_of_zero_stops_instead_of_queueing(
    tmp_path: Path, fake_site: Path, aws: Aws, lifecycle: Lifecycle
) -> None:
    lifecycle.quotas[G5] = 0
    cli = Cli(tmp_path, fake_site, f"sqlite:///{tmp_path / 'journal.db'}")
    cli.env.update(TUNEFLEET_RETRY_BACKOFF="0.01")
    spec = tmp_path / "sagemaker.yaml"
    spec.write_text(sagemaker_spec(aws, validation=False))
    result = cli("run", str(spec))
    assert result.returncode == 3, result.stderr
    assert G5 in result.stderr and "request an increase" in result.stderr


# 2. and 5. Staged objects: keys by id or ARN, tags ---------------------------------------


def test_a_key_given_by_id_is_recognised_in_the_arn_s3_reports(aws: Aws, tmp_path: Path) -> None:
    key_id = aws.kms_key.rsplit("/", 1)[1]
    plan = plan_of(aws, kms_key_id=key_id)
    path = DATA / "train.jsonl"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    provider = SageMakerProvider()
    provider.stage(plan, "train", path, digest)
    reports: list[tuple[int, int]] = []
    provider.stage(plan, "train", path, digest, lambda sent, total: reports.append((sent, total)))
    assert reports == [], "the object is there, encrypted with the key: nothing is uploaded"
    head = aws.client("s3").head_object(Bucket=BUCKET, Key=f"tunefleet/datasets/{digest}.jsonl")
    assert head["SSEKMSKeyId"] == aws.kms_key


def test_a_reused_object_gets_the_planned_tags(aws: Aws) -> None:
    path = DATA / "train.jsonl"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    key = f"tunefleet/datasets/{digest}.jsonl"
    s3 = aws.client("s3")
    # Staged earlier, untagged (by a version that did not tag, or for another policy).
    s3.put_object(
        Bucket=BUCKET,
        Key=key,
        Body=path.read_bytes(),
        Metadata={"sha256": digest},
        Tagging="owner=someone",
    )
    body = json.loads(
        sagemaker_spec(aws, validation=False, placement={"tags": {"cost-center": "cs-42"}})
    )
    (plan,) = plan_run(parse_spec(json.dumps(body)), registry=discover()).plans
    reports: list[tuple[int, int]] = []
    SageMakerProvider().stage(plan, "train", path, digest, lambda s, t: reports.append((s, t)))
    assert reports == []
    tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]}
    assert tags == {"owner": "someone", "cost-center": "cs-42", "tunefleet:run": "support-bot"}


# 7. The stand-in refuses what AWS refuses -------------------------------------------------


def job(instance: str, **resources: Any) -> dict[str, Any]:
    return {
        "TrainingJobName": "stand-in-check",
        "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        "RoleArn": ROLE,
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/models"},
        "ResourceConfig": {
            "InstanceType": instance,
            "InstanceCount": 1,
            "VolumeSizeInGB": 50,
            **resources,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }


@pytest.mark.parametrize("instance", ["ml.g5.2xlarge", "ml.p4d.24xlarge", "ml.g4dn.xlarge"])
def test_the_stand_in_refuses_a_volume_key_on_local_storage(
    aws: Aws, lifecycle: Lifecycle, instance: str
) -> None:
    with pytest.raises(ClientError) as raised:
        aws.client("sagemaker").create_training_job(**job(instance, VolumeKmsKeyId=aws.kms_key))
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    aws.client("sagemaker").create_training_job(**job("ml.m5.xlarge", VolumeKmsKeyId=aws.kms_key))


def test_the_stand_in_keeps_what_a_job_was_created_with(aws: Aws, lifecycle: Lifecycle) -> None:
    sagemaker = aws.client("sagemaker")
    body = job("ml.m5.xlarge")
    body["Environment"] = {"TOKENIZERS_PARALLELISM": "false"}
    body["RetryStrategy"] = {"MaximumRetryAttempts": 3}
    body["AlgorithmSpecification"]["MetricDefinitions"] = [{"Name": "loss", "Regex": "loss=(.*)"}]
    sagemaker.create_training_job(**body)
    described = sagemaker.describe_training_job(TrainingJobName="stand-in-check")
    assert described["Environment"] == body["Environment"]
    assert described["RetryStrategy"] == body["RetryStrategy"]
    assert described["AlgorithmSpecification"]["MetricDefinitions"] == [
        {"Name": "loss", "Regex": "loss=(.*)"}
    ]


def test_the_stand_in_refuses_an_endpoint_key_on_local_storage(aws: Aws) -> None:
    sagemaker = aws.client("sagemaker")
    sagemaker.create_model(ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    variant = {"VariantName": "primary", "ModelName": "m", "InitialInstanceCount": 1}
    with pytest.raises(ClientError) as raised:
        sagemaker.create_endpoint_config(
            EndpointConfigName="c1",
            ProductionVariants=[{**variant, "InstanceType": "ml.g5.xlarge"}],
            KmsKeyId=aws.kms_key,
        )
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    sagemaker.create_endpoint_config(
        EndpointConfigName="c2",
        ProductionVariants=[{**variant, "InstanceType": "ml.m5.xlarge"}],
        KmsKeyId=aws.kms_key,
    )


@pytest.mark.parametrize("how", ["alias", "alias-arn", "id", "arn"])
def test_s3_reports_the_keys_arn_however_it_was_named(aws: Aws, how: str) -> None:
    kms = aws.client("kms")
    kms.create_alias(AliasName="alias/tunefleet", TargetKeyId=aws.kms_key)
    named = {
        "alias": "alias/tunefleet",
        "alias-arn": f"arn:aws:kms:{REGION}:123456789012:alias/tunefleet",
        "id": aws.kms_key.rsplit("/", 1)[1],
        "arn": aws.kms_key,
    }[how]
    s3 = aws.client("s3")
    s3.put_object(
        Bucket=BUCKET, Key="k", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=named
    )
    assert s3.head_object(Bucket=BUCKET, Key="k")["SSEKMSKeyId"] == aws.kms_key


@pytest.mark.parametrize(
    "key",
    ["alias/none", "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", "elsewhere"],
)
def test_s3_refuses_a_key_it_cannot_use(aws: Aws, key: str) -> None:
    if key == "elsewhere":
        key = aws.kms_key.replace(REGION, "us-east-1")
    with pytest.raises(ClientError) as raised:
        aws.client("s3").put_object(
            Bucket=BUCKET, Key="k", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=key
        )
    assert raised.value.response["Error"]["Code"] == "KMS.NotFoundException"


@pytest.mark.parametrize(
    ("call", "argument", "words"),
    [
        ("describe_model", "ModelName", 'Could not find model "arn:aws:sagemaker:'),
        (
            "describe_endpoint_config",
            "EndpointConfigName",
            'Could not find endpoint configuration "arn:aws:sagemaker:',
        ),
        ("describe_endpoint", "EndpointName", 'Could not find endpoint "arn:aws:sagemaker:'),
    ],
)
def test_the_stand_in_words_a_missing_resource_as_aws(
    aws: Aws, call: str, argument: str, words: str
) -> None:
    with pytest.raises(ClientError) as raised:
        getattr(aws.client("sagemaker"), call)(**{argument: "missing"})
    error = raised.value.response["Error"]
    assert error["Code"] == "ValidationException" and error["Message"].startswith(words)


def test_the_stand_in_lists_applied_and_default_quotas(aws: Aws, lifecycle: Lifecycle) -> None:
    lifecycle.quotas[G5] = 2
    quotas = aws.client("service-quotas")
    applied = quotas.list_service_quotas(ServiceCode="sagemaker")["Quotas"]
    assert [(q["QuotaName"], q["Value"]) for q in applied] == [(G5, 2.0)]
    defaults = quotas.list_aws_default_service_quotas(ServiceCode="sagemaker")["Quotas"]
    assert ("ml.g4dn.xlarge for training job usage", "L-3F53BF0F") in {
        (q["QuotaName"], q["QuotaCode"]) for q in defaults
    }


def _endpoint_with_variants(aws: Aws, **weights: float | None) -> Any:
    """An endpoint ``e`` whose config ``c`` has a variant per keyword (its weight, or none)."""
    sagemaker = aws.client("sagemaker")
    sagemaker.create_model(ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    variants = []
    for name, weight in weights.items():
        variant: dict[str, Any] = {
            "VariantName": name,
            "ModelName": "m",
            "InstanceType": "ml.m5.xlarge",
            "InitialInstanceCount": 1,
        }
        if weight is not None:
            variant["InitialVariantWeight"] = weight
        variants.append(variant)
    sagemaker.create_endpoint_config(EndpointConfigName="c", ProductionVariants=variants)
    sagemaker.create_endpoint(EndpointName="e", EndpointConfigName="c")
    return sagemaker


def test_the_stand_in_refuses_a_name_that_is_taken(aws: Aws) -> None:
    sagemaker = _endpoint_with_variants(aws, primary=None)
    for call, arguments, words in (
        ("create_model", {"ModelName": "m", "ExecutionRoleArn": ROLE}, "model"),
        (
            "create_endpoint_config",
            {
                "EndpointConfigName": "c",
                "ProductionVariants": [
                    {"VariantName": "a", "ModelName": "m", "InstanceType": "ml.m5.xlarge"}
                ],
            },
            "endpoint configuration",
        ),
        ("create_endpoint", {"EndpointName": "e", "EndpointConfigName": "c"}, "endpoint"),
    ):
        with pytest.raises(ClientError) as raised:
            getattr(sagemaker, call)(**arguments)
        error = raised.value.response["Error"]
        assert error["Code"] == "ValidationException"
        assert error["Message"].startswith(f'Cannot create already existing {words} "arn:')


def test_the_stand_in_keeps_weights_as_sagemaker_does(aws: Aws) -> None:
    """A weight of 0 is 0 and none is 1.0 (moto drops both)."""
    sagemaker = _endpoint_with_variants(aws, a=None, b=0.0)
    variants = sagemaker.describe_endpoint(EndpointName="e")["ProductionVariants"]
    assert [
        (v["VariantName"], v["CurrentWeight"], v["CurrentInstanceCount"]) for v in variants
    ] == [
        ("a", 1.0, 1),
        ("b", 0.0, 1),
    ]
    assert "DataCaptureConfig" not in sagemaker.describe_endpoint_config(EndpointConfigName="c")


def test_the_stand_in_invokes_the_target_variant_of_an_endpoint_that_exists(aws: Aws) -> None:
    _endpoint_with_variants(aws, a=1.0, b=0.0)
    runtime = aws.client("sagemaker-runtime")
    aws.endpoint_results({"answer": 1}, {"answer": 2})
    assert runtime.invoke_endpoint(EndpointName="e", Body=b"{}")["InvokedProductionVariant"] == "a"
    targeted = runtime.invoke_endpoint(EndpointName="e", Body=b"{}", TargetVariant="b")
    assert targeted["InvokedProductionVariant"] == "b", "the target overrides the weights"
    for arguments, words in (
        ({"EndpointName": "missing"}, "Endpoint missing of account 123456789012 not found."),
        ({"EndpointName": "e", "TargetVariant": "c"}, "The variant c is not"),
    ):
        with pytest.raises(ClientError) as raised:
            runtime.invoke_endpoint(Body=b"{}", **arguments)
        error = raised.value.response["Error"]
        assert error["Code"] == "ValidationError" and error["Message"].startswith(words)

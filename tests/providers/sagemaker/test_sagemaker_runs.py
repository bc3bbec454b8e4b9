"""Whole runs on the SageMaker provider through the CLI, against moto in server mode."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter
from tests.providers.sagemaker.conftest import (
    AWS_MISSING_JOB,
    BUCKET,
    DATA,
    EVALUATION,
    REGION,
    Aws,
    Lifecycle,
    evaluated_spec,
    sagemaker_spec,
)
from tests.runcli import Cli

from tunefleet.events import CheckpointEvent, CostEvent, Event, MetricEvent, StatusEvent
from tunefleet.planning import plan_run
from tunefleet.plugins import discover
from tunefleet.registry import resolve
from tunefleet.spec import parse_spec
from tunefleet.state import open_journal
from tunefleet.testing.runs import RunConformance, RunHarness
from tunefleet_sagemaker.provider import SageMakerProvider

EVENT: TypeAdapter[Event] = TypeAdapter(Event)
SUBNETS = ["subnet-0a1b2c3d4e5f60718", "subnet-0a1b2c3d4e5f60719"]
GROUPS = ["sg-0123456789abcdef0"]


@pytest.fixture
def cli(tmp_path: Path, fake_site: Path, aws: Aws) -> Cli:
    runner = Cli(tmp_path, fake_site, f"sqlite:///{tmp_path / 'journal.db'}")
    runner.env.update(TUNEFLEET_RETRY_BACKOFF="0.01")
    return runner


def compliant_spec(aws: Aws, **options: Any) -> str:
    """A spec under a strict placement policy, with the options that satisfy it. It trains
    on ml.g5.2xlarge, whose local NVMe storage takes no customer key: the options accept
    that (S3 data still uses the key); it serves on ml.m5.xlarge, whose EBS volume does."""
    body = json.loads(
        sagemaker_spec(
            aws,
            options={
                "subnets": SUBNETS,
                "security_group_ids": GROUPS,
                "kms_key_id": aws.kms_key,
                "accept_hardware_encrypted_instance_storage": True,
                "data_capture_percent": 20,
                **options,
            },
            placement={
                "allowed_regions": ["eu-*"],
                "require_private_network": True,
                "require_customer_managed_key": True,
                "required_tags": ["cost-center"],
                "tags": {"cost-center": "cs-42"},
            },
        )
    )
    body["targets"][0]["compute"].update(spot=True, max_runtime_hours=2)
    body["endpoint"] = {
        "instance_type": "ml.m5.xlarge",
        "autoscaling": {
            "min_instances": 1,
            "max_instances": 3,
            "target_invocations_per_instance": 50,
        },
    }
    return json.dumps(body)


def test_a_whole_run_through_the_cli(cli: Cli, aws: Aws, lifecycle: Lifecycle) -> None:
    spec = cli.tmp_path / "sagemaker.yaml"
    spec.write_text(compliant_spec(aws))
    result = cli("run", str(spec), "--json")
    assert result.returncode == 0, result.stderr

    # The datasets went to S3 under their content hash, encrypted with the policy's key and
    # tagged with the policy's tags and the run's name.
    s3 = aws.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert len(keys) == 2 and all(k.startswith("tunefleet/datasets/") for k in keys)
    for key in keys:
        head = s3.head_object(Bucket=BUCKET, Key=key)
        assert head["ServerSideEncryption"] == "aws:kms"
        assert head["SSEKMSKeyId"] == aws.kms_key
        assert head["Metadata"]["sha256"] == key.rsplit("/", 1)[-1].removesuffix(".jsonl")
        tags = s3.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]
        assert {(t["Key"], t["Value"]) for t in tags} == {
            ("cost-center", "cs-42"),
            ("tunefleet:run", "support-bot"),
        }

    # The job was created as planned: read it back.
    (name,) = lifecycle.created
    job = aws.client("sagemaker").describe_training_job(TrainingJobName=name)
    assert job["VpcConfig"] == {"SecurityGroupIds": GROUPS, "Subnets": SUBNETS}
    assert job["OutputDataConfig"]["KmsKeyId"] == aws.kms_key
    # ml.g5.2xlarge trains on local NVMe storage: SageMaker refuses a volume key there.
    assert "VolumeKmsKeyId" not in job["ResourceConfig"]
    assert job["ResourceConfig"]["InstanceType"] == "ml.g5.2xlarge"
    assert job["RetryStrategy"] == {"MaximumRetryAttempts": 2}
    assert job["EnableManagedSpotTraining"] is True
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 14400}
    assert job["CheckpointConfig"] == {
        "S3Uri": f"s3://{BUCKET}/tunefleet/checkpoints/{name}",
        "LocalPath": "/opt/ml/checkpoints",
    }
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]
    }
    assert set(channels) == {"train", "validation"}
    config = json.loads(job["HyperParameters"]["tunefleet_config"])
    assert config["adapter"] == "lora" and config["hyperparameters"]["epochs"] == 2
    # Every path the trainer uses is in its config: it reads none of SageMaker's environment.
    assert (config["train"], config["output_dir"], config["checkpoint_dir"]) == (
        "/opt/ml/input/data/train",
        "/opt/ml/model",
        "/opt/ml/checkpoints",
    )
    assert config["merge"] is True, "the serving container loads the merged model"
    tags = aws.client("sagemaker").list_tags(ResourceArn=job["TrainingJobArn"])["Tags"]
    assert {"Key": "cost-center", "Value": "cs-42"} in tags
    with open_journal(cli.journal_url) as journal:
        (run,) = journal.runs()
        (target,) = journal.targets(run.id)
        assert {"Key": "tunefleet:run-key", "Value": target.run_key} in tags
        assert name.endswith(target.run_key)
        events = [EVENT.validate_python(e.payload) for e in journal.events(target.id)]
        artifacts = [(a.kind, a.uri) for a in journal.artifacts(target.id)]
        assert target.billable_seconds == 1234

    # Events came from the trainer's lines in CloudWatch and the status transitions.
    metrics = [e for e in events if isinstance(e, MetricEvent)]
    assert [m.step for m in metrics] == list(range(1, lifecycle.steps + 1))
    checkpoints = [e for e in events if isinstance(e, CheckpointEvent)]
    assert [c.uri for c in checkpoints] == [
        f"s3://{BUCKET}/tunefleet/checkpoints/{name}/checkpoint-3",
        f"s3://{BUCKET}/tunefleet/checkpoints/{name}/checkpoint-6",
    ]
    states = [e.message for e in events if isinstance(e, StatusEvent)]
    assert states[-1] == "Training job completed" and len(states) == 5
    (cost,) = [e for e in events if isinstance(e, CostEvent)]
    assert cost.amount == pytest.approx(1234 / 3600 * 1.6975)
    assert artifacts[0] == ("adapter", job["ModelArtifacts"]["S3ModelArtifacts"])

    # Served, asked, deleted.
    aws.endpoint_results(
        {
            "choices": [
                {
                    "message": {"role": "assistant", "content": "Open Orders."},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 9, "completion_tokens": 3},
        }
    )
    deployed = cli("deploy", run.id, "--json")
    assert deployed.returncode == 0, deployed.stderr
    endpoint = json.loads(deployed.stdout)
    sagemaker = aws.client("sagemaker")
    assert sagemaker.describe_endpoint(EndpointName="support-bot")["EndpointStatus"] == "InService"
    model = sagemaker.describe_model(ModelName=endpoint["scope"]["model"])
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["scope"]["config"])
    assert config["KmsKeyId"] == aws.kms_key
    capture = config["DataCaptureConfig"]
    assert (capture["InitialSamplingPercentage"], capture["KmsKeyId"]) == (20, aws.kms_key)
    assert model["PrimaryContainer"]["ModelDataUrl"] == artifacts[0][1]
    assert model["VpcConfig"]["Subnets"] == SUBNETS
    scaling = aws.client("application-autoscaling")
    (scalable,) = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert (scalable["ResourceId"], scalable["MinCapacity"], scalable["MaxCapacity"]) == (
        "endpoint/support-bot/variant/primary",
        1,
        3,
    )
    assert scaling.list_tags_for_resource(ResourceARN=scalable["ScalableTargetARN"])["Tags"] == {
        "cost-center": "cs-42",
        "tunefleet:run": "support-bot",
    }
    assert model["PrimaryContainer"]["Environment"] == {
        "HF_MODEL_ID": "/opt/ml/model/merged",
        "SM_NUM_GPUS": "1",
    }
    (policy,) = scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["TargetValue"] == 50.0
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == (
        "SageMakerVariantInvocationsPerInstance"
    )
    answer = cli("invoke", run.id, "Where do I see my orders?")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() == "Open Orders."
    assert cli("undeploy", run.id).returncode == 0
    assert not sagemaker.list_endpoints()["Endpoints"]
    assert not scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert not sagemaker.list_models()["Models"]


class TestSageMakerRuns(RunConformance):
    """Rerun elsewhere, kills around and inside stage, submit and deploy: the scenarios
    every provider runs."""

    @pytest.fixture
    def run_harness(self, tmp_path: Path, aws: Aws) -> RunHarness:
        spec = tmp_path / "sagemaker.yaml"
        spec.write_text(sagemaker_spec(aws))
        evaluated = tmp_path / "evaluated.yaml"
        evaluated.write_text(evaluated_spec(aws))
        sagemaker = aws.client("sagemaker")
        # What the deploy scenario's one invoke gets back (TGI's Messages API answer).
        aws.endpoint_results(
            {
                "choices": [{"message": {"role": "assistant", "content": "Hi."}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2},
            }
        )
        return RunHarness(
            spec=spec,
            run_name="support-bot",
            jobs=lambda: len(sagemaker.list_training_jobs()["TrainingJobSummaries"]),
            endpoints=lambda: len(sagemaker.list_endpoints()["Endpoints"]),
            evaluated_spec=evaluated,
        )


def test_a_failed_job_fails_the_run_with_sagemakers_reason(
    cli: Cli, aws: Aws, lifecycle: Lifecycle
) -> None:
    lifecycle.fail_with = "AlgorithmError: CUDA out of memory"
    spec = cli.tmp_path / "sagemaker.yaml"
    spec.write_text(sagemaker_spec(aws))
    result = cli("run", str(spec))
    assert result.returncode == 1
    assert "CUDA out of memory" in result.stderr


def test_a_bucket_in_another_region_gets_no_data(cli: Cli, aws: Aws) -> None:
    aws.client("s3", "us-west-2").create_bucket(
        Bucket="acme-us", CreateBucketConfiguration={"LocationConstraint": "us-west-2"}
    )
    spec = cli.tmp_path / "sagemaker.yaml"
    spec.write_text(sagemaker_spec(aws, options={"bucket": "acme-us"}))
    result = cli("run", str(spec))
    assert result.returncode == 3
    assert "bucket acme-us is in us-west-2, not in eu-west-1" in result.stderr
    assert "Contents" not in aws.client("s3", "us-west-2").list_objects_v2(Bucket="acme-us")


def test_the_plan_shows_the_request_and_names_what_the_policy_needs(aws: Aws) -> None:
    strict = json.loads(compliant_spec(aws))
    (plan,) = plan_run(parse_spec(json.dumps(strict)), registry=discover()).plans
    assert plan.ok, plan.unmet
    (create,) = [r for r in plan.requests if r.operation == "CreateTrainingJob"]
    assert create.body["TrainingJobName"] == "support-bot-${run_key}"
    assert create.body["VpcConfig"]["Subnets"] == SUBNETS
    assert plan.cost is not None and "spot, assumed 70% off" in plan.cost.basis
    operations = [(r.service, r.operation) for r in plan.requests]
    assert operations[-2:] == [
        ("application-autoscaling", "RegisterScalableTarget"),
        ("application-autoscaling", "PutScalingPolicy"),
    ]

    lacking = json.loads(compliant_spec(aws))
    for option in ("subnets", "kms_key_id"):
        del lacking["targets"][0]["options"][option]
    lacking["targets"][0]["region"] = "us-east-1"
    (plan,) = plan_run(parse_spec(json.dumps(lacking)), registry=discover()).plans
    assert {(u.requirement, u.reason) for u in plan.unmet} == {
        ("placement.allowed_regions", "region 'us-east-1' is outside the allowed regions eu-*"),
        ("placement.require_private_network", "no subnets given in options.subnets"),
        ("placement.require_customer_managed_key", "no key given in options.kms_key_id"),
        (
            "options.subnets",
            "security groups are given without subnets; a VpcConfig needs both (give "
            "options.subnets, or remove options.security_group_ids)",
        ),
    }


def test_qlora_on_a_machine_without_a_gpu_is_refused(aws: Aws) -> None:
    body = json.loads(sagemaker_spec(aws, method={"type": "supervised", "adapter": "qlora"}))
    body["targets"][0]["compute"]["instance_type"] = "ml.m5.xlarge"
    (plan,) = plan_run(parse_spec(json.dumps(body)), registry=discover()).plans
    assert [(u.requirement, u.reason) for u in plan.unmet] == [
        ("method.adapter", "qlora needs a CUDA GPU; ml.m5.xlarge has none")
    ]
    assert plan.region == REGION


def canary_spec(cli: Cli, aws: Aws, tag: str, **options: Any) -> Path:
    """A spec serving on endpoint ``support-bot`` with a canary, evaluated on the golden set
    (its first 3 examples, exact match at least 0.3); ``tag`` makes it a run of its own (its
    training data ends with one more line), registered as the next version of support-bot."""
    body = json.loads(sagemaker_spec(aws, options=options))
    lines = (DATA / "train.jsonl").read_text().splitlines(keepends=True)
    train = cli.tmp_path / f"train-{tag}.jsonl"
    train.write_text("".join(lines) + lines[int(tag.removeprefix("v")) % len(lines)])
    body["dataset"]["train"] = str(train)
    body["evaluation"] = {**EVALUATION, "thresholds": {"exact_match": 0.3}}
    body["endpoint"] = {
        "instance_type": "ml.m5.xlarge",
        "canary": {"traffic_percent": 10, "bake_minutes": 0, "shadow_examples": 3},
    }
    spec = cli.tmp_path / f"spec-{tag}.yaml"
    spec.write_text(json.dumps(body))
    return spec


def served(aws: Aws) -> dict[str, float]:
    described = aws.client("sagemaker").describe_endpoint(EndpointName="support-bot")
    return {v["VariantName"]: v["CurrentWeight"] for v in described["ProductionVariants"]}


def owned(aws: Aws) -> tuple[list[str], list[str], list[str]]:
    """The models, endpoint configs and alarms the account holds."""
    sagemaker, cloudwatch = aws.client("sagemaker"), aws.client("cloudwatch")
    return (
        sorted(m["ModelName"] for m in sagemaker.list_models()["Models"]),
        sorted(
            c["EndpointConfigName"] for c in sagemaker.list_endpoint_configs()["EndpointConfigs"]
        ),
        sorted(a["AlarmName"] for a in cloudwatch.describe_alarms()["MetricAlarms"]),
    )


def test_a_new_model_version_rolls_out_as_a_canary(
    cli: Cli, aws: Aws, lifecycle: Lifecycle
) -> None:
    """`tunefleet deploy` of a new version with endpoint.canary: served as a production
    variant beside the old one, 10% of the traffic, both asked the golden questions
    (InvokeEndpoint with TargetVariant; the stand-in model answers as its training job's
    did), then all of it or none. A worse version is rolled back by itself; a version as good
    completes, and the old variant goes with what only it used."""
    right = lifecycle.trained_answer

    def train(tag: str) -> None:
        trained = cli("run", str(canary_spec(cli, aws, tag)))
        assert trained.returncode == 0, trained.stderr

    train("v1")
    first = cli("deploy", "support-bot:1")
    assert first.returncode == 0, first.stderr
    assert served(aws) == {"primary": 1.0}

    # Passes its own gate (1 of 3 right, at least 0.3) but answers worse than the one serving.
    lifecycle.trained_answer = lambda e: e.expected if e.index == 0 else "I do not know."
    train("v2")
    worse = cli("deploy", "support-bot:2")
    assert worse.returncode == 1, worse.stderr
    assert "rolled back" in worse.stderr and "exact_match fell from 1 to 0.3333" in worse.stderr
    assert served(aws) == {"primary": 100.0}
    models, configs, alarms = owned(aws)
    assert len(models) == 1 and len(configs) == 1 and alarms == [], "v2 left nothing behind"
    canary = [u["DesiredWeightsAndCapacities"] for u in lifecycle.weight_updates]
    assert canary[0] == [
        {"VariantName": "primary", "DesiredWeight": 90.0},
        {"VariantName": "support-bot-v2", "DesiredWeight": 10.0},
    ]

    lifecycle.trained_answer = right
    train("v3")
    better = cli("deploy", "support-bot:3")
    assert better.returncode == 0, better.stderr
    assert served(aws) == {"support-bot-v3": 100.0}
    models, configs, alarms = owned(aws)
    (update,) = [u for u in lifecycle.updates if u["EndpointConfigName"] == configs[0]]
    assert update["RetainAllVariantProperties"] is True
    assert len(models) == 1 and alarms == ["support-bot-support-bot-v3-5xx"]
    model = aws.client("sagemaker").describe_model(ModelName=models[0])
    with open_journal(cli.journal_url) as journal:
        rollouts = sorted(journal.rollouts("support-bot"), key=lambda r: r.id)
        assert [(r.to_label, r.phase) for r in rollouts] == [
            ("support-bot-v2", "rolled_back"),
            ("support-bot-v3", "completed"),
        ]
        assert rollouts[1].comparison["examples"] == 3
        third = resolve(journal, "support-bot:3")
        assert [resolve(journal, f"support-bot:{v}").stage for v in (1, 2, 3)] == [
            "archived",
            "candidate",
            "production",
        ]
        artifact = third.artifact["uri"]
        assert journal.verify_audit().ok
    assert model["PrimaryContainer"]["ModelDataUrl"] == artifact
    assert len(lifecycle.creates) == len(set(lifecycle.creates)), "nothing created twice"

    aws.endpoint_results(
        {"choices": [{"message": {"role": "assistant", "content": "Open Orders."}}]}
    )
    answer = cli("invoke", third.run_id, "Where do I see my orders?")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() == "Open Orders."
    assert cli("undeploy", third.run_id).returncode == 0
    assert not aws.client("sagemaker").list_endpoints()["Endpoints"]
    assert owned(aws) == ([], [], [])


def test_an_alarm_during_the_bake_rolls_a_canary_back(
    cli: Cli, aws: Aws, lifecycle: Lifecycle
) -> None:
    """A rollback alarm of the user's (options.rollback_alarms) in ALARM while the canary
    bakes: the new version is removed and the old one serves all of it again."""
    cloudwatch = aws.client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName="support-bot-latency",
        Namespace="AWS/SageMaker",
        MetricName="ModelLatency",
        Statistic="Average",
        Period=60,
        EvaluationPeriods=1,
        Threshold=2_000_000.0,
        ComparisonOperator="GreaterThanThreshold",
    )
    for tag in ("v1", "v2"):
        spec = canary_spec(cli, aws, tag, rollback_alarms=["support-bot-latency"])
        trained = cli("run", str(spec))
        assert trained.returncode == 0, trained.stderr
    assert cli("deploy", "support-bot:1").returncode == 0
    cloudwatch.set_alarm_state(
        AlarmName="support-bot-latency", StateValue="ALARM", StateReason="p99 above 2 s"
    )
    rolled = cli("deploy", "support-bot:2")
    assert rolled.returncode == 1, rolled.stderr
    assert "alarm: support-bot-latency: p99 above 2 s" in rolled.stderr
    assert served(aws) == {"primary": 100.0}
    models, configs, alarms = owned(aws)
    assert len(models) == 1 and len(configs) == 1 and alarms == ["support-bot-latency"]


def test_large_datasets_go_up_in_parts_with_progress(aws: Aws, tmp_path: Path) -> None:
    line = (DATA / "train.jsonl").read_text().splitlines(True)[0]
    big = tmp_path / "big.jsonl"
    big.write_text(line * (11 * 1024 * 1024 // len(line) + 1))
    body = json.loads(compliant_spec(aws, upload_part_mb=5))
    (plan,) = plan_run(parse_spec(json.dumps(body)), registry=discover()).plans
    reports: list[tuple[int, int]] = []
    digest = hashlib.sha256(big.read_bytes()).hexdigest()
    ref = SageMakerProvider().stage(
        plan, "train", big, digest, lambda sent, total: reports.append((sent, total))
    )
    size = big.stat().st_size
    assert reports[-1] == (size, size) and len(reports) >= 3
    s3 = aws.client("s3")
    _, key = ref.uri.removeprefix("s3://").split("/", 1)
    head = s3.head_object(Bucket=BUCKET, Key=key)
    assert head["ContentLength"] == size and "-3" in head["ETag"], "three parts"
    assert head["SSEKMSKeyId"] == aws.kms_key
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == big.read_bytes()


def test_find_takes_awss_answer_for_a_missing_job_as_no_job(aws: Aws) -> None:
    """AWS answers DescribeTrainingJob of a missing job with ``ValidationException:
    Requested resource not found.``; find must read that as "no job" by the code (the
    name is tunefleet's own and valid), not fail, or no job could ever start."""
    from botocore.exceptions import ClientError

    (plan,) = plan_run(parse_spec(sagemaker_spec(aws)), registry=discover()).plans
    with pytest.raises(ClientError) as raised:
        aws.client("sagemaker").describe_training_job(TrainingJobName="support-bot-missing")
    error = raised.value.response["Error"]
    assert (error["Code"], error["Message"]) == ("ValidationException", AWS_MISSING_JOB)
    assert SageMakerProvider().find(plan, "0" * 32) is None


def test_errors_carry_awss_code_and_status(aws: Aws) -> None:
    from tunefleet.errors import ProviderNotFoundError
    from tunefleet.provider import JobRef

    job = JobRef(provider="sagemaker", target="t", id="nope", region=REGION, run_key="k")
    with pytest.raises(ProviderNotFoundError) as raised:
        SageMakerProvider().status(job)
    assert raised.value.code == "ResourceNotFound"

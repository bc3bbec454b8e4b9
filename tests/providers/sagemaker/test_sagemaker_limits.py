"""The check of planned requests against their documented limits (``_limits``): the walk of
botocore's service model, and the limits written only in prose."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tunefleet_sagemaker import _limits

REGION = "eu-west-1"
KEY = "arn:aws:kms:eu-west-1:123456789012:key/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
PLANNED = {
    "sagemaker": [
        "CreateTrainingJob",
        "CreateModel",
        "CreateEndpointConfig",
        "CreateEndpoint",
        "UpdateEndpoint",
        "UpdateEndpointWeightsAndCapacities",
    ],
    "s3": ["PutObject"],
    "application-autoscaling": ["RegisterScalableTarget", "PutScalingPolicy"],
    "cloudwatch": ["PutMetricAlarm"],
}


def job(**changes: Any) -> dict[str, Any]:
    """A CreateTrainingJob body SageMaker takes."""
    body: dict[str, Any] = {
        "TrainingJobName": "support-bot-0123456789abcdef",
        "AlgorithmSpecification": {
            "TrainingImage": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/trainer:1",
            "TrainingInputMode": "File",
        },
        "RoleArn": "arn:aws:iam::123456789012:role/tunefleet",
        "OutputDataConfig": {"S3OutputPath": "s3://acme/models"},
        "ResourceConfig": {
            "InstanceType": "ml.m5.xlarge",
            "InstanceCount": 1,
            "VolumeSizeInGB": 100,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }
    body.update(changes)
    return body


def problems(service: str, operation: str, body: dict[str, Any]) -> dict[str, str]:
    return {v.path: v.reason for v in _limits.violations(service, operation, body, REGION)}


def test_a_request_within_its_limits_passes() -> None:
    assert problems("sagemaker", "CreateTrainingJob", job()) == {}


def test_every_member_is_walked_against_its_shape() -> None:
    body = job(
        TrainingJobName="support_bot",  # the pattern allows letters, digits and hyphens
        RoleArn=42,  # a string
        HyperParameters={f"k{i}": "v" for i in range(101)},  # at most 100
        EnableNetworkIsolation="yes",  # a boolean
        Colour="blue",  # not a member
    )
    body["ResourceConfig"] = {"InstanceType": "ml.m5.xlarge", "InstanceCount": -1}
    body["AlgorithmSpecification"]["TrainingInputMode"] = "Stream"
    del body["OutputDataConfig"]
    found = problems("sagemaker", "CreateTrainingJob", body)
    assert "does not match the pattern" in found["TrainingJobName"]
    assert "shape TrainingJobName" in found["TrainingJobName"]
    assert found["RoleArn"].startswith("is a int, not a string")
    assert "has 101 entr(y/ies); at most 100 are allowed" in found["HyperParameters"]
    assert found["EnableNetworkIsolation"].startswith("is a str, not a boolean")
    assert "is not a member of CreateTrainingJobRequest" in found["Colour"]
    assert "is required but missing" in found["OutputDataConfig"]
    assert "is -1; the minimum is 0" in found["ResourceConfig.InstanceCount"]
    assert "'Stream' is not one of the" in found["AlgorithmSpecification.TrainingInputMode"]


def test_a_pattern_must_match_the_whole_value() -> None:
    """SageMaker refuses 'ENTER MODEL NAME' for ^[a-zA-Z0-9](-*[a-zA-Z0-9])*, which a search
    would accept at its first word."""
    body = {
        "ModelName": "ENTER MODEL NAME",
        "ExecutionRoleArn": "arn:aws:iam::123456789012:role/tunefleet",
    }
    assert "does not match the pattern" in problems("sagemaker", "CreateModel", body)["ModelName"]


def test_lengths_count_characters_and_values_count_inclusively() -> None:
    at_most = job(HyperParameters={"tunefleet_config": "x" * 2500})
    assert problems("sagemaker", "CreateTrainingJob", at_most) == {}
    over = job(HyperParameters={"tunefleet_config": "é" * 2501})
    reason = problems("sagemaker", "CreateTrainingJob", over)["HyperParameters.tunefleet_config"]
    assert "has 2501 character(s); at most 2500 are allowed" in reason


def test_characters_beyond_the_bmp_follow_a_patterns_surrogate_pairs() -> None:
    """Application Auto Scaling's ResourceId pattern spells U+10000-U+10FFFF as the Java
    surrogate pairs \\uD800\\uDC00-\\uDBFF\\uDFFF."""
    target = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": "endpoint/\U0001f600/variant/primary",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
    }
    assert problems("application-autoscaling", "RegisterScalableTarget", target) == {}
    target["ResourceId"] = "endpoint/a\x07b/variant/primary"
    assert "ResourceId" in problems("application-autoscaling", "RegisterScalableTarget", target)


@pytest.mark.parametrize(("service", "operations"), PLANNED.items())
def test_every_pattern_of_a_planned_operation_compiles(service: str, operations: list[str]) -> None:
    model = _limits.service_model(service)
    for operation in operations:
        seen: set[str] = set()
        pending = [model.operation_model(operation).input_shape]
        while pending:
            shape = pending.pop()
            if shape.name in seen:
                continue
            seen.add(shape.name)
            if "pattern" in shape.metadata:
                _limits._compiled(shape.metadata["pattern"])
            if shape.type_name == "structure":
                pending += shape.members.values()
            elif shape.type_name == "list":
                pending.append(shape.member)
            elif shape.type_name == "map":
                pending += [shape.key, shape.value]


def test_the_stopping_condition_relations() -> None:
    too_long = job(StoppingCondition={"MaxRuntimeInSeconds": 28 * 86400 + 1})
    assert (
        "at most 2419200 s (28 days)"
        in (
            problems("sagemaker", "CreateTrainingJob", too_long)[
                "StoppingCondition.MaxRuntimeInSeconds"
            ]
        )
    )
    short_wait = job(
        EnableManagedSpotTraining=True,
        StoppingCondition={"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 3600},
    )
    assert (
        "shorter than MaxRuntimeInSeconds"
        in (
            problems("sagemaker", "CreateTrainingJob", short_wait)[
                "StoppingCondition.MaxWaitTimeInSeconds"
            ]
        )
    )
    no_wait = job(EnableManagedSpotTraining=True)
    assert (
        "managed spot training needs it"
        in (
            problems("sagemaker", "CreateTrainingJob", no_wait)[
                "StoppingCondition.MaxWaitTimeInSeconds"
            ]
        )
    )
    not_spot = job(StoppingCondition={"MaxRuntimeInSeconds": 60, "MaxWaitTimeInSeconds": 60})
    assert (
        "without managed spot training"
        in (
            problems("sagemaker", "CreateTrainingJob", not_spot)[
                "StoppingCondition.MaxWaitTimeInSeconds"
            ]
        )
    )


def test_keys_on_local_instance_storage_and_key_forms() -> None:
    local = job()
    local["ResourceConfig"].update(InstanceType="ml.g5.2xlarge", VolumeKmsKeyId=KEY)
    assert (
        "refuses a volume key"
        in (problems("sagemaker", "CreateTrainingJob", local)["ResourceConfig.VolumeKmsKeyId"])
    )
    config = {
        "EndpointConfigName": "support-bot-0123abcd",
        "ProductionVariants": [
            {"VariantName": "primary", "ModelName": "m", "InstanceType": "ml.p4d.24xlarge"}
        ],
        "KmsKeyId": KEY,
    }
    assert "ml.p4d.24xlarge" in problems("sagemaker", "CreateEndpointConfig", config)["KmsKeyId"]
    alias = job(OutputDataConfig={"S3OutputPath": "s3://acme/models", "KmsKeyId": "alias/x"})
    assert (
        "not a key id or a key ARN"
        in (problems("sagemaker", "CreateTrainingJob", alias)["OutputDataConfig.KmsKeyId"])
    )
    elsewhere = {"Bucket": "acme", "Key": "k", "SSEKMSKeyId": KEY.replace("eu-west-1", "us-east-1")}
    assert "the key is in us-east-1" in problems("s3", "PutObject", elsewhere)["SSEKMSKeyId"]
    assert problems("s3", "PutObject", {"Bucket": "acme", "Key": "k", "SSEKMSKeyId": KEY}) == {}
    assert _limits.kms_key_violations(KEY.rsplit("/", 1)[1], "k", REGION) == []
    assert _limits.kms_key_violations("mrk-" + "0" * 32, "k", REGION) == []


def test_s3_object_tags() -> None:
    def tagged(tagging: str) -> dict[str, str]:
        return problems("s3", "PutObject", {"Bucket": "acme", "Key": "k", "Tagging": tagging})

    assert tagged("cost-center=cs%2042&tunefleet%3Arun=support-bot") == {}
    eleven = "&".join(f"k{i}=v" for i in range(11))
    assert "11 tags; at most 10" in tagged(eleven)["Tagging"]
    # 128 characters of the astral plane are 256 UTF-16 code units.
    assert (
        "UTF-16 code units"
        in tagged("\U0001d49c" * 65 + "=v")["Tagging '" + "\U0001d49c" * 65 + "'"]
    )
    assert "outside letters" in tagged("k=a%3Bb")["Tagging 'k'"]
    assert "given twice" in tagged("k=a&k=b")["Tagging"]
    assert "aws: prefix" in tagged("aws%3Ax=1")["Tagging 'aws:x'"]
    assert (
        "at most 1024" in problems("s3", "PutObject", {"Bucket": "acme", "Key": "é" * 513})["Key"]
    )


def test_tags_of_the_other_resources() -> None:
    target = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": "endpoint/e/variant/primary",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
        "Tags": {f"k{i}": "v" for i in range(51)},
    }
    assert (
        "51 tags; at most 50"
        in problems("application-autoscaling", "RegisterScalableTarget", target)["Tags"]
    )
    alarm = {
        "AlarmName": "a",
        "EvaluationPeriods": 1,
        "ComparisonOperator": "GreaterThanThreshold",
        "Tags": [{"Key": f"k{i}", "Value": "v"} for i in range(51)],
    }
    assert "51 tags; at most 50" in problems("cloudwatch", "PutMetricAlarm", alarm)["Tags"]
    twice = job(Tags=[{"Key": "team", "Value": "a"}, {"Key": "team", "Value": "b"}])
    assert "given twice" in problems("sagemaker", "CreateTrainingJob", twice)["Tags"]


def test_a_containers_environment() -> None:
    model = {
        "ModelName": "m",
        "ExecutionRoleArn": "arn:aws:iam::123456789012:role/tunefleet",
        "PrimaryContainer": {"Environment": {"BIG": "é" * 600}},
    }
    assert (
        "the value is 1200 bytes; at most 1024"
        in (problems("sagemaker", "CreateModel", model)["PrimaryContainer.Environment.BIG"])
    )
    model["PrimaryContainer"]["Environment"] = {f"K{i}": "v" * 1000 for i in range(40)}
    assert (
        "at most 32768"
        in problems("sagemaker", "CreateModel", model)["PrimaryContainer.Environment"]
    )


def test_production_variants_and_their_weights() -> None:
    """Weights are relative, with no cap (a canary may take any share: the 50% cap was
    blue/green's CanarySize); one request changes the capacity of one variant; an endpoint
    config holds at most 10 variants, each named by the VariantName pattern."""
    shift = {
        "EndpointName": "e",
        "DesiredWeightsAndCapacities": [
            {"VariantName": "primary", "DesiredWeight": 1.0},
            {"VariantName": "support-v2", "DesiredWeight": 99.0},
        ],
    }
    assert problems("sagemaker", "UpdateEndpointWeightsAndCapacities", shift) == {}
    both = [dict(entry, DesiredInstanceCount=2) for entry in shift["DesiredWeightsAndCapacities"]]
    found = problems(
        "sagemaker",
        "UpdateEndpointWeightsAndCapacities",
        {"EndpointName": "e", "DesiredWeightsAndCapacities": both},
    )
    assert "changes the capacity of 2 variants" in found["DesiredWeightsAndCapacities"]
    assert "API_UpdateEndpointWeightsAndCapacities" in found["DesiredWeightsAndCapacities"]
    negative = {
        "EndpointName": "e",
        "DesiredWeightsAndCapacities": [{"VariantName": "a", "DesiredWeight": -1.0}],
    }
    assert (
        "the minimum is 0"
        in problems("sagemaker", "UpdateEndpointWeightsAndCapacities", negative)[
            "DesiredWeightsAndCapacities[0].DesiredWeight"
        ]
    )
    variant = {"ModelName": "m", "InstanceType": "ml.m5.xlarge", "InitialInstanceCount": 1}
    config = {
        "EndpointConfigName": "c",
        "ProductionVariants": [dict(variant, VariantName=f"v{i}") for i in range(11)],
    }
    found = problems("sagemaker", "CreateEndpointConfig", config)
    assert "has 11 item(s); at most 10 are allowed" in found["ProductionVariants"]
    config["ProductionVariants"] = [dict(variant, VariantName="support-")]
    found = problems("sagemaker", "CreateEndpointConfig", config)
    assert "does not match the pattern" in found["ProductionVariants[0].VariantName"]


@pytest.mark.parametrize("service", sorted(PLANNED))
def test_the_model_read_without_a_session_is_the_sessions_model(service: str) -> None:
    """Plans read botocore's model through its loader, not a session (90 ms faster); the
    limits they check must be the ones a boto3 client would be built from."""
    import botocore.session

    ours = _limits.service_model(service)
    sessions = botocore.session.Session().get_service_model(service)
    assert ours.api_version == sessions.api_version
    assert ours.operation_names == sessions.operation_names
    for operation in PLANNED[service]:
        mine, theirs = ours.operation_model(operation), sessions.operation_model(operation)
        assert mine.input_shape.members.keys() == theirs.input_shape.members.keys()
        assert mine.input_shape.required_members == theirs.input_shape.required_members


def _custom_model(folder: Path, max_name: int) -> None:
    """A copy of SageMaker's model under ``folder`` (as on AWS_DATA_PATH) whose training
    job names may be at most ``max_name`` characters."""
    import botocore.loaders

    latest = botocore.loaders.create_loader().load_service_model("sagemaker", "service-2")
    custom = json.loads(json.dumps(latest))
    custom["shapes"]["TrainingJobName"]["max"] = max_name
    version = folder / "sagemaker" / latest["metadata"]["apiVersion"]
    version.mkdir(parents=True, exist_ok=True)
    (version / "service-2.json").write_text(json.dumps(custom))


@pytest.fixture
def fresh_models() -> Iterator[None]:
    """Models read again from disk (or the cache) by each call, before and after."""
    _limits._service_data.cache_clear()
    _limits._input_model.cache_clear()
    yield
    _limits._service_data.cache_clear()
    _limits._input_model.cache_clear()


def _name_limit(problems: list[_limits.Violation]) -> list[str]:
    return [v.problem for v in problems if v.path == "TrainingJobName"]


def test_models_under_aws_data_path_come_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_models: None
) -> None:
    """A model the user put on AWS_DATA_PATH (a preview API, say) is what plans check
    against, as it is what their boto3 client uses; so does the cached slice, and an edit
    to that model is seen by the next plan."""
    _custom_model(tmp_path, 10)
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))
    assert _limits.service_model("sagemaker").shape_for("TrainingJobName").metadata["max"] == 10
    body = {"TrainingJobName": "x" * 11}
    assert _name_limit(_limits.model_violations("sagemaker", "CreateTrainingJob", body)) == [
        "has 11 character(s); at most 10 are allowed"
    ]
    _custom_model(tmp_path, 12)  # the file changes size: the slice is made again
    _limits._input_model.cache_clear()  # a new plan (process)
    _limits._service_data.cache_clear()
    assert _name_limit(_limits.model_violations("sagemaker", "CreateTrainingJob", body)) == []


DATA_PATH_CASES = {
    # name: (environment, config file text or None for no file)
    "default profile": ({}, "[default]\ndata_path = /models/default\n"),
    "AWS_PROFILE": (
        {"AWS_PROFILE": "dev"},
        "[default]\ndata_path = /models/default\n[profile dev]\ndata_path = /models/dev\n",
    ),
    "AWS_DEFAULT_PROFILE first": (
        {"AWS_DEFAULT_PROFILE": "ops", "AWS_PROFILE": "dev"},
        "[profile dev]\ndata_path = /models/dev\n[profile ops]\ndata_path = /models/ops\n",
    ),
    "the environment wins": (
        {"AWS_DATA_PATH": "/models/env"},
        "[default]\ndata_path = /models/default\n",
    ),
    "a profile without one": ({}, "[default]\nregion = eu-west-1\n"),
    "no config file": ({}, None),
}


@pytest.mark.parametrize("case", sorted(DATA_PATH_CASES))
def test_the_data_path_is_the_one_a_session_reads(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where plans look for extra models is where a boto3 session looks: the environment,
    else the active profile's ``data_path`` in the shared config file."""
    import botocore.session

    environment, config = DATA_PATH_CASES[case]
    for name in ("AWS_DATA_PATH", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "config"
    if config is not None:
        path.write_text(config)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(path))
    expected = botocore.session.Session().get_config_variable("data_path")
    assert _limits._data_path() == expected
    assert case in {"a profile without one", "no config file"} or expected


def test_models_under_the_config_files_data_path_are_checked_against(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_models: None
) -> None:
    _custom_model(tmp_path / "models", 10)
    config = tmp_path / "config"
    config.write_text(f"[profile preview]\ndata_path = {tmp_path / 'models'}\n")
    monkeypatch.delenv("AWS_DATA_PATH", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_PROFILE", raising=False)
    monkeypatch.setenv("AWS_PROFILE", "preview")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    body = {"TrainingJobName": "x" * 11}
    assert _name_limit(_limits.model_violations("sagemaker", "CreateTrainingJob", body)) == [
        "has 11 character(s); at most 10 are allowed"
    ]


def test_a_plan_reads_its_slice_of_the_model_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_models: None
) -> None:
    """The second plan finds the shapes it checks in the cache instead of reading the
    whole model; a damaged cache entry is read past, not trusted."""
    monkeypatch.setenv("TUNEFLEET_CACHE_DIR", str(tmp_path / "cache"))
    body = {"TrainingJobName": "bad name"}
    first = _limits.model_violations("sagemaker", "CreateTrainingJob", body)
    (entry,) = (tmp_path / "cache" / "botocore").glob("*.json")
    assert json.loads(entry.read_text())["input"] == "CreateTrainingJobRequest"
    assert oct(entry.stat().st_mode & 0o777) == "0o600"

    def no_model(service: str) -> dict[str, Any]:
        raise AssertionError("the whole model was read")

    _limits._input_model.cache_clear()
    monkeypatch.setattr(_limits, "_service_data", no_model)
    assert _limits.model_violations("sagemaker", "CreateTrainingJob", body) == first
    assert any(v.path == "TrainingJobName" for v in first)

    entry.write_text('{"format": 1, "shapes": []}')
    _limits._input_model.cache_clear()
    monkeypatch.undo()
    monkeypatch.setenv("TUNEFLEET_CACHE_DIR", str(tmp_path / "cache"))
    assert _limits.model_violations("sagemaker", "CreateTrainingJob", body) == first

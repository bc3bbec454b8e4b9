"""What `tunefleet plan` says for SageMaker targets: the requests it would send and what it
refuses, with no AWS at all (plan uses no credentials and no network)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

import botocore.session
import pytest
from tests.providers.sagemaker.conftest import DATA, IMAGE, LOCAL_STORAGE_FAMILIES, ROLE

from tunefleet.planning import plan_run
from tunefleet.plugins import discover
from tunefleet.provider import Plan
from tunefleet.spec import parse_spec
from tunefleet_sagemaker import _serving, pricing

REGION = "eu-west-1"
KEY = "arn:aws:kms:eu-west-1:123456789012:key/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
KEY_ID = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
LOCAL = ["ml.g5.2xlarge", "ml.g4dn.xlarge", "ml.p4d.24xlarge", "ml.p5.48xlarge", "ml.g6e.xlarge"]
EBS = ["ml.m5.xlarge", "ml.c5.xlarge", "ml.p3.2xlarge"]
STRICT_KEY = {"require_customer_managed_key": True}


def planned(
    *,
    options: dict[str, Any] | None = None,
    compute: dict[str, Any] | None = None,
    region: str = REGION,
    **top: Any,
) -> Plan:
    """The plan of a one-target spec on SageMaker (the quickstart data, scratch:tiny)."""
    body: dict[str, Any] = {
        "version": 1,
        "name": "support-bot",
        "base_model": "scratch:tiny",
        "dataset": {
            "train": str(DATA / "train.jsonl"),
            "validation": str(DATA / "validation.jsonl"),
        },
        "targets": [
            {
                "provider": "sagemaker",
                "region": region,
                "compute": {"instance_type": "ml.m5.xlarge", **(compute or {})},
                "options": {
                    "role_arn": ROLE,
                    "bucket": "acme-fine-tuning",
                    "training_image": IMAGE,
                    "endpoint_instance_type": "ml.m5.xlarge",
                    **(options or {}),
                },
            }
        ],
    }
    body.update(top)
    (plan,) = plan_run(parse_spec(json.dumps(body)), registry=discover()).plans
    return plan


def body(plan: Plan, operation: str) -> dict[str, Any]:
    (found,) = [r.body for r in plan.requests if r.operation == operation][:1]
    return found


def unmet(plan: Plan) -> dict[str, str]:
    return {u.requirement: u.reason for u in plan.unmet}


# 1. Customer keys on instance types with local NVMe storage ------------------------------


@pytest.mark.parametrize("instance", LOCAL)
def test_a_volume_key_is_never_planned_for_local_instance_storage(instance: str) -> None:
    plan = planned(options={"kms_key_id": KEY}, compute={"instance_type": instance})
    assert plan.ok, plan.unmet
    resources = body(plan, "CreateTrainingJob")["ResourceConfig"]
    assert "VolumeKmsKeyId" not in resources, "SageMaker refuses a volume key on this type"
    assert body(plan, "CreateTrainingJob")["OutputDataConfig"]["KmsKeyId"] == KEY
    assert any(instance in note and "local NVMe" in note for note in plan.notes)


@pytest.mark.parametrize("instance", EBS)
def test_a_volume_key_is_planned_for_an_ebs_volume(instance: str) -> None:
    plan = planned(
        options={"kms_key_id": KEY}, compute={"instance_type": instance}, placement=STRICT_KEY
    )
    assert plan.ok, plan.unmet
    assert body(plan, "CreateTrainingJob")["ResourceConfig"]["VolumeKmsKeyId"] == KEY
    assert body(plan, "CreateEndpointConfig")["KmsKeyId"] == KEY
    assert not [note for note in plan.notes if "local NVMe" in note]


def test_a_required_customer_key_on_local_storage_is_refused_unless_accepted() -> None:
    strict = planned(
        options={"kms_key_id": KEY, "endpoint_instance_type": "ml.g5.xlarge"},
        compute={"instance_type": "ml.g5.2xlarge"},
        placement=STRICT_KEY,
    )
    reasons = [
        u.reason for u in strict.unmet if u.requirement == "placement.require_customer_managed_key"
    ]
    assert len(reasons) == 2, "the training job and the endpoint"
    training, serving = reasons
    assert "ml.g5.2xlarge trains on local NVMe instance storage" in training
    assert "not with options.kms_key_id" in training
    assert "accept_hardware_encrypted_instance_storage" in training
    assert "endpoints serve on ml.g5.xlarge" in serving
    assert "KmsKeyId" not in body(strict, "CreateEndpointConfig")

    accepted = planned(
        options={
            "kms_key_id": KEY,
            "endpoint_instance_type": "ml.g5.xlarge",
            "accept_hardware_encrypted_instance_storage": True,
            "data_capture_percent": 10,
        },
        compute={"instance_type": "ml.g5.2xlarge"},
        placement=STRICT_KEY,
    )
    assert accepted.ok, accepted.unmet
    assert len([n for n in accepted.notes if "hardware module" in n]) == 2
    assert "VolumeKmsKeyId" not in body(accepted, "CreateTrainingJob")["ResourceConfig"]
    assert "KmsKeyId" not in body(accepted, "CreateEndpointConfig")
    # S3 data keeps the key either way.
    assert body(accepted, "PutObject")["SSEKMSKeyId"] == KEY
    assert body(accepted, "CreateEndpointConfig")["DataCaptureConfig"]["KmsKeyId"] == KEY


def test_an_explicit_volume_key_on_local_storage_is_refused() -> None:
    plan = planned(options={"volume_kms_key_id": KEY}, compute={"instance_type": "ml.p4d.24xlarge"})
    assert "ml.p4d.24xlarge trains on local NVMe" in unmet(plan)["options.volume_kms_key_id"]
    assert "VolumeKmsKeyId" not in body(plan, "CreateTrainingJob")["ResourceConfig"]


def _enum(shape: str) -> list[str]:
    model = botocore.session.get_session().get_service_model("sagemaker")
    return list(model.shape_for(shape).enum)


ASSUMED_LOCAL = {"g7"}
"""Families the provider counts as local storage without EC2's tables saying so yet (the
safe side: a key refused or noted, never one SageMaker refuses)."""


@pytest.mark.parametrize("enum", ["TrainingInstanceType", "ProductionVariantInstanceType"])
def test_every_type_with_instance_storage_is_known_to_the_provider(enum: str) -> None:
    """Against an independent list (EC2's instance store table, in conftest): no type with
    local storage is taken for one with an EBS volume, so no key SageMaker refuses is sent."""
    for instance in _enum(enum):
        family = instance.split(".")[1]
        if family in LOCAL_STORAGE_FAMILIES:
            assert pricing.has_instance_storage(instance), instance
        elif family not in ASSUMED_LOCAL:
            assert not pricing.has_instance_storage(instance), instance


# 2. KMS keys: key ids and key ARNs of the target's region ------------------------------


@pytest.mark.parametrize(
    "key",
    ["alias/tunefleet", "arn:aws:kms:eu-west-1:123456789012:alias/tunefleet"],
)
@pytest.mark.parametrize("option", ["kms_key_id", "volume_kms_key_id", "data_capture_kms_key_id"])
def test_an_alias_is_refused_with_how_to_find_the_key(key: str, option: str) -> None:
    options = {option: key, "data_capture_percent": 10}
    plan = planned(options=options)
    (reason,) = [u.reason for u in plan.unmet if "alias" in u.reason]
    assert f"aws kms describe-key --key-id {key} --query KeyMetadata.Arn" in reason
    assert "S3 reports the key's ARN" in reason


def test_a_key_id_is_accepted() -> None:
    plan = planned(options={"kms_key_id": KEY_ID})
    assert plan.ok, plan.unmet


def test_a_key_of_another_region_is_refused() -> None:
    other = KEY.replace("eu-west-1", "eu-central-1")
    plan = planned(options={"kms_key_id": other})
    reasons = {u.reason for u in plan.unmet}
    assert any("the key is in eu-central-1, not in eu-west-1" in r for r in reasons)


# 3. The serving image of each region ----------------------------------------------------


@pytest.mark.parametrize(
    ("region", "account"),
    [
        ("us-east-1", "763104351884"),
        ("eu-west-1", "763104351884"),
        ("eu-central-2", "380420809688"),
        ("eu-south-1", "692866216735"),
        ("me-central-1", "914824155844"),
        ("il-central-1", "780543022126"),
        ("ap-east-1", "871362719292"),
    ],
)
def test_the_default_serving_image_comes_from_the_regions_registry(
    region: str, account: str
) -> None:
    kms = KEY.replace("eu-west-1", region)
    plan = planned(region=region, options={"kms_key_id": kms})
    image = body(plan, "CreateModel")["PrimaryContainer"]["Image"]
    assert image == (
        f"{account}.dkr.ecr.{region}.amazonaws.com/huggingface-pytorch-tgi-inference:"
        "2.4.0-tgi2.3.1-gpu-py311-cu124-ubuntu22.04"
    )


def test_every_declared_region_has_a_serving_image() -> None:
    assert [r for r in pricing.REGIONS if pricing.tgi_image(r) is None] == []


def test_a_region_without_an_image_is_refused_at_plan() -> None:
    plan = planned(region="xx-nowhere-1")
    reason = unmet(plan)["options.serving_image"]
    assert "lists none in xx-nowhere-1" in reason and "set options.serving_image" in reason
    assert "Image" not in body(plan, "CreateModel")["PrimaryContainer"]
    given = planned(
        region="xx-nowhere-1",
        options={"serving_image": "123456789012.dkr.ecr.xx-nowhere-1.amazonaws.com/tgi:1"},
    )
    assert "options.serving_image" not in unmet(given)


# 5. Networks and tags --------------------------------------------------------------------


def test_security_groups_without_subnets_are_refused() -> None:
    plan = planned(options={"security_group_ids": ["sg-0123456789abcdef0"]})
    assert "security groups are given without subnets" in unmet(plan)["options.subnets"]
    assert "VpcConfig" not in body(plan, "CreateTrainingJob")
    assert "VpcConfig" not in body(plan, "CreateModel")


def test_staged_objects_and_the_scaling_target_carry_the_policys_tags() -> None:
    plan = planned(
        placement={"required_tags": ["cost-center"], "tags": {"cost-center": "cs 42"}},
        endpoint={"autoscaling": {"min_instances": 1, "max_instances": 2}},
    )
    assert plan.ok, plan.unmet
    for put in [r.body for r in plan.requests if r.operation == "PutObject"]:
        assert dict(parse_qsl(put["Tagging"])) == {
            "cost-center": "cs 42",
            "tunefleet:run": "support-bot",
        }
        assert "%20" in put["Tagging"], "a space is percent-encoded, never '+'"
    assert body(plan, "RegisterScalableTarget")["Tags"] == {
        "cost-center": "cs 42",
        "tunefleet:run": "support-bot",
    }


def test_more_tags_than_an_s3_object_holds_are_refused_at_plan() -> None:
    tags = {f"team-{i}": "x" for i in range(10)}
    plan = planned(placement={"tags": tags})
    reason = unmet(plan)["PutObject.Tagging"]
    assert "11 tags; at most 10 are allowed" in reason and "object-tagging" in reason
    assert not [u for u in plan.unmet if u.requirement.startswith("CreateTrainingJob")], (
        "SageMaker takes 50"
    )


# 6. Every documented limit of a planned request is an Unmet, never an exception ---------


def test_limits_written_in_prose_are_refused_at_plan() -> None:
    plan = planned(
        options={"spot_max_wait_hours": 1},
        compute={"spot": True, "max_runtime_hours": 700},
    )
    found = unmet(plan)
    assert (
        "2520000 s (700 h); at most 2419200 s (28 days)"
        in (found["CreateTrainingJob.StoppingCondition.MaxRuntimeInSeconds"])
    )
    assert (
        "3600 s is shorter than MaxRuntimeInSeconds"
        in (found["CreateTrainingJob.StoppingCondition.MaxWaitTimeInSeconds"])
    )


# 7. A canary: a new version's rollout with production variants -------------------------

CANARY = {"traffic_percent": 60, "bake_minutes": 90}


def test_a_canary_plans_a_new_versions_rollout_with_production_variants() -> None:
    """What a new version's rollout sends is in the plan, checked like the rest. 60% and 90
    minutes were beyond SageMaker's blue/green canary (CanarySize at most 50% of capacity,
    WaitIntervalInSeconds at most 3600); production-variant weights are relative, with no
    cap, and the bake is tunefleet's own."""
    plan = planned(
        options={"rollback_alarms": ["support-bot-latency"]},
        endpoint={"canary": CANARY, "autoscaling": {"min_instances": 1, "max_instances": 2}},
    )
    assert plan.ok, plan.unmet
    assert [(r.service, r.operation) for r in plan.requests_for("deploy")] == [
        ("sagemaker", "CreateModel"),
        ("sagemaker", "CreateEndpointConfig"),
        ("sagemaker", "CreateEndpoint"),
        ("application-autoscaling", "RegisterScalableTarget"),
        ("application-autoscaling", "PutScalingPolicy"),
        ("sagemaker", "CreateModel"),
        ("cloudwatch", "PutMetricAlarm"),
        ("sagemaker", "CreateEndpointConfig"),
        ("sagemaker", "UpdateEndpoint"),
        ("application-autoscaling", "RegisterScalableTarget"),
        ("application-autoscaling", "PutScalingPolicy"),
        ("sagemaker", "UpdateEndpointWeightsAndCapacities"),
    ]
    deploy = _serving.planned(plan, {})
    rollout = _serving.planned(plan, {}, rollout=True)
    assert rollout["CreateModel"] == deploy["CreateModel"], "a version's model is a deploy's"
    config = rollout["CreateEndpointConfig"]
    assert config["EndpointConfigName"] == "${config}"
    assert [
        (v["VariantName"], v["ModelName"], v["InitialVariantWeight"])
        for v in config["ProductionVariants"]
    ] == [("${serving_version}", "${serving_model}", 1.0), ("${version}", "${model}", 0.0)]
    assert rollout["UpdateEndpoint"] == {
        "EndpointName": "${endpoint}",
        "EndpointConfigName": "${config}",
        "RetainAllVariantProperties": True,
    }
    assert "DeploymentConfig" not in rollout["UpdateEndpoint"], "no blue/green canary"
    assert rollout["UpdateEndpointWeightsAndCapacities"]["DesiredWeightsAndCapacities"] == [
        {"VariantName": "${serving_version}", "DesiredWeight": 40.0},
        {"VariantName": "${version}", "DesiredWeight": 60.0},
    ]
    alarm = rollout["PutMetricAlarm"]
    assert alarm["AlarmName"] == "${endpoint}-${version}-5xx"
    assert alarm["Dimensions"] == [
        {"Name": "EndpointName", "Value": "${endpoint}"},
        {"Name": "VariantName", "Value": "${version}"},
    ]
    assert {"Key": "tunefleet:rollback-alarm:1", "Value": "support-bot-latency"} in alarm["Tags"]
    assert (
        rollout["RegisterScalableTarget"]["ResourceId"] == "endpoint/${endpoint}/variant/${version}"
    )
    assert deploy["RegisterScalableTarget"]["ResourceId"] == "endpoint/${endpoint}/variant/primary"


def test_without_a_canary_there_is_no_rollout_to_send() -> None:
    from tunefleet.errors import ProviderError

    plan = planned()
    assert "UpdateEndpointWeightsAndCapacities" not in {r.operation for r in plan.requests}
    with pytest.raises(ProviderError) as refused:
        _serving.planned(plan, {}, rollout=True)
    assert refused.value.code == "plan_outdated"


def test_a_rollouts_requests_are_checked_against_their_limits() -> None:
    """The rollback alarms are named in the version alarm's tags: a name a tag value cannot
    hold, or more tags than an alarm takes, is refused at plan."""
    plan = planned(
        options={"rollback_alarms": ["latency,p99"]},
        endpoint={"canary": CANARY},
    )
    assert "outside letters" in unmet(plan)["PutMetricAlarm.Tags 'tunefleet:rollback-alarm:1'"]
    crowded = planned(
        options={"rollback_alarms": [f"alarm-{i}" for i in range(9)]},
        placement={"tags": {f"team-{i}": "x" for i in range(41)}},
        endpoint={"canary": CANARY},
    )
    reasons = unmet(crowded)
    assert "51 tags; at most 50 are allowed" in reasons["PutMetricAlarm.Tags"]
    assert "PutMetricAlarm.Tags" in reasons and "CreateModel.Tags" not in reasons


def test_a_spot_wait_is_sent_as_given_never_lengthened() -> None:
    plan = planned(
        options={"spot_max_wait_hours": 3}, compute={"spot": True, "max_runtime_hours": 2}
    )
    assert plan.ok, plan.unmet
    stopping = body(plan, "CreateTrainingJob")["StoppingCondition"]
    assert stopping == {"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 10800}


def test_an_instance_type_botocore_does_not_know_is_refused() -> None:
    plan = planned(compute={"instance_type": "ml.zz9.xlarge"})
    reason = unmet(plan)["CreateTrainingJob.ResourceConfig.InstanceType"]
    assert "'ml.zz9.xlarge' is not one of the" in reason and "TrainingInstanceType" in reason


def test_a_valid_plan_has_no_unmet() -> None:
    plan = planned()
    assert plan.ok, plan.unmet

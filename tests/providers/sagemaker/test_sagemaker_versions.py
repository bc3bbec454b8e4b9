"""Versions side by side on one SageMaker endpoint (TrafficSplitting): production variants
against moto in server mode, corrected by ``behave_like_aws`` (endpoints that take time to
update, weights kept as SageMaker keeps them, UpdateEndpoint, InvokeEndpoint's
TargetVariant, creates of a taken name refused)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.providers.sagemaker.conftest import BUCKET, Aws, Lifecycle, sagemaker_spec

from tunefleet.errors import AlreadyExistsError, ProviderError, ProviderNotFoundError
from tunefleet.planning import plan_run
from tunefleet.plugins import discover
from tunefleet.provider import (
    ArtifactRef,
    ChatRequest,
    EndpointRef,
    Plan,
    TrafficSplitting,
    capabilities_of,
)
from tunefleet.spec import parse_spec
from tunefleet.testing import crash
from tunefleet_sagemaker import _versions
from tunefleet_sagemaker.provider import SageMakerProvider

PROVIDER = SageMakerProvider()
NEW = "support-bot-v2"
FIRST = ArtifactRef(kind="merged_model", uri=f"s3://{BUCKET}/v1/model.tar.gz")
SECOND = ArtifactRef(kind="merged_model", uri=f"s3://{BUCKET}/v2/model.tar.gz")
ASK = ChatRequest(messages=[{"role": "user", "content": "Where are my orders?"}], max_tokens=8)
LATENCY = "support-bot-latency"


def canary_plan(aws: Aws, *, autoscaling: bool = False, **options: Any) -> Plan:
    body = json.loads(sagemaker_spec(aws, options=options))
    body["endpoint"] = {
        "instance_type": "ml.m5.xlarge",
        "canary": {"traffic_percent": 10, "bake_minutes": 0},
    }
    if autoscaling:
        body["endpoint"]["autoscaling"] = {"min_instances": 1, "max_instances": 3}
    (plan,) = plan_run(parse_spec(json.dumps(body)), registry=discover()).plans
    assert plan.ok, plan.unmet
    return plan


class Endpoint:
    """The stand-in's view of one endpoint, as tests read it back through AWS's API."""

    def __init__(self, aws: Aws, name: str = "support-bot") -> None:
        self.name = name
        self.sagemaker = aws.client("sagemaker")
        self.cloudwatch = aws.client("cloudwatch")
        self.scaling = aws.client("application-autoscaling")

    def variants(self) -> dict[str, dict[str, Any]]:
        described = self.sagemaker.describe_endpoint(EndpointName=self.name)
        config = self.sagemaker.describe_endpoint_config(
            EndpointConfigName=described["EndpointConfigName"]
        )
        summaries = {v["VariantName"]: v for v in described["ProductionVariants"]}
        return {
            v["VariantName"]: {**v, **summaries[v["VariantName"]]}
            for v in config["ProductionVariants"]
        }

    def models(self) -> list[str]:
        return sorted(m["ModelName"] for m in self.sagemaker.list_models()["Models"])

    def configs(self) -> list[str]:
        listed = self.sagemaker.list_endpoint_configs()["EndpointConfigs"]
        return sorted(c["EndpointConfigName"] for c in listed)

    def alarms(self) -> list[str]:
        return sorted(a["AlarmName"] for a in self.cloudwatch.describe_alarms()["MetricAlarms"])

    def targets(self) -> list[str]:
        listed = self.scaling.describe_scalable_targets(ServiceNamespace="sagemaker")
        return sorted(t["ResourceId"] for t in listed["ScalableTargets"])


def test_the_provider_splits_traffic() -> None:
    assert isinstance(PROVIDER, TrafficSplitting)
    assert capabilities_of(PROVIDER).traffic_split


def test_percentages_of_relative_weights() -> None:
    assert _versions.percentages({"a": 1.0, "b": 2.0}) == {"a": 33, "b": 67}
    assert _versions.percentages({"a": 1.0, "b": 1.0, "c": 1.0}) == {"a": 34, "b": 33, "c": 33}
    assert _versions.percentages({"a": 90.0, "b": 10.0}) == {"a": 90, "b": 10}
    assert _versions.percentages({"a": 0.0, "b": 0.0}) == {"a": 0, "b": 0}
    assert _versions.percentages({"primary": 1.0}) == {"primary": 100}


def test_a_plain_deploy_serves_one_version_with_all_the_traffic(aws: Aws) -> None:
    endpoint = PROVIDER.deploy(canary_plan(aws), FIRST, "support-bot")
    assert PROVIDER.versions(endpoint) == {"primary": 100}
    assert PROVIDER.alarms(endpoint, "primary") == [], "a deploy puts no version alarm"


def test_a_version_is_added_beside_the_one_serving_with_no_traffic(
    aws: Aws, lifecycle: Lifecycle
) -> None:
    plan = canary_plan(aws)
    first = PROVIDER.deploy(plan, FIRST, "support-bot")
    served = Endpoint(aws)
    (old_model,) = served.models()
    endpoint = PROVIDER.add_version(plan, first, SECOND, NEW)
    assert PROVIDER.versions(endpoint) == {"primary": 100, NEW: 0}
    variants = served.variants()
    assert variants["primary"]["ModelName"] == old_model, "the serving variant as it was"
    assert (variants["primary"]["InstanceType"], variants["primary"]["CurrentInstanceCount"]) == (
        "ml.m5.xlarge",
        1,
    )
    new_model = variants[NEW]["ModelName"]
    assert (
        new_model == _versions.model_name("support-bot", NEW, SECOND.uri) == endpoint.scope["model"]
    )
    model = served.sagemaker.describe_model(ModelName=new_model)
    assert model["PrimaryContainer"]["ModelDataUrl"] == SECOND.uri
    assert model["PrimaryContainer"]["Environment"]["HF_MODEL_ID"] == "/opt/ml/model/merged"
    (update,) = lifecycle.updates
    assert update["RetainAllVariantProperties"] is True
    assert "DeploymentConfig" not in update, "no blue/green canary: tunefleet shifts the traffic"
    # The config the endpoint used before is deleted once it is InService with the new one.
    assert served.configs() == [update["EndpointConfigName"]]
    assert served.models() == sorted([old_model, new_model])
    (alarm,) = served.cloudwatch.describe_alarms(AlarmNames=[f"support-bot-{NEW}-5xx"])[
        "MetricAlarms"
    ]
    assert alarm["MetricName"] == "Invocation5XXErrors" and alarm["Namespace"] == "AWS/SageMaker"
    assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == {
        "EndpointName": "support-bot",
        "VariantName": NEW,
    }
    tags = served.cloudwatch.list_tags_for_resource(ResourceARN=alarm["AlarmArn"])["Tags"]
    assert {"Key": "tunefleet:run", "Value": "support-bot"} in tags

    # Adding it again (a resumed rollout) changes nothing.
    created, updates = list(lifecycle.creates), len(lifecycle.updates)
    again = PROVIDER.add_version(plan, endpoint, SECOND, NEW)
    assert again.scope == endpoint.scope
    assert lifecycle.creates == created and len(lifecycle.updates) == updates


def test_a_label_serving_another_model_is_refused(aws: Aws) -> None:
    plan = canary_plan(aws)
    endpoint = PROVIDER.add_version(plan, PROVIDER.deploy(plan, FIRST, "support-bot"), SECOND, NEW)
    third = ArtifactRef(kind="merged_model", uri=f"s3://{BUCKET}/v3/model.tar.gz")
    with pytest.raises(AlreadyExistsError) as refused:
        PROVIDER.add_version(plan, endpoint, third, NEW)
    assert refused.value.code == "version_exists"


def test_a_label_that_cannot_name_a_variant_is_refused(aws: Aws, lifecycle: Lifecycle) -> None:
    plan = canary_plan(aws)
    endpoint = PROVIDER.deploy(plan, FIRST, "support-bot")
    created = list(lifecycle.creates)
    for label in ("support-bot-", "support_v2", "v" * 64):
        with pytest.raises(ProviderError) as refused:
            PROVIDER.add_version(plan, endpoint, SECOND, label)
        assert refused.value.code == "invalid_version"
    assert lifecycle.creates == created


def test_a_missing_rollback_alarm_is_refused_before_anything_is_created(
    aws: Aws, lifecycle: Lifecycle
) -> None:
    plan = canary_plan(aws, rollback_alarms=[LATENCY])
    endpoint = PROVIDER.deploy(plan, FIRST, "support-bot")
    created = list(lifecycle.creates)
    with pytest.raises(ProviderNotFoundError) as refused:
        PROVIDER.add_version(plan, endpoint, SECOND, NEW)
    assert refused.value.code == "alarm_not_found" and LATENCY in str(refused.value)
    assert lifecycle.creates == created and not lifecycle.updates
    assert Endpoint(aws).alarms() == []


def test_a_plan_without_a_canary_cannot_add_a_version(aws: Aws) -> None:
    (plan,) = plan_run(parse_spec(sagemaker_spec(aws)), registry=discover()).plans
    endpoint = PROVIDER.deploy(plan, FIRST, "support-bot")
    with pytest.raises(ProviderError) as refused:
        PROVIDER.add_version(plan, endpoint, SECOND, NEW)
    assert refused.value.code == "plan_outdated"


def test_traffic_shifts_by_percentages_and_left_out_is_none(aws: Aws, lifecycle: Lifecycle) -> None:
    plan = canary_plan(aws)
    endpoint = PROVIDER.add_version(plan, PROVIDER.deploy(plan, FIRST, "support-bot"), SECOND, NEW)
    PROVIDER.shift_traffic(endpoint, {"primary": 90, NEW: 10})
    assert PROVIDER.versions(endpoint) == {"primary": 90, NEW: 10}
    assert lifecycle.weight_updates[-1]["DesiredWeightsAndCapacities"] == [
        {"VariantName": "primary", "DesiredWeight": 90.0},
        {"VariantName": NEW, "DesiredWeight": 10.0},
    ]
    PROVIDER.shift_traffic(endpoint, {NEW: 100})
    assert PROVIDER.versions(endpoint) == {"primary": 0, NEW: 100}
    sent = len(lifecycle.weight_updates)
    PROVIDER.shift_traffic(endpoint, {NEW: 100, "primary": 0})
    assert len(lifecycle.weight_updates) == sent, "the split it has already: nothing is sent"
    for wrong in ({NEW: 60, "primary": 60}, {NEW: 100.0}, {NEW: -10, "primary": 110}):
        with pytest.raises(ProviderError) as refused:
            PROVIDER.shift_traffic(endpoint, wrong)  # type: ignore[arg-type]
        assert refused.value.code == "invalid_weights"
    with pytest.raises(ProviderNotFoundError) as missing:
        PROVIDER.shift_traffic(endpoint, {"support-bot-v9": 100})
    assert missing.value.code == "version_not_found"


def test_weights_are_relative_and_read_as_percentages(aws: Aws) -> None:
    plan = canary_plan(aws)
    endpoint = PROVIDER.add_version(plan, PROVIDER.deploy(plan, FIRST, "support-bot"), SECOND, NEW)
    served = Endpoint(aws)
    served.sagemaker.update_endpoint_weights_and_capacities(
        EndpointName="support-bot",
        DesiredWeightsAndCapacities=[
            {"VariantName": "primary", "DesiredWeight": 1.0},
            {"VariantName": NEW, "DesiredWeight": 2.0},
        ],
    )
    # A change made outside: the endpoint is Updating, and shift_traffic waits for it.
    assert served.sagemaker.describe_endpoint(EndpointName="support-bot")["EndpointStatus"] == (
        "Updating"
    )
    assert PROVIDER.versions(endpoint) == {"primary": 33, NEW: 67}
    PROVIDER.shift_traffic(endpoint, {"primary": 50, NEW: 50})
    assert PROVIDER.versions(endpoint) == {"primary": 50, NEW: 50}


def test_each_version_is_asked_directly(aws: Aws, lifecycle: Lifecycle) -> None:
    asked: list[str] = []

    def served(backend: Any, model_data: str, request: Any) -> str:
        asked.append(model_data)
        return f"the model in {model_data}"

    lifecycle.served_answer = served  # type: ignore[method-assign]
    plan = canary_plan(aws)
    endpoint = PROVIDER.add_version(plan, PROVIDER.deploy(plan, FIRST, "support-bot"), SECOND, NEW)
    assert PROVIDER.invoke_version(endpoint, NEW, ASK).text == f"the model in {SECOND.uri}"
    assert PROVIDER.invoke_version(endpoint, "primary", ASK).text == f"the model in {FIRST.uri}"
    # Without a target the weights route: all of it to the version serving alone.
    assert PROVIDER.invoke(endpoint, ASK).text == f"the model in {FIRST.uri}"
    with pytest.raises(ProviderError) as refused:
        PROVIDER.invoke_version(endpoint, "support-bot-v9", ASK)
    assert refused.value.code == "ValidationError"


def test_a_version_with_traffic_is_not_removed(aws: Aws) -> None:
    plan = canary_plan(aws)
    endpoint = PROVIDER.add_version(plan, PROVIDER.deploy(plan, FIRST, "support-bot"), SECOND, NEW)
    PROVIDER.shift_traffic(endpoint, {"primary": 90, NEW: 10})
    with pytest.raises(ProviderError) as refused:
        PROVIDER.remove_version(endpoint, NEW)
    assert refused.value.code == "version_has_traffic"


def test_completing_removes_the_old_version_and_what_only_it_used(
    aws: Aws, lifecycle: Lifecycle
) -> None:
    plan = canary_plan(aws)
    endpoint = PROVIDER.add_version(plan, PROVIDER.deploy(plan, FIRST, "support-bot"), SECOND, NEW)
    served = Endpoint(aws)
    new_model = served.variants()[NEW]["ModelName"]
    PROVIDER.shift_traffic(endpoint, {"primary": 90, NEW: 10})
    PROVIDER.shift_traffic(endpoint, {NEW: 100})
    PROVIDER.remove_version(endpoint, "primary")
    assert PROVIDER.versions(endpoint) == {NEW: 100}
    assert lifecycle.updates[-1]["RetainAllVariantProperties"] is True
    assert served.models() == [new_model]
    assert served.configs() == [lifecycle.updates[-1]["EndpointConfigName"]]
    assert served.alarms() == [f"support-bot-{NEW}-5xx"]
    updates = len(lifecycle.updates)
    PROVIDER.remove_version(endpoint, "primary")  # missing: a no-op
    assert len(lifecycle.updates) == updates


def test_rolling_back_removes_the_new_version(aws: Aws, lifecycle: Lifecycle) -> None:
    plan = canary_plan(aws)
    endpoint = PROVIDER.add_version(plan, PROVIDER.deploy(plan, FIRST, "support-bot"), SECOND, NEW)
    served = Endpoint(aws)
    old_model = served.variants()["primary"]["ModelName"]
    PROVIDER.shift_traffic(endpoint, {"primary": 90, NEW: 10})
    PROVIDER.shift_traffic(endpoint, {"primary": 100})
    PROVIDER.remove_version(endpoint, NEW)
    assert PROVIDER.versions(endpoint) == {"primary": 100}
    assert served.models() == [old_model]
    assert len(served.configs()) == 1
    assert served.alarms() == [], "the removed version's alarm goes with it"
    with pytest.raises(ProviderError) as refused:
        PROVIDER.remove_version(endpoint, "primary")
    assert refused.value.code in {"version_has_traffic", "last_version"}


def test_a_version_sagemaker_could_not_serve_is_cleaned_up_by_its_removal(
    aws: Aws, lifecycle: Lifecycle
) -> None:
    """SageMaker rolls a failed update back (the old config serving, a FailureReason):
    add_version says so and deletes nothing the endpoint uses; the engine then rolls the
    canary back (all traffic to the old version, the new one removed), which deletes what the
    failed version left."""
    plan = canary_plan(aws)
    endpoint = PROVIDER.deploy(plan, FIRST, "support-bot")
    served = Endpoint(aws)
    before = (served.models(), served.configs())
    lifecycle.failing_update = "The primary container for production variant x did not pass"
    with pytest.raises(ProviderError) as failed:
        PROVIDER.add_version(plan, endpoint, SECOND, NEW)
    assert failed.value.code == "update_failed" and "did not pass" in str(failed.value)
    assert PROVIDER.versions(endpoint) == {"primary": 100}
    assert before[1][0] in served.configs(), "the config in use is kept"
    lifecycle.failing_update = None
    PROVIDER.shift_traffic(endpoint, {"primary": 100})
    PROVIDER.remove_version(endpoint, NEW)
    assert (served.models(), served.configs()) == before
    assert served.alarms() == []


def test_alarms_name_what_fires_for_a_version(aws: Aws) -> None:
    cloudwatch = aws.client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName=LATENCY,
        Namespace="AWS/SageMaker",
        MetricName="ModelLatency",
        Statistic="Average",
        Period=60,
        EvaluationPeriods=1,
        Threshold=2_000_000.0,
        ComparisonOperator="GreaterThanThreshold",
    )
    plan = canary_plan(aws, rollback_alarms=[LATENCY])
    endpoint = PROVIDER.add_version(plan, PROVIDER.deploy(plan, FIRST, "support-bot"), SECOND, NEW)
    assert PROVIDER.alarms(endpoint, NEW) == []
    own = f"support-bot-{NEW}-5xx"
    cloudwatch.set_alarm_state(AlarmName=own, StateValue="ALARM", StateReason="3 server errors")
    assert PROVIDER.alarms(endpoint, NEW) == [f"{own}: 3 server errors"]
    cloudwatch.set_alarm_state(AlarmName=own, StateValue="OK", StateReason="fine")
    cloudwatch.set_alarm_state(AlarmName=LATENCY, StateValue="ALARM", StateReason="slow")
    assert PROVIDER.alarms(endpoint, NEW) == [f"{LATENCY}: slow"]
    cloudwatch.delete_alarms(AlarmNames=[LATENCY])
    (line,) = PROVIDER.alarms(endpoint, NEW)
    assert line.startswith(f"{LATENCY}: missing")
    cloudwatch.delete_alarms(AlarmNames=[own])
    (line,) = PROVIDER.alarms(endpoint, NEW)
    assert line.startswith(f"{own}: missing"), "what it watched goes unwatched: a rollback"
    assert PROVIDER.alarms(endpoint, "support-bot-v9") == [], "a version not served"


def test_each_version_scales_on_its_own(aws: Aws, lifecycle: Lifecycle) -> None:
    """SageMaker refuses an update that removes a variant registered for autoscaling (the
    stand-in too): the old variant's target goes before it does; the new one's is
    registered once it serves, with the run's tags."""
    plan = canary_plan(aws, autoscaling=True)
    endpoint = PROVIDER.add_version(plan, PROVIDER.deploy(plan, FIRST, "support-bot"), SECOND, NEW)
    served = Endpoint(aws)
    assert served.targets() == [
        "endpoint/support-bot/variant/primary",
        f"endpoint/support-bot/variant/{NEW}",
    ]
    (target,) = [
        t
        for t in served.scaling.describe_scalable_targets(ServiceNamespace="sagemaker")[
            "ScalableTargets"
        ]
        if t["ResourceId"].endswith(NEW)
    ]
    tags = served.scaling.list_tags_for_resource(ResourceARN=target["ScalableTargetARN"])["Tags"]
    assert tags == {"tunefleet:run": "support-bot"}
    PROVIDER.shift_traffic(endpoint, {NEW: 100})
    PROVIDER.remove_version(endpoint, "primary")
    assert served.targets() == [f"endpoint/support-bot/variant/{NEW}"]
    PROVIDER.delete_endpoint(endpoint)
    assert served.targets() == []


def test_a_deploy_without_a_canary_replaces_every_version(aws: Aws, lifecycle: Lifecycle) -> None:
    plan = canary_plan(aws, autoscaling=True)
    endpoint = PROVIDER.add_version(plan, PROVIDER.deploy(plan, FIRST, "support-bot"), SECOND, NEW)
    PROVIDER.shift_traffic(endpoint, {NEW: 100})
    PROVIDER.remove_version(endpoint, "primary")
    third = ArtifactRef(kind="merged_model", uri=f"s3://{BUCKET}/v3/model.tar.gz")
    replaced = PROVIDER.deploy(plan, third, "support-bot")
    served = Endpoint(aws)
    assert PROVIDER.versions(replaced) == {"primary": 100}
    assert served.models() == [replaced.scope["model"]]
    assert served.configs() == [replaced.scope["config"]]
    assert served.alarms() == [] and served.targets() == ["endpoint/support-bot/variant/primary"]


def test_deleting_the_endpoint_deletes_every_version_and_what_it_used(aws: Aws) -> None:
    plan = canary_plan(aws, autoscaling=True)
    endpoint = PROVIDER.add_version(plan, PROVIDER.deploy(plan, FIRST, "support-bot"), SECOND, NEW)
    served = Endpoint(aws)
    # An endpoint ref as the first deploy returned it: its scope names the first model only.
    PROVIDER.delete_endpoint(endpoint.model_copy(update={"scope": {}}))
    assert not served.sagemaker.list_endpoints()["Endpoints"]
    assert served.models() == [] and served.configs() == []
    assert served.alarms() == [] and served.targets() == []
    PROVIDER.delete_endpoint(endpoint)  # a missing endpoint: a no-op


def test_an_endpoint_that_is_changing_is_waited_for(aws: Aws, lifecycle: Lifecycle) -> None:
    """SageMaker refuses to update an endpoint that is Updating ("Cannot update in-progress
    endpoint"); the stand-in does too, so each change waits until it is InService."""
    lifecycle.changing_for = 2
    plan = canary_plan(aws)
    endpoint = PROVIDER.add_version(plan, PROVIDER.deploy(plan, FIRST, "support-bot"), SECOND, NEW)
    sagemaker = aws.client("sagemaker")
    sagemaker.update_endpoint_weights_and_capacities(
        EndpointName="support-bot",
        DesiredWeightsAndCapacities=[{"VariantName": NEW, "DesiredWeight": 5.0}],
    )
    with pytest.raises(sagemaker.exceptions.ClientError) as refused:
        sagemaker.update_endpoint_weights_and_capacities(
            EndpointName="support-bot",
            DesiredWeightsAndCapacities=[{"VariantName": NEW, "DesiredWeight": 6.0}],
        )
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "Cannot update in-progress endpoint" in refused.value.response["Error"]["Message"]
    PROVIDER.shift_traffic(endpoint, {"primary": 80, NEW: 20})
    assert PROVIDER.versions(endpoint) == {"primary": 80, NEW: 20}


CALL = """
import sys
from pathlib import Path

from tunefleet.provider import ArtifactRef, EndpointRef, Plan
from tunefleet_sagemaker.provider import SageMakerProvider

folder, call, version = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
endpoint = EndpointRef.model_validate_json((folder / "endpoint.json").read_text())
if call == "add_version":
    SageMakerProvider().add_version(
        Plan.model_validate_json((folder / "plan.json").read_text()),
        endpoint,
        ArtifactRef.model_validate_json((folder / "artifact.json").read_text()),
        version,
    )
else:
    SageMakerProvider().remove_version(endpoint, version)
"""
_LINES: dict[str, int] = {}
"""Lines each call executes on its path, measured once (the path is the same for every test
of a call: the same endpoint, the same version)."""


def _in_a_process(
    tmp_path: Path, call: str, version: str, endpoint: EndpointRef, kill_at: int, plan: Plan
) -> int:
    """``call`` in a ``python`` process traced by tunefleet.testing.crash, as the CLI is in
    RunConformance: killed before its ``kill_at``-th line (0: run through, counting the
    lines); returns its exit code."""
    folder = tmp_path / "call"
    folder.mkdir(exist_ok=True)
    (folder / "plan.json").write_text(plan.model_dump_json())
    (folder / "endpoint.json").write_text(endpoint.model_dump_json())
    (folder / "artifact.json").write_text(SECOND.model_dump_json())
    site = str(crash.site_dir(tmp_path / "crash-site"))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([site, os.environ.get("PYTHONPATH", "")]),
        crash.ENV: f"tunefleet_sagemaker.provider:{call}:{kill_at}",
        crash.COUNT_ENV: str(tmp_path / "lines"),
    }
    done = subprocess.run(
        [sys.executable, "-c", CALL, str(folder), call, version],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if kill_at == 0:
        assert done.returncode == 0, done.stderr
        _LINES[call] = int((tmp_path / "lines").read_text())
    return done.returncode


def _killed(tmp_path: Path, call: str, version: str, share: float, setup: Any) -> EndpointRef:
    """Measure ``call`` once (on an endpoint ``setup()`` makes, then deleted and made again),
    then kill it at ``share`` of its lines; returns the endpoint."""
    plan, endpoint = setup()
    if call not in _LINES:
        measured = tmp_path / "measured"
        measured.mkdir()
        _in_a_process(measured, call, version, endpoint, 0, plan)
        PROVIDER.delete_endpoint(endpoint)
        plan, endpoint = setup()
    kill_at = max(1, int(_LINES[call] * share))
    assert _in_a_process(tmp_path, call, version, endpoint, kill_at, plan) == -signal.SIGKILL, (
        f"not killed at line {kill_at} of {_LINES[call]}"
    )
    return endpoint


@pytest.mark.parametrize("share", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_a_kill_inside_add_version_then_adding_again_leaves_one_of_each(
    aws: Aws, lifecycle: Lifecycle, tmp_path: Path, share: float
) -> None:
    """SIGKILL at a line spread across add_version (in a process of its own, as a CLI would
    be killed), then add_version again: one new model, one endpoint config, one variant of
    the version and one alarm; nothing created twice, the endpoint updated once."""
    plan = canary_plan(aws)

    def setup() -> tuple[Plan, EndpointRef]:
        lifecycle.creates.clear()
        lifecycle.updates.clear()
        return plan, PROVIDER.deploy(plan, FIRST, "support-bot")

    endpoint = _killed(tmp_path, "add_version", NEW, share, setup)
    served = Endpoint(aws)
    new_model = _versions.model_name("support-bot", NEW, SECOND.uri)
    (old_model,) = [m for m in served.models() if m != new_model]
    endpoint = PROVIDER.add_version(plan, endpoint, SECOND, NEW)
    assert served.models() == sorted([old_model, new_model])
    variants = served.variants()
    assert sorted(variants) == ["primary", NEW] and variants[NEW]["ModelName"] == new_model
    assert PROVIDER.versions(endpoint) == {"primary": 100, NEW: 0}
    assert len(served.configs()) == 1
    assert served.alarms() == [f"support-bot-{NEW}-5xx"]
    assert len(lifecycle.creates) == len(set(lifecycle.creates)), lifecycle.creates
    assert len(lifecycle.updates) == 1, "the endpoint was updated once"


@pytest.mark.parametrize("share", [0.2, 0.5, 0.8])
def test_a_kill_inside_remove_version_then_removing_again_leaves_the_other(
    aws: Aws, lifecycle: Lifecycle, tmp_path: Path, share: float
) -> None:
    """SIGKILL inside remove_version of the old version once the new one has all the
    traffic, then remove_version again: the new version alone, with its model, one endpoint
    config, its alarm and its scalable target; the old one's all gone."""
    plan = canary_plan(aws, autoscaling=True)

    def setup() -> tuple[Plan, EndpointRef]:
        endpoint = PROVIDER.add_version(
            plan, PROVIDER.deploy(plan, FIRST, "support-bot"), SECOND, NEW
        )
        PROVIDER.shift_traffic(endpoint, {NEW: 100})
        lifecycle.creates.clear()
        return plan, endpoint

    endpoint = _killed(tmp_path, "remove_version", "primary", share, setup)
    PROVIDER.remove_version(endpoint, "primary")
    served = Endpoint(aws)
    assert PROVIDER.versions(endpoint) == {NEW: 100}
    assert served.models() == [_versions.model_name("support-bot", NEW, SECOND.uri)]
    assert len(served.configs()) == 1
    assert served.alarms() == [f"support-bot-{NEW}-5xx"]
    assert served.targets() == [f"endpoint/support-bot/variant/{NEW}"]
    assert len(lifecycle.creates) == len(set(lifecycle.creates)), lifecycle.creates

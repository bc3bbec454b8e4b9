"""Versions side by side on one managed online endpoint (TrafficSplitting): deployments of
the fake Azure ML control plane, their traffic, the deployment header, and a canary
rollout through the CLI that shifts the traffic to a second deployment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.providers.azureml.azurite import Azurite
from tests.providers.azureml.conftest import EVALUATION, azureml_spec
from tests.providers.azureml.fake_arm import FakeAzureML

from tunefleet.errors import AlreadyExistsError, ProviderError
from tunefleet.planning import plan_run
from tunefleet.plugins import discover
from tunefleet.provider import ArtifactRef, ChatRequest, Plan, TrafficSplitting, capabilities_of
from tunefleet.spec import parse_spec
from tunefleet.testing.runs import CliRunner
from tunefleet_azureml import _versions
from tunefleet_azureml.provider import AzureMLProvider

PROVIDER = AzureMLProvider()
ASK = ChatRequest(messages=[{"role": "user", "content": "Where are my orders?"}], max_tokens=8)


def canary_plan(
    fake: FakeAzureML, azurite: Azurite, options: dict[str, Any] | None = None, **endpoint: Any
) -> Plan:
    body = json.loads(azureml_spec(fake, azurite, options=options))
    body["endpoint"] = {"canary": {"traffic_percent": 10, "bake_minutes": 0}, **endpoint}
    (plan,) = plan_run(parse_spec(json.dumps(body)), registry=discover()).plans
    assert plan.ok, plan.unmet
    return plan


def model(fake: FakeAzureML, name: str) -> ArtifactRef:
    """A model asset registered in the fake workspace, as a job's artifacts register it."""
    version = fake.register_model(name, {"modelUri": f"azureml://datastores/x/paths/{name}"})
    return ArtifactRef(
        kind="adapter",
        uri=f"azureml://subscriptions/{fake.subscription}/resourcegroups/{fake.resource_group}"
        f"/workspaces/{fake.workspace}/models/{name}/versions/{version}",
    )


def traffic(fake: FakeAzureML, endpoint: str = "support-bot") -> dict[str, int]:
    return dict(fake.endpoints[endpoint]["properties"].get("traffic") or {})


def test_the_provider_splits_traffic() -> None:
    assert capabilities_of(PROVIDER).traffic_split
    assert isinstance(PROVIDER, TrafficSplitting)


def test_labels_become_deployment_names_azure_accepts() -> None:
    assert _versions.deployment_name("support-bot-v2") == "support-bot-v2"
    assert _versions.deployment_name("Support-V2") == "support-v2", "Azure stores lower case"
    for label in ("v2", "2nd", "a" * 40, "support-bot-with-a-long-name-v12"):
        name = _versions.deployment_name(label)
        assert 3 <= len(name) <= 32 and name[0].isalpha(), name
    assert _versions.deployment_name("a" * 40) != _versions.deployment_name("a" * 39)


def test_a_version_is_added_beside_the_one_serving_and_traffic_shifts(
    fake_azureml: FakeAzureML, azurite: Azurite
) -> None:
    plan = canary_plan(fake_azureml, azurite)
    endpoint = PROVIDER.deploy(plan, model(fake_azureml, "m-one"), "support-bot")
    assert PROVIDER.versions(endpoint) == {"primary": 100}
    two = model(fake_azureml, "m-two")
    PROVIDER.add_version(plan, endpoint, two, "support-bot-v2")
    assert PROVIDER.versions(endpoint) == {"primary": 100, "support-bot-v2": 0}
    puts = len([r for r in fake_azureml.requests if r.method == "PUT"])
    again = PROVIDER.add_version(plan, endpoint, two, "support-bot-v2")
    assert again == endpoint
    assert len([r for r in fake_azureml.requests if r.method == "PUT"]) == puts, (
        "adding the same version again (a resumed rollout) changes nothing"
    )

    PROVIDER.shift_traffic(endpoint, {"primary": 90, "support-bot-v2": 10})
    assert traffic(fake_azureml) == {"primary": 90, "support-bot-v2": 10}
    assert PROVIDER.versions(endpoint) == {"primary": 90, "support-bot-v2": 10}

    PROVIDER.invoke_version(endpoint, "support-bot-v2", ASK)
    assert fake_azureml.scored[-1].deployment == "support-bot-v2", "the header picks it"
    assert PROVIDER.alarms(endpoint, "support-bot-v2") == []

    with pytest.raises(ProviderError) as busy:
        PROVIDER.remove_version(endpoint, "primary")
    assert busy.value.code == "version_has_traffic"
    PROVIDER.shift_traffic(endpoint, {"support-bot-v2": 100})
    assert traffic(fake_azureml) == {"primary": 0, "support-bot-v2": 100}
    PROVIDER.remove_version(endpoint, "primary")
    PROVIDER.remove_version(endpoint, "primary")  # gone already: a no-op
    assert set(fake_azureml.deployments["support-bot"]) == {"support-bot-v2"}
    PROVIDER.delete_endpoint(endpoint)
    assert not fake_azureml.endpoints


def test_a_new_version_first_gets_a_mirror_of_the_live_traffic(
    fake_azureml: FakeAzureML, azurite: Azurite
) -> None:
    """Azure ML's mirrored traffic: copies of live requests reach the new deployment (its
    answers dropped) until it takes live traffic of its own, when the mirror stops."""
    plan = canary_plan(fake_azureml, azurite, options={"mirror_percent": 50})
    endpoint = PROVIDER.deploy(plan, model(fake_azureml, "m-one"), "support-bot")
    PROVIDER.add_version(plan, endpoint, model(fake_azureml, "m-two"), "support-bot-v2")
    properties = fake_azureml.endpoints["support-bot"]["properties"]
    assert properties["mirrorTraffic"] == {"support-bot-v2": 50}
    assert traffic(fake_azureml) == {"primary": 100}
    for _ in range(20):
        PROVIDER.invoke(endpoint, ASK)
    mirrored = [s for s in fake_azureml.scored if s.mirrored]
    assert mirrored and {s.deployment for s in mirrored} == {"support-bot-v2"}
    assert {s.deployment for s in fake_azureml.scored if not s.mirrored} == {"primary"}
    PROVIDER.shift_traffic(endpoint, {"primary": 90, "support-bot-v2": 10})
    assert not fake_azureml.endpoints["support-bot"]["properties"].get("mirrorTraffic")


def test_a_label_serving_another_model_is_refused(
    fake_azureml: FakeAzureML, azurite: Azurite
) -> None:
    plan = canary_plan(fake_azureml, azurite)
    endpoint = PROVIDER.deploy(plan, model(fake_azureml, "m-one"), "support-bot")
    PROVIDER.add_version(plan, endpoint, model(fake_azureml, "m-two"), "support-bot-v2")
    with pytest.raises(AlreadyExistsError):
        PROVIDER.add_version(plan, endpoint, model(fake_azureml, "m-three"), "support-bot-v2")


def test_shifting_to_a_version_the_endpoint_lacks_is_refused(
    fake_azureml: FakeAzureML, azurite: Azurite
) -> None:
    plan = canary_plan(fake_azureml, azurite)
    endpoint = PROVIDER.deploy(plan, model(fake_azureml, "m-one"), "support-bot")
    with pytest.raises(ProviderError) as refused:
        PROVIDER.shift_traffic(endpoint, {"nope": 100})
    assert refused.value.code == "unknown_version"
    assert traffic(fake_azureml) == {"primary": 100}


def test_each_version_scales_on_its_own(fake_azureml: FakeAzureML, azurite: Azurite) -> None:
    plan = canary_plan(fake_azureml, azurite, autoscaling={"min_instances": 1, "max_instances": 3})
    endpoint = PROVIDER.deploy(plan, model(fake_azureml, "m-one"), "support-bot")
    PROVIDER.add_version(plan, endpoint, model(fake_azureml, "m-two"), "support-bot-v2")
    assert set(fake_azureml.autoscale) == {"support-bot-primary", "support-bot-support-bot-v2"}
    PROVIDER.shift_traffic(endpoint, {"support-bot-v2": 100})
    PROVIDER.remove_version(endpoint, "primary")
    assert set(fake_azureml.autoscale) == {"support-bot-support-bot-v2"}


def test_deploying_again_never_takes_the_traffic_off_the_serving_version(
    fake_azureml: FakeAzureML, azurite: Azurite
) -> None:
    """An endpoint's traffic is what its PUT says: a redeploy must not PUT the endpoint
    without its traffic while the new deployment is being made."""
    plan = canary_plan(fake_azureml, azurite)
    endpoint = PROVIDER.deploy(plan, model(fake_azureml, "m-one"), "support-bot")
    seen = len(fake_azureml.requests)
    PROVIDER.deploy(plan, model(fake_azureml, "m-two"), "support-bot")
    puts = [
        r.body["properties"].get("traffic")
        for r in fake_azureml.requests[seen:]
        if r.method == "PUT" and r.path.endswith("/onlineEndpoints/support-bot")
    ]
    assert puts == [{"primary": 100}], puts
    assert PROVIDER.versions(endpoint) == {"primary": 100}


def test_a_plain_deploy_replaces_every_version(fake_azureml: FakeAzureML, azurite: Azurite) -> None:
    plan = canary_plan(fake_azureml, azurite)
    endpoint = PROVIDER.deploy(plan, model(fake_azureml, "m-one"), "support-bot")
    PROVIDER.add_version(plan, endpoint, model(fake_azureml, "m-two"), "support-bot-v2")
    PROVIDER.deploy(plan, model(fake_azureml, "m-three"), "support-bot")
    assert set(fake_azureml.deployments["support-bot"]) == {"primary"}
    assert traffic(fake_azureml) == {"primary": 100}
    (deployment,) = fake_azureml.deployments["support-bot"].values()
    assert deployment["properties"]["model"].endswith("/models/m-three/versions/1")


def test_a_canary_rollout_through_the_cli_moves_the_traffic_to_the_new_deployment(
    fake_azureml: FakeAzureML, azurite: Azurite, tmp_path: Path, signed_in: dict[str, str]
) -> None:
    """Two runs of the spec (the second trains longer), each deployed: the second goes out
    as a canary (10% of the traffic), both versions answer the golden sample (the shadow
    comparison), then it takes all the traffic; the first is removed."""
    cli = CliRunner(
        tmp_path,
        f"sqlite:///{tmp_path / 'journal.db'}",
        {"TUNEFLEET_RETRY_BACKOFF": "0.01", **signed_in},
        timeout=180,
    )
    body = json.loads(azureml_spec(fake_azureml, azurite, evaluation=EVALUATION))
    body["endpoint"] = {"canary": {"traffic_percent": 10, "bake_minutes": 0, "shadow_examples": 3}}
    first = tmp_path / "first.yaml"
    first.write_text(json.dumps(body))
    body["hyperparameters"]["epochs"] = 3
    second = tmp_path / "second.yaml"
    second.write_text(json.dumps(body))
    for spec in (first, second):
        ran = cli("run", str(spec))
        assert ran.returncode == 0, ran.stderr
    listed = cli("models", "--json")
    assert listed.returncode == 0, listed.stderr
    models = sorted(m["model"] for m in json.loads(listed.stdout))
    assert len(models) == 2, models
    deployed = cli("deploy", models[0])
    assert deployed.returncode == 0, deployed.stderr
    ((name, deployments),) = fake_azureml.deployments.items()
    assert len(deployments) == 1
    canary = cli("deploy", models[1])
    assert canary.returncode == 0, canary.stderr
    assert "shadow comparison" in canary.stderr, canary.stderr
    shadowed = {s.deployment for s in fake_azureml.scored if not s.mirrored}
    assert len(shadowed) == 2, "the golden sample went to both versions, each by its header"
    puts = [
        r.body["properties"].get("traffic")
        for r in fake_azureml.requests
        if r.method == "PUT" and r.path.endswith(f"/onlineEndpoints/{name}")
    ]
    shares = [t for t in puts if t and len([v for v in t.values() if v]) == 2]
    assert shares and sorted(shares[0].values()) == [10, 90], puts
    (serving,) = fake_azureml.deployments[name]
    assert {k: v for k, v in traffic(fake_azureml, name).items() if v} == {serving: 100}
    assert serving != "primary", "the new deployment serves; the first was removed"

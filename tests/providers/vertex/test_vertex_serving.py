"""Serving on Vertex: a custom job's model uploaded with its serving container, an endpoint,
the model deployed with autoscaling, chat through rawPredict, versions side by side with
their traffic split, a canary rollout through the CLI, and a tuned Gemini model answering
on its own endpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.providers.vertex.conftest import BUCKET, EVALUATION, KEY, gemini_spec, vertex_spec
from tests.providers.vertex.discovery_contract import decode, violations
from tests.providers.vertex.fake_vertex import FakeVertex
from tests.providers.vertex.gcs import FakeGcs

from tunefleet.errors import CapabilityError, ProviderError
from tunefleet.planning import plan_run
from tunefleet.plugins import discover
from tunefleet.provider import ArtifactRef, ChatRequest, Plan, TrafficSplitting, capabilities_of
from tunefleet.spec import parse_spec
from tunefleet.testing.runs import CliRunner
from tunefleet_vertex.provider import VertexProvider

PROVIDER = VertexProvider()
ASK = ChatRequest(messages=[{"role": "user", "content": "Where are my orders?"}], max_tokens=8)


def serving_plan(fake: FakeVertex, gcs: FakeGcs, **endpoint: Any) -> Plan:
    body = json.loads(vertex_spec(fake, gcs))
    body["endpoint"] = {"canary": {"traffic_percent": 10, "bake_minutes": 0}, **endpoint}
    (plan,) = plan_run(parse_spec(json.dumps(body)), registry=discover()).plans
    assert plan.ok, plan.unmet
    return plan


def model(name: str) -> ArtifactRef:
    """A model folder a custom job wrote (the trainer's output directory)."""
    return ArtifactRef(kind="adapter", uri=f"gs://{BUCKET}/tunefleet/jobs/{name}/model/")


def sent(fake: FakeVertex, method: str, suffix: str) -> list[dict[str, Any]]:
    return [
        r.body
        for r in fake.requests
        if r.method == method and r.path.split("?")[0].endswith(suffix) and isinstance(r.body, dict)
    ]


def test_the_provider_serves_and_splits_traffic() -> None:
    assert capabilities_of(PROVIDER).traffic_split
    assert isinstance(PROVIDER, TrafficSplitting)


def test_deploy_uploads_creates_deploys_with_autoscaling_and_answers(
    fake_vertex: FakeVertex, gcs: FakeGcs, signed_in: dict[str, str]
) -> None:
    plan = serving_plan(
        fake_vertex,
        gcs,
        autoscaling={"min_instances": 1, "max_instances": 4, "target_invocations_per_instance": 30},
    )
    endpoint = PROVIDER.deploy(plan, model("m-one"), "support-bot")
    (upload,) = sent(fake_vertex, "POST", "/models:upload")
    body, problem = decode("UploadModelRequest", upload)
    assert body is not None, problem
    assert not violations("GoogleCloudAiplatformV1UploadModelRequest", body)
    container = body["model"]["containerSpec"]
    assert container["invokeRoutePrefix"] == "/*" and "predictRoute" not in container, (
        "a model answers its own routes on a dedicated endpoint (only one of the two is allowed)"
    )
    assert "--model=$(AIP_STORAGE_URI)" in container["args"]
    (created,) = sent(fake_vertex, "POST", "/endpoints")
    assert created["dedicatedEndpointEnabled"] is True
    assert body["model"]["artifactUri"] == f"gs://{BUCKET}/tunefleet/jobs/m-one/model/merged"
    (deploy,) = sent(fake_vertex, "POST", ":deployModel")
    resources = deploy["deployedModel"]["dedicatedResources"]
    assert (resources["minReplicaCount"], resources["maxReplicaCount"]) == (1, 4)
    assert resources["autoscalingMetricSpecs"] == [
        {"metricName": "aiplatform.googleapis.com/prediction/online/request_count", "target": 30}
    ]
    assert PROVIDER.versions(endpoint) == {"primary": 100}
    reply = PROVIDER.invoke(endpoint, ASK)
    assert reply.text and fake_vertex.served, "the invoke route reached the container"
    assert any(r.path.endswith("/invoke/v1/chat/completions") for r in fake_vertex.requests)
    PROVIDER.delete_endpoint(endpoint)
    assert not fake_vertex.endpoints and not fake_vertex.models
    PROVIDER.delete_endpoint(endpoint)  # gone already: a no-op


def test_deploying_again_adopts_what_exists(
    fake_vertex: FakeVertex, gcs: FakeGcs, signed_in: dict[str, str]
) -> None:
    """A deploy killed after any of its steps is finished by the next: IDs are tunefleet's,
    so nothing is made twice."""
    plan = serving_plan(fake_vertex, gcs)
    first = PROVIDER.deploy(plan, model("m-one"), "support-bot")
    seen = len([r for r in fake_vertex.requests if r.method == "POST"])
    again = PROVIDER.deploy(plan, model("m-one"), "support-bot")
    assert again == first
    assert len([r for r in fake_vertex.requests if r.method == "POST"]) == seen
    assert len(fake_vertex.models) == 1 and len(fake_vertex.endpoints) == 1


def test_versions_side_by_side_and_the_traffic_split(
    fake_vertex: FakeVertex, gcs: FakeGcs, signed_in: dict[str, str]
) -> None:
    plan = serving_plan(fake_vertex, gcs)
    endpoint = PROVIDER.deploy(plan, model("m-one"), "support-bot")
    PROVIDER.add_version(plan, endpoint, model("m-two"), "support-bot-v2")
    assert PROVIDER.versions(endpoint) == {"primary": 100, "support-bot-v2": 0}
    posts = len([r for r in fake_vertex.requests if r.method == "POST"])
    PROVIDER.add_version(plan, endpoint, model("m-two"), "support-bot-v2")
    assert len([r for r in fake_vertex.requests if r.method == "POST"]) == posts, (
        "adding the same version again (a resumed rollout) changes nothing"
    )
    PROVIDER.shift_traffic(endpoint, {"primary": 90, "support-bot-v2": 10})
    assert PROVIDER.versions(endpoint) == {"primary": 90, "support-bot-v2": 10}
    (patch,) = sent(fake_vertex, "PATCH", "/endpoints/support-bot")
    assert sorted(patch["trafficSplit"].values()) == [10, 90]

    PROVIDER.invoke_version(endpoint, "support-bot-v2", ASK)
    (_, deployed_id, _) = fake_vertex.served[-1]
    (endpoint_now,) = fake_vertex.endpoints.values()
    labels = {d["id"]: d["displayName"] for d in endpoint_now["deployedModels"]}
    assert labels[deployed_id] == "support-bot-v2", "the invoke route reached that version"
    assert PROVIDER.alarms(endpoint, "support-bot-v2") == []

    with pytest.raises(ProviderError):
        PROVIDER.remove_version(endpoint, "primary")
    PROVIDER.shift_traffic(endpoint, {"support-bot-v2": 100})
    PROVIDER.remove_version(endpoint, "primary")
    PROVIDER.remove_version(endpoint, "primary")  # gone already: a no-op
    assert PROVIDER.versions(endpoint) == {"support-bot-v2": 100}
    assert len(fake_vertex.models) == 1, "the removed version's model is deleted"
    with pytest.raises(ProviderError):
        PROVIDER.shift_traffic(endpoint, {"nope": 100})
    PROVIDER.delete_endpoint(endpoint)
    assert not fake_vertex.endpoints and not fake_vertex.models


def test_a_private_endpoint_under_a_private_network_policy(
    fake_vertex: FakeVertex, gcs: FakeGcs, signed_in: dict[str, str]
) -> None:
    body = json.loads(
        vertex_spec(
            fake_vertex,
            gcs,
            options={
                "network": "projects/123456789012/global/networks/ml",
                "kms_key_name": KEY,
            },
            placement={"require_private_network": True, "require_customer_managed_key": True},
        )
    )
    body["endpoint"] = {}
    (plan,) = plan_run(parse_spec(json.dumps(body)), registry=discover()).plans
    assert plan.ok, plan.unmet
    endpoint = PROVIDER.deploy(plan, model("m-one"), "support-bot")
    (created,) = sent(fake_vertex, "POST", "/endpoints")
    psc = created["privateServiceConnectConfig"]
    assert psc["enablePrivateServiceConnect"] is True
    assert psc["pscAutomationConfigs"] == [
        {"projectId": fake_vertex.project, "network": "projects/123456789012/global/networks/ml"}
    ], "Vertex makes the forwarding rule in the job's network"
    assert created["encryptionSpec"] == {"kmsKeyName": KEY}
    (upload,) = sent(fake_vertex, "POST", "/models:upload")
    assert upload["model"]["encryptionSpec"] == {"kmsKeyName": KEY}
    assert upload["model"]["containerSpec"]["predictRoute"] == "/v1/chat/completions"
    reply = PROVIDER.invoke(endpoint, ASK)
    assert reply.text, "rawPredict at the address options.prediction_url names"
    assert any(r.path.endswith(":rawPredict") for r in fake_vertex.requests)
    with pytest.raises(CapabilityError):
        PROVIDER.invoke_version(endpoint, "primary", ASK)
    PROVIDER.delete_endpoint(endpoint)


def test_an_endpoint_of_that_name_that_is_not_the_planned_one_is_refused(
    fake_vertex: FakeVertex, gcs: FakeGcs, signed_in: dict[str, str]
) -> None:
    """An endpoint someone made under the name (public, unencrypted) never satisfies a
    policy by being adopted."""
    plan = serving_plan(fake_vertex, gcs)
    endpoint = PROVIDER.deploy(plan, model("m-one"), "support-bot")
    fake_vertex.endpoints["support-bot"]["labels"] = {}
    with pytest.raises(ProviderError) as refused:
        PROVIDER.deploy(plan, model("m-two"), "support-bot")
    assert refused.value.code == "endpoint_mismatch"
    fake_vertex.endpoints["support-bot"]["labels"] = {"tunefleet-endpoint": "support-bot"}
    PROVIDER.delete_endpoint(endpoint)


def test_a_whole_run_deploys_invokes_splits_and_undeploys_through_the_cli(
    fake_vertex: FakeVertex, gcs: FakeGcs, tmp_path: Path, signed_in: dict[str, str]
) -> None:
    """Two runs of the spec, each deployed: the first serves alone (autoscaling), the
    second goes out as a canary (10% of the traffic), both answer the golden sample, then
    it takes all the traffic; undeploy deletes the endpoint and the models."""
    cli = CliRunner(
        tmp_path,
        f"sqlite:///{tmp_path / 'journal.db'}",
        {"TUNEFLEET_RETRY_BACKOFF": "0.01", **signed_in},
        timeout=180,
    )
    body = json.loads(vertex_spec(fake_vertex, gcs, evaluation=EVALUATION))
    body["endpoint"] = {
        "autoscaling": {"min_instances": 1, "max_instances": 3},
        "canary": {"traffic_percent": 10, "bake_minutes": 0, "shadow_examples": 3},
    }
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
    ((endpoint_id, endpoint),) = fake_vertex.endpoints.items()
    (first_model,) = endpoint["deployedModels"]
    assert first_model["dedicatedResources"]["maxReplicaCount"] == 3

    canary = cli("deploy", models[1])
    assert canary.returncode == 0, canary.stderr
    assert "shadow comparison" in canary.stderr, canary.stderr
    shadowed = {deployed_id for _, deployed_id, _ in fake_vertex.served}
    assert len(shadowed) == 2, "the golden sample went to both versions"
    splits = [
        r.body["trafficSplit"]
        for r in fake_vertex.requests
        if r.method == "PATCH" and isinstance(r.body, dict) and "trafficSplit" in r.body
    ]
    assert any(sorted(s.values()) == [10, 90] for s in splits), splits
    (serving,) = fake_vertex.endpoints[endpoint_id]["deployedModels"]
    assert serving["id"] != first_model["id"], "the new version serves; the first was removed"
    answer = cli("invoke", "support-bot", "Hello?")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip()
    assert fake_vertex.served[-1][1] == serving["id"]

    undeployed = cli("undeploy", "support-bot")
    assert undeployed.returncode == 0, undeployed.stderr
    assert not fake_vertex.endpoints and not fake_vertex.models


def test_a_tuned_gemini_model_answers_on_its_own_endpoint(
    fake_vertex: FakeVertex, gcs: FakeGcs, tmp_path: Path, signed_in: dict[str, str]
) -> None:
    """A Gemini tuning run, deployed (nothing created: Vertex serves the tuned model on the
    endpoint it made) and invoked through generateContent; its evaluation asks the same."""
    cli = CliRunner(
        tmp_path,
        f"sqlite:///{tmp_path / 'journal.db'}",
        {"TUNEFLEET_RETRY_BACKOFF": "0.01", **signed_in},
        timeout=180,
    )
    spec = tmp_path / "gemini.yaml"
    spec.write_text(gemini_spec(fake_vertex, gcs, endpoint={}, evaluation=EVALUATION))
    ran = cli("run", str(spec))
    assert ran.returncode == 0, ran.stderr
    asked = [r for r in fake_vertex.requests if r.path.endswith(":generateContent")]
    assert len(asked) >= EVALUATION["max_examples"], "the evaluation asked the tuned model"
    endpoints = len(fake_vertex.endpoints)
    deployed = cli("deploy", "support-bot")
    assert deployed.returncode == 0, deployed.stderr
    assert len(fake_vertex.endpoints) == endpoints, "nothing is created"
    answer = cli("invoke", "support-bot", "Where are my orders?")
    assert answer.returncode == 0, answer.stderr
    assert "Where are my orders?" in answer.stdout, "the fake's tuned model echoes the question"
    request = [r for r in fake_vertex.requests if r.path.endswith(":generateContent")][-1]
    assert request.body["contents"][-1] == {
        "role": "user",
        "parts": [{"text": "Where are my orders?"}],
    }

"""Serving on a HyperPod EKS cluster through the inference operator's
InferenceEndpointConfig: the resource the provider sends is accepted by the CRD's schema on
the real API server, the operator (played: :mod:`.inference`) serves it, the SageMaker
endpoint it registers answers through InvokeEndpoint, and a redeploy, a repeated deploy, a
failure, someone else's resource and a delete behave as a user relies on."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from tests.providers.hyperpod.autoplay import BackgroundOperator, wait_until
from tests.providers.hyperpod.conftest import BUCKET, REGION, Aws, hyperpod_spec, served_answer
from tests.providers.hyperpod.inference import InferenceOperator
from tests.providers.hyperpod.kube import KubeCluster, Operator

from tunefleet.errors import ProviderError
from tunefleet.planning import plan_run
from tunefleet.plugins import discover
from tunefleet.provider import ArtifactRef, ChatRequest, EndpointRef, Plan
from tunefleet.spec import parse_spec
from tunefleet_sagemaker.hyperpod import _serving
from tunefleet_sagemaker.hyperpod.provider import HyperPodProvider

NAME = "support"
JOB_MODEL = f"s3://{BUCKET}/tunefleet/jobs/support-bot-0001/model/"
NEXT_MODEL = f"s3://{BUCKET}/tunefleet/jobs/support-bot-0002/model/"
HELLO = ChatRequest(messages=[{"role": "user", "content": "Hello?"}], max_tokens=8)


@pytest.fixture
def inference(aws: Aws, kube: KubeCluster) -> Iterator[InferenceOperator]:
    """The inference operator, played, with no endpoint config left by an earlier test."""
    played = InferenceOperator(kube, aws.client("sagemaker"))
    _clear(kube, played)
    yield played
    _clear(kube, played)


def _clear(kube: KubeCluster, played: InferenceOperator) -> None:
    for found in played.endpoint_configs("default"):
        name = found["metadata"]["name"]
        kube.request("DELETE", kube.endpoint_config_path("default", name))
        played.finalize("default", name)
    wait_until(lambda: not played.endpoint_configs("default"), what="no endpoint config left")


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_serving, "FIRST_POLL_SECONDS", 0.05)
    monkeypatch.setattr(_serving, "LAST_POLL_SECONDS", 0.2)


def serving_plan(**endpoint: Any) -> Plan:
    body = json.loads(hyperpod_spec(validation=False, endpoint={"name": NAME, **endpoint}))
    (plan,) = plan_run(parse_spec(json.dumps(body)), registry=discover()).plans
    assert plan.ok, plan.unmet
    return plan


def stored(kube: KubeCluster, name: str = NAME) -> dict[str, Any]:
    found = kube.json("GET", kube.endpoint_config_path("default", name))
    assert isinstance(found, dict)
    return found


def deploy_played(
    operator: Operator, inference: InferenceOperator, plan: Plan, uri: str
) -> EndpointRef:
    with BackgroundOperator(operator, inference=inference):
        return HyperPodProvider().deploy(plan, ArtifactRef(kind="adapter", uri=uri), NAME)


def test_deploy_serves_the_merged_model_and_invoke_reaches_it(
    aws: Aws, kube: KubeCluster, operator: Operator, inference: InferenceOperator
) -> None:
    """The resource is the plan's with the model's folder filled in (the merged model
    beside the LoRA adapter), stored as sent; the SageMaker endpoint of the same name
    answers a chat request from that model."""
    plan = serving_plan()
    endpoint = deploy_played(operator, inference, plan, JOB_MODEL)
    assert endpoint.provider == "hyperpod" and endpoint.name == NAME
    assert endpoint.region == REGION
    assert endpoint.id and endpoint.id.endswith(f":endpoint/{NAME}")
    resource = stored(kube)
    spec = resource["spec"]
    assert spec["endpointName"] == NAME
    assert spec["modelSourceConfig"]["s3Storage"] == {"bucketName": BUCKET, "region": REGION}
    assert spec["modelSourceConfig"]["modelLocation"] == (
        "tunefleet/jobs/support-bot-0001/model/merged"
    )
    assert spec["modelName"].startswith(f"{NAME}-")
    planned = plan.request("CreateInferenceEndpointConfig", "deploy").body
    assert spec["worker"] == planned["spec"]["worker"], "the worker is sent as planned"
    assert resource["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "tunefleet"
    reply = HyperPodProvider().invoke(endpoint, HELLO)
    assert reply.text == served_answer(
        f"s3://{BUCKET}/tunefleet/jobs/support-bot-0001/model/merged"
    )


def test_deploy_waits_for_the_operator_to_serve_the_current_generation(
    aws: Aws, kube: KubeCluster, inference: InferenceOperator
) -> None:
    """deploy returns only once the SageMaker endpoint is created for this version of the
    resource: not while the operator deploys, and not on the status of the version before."""
    plan = serving_plan()
    returned: list[EndpointRef] = []
    first = threading.Thread(
        target=lambda: returned.append(
            HyperPodProvider().deploy(plan, ArtifactRef(kind="adapter", uri=JOB_MODEL), NAME)
        )
    )
    first.start()
    wait_until(lambda: inference.endpoint_configs("default"), what="the resource is created")
    inference.accept("default", NAME)
    first.join(0.5)
    assert first.is_alive(), "deploy returned while the operator was still deploying"
    inference.complete("default", NAME)
    first.join(10)
    assert returned, "deploy returned once the endpoint was created"

    second = threading.Thread(
        target=lambda: returned.append(
            HyperPodProvider().deploy(plan, ArtifactRef(kind="adapter", uri=NEXT_MODEL), NAME)
        )
    )
    second.start()
    wait_until(lambda: stored(kube)["metadata"]["generation"] == 2, what="the resource is changed")
    second.join(0.5)
    assert second.is_alive(), "deploy took the last generation's status for the new one's"
    inference.accept("default", NAME)
    inference.complete("default", NAME)
    second.join(10)
    assert len(returned) == 2
    assert HyperPodProvider().invoke(returned[1], HELLO).text == served_answer(
        f"s3://{BUCKET}/tunefleet/jobs/support-bot-0002/model/merged"
    )


def test_a_new_model_replaces_the_served_one_and_the_same_one_changes_nothing(
    aws: Aws, kube: KubeCluster, operator: Operator, inference: InferenceOperator
) -> None:
    """One resource and one SageMaker endpoint per name: a new model changes the
    resource's spec (the operator rolls it out); deploying the same model again (a resumed
    deploy) leaves the resource as it was."""
    plan = serving_plan()
    deploy_played(operator, inference, plan, JOB_MODEL)
    first = stored(kube)
    deploy_played(operator, inference, plan, JOB_MODEL)
    assert stored(kube)["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    endpoint = deploy_played(operator, inference, plan, NEXT_MODEL)
    after = stored(kube)
    assert after["metadata"]["uid"] == first["metadata"]["uid"], "changed, not made anew"
    assert after["metadata"]["generation"] == 2
    assert len(inference.endpoint_configs("default")) == 1
    assert inference.sagemaker_endpoints() == [NAME]
    assert HyperPodProvider().invoke(endpoint, HELLO).text == served_answer(
        f"s3://{BUCKET}/tunefleet/jobs/support-bot-0002/model/merged"
    )


def test_delete_waits_for_the_operator_to_tear_it_down(
    aws: Aws, kube: KubeCluster, operator: Operator, inference: InferenceOperator
) -> None:
    """Delete returns once the resource is gone, which the operator's finalizer allows only
    after it removed the SageMaker endpoint; a second delete is a no-op; invoking the
    deleted endpoint is an error, not an answer."""
    plan = serving_plan()
    endpoint = deploy_played(operator, inference, plan, JOB_MODEL)
    with BackgroundOperator(operator, inference=inference):
        HyperPodProvider().delete_endpoint(endpoint)
    assert kube.request("GET", kube.endpoint_config_path("default", NAME))[0] == 404
    assert inference.sagemaker_endpoints() == []
    HyperPodProvider().delete_endpoint(endpoint)
    with pytest.raises(ProviderError):
        HyperPodProvider().invoke(endpoint, HELLO)


def test_a_failed_deployment_is_an_error_with_the_operators_reason(
    aws: Aws, kube: KubeCluster, operator: Operator, inference: InferenceOperator
) -> None:
    plan = serving_plan()
    with (
        BackgroundOperator(operator, inference=inference, serve_fail_with="image pull failed"),
        pytest.raises(ProviderError) as failed,
    ):
        HyperPodProvider().deploy(plan, ArtifactRef(kind="adapter", uri=JOB_MODEL), NAME)
    assert failed.value.code == "endpoint_failed"
    assert "image pull failed" in str(failed.value)


def test_someone_elses_resource_of_that_name_is_refused_and_left_alone(
    aws: Aws, kube: KubeCluster, inference: InferenceOperator
) -> None:
    plan = serving_plan()
    theirs = plan.request("CreateInferenceEndpointConfig", "deploy").body
    theirs = json.loads(
        json.dumps(theirs)
        .replace("${endpoint}", NAME)
        .replace("${model}", "their-model")
        .replace("${model_bucket}", "their-bucket")
        .replace("${model_location}", "models/theirs")
    )
    del theirs["metadata"]["labels"]["app.kubernetes.io/managed-by"]
    made = kube.json("POST", kube.endpoint_config_path("default"), theirs)
    with pytest.raises(ProviderError) as refused:
        HyperPodProvider().deploy(plan, ArtifactRef(kind="adapter", uri=JOB_MODEL), NAME)
    assert refused.value.code == "name_taken"
    ref = EndpointRef(
        provider="hyperpod",
        name=NAME,
        region=REGION,
        scope={"namespace": "default", "eks_cluster": aws.eks_arn},
    )
    with pytest.raises(ProviderError) as not_deleted:
        HyperPodProvider().delete_endpoint(ref)
    assert not_deleted.value.code == "name_taken"
    assert stored(kube)["metadata"]["resourceVersion"] == made["metadata"]["resourceVersion"]

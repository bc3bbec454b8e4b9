"""The HyperPod inference operator's resource on the real API server, and the played operator.

What serving on the ``hyperpod`` provider relies on: the vendored InferenceEndpointConfig CRD
(specs/inference/, rendered and installed by ``kube.start_kube_cluster``) takes the body the
SageMaker HyperPod CLI sends for an S3 model, refuses what its schema refuses with 422, stores
``endpointName: ""`` and applies its defaults; :class:`~.inference.InferenceOperator` plays the
operator's life of one (accept, complete, a spec change, fail, the finalized delete) with the
SageMaker endpoint in moto; and :class:`~.autoplay.BackgroundOperator` plays it unattended.
Facts and sources: the docstrings of ``inference.py`` and ``kube.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from tests.providers.hyperpod.autoplay import BackgroundOperator, wait_until
from tests.providers.hyperpod.conftest import BUCKET, IMAGE, INSTANCE_TYPE, REGION, Aws
from tests.providers.hyperpod.inference import (
    FINALIZER,
    InferenceOperator,
    clear_endpoint_configs,
    resource_name,
)
from tests.providers.hyperpod.kube import (
    INFERENCE_GROUP,
    INFERENCE_KIND,
    INFERENCE_VERSION,
    KubeCluster,
    Operator,
)

NAMESPACE = "tf-serving"
OTHER_NAMESPACE = "tf-serving-other"
ENDPOINT = "tf-ep"
MERGE = "application/merge-patch+json"


def cli_spec(endpoint_name: str = ENDPOINT, model_location: str = "models/v1") -> dict[str, Any]:
    """The spec ``hyp create hyp-custom-endpoint --model-source-type s3 ...`` sends (template
    1.2's ``to_domain``, all flag defaults; /tmp/hp-inference.md section 2), with this
    account's bucket, region, image and instance type."""
    return {
        "autoScalingSpec": {
            "cloudWatchTrigger": {
                "activationTargetValue": 0.0,
                "dimensions": [],
                "metricCollectionPeriod": 300,
                "metricCollectionStartTime": 300,
                "metricStat": "Average",
                "metricType": "Average",
                "minValue": 0.0,
                "useCachedMetrics": True,
            },
            "cooldownPeriod": 300,
            "initialCooldownPeriod": 300,
            "maxReplicaCount": 5,
            "minReplicaCount": 1,
            "pollingInterval": 30,
            "scaleDownStabilizationTime": 300,
            "scaleUpStabilizationTime": 0,
        },
        "endpointName": endpoint_name,
        "instanceType": INSTANCE_TYPE,
        "invocationEndpoint": "invocations",
        "maxDeployTimeInSeconds": 3600,
        "modelName": "my-model",
        "modelSourceConfig": {
            "modelLocation": model_location,
            "modelSourceType": "s3",
            "prefetchEnabled": False,
            "s3Storage": {"bucketName": BUCKET, "region": REGION},
        },
        "replicas": 1,
        "tlsConfig": {"tlsCertificateOutputS3Uri": f"s3://{BUCKET}/certs/"},
        "worker": {
            "environmentVariables": [{"name": "K", "value": "V"}],
            "image": IMAGE,
            "modelInvocationPort": {"containerPort": 8080, "name": "http"},
            "modelVolumeMount": {"mountPath": "/opt/ml/model", "name": "model-weights"},
            "resources": {
                "limits": {"nvidia.com/gpu": 1},
                "requests": {"cpu": "3200m", "memory": "12Gi", "nvidia.com/gpu": 1},
            },
        },
    }


def body(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The resource as the SDK posts it (``call_create_api``): no labels, no annotations."""
    return {
        "apiVersion": f"{INFERENCE_GROUP}/{INFERENCE_VERSION}",
        "kind": INFERENCE_KIND,
        "metadata": {"name": name},
        "spec": spec,
    }


def create(kube: KubeCluster, name: str, spec: dict[str, Any], namespace: str = NAMESPACE) -> Any:
    return kube.json("POST", kube.endpoint_config_path(namespace), body(name, spec))


def model_data(sagemaker: Any, endpoint: str) -> str:
    """The ModelDataUrl of the model the endpoint serves now."""
    config = sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
    variants = sagemaker.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"]
    model = sagemaker.describe_model(ModelName=variants[0]["ModelName"])
    return str(model["PrimaryContainer"]["ModelDataUrl"])


@pytest.fixture
def namespace(kube: KubeCluster) -> Iterator[str]:
    """:data:`NAMESPACE`, without InferenceEndpointConfigs before and after the test."""
    for each in (NAMESPACE, OTHER_NAMESPACE):
        kube.ensure_namespace(each)
        clear_endpoint_configs(kube, each)
    yield NAMESPACE
    for each in (NAMESPACE, OTHER_NAMESPACE):
        clear_endpoint_configs(kube, each)


@pytest.fixture
def inference(kube: KubeCluster, aws: Aws, namespace: str) -> InferenceOperator:
    """The inference operator, played, on a fresh moto account (corrected for it by the
    aws fixture: behave_like_aws)."""
    return InferenceOperator(kube, aws.client("sagemaker"))


# The CRD ----------------------------------------------------------------------------------


def test_the_crd_stores_what_the_cli_sends_for_an_s3_model(
    kube: KubeCluster, namespace: str
) -> None:
    spec = cli_spec()
    created = create(kube, "my-ep", spec)
    stored = kube.json("GET", kube.endpoint_config_path(namespace, "my-ep"))
    assert created["metadata"]["generation"] == 1
    # Nothing pruned or changed: every field the CLI sends is in the schema (0.0 reads back 0).
    assert stored["spec"] == spec
    assert "status" not in stored


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda spec: spec.update(instanceType="g5.8xlarge"), "spec.instanceType"),
        (lambda spec: spec["worker"].pop("modelVolumeMount"), "spec.worker.modelVolumeMount"),
        (lambda spec: spec["modelSourceConfig"].update(modelSourceType="gcs"), "modelSourceType"),
    ],
    ids=["instance-type-without-ml", "no-model-volume-mount", "unknown-source-type"],
)
def test_the_crd_refuses_what_its_schema_refuses(
    kube: KubeCluster, namespace: str, change: Any, field: str
) -> None:
    spec = cli_spec()
    change(spec)
    status, data = kube.request("POST", kube.endpoint_config_path(namespace), body("bad", spec))
    assert status == 422, data
    answer = json.loads(data)
    assert answer["reason"] == "Invalid"
    assert field in answer["message"]
    assert kube.request("GET", kube.endpoint_config_path(namespace, "bad"))[0] == 404


def test_an_empty_endpoint_name_is_stored_and_defaults_are_applied(
    kube: KubeCluster, namespace: str
) -> None:
    spec = {
        "modelName": "my-model",
        "endpointName": "",
        "instanceType": INSTANCE_TYPE,
        "modelSourceConfig": {
            "modelSourceType": "s3",
            "modelLocation": "models/v1",
            "s3Storage": {"bucketName": BUCKET, "region": REGION},
        },
        "worker": {
            "image": IMAGE,
            "modelInvocationPort": {"containerPort": 8080},
            "modelVolumeMount": {"name": "model-weights"},
            "resources": {},
        },
    }
    stored = create(kube, "bare", spec)["spec"]
    assert stored["endpointName"] == ""
    assert stored["maxDeployTimeInSeconds"] == 3600
    assert stored["replicas"] == 1
    assert stored["invocationEndpoint"] == "invocations"
    assert stored["modelSourceConfig"]["prefetchEnabled"] is False
    assert stored["worker"]["modelVolumeMount"]["mountPath"] == "/opt/ml/model"
    assert stored["worker"]["modelInvocationPort"]["name"] == "http"


# The played operator -----------------------------------------------------------------------


def test_the_played_life_of_an_endpoint(
    kube: KubeCluster, aws: Aws, inference: InferenceOperator, namespace: str
) -> None:
    sagemaker = aws.client("sagemaker")
    path = kube.endpoint_config_path(namespace, "chat")
    create(kube, "chat", cli_spec())

    accepted = inference.accept(namespace, "chat")
    assert accepted["metadata"]["finalizers"] == [FINALIZER]
    status = accepted["status"]
    assert status["state"] == "DeploymentInProgress"
    assert status["deploymentStatus"]["name"] == "chat"
    assert status["deploymentStatus"]["deploymentObjectOverallState"] == "DeploymentInProgress"
    assert status["deploymentStatus"]["lastUpdated"]
    assert status["endpoints"] == {"sagemaker": {"state": "CreationInProgress"}}
    assert "observedGeneration" not in status
    assert inference.sagemaker_endpoints() == []

    done = inference.complete(namespace, "chat")
    status = done["status"]
    first = resource_name(ENDPOINT, 1)
    assert status["state"] == "DeploymentComplete"
    assert status["deploymentStatus"]["deploymentObjectOverallState"] == "DeploymentComplete"
    assert status["observedGeneration"] == 1
    assert status["replicas"] == 1
    assert status["endpoints"]["sagemaker"] == {
        "state": "CreationCompleted",
        "endpointArn": sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointArn"],
        "configArn": sagemaker.describe_endpoint_config(EndpointConfigName=first)[
            "EndpointConfigArn"
        ],
        "modelArn": sagemaker.describe_model(ModelName=first)["ModelArn"],
    }
    assert {(c["type"], c["status"]) for c in status["conditions"]} == {
        ("Ready", "True"),
        ("SageMakerEndpointReady", "True"),
    }
    endpoint = sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    assert endpoint["EndpointStatus"] == "InService"
    assert endpoint["EndpointConfigName"] == first
    (variant,) = sagemaker.describe_endpoint_config(EndpointConfigName=first)["ProductionVariants"]
    assert (variant["InstanceType"], variant["InitialInstanceCount"]) == (INSTANCE_TYPE, 1)
    model = sagemaker.describe_model(ModelName=first)["PrimaryContainer"]
    assert model == {"Image": IMAGE, "ModelDataUrl": f"s3://{BUCKET}/models/v1"}
    # Completing again changes nothing in moto.
    again = inference.complete(namespace, "chat")
    assert again["status"]["endpoints"] == status["endpoints"]
    assert (inference.sagemaker_models(), inference.sagemaker_endpoint_configs()) == (
        [first],
        [first],
    )

    # A new model location: a new generation, deployed over the same endpoint.
    changed = kube.json(
        "PATCH",
        path,
        {"spec": {"modelSourceConfig": {"modelLocation": "models/v2"}}},
        content_type=MERGE,
    )
    assert changed["metadata"]["generation"] == 2
    assert changed["status"]["observedGeneration"] == 1
    accepted = inference.accept(namespace, "chat")
    assert accepted["status"]["state"] == "DeploymentInProgress"
    assert accepted["status"]["observedGeneration"] == 1
    done = inference.complete(namespace, "chat")
    second = resource_name(ENDPOINT, 2)
    assert done["status"]["observedGeneration"] == 2
    assert done["status"]["state"] == "DeploymentComplete"
    assert done["status"]["endpoints"]["sagemaker"]["endpointArn"] == endpoint["EndpointArn"]
    assert done["status"]["endpoints"]["sagemaker"]["configArn"].endswith(f"/{second}")
    assert sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == second
    assert model_data(sagemaker, ENDPOINT) == f"s3://{BUCKET}/models/v2"
    assert inference.sagemaker_models() == [second]
    assert inference.sagemaker_endpoint_configs() == [second]

    # DELETE: the finalizer holds the object until the operator has torn down.
    assert kube.request("DELETE", path)[0] == 200
    held = kube.json("GET", path)
    assert held["metadata"]["deletionTimestamp"]
    assert inference.sagemaker_endpoints() == [ENDPOINT]
    inference.finalize(namespace, "chat")
    assert kube.request("GET", path)[0] == 404
    assert inference.sagemaker_endpoints() == []
    assert inference.sagemaker_endpoint_configs() == []
    assert inference.sagemaker_models() == []
    inference.finalize(namespace, "chat")  # gone: nothing to do


def test_a_failed_deployment(inference: InferenceOperator, namespace: str) -> None:
    create(inference.cluster, "broken", cli_spec())
    inference.accept(namespace, "broken")
    failed = inference.fail(namespace, "broken", "ImagePullBackOff", "the image is not there")
    status = failed["status"]
    assert status["state"] == "DeploymentFailed"
    assert status["observedGeneration"] == 1
    assert status["deploymentStatus"]["deploymentObjectOverallState"] == "DeploymentFailed"
    assert status["deploymentStatus"]["reason"] == "ImagePullBackOff"
    assert status["deploymentStatus"]["message"] == "the image is not there"
    assert status["endpoints"]["sagemaker"]["state"] == "CreationFailed"
    (ready,) = [c for c in status["conditions"] if c["type"] == "Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "ImagePullBackOff")
    assert inference.sagemaker_endpoints() == []


def test_without_an_endpoint_name_no_sagemaker_endpoint_is_made(
    inference: InferenceOperator, namespace: str
) -> None:
    create(inference.cluster, "internal", cli_spec(endpoint_name=""))
    accepted = inference.accept(namespace, "internal")
    assert "endpoints" not in accepted["status"]
    done = inference.complete(namespace, "internal")
    assert done["status"]["state"] == "DeploymentComplete"
    assert "endpoints" not in done["status"]
    assert {c["type"] for c in done["status"]["conditions"]} == {"Ready"}
    assert inference.sagemaker_endpoints() == []
    assert inference.sagemaker_models() == []


def test_a_renamed_endpoint_replaces_the_old_one(
    inference: InferenceOperator, namespace: str
) -> None:
    create(inference.cluster, "chat", cli_spec())
    inference.accept(namespace, "chat")
    inference.complete(namespace, "chat")
    inference.cluster.json(
        "PATCH",
        inference.cluster.endpoint_config_path(namespace, "chat"),
        {"spec": {"endpointName": "tf-ep-2"}},
        content_type=MERGE,
    )
    inference.accept(namespace, "chat")
    done = inference.complete(namespace, "chat")
    assert done["status"]["endpoints"]["sagemaker"]["endpointArn"].endswith("/tf-ep-2")
    assert inference.sagemaker_endpoints() == ["tf-ep-2"]
    assert inference.sagemaker_models() == [resource_name("tf-ep-2", 2)]


def test_listing_across_namespaces(inference: InferenceOperator, namespace: str) -> None:
    create(inference.cluster, "one", cli_spec(endpoint_name="one"))
    create(inference.cluster, "two", cli_spec(endpoint_name="two"), namespace=OTHER_NAMESPACE)
    names = {
        (c["metadata"]["namespace"], c["metadata"]["name"]) for c in inference.endpoint_configs()
    }
    assert {(namespace, "one"), (OTHER_NAMESPACE, "two")} <= names
    assert [c["metadata"]["name"] for c in inference.endpoint_configs(OTHER_NAMESPACE)] == ["two"]


def test_finalize_refuses_a_resource_not_being_deleted(
    inference: InferenceOperator, namespace: str
) -> None:
    create(inference.cluster, "live", cli_spec())
    with pytest.raises(RuntimeError, match="not being deleted"):
        inference.finalize(namespace, "live")


# Played in the background ------------------------------------------------------------------


def _state(kube: KubeCluster, name: str) -> dict[str, Any]:
    status, data = kube.request("GET", kube.endpoint_config_path(NAMESPACE, name))
    if status == 404:
        return {"gone": True}
    found: dict[str, Any] = json.loads(data).get("status") or {}
    return found


def test_the_background_operator_serves_redeploys_and_deletes(
    operator: Operator, inference: InferenceOperator, aws: Aws, namespace: str
) -> None:
    kube = inference.cluster
    sagemaker = aws.client("sagemaker")
    with BackgroundOperator(operator, namespace, inference=inference, interval=0.05) as played:
        create(kube, "chat", cli_spec())
        wait_until(
            lambda: _state(kube, "chat").get("state") == "DeploymentComplete",
            what="chat is DeploymentComplete",
        )
        assert played.serve_steps["chat"] >= 2
        assert model_data(sagemaker, ENDPOINT) == f"s3://{BUCKET}/models/v1"
        kube.json(
            "PATCH",
            kube.endpoint_config_path(namespace, "chat"),
            {"spec": {"modelSourceConfig": {"modelLocation": "models/v2"}}},
            content_type=MERGE,
        )
        wait_until(
            lambda: (
                _state(kube, "chat").get("observedGeneration") == 2
                and _state(kube, "chat").get("state") == "DeploymentComplete"
            ),
            what="chat's generation 2 is DeploymentComplete",
        )
        assert model_data(sagemaker, ENDPOINT) == f"s3://{BUCKET}/models/v2"
        kube.request("DELETE", kube.endpoint_config_path(namespace, "chat"))
        wait_until(lambda: _state(kube, "chat").get("gone"), what="chat is gone")
        assert inference.sagemaker_endpoints() == []
        assert inference.sagemaker_models() == []
    played.check()


def test_the_background_operator_fails_deployments_when_told(
    operator: Operator, inference: InferenceOperator, namespace: str
) -> None:
    kube = inference.cluster
    with BackgroundOperator(
        operator, namespace, inference=inference, serve_fail_with="out of memory", interval=0.05
    ):
        create(kube, "chat", cli_spec())
        wait_until(
            lambda: _state(kube, "chat").get("state") == "DeploymentFailed",
            what="chat is DeploymentFailed",
        )
    status = _state(kube, "chat")
    assert status["deploymentStatus"]["message"] == "out of memory"
    assert status["observedGeneration"] == 1
    assert inference.sagemaker_endpoints() == []


def test_the_background_operator_tolerates_a_resource_deleted_while_played(
    operator: Operator,
    inference: InferenceOperator,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube = inference.cluster
    accept = inference.accept
    tried: list[str] = []

    def deleted_first(namespace: str, name: str) -> dict[str, Any]:
        # Gone between the round's list and its patch, as when a user deletes it then.
        tried.append(name)
        kube.request("DELETE", kube.endpoint_config_path(namespace, name))
        return accept(namespace, name)

    monkeypatch.setattr(inference, "accept", deleted_first)
    with BackgroundOperator(operator, namespace, inference=inference, interval=0.05) as played:
        create(kube, "short-lived", cli_spec())
        wait_until(lambda: tried, what="the operator played short-lived")
        rounds = played.rounds
        wait_until(lambda: played.rounds > rounds + 1, what="two more rounds")
    played.check()
    assert _state(kube, "short-lived") == {"gone": True}

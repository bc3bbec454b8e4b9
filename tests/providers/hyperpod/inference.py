"""The SageMaker HyperPod inference operator, played on the test kube-apiserver and moto.

What the real operator does
---------------------------
The operator (chart ``hyperpod-inference-operator`` 2.2.2, appVersion 3.2; closed source) owns
the namespaced custom resource ``InferenceEndpointConfig`` (``inference.sagemaker.aws.amazon.com/v1``,
CRD vendored in ``specs/inference/``). Everything below is from github.com/aws/sagemaker-hyperpod-cli
at commit 011ca927123e02b35a399935bbb3ab1905fe33c7; paths are in that repository:

* It hosts the model in a Kubernetes Deployment named in ``status.deploymentStatus.name``, with
  the Deployment's own status under ``status.deploymentStatus.status``, and when
  ``spec.endpointName`` is not empty it registers a SageMaker endpoint of that name (through a
  ``SageMakerEndpointRegistration``, whose ``executionRole`` "will be used to create model,
  endpoint config, and the endpoint"), reporting its ARNs in ``status.endpoints.sagemaker``
  ``{state, endpointArn, configArn, modelArn}``. An empty ``endpointName`` "represents that
  Sagemaker endpoint will not be created" (CRD, ``spec.endpointName``;
  helm_chart/HyperPodHelmChart/charts/inference-operator/config/crd/).
* ``status.state`` is one of ``DeploymentPending|DeploymentInProgress|DeploymentFailed|
  DeploymentComplete|DeletionPending|DeletionInProgress|DeletionFailed|DeletionComplete``
  (CRD). The SDK's integration test calls an endpoint ready when
  ``status.endpoints.sagemaker.state == "CreationCompleted"`` and failed when
  ``status.deploymentStatus.deploymentObjectOverallState == "DeploymentFailed"``
  (test/integration_tests/inference/cli/test_cli_custom_s3_inference.py); ``hyp describe``
  shows ``CreationInProgress`` and ``CreationCompleted`` and the overall states
  ``DeploymentInProgress`` / ``DeploymentComplete``
  (src/sagemaker/hyperpod/cli/commands/inference.py ``custom_describe``). The sagemaker state
  values are those of the SageMakerEndpointRegistration state enum.
* It finalizes the resource: it holds RBAC ``update`` on ``inferenceendpointconfigs/finalizers``
  (config/rbac/role.yaml) and the state enum has ``Deletion*`` values, so a DELETE leaves the
  object, with ``deletionTimestamp`` set, until it has torn down what it made (among it the
  SageMaker endpoint, its config and model). ``hyp delete`` is only the DELETE
  (``HPEndpoint.delete``).

What is played, and what is made up
-----------------------------------
:class:`InferenceOperator` does each step at once, through the API server (status by JSON
merge patch on the ``/status`` subresource) and through a boto3 SageMaker client (moto):

* :meth:`~InferenceOperator.accept`: the finalizer, ``DeploymentInProgress``, and
  ``CreationInProgress`` for the SageMaker endpoint.
* :meth:`~InferenceOperator.complete`: a SageMaker Model, EndpointConfig and Endpoint in moto,
  then ``DeploymentComplete`` / ``CreationCompleted`` with their ARNs and ``observedGeneration``.
  The model and config are named ``<endpointName>-g<generation>``, so a changed spec (a new
  generation) makes a new pair, moves the endpoint to it with UpdateEndpoint and deletes the
  old pair.
* :meth:`~InferenceOperator.fail` and :meth:`~InferenceOperator.finalize`.

Made up, as the source does not publish them: the finalizer's name (:data:`FINALIZER`), the
condition types and reasons in ``status.conditions`` (``Ready``, ``SageMakerEndpointReady``),
the Deployment's name (the resource's), the naming of the SageMaker model and config, the
variant name (``AllTraffic``, the SageMaker Python SDK's default), and that
``endpoints.sagemaker.state`` reads ``CreationInProgress`` / ``CreationCompleted`` for an
update too. The model's container is ``{Image: spec.worker.image, ModelDataUrl:
s3://<bucketName>/<modelLocation>}`` for an S3 model source (no ModelDataUrl for other sources);
the real operator's registration is not documented down to that.

moto 5.2.5 needs two corrections for this, made by :func:`correct_moto_endpoints` (call it
with the test's ``monkeypatch`` before :meth:`~InferenceOperator.complete`; the moto server
runs in the test process, see tests/providers/conftest.py).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from typing import TYPE_CHECKING, Any

from tests.providers.hyperpod.kube import (
    INFERENCE_GROUP,
    INFERENCE_PLURAL,
    INFERENCE_VERSION,
    KubeCluster,
)

if TYPE_CHECKING:
    import pytest

__all__ = [
    "FINALIZER",
    "InferenceOperator",
    "clear_endpoint_configs",
    "correct_moto_endpoints",
    "resource_name",
]

FINALIZER = "inference.sagemaker.aws.amazon.com/finalizer"
"""The finalizer the played operator puts on an InferenceEndpointConfig. The real one's name is
not published (the operator's RBAC shows only that it has one)."""
VARIANT = "AllTraffic"
_MERGE = "application/merge-patch+json"
_CONFLICT_RETRIES = 5


def resource_name(endpoint_name: str, generation: int) -> str:
    """The SageMaker model and endpoint config the played operator makes for ``generation`` of
    an InferenceEndpointConfig whose ``spec.endpointName`` is ``endpoint_name``."""
    return f"{endpoint_name}-g{generation}"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _set_condition(
    conditions: list[dict[str, Any]],
    kind: str,
    status: str,
    reason: str,
    message: str,
    generation: int,
) -> list[dict[str, Any]]:
    """metav1.Condition bookkeeping as ``meta.SetStatusCondition`` does it
    (k8s.io/apimachinery/pkg/api/meta/conditions.go): one condition per type, its
    ``lastTransitionTime`` moved only when its status changes."""
    now = _now()
    kept: list[dict[str, Any]] = []
    transition = now
    for existing in conditions:
        if existing.get("type") == kind:
            if existing.get("status") == status:
                transition = existing.get("lastTransitionTime") or now
            continue
        kept.append(existing)
    kept.append(
        {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": transition,
            "observedGeneration": generation,
        }
    )
    return kept


def correct_moto_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make moto 5.2.5 host the endpoints a HyperPod inference deployment registers:

    - CreateEndpointConfig accepts every instance type of botocore's
      ``ProductionVariantInstanceType`` enum (SageMaker's own list; ``ml.g5.8xlarge`` is in
      it). moto checks a fixed list from before the g5, g6, p4d, inf2 and trn1 families
      (``FakeEndpointConfig.validate_instance_type``) and refuses them.
    - UpdateEndpoint, which moto does not implement (it answers 500): the endpoint serves the
      new config's variants. SageMaker sets the endpoint ``Updating`` and then ``InService``
      (UpdateEndpoint, API reference); here it is ``InService`` at once, the operator's
      ``DeploymentInProgress`` standing for the wait. Missing endpoint or config:
      ``ValidationException`` in moto's words for them.
    """
    import botocore.session
    from moto.core.responses import ActionResult
    from moto.core.utils import utcnow
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.models import FakeEndpointConfig
    from moto.sagemaker.responses import SageMakerResponse
    from moto.sagemaker.utils import arn_formatter

    model = botocore.session.get_session().get_service_model("sagemaker")
    known = frozenset(model.shape_for("ProductionVariantInstanceType").enum)

    def validate_instance_type(self: Any, instance_type: str) -> None:
        if instance_type not in known:
            raise ValidationError(
                message=f"Value '{instance_type}' at 'instanceType' failed to satisfy "
                f"constraint: Member must satisfy enum value set: {sorted(known)}"
            )

    def update_endpoint(response: Any) -> Any:
        backend = response.sagemaker_backend
        name = response._get_param("EndpointName")
        config_name = response._get_param("EndpointConfigName")
        where = (backend.account_id, backend.region_name)
        endpoint = backend.endpoints.get(name)
        if endpoint is None:
            arn = arn_formatter("endpoint", name, *where)
            raise ValidationError(message=f"Could not find endpoint '{arn}'.")
        config = backend.endpoint_configs.get(config_name)
        if config is None:
            arn = arn_formatter("endpoint-config", config_name, *where)
            raise ValidationError(message=f"Could not find endpoint configuration '{arn}'.")
        endpoint.endpoint_config_name = config_name
        endpoint.production_variants = endpoint._process_production_variants(
            config.production_variants
        )
        endpoint.last_modified_time = utcnow()
        return ActionResult({"EndpointArn": endpoint.arn})

    validate_instance_type.corrected = True  # type: ignore[attr-defined]  # for _check_moto
    monkeypatch.setattr(FakeEndpointConfig, "validate_instance_type", validate_instance_type)
    monkeypatch.setattr(SageMakerResponse, "update_endpoint", update_endpoint, raising=False)


def _check_moto() -> None:
    """RuntimeError unless :func:`correct_moto_endpoints` is in force (moto would refuse
    ``ml.g5.*`` in words that do not say why)."""
    from moto.sagemaker.models import FakeEndpointConfig

    if not getattr(FakeEndpointConfig.validate_instance_type, "corrected", False):
        raise RuntimeError(
            "moto is not corrected for HyperPod endpoints: call "
            "tests.providers.hyperpod.inference.correct_moto_endpoints(monkeypatch) first"
        )


def clear_endpoint_configs(cluster: KubeCluster, namespace: str) -> None:
    """Delete every InferenceEndpointConfig of ``namespace`` at once: finalizers stripped (no
    operator tears anything down), then DELETE, then wait until they are gone. The API server
    lives for the session, so a test that leaves one behind hands it to the next."""
    for item in cluster.json("GET", cluster.endpoint_config_path(namespace))["items"]:
        name = item["metadata"]["name"]
        if item["metadata"].get("finalizers"):
            status, data = cluster.request(
                "PATCH",
                cluster.endpoint_config_path(namespace, name),
                {"metadata": {"finalizers": None}},
                content_type=_MERGE,
            )
            if status not in {200, 404}:
                raise RuntimeError(f"stripping the finalizers of {name} -> {status}: {data!r}")
        status, data = cluster.request("DELETE", cluster.endpoint_config_path(namespace, name))
        if status not in {200, 202, 404}:
            raise RuntimeError(f"deleting {name} -> {status}: {data!r}")
    deadline = time.monotonic() + 30
    while cluster.json("GET", cluster.endpoint_config_path(namespace))["items"]:
        if time.monotonic() > deadline:
            raise AssertionError(f"the InferenceEndpointConfigs of {namespace} are not gone")
        time.sleep(0.05)


class InferenceOperator:
    """Plays the HyperPod inference operator on ``cluster``, hosting SageMaker endpoints in moto
    through ``sagemaker`` (a boto3 SageMaker client). See the module docstring for what the
    real operator does and what is made up.

    Each method acts at once and returns when the API server (and moto) have the result;
    nothing runs in the background (``tests/providers/hyperpod/autoplay.py`` does that).
    ``execution_role_arn`` is passed to CreateModel as the operator's execution role.
    What exists in SageMaker is found by listing, never by reading a not-found error:
    SageMaker answers a missing model, config or endpoint with the generic
    ``ValidationException``, whose code does not tell "missing" from other refusals.
    """

    def __init__(
        self,
        cluster: KubeCluster,
        sagemaker: Any,
        *,
        execution_role_arn: str | None = None,
    ) -> None:
        self.cluster = cluster
        self.sagemaker = sagemaker
        self.execution_role_arn = execution_role_arn

    # Reading

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The InferenceEndpointConfig as the API server stores it, or None if it is gone."""
        status, data = self.cluster.request(
            "GET", self.cluster.endpoint_config_path(namespace, name)
        )
        if status == 404:
            return None
        if status != 200:
            raise RuntimeError(f"GET {namespace}/{name} -> {status}: {data[:2000]!r}")
        found = json.loads(data)
        assert isinstance(found, dict)
        return found

    def _require(self, namespace: str, name: str) -> dict[str, Any]:
        found = self.get(namespace, name)
        if found is None:
            raise RuntimeError(
                f"{self.cluster.endpoint_config_path(namespace, name)} -> 404: it does not exist"
            )
        return found

    def endpoint_configs(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """The InferenceEndpointConfigs of ``namespace`` (all namespaces when None)."""
        if namespace is None:
            path = f"/apis/{INFERENCE_GROUP}/{INFERENCE_VERSION}/{INFERENCE_PLURAL}"
        else:
            path = self.cluster.endpoint_config_path(namespace)
        items: list[dict[str, Any]] = self.cluster.json("GET", path)["items"]
        return items

    def sagemaker_endpoints(self) -> list[str]:
        """The SageMaker endpoints' names (moto), sorted."""
        return self._list("endpoint")

    def sagemaker_endpoint_configs(self) -> list[str]:
        """The SageMaker endpoint configs' names (moto), sorted."""
        return self._list("endpoint-config")

    def sagemaker_models(self) -> list[str]:
        """The SageMaker models' names (moto), sorted."""
        return self._list("model")

    _LISTS = {
        "endpoint": ("list_endpoints", "Endpoints", "EndpointName"),
        "endpoint-config": ("list_endpoint_configs", "EndpointConfigs", "EndpointConfigName"),
        "model": ("list_models", "Models", "ModelName"),
    }

    def _list(self, kind: str, contains: str | None = None) -> list[str]:
        operation, key, field = self._LISTS[kind]
        request = {"NameContains": contains} if contains else {}
        names: list[str] = []
        for page in self.sagemaker.get_paginator(operation).paginate(**request):
            names += [entry[field] for entry in page[key]]
        # NameContains is a filter of SageMaker's; moto's ListModels ignores it.
        return sorted(n for n in names if contains is None or contains in n)

    def _made_for(self, kind: str, endpoint_name: str) -> list[str]:
        """The models or endpoint configs :meth:`complete` made for ``endpoint_name``."""
        pattern = re.compile(re.escape(endpoint_name) + r"-g[0-9]+")
        return [n for n in self._list(kind, endpoint_name) if pattern.fullmatch(n)]

    # Writing

    def _patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        patched = self.cluster.json(
            "PATCH",
            self.cluster.endpoint_config_path(namespace, name) + "/status",
            {"status": status},
            content_type=_MERGE,
        )
        assert isinstance(patched, dict)
        return patched

    def _set_finalizers(self, namespace: str, name: str, add: bool) -> dict[str, Any] | None:
        """Add or remove :data:`FINALIZER`; the answer, or None once the object is gone.
        A merge patch replaces the whole list, so it carries the resourceVersion it was read
        at and is retried on 409 (a client may change the object in between)."""
        for _attempt in range(_CONFLICT_RETRIES):
            current = self.get(namespace, name)
            if current is None:
                return None
            finalizers = list(current["metadata"].get("finalizers") or [])
            if (FINALIZER in finalizers) == add:
                return current
            finalizers = (
                [*finalizers, FINALIZER] if add else [f for f in finalizers if f != FINALIZER]
            )
            status, data = self.cluster.request(
                "PATCH",
                self.cluster.endpoint_config_path(namespace, name),
                {
                    "metadata": {
                        "finalizers": finalizers or None,
                        "resourceVersion": current["metadata"]["resourceVersion"],
                    }
                },
                content_type=_MERGE,
            )
            if status == 409:
                continue
            if status == 404:
                return None
            if status != 200:
                raise RuntimeError(f"PATCH finalizers of {namespace}/{name} -> {status}: {data!r}")
            # Removing the last finalizer of a deleted object deletes it.
            return self.get(namespace, name)
        raise RuntimeError(f"PATCH finalizers of {namespace}/{name}: 409 {_CONFLICT_RETRIES} times")

    def accept(self, namespace: str, name: str) -> dict[str, Any]:
        """The operator has seen the resource (or its new spec): :data:`FINALIZER` added if
        missing (not on one being deleted), ``state: DeploymentInProgress``,
        ``deploymentStatus {name, lastUpdated, deploymentObjectOverallState:
        DeploymentInProgress}`` (reason/message cleared), ``endpoints.sagemaker.state:
        CreationInProgress`` when ``spec.endpointName`` is set (ARNs of an earlier
        generation's endpoint kept), condition ``Ready`` False. ``observedGeneration`` is left
        as it was. Returns the resource."""
        current = self._require(namespace, name)
        if not current["metadata"].get("deletionTimestamp"):
            current = self._set_finalizers(namespace, name, add=True) or current
        generation = int(current["metadata"].get("generation") or 1)
        status: dict[str, Any] = {
            "state": "DeploymentInProgress",
            "deploymentStatus": {
                "name": name,
                "lastUpdated": _now(),
                "deploymentObjectOverallState": "DeploymentInProgress",
                "reason": None,
                "message": None,
            },
            "conditions": _set_condition(
                (current.get("status") or {}).get("conditions") or [],
                "Ready",
                "False",
                "DeploymentInProgress",
                f"Deploying generation {generation} of {name}.",
                generation,
            ),
        }
        if (current.get("spec") or {}).get("endpointName"):
            status["endpoints"] = {"sagemaker": {"state": "CreationInProgress"}}
        return self._patch_status(namespace, name, status)

    def complete(self, namespace: str, name: str) -> dict[str, Any]:
        """The deployment is up. When ``spec.endpointName`` is set, moto gets (idempotently) a
        Model and an EndpointConfig named :func:`resource_name` (endpoint name, generation):
        container ``{Image: spec.worker.image, ModelDataUrl: s3://<bucketName>/<modelLocation>}``
        (S3 model source), variant ``AllTraffic`` of ``spec.instanceType`` (else the first of
        ``spec.instanceTypes``) times ``spec.replicas``; the Endpoint is created on that config,
        or updated to it, and the pairs of other generations are deleted. An endpoint of an
        earlier ``endpointName`` (the status's ARN) is torn down. Then ``state:
        DeploymentComplete``, ``deploymentStatus`` with the Deployment's replica counts,
        ``endpoints.sagemaker {state: CreationCompleted, endpointArn, configArn, modelArn}``
        (none without an endpoint name), ``observedGeneration``, ``replicas``, ``selector``
        (``app=<name>``, the label the SDK lists pods by) and conditions ``Ready`` (and
        ``SageMakerEndpointReady``) True. Returns the resource."""
        current = self._require(namespace, name)
        spec = current.get("spec") or {}
        generation = int(current["metadata"].get("generation") or 1)
        replicas = int(spec.get("replicas", 1))
        endpoint_name = str(spec.get("endpointName") or "")
        before = ((current.get("status") or {}).get("endpoints") or {}).get("sagemaker") or {}
        previous = str(before.get("endpointArn") or "").rpartition("/")[2]
        if previous and previous != endpoint_name:
            self._tear_down(previous)
        conditions = _set_condition(
            (current.get("status") or {}).get("conditions") or [],
            "Ready",
            "True",
            "DeploymentComplete",
            f"Deployment {name} has {replicas} available replicas.",
            generation,
        )
        status: dict[str, Any] = {
            "state": "DeploymentComplete",
            "observedGeneration": generation,
            "replicas": replicas,
            "selector": f"app={name}",
            "deploymentStatus": {
                "name": name,
                "lastUpdated": _now(),
                "deploymentObjectOverallState": "DeploymentComplete",
                "reason": "NewReplicaSetAvailable",
                "message": f'ReplicaSet "{name}" has successfully progressed.',
                "status": _deployment_status(name, replicas, generation),
            },
        }
        if endpoint_name:
            status["endpoints"] = {"sagemaker": self._deploy(endpoint_name, spec, generation)}
            conditions = _set_condition(
                conditions,
                "SageMakerEndpointReady",
                "True",
                "CreationCompleted",
                f"SageMaker endpoint {endpoint_name} is InService.",
                generation,
            )
        else:
            status["endpoints"] = None
        status["conditions"] = conditions
        return self._patch_status(namespace, name, status)

    def _deploy(self, endpoint_name: str, spec: dict[str, Any], generation: int) -> dict[str, str]:
        """Model, config and endpoint in moto for this generation; ``endpoints.sagemaker``."""
        _check_moto()
        current = resource_name(endpoint_name, generation)
        worker = spec.get("worker") or {}
        container: dict[str, str] = {"Image": str(worker.get("image", ""))}
        source = spec.get("modelSourceConfig") or {}
        if source.get("modelSourceType") == "s3":
            bucket = (source.get("s3Storage") or {}).get("bucketName", "")
            container["ModelDataUrl"] = f"s3://{bucket}/{source.get('modelLocation') or ''}"
        instance_type = spec.get("instanceType") or (spec.get("instanceTypes") or [None])[0]
        if not instance_type:
            raise ValueError(f"{endpoint_name}: neither spec.instanceType nor instanceTypes")
        if current not in self._made_for("model", endpoint_name):
            request: dict[str, Any] = {"ModelName": current, "PrimaryContainer": container}
            if self.execution_role_arn:
                request["ExecutionRoleArn"] = self.execution_role_arn
            self.sagemaker.create_model(**request)
        if current not in self._made_for("endpoint-config", endpoint_name):
            self.sagemaker.create_endpoint_config(
                EndpointConfigName=current,
                ProductionVariants=[
                    {
                        "VariantName": VARIANT,
                        "ModelName": current,
                        "InstanceType": instance_type,
                        "InitialInstanceCount": int(spec.get("replicas", 1)),
                    }
                ],
            )
        if endpoint_name not in self._list("endpoint", endpoint_name):
            self.sagemaker.create_endpoint(EndpointName=endpoint_name, EndpointConfigName=current)
        else:
            described = self.sagemaker.describe_endpoint(EndpointName=endpoint_name)
            if described["EndpointConfigName"] != current:
                self.sagemaker.update_endpoint(
                    EndpointName=endpoint_name, EndpointConfigName=current
                )
        for config in self._made_for("endpoint-config", endpoint_name):
            if config != current:
                self.sagemaker.delete_endpoint_config(EndpointConfigName=config)
        for model in self._made_for("model", endpoint_name):
            if model != current:
                self.sagemaker.delete_model(ModelName=model)
        return {
            "state": "CreationCompleted",
            "endpointArn": self.sagemaker.describe_endpoint(EndpointName=endpoint_name)[
                "EndpointArn"
            ],
            "configArn": self.sagemaker.describe_endpoint_config(EndpointConfigName=current)[
                "EndpointConfigArn"
            ],
            "modelArn": self.sagemaker.describe_model(ModelName=current)["ModelArn"],
        }

    def _tear_down(self, endpoint_name: str) -> None:
        """Delete the endpoint and every config and model made for it (those that exist)."""
        if endpoint_name in self._list("endpoint", endpoint_name):
            self.sagemaker.delete_endpoint(EndpointName=endpoint_name)
        for config in self._made_for("endpoint-config", endpoint_name):
            self.sagemaker.delete_endpoint_config(EndpointConfigName=config)
        for model in self._made_for("model", endpoint_name):
            self.sagemaker.delete_model(ModelName=model)

    def fail(
        self, namespace: str, name: str, reason: str = "ProgressDeadlineExceeded", message: str = ""
    ) -> dict[str, Any]:
        """The deployment failed: ``state: DeploymentFailed``, ``deploymentStatus
        {deploymentObjectOverallState: DeploymentFailed, reason, message}``,
        ``observedGeneration``, condition ``Ready`` False with ``reason`` (which must match the
        condition reason pattern ``^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$``), and
        ``endpoints.sagemaker.state: CreationFailed`` when ``spec.endpointName`` is set (a
        value of the registration's state enum). Nothing in moto changes. The default reason
        is what a Deployment that does not progress reports (Kubernetes, "Deployments",
        Failed Deployment). Returns the resource."""
        current = self._require(namespace, name)
        generation = int(current["metadata"].get("generation") or 1)
        message = message or f"Deployment {name} failed."
        status: dict[str, Any] = {
            "state": "DeploymentFailed",
            "observedGeneration": generation,
            "deploymentStatus": {
                "name": name,
                "lastUpdated": _now(),
                "deploymentObjectOverallState": "DeploymentFailed",
                "reason": reason,
                "message": message,
            },
            "conditions": _set_condition(
                (current.get("status") or {}).get("conditions") or [],
                "Ready",
                "False",
                reason,
                message,
                generation,
            ),
        }
        if (current.get("spec") or {}).get("endpointName"):
            status["endpoints"] = {"sagemaker": {"state": "CreationFailed"}}
        return self._patch_status(namespace, name, status)

    def finalize(self, namespace: str, name: str) -> None:
        """Tear down a resource being deleted (``metadata.deletionTimestamp`` set):
        ``state: DeletionInProgress``; the SageMaker endpoint of ``spec.endpointName`` and of
        the status's ``endpointArn``, with every config and model made for them, deleted from
        moto; then :data:`FINALIZER` removed, upon which the API server deletes the object
        (if no other finalizer holds it). A no-op when the resource is gone; RuntimeError
        when it is not being deleted."""
        current = self.get(namespace, name)
        if current is None:
            return
        if not current["metadata"].get("deletionTimestamp"):
            raise RuntimeError(f"{namespace}/{name} is not being deleted")
        generation = int(current["metadata"].get("generation") or 1)
        status: dict[str, Any] = {
            "state": "DeletionInProgress",
            "conditions": _set_condition(
                (current.get("status") or {}).get("conditions") or [],
                "Ready",
                "False",
                "DeletionInProgress",
                f"Deleting {name}.",
                generation,
            ),
        }
        code, data = self.cluster.request(
            "PATCH",
            self.cluster.endpoint_config_path(namespace, name) + "/status",
            {"status": status},
            content_type=_MERGE,
        )
        if code == 404:
            return
        if code != 200:
            raise RuntimeError(f"PATCH status of {namespace}/{name} -> {code}: {data!r}")
        sagemaker = ((current.get("status") or {}).get("endpoints") or {}).get("sagemaker") or {}
        names = {
            str((current.get("spec") or {}).get("endpointName") or ""),
            str(sagemaker.get("endpointArn") or "").rpartition("/")[2],
        }
        for endpoint_name in sorted(names - {""}):
            self._tear_down(endpoint_name)
        self._set_finalizers(namespace, name, add=False)


def _deployment_status(name: str, replicas: int, generation: int) -> dict[str, Any]:
    """An apps/v1 DeploymentStatus of a Deployment that rolled out (Kubernetes,
    "Deployments", Complete Deployment: Available True MinimumReplicasAvailable, Progressing
    True NewReplicaSetAvailable)."""
    now = _now()
    return {
        "observedGeneration": generation,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "conditions": [
            {
                "type": "Available",
                "status": "True",
                "reason": "MinimumReplicasAvailable",
                "message": "Deployment has minimum availability.",
                "lastTransitionTime": now,
                "lastUpdateTime": now,
            },
            {
                "type": "Progressing",
                "status": "True",
                "reason": "NewReplicaSetAvailable",
                "message": f'ReplicaSet "{name}" has successfully progressed.',
                "lastTransitionTime": now,
                "lastUpdateTime": now,
            },
        ],
    }

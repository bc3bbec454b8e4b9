"""Versions of a model side by side: the deployments of one managed online endpoint.

A version is a deployment, named after its label where the label is a valid deployment
name (3-32 characters, a letter first) and ``<label, cut>-<8 hex>`` otherwise; the label
itself is the deployment's ``tunefleet:version`` tag, so :func:`versions` reads labels
from Azure whatever plan the caller holds. The endpoint's ``traffic`` splits requests
between deployments by percent ("Perform safe rollout of new deployments",
https://learn.microsoft.com/azure/machine-learning/how-to-safely-rollout-online-endpoints);
a request with the ``azureml-model-deployment`` header goes to that deployment whatever
the traffic, which is how the rollout compares versions on the golden set. With
``options.mirror_percent``, a new version first gets a copy of that share of the live
requests (``mirrorTraffic``: its answers are dropped), until the canary gives it live
traffic of its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from tunefleet.errors import AlreadyExistsError, ProviderError, ProviderNotFoundError
from tunefleet.provider import ArtifactRef, ChatReply, ChatRequest, EndpointRef, Plan
from tunefleet_azureml import _serving
from tunefleet_azureml._client import (
    PROVIDER,
    Where,
    arm,
    ensure_version,
    translated,
)
from tunefleet_azureml.options import AzureMLOptions

__all__ = [
    "VERSION_TAG",
    "add_version",
    "alarms",
    "deployment_name",
    "invoke_version",
    "remove_version",
    "shift_traffic",
    "versions",
]

VERSION_TAG = "tunefleet:version"
_WRITABLE_ENDPOINT = ("authMode", "description", "publicNetworkAccess")
"""What of an endpoint's properties a PUT sends back (the rest is the service's)."""


def deployment_name(label: str) -> str:
    """The deployment of version ``label``: lower case, as Azure ML stores a deployment's
    name (traffic keyed by another casing is refused, Azure/azure-sdk-for-python#28715)."""
    label = label.lower()
    if _serving.ENDPOINT_NAME.match(label):
        return label
    digest = hashlib.sha256(label.encode()).hexdigest()[:8]
    head = "".join(c for c in label if c.isalnum() or c == "-").lstrip("-0123456789")[:23]
    return f"{head or 'v'}-{digest}".replace("--", "-")


def _deployments(where: Where, endpoint: str) -> list[dict[str, Any]]:
    with translated(f"list the deployments of {endpoint}"):
        return [
            dict(d)
            for d in arm(where).online_deployments.list(
                where.resource_group, where.workspace, endpoint
            )
        ]


def _endpoint(where: Where, name: str) -> dict[str, Any]:
    with translated(f"read endpoint {name}"):
        return dict(arm(where).online_endpoints.get(where.resource_group, where.workspace, name))


def _labels(where: Where, endpoint: str) -> dict[str, str]:
    """Deployment name -> version label, for every deployment of ``endpoint``."""
    found = {}
    for deployment in _deployments(where, endpoint):
        name = str(deployment["name"])
        found[name] = str((deployment.get("tags") or {}).get(VERSION_TAG) or name)
    return found


def add_version(
    plan: Plan, endpoint: EndpointRef, artifact: ArtifactRef, version: str
) -> EndpointRef:
    """Deploy ``artifact`` as deployment of ``version`` beside the others, with no traffic;
    a deployment of that version serving that model already is left as it is."""
    options = AzureMLOptions.model_validate(plan.options)
    where = Where.of(options)
    deployment = deployment_name(version)
    model, model_name, model_version = _serving.model_id(artifact, where)
    try:
        with translated(f"read deployment {deployment}"):
            found = dict(
                arm(where).online_deployments.get(
                    where.resource_group, where.workspace, endpoint.name, deployment
                )
            )
        properties = found.get("properties") or {}
        if str(properties.get("model", "")).lower() != model.lower():
            raise AlreadyExistsError(
                PROVIDER,
                f"endpoint {endpoint.name} serves version {version} with another model "
                f"({properties.get('model')}); label the new version otherwise",
                code="version_taken",
            )
        if properties.get("provisioningState") == "Succeeded":
            return endpoint
    except ProviderNotFoundError:
        pass
    adapter = "full" if artifact.kind == "merged_model" else "lora"
    values = {
        _serving.ENDPOINT: endpoint.name,
        _serving.DEPLOYMENT: deployment,
        _serving.MODEL: model,
        _serving.MODEL_DIR: _serving.model_dir(model_name, model_version, adapter),
    }
    for operation, request in _serving.planned(plan, values):
        if operation == "EnvironmentVersions_CreateOrUpdate":
            ensure_version(where, request)
        elif operation == "OnlineDeployments_CreateOrUpdate":
            body = request["body"]
            request["body"] = {**body, "tags": {**body.get("tags", {}), VERSION_TAG: version}}
            _serving.put(where, request, operation)
        elif operation == "AutoscaleSettings_CreateOrUpdate":
            _serving.put_autoscale(where, request)
    if options.mirror_percent:
        _put_endpoint(where, endpoint.name, mirror={deployment: options.mirror_percent})
    return endpoint


def _put_endpoint(
    where: Where,
    name: str,
    *,
    traffic: Mapping[str, int] | None = None,
    mirror: Mapping[str, int] | None = None,
) -> None:
    """PUT the endpoint as it is with new ``traffic`` and/or ``mirror`` (mirrored traffic),
    waiting until it is done. A deployment that takes live traffic is mirrored to no more:
    Azure ML refuses both at once."""
    current = _endpoint(where, name)
    properties = current.get("properties") or {}
    live = dict(traffic if traffic is not None else properties.get("traffic") or {})
    mirrored = dict(mirror if mirror is not None else properties.get("mirrorTraffic") or {})
    body: dict[str, Any] = {
        "location": current["location"],
        "properties": {
            **{key: properties[key] for key in _WRITABLE_ENDPOINT if key in properties},
            "traffic": live,
            "mirrorTraffic": {d: share for d, share in mirrored.items() if not live.get(d)},
        },
    }
    if current.get("tags"):
        body["tags"] = current["tags"]
    identity = current.get("identity") or {}
    if identity.get("type"):
        body["identity"] = {"type": identity["type"]}
    _serving.put(
        where, {"path": f"onlineEndpoints/{name}", "body": body}, "OnlineEndpoints_CreateOrUpdate"
    )


def versions(endpoint: EndpointRef) -> dict[str, int]:
    """Every version the endpoint serves and its share of the traffic."""
    where = Where.from_scope(endpoint.scope)
    traffic = (_endpoint(where, endpoint.name).get("properties") or {}).get("traffic") or {}
    return {
        label: int(traffic.get(name, 0)) for name, label in _labels(where, endpoint.name).items()
    }


def shift_traffic(endpoint: EndpointRef, weights: Mapping[str, int]) -> None:
    """Put the endpoint again with ``weights`` as its traffic (every other deployment at
    0), and wait until it is done."""
    where = Where.from_scope(endpoint.scope)
    labels = _labels(where, endpoint.name)
    by_label = {label: name for name, label in labels.items()}
    missing = sorted(set(weights) - set(by_label))
    if missing:
        raise ProviderError(
            PROVIDER,
            f"endpoint {endpoint.name} serves no version {', '.join(missing)}",
            code="unknown_version",
        )
    traffic = {name: int(weights.get(label, 0)) for name, label in labels.items()}
    _put_endpoint(where, endpoint.name, traffic=traffic)


def invoke_version(endpoint: EndpointRef, version: str, request: ChatRequest) -> ChatReply:
    """Ask ``version``'s deployment directly."""
    return _serving.invoke(endpoint, request, deployment=deployment_name(version))


def remove_version(endpoint: EndpointRef, version: str) -> None:
    """Delete ``version``'s autoscale setting and deployment, which must have no traffic;
    a missing one is a no-op."""
    where = Where.from_scope(endpoint.scope)
    deployment = deployment_name(version)
    try:
        share = versions(endpoint).get(version, 0)
    except ProviderNotFoundError:
        return
    if share:
        raise ProviderError(
            PROVIDER,
            f"version {version} still gets {share}% of endpoint {endpoint.name}'s traffic; "
            "shift it away first",
            code="version_has_traffic",
        )
    _serving.delete_deployment(where, endpoint.name, deployment)


def alarms(endpoint: EndpointRef, version: str) -> list[str]:
    """What is wrong with ``version``'s deployment now: a provisioning state other than
    Succeeded (a failed update, instances that could not start)."""
    where = Where.from_scope(endpoint.scope)
    deployment = deployment_name(version)
    try:
        with translated(f"read deployment {deployment}"):
            found = dict(
                arm(where).online_deployments.get(
                    where.resource_group, where.workspace, endpoint.name, deployment
                )
            )
    except ProviderNotFoundError:
        return [f"deployment {deployment} of version {version} does not exist"]
    state = (found.get("properties") or {}).get("provisioningState")
    if state in ("Succeeded", "Updating", "Creating", "Scaling"):
        return []
    return [f"deployment {deployment} of version {version} is {state}"]

"""Versions of one endpoint: deployed models side by side, traffic split by percent.

A version is a deployed model whose display name is the version's label; its ID is
derived from the endpoint, the label and the artifact (:func:`._serving.deployed_model_id`),
so adding a version that is there already changes nothing. The split is the endpoint's
``trafficSplit`` (deployed model ID -> percent, "must add up to 100", the discovery
document), set with ``endpoints.patch`` and the ``traffic_split`` update mask. One version
is asked directly through its invoke route (``deployedModels/{id}/invoke/...``: the
container's routes under the ``invokeRoutePrefix`` the model was uploaded with).
"""

from __future__ import annotations

from collections.abc import Mapping

from tunefleet.errors import CapabilityError, ProviderError
from tunefleet.provider import ArtifactRef, ChatReply, ChatRequest, EndpointRef, Plan
from tunefleet_vertex import _serving
from tunefleet_vertex._client import PROVIDER, Where
from tunefleet_vertex.options import VertexOptions

__all__ = [
    "add_version",
    "alarms",
    "invoke_version",
    "remove_version",
    "shift_traffic",
    "versions",
]


def _custom(endpoint: EndpointRef) -> tuple[Where, str]:
    if endpoint.scope.get("kind") == "tuned":
        raise CapabilityError(
            PROVIDER, "a tuned Gemini model is served alone on the endpoint Vertex made for it"
        )
    return Where.from_scope(endpoint.scope), str(endpoint.id)


def _ids(where: Where, resource: str) -> dict[str, str]:
    """Version label -> deployed model ID."""
    return {label: key for key, (label, _, _) in _serving.deployed(where, resource).items()}


def add_version(
    plan: Plan, endpoint: EndpointRef, artifact: ArtifactRef, version: str
) -> EndpointRef:
    """Deploy ``artifact`` as ``version`` beside what the endpoint serves, with no traffic."""
    where, resource = _custom(endpoint)
    options = VertexOptions.model_validate(plan.options)
    if options.mode != "custom":
        raise CapabilityError(PROVIDER, "a Gemini tuning target serves no versions")
    values = _serving.values_for(plan, artifact, endpoint.name, version)
    sent = dict(_serving.planned(plan, values))
    found = _ids(where, resource).get(version)
    if found is not None and found != values[_serving.DEPLOYED_MODEL_ID]:
        raise ProviderError(
            PROVIDER,
            f"version {version} of {endpoint.name} serves another model (deployed model "
            f"{found}); remove it first",
            code="version_exists",
        )
    _serving._upload(where, sent["models.upload"])
    _serving.deploy_model(where, sent["endpoints.deployModel"], None)
    return endpoint


def versions(endpoint: EndpointRef) -> dict[str, int]:
    """Each version's share of the endpoint's traffic, in percent (a tuned Gemini model's
    endpoint serves that one model: one version)."""
    if endpoint.scope.get("kind") == "tuned":
        return {_serving.PRIMARY: 100}
    where, resource = _custom(endpoint)
    return {label: share for label, _, share in _serving.deployed(where, resource).values()}


def shift_traffic(endpoint: EndpointRef, weights: Mapping[str, int]) -> None:
    """Route the traffic by ``weights`` (version -> percent, adding up to 100)."""
    where, resource = _custom(endpoint)
    ids = _ids(where, resource)
    missing = sorted(set(weights) - set(ids))
    if missing:
        raise ProviderError(PROVIDER, f"{endpoint.name} serves no version {', '.join(missing)}")
    if sum(weights.values()) != 100:
        raise ProviderError(PROVIDER, f"traffic weights must add up to 100, not {dict(weights)}")
    _serving.shift(where, resource, {ids[label]: share for label, share in weights.items()})


def invoke_version(endpoint: EndpointRef, version: str, request: ChatRequest) -> ChatReply:
    """Ask ``version`` directly, whatever the split."""
    where, resource = _custom(endpoint)
    found = _ids(where, resource).get(version)
    if found is None:
        raise ProviderError(PROVIDER, f"{endpoint.name} serves no version {version}")
    return _serving.invoke(endpoint, request, version_id=found)


def remove_version(endpoint: EndpointRef, version: str) -> None:
    """Undeploy ``version`` (which has no traffic) and delete its model."""
    where, resource = _custom(endpoint)
    models = _serving.deployed(where, resource)
    for key, (label, _, share) in models.items():
        if label != version:
            continue
        if share:
            raise ProviderError(
                PROVIDER, f"version {version} still has {share}% of the traffic; shift it first"
            )
        rest = {k: p for k, (_, _, p) in models.items() if k != key}
        _serving.undeploy(where, resource, key, rest)


def alarms(endpoint: EndpointRef, version: str) -> list[str]:
    """What is wrong with ``version`` now: not deployed, or no replica available."""
    if endpoint.scope.get("kind") == "tuned":
        return []
    where, resource = _custom(endpoint)
    endpoint_now = _serving.get_endpoint(where, resource)
    if endpoint_now is None:
        return [f"endpoint {endpoint.name} is gone"]
    for model in endpoint_now.deployed_models:
        if model.display_name != version:
            continue
        status = model.status
        if status and status.available_replica_count == 0 and status.last_update_time:
            return [f"version {version} has no replica available: {status.message or 'no message'}"]
        return []
    return [f"version {version} is not deployed on {endpoint.name}"]

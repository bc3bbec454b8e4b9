"""Model versions side by side on one endpoint (TrafficSplitting): SageMaker's production
variants.

How SageMaker splits an endpoint's traffic between models: one endpoint config holds
several production variants, each a model on its own instances with a weight; "the
traffic to a production variant is determined by the ratio of the VariantWeight to the
sum of all VariantWeight values across all ProductionVariants" (ProductionVariant,
InitialVariantWeight); UpdateEndpointWeightsAndCapacities changes the weights in place;
InvokeEndpoint with TargetVariant asks one variant, "the targeted routing overrides the
random traffic distribution"; each variant has its own CloudWatch metrics (dimensions
EndpointName and VariantName). (Testing models with production variants,
https://docs.aws.amazon.com/sagemaker/latest/dg/model-ab-testing.html.)

A version is a variant named after it (the variant a plain deploy creates is ``primary``):

    add_version     its alarm (PutMetricAlarm), its model (CreateModel, as deploy makes
                    one), a config with the variants serving as they are plus the new one
                    at weight 0 (CreateEndpointConfig), UpdateEndpoint with
                    RetainAllVariantProperties, InService; then its autoscaling
    versions        DescribeEndpoint: each variant's weight as a percentage
    shift_traffic   UpdateEndpointWeightsAndCapacities with every variant; InService
    invoke_version  InvokeEndpoint with TargetVariant
    remove_version  its scalable target first, a config without it, UpdateEndpoint,
                    InService; then its model, its alarm and the old config go
    alarms          DescribeAlarms of its alarm and the rollback alarms its tags name

Every step finds what an earlier, killed attempt left (names derived from the endpoint,
the version and what they hold; find before create) and waits for the endpoint to be
InService before changing it (SageMaker refuses to update an endpoint that is changing),
so each may be repeated after a crash.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from tunefleet.errors import (
    AlreadyExistsError,
    CapabilityError,
    ProviderError,
    ProviderNotFoundError,
)
from tunefleet.provider import (
    ArtifactRef,
    ChatReply,
    ChatRequest,
    EndpointRef,
    Plan,
    fill_placeholders,
)
from tunefleet_sagemaker import _limits
from tunefleet_sagemaker._client import PROVIDER, client, translated
from tunefleet_sagemaker._serving import (
    CONFIG,
    ENDPOINT,
    MODEL,
    MODEL_DATA,
    VARIANT,
    VERSION,
    alarm_name,
    autoscale,
    delete,
    deregister,
    derived_name,
    describe_config,
    endpoint_ref,
    ensure_config,
    ensure_model,
    invoke,
    planned,
    rollback_alarms,
    settled,
    sweep,
    update,
    weights,
)

__all__ = [
    "add_version",
    "alarms",
    "config_name",
    "invoke_version",
    "model_name",
    "percentages",
    "remove_version",
    "shift_traffic",
    "versions",
]

VARIANT_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
"""A production variant's name: botocore's sagemaker model, shape VariantName (at most 63
characters, no hyphen first or last); the version's label becomes one."""
ALARM_TYPES = ["MetricAlarm", "CompositeAlarm"]
"""Rollback alarms may be composite alarms; DescribeAlarms returns "only metric alarms"
unless asked for others (DescribeAlarms, AlarmTypes)."""


def model_name(endpoint: str, version: str, artifact: str) -> str:
    """The model of ``version`` serving ``artifact`` on ``endpoint``."""
    return derived_name(endpoint, version, artifact)


def config_name(endpoint: str, variants: Iterable[tuple[str, str]]) -> str:
    """The endpoint config holding ``variants`` (variant name, model name): the same
    variants give the same name, so a config a killed call created is found again."""
    return derived_name(endpoint, *sorted(f"{variant}={model}" for variant, model in variants))


def percentages(weights: Mapping[str, float]) -> dict[str, int]:
    """Relative weights as whole percentages that add up to 100 (largest remainders get the
    points rounding leaves; ties by name): SageMaker's weights are relative, 1 and 2 being a
    third and two thirds. All zero: all 0."""
    total = sum(weights.values())
    if total <= 0:
        return dict.fromkeys(weights, 0)
    exact = {name: weight * 100 / total for name, weight in weights.items()}
    shares = {name: math.floor(value) for name, value in exact.items()}
    left = 100 - sum(shares.values())
    for name in sorted(exact, key=lambda n: (shares[n] - exact[n], n))[:left]:
        shares[name] += 1
    return shares


def _check_label(version: str) -> None:
    if not VARIANT_NAME.fullmatch(version):
        raise ProviderError(
            PROVIDER,
            f"version {version!r} cannot name a production variant: 1 to 63 letters, digits "
            "and hyphens, no hyphen first or last (botocore's sagemaker model, shape "
            "VariantName)",
            code="invalid_version",
        )


def _check_limits(operation: str, body: dict[str, Any], region: str) -> None:
    """The documented limits of a request made from the endpoint as it is (which plan could
    not see: the variants serving, their instance types), before anything is created."""
    found = _limits.violations("sagemaker", operation, body, region)
    if found:
        raise ProviderError(
            PROVIDER,
            f"{operation} {body.get('EndpointConfigName')}: "
            + "; ".join(f"{v.path} {v.reason}" for v in found),
            code="limit_exceeded",
        )


def _as_they_are(
    described: Mapping[str, Any], config: Mapping[str, Any], leaving: str | None = None
) -> list[dict[str, Any]]:
    """The variants ``config`` holds (but ``leaving``) as they serve now: their own entries
    (model, instance type, every setting), with the instance count and weight DescribeEndpoint
    reports (an autoscaled count, a shifted weight). UpdateEndpoint keeps these anyway with
    RetainAllVariantProperties; written in the config too, they hold if it were not asked."""
    summaries = {v["VariantName"]: v for v in described.get("ProductionVariants", [])}
    shares = weights(described)
    kept = []
    for variant in config["ProductionVariants"]:
        name = variant["VariantName"]
        if name == leaving:
            continue
        summary = summaries.get(name, {})
        count = summary.get("CurrentInstanceCount") or summary.get("DesiredInstanceCount")
        entry = dict(variant)
        if count and "InitialInstanceCount" in entry:
            entry["InitialInstanceCount"] = count
        entry["InitialVariantWeight"] = shares.get(
            name, float(entry.get("InitialVariantWeight", 1))
        )
        kept.append(entry)
    return kept


def _alarms_named(cloudwatch: Any, names: list[str]) -> dict[str, dict[str, Any]]:
    """The metric and composite alarms of these names that exist, by name."""
    if not names:
        return {}
    found: dict[str, dict[str, Any]] = {}
    with translated("describe alarms"):
        for page in cloudwatch.get_paginator("describe_alarms").paginate(
            AlarmNames=names, AlarmTypes=ALARM_TYPES
        ):
            for alarm in page.get("MetricAlarms", []) + page.get("CompositeAlarms", []):
                found[alarm["AlarmName"]] = alarm
    return found


def add_version(
    plan: Plan, region: str, endpoint: EndpointRef, artifact: ArtifactRef, version: str
) -> EndpointRef:
    """Serve ``artifact`` as ``version`` on ``endpoint`` beside what it serves, at weight 0;
    returns once the endpoint is InService with it. The same version serving the same model
    already: nothing is changed (what a killed attempt left is finished and cleaned up).
    AlreadyExistsError ``version_exists`` when ``version`` serves another model."""
    if not artifact.uri.startswith("s3://"):
        raise CapabilityError(PROVIDER, f"serves models in S3, not {artifact.uri}")
    _check_label(version)
    if endpoint.region and endpoint.region != region:
        raise ProviderError(
            PROVIDER,
            f"endpoint {endpoint.name} is in {endpoint.region}; target {plan.target!r} plans "
            f"in {region}: a version is served in its endpoint's region",
            code="region_mismatch",
        )
    name = endpoint.name
    sagemaker = client("sagemaker", region)
    cloudwatch = client("cloudwatch", region)
    model = model_name(name, version, artifact.uri)
    values = {ENDPOINT: name, VERSION: version, MODEL: model, MODEL_DATA: artifact.uri}
    requests = planned(plan, values, rollout=True)
    described = settled(sagemaker, name)
    current = describe_config(sagemaker, described["EndpointConfigName"])
    found = next((v for v in current["ProductionVariants"] if v["VariantName"] == version), None)
    if found is not None and found["ModelName"] != model:
        raise AlreadyExistsError(
            PROVIDER,
            f"endpoint {name} serves a version {version} already, with model "
            f"{found['ModelName']} (this one would be {model}, from {artifact.uri})",
            code="version_exists",
        )
    alarm = requests["PutMetricAlarm"]
    if found is None:
        rollback = rollback_alarms(alarm.get("Tags", []))
        existing = _alarms_named(cloudwatch, rollback)
        missing = [n for n in rollback if n not in existing]
        if missing:
            raise ProviderNotFoundError(
                PROVIDER,
                f"rollback alarm(s) {', '.join(missing)} (options.rollback_alarms) do not exist "
                f"in {region}: create them in CloudWatch or leave them out of the options",
                code="alarm_not_found",
            )
        planned_config = requests["CreateEndpointConfig"]
        variants = [*_as_they_are(described, current), planned_config["ProductionVariants"][-1]]
        config = {
            **planned_config,
            "EndpointConfigName": config_name(
                name, [(v["VariantName"], v["ModelName"]) for v in variants]
            ),
            "ProductionVariants": variants,
        }
        _check_limits("CreateEndpointConfig", config, region)
    # Put (again) before the version takes traffic: PutMetricAlarm creates or updates ("When
    # you update an existing alarm, its state is left unchanged"; tags are set when it is
    # created, PutMetricAlarm, Tags).
    with translated(f"put alarm {alarm['AlarmName']}"):
        cloudwatch.put_metric_alarm(**alarm)
    if found is None:
        ensure_model(sagemaker, requests["CreateModel"])
        ensure_config(sagemaker, config)
        described = update(
            sagemaker,
            fill_placeholders(requests["UpdateEndpoint"], {CONFIG: config["EndpointConfigName"]}),
        )
        current = describe_config(sagemaker, described["EndpointConfigName"])
    if "RegisterScalableTarget" in requests:
        # Registered once the variant exists: "After you update the endpoint, you can
        # register the variant as a scalable target" (Update endpoints that use automatic
        # scaling).
        autoscale(
            client("application-autoscaling", region),
            requests["RegisterScalableTarget"],
            requests["PutScalingPolicy"],
        )
    sweep(sagemaker, cloudwatch, name, current)
    return endpoint_ref(region, described, config=described["EndpointConfigName"], model=model)


def versions(endpoint: EndpointRef) -> dict[str, int]:
    """The endpoint's variants and each one's share of its traffic in percent (weights as
    DescribeEndpoint reports them, normalised: :func:`percentages`)."""
    sagemaker = client("sagemaker", str(endpoint.region))
    with translated(f"describe endpoint {endpoint.name}", lookup=True):
        described = sagemaker.describe_endpoint(EndpointName=endpoint.name)
    return percentages(weights(described))


def shift_traffic(endpoint: EndpointRef, shares: Mapping[str, int]) -> None:
    """Route the endpoint's traffic by ``shares`` (percentages adding up to 100; a variant
    left out gets 0) with UpdateEndpointWeightsAndCapacities naming every variant, once the
    endpoint is InService; returns once it is InService again. The split it has already:
    nothing is sent."""
    name = endpoint.name
    if (
        any(
            not isinstance(s, int) or isinstance(s, bool) or not 0 <= s <= 100
            for s in shares.values()
        )
        or sum(shares.values()) != 100
    ):
        raise ProviderError(
            PROVIDER,
            f"traffic shares {dict(shares)} for endpoint {name}: whole percentages that add up "
            "to 100",
            code="invalid_weights",
        )
    sagemaker = client("sagemaker", str(endpoint.region))
    described = settled(sagemaker, name)
    now = weights(described)
    unknown = sorted(set(shares) - set(now))
    if unknown:
        raise ProviderNotFoundError(
            PROVIDER,
            f"endpoint {name} serves no version {', '.join(unknown)} (it serves {', '.join(now)})",
            code="version_not_found",
        )
    wanted = {variant: float(shares.get(variant, 0)) for variant in now}
    total = sum(now.values())
    if total > 0 and all(abs(now[v] / total - wanted[v] / 100) < 1e-9 for v in now):
        return
    with translated(f"shift traffic on {name}"):
        sagemaker.update_endpoint_weights_and_capacities(
            EndpointName=name,
            DesiredWeightsAndCapacities=[
                {"VariantName": variant, "DesiredWeight": weight}
                for variant, weight in wanted.items()
            ],
        )
    described = settled(sagemaker, name)
    if weights(described) != wanted:
        raise ProviderError(
            PROVIDER,
            f"endpoint {name} kept its weights {weights(described)} instead of {wanted}: "
            f"{described.get('FailureReason') or 'SageMaker gave no reason'}",
            code="traffic_not_shifted",
        )


def invoke_version(endpoint: EndpointRef, version: str, request: ChatRequest) -> ChatReply:
    """Ask ``version`` directly (InvokeEndpoint, TargetVariant), whatever the weights."""
    return invoke(endpoint, request, variant=version)


def _config_fields(sagemaker: Any, config: Mapping[str, Any]) -> dict[str, Any]:
    """What ``config`` (DescribeEndpointConfig) sets besides its name and variants, as
    CreateEndpointConfig takes it: every member of its input that the description has
    (botocore's model: key, data capture, async inference...), and its tags (ListTags),
    but AWS's own."""
    members = (
        _limits.service_model("sagemaker")
        .operation_model("CreateEndpointConfig")
        .input_shape.members
    )
    fields = {
        key: value
        for key, value in config.items()
        if key in members
        and key not in {"EndpointConfigName", "ProductionVariants", "Tags"}
        and value not in (None, {}, [])
    }
    with translated(f"list the tags of {config['EndpointConfigName']}"):
        tags = [
            {"Key": tag["Key"], "Value": tag["Value"]}
            for page in sagemaker.get_paginator("list_tags").paginate(
                ResourceArn=config["EndpointConfigArn"]
            )
            for tag in page.get("Tags", [])
            if not tag["Key"].lower().startswith("aws:")
        ]
    return {**fields, "Tags": tags} if tags else fields


def remove_version(endpoint: EndpointRef, version: str) -> None:
    """Stop serving ``version``, which has no traffic (ProviderError ``version_has_traffic``
    otherwise): a config without it (the other variants as they serve), UpdateEndpoint;
    then its model, its alarm and the old config are deleted. A version the endpoint does
    not serve: only what a killed removal left is cleaned up."""
    name = endpoint.name
    region = str(endpoint.region)
    sagemaker = client("sagemaker", region)
    cloudwatch = client("cloudwatch", region)
    scaling = client("application-autoscaling", region)
    described = settled(sagemaker, name)
    current = describe_config(sagemaker, described["EndpointConfigName"])
    served = [v["VariantName"] for v in current["ProductionVariants"]]
    resource = f"endpoint/{name}/variant/{version}"
    if version in served:
        share = weights(described).get(version, 0.0)
        if share > 0:
            raise ProviderError(
                PROVIDER,
                f"version {version} of endpoint {name} still has traffic (weight {share:g}); "
                "shift it away first",
                code="version_has_traffic",
            )
        if len(served) == 1:
            raise ProviderError(
                PROVIDER,
                f"version {version} is all endpoint {name} serves; delete the endpoint instead",
                code="last_version",
            )
        # SageMaker refuses an update that removes a variant with automatic scaling: it is
        # deregistered first (Update endpoints that use automatic scaling; its policies go
        # with it, DeregisterScalableTarget).
        deregister(scaling, resource)
        variants = _as_they_are(described, current, leaving=version)
        config = {
            "EndpointConfigName": config_name(
                name, [(v["VariantName"], v["ModelName"]) for v in variants]
            ),
            "ProductionVariants": variants,
            **_config_fields(sagemaker, current),
        }
        _check_limits("CreateEndpointConfig", config, region)
        ensure_config(sagemaker, config)
        described = update(
            sagemaker,
            {
                "EndpointName": name,
                "EndpointConfigName": config["EndpointConfigName"],
                "RetainAllVariantProperties": True,
            },
        )
        current = describe_config(sagemaker, described["EndpointConfigName"])
    else:
        deregister(scaling, resource)  # a removal killed after its update left it
    delete(cloudwatch.delete_alarms, "alarm", AlarmNames=[alarm_name(name, version)])
    sweep(sagemaker, cloudwatch, name, current)


def alarms(endpoint: EndpointRef, version: str) -> list[str]:
    """The alarms firing for ``version`` now, one line each: its own server-error alarm and
    the rollback alarms its tags name, each in state ALARM (with CloudWatch's reason); an
    alarm that is missing is a line too, since what it watched goes unwatched. A version the
    endpoint does not serve (or no endpoint): none."""
    region = str(endpoint.region)
    cloudwatch = client("cloudwatch", region)
    own = alarm_name(endpoint.name, version)
    found = _alarms_named(cloudwatch, [own])
    if own not in found:
        if version == VARIANT:
            return []  # a plain deploy's variant: tunefleet puts no alarm for it
        sagemaker = client("sagemaker", region)
        try:
            with translated(f"describe endpoint {endpoint.name}", lookup=True):
                described = sagemaker.describe_endpoint(EndpointName=endpoint.name)
        except ProviderNotFoundError:
            return []
        if version not in weights(described):
            return []
        return [
            f"{own}: missing (tunefleet puts it when it adds a version), so the server errors "
            f"of {version} go unwatched"
        ]
    with translated(f"list the tags of alarm {own}"):
        tags = cloudwatch.list_tags_for_resource(ResourceARN=found[own]["AlarmArn"]).get("Tags", [])
    named = rollback_alarms(tags)
    found.update(_alarms_named(cloudwatch, named))
    lines = []
    for name in [own, *named]:
        alarm = found.get(name)
        if alarm is None:
            lines.append(f"{name}: missing (options.rollback_alarms names it)")
        elif alarm.get("StateValue") == "ALARM":
            lines.append(f"{name}: {alarm.get('StateReason') or 'in ALARM'}")
    return lines

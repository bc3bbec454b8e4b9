"""Checks of a target against its provider's capabilities and the placement policy.

These are the requirements every provider is held to in the same words: core checks them
from the declared :class:`~tunefleet.provider.Capabilities` before the provider plans, so a
provider cannot forget one. Provider-specific requirements (a subnet list, a key ARN) are
the provider's plan's to report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from fnmatch import fnmatchcase

from tunefleet.provider import Capabilities, Unmet
from tunefleet.spec import RunSpec, TargetSpec


def _listing(values: Iterable[str]) -> str:
    return ", ".join(sorted(values)) or "none"


def check_target(
    spec: RunSpec, target: TargetSpec, caps: Capabilities, provider: str
) -> list[Unmet]:
    """Every requirement of ``spec`` on ``target`` that ``caps`` rules out, with the reason."""
    unmet: list[Unmet] = []

    def refuse(requirement: str, reason: str) -> None:
        unmet.append(Unmet(requirement=requirement, reason=reason))

    if spec.method.type not in caps.methods:
        refuse(
            "method.type",
            f"{provider} supports methods {_listing(caps.methods)}, not {spec.method.type!r}",
        )
    adapter = spec.method.adapter
    if adapter is not None and adapter not in caps.adapters:
        if caps.adapters:
            refuse(
                "method.adapter",
                f"{provider} supports adapters {_listing(caps.adapters)}, not {adapter!r}",
            )
        else:
            refuse(
                "method.adapter", f"{provider} chooses the adapter itself; remove method.adapter"
            )
    _check_region(spec, target, caps, provider, refuse)

    policy = spec.placement
    if policy.require_private_network and not (caps.private_network or caps.runs_locally):
        refuse(
            "placement.require_private_network",
            f"{provider} cannot run inside a private network you control",
        )
    if policy.require_customer_managed_key and not caps.customer_managed_keys:
        refuse(
            "placement.require_customer_managed_key",
            f"{provider} cannot encrypt data at rest with a key you manage",
        )
    if policy.required_tags and not caps.tags:
        refuse("placement.required_tags", f"{provider} cannot tag the resources it creates")

    compute = target.compute
    if compute.spot and not caps.spot:
        refuse("compute.spot", f"{provider} has no spot or preemptible capacity")
    if compute.instance_type is not None and not caps.instance_types:
        refuse("compute.instance_type", f"{provider} does not let you choose the machine type")
    if compute.instance_count > 1 and not caps.multi_node:
        refuse(
            "compute.instance_count", f"{provider} trains on one machine; instance_count must be 1"
        )

    endpoint = spec.endpoint
    if endpoint is not None:
        if not caps.endpoints:
            refuse("endpoint", f"{provider} cannot serve models behind an endpoint")
        else:
            if endpoint.autoscaling is not None and not caps.autoscaling:
                refuse("endpoint.autoscaling", f"{provider} endpoints do not autoscale")
            if endpoint.canary is not None and not caps.traffic_split:
                refuse(
                    "endpoint.canary", f"{provider} endpoints cannot split traffic between versions"
                )
    return unmet


def _check_region(
    spec: RunSpec,
    target: TargetSpec,
    caps: Capabilities,
    provider: str,
    refuse: Callable[[str, str], None],
) -> None:
    region = target.region
    allowed = spec.placement.allowed_regions
    if caps.runs_locally:
        if region is not None:
            refuse("region", f"{provider} runs on this machine; it takes no region")
        return  # nothing leaves this machine, so a region pin is honoured as it is
    if region is not None and caps.regions and region not in caps.regions:
        refuse("region", f"{region!r} is not a region {provider} offers")
    if not allowed:
        return
    if not caps.regions:
        refuse(
            "placement.allowed_regions",
            f"{provider} does not let you choose where it trains, so it cannot be pinned to {_listing(allowed)}",
        )
    elif region is None:
        refuse(
            "placement.allowed_regions",
            f"the placement policy pins regions ({_listing(allowed)}); set the target's region",
        )
    elif not any(fnmatchcase(region, pattern) for pattern in allowed):
        refuse(
            "placement.allowed_regions",
            f"region {region!r} is outside the allowed regions {_listing(allowed)}",
        )

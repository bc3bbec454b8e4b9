"""Serving a run's model: deploy, invoke and undeploy, journalled and audited like jobs.

An endpoint is a resource of the target whose model it serves (kind ``endpoint``, keyed
by its name): its intent is written before the provider's deploy call and confirmed after,
under the target's lease, so two processes never deploy one target at once and the audit
log shows who served what, when.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tunefleet.errors import StateError, UsageError
from tunefleet.names import NAME_PATTERN
from tunefleet.plugins import Registry
from tunefleet.provider import (
    ArtifactRef,
    ChatReply,
    ChatRequest,
    EndpointRef,
    Plan,
    Provider,
    Serving,
    TrafficSplitting,
    optional,
)
from tunefleet.registry import check_deployable, model_ref, register
from tunefleet.run import rollout
from tunefleet.spec import CanarySpec
from tunefleet.state import Journal
from tunefleet.state.journal import Owner
from tunefleet.state.models import ModelVersion, Resource, Run, RunTarget

__all__ = ["deploy", "endpoint_of", "invoke", "undeploy"]


def _target(journal: Journal, run: Run, name: str | None) -> RunTarget:
    rows = journal.targets(run.id)
    if name is not None:
        rows = [row for row in rows if row.name == name]
        if not rows:
            raise UsageError(f"run {run.id} has no target {name!r}")
    succeeded = [row for row in rows if row.state == "succeeded"]
    if not succeeded:
        raise StateError(f"run {run.id} has no succeeded target to serve")
    if len(succeeded) > 1:
        names = ", ".join(row.name for row in succeeded)
        raise UsageError(
            f"run {run.id} has several succeeded targets ({names}); pick one with --target"
        )
    return succeeded[0]


HEARTBEAT = 10.0
"""Seconds between renewals of a deploy's lease (it lapses after 60 s without one)."""


@contextmanager
def _lease(journal: Journal, row: RunTarget) -> Iterator[Owner]:
    """The target's lease for as long as the block runs, renewed from a thread: a deploy
    or a rollout's comparison may take many minutes, and another process must not take the
    target over meanwhile."""
    owner = Owner.here()
    if not journal.acquire(row.id, owner):
        raise StateError(
            f"target {row.name} of run {row.run_id} is busy in another process; try again later"
        )
    done = threading.Event()

    def renew() -> None:
        while not done.wait(HEARTBEAT):
            with contextlib.suppress(Exception):  # the next renewal may succeed
                journal.heartbeat(owner)

    renewing = threading.Thread(target=renew, name=f"lease-{row.name}", daemon=True)
    renewing.start()
    try:
        yield owner
    finally:
        done.set()
        renewing.join()
        journal.release(row.id, owner)


def _endpoint_name(run: Run, name: str | None) -> str:
    endpoint = (run.spec.get("endpoint") or {}) if isinstance(run.spec, dict) else {}
    chosen = name or endpoint.get("name") or run.name
    if not re.fullmatch(NAME_PATTERN, chosen):
        raise UsageError(
            f"endpoint name {chosen!r}: use 1 to 40 lowercase letters, digits and hyphens"
        )
    return str(chosen)


def deploy(
    journal: Journal,
    registry: Registry,
    run: Run,
    *,
    target: str | None = None,
    name: str | None = None,
    version: ModelVersion | None = None,
    force: bool = False,
    reason: str | None = None,
    poll: float = 15.0,
    notice: Callable[[str], None] | None = None,
) -> EndpointRef:
    """Serve a model of ``run`` behind an endpoint; return it.

    The model is ``version`` (a registered version of the run), else the registered
    version of the run's succeeded target (registered now if it is not yet). The
    evaluation gate decides first (:func:`tunefleet.registry.check_deployable`:
    DeployBlockedError naming each missed threshold; ``force`` with ``reason`` overrides,
    audited). An endpoint that serves another version already, with ``endpoint.canary``
    in the spec and a provider that splits traffic, gets the new version as a canary
    (:mod:`tunefleet.run.rollout`: DeployBlockedError when it rolls back); otherwise the
    new version replaces the old at once. A deployed version becomes production.
    Deploying again finishes a rollout a killed process left.
    """
    if version is not None:
        rows = [
            r for r in journal.targets(run.id, all_attempts=True) if r.id == version.run_target_id
        ]
        if not rows:
            raise StateError(f"model {model_ref(version)} belongs to no target of run {run.id}")
        row = rows[0]
    else:
        row = _target(journal, run, target)
        version = register(journal, run, row)
    endpoint_name = _endpoint_name(run, name)
    resuming = journal.open_rollout(endpoint_name)
    if resuming is None or resuming.to_version_id != version.id:
        # A rollout of this version passed the gate (or was forced) when it started.
        check_deployable(journal, run, version, force=force, reason=reason)
    artifact = ArtifactRef.model_validate(version.artifact)
    provider = registry.provider(row.provider)
    server = optional(provider, Serving)
    canary = _canary(run)
    with _lease(journal, row) as owner:
        under_way = journal.open_rollout(endpoint_name)
        if under_way is not None and under_way.to_version_id != version.id:
            raise StateError(
                f"a rollout to endpoint {endpoint_name} is under way (rollout "
                f"{under_way.id}); deploy its model again to finish it first"
            )
        current = _current(journal, provider, endpoint_name, row)
        canary_wanted = canary is not None and isinstance(provider, TrafficSplitting)
        if under_way is not None or (current is not None and canary_wanted):
            if current is None or canary is None:
                raise StateError(
                    f"the rollout to endpoint {endpoint_name} cannot go on: its spec has no "
                    "endpoint.canary or its starting point is not on record"
                )
            return rollout.roll_out(
                journal,
                registry,
                run,
                row,
                version,
                current,
                canary,
                owner,
                poll=poll,
                notice=notice,
            )
        resource = journal.intend(
            row.id,
            owner,
            kind="endpoint",
            key=endpoint_name,
            provider=row.provider,
            detail={"artifact": artifact.uri, "model": model_ref(version)},
        )
        endpoint = server.deploy(Plan.model_validate(row.plan), artifact, endpoint_name)
        label = None
        if isinstance(provider, TrafficSplitting):
            served = list(provider.versions(endpoint))
            label = served[0] if len(served) == 1 else None
        journal.confirm(
            resource.id,
            owner,
            native_id=endpoint.id,
            uri=endpoint.url,
            detail={
                "endpoint": endpoint.model_dump(mode="json"),
                "model": model_ref(version),
                "label": label,
            },
        )
        # Only what the provider replaced is superseded: an endpoint of the same name in
        # another region (or account, or work directory) is another endpoint, still there.
        if (
            current is not None
            and current.resource.id != resource.id
            and _same_endpoint(current.endpoint, endpoint)
        ):
            journal.supersede(current.resource.id, by=model_ref(version))
    journal.set_model_stage(
        version.id, "production", reason=f"deployed to endpoint {endpoint_name}"
    )
    return endpoint


def _same_endpoint(one: EndpointRef, other: EndpointRef) -> bool:
    """Whether two refs name one endpoint: by the provider's id where it gives one (a URL
    may change when an endpoint is replaced in place), else by URL."""
    if one.id is not None or other.id is not None:
        return one.id == other.id
    return one.url == other.url


def _canary(run: Run) -> CanarySpec | None:
    endpoint = (run.spec.get("endpoint") or {}) if isinstance(run.spec, dict) else {}
    canary = endpoint.get("canary")
    return CanarySpec.model_validate(canary) if canary else None


def _current(
    journal: Journal, provider: Provider, endpoint_name: str, row: RunTarget
) -> rollout.Current | None:
    """What the endpoint called ``endpoint_name`` serves now, if another target's version;
    during a rollout, what the rollout started from (whatever its record says now: a
    rollout killed while completing has already marked it replaced)."""
    under_way = journal.open_rollout(endpoint_name)
    if under_way is not None:
        from_row = journal.target(under_way.from_target_id)
        found = [
            resource
            for resource in journal.resources(from_row.id, "endpoint")
            if resource.key == endpoint_name and "endpoint" in resource.detail
        ]
        if not found:
            raise StateError(
                f"rollout {under_way.id} to endpoint {endpoint_name} started from an endpoint "
                "the journal does not hold"
            )
        return rollout.Current(
            resource=found[-1],
            row=from_row,
            endpoint=EndpointRef.model_validate(found[-1].detail["endpoint"]),
            version=journal.model_version(target_id=from_row.id),
            label=under_way.from_label,
        )
    for resource, owner_row in journal.endpoints_named(endpoint_name):
        if (
            resource.provider != provider.name
            or owner_row.id == row.id
            or resource.status != "confirmed"
            or owner_row.region != row.region  # same name, another region: another endpoint
        ):
            continue
        endpoint = EndpointRef.model_validate(resource.detail["endpoint"])
        label = resource.detail.get("label")
        if label is None and isinstance(provider, TrafficSplitting):
            served = list(provider.versions(endpoint))
            label = served[0] if len(served) == 1 else None
        return rollout.Current(
            resource=resource,
            row=owner_row,
            endpoint=endpoint,
            version=journal.model_version(target_id=owner_row.id),
            label=label or "",
        )
    return None


def _endpoint_resource(
    journal: Journal, run: Run, target: str | None
) -> tuple[RunTarget, Resource]:
    rows = [row for row in journal.targets(run.id) if target is None or row.name == target]
    found = [
        (row, resource)
        for row in rows
        for resource in journal.resources(row.id, "endpoint")
        if resource.status == "confirmed"
    ]
    if not found:
        raise StateError(f"run {run.id} has no endpoint; `tunefleet deploy {run.id}` creates one")
    return found[-1]


def endpoint_of(journal: Journal, run: Run, *, target: str | None = None) -> EndpointRef:
    """The endpoint serving ``run`` (the newest, if its targets have several)."""
    _, resource = _endpoint_resource(journal, run, target)
    return EndpointRef.model_validate(resource.detail["endpoint"])


def invoke(
    journal: Journal,
    registry: Registry,
    run: Run,
    request: ChatRequest,
    *,
    target: str | None = None,
) -> ChatReply:
    """Ask the model serving ``run``."""
    row, resource = _endpoint_resource(journal, run, target)
    endpoint = EndpointRef.model_validate(resource.detail["endpoint"])
    return optional(registry.provider(row.provider), Serving).invoke(endpoint, request)


def undeploy(
    journal: Journal, registry: Registry, run: Run, *, target: str | None = None
) -> EndpointRef:
    """Delete the endpoint serving ``run`` and record that it is gone. Refused while a
    rollout to it is under way (deploying its model again finishes or rolls it back)."""
    row, resource = _endpoint_resource(journal, run, target)
    endpoint = EndpointRef.model_validate(resource.detail["endpoint"])
    under_way = journal.open_rollout(endpoint.name)
    if under_way is not None:
        raise StateError(
            f"a rollout to endpoint {endpoint.name} is under way (rollout {under_way.id}, "
            f"phase {under_way.phase}); deploy its model again to finish it, then undeploy"
        )
    with _lease(journal, row) as owner:
        optional(registry.provider(row.provider), Serving).delete_endpoint(endpoint)
        journal.mark_deleted(resource.id, owner)
    return endpoint

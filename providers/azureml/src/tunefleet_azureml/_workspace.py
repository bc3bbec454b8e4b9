"""The workspace as Azure Resource Manager sees it, checked against the placement policy.

Plan cannot know where a workspace is, whether its network is isolated or which key
encrypts it: those are the workspace's own settings. So the first stage call reads the
workspace (and the cluster a job would run on) and refuses, before any byte is uploaded,
every requirement the workspace cannot meet, naming the setting. The answer is kept for
the process: a workspace's region and isolation do not change under a run.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from tunefleet.errors import ProviderError
from tunefleet_azureml._client import PROVIDER, arm, translated
from tunefleet_azureml.options import AzureMLOptions

__all__ = ["Datastore", "Workspace", "Workspaces", "placement_problems"]

ISOLATED = frozenset({"AllowInternetOutbound", "AllowOnlyApprovedOutbound"})
"""Managed network isolation modes that keep the workspace's compute (serverless compute
included) in a managed virtual network ("Workspace managed network isolation",
https://learn.microsoft.com/azure/machine-learning/how-to-managed-network)."""


@dataclass(frozen=True)
class Workspace:
    """What placement needs to know of a workspace."""

    location: str
    public_network_access: str | None
    isolation_mode: str | None
    key: str | None
    """The Key Vault key identifier the workspace is encrypted with, if a customer's."""


@dataclass(frozen=True)
class Datastore:
    """A blob datastore: where its data lives."""

    account: str
    container: str
    endpoint: str
    protocol: str

    def account_url(self, override: str | None) -> str:
        """The storage account's blob endpoint."""
        return override or f"{self.protocol}://{self.account}.blob.{self.endpoint}"


def _get(mapping: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(mapping, dict) and not hasattr(mapping, "get"):
            return None
        mapping = mapping.get(key)
        if mapping is None:
            return None
    return mapping


def _location(value: str) -> str:
    return value.replace(" ", "").lower()


def _versionless(key: str) -> str:
    parts = key.rstrip("/").split("/")
    return "/".join(parts[:5]).lower() if len(parts) > 5 else key.rstrip("/").lower()


def placement_problems(
    expect: dict[str, Any],
    options: AzureMLOptions,
    workspace: Workspace,
    cluster: dict[str, Any] | None,
) -> list[str]:
    """Each expectation of the plan (:func:`._planning.expectations`: the target's region
    and the placement policy's requirements) the workspace cannot meet, as a line naming
    the setting."""
    problems = []
    region = str(expect.get("location"))
    if _location(workspace.location) != _location(region):
        problems.append(
            f"region: workspace {options.workspace!r} is in {_location(workspace.location)}, "
            f"not in {region} as the target says"
        )
    if expect.get("requirePrivateNetwork"):
        isolated = workspace.isolation_mode in ISOLATED
        if workspace.public_network_access != "Disabled" and not isolated:
            problems.append(
                f"placement.require_private_network: workspace {options.workspace!r} allows "
                "public network access and has no managed network isolation (set "
                "publicNetworkAccess to Disabled or isolate its managed network)"
            )
        if cluster is None and not isolated:
            problems.append(
                "placement.require_private_network: serverless compute stays private only in "
                "a workspace whose managed network is isolated; name a cluster in your "
                "subnet in options.compute, or isolate the workspace's managed network"
            )
        if cluster is not None:
            properties = _get(cluster, "properties", "properties") or {}
            subnet = _get(properties, "subnet", "id")
            if not subnet and not isolated:
                problems.append(
                    f"placement.require_private_network: cluster {options.compute!r} is in no "
                    "subnet of yours and the workspace's managed network is not isolated"
                )
            if properties.get("enableNodePublicIp", True) and not isolated:
                problems.append(
                    f"placement.require_private_network: cluster {options.compute!r} gives "
                    "its nodes public IP addresses (enableNodePublicIp)"
                )
    if expect.get("requireCustomerManagedKey"):
        if workspace.key is None:
            problems.append(
                f"placement.require_customer_managed_key: workspace {options.workspace!r} is "
                "encrypted with Microsoft-managed keys (a customer key can only be chosen "
                "when a workspace is created)"
            )
        elif options.key_vault_key and _versionless(workspace.key) != _versionless(
            options.key_vault_key
        ):
            problems.append(
                f"placement.require_customer_managed_key: workspace {options.workspace!r} is "
                "encrypted with another key than options.key_vault_key"
            )
    return problems


class Workspaces:
    """Reads workspaces, datastores and clusters, once per process each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._workspaces: dict[str, Workspace] = {}
        self._datastores: dict[tuple[str, str], Datastore] = {}
        self._checked: set[tuple[str, ...]] = set()

    def workspace(self, options: AzureMLOptions) -> Workspace:
        """The options' workspace."""
        with self._lock:
            if options.workspace_id not in self._workspaces:
                with translated(f"read workspace {options.workspace}"):
                    found = arm(options).workspaces.get(options.resource_group, options.workspace)
                encryption = _get(found, "properties", "encryption") or {}
                key = None
                if encryption.get("status") == "Enabled":
                    key = _get(encryption, "keyVaultProperties", "keyIdentifier")
                self._workspaces[options.workspace_id] = Workspace(
                    location=str(found.get("location", "")),
                    public_network_access=_get(found, "properties", "publicNetworkAccess"),
                    isolation_mode=_get(found, "properties", "managedNetwork", "isolationMode"),
                    key=key,
                )
            return self._workspaces[options.workspace_id]

    def datastore(self, options: AzureMLOptions) -> Datastore:
        """The options' blob datastore."""
        cache = (options.workspace_id, options.datastore)
        with self._lock:
            if cache not in self._datastores:
                with translated(f"read datastore {options.datastore}"):
                    found = arm(options).datastores.get(
                        options.resource_group, options.workspace, options.datastore
                    )
                properties = found.get("properties") or {}
                if properties.get("datastoreType") != "AzureBlob":
                    raise ProviderError(
                        PROVIDER,
                        f"datastore {options.datastore!r} is a "
                        f"{properties.get('datastoreType')} datastore; tunefleet stages to "
                        "Azure Blob datastores (options.datastore)",
                        code="datastore_type",
                    )
                self._datastores[cache] = Datastore(
                    account=str(properties["accountName"]),
                    container=str(properties["containerName"]),
                    endpoint=str(properties.get("endpoint") or "core.windows.net"),
                    protocol=str(properties.get("protocol") or "https"),
                )
            return self._datastores[cache]

    def check(self, expect: dict[str, Any], options: AzureMLOptions) -> None:
        """ProviderError ``placement_unmet`` naming each expectation the workspace (and
        the cluster) cannot meet; once per process for the same expectations."""
        key = (options.workspace_id, json.dumps(expect, sort_keys=True))
        if key in self._checked:
            return
        workspace = self.workspace(options)
        cluster = None
        if options.compute is not None:
            with translated(f"read compute {options.compute}"):
                cluster = dict(
                    arm(options).compute.get(
                        options.resource_group, options.workspace, options.compute
                    )
                )
        problems = placement_problems(expect, options, workspace, cluster)
        if problems:
            raise ProviderError(
                PROVIDER,
                "; ".join(problems) + "; nothing was uploaded",
                code="placement_unmet",
            )
        with self._lock:
            self._checked.add(key)

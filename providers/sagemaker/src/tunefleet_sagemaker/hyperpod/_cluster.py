"""What a HyperPod cluster is, from SageMaker's DescribeCluster and ListClusterNodes.

Plan checks a spec against these facts (region, orchestrator, instance groups and their
nodes, network, volume keys), so a job the cluster can never run fails before anything is
created. Fields as botocore's sagemaker service model names them (shapes
DescribeClusterResponse, ClusterInstanceGroupDetails, ClusterEbsVolumeConfig,
ClusterNodeSummary).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from tunefleet.errors import ProviderError
from tunefleet_sagemaker.hyperpod._client import PROVIDER, aws, aws_translated

__all__ = ["ClusterFacts", "Clusters", "InstanceGroup"]

_CACHE_SECONDS = 30.0
"""A description is reused this long by one provider instance."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InstanceGroup(_Frozen):
    """One instance group of the cluster."""

    name: str
    instance_type: str
    target: int
    """Instances the group should have (TargetCount)."""
    running: int
    """Its nodes whose InstanceStatus is Running (ListClusterNodes)."""
    volume_kms_keys: tuple[str, ...] = ()
    """The KMS keys of its EBS volumes (InstanceStorageConfigs[].EbsVolumeConfig)."""
    subnets: tuple[str, ...] = ()
    """Its own subnets, where it overrides the cluster's (OverrideVpcConfig)."""
    slurm_node_type: str | None = None
    """On a Slurm cluster: ``Controller``, ``Login`` or ``Compute`` (SlurmConfig.NodeType);
    None when the cluster does not say (the lifecycle scripts decide)."""
    slurm_partitions: tuple[str, ...] = ()
    """On a Slurm cluster: the partitions its nodes are in (SlurmConfig.PartitionNames)."""


class ClusterFacts(_Frozen):
    """What tunefleet learnt of a cluster."""

    name: str
    arn: str
    region: str
    status: str
    orchestrator: Literal["eks", "slurm"]
    eks_cluster_arn: str | None = None
    subnets: tuple[str, ...] = ()
    security_groups: tuple[str, ...] = ()
    groups: tuple[InstanceGroup, ...] = ()

    @property
    def id(self) -> str:
        """The cluster's id, the last part of its ARN."""
        return self.arn.rsplit("/", 1)[-1]


class Clusters:
    """Clusters described by one provider instance, each reused for a short while (plan,
    then stage, find and submit ask for the same cluster)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], tuple[float, ClusterFacts]] = {}
        self._lock = threading.Lock()

    def describe(self, region: str, cluster: str) -> ClusterFacts:
        """The facts of ``cluster`` (name or ARN) in ``region``; ProviderNotFoundError when
        SageMaker knows no such cluster there."""
        with self._lock:
            found = self._cache.get((region, cluster))
            if found is not None and found[0] > time.monotonic():
                return found[1]
        facts = _describe(region, cluster)
        with self._lock:
            self._cache[(region, cluster)] = (time.monotonic() + _CACHE_SECONDS, facts)
        return facts


def _describe(region: str, cluster: str) -> ClusterFacts:
    sagemaker = aws("sagemaker", region)
    with aws_translated(f"describe HyperPod cluster {cluster}", lookup=True):
        described = sagemaker.describe_cluster(ClusterName=cluster)
    running: dict[str, int] = {}
    with aws_translated(f"list the nodes of HyperPod cluster {cluster}", lookup=True):
        for page in sagemaker.get_paginator("list_cluster_nodes").paginate(ClusterName=cluster):
            for node in page.get("ClusterNodeSummaries", []):
                if node.get("InstanceStatus", {}).get("Status") == "Running":
                    group = node["InstanceGroupName"]
                    running[group] = running.get(group, 0) + 1
    return _facts(described, region, running)


def _facts(described: dict[str, Any], region: str, running: dict[str, int]) -> ClusterFacts:
    orchestrator = described.get("Orchestrator") or {}
    eks = (orchestrator.get("Eks") or {}).get("ClusterArn")
    name = described.get("ClusterName") or described["ClusterArn"].rsplit("/", 1)[-1]
    if eks is None and "Slurm" not in orchestrator and orchestrator:
        raise ProviderError(
            PROVIDER,
            f"HyperPod cluster {name} has an orchestrator tunefleet does not know: "
            f"{sorted(orchestrator)}",
            code="unknown_orchestrator",
        )
    vpc = described.get("VpcConfig") or {}
    groups = []
    for group in described.get("InstanceGroups", []):
        keys = tuple(
            config["EbsVolumeConfig"]["VolumeKmsKeyId"]
            for config in group.get("InstanceStorageConfigs", [])
            if (config.get("EbsVolumeConfig") or {}).get("VolumeKmsKeyId")
        )
        groups.append(
            InstanceGroup(
                name=group["InstanceGroupName"],
                instance_type=group.get("InstanceType", ""),
                target=int(group.get("TargetCount", group.get("CurrentCount", 0))),
                running=running.get(group["InstanceGroupName"], 0),
                volume_kms_keys=keys,
                subnets=tuple((group.get("OverrideVpcConfig") or {}).get("Subnets", [])),
                slurm_node_type=(group.get("SlurmConfig") or {}).get("NodeType"),
                slurm_partitions=tuple((group.get("SlurmConfig") or {}).get("PartitionNames", [])),
            )
        )
    return ClusterFacts(
        name=name,
        arn=described["ClusterArn"],
        region=region,
        status=described["ClusterStatus"],
        # A cluster created before EKS support has no Orchestrator: Slurm was the only one.
        orchestrator="eks" if eks else "slurm",
        eks_cluster_arn=eks,
        subnets=tuple(vpc.get("Subnets", [])),
        security_groups=tuple(vpc.get("SecurityGroupIds", [])),
        groups=tuple(groups),
    )

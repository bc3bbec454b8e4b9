"""What `tunefleet plan` refuses for a HyperPod target, before anything is uploaded or
created: each placement requirement the cluster cannot honour is named (the spec key) with
the reason, read from the cluster as SageMaker describes it (moto, clusters made per test);
and the cost is the job's share of the cluster's time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.providers.hyperpod.conftest import CLUSTER, REGION, Aws, hyperpod_spec

from tunefleet.planning import plan_run
from tunefleet.plugins import discover
from tunefleet.provider import Plan, Unmet
from tunefleet.spec import parse_spec
from tunefleet.testing.runs import CliRunner


def planned(
    *,
    options: dict[str, Any] | None = None,
    compute: dict[str, Any] | None = None,
    region: str = REGION,
    **top: Any,
) -> Plan:
    """The plan of the conftest's spec (cluster tftest, 2 x ml.g5.8xlarge), changed so."""
    body = json.loads(spec_text(options=options, compute=compute, region=region, **top))
    (plan,) = plan_run(parse_spec(json.dumps(body)), registry=discover()).plans
    return plan


def spec_text(
    *,
    options: dict[str, Any] | None = None,
    compute: dict[str, Any] | None = None,
    region: str = REGION,
    **top: Any,
) -> str:
    body = json.loads(hyperpod_spec(options=options, **top))
    (target,) = body["targets"]
    target["region"] = region
    target["compute"].update(compute or {})
    return json.dumps(body)


def refused(plan: Plan, requirement: str) -> Unmet:
    """The one Unmet of ``requirement`` in ``plan``."""
    found = [u for u in plan.unmet if u.requirement == requirement]
    assert len(found) == 1, f"{requirement} refused once, got {plan.unmet}"
    return found[0]


def test_the_conftest_cluster_plans_cleanly(aws: Aws) -> None:
    """The baseline every refusal below changes one thing of: no Unmet."""
    plan = planned()
    assert plan.ok, plan.unmet


def test_a_region_the_placement_policy_does_not_allow_is_refused(aws: Aws) -> None:
    """placement.allowed_regions pins the run to other regions than the cluster's."""
    plan = planned(placement={"allowed_regions": ["us-*"]})
    unmet = refused(plan, "placement.allowed_regions")
    assert "'eu-west-1' is outside the allowed regions" in unmet.reason


def test_a_cluster_not_in_the_targets_region_is_refused_naming_the_region(
    aws: Aws, tmp_path: Path
) -> None:
    """The target names another region than the cluster's: SageMaker knows no such
    cluster there, and `tunefleet plan` refuses the target saying so (exit 1, no
    traceback), as it refuses any requirement the target cannot meet."""
    spec = tmp_path / "hyperpod.yaml"
    spec.write_text(spec_text(region="us-east-1"))
    cli = CliRunner(tmp_path, f"sqlite:///{tmp_path / 'journal.db'}")
    result = cli("plan", str(spec))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "options.cluster" in result.stdout + result.stderr
    assert f"no HyperPod cluster {CLUSTER} in us-east-1" in result.stdout + result.stderr


def test_a_required_customer_key_needs_the_clusters_volumes_encrypted_with_one(
    aws: Aws,
) -> None:
    """require_customer_managed_key: a group whose EBS volumes have no VolumeKmsKeyId is
    refused (the cluster's owner sets it), as are staged datasets without a key; a cluster
    made with a key, and the datasets' key given, plan cleanly and say which key."""
    strict = {"require_customer_managed_key": True}
    plan = planned(placement=strict)
    unmet = [u for u in plan.unmet if u.requirement == "placement.require_customer_managed_key"]
    reasons = " | ".join(u.reason for u in unmet)
    assert "EBS volumes of instance group workers are not encrypted" in reasons
    assert "VolumeKmsKeyId" in reasons
    assert "options.kms_key_id" in reasons

    aws.hyperpod_cluster("tfkeyed", volume_key=aws.kms_key)
    keyed = planned(options={"cluster": "tfkeyed", "kms_key_id": aws.kms_key}, placement=strict)
    assert keyed.ok, keyed.unmet
    assert any(aws.kms_key in note for note in keyed.notes), keyed.notes


def test_an_instance_type_no_group_has_is_refused(aws: Aws) -> None:
    """compute.instance_type names a type the cluster has no nodes of."""
    unmet = refused(planned(compute={"instance_type": "ml.p5.48xlarge"}), "compute.instance_type")
    assert "has no ml.p5.48xlarge nodes" in unmet.reason
    assert "workers (ml.g5.8xlarge x 2)" in unmet.reason, "and says what it has"


def test_more_nodes_than_the_group_has_running_are_refused(aws: Aws, tmp_path: Path) -> None:
    """compute.instance_count 3 on a group of 2 running nodes would wait forever; `tunefleet
    plan` exits 1 naming the requirement and the reason."""
    unmet = refused(planned(compute={"instance_count": 3}), "compute.instance_count")
    assert "asks for 3 nodes" in unmet.reason and "has 2 running" in unmet.reason
    spec = tmp_path / "hyperpod.yaml"
    spec.write_text(spec_text(compute={"instance_count": 3}))
    result = CliRunner(tmp_path, f"sqlite:///{tmp_path / 'journal.db'}")("plan", str(spec))
    assert result.returncode == 1, result.stderr
    assert "error: target 'hyperpod' cannot honour compute.instance_count" in result.stderr
    assert "has 2 running ml.g5.8xlarge node(s)" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("tags", "requirement", "phrase"),
    [
        ({"cost:center": "ml"}, "placement.tags.cost:center", "cannot be a Kubernetes label key"),
        ({"team": "Research Lab"}, "placement.tags.team", "cannot be a Kubernetes label value"),
    ],
)
def test_a_tag_that_cannot_be_a_kubernetes_label_is_refused(
    aws: Aws, tags: dict[str, str], requirement: str, phrase: str
) -> None:
    """The policy's tags become labels on the job and its pods; tunefleet never rewrites
    a tag, so one Kubernetes refuses is named with the rule."""
    unmet = refused(planned(placement={"tags": tags}), requirement)
    assert phrase in unmet.reason and "does not rewrite tags" in unmet.reason


def test_a_required_private_network_needs_a_cluster_in_a_vpc(aws: Aws) -> None:
    """require_private_network: a cluster made without a VpcConfig is refused; the
    conftest's cluster (in a VPC) plans cleanly and names its subnets."""
    strict = {"require_private_network": True}
    aws.hyperpod_cluster("tfpublic", vpc=False)
    unmet = refused(
        planned(options={"cluster": "tfpublic"}, placement=strict),
        "placement.require_private_network",
    )
    assert "cluster tfpublic has no VpcConfig" in unmet.reason
    in_vpc = planned(placement=strict)
    assert in_vpc.ok, in_vpc.unmet
    assert any("subnet-0a1b2c3d4e5f60001" in note for note in in_vpc.notes), in_vpc.notes


def test_an_endpoint_is_planned_as_the_inference_operators_resource(aws: Aws) -> None:
    """An endpoint on an EKS cluster is served by HyperPod's inference operator: the plan
    shows the InferenceEndpointConfig as it will be sent (the CLI's shape for a model in S3),
    on the training job's instance type, with the region's TGI image and one GPU per GPU
    the instance has, the tags as labels and as the SageMaker endpoint's tags."""
    plan = planned(
        endpoint={"name": "support", "instance_count": 2}, placement={"tags": {"team": "nlp"}}
    )
    assert plan.ok, plan.unmet
    body = plan.request("CreateInferenceEndpointConfig", "deploy").body
    assert body["apiVersion"] == "inference.sagemaker.aws.amazon.com/v1"
    assert body["kind"] == "InferenceEndpointConfig"
    assert body["metadata"]["name"] == "${endpoint}"
    assert body["metadata"]["labels"]["team"] == "nlp"
    assert body["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "tunefleet"
    assert "tunefleet.dev/run-key" not in body["metadata"]["labels"], "an endpoint outlives its run"
    spec = body["spec"]
    assert spec["endpointName"] == "${endpoint}" and spec["modelName"] == "${model}"
    assert spec["instanceType"] == "ml.g5.8xlarge" and spec["replicas"] == 2
    assert spec["modelSourceConfig"] == {
        "modelSourceType": "s3",
        "s3Storage": {"bucketName": "${model_bucket}", "region": REGION},
        "modelLocation": "${model_location}",
        "prefetchEnabled": False,
    }
    worker = spec["worker"]
    assert "huggingface-pytorch-tgi-inference" in worker["image"]
    assert worker["resources"]["requests"] == {"nvidia.com/gpu": 1}  # ml.g5.8xlarge: 1 GPU
    assert {"name": "HF_MODEL_ID", "value": "/opt/ml/model"} in worker["environmentVariables"]
    assert spec["tags"] == [{"name": "team", "value": "nlp"}]


def test_an_endpoint_the_cluster_cannot_serve_is_refused_naming_why(aws: Aws) -> None:
    """The operator serves on the cluster's own nodes: an instance type the cluster lacks,
    more replicas than its nodes of that type, and canaries and autoscaling (one model per
    resource, no traffic split in tunefleet's driving of it) are refused at plan."""
    other = planned(endpoint={"instance_type": "ml.p4d.24xlarge"})
    assert "has no ml.p4d.24xlarge nodes" in refused(other, "endpoint.instance_type").reason
    many = planned(endpoint={"instance_count": 3})
    assert "2 ml.g5.8xlarge nodes running" in refused(many, "endpoint.instance_count").reason
    canary = planned(endpoint={"canary": {"traffic_percent": 10}})
    assert not canary.ok
    assert any(u.requirement.startswith("endpoint.canary") for u in canary.unmet), canary.unmet


def test_an_endpoint_on_a_slurm_cluster_is_refused_with_where_to_serve_instead(
    aws: Aws,
) -> None:
    """Slurm clusters have no inference operator: the endpoint is refused, the reason
    pointing at serving the S3 model from a sagemaker target."""
    aws.hyperpod_cluster(name="tfslurm", orchestrator="slurm")
    plan = planned(
        endpoint={},
        options={
            "cluster": "tfslurm",
            "training_image": None,
            "storage_claim": None,
            "python": "/fsx/env/bin/python",
        },
    )
    unmet = refused(plan, "endpoint")
    assert "orchestrated by Slurm" in unmet.reason and "`sagemaker` target" in unmet.reason


def test_the_cost_is_the_jobs_share_of_the_clusters_time(aws: Aws) -> None:
    """The cluster is paid for whether or not it trains: the estimate says it is the
    job's share (both nodes, at the given price)."""
    plan = planned(options={"price_per_hour": 5.0})
    assert plan.cost is not None, plan.notes
    assert plan.cost.basis.startswith("the job's share of the cluster's time")
    assert "x 2 x ml.g5.8xlarge at $5.000/h" in plan.cost.basis
    assert "options.price_per_hour" in plan.cost.basis
    hours = float(plan.cost.basis.split(" h x 2 x ")[0].rsplit(" ", 1)[-1])
    assert plan.cost.amount == pytest.approx(hours * 2 * 5.0, abs=0.05), "hours x nodes x price"

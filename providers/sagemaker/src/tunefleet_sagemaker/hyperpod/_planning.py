"""Planning: the spec checked against the cluster, and the job it will run as.

Plan describes the cluster (:mod:`._cluster`: DescribeCluster and ListClusterNodes, read
only) and refuses, each with the reason, what the cluster can never run: another region,
an instance type no group has, more nodes than the group has running, volumes without the
policy's key, tags that cannot be Kubernetes labels. The job is planned whole with
placeholders for what exists only later (the run key, the staged datasets' paths), so the
job created is exactly the one planned:

- EKS: a ``HyperPodPyTorchJob`` (``sagemaker.amazonaws.com/v1``) as the sagemaker-hyperpod
  CLI's template renders it (hyperpod-pytorch-job-template 1.5.0, v1_1/template.py: one
  replica spec ``pod`` with the container ``pytorch-job-container``, Kueue's queue and
  priority labels, ``nprocPerNode``, the instance-type node selector, GPU and EFA requests
  and limits, ``runPolicy.jobMaxRetryCount``), the trainer's config in its environment.

Paths: the cluster's shared storage shows ``s3://<bucket>/<key>`` at
``<shared_path>/<key>`` (an FSx for Lustre data repository association or a Mountpoint for
S3 volume), so the staged datasets are read there and the model and checkpoints written
under ``<prefix>/jobs/<job name>/``, which the association exports back to S3.

Evaluation (``predictions="job"``, as on SageMaker): with ``spec.evaluation`` the golden
set is staged too and the trainer answers it after training, writing its answers to
``<prefix>/jobs/<job name>/predictions/`` on the shared storage (:data:`PREDICTIONS_DIR`),
which :mod:`._artifacts` lists and reads back from S3.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from typing import Any

from tunefleet.errors import ProviderNotFoundError
from tunefleet.kit.labels import RUN, RUN_KEY_PLACEHOLDER, TARGET, run_labels
from tunefleet.kit.labels import RUN_KEY as RUN_KEY_TAG
from tunefleet.kit.trainer import epochs as trainer_epochs
from tunefleet.kit.trainer import trainer_config as neutral_trainer_config
from tunefleet.kit.trainer import trainer_unmet
from tunefleet.provider import (
    CostEstimate,
    DatasetRef,
    NativeRequest,
    Plan,
    PlanRequest,
    Unmet,
    fill_placeholders,
)
from tunefleet.spec import RunSpec, TargetSpec
from tunefleet_sagemaker._planning import evaluation_config, upload_requests, upload_unmet
from tunefleet_sagemaker.hyperpod import _cluster, _serving
from tunefleet_sagemaker.hyperpod.options import HyperPodOptions
from tunefleet_sagemaker.hyperpod.pricing import PRICE_SOURCE, PRICES, Resources, resources

__all__ = [
    "API_VERSION",
    "CONTAINER",
    "GROUP",
    "KIND",
    "LABELS",
    "PLURAL",
    "RUN_KEY",
    "RUN_KEY_LABEL",
    "VERSION",
    "fill",
    "job_name",
    "output_key",
    "plan",
    "prediction_kinds",
    "shared_file",
]

RUN_KEY = RUN_KEY_PLACEHOLDER
DATASET_HASH = "<sha256>"
GROUP = "sagemaker.amazonaws.com"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "HyperPodPyTorchJob"
PLURAL = "hyperpodpytorchjobs"
CONTAINER = "pytorch-job-container"
"""The container's name in the CLI's template; the operator's pods keep it."""
LABELS = {
    RUN_KEY_TAG: "tunefleet.dev/run-key",
    RUN: "tunefleet.dev/run",
    TARGET: "tunefleet.dev/target",
}
"""tunefleet's labels under a prefix of its own (a Kubernetes label key takes no ``:``)."""
RUN_KEY_LABEL = LABELS[RUN_KEY_TAG]
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
AGENT_PORT = 8080
"""Where the HyperPod elastic agent in each pod listens for the training operator."""
KEEP_FINISHED = -1
"""runPolicy.ttlSecondsAfterFinished: a finished job is kept until someone deletes it
(-1, "infinite", in the operator's CRD), so a later process finds it and reads how it
ended; the SDK's default 0 deletes it at once, and a job deleted by a timer would later
read as cancelled."""
PREDICTIONS_DIR = "predictions"
"""The folder of a job's output (``<prefix>/jobs/<job name>/``) the trainer writes the golden
set's answers to: beside the model, not in it, so reading them never lists the model."""
_PLACEHOLDER_PATH = "${%s_path}"
_OUR_PLACEHOLDER = re.compile(r"\$\{(run_key|[a-z_]+_(path|size))\}")
"""tunefleet's placeholders (a Slurm script's own ``${var%...}`` are the shell's)."""

# Kubernetes label syntax ("Labels and Selectors", kubernetes.io/docs/concepts/overview/
# working-with-objects/labels/#syntax-and-character-set): an optional DNS-subdomain prefix
# and "/", a name of at most 63 characters; a value of at most 63, possibly empty.
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = re.compile(rf"^([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_LABEL_NAME}$")
_LABEL_VALUE = re.compile(rf"^({_LABEL_NAME})?$")
_NO_GPU = Resources(gpus=0, efa=0)
_RUNNABLE = {"InService", "Updating", "SystemUpdating"}
"""Cluster statuses in which it runs jobs (ClusterStatus, botocore's sagemaker model)."""


def path_placeholder(role: str) -> str:
    """Stands for a staged dataset's path on the shared storage in a planned request."""
    return _PLACEHOLDER_PATH % role


def size_placeholder(role: str) -> str:
    """Stands for a staged dataset's size in bytes in a planned request."""
    return f"${{{role}_size}}"


def shared_file(options: HyperPodOptions, key: str) -> str:
    """Where the jobs see ``s3://<bucket>/<key>`` on the cluster's shared storage."""
    return f"{options.shared_path.rstrip('/')}/{key}"


def output_key(options: HyperPodOptions, job: str, *parts: str) -> str:
    """The S3 key of a job's output ``parts`` (``model``, ``checkpoints``)."""
    return "/".join(p.strip("/") for p in (options.prefix, "jobs", job, *parts) if p.strip("/"))


def job_name(spec: RunSpec) -> str:
    """The job's name with the run key's placeholder: at most 26 + 1 + 32 = 59 characters,
    a DNS label, so it is also a label value (the operator labels pods with it)."""
    return f"{spec.name[:26].rstrip('-')}-{RUN_KEY}"


def _group(
    facts: _cluster.ClusterFacts, target: TargetSpec, options: HyperPodOptions
) -> tuple[_cluster.InstanceGroup | None, list[Unmet]]:
    """The instance group the job runs on, or why none can be chosen."""
    # A Slurm cluster's controller and login nodes run no jobs.
    candidates = [
        group for group in facts.groups if group.slurm_node_type not in {"Controller", "Login"}
    ]
    groups = {group.name: group for group in candidates}
    have = ", ".join(f"{g.name} ({g.instance_type} x {g.running})" for g in candidates)
    wanted = target.compute.instance_type
    if options.instance_group is not None:
        group = groups.get(options.instance_group)
        if group is None:
            return None, [
                Unmet(
                    requirement="options.instance_group",
                    reason=f"cluster {facts.name} has no instance group "
                    f"{options.instance_group!r} (it has {have or 'none'})",
                )
            ]
        if wanted is not None and wanted != group.instance_type:
            return None, [
                Unmet(
                    requirement="compute.instance_type",
                    reason=f"instance group {group.name} of cluster {facts.name} has "
                    f"{group.instance_type} nodes, not {wanted}",
                )
            ]
        return group, []
    if wanted is not None:
        matching = [g for g in candidates if g.instance_type == wanted]
        if not matching:
            return None, [
                Unmet(
                    requirement="compute.instance_type",
                    reason=f"cluster {facts.name} has no {wanted} nodes (it has {have or 'none'})",
                )
            ]
    else:
        accelerated = [g for g in candidates if (resources(g.instance_type) or _NO_GPU).gpus > 0]
        matching = accelerated or candidates
    if len(matching) != 1:
        return None, [
            Unmet(
                requirement="options.instance_group",
                reason=f"cluster {facts.name} has several instance groups the job could run "
                f"on ({have}); name one in options.instance_group",
            )
        ]
    return matching[0], []


def _cluster_unmet(
    spec: RunSpec,
    target: TargetSpec,
    options: HyperPodOptions,
    facts: _cluster.ClusterFacts,
    group: _cluster.InstanceGroup | None,
) -> tuple[list[Unmet], list[str]]:
    """What the cluster cannot do for the spec, and notes on what it does."""
    found: list[Unmet] = []
    notes: list[str] = []
    policy = spec.placement
    if facts.status not in _RUNNABLE:
        found.append(
            Unmet(
                requirement="options.cluster",
                reason=f"cluster {facts.name} is {facts.status}; it runs jobs when InService",
            )
        )
    count = target.compute.instance_count
    if group is not None:
        if count > group.running:
            found.append(
                Unmet(
                    requirement="compute.instance_count",
                    reason=f"the job asks for {count} nodes but instance group {group.name} "
                    f"of cluster {facts.name} has {group.running} running "
                    f"{group.instance_type} node(s) (target {group.target}); it would wait "
                    "for capacity that is not there",
                )
            )
        known = resources(group.instance_type)
        if known is None and options.nproc_per_node is None:
            found.append(
                Unmet(
                    requirement="options.nproc_per_node",
                    reason=f"tunefleet does not know how many GPUs {group.instance_type} has; "
                    "set options.nproc_per_node (one process per GPU)",
                )
            )
        gpus = known.gpus if known is not None else (options.nproc_per_node or 0)
        if spec.method.adapter == "qlora" and gpus == 0:
            found.append(
                Unmet(
                    requirement="method.adapter",
                    reason=f"qlora needs a CUDA GPU; {group.instance_type} has none",
                )
            )
        if policy.require_customer_managed_key and not group.volume_kms_keys:
            found.append(
                Unmet(
                    requirement="placement.require_customer_managed_key",
                    reason=f"the EBS volumes of instance group {group.name} are not encrypted "
                    "with a customer-managed key (no InstanceStorageConfigs.EbsVolumeConfig."
                    "VolumeKmsKeyId); the cluster's owner sets it when creating the group",
                )
            )
        elif group.volume_kms_keys:
            notes.append(
                f"the nodes' EBS volumes are encrypted with {', '.join(group.volume_kms_keys)} "
                "(the cluster's setting); the shared file system's key is the file system's"
            )
    if policy.require_private_network:
        subnets = (group.subnets if group is not None else ()) or facts.subnets
        if not subnets:
            found.append(
                Unmet(
                    requirement="placement.require_private_network",
                    reason=f"cluster {facts.name} has no VpcConfig: its nodes are not in "
                    "subnets of your VPC",
                )
            )
        else:
            notes.append(
                f"the job runs in cluster {facts.name}'s VPC subnets {', '.join(subnets)} "
                f"(security groups {', '.join(facts.security_groups) or 'none listed'})"
            )
    if policy.require_customer_managed_key and options.kms_key_id is None:
        found.append(
            Unmet(
                requirement="placement.require_customer_managed_key",
                reason="no key for the staged datasets given in options.kms_key_id",
            )
        )
    if target.compute.spot:
        found.append(
            Unmet(
                requirement="compute.spot",
                reason="a HyperPod cluster's instances are on-demand or reserved capacity; a "
                "job cannot ask for spot",
            )
        )
    if target.compute.volume_size_gb is not None:
        found.append(
            Unmet(
                requirement="compute.volume_size_gb",
                reason="a HyperPod job uses the volumes its cluster's instance groups were "
                "created with (InstanceStorageConfigs)",
            )
        )
    return found, notes


def _eks_unmet(options: HyperPodOptions) -> list[Unmet]:
    found = []
    if options.training_image is None:
        found.append(
            Unmet(
                requirement="options.training_image",
                reason="an EKS cluster runs the trainer from an image (deploy/trainer with the "
                "HyperPod elastic agent) in a registry its nodes can pull from",
            )
        )
    if options.storage_claim is None:
        found.append(
            Unmet(
                requirement="options.storage_claim",
                reason="the pods read the staged datasets and write the model through the "
                "shared storage's PersistentVolumeClaim (FSx for Lustre linked to the bucket, "
                "or Mountpoint for Amazon S3)",
            )
        )
    slurm_only = {
        "head_node": options.head_node,
        "ssh_config": options.ssh_config,
        "partition": options.partition,
        "python": options.python,
        "container_image": options.container_image,
    }
    found += [
        Unmet(requirement=f"options.{name}", reason="a Slurm option, and the cluster is EKS")
        for name, value in slurm_only.items()
        if value is not None
    ]
    return found


def labels_unmet(spec: RunSpec) -> list[Unmet]:
    """The policy's tags that cannot be Kubernetes labels; tunefleet never rewrites a tag."""
    found = []
    for key, value in spec.placement.tags.items():
        if not _LABEL_KEY.match(key):
            found.append(
                Unmet(
                    requirement=f"placement.tags.{key}",
                    reason=f"{key!r} cannot be a Kubernetes label key (an optional DNS prefix "
                    "and /, then at most 63 letters, digits, -, _ and ., starting and ending "
                    "with a letter or digit); tunefleet does not rewrite tags: rename it",
                )
            )
        elif not _LABEL_VALUE.match(value):
            found.append(
                Unmet(
                    requirement=f"placement.tags.{key}",
                    reason=f"{value!r} cannot be a Kubernetes label value (at most 63 letters, "
                    "digits, -, _ and ., starting and ending with a letter or digit); "
                    "tunefleet does not rewrite tags: change it",
                )
            )
    return found


def _labels(spec: RunSpec, target: TargetSpec, options: HyperPodOptions) -> dict[str, str]:
    labels = {
        LABELS.get(key, key): value for key, value in run_labels(spec, target=target.key).items()
    }
    if options.queue is not None:
        labels[QUEUE_LABEL] = options.queue
    if options.priority_class is not None:
        labels[PRIORITY_LABEL] = options.priority_class
    return labels


def roles_of(spec: RunSpec) -> list[str]:
    """The datasets a job of ``spec`` reads: the golden set too when the spec has an
    evaluation, which the job answers."""
    roles = ["train", "validation"] if spec.dataset.validation is not None else ["train"]
    if spec.evaluation is not None:
        roles.append("golden_set")
    return roles


def trainer_config(spec: RunSpec, options: HyperPodOptions, job: str) -> dict[str, Any]:
    """The trainer's config with the shared storage's paths; with an evaluation, the
    golden set's path and the job's predictions folder (:data:`PREDICTIONS_DIR`)."""
    adapter = spec.method.adapter or "lora"
    config = neutral_trainer_config(spec, adapter=adapter, merge=adapter != "full")
    config.update({role: path_placeholder(role) for role in roles_of(spec) if role != "golden_set"})
    config.update(
        output_dir=shared_file(options, output_key(options, job, "model")),
        checkpoint_dir=shared_file(options, output_key(options, job, "checkpoints")),
    )
    if spec.evaluation is not None:
        # SageMaker's evaluation (greedy, the baseline too), with the shared storage's paths.
        config["evaluation"] = {
            **evaluation_config(spec.evaluation),
            "golden_set": path_placeholder("golden_set"),
            "predictions_dir": shared_file(options, output_key(options, job, PREDICTIONS_DIR)),
        }
    return config


def prediction_kinds(config: Mapping[str, Any]) -> list[str]:
    """The predictions artifacts a job with trainer ``config`` writes: none without an
    evaluation, the baseline's too when it asks for them."""
    evaluation = config.get("evaluation")
    if not isinstance(evaluation, Mapping):
        return []
    return (
        ["predictions", "baseline_predictions"] if evaluation.get("baseline") else ["predictions"]
    )


def eks_job(
    spec: RunSpec,
    target: TargetSpec,
    options: HyperPodOptions,
    group: _cluster.InstanceGroup | None,
) -> dict[str, Any]:
    """The HyperPodPyTorchJob of ``spec``, with placeholders."""
    name = job_name(spec)
    nodes = target.compute.instance_count
    instance_type = group.instance_type if group is not None else target.compute.instance_type
    offered = resources(instance_type or "")
    # An unknown type is refused at plan unless nproc_per_node says how many GPUs to use.
    gpus = offered.gpus if offered is not None else (options.nproc_per_node or 0)
    nproc = options.nproc_per_node or max(gpus, 1)
    labels = _labels(spec, target, options)
    config = trainer_config(spec, options, name)
    requests: dict[str, str] = {"nvidia.com/gpu": str(gpus)}
    efa = options.efa_per_node if options.efa_per_node is not None else (offered or _NO_GPU).efa
    if efa:
        requests["vpc.amazonaws.com/efa"] = str(efa)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": options.training_image,
        "command": [
            "hyperpodrun",
            f"--nnodes={nodes}",
            f"--nproc-per-node={nproc}",
            "--server-host=0.0.0.0",
            f"--server-port={AGENT_PORT}",
            "--tee=3",
            "--log_dir=/tmp/hyperpod",
            "-m",
            "tunefleet_trainer",
        ],
        "env": [
            {"name": "TUNEFLEET_TRAINER_CONFIG", "value": json.dumps(config, sort_keys=True)},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
        ],
        # The elastic agent serves the training operator here (the operator's usage guide
        # declares it: "containerPort: 8080 # port HyperPodElasticAgent listens to").
        "ports": [{"containerPort": AGENT_PORT}],
        "resources": {"requests": dict(requests), "limits": dict(requests)},
        "volumeMounts": [
            {"name": "shared", "mountPath": options.shared_path},
            {"name": "shmem", "mountPath": "/dev/shm"},  # noqa: S108 (the pod's own)
        ],
    }
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": [
            {"name": "shared", "persistentVolumeClaim": {"claimName": options.storage_claim}},
            # A container's /dev/shm is 64 MiB; NCCL and data loaders need more (AWS's
            # HyperPodPyTorchJob examples mount memory there the same way).
            {"name": "shmem", "emptyDir": {"medium": "Memory"}},
        ],
    }
    if instance_type:
        pod_spec["nodeSelector"] = {"node.kubernetes.io/instance-type": instance_type}
    if options.service_account is not None:
        pod_spec["serviceAccountName"] = options.service_account
    run_policy: dict[str, Any] = {
        "cleanPodPolicy": "None",
        "jobMaxRetryCount": options.max_retries,
        "ttlSecondsAfterFinished": KEEP_FINISHED,
    }
    if target.compute.max_runtime_hours is not None:
        run_policy["activeDeadlineSeconds"] = int(target.compute.max_runtime_hours * 3600)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": options.namespace, "labels": labels},
        "spec": {
            "nprocPerNode": str(nproc),
            "replicaSpecs": [
                {
                    "name": "pod",
                    "replicas": nodes,
                    "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
                }
            ],
            "runPolicy": run_policy,
        },
    }


def job_dir(options: HyperPodOptions, name: str) -> str:
    """Where a job's files are on the shared storage: its script, its Slurm record, its
    output (``output.log``), the model and the checkpoints."""
    return shared_file(options, output_key(options, name))


SLURM_RECORD = "slurm.json"
"""The record a Slurm job keeps of itself on the shared storage (its id when it starts;
its end and exit status when it ends), so it is found and its outcome known after Slurm
forgot it (without accounting, Slurm forgets a finished job after MinJobAge)."""
SLURM_OUTPUT = "output.log"
MAX_COMMENT = 1024
"""``--comment`` and ``--job-name`` are kept up to 1024 characters; sbatch refuses longer
ones ("Pathname of a file, directory or other parameter too long": measured with Slurm
22.05, shared/TESTING-TARGETS.md B)."""
DATASET_WAIT_SECONDS = 600
"""How long a job waits for its datasets to appear on the shared storage: FSx for Lustre
imports new objects of a linked bucket asynchronously (data repository associations)."""


def slurm_comment(spec: RunSpec, target: TargetSpec) -> str:
    """The job's ``--comment``: the policy's tags and tunefleet's labels, ``key=value``
    separated by spaces (Slurm has no labels; the comment is shown by squeue and scontrol
    and kept by accounting)."""
    labels = {
        LABELS.get(key, key): value for key, value in run_labels(spec, target=target.key).items()
    }
    return " ".join(f"{key}={value}" for key, value in labels.items())


def _trainer_command(options: HyperPodOptions, nproc: int) -> list[str]:
    python = options.python or "python3"
    return [
        python,
        "-m",
        "torch.distributed.run",
        "--nnodes=$SLURM_JOB_NUM_NODES",
        f"--nproc-per-node={nproc}",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=$head_addr:$port",
        "--rdzv-id=$SLURM_JOB_ID",
        "-m",
        "tunefleet_trainer",
    ]


def slurm_job(
    spec: RunSpec,
    target: TargetSpec,
    options: HyperPodOptions,
    group: _cluster.InstanceGroup | None,
) -> dict[str, Any]:
    """The sbatch script of ``spec`` and how it is submitted, with placeholders.

    One task per node (``srun``), each running ``torch.distributed.run`` (torchrun) with
    ``nproc_per_node`` processes and a c10d rendezvous at the first node's address, from an
    environment on the shared storage (``options.python``) or from an image through
    pyxis/enroot (``options.container_image``, the shared storage mounted at the same
    path). On HyperPod (``/opt/sagemaker_cluster`` exists) ``srun --auto-resume=1`` lets
    HyperPod replace a failed node and run the step again; the trainer resumes from its
    newest checkpoint.
    """
    name = job_name(spec)
    folder = job_dir(options, name)
    nodes = target.compute.instance_count
    offered = resources(group.instance_type) if group is not None else None
    nproc = options.nproc_per_node or max(offered.gpus if offered else 0, 1)
    config = trainer_config(spec, options, name)
    directives = [
        f"--job-name={name}",
        f"--nodes={nodes}",
        "--ntasks-per-node=1",
        "--exclusive",
        f"--output={folder}/{SLURM_OUTPUT}",
        # A requeued job appends: the events cursor is a byte offset into this file.
        "--open-mode=append",
    ]
    partition = options.partition or (
        group.slurm_partitions[0] if group is not None and group.slurm_partitions else None
    )
    if partition is not None:
        # The group's own partition, so the job runs on the nodes plan checked.
        directives.append(f"--partition={partition}")
    if target.compute.max_runtime_hours is not None:
        directives.append(f"--time={max(int(target.compute.max_runtime_hours * 60), 1)}")
    srun = ["srun"]
    if options.container_image is not None:
        srun += [
            f"--container-image={options.container_image}",
            f"--container-mounts={options.shared_path}:{options.shared_path}",
        ]
    command = " ".join(
        part if part.startswith("--") and "$" in part else shlex.quote(part)
        for part in _trainer_command(options, nproc)
    )
    datasets = " ".join(
        shlex.quote(f"{path_placeholder(role)}:{size_placeholder(role)}") for role in roles_of(spec)
    )
    record = shlex.quote(f"{folder}/{SLURM_RECORD}")
    script = "\n".join(
        [
            "#!/bin/bash",
            *(f"#SBATCH {directive}" for directive in directives),
            "# Written by tunefleet: the trainer on every node, one torchrun per node.",
            "set -uo pipefail",
            f"record={record}",
            "started=$(date +%s)",
            "write_record() {  # atomically: a reader never sees half a record",
            '    printf \'%s\\n\' "$1" >"$record.$$" && mv -f "$record.$$" "$record"',
            "}",
            'write_record "{\\"job_id\\": \\"$SLURM_JOB_ID\\", \\"started\\": $started}"',
            "finish() {",
            "    code=$?",
            '    write_record "{\\"job_id\\": \\"$SLURM_JOB_ID\\", \\"started\\": $started, '
            '\\"ended\\": $(date +%s), \\"exit_code\\": $code}"',
            "}",
            "trap finish EXIT",
            "trap 'exit 143' TERM INT  # scancel: record the end too",
            "# The shared storage imports new objects of the bucket asynchronously.",
            f"for dataset in {datasets}; do",
            '    file="${dataset%:*}" size="${dataset##*:}" waited=0',
            '    until [ -f "$file" ] && [ "$(stat -c %s "$file")" = "$size" ]; do',
            f"        if [ $waited -ge {DATASET_WAIT_SECONDS} ]; then",
            f'            echo "tunefleet: $file is not on the shared storage after {DATASET_WAIT_SECONDS} s" >&2',
            "            exit 3",
            "        fi",
            "        sleep 2; waited=$((waited + 2))",
            "    done",
            "done",
            f"export TUNEFLEET_TRAINER_CONFIG={shlex.quote(json.dumps(config, sort_keys=True))}",
            "export PYTHONUNBUFFERED=1",
            'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
            "head_addr=$(scontrol show node \"$head_node\" -o | tr ' ' '\\n' | sed -n 's/^NodeAddr=//p')",
            "port=$((20000 + SLURM_JOB_ID % 20000))",
            "resume=()",
            "[ -d /opt/sagemaker_cluster ] && resume=(--auto-resume=1)",
            f'{shlex.join(srun)} "${{resume[@]}}" {command}',
        ]
    )
    body: dict[str, Any] = {
        "job_name": name,
        "job_dir": folder,
        "nodes": nodes,
        "instance_type": group.instance_type if group is not None else "",
        "adapter": config["adapter"],
        "comment": slurm_comment(spec, target),
        "script": script + "\n",
    }
    kinds = prediction_kinds(config)
    if kinds:  # the answers the job writes, for its ref's scope (see _slurm)
        body["predictions"] = kinds
    return body


def _slurm_unmet(spec: RunSpec, target: TargetSpec, options: HyperPodOptions) -> list[Unmet]:
    found = []
    if options.python is None and options.container_image is None:
        found.append(
            Unmet(
                requirement="options.python",
                reason="a Slurm job runs the trainer from an environment on the shared storage "
                "(options.python) or an image through pyxis/enroot (options.container_image)",
            )
        )
    eks_only = {
        "kube_context": options.kube_context,
        "training_image": options.training_image,
        "service_account": options.service_account,
        "storage_claim": options.storage_claim,
        "queue": options.queue,
        "priority_class": options.priority_class,
        "efa_per_node": options.efa_per_node or None,
        "serving_image": options.serving_image,
        "serving_gpus": options.serving_gpus,
    }
    found += [
        Unmet(requirement=f"options.{name}", reason="an EKS option, and the cluster is Slurm")
        for name, value in eks_only.items()
        if value is not None
    ]
    comment = slurm_comment(spec, target).replace(RUN_KEY, "f" * 32)
    if len(comment) > MAX_COMMENT:
        found.append(
            Unmet(
                requirement="placement.tags",
                reason=f"the tags make a Slurm --comment of {len(comment)} characters; Slurm "
                f"keeps at most {MAX_COMMENT}",
            )
        )
    return found


def fill(
    body: dict[str, Any],
    options: HyperPodOptions,
    datasets: Mapping[str, DatasetRef],
    run_key: str,
) -> dict[str, Any]:
    """``body`` with the run key and the staged datasets' shared-storage paths and sizes in
    place of placeholders."""
    prefix = f"s3://{options.bucket}/"
    values = {RUN_KEY: run_key}
    for role, dataset in datasets.items():
        if not dataset.uri.startswith(prefix):
            raise ValueError(f"{dataset.uri} is not in bucket {options.bucket}")
        values[path_placeholder(role)] = shared_file(options, dataset.uri.removeprefix(prefix))
        values[size_placeholder(role)] = str(dataset.size_bytes)
    filled = fill_placeholders(body, values)
    left = _OUR_PLACEHOLDER.search(json.dumps(filled))
    if left is not None:  # a dataset the plan reads was not staged
        raise ValueError(f"the planned job's placeholder {left.group(0)} was left unfilled")
    return filled


def _cost(
    request: PlanRequest, instance_type: str | None, count: int, epochs: int
) -> tuple[CostEstimate | None, list[str]]:
    options = request.options
    assert isinstance(options, HyperPodOptions)
    if instance_type is None:
        return None, []
    train = request.datasets.get("train")
    tokens = None if train is None or train.billable_tokens is None else train.billable_tokens
    estimate, notes = PRICES.estimate(
        instance=instance_type,
        count=count,
        region=request.target.region or PRICES.fallback_region,
        tokens=None if tokens is None else tokens * epochs,
        price_per_hour=options.price_per_hour,
        tokens_per_second=options.tokens_per_second,
    )
    if estimate is None:
        return None, notes
    source = "options.price_per_hour" if options.price_per_hour is not None else PRICE_SOURCE
    share = estimate.model_copy(
        update={
            "basis": f"the job's share of the cluster's time (the cluster is paid for whether "
            f"or not it trains): {estimate.basis} ({source})"
        }
    )
    return share, notes


def plan(provider: str, request: PlanRequest, clusters: _cluster.Clusters) -> Plan:
    """The uploads and the job of one target, checked against the cluster, with the job's
    share of the cluster's cost."""
    spec, target = request.spec, request.target
    options = request.options
    assert isinstance(options, HyperPodOptions)
    found: list[Unmet] = trainer_unmet(spec)
    notes: list[str] = []
    requests: list[NativeRequest] = upload_requests(
        spec, options, options.kms_key_id, request.datasets, roles_of(spec)
    )
    found += upload_unmet(options, request.datasets, roles_of(spec))
    epochs, _ = trainer_epochs(spec)
    cost: CostEstimate | None = None
    if target.region is None:
        found.append(
            Unmet(requirement="region", reason="a HyperPod cluster is in a region; set it")
        )
    else:
        try:
            facts: _cluster.ClusterFacts | None = clusters.describe(target.region, options.cluster)
        except ProviderNotFoundError:
            facts = None
            found.append(
                Unmet(
                    requirement="options.cluster",
                    reason=f"there is no HyperPod cluster {options.cluster} in {target.region} "
                    "(the target's region must be the cluster's)",
                )
            )
        if facts is not None:
            group, group_unmet = _group(facts, target, options)
            found += _serving.unmet(spec, target, options, facts, target.region)
            cluster_unmet, cluster_notes = _cluster_unmet(spec, target, options, facts, group)
            found += group_unmet + cluster_unmet
            notes += cluster_notes
            if facts.orchestrator == "slurm":
                found += _slurm_unmet(spec, target, options)
                where = options.head_node or "this machine (the head node)"
                requests.append(
                    NativeRequest(
                        service="slurm",
                        operation="sbatch",
                        body=slurm_job(spec, target, options, group),
                        purpose=f"submit the batch job to Slurm on {where}",
                    )
                )
            else:
                found += _eks_unmet(options) + labels_unmet(spec)
                requests.append(
                    NativeRequest(
                        service="kubernetes",
                        operation=f"Create{KIND}",
                        body=eks_job(spec, target, options, group),
                        purpose=f"create the {KIND} on EKS cluster "
                        f"{(facts.eks_cluster_arn or '').rsplit('/', 1)[-1]}",
                    )
                )
                serving_type = _serving.serving_instance_type(spec, target, facts)
                if spec.endpoint is not None and serving_type is not None:
                    labels = {
                        key: value
                        for key, value in _labels(spec, target, options).items()
                        if key not in {RUN_KEY_LABEL, QUEUE_LABEL, PRIORITY_LABEL}
                    }
                    requests.append(
                        NativeRequest(
                            service="kubernetes",
                            operation=_serving.OPERATION,
                            body=_serving.endpoint_config(
                                spec, target, options, target.region, serving_type, labels
                            ),
                            purpose="serve the trained model through HyperPod's inference "
                            "operator, which registers a SageMaker endpoint of the same name",
                            phase="deploy",
                        )
                    )
            instance_type = group.instance_type if group is not None else None
            cost, cost_notes = _cost(request, instance_type, target.compute.instance_count, epochs)
            notes += cost_notes
    if spec.evaluation is not None:
        notes.append(
            "the job also answers the golden set, with the base model before training and "
            f"the trained model after it (greedy, up to {spec.evaluation.max_tokens} new "
            "tokens an answer), into its predictions folder on the shared storage; the cost "
            "estimate leaves that time out"
        )
    return Plan(
        target=target.key,
        provider=provider,
        region=target.region,
        options=options.model_dump(mode="json"),
        epochs=epochs,
        requests=requests,
        cost=cost,
        unmet=found,
        notes=notes,
        # The job answers the golden set itself (the nodes are paid for already); the
        # answers come back as its predictions artifacts (see _artifacts).
        predictions="job" if spec.evaluation is not None else None,
    )

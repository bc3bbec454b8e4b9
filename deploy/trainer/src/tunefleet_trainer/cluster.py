"""``python -m tunefleet_trainer.cluster``: run the trainer on a Vertex AI custom job's replicas.

Usage::

    python -m tunefleet_trainer.cluster [--nproc-per-node N|auto] -- <trainer args>

Vertex AI starts the same container on every replica of every worker pool at once and tells
each replica where it is through environment variables; this launcher turns them into the
trainer's arguments and, for more than one process, into a ``torchrun`` command line.

What Vertex AI provides (and where it is written down):

* ``CLUSTER_SPEC`` (https://cloud.google.com/vertex-ai/docs/training/distributed-training,
  "Structure of the training cluster" and the ``CLUSTER_SPEC`` section under "Environment
  variables"): JSON with ``cluster`` mapping ``workerpool0`` .. ``workerpool3`` to lists of
  ``host:port`` (one per replica), ``task`` = ``{"type": "workerpoolN", "index": I, "trial":
  ...}`` naming this replica, plus ``environment`` ("cloud") and ``job``. The positions in
  ``workerPoolSpecs[]`` have fixed roles: 0 the primary ("chief", exactly one replica), 1 the
  other workers, 2 parameter servers or Reduction Server, 3 evaluators.
* ``AIP_MODEL_DIR``, ``AIP_CHECKPOINT_DIR``, ``AIP_TENSORBOARD_LOG_DIR``: set when the job has a
  ``baseOutputDirectory`` to ``<base>/model/``, ``<base>/checkpoints/`` and ``<base>/logs/``
  (``CustomJobSpec.baseOutputDirectory`` in the REST reference,
  https://cloud.google.com/vertex-ai/docs/reference/rest/v1/CustomJobSpec, and
  https://cloud.google.com/vertex-ai/docs/training/code-requirements, "Environment variables").
  They are ``gs://`` URIs.
* Cloud Storage FUSE: every bucket the job can reach is mounted at ``/gcs/BUCKET``, so
  ``gs://BUCKET/PATH`` is the file ``/gcs/BUCKET/PATH``
  (https://cloud.google.com/vertex-ai/docs/training/cloud-storage-file-system).

The contract:

* Outputs: unless the trainer arguments already give ``--output-dir`` / ``--checkpoint-dir``,
  the launcher adds them from ``AIP_MODEL_DIR`` / ``AIP_CHECKPOINT_DIR`` translated to the FUSE
  mount (:func:`fuse_path`). Any other scheme is refused (exit 2, one line).
  ``AIP_TENSORBOARD_LOG_DIR`` is not used: the trainer reports metrics as
  ``tunefleet.metric`` lines, not TensorBoard events.
* Topology (:func:`parse_cluster_spec`): the training nodes are the replicas of workerpool0
  (the chief, node rank 0) then workerpool1 (node rank 1 + its index). Reduction Server
  replicas (workerpool2) run Google's reduction-server image, not this launcher, and are not
  nodes of the torch job: they take part through NCCL only. Evaluators (workerpool3) are
  refused (exit 2): the trainer evaluates on the chief, so an evaluator would idle, billed.
  Rendezvous is static, at workerpool0's ``host:port``: Vertex starts every replica at once.
* Launch (:func:`plan_launch`): one node and one process runs the trainer in this process
  (``tunefleet_trainer.__main__.main``); otherwise this process becomes ``torchrun``
  (``python -m torch.distributed.run``) with ``--nnodes``, ``--node-rank``,
  ``--nproc-per-node`` (``auto``: the visible CUDA GPUs, at least 1) and ``--master-addr`` /
  ``--master-port`` (``--standalone`` on one node), then ``-m tunefleet_trainer <args>``.
  Without ``CLUSTER_SPEC`` (outside Vertex) the machine is one node.

Exit status: the trainer's (0 trained, 2 the config cannot run, 1 anything else); 2 when the
environment cannot be understood, with the reason on one line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tunefleet_trainer.errors import TrainerError

__all__ = [
    "FUSE_ROOT_ENV",
    "Launch",
    "Topology",
    "fuse_path",
    "main",
    "output_args",
    "parse_cluster_spec",
    "plan_launch",
    "resolve_nproc",
    "torchrun_argv",
    "visible_gpus",
]

FUSE_ROOT_ENV = "TUNEFLEET_GCS_FUSE_ROOT"
"""Where Cloud Storage FUSE mounts buckets; ``/gcs`` unless this variable says otherwise
(tests point it at a temporary directory)."""
_DEFAULT_FUSE_ROOT = "/gcs"
_TRAINING_POOLS = ("workerpool0", "workerpool1")
_REDUCTION_POOL = "workerpool2"
_EVALUATOR_POOL = "workerpool3"
_OUTPUTS = (("--output-dir", "AIP_MODEL_DIR"), ("--checkpoint-dir", "AIP_CHECKPOINT_DIR"))


@dataclass(frozen=True)
class Topology:
    """Where this replica sits among the training nodes."""

    nnodes: int
    """Training nodes: the replicas of workerpool0 and workerpool1."""
    node_rank: int
    """0 for the chief (workerpool0), 1 + index for workerpool1's replicas."""
    master_addr: str | None
    """The chief's host (None without ``CLUSTER_SPEC``)."""
    master_port: int | None
    """The chief's port (None without ``CLUSTER_SPEC``)."""


@dataclass(frozen=True)
class Launch:
    """What to run: the trainer in this process, or ``argv`` exec'd in its place."""

    in_process: bool
    argv: list[str]
    """``in_process``: the trainer's arguments; else a whole command line (``argv[0]`` is the
    Python interpreter running ``-m torch.distributed.run``)."""


def _split_host_port(address: Any, where: str) -> tuple[str, int]:
    if not isinstance(address, str) or ":" not in address:
        raise TrainerError(f"CLUSTER_SPEC: {where} is {address!r}, not host:port")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise TrainerError(f"CLUSTER_SPEC: {where} is {address!r}, not host:port")
    return host, int(port)


def parse_cluster_spec(text: str | None) -> Topology:
    """This replica's place among the training nodes, from ``CLUSTER_SPEC``'s JSON.

    None or blank (not on Vertex) is one node without a master address. Raises
    :class:`TrainerError` (exit 2) when the spec is malformed, when workerpool0 does not hold
    exactly one replica, or when this replica is an evaluator (workerpool3) or a Reduction
    Server (workerpool2).
    """
    if text is None or not text.strip():
        return Topology(nnodes=1, node_rank=0, master_addr=None, master_port=None)
    try:
        spec = json.loads(text)
    except ValueError as exc:
        raise TrainerError(f"CLUSTER_SPEC is not JSON: {exc}") from exc
    cluster = spec.get("cluster") if isinstance(spec, dict) else None
    task = spec.get("task") if isinstance(spec, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise TrainerError("CLUSTER_SPEC has no 'cluster' and 'task' objects")
    pools: dict[str, list[Any]] = {}
    for name in _TRAINING_POOLS:
        replicas = cluster.get(name, [])
        if not isinstance(replicas, list):
            raise TrainerError(f"CLUSTER_SPEC: cluster.{name} is not a list of host:port")
        pools[name] = replicas
    if len(pools["workerpool0"]) != 1:
        raise TrainerError(
            "CLUSTER_SPEC: workerpool0 (the chief) must have exactly one replica, "
            f"it has {len(pools['workerpool0'])}"
        )
    kind, index = task.get("type"), task.get("index", 0)
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise TrainerError(f"CLUSTER_SPEC: task.index is {index!r}, not a replica index")
    if kind == _EVALUATOR_POOL:
        raise TrainerError(
            "this replica is an evaluator (workerpool3): tunefleet's trainer evaluates on the "
            "chief; give the job no fourth worker pool"
        )
    if kind == _REDUCTION_POOL:
        raise TrainerError(
            "this replica is in workerpool2 (parameter servers / Reduction Server): run "
            "Vertex's reduction-server image there, not tunefleet's trainer"
        )
    if kind not in _TRAINING_POOLS:
        raise TrainerError(f"CLUSTER_SPEC: task.type is {kind!r}, not a workerpool0-3")
    if index >= len(pools[kind]):
        raise TrainerError(
            f"CLUSTER_SPEC: task {kind}[{index}] is not among its {len(pools[kind])} replicas"
        )
    host, port = _split_host_port(pools["workerpool0"][0], "cluster.workerpool0[0]")
    for number, address in enumerate(pools["workerpool1"]):
        _split_host_port(address, f"cluster.workerpool1[{number}]")
    rank = 0 if kind == "workerpool0" else 1 + index
    nnodes = len(pools["workerpool0"]) + len(pools["workerpool1"])
    return Topology(nnodes=nnodes, node_rank=rank, master_addr=host, master_port=port)


def fuse_path(uri: str, variable: str, root: str = _DEFAULT_FUSE_ROOT) -> str:
    """``gs://BUCKET/PATH`` as its Cloud Storage FUSE path ``ROOT/BUCKET/PATH``.

    A trailing slash is dropped. Raises :class:`TrainerError` naming ``variable`` for any
    other scheme or a missing bucket.
    """
    if not uri.startswith("gs://"):
        raise TrainerError(f"{variable} must be a gs:// URI, got {uri!r}")
    bucket, _, path = uri[len("gs://") :].partition("/")
    if not bucket:
        raise TrainerError(f"{variable} names no bucket: {uri!r}")
    parts = [root.rstrip("/"), bucket, *[part for part in path.split("/") if part]]
    return "/".join(parts)


def _has_option(args: Sequence[str], option: str) -> bool:
    return any(arg == option or arg.startswith(option + "=") for arg in args)


def output_args(trainer_args: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """``trainer_args`` plus ``--output-dir`` / ``--checkpoint-dir`` from ``AIP_MODEL_DIR`` /
    ``AIP_CHECKPOINT_DIR`` (as FUSE paths) where the arguments do not give them and the
    variable is set and not blank."""
    root = environ.get(FUSE_ROOT_ENV) or _DEFAULT_FUSE_ROOT
    args = list(trainer_args)
    for option, variable in _OUTPUTS:
        uri = environ.get(variable, "").strip()
        if uri and not _has_option(args, option):
            args += [option, fuse_path(uri, variable, root)]
    return args


def visible_gpus() -> int:
    """The CUDA GPUs this process can see (``CUDA_VISIBLE_DEVICES`` applies); 0 without CUDA."""
    import torch

    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def resolve_nproc(value: str, gpu_count: Callable[[], int] = visible_gpus) -> int:
    """``--nproc-per-node``: a positive integer, or ``auto`` = ``gpu_count()``, at least 1."""
    if value == "auto":
        return max(1, gpu_count())
    if not value.isdigit() or int(value) < 1:
        raise TrainerError(f"--nproc-per-node must be a positive integer or auto, got {value!r}")
    return int(value)


def torchrun_argv(topology: Topology, nproc: int, trainer_args: Sequence[str]) -> list[str]:
    """The ``torchrun`` command line (``python -m torch.distributed.run``) for this node.

    One node rendezvous ``--standalone`` (a local store on a free port); more use the static
    rendezvous at the chief's address, since Vertex starts every replica at once.
    """
    argv = [sys.executable, "-m", "torch.distributed.run"]
    if topology.nnodes == 1:
        argv += ["--standalone", "--nnodes", "1"]
    else:
        if topology.master_addr is None or topology.master_port is None:
            raise TrainerError("more than one node needs the chief's address (CLUSTER_SPEC)")
        argv += [
            *("--nnodes", str(topology.nnodes), "--node-rank", str(topology.node_rank)),
            *("--master-addr", topology.master_addr, "--master-port", str(topology.master_port)),
        ]
    return [*argv, "--nproc-per-node", str(nproc), "-m", "tunefleet_trainer", *trainer_args]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tunefleet_trainer.cluster",
        description="Run tunefleet's trainer on this Vertex AI replica (CLUSTER_SPEC, AIP_*).",
        epilog="Everything after -- goes to the trainer (python -m tunefleet_trainer).",
    )
    parser.add_argument(
        "--nproc-per-node",
        default="auto",
        help="training processes on this node: a number, or auto (the visible GPUs, at least 1)",
    )
    return parser


def plan_launch(
    argv: Sequence[str],
    environ: Mapping[str, str],
    gpu_count: Callable[[], int] = visible_gpus,
) -> Launch:
    """What :func:`main` runs for the launcher's ``argv`` in ``environ``: a pure function of
    them (and of ``gpu_count``, called only for ``--nproc-per-node auto``).

    Launcher options come before ``--``, the trainer's after it; without ``--`` the options
    the launcher does not know are the trainer's. Raises :class:`TrainerError` (exit 2).
    """
    args = list(argv)
    if "--" in args:
        cut = args.index("--")
        options = _parser().parse_args(args[:cut])
        trainer_args = args[cut + 1 :]
    else:
        options, trainer_args = _parser().parse_known_args(args)
    topology = parse_cluster_spec(environ.get("CLUSTER_SPEC"))
    trainer_args = output_args(trainer_args, environ)
    nproc = resolve_nproc(str(options.nproc_per_node), gpu_count)
    if topology.nnodes == 1 and nproc == 1:
        return Launch(in_process=True, argv=trainer_args)
    return Launch(in_process=False, argv=torchrun_argv(topology, nproc, trainer_args))


def main(argv: Sequence[str] | None = None) -> int:
    """Plan from ``sys.argv`` and ``os.environ``; run the trainer here and return its exit
    status, or replace this process with ``torchrun`` (and so not return)."""
    try:
        launch = plan_launch(sys.argv[1:] if argv is None else argv, os.environ)
    except TrainerError as exc:
        print(f"tunefleet-cluster: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    if launch.in_process:
        from tunefleet_trainer.__main__ import main as train_main

        return train_main(launch.argv)
    print("tunefleet-cluster: " + " ".join(launch.argv[1:]), file=sys.stderr, flush=True)
    sys.stdout.flush()
    os.execv(launch.argv[0], launch.argv)  # noqa: S606 (the launcher becomes torchrun)
    return 1  # not reached: execv replaces this process or raises OSError


if __name__ == "__main__":
    sys.exit(main())

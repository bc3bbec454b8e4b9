"""Tests of the test layer's Slurm cluster and sshd (slurm.py): each pins down a behaviour of
the real servers that the HyperPod-Slurm provider's tests rely on.

One cluster and one sshd serve the whole module (starting them takes about a second).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.providers.hyperpod.slurm import (
    FINISHED_STATES,
    NEVER_STARTS_REASON,
    SlurmCluster,
    SshServer,
    free_port,
    node_states,
    run,
    show_job,
    start_slurm,
    start_sshd,
    submit,
    wait_for_job,
    why_slurm_unavailable,
    why_sshd_unavailable,
)

# Both ranks print one line: the provider's trainer tests read them back the same way.
RANK_LINE = "srun bash -c 'echo \"$SLURM_PROCID $SLURMD_NODENAME\"'"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    reason = why_slurm_unavailable()
    if reason is not None:
        pytest.skip(reason)
    with start_slurm(tmp_path_factory.mktemp("slurm"), nodes=2, gpus_per_node=2) as slurm:
        yield slurm


@pytest.fixture(scope="module")
def sshd(cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    reason = why_sshd_unavailable()
    if reason is not None:
        pytest.skip(reason)
    with start_sshd(tmp_path_factory.mktemp("sshd"), env=cluster.env) as server:
        yield server


def _batch(*lines: str) -> str:
    return "\n".join(["#!/bin/bash", "set -euo pipefail", *lines, ""])


def test_every_node_is_idle_on_loopback(cluster: SlurmCluster) -> None:
    assert node_states(cluster) == {"n1": "idle", "n2": "idle"}
    assert cluster.nodes == ["n1", "n2"]
    assert cluster.shared.is_dir()
    conf = cluster.conf.read_text()
    assert "NodeAddr=127.0.0.1" in conf
    assert "0.0.0.0" not in conf


def test_two_node_job_runs_one_task_per_node_and_keeps_its_tags(cluster: SlurmCluster) -> None:
    output = cluster.shared / "two-nodes-%j.out"
    comment = "tunefleet:run=r-1 tunefleet:spec=abc"
    job = submit(
        cluster,
        _batch(RANK_LINE),
        "--nodes=2",
        "--ntasks-per-node=1",
        "--job-name=tf-r-1",
        f"--comment={comment}",
        f"--output={output}",
    )
    fields = wait_for_job(cluster, job)
    assert (fields["JobState"], fields["ExitCode"]) == ("COMPLETED", "0:0")
    assert fields["NodeList"] == "n[1-2]"
    assert fields["JobName"] == "tf-r-1"
    # The tags survive the job's end, whole (spaces and '=' included).
    assert fields["Comment"] == comment
    assert (
        run(cluster, "squeue", "-h", "-t", "all", "-j", job, "-o", "%k").stdout.strip() == comment
    )
    lines = Path(str(output).replace("%j", job)).read_text().splitlines()
    assert sorted(lines) == ["0 n1", "1 n2"]


def test_jobs_get_the_fake_gpus_they_ask_for_and_no_more(cluster: SlurmCluster) -> None:
    output = cluster.shared / "gpus.out"
    job = submit(
        cluster,
        _batch("srun bash -c 'echo \"$SLURMD_NODENAME $SLURM_GPUS_ON_NODE\"'"),
        "--nodes=2",
        "--gpus-per-node=2",
        f"--output={output}",
    )
    assert wait_for_job(cluster, job)["JobState"] == "COMPLETED"
    assert sorted(output.read_text().splitlines()) == ["n1 2", "n2 2"]
    refused = run(cluster, "sbatch", "--gpus-per-node=3", input=_batch("true"), check=False)
    assert refused.returncode == 1
    assert "Requested node configuration is not available" in refused.stderr


def test_failed_job_reports_its_exit_code(cluster: SlurmCluster) -> None:
    fields = wait_for_job(cluster, submit(cluster, _batch("exit 3"), "--output=/dev/null"))
    assert (fields["JobState"], fields["ExitCode"], fields["Reason"]) == (
        "FAILED",
        "3:0",
        "NonZeroExitCode",
    )


def test_job_larger_than_the_cluster_pends_forever(cluster: SlurmCluster) -> None:
    # Accepted, never started: the provider must call this a failure instead of waiting.
    job = submit(cluster, _batch("true"), "--nodes=3", "--output=/dev/null")
    fields = wait_for_job(cluster, job, {"PENDING"}, reason=NEVER_STARTS_REASON, timeout=30)
    assert fields["NodeList"] == ""
    run(cluster, "scancel", job)
    assert wait_for_job(cluster, job)["JobState"] == "CANCELLED"


def test_scancel_stops_a_running_job(cluster: SlurmCluster) -> None:
    output = cluster.shared / "cancel.out"
    job = submit(
        cluster, _batch("echo started", "srun sleep 120"), "--nodes=2", f"--output={output}"
    )
    wait_for_job(cluster, job, {"RUNNING"})
    started = time.monotonic()
    run(cluster, "scancel", job)
    fields = wait_for_job(cluster, job, timeout=30)
    assert fields["JobState"] == "CANCELLED"
    assert time.monotonic() - started < 15
    assert fields["JobState"] in FINISHED_STATES
    assert show_job(cluster, job) is not None, "finished jobs stay visible (MinJobAge)"


def test_ssh_reaches_slurm_with_the_cluster_conf(cluster: SlurmCluster, sshd: SshServer) -> None:
    version = subprocess.run(
        sshd.ssh_argv("sbatch", "--version"), capture_output=True, text=True, timeout=60
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("slurm")
    # SLURM_CONF comes from sshd's SetEnv, not from the client's environment.
    conf = subprocess.run(
        sshd.ssh_argv("printenv", "SLURM_CONF"),
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert conf.stdout.strip() == str(cluster.conf)
    # What the provider does: the batch script on stdin of `ssh head sbatch --parsable`.
    output = cluster.shared / "over-ssh.out"
    submitted = subprocess.run(
        sshd.ssh_argv("sbatch", "--parsable", "--nodes=2", f"--output={output}"),
        input=_batch(RANK_LINE),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip()
    assert wait_for_job(cluster, job)["JobState"] == "COMPLETED"
    assert sorted(output.read_text().splitlines()) == ["0 n1", "1 n2"]


def _ssh(sshd: SshServer, *, key: Path, known_hosts: Path) -> subprocess.CompletedProcess[str]:
    options = {
        "BatchMode": "yes",
        "IdentitiesOnly": "yes",
        "IdentityAgent": "none",
        "StrictHostKeyChecking": "yes",
        "UserKnownHostsFile": str(known_hosts),
        "GlobalKnownHostsFile": "/dev/null",
    }
    return subprocess.run(
        [
            "ssh",
            *("-F", "/dev/null", "-p", str(sshd.port), "-i", str(key)),
            *(f"-o{name}={value}" for name, value in options.items()),
            f"{sshd.user}@{sshd.host}",
            "true",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _keygen(path: Path) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def test_ssh_refuses_a_key_it_does_not_know(sshd: SshServer, tmp_path: Path) -> None:
    assert _ssh(sshd, key=sshd.identity_file, known_hosts=sshd.known_hosts).returncode == 0
    refused = _ssh(sshd, key=_keygen(tmp_path / "stranger"), known_hosts=sshd.known_hosts)
    assert refused.returncode == 255
    assert "Permission denied (publickey)" in refused.stderr


def test_ssh_refuses_a_server_with_another_host_key(sshd: SshServer, tmp_path: Path) -> None:
    other = _keygen(tmp_path / "other-host").with_suffix(".pub").read_text().split()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[{sshd.host}]:{sshd.port} {other[0]} {other[1]}\n")
    refused = _ssh(sshd, key=sshd.identity_file, known_hosts=known_hosts)
    assert refused.returncode == 255
    assert "Host key verification failed" in refused.stderr


@pytest.mark.slow
def test_torchrun_under_srun_rendezvouses_across_both_nodes(cluster: SlurmCluster) -> None:
    # The provider's batch script: one torchrun agent per node, c10d rendezvous on the
    # first node's address (127.0.0.1 here: the node names do not resolve).
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip(f"{torchrun} is missing (torch is not installed in this environment)")
    worker = cluster.shared / "allreduce.py"
    worker.write_text(
        "import os\n"
        "import torch\n"
        "import torch.distributed as dist\n"
        'dist.init_process_group("gloo")\n'
        "total = torch.tensor([dist.get_rank() + 1.0])\n"
        "dist.all_reduce(total)\n"
        'print(dist.get_rank(), dist.get_world_size(), os.environ["SLURMD_NODENAME"],'
        " int(total.item()), flush=True)\n"
        "dist.destroy_process_group()\n"
    )
    port = free_port()
    output = cluster.shared / "torchrun.out"
    job = submit(
        cluster,
        _batch(
            "srun --nodes=2 --ntasks-per-node=1"
            f" {torchrun} --nnodes=2 --nproc-per-node=1 --rdzv-backend=c10d"
            f" --rdzv-endpoint=127.0.0.1:{port} --rdzv-id=$SLURM_JOB_ID {worker}"
        ),
        "--nodes=2",
        f"--output={output}",
    )
    fields = wait_for_job(cluster, job, timeout=300)
    assert fields["JobState"] == "COMPLETED", output.read_text()
    # rank, world size, node, sum of (rank + 1) over both ranks. The rendezvous, not Slurm,
    # numbers the ranks: either node may get rank 0.
    printed = [line.split() for line in output.read_text().splitlines() if line[:1].isdigit()]
    assert sorted((rank, world, total) for rank, world, _, total in printed) == [
        ("0", "2", "3"),
        ("1", "2", "3"),
    ]
    assert sorted(node for _, _, node, _ in printed) == ["n1", "n2"]

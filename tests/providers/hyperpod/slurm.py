"""A real Slurm cluster and a real OpenSSH server on 127.0.0.1, for the HyperPod-Slurm tests.

A HyperPod cluster with the Slurm orchestrator is a Slurm cluster whose head node the
provider reaches over SSH (``ssh <head> sbatch ...``), with a shared file system (FSx for
Lustre, ``/fsx``) mounted on every node. This module stands up the same thing on one host,
from Debian's packages (``bash scripts/test-servers.sh`` installs them):

* :func:`start_slurm`: ``slurmctld -D`` and one ``slurmd -D -N nK`` per node, children of
  the test process, with a ``slurm.conf`` of their own (``SLURM_CONF``): every node is a
  separate slurmd on 127.0.0.1 with its own port, so ``srun --nodes=2`` really launches one
  task per "node". The cluster's ``/fsx`` is a folder, :attr:`SlurmCluster.shared`.
* :func:`start_sshd`: ``/usr/sbin/sshd -D -e`` on 127.0.0.1 with its own host key, one
  throwaway client key, and ``SetEnv`` so that remote commands see the cluster's
  ``SLURM_CONF``; :attr:`SshServer.ssh_config` is the ``ssh -F`` file the provider is pointed
  at (host alias :data:`SSH_HOST_ALIAS`).

These are plain context managers, not pytest fixtures: the conftest decides their scope.
Both raise :class:`RuntimeError` when they cannot run; :func:`why_slurm_unavailable` and
:func:`why_sshd_unavailable` say beforehand (one line for ``pytest.skip``).

What Slurm 22.05 does here that tests rely on (measured, see shared/TESTING-TARGETS.md B):

* A job asking for more nodes than the partition has is ACCEPTED and stays PENDING forever
  with ``Reason=PartitionConfig`` (:data:`NEVER_STARTS_REASON`).
* Finished jobs stay visible to ``scontrol show job`` for ``MinJobAge`` (300 s);
  ``sacct`` does not work (no slurmdbd); ``jobcomp/filetxt`` appends one line per finished
  job to :attr:`SlurmCluster.jobcomp`.
* Node names (n1, n2 ...) do not resolve: a distributed job rendezvouses on 127.0.0.1.
  ``srun --nodes=2 --ntasks-per-node=1 torchrun --nnodes=2 --nproc-per-node=1
  --rdzv-backend=c10d --rdzv-endpoint=127.0.0.1:<port> --rdzv-id=$SLURM_JOB_ID train.py``
  works (both agents find 127.0.0.1 local; the second one to bind the store becomes a
  client); the rendezvous, not Slurm, numbers the ranks.
* ``--job-name`` and ``--comment`` are kept whole up to 1024 characters (spaces, ``=``,
  commas, non-ASCII included); longer ones are refused at submission ("Pathname of a file,
  directory or other parameter too long").
* A job needing more CPUs per node than a node has (``--ntasks-per-node``) also pends with
  ``PartitionConfig``; ``--mem`` / ``--cpus-per-task`` / GPUs beyond a node are refused at
  submission ("Requested node configuration is not available").
"""

from __future__ import annotations

import contextlib
import ctypes
import getpass
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

CLUSTER_NAME = "tftest"
PARTITION = "debug"
SSH_HOST_ALIAS = "hyperpod-head"
"""The ``Host`` of :attr:`SshServer.ssh_config`: ``ssh -F <ssh_config> hyperpod-head ...``."""

NEVER_STARTS_REASON = "PartitionConfig"
"""The pending reason Slurm 22.05 gives a job that can never run in its partition (more nodes
than it has); it never clears by itself."""

FINISHED_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "TIMEOUT",
    }
)
"""``JobState`` values of a job that has ended (``scontrol show job``)."""

INSTALL_HINT = "run `bash scripts/test-servers.sh` (as root) to install it"
SLURM_BINARIES = ("slurmctld", "slurmd", "sbatch", "srun", "scontrol", "sinfo", "squeue", "scancel")
SSHD = "/usr/sbin/sshd"
SSH_BINARIES = (SSHD, "ssh", "ssh-keygen")

_SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin"  # daemons live there, often off a user's PATH
_START_TIMEOUT_S = 60.0  # generous: the machine running the tests may be loaded
_STOP_GRACE_S = 10.0
_COMMAND_TIMEOUT_S = 60.0
_POLL_S = 0.05
_PORT_ATTEMPTS = 4  # another process may take a free port before the daemon binds it


class SlurmCommandError(subprocess.CalledProcessError):
    """A Slurm command exited non-zero; ``str()`` includes its stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr: {self.stderr}\nstdout: {self.stdout}"


def _which(name: str) -> str | None:
    if os.path.isabs(name):
        return name if os.access(name, os.X_OK) else None
    return shutil.which(name, path=f"{os.environ.get('PATH', os.defpath)}:{_SBIN_PATH}")


def _missing(names: Collection[str], what: str) -> str | None:
    missing = [name for name in names if _which(name) is None]
    if not missing:
        return None
    return f"{what} unavailable: {', '.join(missing)} not found; {INSTALL_HINT}"


def why_slurm_unavailable() -> str | None:
    """Why :func:`start_slurm` cannot run here (one line, for ``pytest.skip``), or None."""
    return _missing(SLURM_BINARIES, "Slurm")


def why_sshd_unavailable() -> str | None:
    """Why :func:`start_sshd` cannot run here (one line, for ``pytest.skip``), or None."""
    return _missing(SSH_BINARIES, "OpenSSH server")


# --------------------------------------------------------------------------------------------
# Slurm


@dataclass(frozen=True)
class SlurmCluster:
    """A running Slurm cluster; see :func:`start_slurm`."""

    conf: Path
    """Its ``slurm.conf``."""
    env: dict[str, str]
    """The variables that select this cluster (``SLURM_CONF``): add them to a subprocess's
    environment (:attr:`process_env` is ``os.environ`` plus these), or give them to
    :func:`start_sshd` so remote commands get them."""
    nodes: list[str]
    """Node names, ``n1`` .. ``nN``; they do not resolve, every node is 127.0.0.1."""
    partition: str
    """The only partition, the default one (``debug``), holding every node."""
    cpus_per_node: int
    """``CPUs`` of each node (any number: the node lines win over the hardware)."""
    gpus_per_node: int
    """Fake GPUs (gres ``gpu``) of each node: jobs may ask for up to this many per node."""
    memory_mb: int
    """``RealMemory`` of each node (not enforced: ``CR_Core``, no memory limits)."""
    shared: Path
    """The cluster's shared file system (``/fsx`` on HyperPod): a folder every node sees."""
    log_dir: Path
    """Daemon logs: ``slurmctld.log``, ``slurmd-<node>.log``, and their stdout/stderr."""
    workdir: Path
    name: str = CLUSTER_NAME

    @property
    def jobcomp(self) -> Path:
        """``jobcomp/filetxt``'s file: one line per finished job (``JobId=... JobState=...``)."""
        return self.log_dir / "jobcomp.txt"

    @property
    def process_env(self) -> dict[str, str]:
        """``os.environ`` with :attr:`env` on top: the environment for a subprocess."""
        return {**os.environ, **self.env}


def run(
    cluster: SlurmCluster,
    *argv: str,
    check: bool = True,
    input: str | None = None,
    timeout: float = _COMMAND_TIMEOUT_S,
) -> subprocess.CompletedProcess[str]:
    """Run a Slurm command (``run(cluster, "squeue", "-h")``) against the cluster; text
    output captured. Raises :class:`SlurmCommandError` on a non-zero exit when ``check``."""
    result = subprocess.run(
        argv,
        env=cluster.process_env,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise SlurmCommandError(result.returncode, argv, result.stdout, result.stderr)
    return result


def submit(cluster: SlurmCluster, script: str, *options: str) -> str:
    """``sbatch --parsable <options>`` of a batch script given as text; returns the job id."""
    result = run(cluster, "sbatch", "--parsable", *options, input=script)
    return result.stdout.strip().split(";", 1)[0]


# `scontrol show job -o` prints `Key=value` pairs separated by spaces; a value may itself hold
# spaces (Comment, Command with arguments), so split only where a space is followed by
# something shaped like one of Slurm's keys, which all start with a capital (JobId,
# MCS_label, AllocNode:Sid, CPUs/Task ...).
_FIELD = re.compile(r" (?=[A-Z][A-Za-z0-9_:/]*=)")


def parse_fields(line: str) -> dict[str, str]:
    """The ``Key=value`` pairs of one line of ``scontrol show ... -o``, values stripped.

    A value holding `` Word=`` (a space, then a capitalised word and ``=``) is cut there; for
    a free-text field (``Comment``) exactly as stored, use ``squeue --json`` or
    ``squeue -h -o %k -j <id>``.
    """
    fields: dict[str, str] = {}
    for item in _FIELD.split(line.strip()):
        key, _, value = item.partition("=")
        fields[key] = value.strip()
    return fields


def show_job(cluster: SlurmCluster, job_id: str) -> dict[str, str] | None:
    """``scontrol show job -o <id>`` as a dict (``JobState``, ``Reason``, ``ExitCode``,
    ``NodeList``, ``Comment`` ...), or None once Slurm has forgotten the job."""
    result = run(cluster, "scontrol", "show", "job", "-o", job_id, check=False)
    if result.returncode != 0:
        if "Invalid job id" in result.stderr:
            return None
        raise SlurmCommandError(result.returncode, result.args, result.stdout, result.stderr)
    return parse_fields(result.stdout.splitlines()[0])


def wait_for_job(
    cluster: SlurmCluster,
    job_id: str,
    states: Collection[str] = FINISHED_STATES,
    *,
    reason: str | None = None,
    timeout: float = _START_TIMEOUT_S,
) -> dict[str, str]:
    """Poll ``scontrol show job`` until the job's ``JobState`` is one of ``states`` (and, if
    given, its ``Reason`` is ``reason``); returns its fields. TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    fields: dict[str, str] | None = None
    while time.monotonic() < deadline:
        fields = show_job(cluster, job_id)
        if (
            fields is not None
            and fields.get("JobState") in states
            and (reason is None or fields.get("Reason") == reason)
        ):
            return fields
        time.sleep(_POLL_S)
    raise TimeoutError(f"job {job_id} not in {sorted(states)} after {timeout:.0f} s: {fields}")


def node_states(cluster: SlurmCluster) -> dict[str, str]:
    """Each node's state as ``sinfo`` prints it (``idle``, ``alloc``, ``mix``, ``down*`` ...)."""
    result = run(cluster, "sinfo", "--noheader", "--Node", "--format=%N %t")
    return dict(line.split(None, 1) for line in result.stdout.splitlines() if line.strip())


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the parent dies, however it dies (Linux)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _free_ports(count: int) -> list[int]:
    """``count`` distinct ports the OS calls free on 127.0.0.1 (all held until all are picked,
    so they differ)."""
    probes: list[socket.socket] = []
    try:
        for _ in range(count):
            probe = socket.socket()
            probes.append(probe)
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def free_port() -> int:
    """A TCP port the OS calls free on 127.0.0.1 (e.g. a rendezvous port for a job)."""
    return _free_ports(1)[0]


def _spawn(argv: list[str], log: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env),
            preexec_fn=_die_with_parent,
        )


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM all, wait up to the grace time, SIGKILL the rest, reap every one."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + _STOP_GRACE_S
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _kill_tagged(variable: str, value: str) -> list[int]:
    """SIGKILL every process whose environment has ``variable=value``, but this one and its
    ancestors; returns their pids.

    Jobs outlive the daemons that ran them: slurmd starts each step's slurmstepd detached
    (reparented to init), and sshd's sessions are not its direct children. Every such process
    inherited the cluster's (or the sshd's) unique tag, which is how they are found.
    """
    needle = f"{variable}={value}".encode()
    spared = {0, 1}
    pid = os.getpid()
    while pid > 1 and pid not in spared:
        spared.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    killed: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in spared:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue  # gone, or another user's
        if needle in environ.split(b"\0"):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
    return killed


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} not written)"


def _slurm_conf(
    workdir: Path,
    *,
    nodes: list[str],
    ctld_port: int,
    node_ports: list[int],
    cpus_per_node: int,
    memory_mb: int,
    gpus_per_node: int,
    auth: str,
) -> str:
    user = getpass.getuser()
    host = socket.gethostname()
    lines = [
        f"ClusterName={CLUSTER_NAME}",
        "SlurmctldHost=localhost(127.0.0.1)",
        f"SlurmctldPort={ctld_port}",
        # As root (the measured case) both are root. Otherwise the daemons run as the test's
        # user, who can then run jobs only as themself.
        f"SlurmUser={user}",
        f"SlurmdUser={user}",
        # auth/none needs no munged; it trusts any uid a client claims, fine on loopback.
        f"AuthType=auth/{auth}",
        f"CredType=cred/{auth}",
        *([f"AuthInfo=socket={workdir / 'munge' / 'munge.sock'}"] if auth == "munge" else []),
        f"StateSaveLocation={workdir / 'state'}",
        # One slurmd per node on this host: %n (the node name) keeps their files apart.
        f"SlurmdSpoolDir={workdir / 'spool'}/%n",
        f"SlurmctldPidFile={workdir / 'run' / 'slurmctld.pid'}",
        f"SlurmdPidFile={workdir / 'run'}/slurmd-%n.pid",
        f"SlurmctldLogFile={workdir / 'log' / 'slurmctld.log'}",
        f"SlurmdLogFile={workdir / 'log'}/slurmd-%n.log",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/filetxt",
        f"JobCompLoc={workdir / 'log' / 'jobcomp.txt'}",
        "SchedulerType=sched/backfill",
        # Start batch jobs at once (default: up to 3 s later, to batch up submissions).
        "SchedulerParameters=batch_sched_delay=0",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        # Trust the node lines, not the hardware: N nodes of C CPUs on a 2-core machine.
        "SlurmdParameters=config_overrides",
        "ReturnToService=2",
        "MpiDefault=none",
        *(["GresTypes=gpu"] if gpus_per_node else []),
        "MinJobAge=300",  # finished jobs stay visible to scontrol for 5 minutes
        "KillWait=2",  # SIGTERM -> SIGKILL on scancel / time limit
        "InactiveLimit=0",
        "SlurmdTimeout=300",  # a loaded machine must not mark a slow slurmd down
        "MessageTimeout=30",
        *(
            f"NodeName={node} NodeHostname={host} NodeAddr=127.0.0.1 Port={port}"
            f" CPUs={cpus_per_node} RealMemory={memory_mb} State=UNKNOWN"
            + (f" Gres=gpu:{gpus_per_node}" if gpus_per_node else "")
            for node, port in zip(nodes, node_ports, strict=True)
        ),
        f"PartitionName={PARTITION} Nodes={','.join(nodes)} Default=YES MaxTime=INFINITE State=UP",
    ]
    return "\n".join(lines) + "\n"


def _write_gres_conf(workdir: Path, nodes: list[str], gpus_per_node: int) -> None:
    """gres.conf (Slurm reads it beside slurm.conf): ``gpus_per_node`` fake GPUs per node.

    A gpu GRES needs one device file per GPU (slurmd reports 0 GPUs from a ``Count`` alone,
    and the node goes INVAL); empty regular files stand in for /dev/nvidiaK.
    """
    lines = []
    if gpus_per_node:
        devices = workdir / "dev"
        for node in nodes:
            (devices / node).mkdir(parents=True, exist_ok=True)
            for index in range(gpus_per_node):
                (devices / node / f"nvidia{index}").touch()
            lines.append(
                f"NodeName={node} Name=gpu File={devices / node}/nvidia[0-{gpus_per_node - 1}]"
            )
    (workdir / "gres.conf").write_text("".join(f"{line}\n" for line in lines))


def _addr_in_use(log: Path) -> bool:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return False
    return "Address already in use" in text


@contextlib.contextmanager
def start_slurm(
    workdir: Path,
    *,
    nodes: int = 2,
    cpus_per_node: int = 1,
    memory_mb: int = 1024,
    gpus_per_node: int = 0,
    auth: str = "none",
    timeout: float = _START_TIMEOUT_S,
) -> Iterator[SlurmCluster]:
    """Run a Slurm cluster on 127.0.0.1 until the block ends.

    Writes ``workdir/slurm.conf`` (ports picked free), starts ``slurmctld -D -c`` and
    ``slurmd -D -N nK`` for ``nodes`` nodes as children, and yields once every node is
    ``idle`` (0.1-1.2 s measured). Each node has ``cpus_per_node`` CPUs, ``memory_mb`` of
    memory and ``gpus_per_node`` fake GPUs (gres ``gpu``; 0: none, and a job asking for a GPU
    is refused at submission, "Invalid generic resource (gres) specification"). ``auth`` is
    ``"none"`` or ``"munge"`` (then a ``munged`` of its own is started too). On exit: cancels
    every job, stops the daemons (SIGTERM, then SIGKILL after 10 s), and kills what the jobs
    left running (see :func:`_kill_tagged`).

    Timing: Slurm schedules batch jobs once a second, and the first time only about 3 s
    after slurmctld started: a job submitted at once starts ~3 s later, later ones ~1 s.

    Raises RuntimeError (with the daemon's log) when the cluster does not come up, and
    TimeoutError when it is still not idle after ``timeout`` seconds.
    """
    reason = why_slurm_unavailable()
    if reason is not None:
        raise RuntimeError(reason)
    if auth not in {"none", "munge"}:
        raise ValueError(f"auth must be 'none' or 'munge', not {auth!r}")
    workdir = workdir.resolve()
    log_dir = workdir / "log"
    for folder in ("state", "spool", "run", "log", "fsx"):
        (workdir / folder).mkdir(parents=True, exist_ok=True)
    names = [f"n{index}" for index in range(1, nodes + 1)]
    conf = workdir / "slurm.conf"
    _write_gres_conf(workdir, names, gpus_per_node)
    cluster = SlurmCluster(
        conf=conf,
        env={"SLURM_CONF": str(conf)},
        nodes=names,
        partition=PARTITION,
        cpus_per_node=cpus_per_node,
        gpus_per_node=gpus_per_node,
        memory_mb=memory_mb,
        shared=workdir / "fsx",
        log_dir=log_dir,
        workdir=workdir,
    )
    daemon_env = {**cluster.process_env, "PATH": f"{os.environ.get('PATH', '')}:{_SBIN_PATH}"}
    slurmctld, slurmd = _which("slurmctld"), _which("slurmd")
    assert slurmctld is not None and slurmd is not None
    processes: list[subprocess.Popen[bytes]] = []
    ctld: subprocess.Popen[bytes] | None = None
    try:
        if auth == "munge":
            processes.append(_start_munged(workdir / "munge", daemon_env))
        for attempt in range(_PORT_ATTEMPTS):
            ports = _free_ports(1 + nodes)
            conf.write_text(
                _slurm_conf(
                    workdir,
                    nodes=names,
                    ctld_port=ports[0],
                    node_ports=ports[1:],
                    cpus_per_node=cpus_per_node,
                    memory_mb=memory_mb,
                    gpus_per_node=gpus_per_node,
                    auth=auth,
                )
            )
            daemons = [
                # -c: forget jobs an earlier run in the same workdir left in its state.
                _spawn([slurmctld, "-D", "-c"], log_dir / "slurmctld.out", daemon_env),
                *(
                    _spawn([slurmd, "-D", "-N", node], log_dir / f"slurmd-{node}.out", daemon_env)
                    for node in names
                ),
            ]
            processes.extend(daemons)
            ctld = daemons[0]
            if _wait_idle(cluster, daemons, time.monotonic() + timeout):
                break
            _stop(daemons)
            logs = [
                log_dir / f"{daemon}.{kind}"
                for daemon in ("slurmctld", *(f"slurmd-{node}" for node in names))
                for kind in ("log", "out")
                if (log_dir / f"{daemon}.{kind}").exists()
            ]
            if attempt + 1 == _PORT_ATTEMPTS or not any(_addr_in_use(log) for log in logs):
                raise RuntimeError(
                    "Slurm did not start:\n" + "\n".join(f"--- {log}\n{_tail(log)}" for log in logs)
                )
            for log in logs:  # the next attempt must not find this one's error
                log.rename(log.with_name(f"{log.name}.{attempt}"))
        yield cluster
    finally:
        if ctld is not None and ctld.poll() is None:
            with contextlib.suppress(Exception):
                _cancel_all(cluster)
        _stop(processes)
        _kill_tagged("SLURM_CONF", str(conf))


def _wait_idle(
    cluster: SlurmCluster, daemons: list[subprocess.Popen[bytes]], deadline: float
) -> bool:
    """True once every node is idle; False if a daemon exits first."""
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        if any(process.poll() is not None for process in daemons):
            return False
        try:
            result = run(
                cluster, "sinfo", "--noheader", "--Node", "--format=%N %t", check=False, timeout=5
            )
        except subprocess.TimeoutExpired:
            continue  # e.g. another server took slurmctld's port first: poll() will tell
        if result.returncode == 0:
            states = dict(line.split(None, 1) for line in result.stdout.splitlines() if line)
            if set(states) == set(cluster.nodes) and all(s == "idle" for s in states.values()):
                return True
            if any(state.startswith(("inval", "drain", "drng")) for state in states.values()):
                # The controller refused a node's registration (configuration differs from
                # what its slurmd reports): it stays so, waiting longer is pointless.
                reasons = run(cluster, "sinfo", "--list-reasons", check=False, timeout=10)
                raise RuntimeError(f"Slurm nodes unusable: {states}\n{reasons.stdout}")
        time.sleep(_POLL_S)
    raise TimeoutError(f"Slurm nodes not idle after the start timeout: {states}")


def _cancel_all(cluster: SlurmCluster) -> None:
    """Cancel every job and wait (a few seconds at most) until none is left, so that job
    steps end through Slurm rather than by SIGKILL."""
    run(cluster, "scancel", f"--partition={cluster.partition}", check=False, timeout=10)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        result = run(cluster, "squeue", "--noheader", "--format=%i", check=False, timeout=10)
        if result.returncode != 0 or not result.stdout.strip():
            return
        time.sleep(_POLL_S)


def _start_munged(folder: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    munged = _which("munged")
    if munged is None:
        raise RuntimeError(f"munged not found; {INSTALL_HINT}")
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    key = folder / "munge.key"
    if not key.exists():
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
    socket_path = folder / "munge.sock"
    process = _spawn(
        [
            munged,
            "--foreground",
            "--force",
            f"--socket={socket_path}",
            f"--key-file={key}",
            f"--log-file={folder / 'munged.log'}",
            f"--pid-file={folder / 'munged.pid'}",
            f"--seed-file={folder / 'munged.seed'}",
        ],
        folder / "munged.out",
        env,
    )
    deadline = time.monotonic() + _START_TIMEOUT_S
    while not socket_path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            _stop([process])
            raise RuntimeError(f"munged did not start:\n{_tail(folder / 'munged.log')}")
        time.sleep(_POLL_S)
    return process


# --------------------------------------------------------------------------------------------
# sshd


@dataclass(frozen=True)
class SshServer:
    """A running sshd that lets one throwaway key in as :attr:`user`; see :func:`start_sshd`."""

    host: str
    port: int
    user: str
    identity_file: Path
    """The client's private key (ed25519, no passphrase)."""
    known_hosts: Path
    """The server's host key for ``[127.0.0.1]:<port>``."""
    ssh_config: Path
    """An ``ssh -F`` file defining the host :data:`SSH_HOST_ALIAS` (host, port, user, key,
    known_hosts, ``StrictHostKeyChecking yes``, ``BatchMode yes``)."""
    host_alias: str
    log: Path
    """sshd's log (``-e``: everything it says, at LogLevel VERBOSE)."""

    def ssh_argv(self, *command: str) -> list[str]:
        """``ssh -F <ssh_config> hyperpod-head <command...>`` (the remote side joins the
        words with spaces and runs them with the user's shell)."""
        return ["ssh", "-F", str(self.ssh_config), self.host_alias, *command]


def _keygen(path: Path, comment: str) -> None:
    if not path.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            check=True,
            capture_output=True,
            timeout=_COMMAND_TIMEOUT_S,
        )


def _sshd_config(workdir: Path, port: int, user: str, env: Mapping[str, str]) -> str:
    for name, value in env.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or any(c in value for c in '"\n'):
            raise ValueError(f"cannot pass {name}={value!r} through sshd's SetEnv")
    set_env = " ".join(f'"{name}={value}"' for name, value in env.items())
    return "\n".join(
        [
            f"Port {port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {workdir / 'ssh_host_ed25519_key'}",
            f"PidFile {workdir / 'sshd.pid'}",
            f"AuthorizedKeysFile {workdir / 'authorized_keys'}",
            f"AllowUsers {user}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            # The keys live under the test's tmp folder, whose parents sshd would refuse.
            "StrictModes no",
            "UseDNS no",
            "PrintMotd no",
            "PermitUserEnvironment no",
            # Tests may open many connections at once; the default (10:30:100) drops some.
            "MaxStartups 100",
            "MaxSessions 50",
            "LogLevel VERBOSE",
            "Subsystem sftp internal-sftp",  # scp speaks sftp since OpenSSH 9
            # OpenSSH >= 8.7; the tag lets teardown find what the sessions left running.
            f"SetEnv {set_env}",
            "",
        ]
    )


def _ssh_client_config(server: str, port: int, user: str, key: Path, known_hosts: Path) -> str:
    return "\n".join(
        [
            f"Host {SSH_HOST_ALIAS}",
            f"    HostName {server}",
            f"    Port {port}",
            f"    User {user}",
            f"    IdentityFile {key}",
            "    IdentitiesOnly yes",
            "    IdentityAgent none",
            f"    UserKnownHostsFile {known_hosts}",
            "    GlobalKnownHostsFile /dev/null",
            "    StrictHostKeyChecking yes",
            "    BatchMode yes",
            "    ConnectTimeout 30",
            "    LogLevel ERROR",
            "",
        ]
    )


def _wait_banner(process: subprocess.Popen[bytes], port: int, deadline: float) -> bool:
    """True once the server sends its SSH banner; False if it exits first."""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
                if connection.recv(64).startswith(b"SSH-2.0-"):
                    return True
        except OSError:
            pass
        time.sleep(_POLL_S)
    raise TimeoutError(f"sshd did not answer on 127.0.0.1:{port} in {_START_TIMEOUT_S:.0f} s")


@contextlib.contextmanager
def start_sshd(
    workdir: Path, *, env: Mapping[str, str], timeout: float = _START_TIMEOUT_S
) -> Iterator[SshServer]:
    """Run OpenSSH's sshd on 127.0.0.1 (a free port) until the block ends.

    Generates a host key and a client key pair in ``workdir`` and authorises the client key
    for the current user (root here: ``PermitRootLogin prohibit-password``; no passwords, no
    PAM). Every session gets ``env`` (e.g. :attr:`SlurmCluster.env`) through ``SetEnv``.
    Yields once the server sends its banner (well under a second). On exit: SIGTERM, wait,
    SIGKILL, and kills whatever remote commands are still running.

    Raises RuntimeError (with sshd's log) if it does not start.
    """
    reason = why_sshd_unavailable()
    if reason is not None:
        raise RuntimeError(reason)
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    user = getpass.getuser()
    host_key, client_key = workdir / "ssh_host_ed25519_key", workdir / "id_ed25519"
    _keygen(host_key, "tunefleet-test-host")
    _keygen(client_key, "tunefleet-test-client")
    authorized = workdir / "authorized_keys"
    authorized.write_text(client_key.with_suffix(".pub").read_text())
    authorized.chmod(0o600)
    tag = {"TUNEFLEET_TEST_SSHD": str(workdir)}
    config, log = workdir / "sshd_config", workdir / "sshd.log"
    if os.geteuid() == 0:
        # sshd refuses to start without its privilege separation directory (Debian makes it
        # in the service's start script, which nothing runs here).
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    process: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + timeout
        for _attempt in range(_PORT_ATTEMPTS):
            port = _free_ports(1)[0]
            config.write_text(_sshd_config(workdir, port, user, {**env, **tag}))
            # sshd insists on being started by its absolute path (it re-executes itself).
            process = _spawn([SSHD, "-D", "-e", "-f", str(config)], log, os.environ)
            if _wait_banner(process, port, deadline):
                break
            _stop([process])
        else:
            raise RuntimeError(f"sshd did not start:\n{_tail(log)}")
        host_public = host_key.with_suffix(".pub").read_text().split()
        known_hosts = workdir / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{port} {host_public[0]} {host_public[1]}\n")
        ssh_config = workdir / "ssh_config"
        ssh_config.write_text(_ssh_client_config("127.0.0.1", port, user, client_key, known_hosts))
        yield SshServer(
            host="127.0.0.1",
            port=port,
            user=user,
            identity_file=client_key,
            known_hosts=known_hosts,
            ssh_config=ssh_config,
            host_alias=SSH_HOST_ALIAS,
            log=log,
        )
    finally:
        if process is not None:
            _stop([process])
        _kill_tagged(*next(iter(tag.items())))

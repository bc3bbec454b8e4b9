"""The HyperPod provider on a Slurm-orchestrated cluster: a real Slurm (two nodes on this
host) reached through a real sshd standing for the head node, the real trainer trained for
real on both nodes with torchrun, moto for SageMaker and S3 (the bucket linked to the
cluster's shared folder as FSx for Lustre links it)."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import pytest
from pydantic import TypeAdapter
from tests.providers.hyperpod.conftest import BUCKET, Aws, slurm_account, slurm_spec
from tests.providers.hyperpod.slurm import (
    SlurmCluster,
    SshServer,
    show_job,
    start_slurm,
    why_slurm_unavailable,
)
from tests.providers.hyperpod.slurm import run as run_slurm

from tunefleet.events import Event, JobState, MetricEvent, StatusEvent
from tunefleet.planning import plan_run
from tunefleet.plugins import discover
from tunefleet.provider import DatasetRef, JobRef, Plan
from tunefleet.spec import RunSpec, parse_spec
from tunefleet.state import open_journal
from tunefleet.testing.runs import CliRunner
from tunefleet_sagemaker.hyperpod.provider import HyperPodProvider

EVENT: TypeAdapter[Event] = TypeAdapter(Event)


def _planned(text: str) -> tuple[RunSpec, Plan]:
    spec = parse_spec(text)
    plan = plan_run(spec, target=spec.targets[0].key, registry=discover()).plans[0]
    return spec, plan


def _staged(provider: HyperPodProvider, spec: RunSpec, plan: Plan) -> dict[str, DatasetRef]:
    import hashlib

    staged = {}
    for role in ("train", "validation"):
        location = getattr(spec.dataset, role)
        path = Path(spec.resolve_location(location))
        staged[role] = provider.stage(
            plan, role, path, hashlib.sha256(path.read_bytes()).hexdigest()
        )
    return staged


def _wait(provider: HyperPodProvider, job: JobRef, timeout: float = 240) -> JobState:
    deadline = time.monotonic() + timeout
    while True:
        state = provider.status(job).state
        if state.terminal:
            return state
        assert time.monotonic() < deadline, f"job {job.id} still {state} after {timeout} s"
        time.sleep(0.5)


@pytest.fixture
def cli(tmp_path: Path) -> CliRunner:
    return CliRunner(tmp_path, f"sqlite:///{tmp_path / 'journal.db'}", timeout=300)


def journal_events(cli: CliRunner) -> list[Event]:
    with open_journal(cli.journal_url) as journal:
        (run,) = journal.runs()
        (target,) = journal.targets(run.id)
        return [EVENT.validate_python(e.payload) for e in journal.events(target.id)]


@pytest.mark.slow
def test_a_whole_run_trains_on_two_nodes_through_the_head_node(
    slurm_aws: Aws, slurm: SlurmCluster, sshd: SshServer, cli: CliRunner, tmp_path: Path
) -> None:
    """``tunefleet run`` over ssh to the head node: the script as planned, sbatch, srun
    starting torchrun on both nodes, the trainer training the tiny model for real; the
    falling loss in the journal, the model on the shared storage, the tags in the job's
    comment, and the job found again after the run."""
    spec = tmp_path / "slurm.yaml"
    spec.write_text(slurm_spec(slurm, ssh=sshd, placement={"tags": {"team": "ml"}}))
    planned = cli("plan", str(spec), "--json")
    assert planned.returncode == 0, planned.stderr
    (plan,) = json.loads(planned.stdout)["plans"]
    (sbatch,) = [r for r in plan["requests"] if r["operation"] == "sbatch"]
    assert "#SBATCH --nodes=2" in sbatch["body"]["script"]

    ran = cli("run", str(spec))
    assert ran.returncode == 0, ran.stderr

    with open_journal(cli.journal_url) as journal:
        (run,) = journal.runs()
        (target,) = journal.targets(run.id)
        (resource,) = [r for r in journal.resources(target.id) if r.kind == "job"]
        kinds = {a.kind: a.uri for a in journal.artifacts(target.id)}
    job = JobRef.model_validate(resource.detail["job"])
    folder = Path(job.scope["job_dir"])
    script = (folder / "job.sbatch").read_text()
    run_key = job.run_key
    assert script == sbatch["body"]["script"].replace("${run_key}", run_key).replace(
        "${train_path}", script.split("for dataset in '", 1)[1].split(":", 1)[0]
    ).replace(
        "${train_size}", script.split("for dataset in '", 1)[1].split(":", 1)[1].split("'", 1)[0]
    ).replace("${validation_path}", _quoted(script, 1)[0]).replace(
        "${validation_size}", _quoted(script, 1)[1]
    ), "the script submitted is the one planned, datasets filled in"
    events = journal_events(cli)
    losses = [e.train_loss for e in events if isinstance(e, MetricEvent) and e.train_loss]
    assert len(losses) >= 6 and min(losses[-3:]) < max(losses[:3]), losses
    assert [e.state for e in events if isinstance(e, StatusEvent)][-1] == JobState.SUCCEEDED
    assert (folder / "model" / "manifest.json").is_file()
    assert kinds["adapter"] == f"s3://{BUCKET}/tunefleet/jobs/support-bot-{run_key}/model/"
    record = json.loads((folder / "slurm.json").read_text())
    assert record["job_id"] == job.id and record["exit_code"] == 0
    shown = show_job(slurm, job.id)
    assert shown is not None and "team=ml" in shown["Comment"]
    assert f"tunefleet.dev/run-key={run_key}" in shown["Comment"]
    # Run again elsewhere (another journal): the job of this run key is found, not remade.
    again = CliRunner(tmp_path / "elsewhere", f"sqlite:///{tmp_path / 'elsewhere.db'}", timeout=300)
    assert again("run", str(spec)).returncode == 0
    listed = run_slurm(slurm, "squeue", "--noheader", "--states=all", "--format=%i %j").stdout
    assert [line.split()[0] for line in listed.splitlines() if run_key in line] == [job.id]


def _quoted(script: str, index: int) -> tuple[str, str]:
    """The ``path:size`` of the ``index``-th dataset the script waits for."""
    pair = script.split("for dataset in ", 1)[1].split(";", 1)[0].split()[index].strip("'")
    path, size = pair.rsplit(":", 1)
    return path, size


def test_more_nodes_than_the_cluster_has_are_refused_at_plan(
    slurm_aws: Aws, slurm: SlurmCluster, cli: CliRunner, tmp_path: Path
) -> None:
    """HyperPod says the compute group has two running nodes: a job asking for three fails
    at plan, naming the group and its nodes, and nothing reaches Slurm."""
    text = json.loads(slurm_spec(slurm))
    text["targets"][0]["compute"]["instance_count"] = 3
    spec = tmp_path / "big.yaml"
    spec.write_text(json.dumps(text))
    planned = cli("plan", str(spec))
    assert planned.returncode == 1, planned.stderr
    assert "compute.instance_count" in planned.stdout + planned.stderr
    assert "instance group workers" in planned.stdout + planned.stderr

    def jobs() -> list[str]:
        listed = run_slurm(slurm, "squeue", "--noheader", "--states=all", "--format=%i")
        return listed.stdout.split()

    before = jobs()
    ran = cli("run", str(spec))
    assert ran.returncode == 1, ran.stderr
    assert jobs() == before, "nothing was submitted"


def test_a_job_that_can_never_start_fails_and_leaves_the_queue(
    slurm_aws: Aws, slurm: SlurmCluster
) -> None:
    """HyperPod lists three compute nodes, Slurm's partition has two: Slurm accepts the job
    and would keep it pending forever (PartitionConfig); tunefleet reports it failed, with
    the reason, and cancels it."""
    slurm_aws.hyperpod_cluster(
        "tfslurm3",
        groups={"controller": ("ml.c5.xlarge", 1), "workers": ("ml.c5.xlarge", 3)},
        orchestrator="slurm",
    )
    text = json.loads(slurm_spec(slurm, options={"cluster": "tfslurm3"}))
    text["targets"][0]["compute"]["instance_count"] = 3
    provider = HyperPodProvider()
    spec, plan = _planned(json.dumps(text))
    assert plan.ok, plan.unmet
    job = provider.submit(plan, _staged(provider, spec, plan), "b" * 32)
    deadline = time.monotonic() + 30
    while (status := provider.status(job)).state != JobState.FAILED:
        assert time.monotonic() < deadline, status
        time.sleep(0.5)
    assert "PartitionConfig" in (status.message or "")
    deadline = time.monotonic() + 15
    while (shown := show_job(slurm, job.id)) is not None and shown["JobState"] != "CANCELLED":
        assert time.monotonic() < deadline, shown
        time.sleep(0.3)


def test_cancel_stops_a_job_waiting_for_its_data(slurm: SlurmCluster, slurm_aws: Aws) -> None:
    """A job whose datasets are not on the shared storage yet (FSx imports a linked
    bucket's new objects asynchronously) waits for them; cancel ends it (scancel) and the
    job reads as cancelled."""
    provider = HyperPodProvider()
    spec, plan = _planned(slurm_spec(slurm))
    staged = _staged(provider, spec, plan)
    for dataset in staged.values():  # not imported yet
        (slurm.shared / dataset.uri.split("/", 3)[3]).unlink()
    job = provider.submit(plan, staged, "c" * 32)
    deadline = time.monotonic() + 30
    while provider.status(job).state != JobState.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    provider.cancel(job)
    deadline = time.monotonic() + 30
    while (state := provider.status(job).state) != JobState.CANCELLED:
        assert time.monotonic() < deadline, state
        time.sleep(0.3)


@pytest.mark.slow
def test_a_finished_job_is_found_after_slurm_forgot_it(
    moto_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without accounting, Slurm forgets a finished job (MinJobAge; here: its controller
    restarted clean, ``slurmctld -c``); the job's record on the shared storage still finds
    it and tells how it ended, so a resumed run neither loses nor repeats it."""
    reason = why_slurm_unavailable()
    if reason is not None:
        pytest.skip(reason)
    workdir = tmp_path / "cluster"
    slurm_account(moto_server, monkeypatch, tmp_path, workdir / "fsx", nodes=1)
    provider = HyperPodProvider()
    with start_slurm(workdir, nodes=1) as slurm:
        monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
        text = json.loads(slurm_spec(slurm))
        text["targets"][0]["compute"]["instance_count"] = 1
        text["hyperparameters"]["epochs"] = 1
        spec, plan = _planned(json.dumps(text))
        assert plan.ok, plan.unmet
        job = provider.submit(plan, _staged(provider, spec, plan), "d" * 32)
        assert _wait(provider, job) == JobState.SUCCEEDED
    with start_slurm(workdir, nodes=1) as restarted:
        assert show_job(restarted, job.id) is None, "Slurm has forgotten the job"
        found = provider.find(plan, "d" * 32)
        assert found is not None and found.id == job.id
        status = provider.status(found)
        assert status.state == JobState.SUCCEEDED and status.billable_seconds is not None
        assert provider.find(plan, "e" * 32) is None


def test_the_trainer_can_come_from_an_image_through_pyxis(
    slurm_aws: Aws, slurm: SlurmCluster
) -> None:
    """With a container image (pyxis/enroot, installed by HyperPod's default lifecycle
    scripts) srun starts the trainer in it with the shared storage mounted where the
    script expects it; EKS's options are refused on a Slurm cluster, and so is a spec
    that says where the trainer comes from neither way."""
    image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com#tunefleet-trainer:0.1.0"
    _, plan = _planned(slurm_spec(slurm, options={"python": None, "container_image": image}))
    assert plan.ok, plan.unmet
    script = plan.request("sbatch").body["script"]
    srun = next(line for line in script.splitlines() if line.startswith("srun "))
    assert shlex.split(srun)[:3] == [
        "srun",
        f"--container-image={image}",
        f"--container-mounts={slurm.shared}:{slurm.shared}",
    ]
    assert " python3 -m torch.distributed.run " in script
    _, plan = _planned(
        slurm_spec(slurm, options={"python": None, "training_image": "r.example/t:1"})
    )
    assert {u.requirement for u in plan.unmet} == {"options.python", "options.training_image"}

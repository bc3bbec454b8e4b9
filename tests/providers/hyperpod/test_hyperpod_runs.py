"""Whole HyperPod runs on an EKS-orchestrated cluster: the ``tunefleet`` CLI in a
subprocess against moto and a real kube-apiserver, the operator played in the background
(:mod:`.autoplay`). What the user relies on: the job created is the one ``tunefleet plan``
showed and the CRD's schema takes it whole, the run watches it to its end with a falling
loss, cancel deletes it, a second submit of a run key adopts its job (never a second one,
never someone else's), and the run-level conformance scenarios (reattach, kills around and
inside stage and submit)."""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft4Validator
from pydantic import TypeAdapter
from tests.providers.hyperpod.autoplay import BackgroundOperator, all_jobs, clear_jobs, wait_until
from tests.providers.hyperpod.conftest import (
    BUCKET,
    DATA,
    INSTANCE_TYPE,
    Aws,
    evaluated_hyperpod_spec,
    hyperpod_spec,
)
from tests.providers.hyperpod.inference import InferenceOperator, clear_endpoint_configs
from tests.providers.hyperpod.kube import CRD_FILE, KubeCluster, Operator

from tunefleet.errors import ProviderError
from tunefleet.events import CostEvent, Event, JobState, MetricEvent, StatusEvent
from tunefleet.planning import plan_run
from tunefleet.plugins import discover
from tunefleet.provider import DatasetRef, Plan, fill_placeholders
from tunefleet.spec import parse_spec
from tunefleet.state import open_journal
from tunefleet.testing.runs import CliRunner, RunConformance, RunHarness
from tunefleet_sagemaker.hyperpod.provider import HyperPodProvider

EVENT: TypeAdapter[Event] = TypeAdapter(Event)
RUN_KEY_LABEL = "tunefleet.dev/run-key"
QUEUE = "hyperpod-ns-research-localqueue"
PRIORITY = "training-priority"
SERVER_FIELDS = {"uid", "resourceVersion", "creationTimestamp", "generation", "managedFields"}


@pytest.fixture
def empty_cluster(kube: KubeCluster) -> Iterator[KubeCluster]:
    """The API server with no HyperPodPyTorchJob (nor pod) left by an earlier test."""
    clear_jobs(kube)
    yield kube
    clear_jobs(kube)


@pytest.fixture
def cli(tmp_path: Path, aws: Aws, empty_cluster: KubeCluster) -> CliRunner:
    """``tunefleet`` subprocesses with the test's AWS environment (the aws fixture set it)."""
    return CliRunner(
        tmp_path, f"sqlite:///{tmp_path / 'journal.db'}", {"TUNEFLEET_RETRY_BACKOFF": "0.01"}
    )


def write_spec(folder: Path, text: str, name: str = "hyperpod.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def crd_schema() -> dict[str, Any]:
    """The openAPIV3Schema of the HyperPodPyTorchJob CRD the API server was given."""
    crd = yaml.safe_load(gzip.decompress(CRD_FILE.read_bytes()))
    (version,) = crd["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def with_defaults(node: Any, schema: dict[str, Any]) -> Any:
    """``node`` with the defaults of ``schema`` filled in where the API server fills them
    (structural defaulting: a missing property of an object that is there gets its
    ``default``, and what was filled in is defaulted in turn)."""
    if isinstance(node, dict):
        properties: dict[str, Any] = schema.get("properties") or {}
        filled = {
            key: copy.deepcopy(sub["default"])
            for key, sub in properties.items()
            if key not in node and "default" in sub
        }
        whole = {**node, **filled}
        return {
            key: with_defaults(value, properties[key]) if key in properties else value
            for key, value in whole.items()
        }
    if isinstance(node, list) and isinstance(schema.get("items"), dict):
        return [with_defaults(item, schema["items"]) for item in node]
    return node


def journal_events(cli: CliRunner) -> list[Event]:
    """The events the journal's only run has recorded so far (read it only once the run's
    process has made it: here, once its job exists)."""
    with open_journal(cli.journal_url) as journal:
        runs = journal.runs()
        targets = journal.targets(runs[0].id) if runs else []
        if not targets:
            return []
        (target,) = targets
        return [EVENT.validate_python(e.payload) for e in journal.events(target.id)]


def watched_running(cli: CliRunner) -> bool:
    """Whether the run has recorded its job running."""
    return any(
        isinstance(e, StatusEvent) and e.state == JobState.RUNNING for e in journal_events(cli)
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_whole_run_creates_the_planned_job_and_watches_it_to_success(
    cli: CliRunner, aws: Aws, operator: Operator, empty_cluster: KubeCluster, tmp_path: Path
) -> None:
    """`tunefleet run` on an EKS cluster: one HyperPodPyTorchJob, stored by the API server
    exactly as `tunefleet plan --json` showed it (nothing pruned, nothing the CRD's schema
    refuses), shaped as the HyperPod CLI's template (Kueue labels, nprocPerNode, replicas,
    node selector, the claim, the retries), reading the staged data on the shared storage;
    the run goes through running to succeeded with a falling loss in the journal."""
    spec = write_spec(
        tmp_path,
        hyperpod_spec(
            options={
                "queue": QUEUE,
                "priority_class": PRIORITY,
                "max_retries": 5,
                "price_per_hour": 5.0,
            },
            placement={"tags": {"team": "ml"}},
        ),
    )
    planned = cli("plan", str(spec), "--json")
    assert planned.returncode == 0, planned.stderr
    (plan,) = json.loads(planned.stdout)["plans"]
    assert not plan["unmet"]
    (create,) = [r for r in plan["requests"] if r["operation"] == "CreateHyperPodPyTorchJob"]
    assert not all_jobs(empty_cluster), "plan creates nothing"

    # The job is held running until the run has seen it run (a poll that comes after the
    # job's end sees no Running condition: the operator has turned it False by then).
    with BackgroundOperator(operator, hold=True) as playing:
        running = cli.start("run", str(spec), "--json")
        try:
            wait_until(lambda: all_jobs(empty_cluster), what="the job is created")
            wait_until(lambda: watched_running(cli), what="the run saw its job running")
            playing.release()
            out, err = running.communicate(timeout=cli.timeout)
        finally:
            if running.poll() is None:
                running.kill()
                running.communicate()
    assert running.returncode == 0, err

    (stored,) = all_jobs(empty_cluster)
    metadata = stored["metadata"]
    run_key = metadata["labels"][RUN_KEY_LABEL]
    assert len(run_key) == 32 and int(run_key, 16) >= 0
    assert metadata["name"] == f"support-bot-{run_key}"
    assert metadata["namespace"] == "default"
    assert metadata["labels"]["kueue.x-k8s.io/queue-name"] == QUEUE
    assert metadata["labels"]["kueue.x-k8s.io/priority-class"] == PRIORITY
    assert metadata["labels"]["team"] == "ml"

    # The very job plan showed, with the run key and the staged datasets' paths filled in.
    shared = {
        f"${{{role}_path}}": f"/fsx/tunefleet/datasets/{sha256(DATA / f'{role}.jsonl')}.jsonl"
        for role in ("train", "validation")
    }
    expected = fill_placeholders(create["body"], {"${run_key}": run_key, **shared})
    schema = crd_schema()
    # The API server fills in the CRD's defaults (replicaSpecs[].spares: 0); beyond those,
    # it must have kept every field planned: one it prunes as unknown to the schema would
    # be missing here.
    defaulted = with_defaults(expected["spec"], schema["properties"]["spec"])
    assert stored["spec"] == defaulted, "the API server stored the planned spec whole"
    assert {k: v for k, v in metadata.items() if k not in SERVER_FIELDS} == expected["metadata"]
    # ...and the CRD's schema takes it (the API server refuses what breaks it, and prunes
    # unknown fields silently: the equality above catches those).
    body = {k: v for k, v in stored.items() if k not in {"status", "metadata"}}
    problems = sorted(Draft4Validator(schema).iter_errors(body), key=str)
    assert not problems, [f"{list(p.absolute_path)}: {p.message}" for p in problems]
    # The staged data is where the job reads it: s3://<bucket>/<key> is /fsx/<key>.
    s3 = aws.client("s3")
    for path in shared.values():
        key = path.removeprefix("/fsx/")
        assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() in {
            (DATA / "train.jsonl").read_bytes(),
            (DATA / "validation.jsonl").read_bytes(),
        }

    # The template's shape.
    job = stored["spec"]
    assert job["nprocPerNode"] == "1"  # ml.g5.8xlarge: one GPU
    (replica,) = job["replicaSpecs"]
    assert replica["replicas"] == 2
    pod = replica["template"]["spec"]
    assert pod["nodeSelector"] == {"node.kubernetes.io/instance-type": INSTANCE_TYPE}
    claim = {"name": "shared", "persistentVolumeClaim": {"claimName": "fsx-claim"}}
    assert claim in pod["volumes"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"name": "shared", "mountPath": "/fsx"} in container["volumeMounts"]
    assert job["runPolicy"]["jobMaxRetryCount"] == 5
    conditions = {c["type"]: c["status"] for c in stored["status"]["conditions"]}
    assert conditions["Completed"] == "True"

    # The journal: running, then succeeded, with the trainer's falling loss in between.
    events = journal_events(cli)
    states = [e.state for e in events if isinstance(e, StatusEvent)]
    assert JobState.RUNNING in states and states[-1] == JobState.SUCCEEDED
    assert states.index(JobState.RUNNING) < states.index(JobState.SUCCEEDED)
    losses = [e.train_loss for e in events if isinstance(e, MetricEvent) and e.train_loss]
    assert len(losses) >= 3 and losses == sorted(losses, reverse=True) and losses[-1] < losses[0]
    (cost,) = [e for e in events if isinstance(e, CostEvent)]
    assert cost.basis.startswith("the job's share of the cluster's time")
    assert "x 2 x $5.000/h" in cost.basis, "both nodes, at the options' price"

    # What `tunefleet run --json` and `tunefleet logs` tell the user.
    (target,) = json.loads(out)["targets"]
    assert (target["phase"], target["state"]) == ("done", "succeeded")
    assert target["job_id"] == f"support-bot-{run_key}"
    assert target["train_loss"] == losses[-1]
    assert {a["kind"]: a["uri"] for a in target["artifacts"]} == {
        "adapter": f"s3://{BUCKET}/tunefleet/jobs/support-bot-{run_key}/model/",
        "checkpoint": f"s3://{BUCKET}/tunefleet/jobs/support-bot-{run_key}/checkpoints/",
    }
    logs = cli("logs", "support-bot")
    assert logs.returncode == 0, logs.stderr
    assert "status running" in logs.stdout and "status succeeded" in logs.stdout
    assert "train_loss=2 " in logs.stdout and "train_loss=0.5 " in logs.stdout


def test_the_api_server_prunes_fields_the_crd_does_not_know(
    aws: Aws, empty_cluster: KubeCluster
) -> None:
    """What makes the stored-equals-planned check above worth having: a field the CRD's
    schema does not declare is dropped by the API server without an error, so only the
    comparison with the planned body would show it was lost."""
    plan, _ = planned_and_staged(hyperpod_spec())
    values = {"${run_key}": uuid.uuid4().hex, "${train_path}": "/fsx/t", "${validation_path}": ""}
    body = fill_placeholders(plan.request("CreateHyperPodPyTorchJob").body, values)
    body["spec"]["replicaSpecs"][0]["restartPolicyTypo"] = "Never"
    stored = empty_cluster.json("POST", empty_cluster.job_path("default"), body)
    schema = crd_schema()["properties"]["spec"]
    assert "restartPolicyTypo" not in stored["spec"]["replicaSpecs"][0], "pruned, silently"
    assert stored["spec"] != with_defaults(body["spec"], schema)
    del body["spec"]["replicaSpecs"][0]["restartPolicyTypo"]
    assert stored["spec"] == with_defaults(body["spec"], schema)


def test_cancel_deletes_a_running_job_and_the_run_ends_cancelled(
    cli: CliRunner, aws: Aws, operator: Operator, empty_cluster: KubeCluster, tmp_path: Path
) -> None:
    """`tunefleet cancel` while `tunefleet run` watches a job that keeps training: the
    HyperPodPyTorchJob is deleted (the API server answers 404 for it) and the run, and the
    watching process with it, end cancelled."""
    spec = write_spec(tmp_path, hyperpod_spec())
    with BackgroundOperator(operator, hold=True) as playing:
        running = cli.start("run", str(spec))
        try:

            def trained() -> str | None:
                jobs = all_jobs(empty_cluster)
                names = [job["metadata"]["name"] for job in jobs]
                return next((n for n in names if playing.played(n) > playing.training.steps), None)

            name = wait_until(trained, what="the job started and trained")
            wait_until(
                lambda: submitted_job(cli) == name, what="the run recorded the job it watches"
            )
            cancelled = cli("cancel", "support-bot", "--json")
            assert cancelled.returncode == 0, cancelled.stderr
            _, err = running.communicate(timeout=60)
        finally:
            if running.poll() is None:
                running.kill()
                running.communicate()
    status, _ = empty_cluster.request("GET", empty_cluster.job_path("default", name))
    assert status == 404, "the job was deleted"
    assert not all_jobs(empty_cluster)
    assert running.returncode == 1, "a cancelled run exits 1, as a failed one does"
    assert "job cancelled" in err and "no longer exists (deleted)" in err, err
    with open_journal(cli.journal_url) as journal:
        (run,) = journal.runs()
        (target,) = journal.targets(run.id)
        assert (target.phase, target.state) == ("done", "cancelled"), target.message
    (shown,) = json.loads(cancelled.stdout)["targets"]
    assert (shown["state"], shown["job_id"]) == ("cancelled", name)


def submitted_job(cli: CliRunner) -> str | None:
    """The id of the job the journal's only run recorded, once it has one."""
    with open_journal(cli.journal_url) as journal:
        runs = journal.runs()
        if not runs:
            return None
        (target,) = journal.targets(runs[0].id)
        return None if target.job is None else str(target.job.get("id"))


def planned_and_staged(spec: str) -> tuple[Plan, dict[str, DatasetRef]]:
    """The plan of ``spec``'s only target and its datasets staged, as `tunefleet run` makes
    them before it submits."""
    plan = plan_run(parse_spec(spec), registry=discover()).plans[0]
    assert plan.ok, plan.unmet
    provider = HyperPodProvider()
    datasets = {
        role: provider.stage(plan, role, DATA / f"{role}.jsonl", sha256(DATA / f"{role}.jsonl"))
        for role in ("train", "validation")
    }
    return plan, datasets


def test_a_second_submit_of_a_run_key_adopts_its_job(aws: Aws, empty_cluster: KubeCluster) -> None:
    """A submit killed after its create and sent again (another process, the same run
    key) gets the same job back: the API server refused the second create (409) and
    nothing was written, so there is one job, untouched."""
    plan, datasets = planned_and_staged(hyperpod_spec())
    run_key = uuid.uuid4().hex
    first = HyperPodProvider().submit(plan, datasets, run_key)
    (created,) = all_jobs(empty_cluster)
    second = HyperPodProvider().submit(plan, datasets, run_key)
    assert second == first
    assert first.id == f"support-bot-{run_key}"
    (after,) = all_jobs(empty_cluster)
    for field in ("uid", "creationTimestamp", "resourceVersion"):
        assert after["metadata"][field] == created["metadata"][field], (
            f"{field} unchanged: the second create was refused, nothing replaced or updated"
        )
    assert HyperPodProvider().find(plan, run_key) == first


def test_a_job_of_the_same_name_that_another_run_made_is_never_adopted(
    aws: Aws, empty_cluster: KubeCluster
) -> None:
    """A HyperPodPyTorchJob already has the name the run key gives, but its run-key label
    is someone else's: submit (and find) refuse with code name_taken instead of watching,
    or deleting, a job that is not the run's; the job is left as it was."""
    plan, datasets = planned_and_staged(hyperpod_spec())
    run_key = uuid.uuid4().hex
    body = fill_placeholders(
        plan.request("CreateHyperPodPyTorchJob").body,
        {"${run_key}": run_key, "${train_path}": "/fsx/x", "${validation_path}": "/fsx/y"},
    )
    body["metadata"]["labels"][RUN_KEY_LABEL] = "someone-elses-run-key"
    theirs = empty_cluster.json("POST", empty_cluster.job_path("default"), body)
    with pytest.raises(ProviderError) as refused:
        HyperPodProvider().submit(plan, datasets, run_key)
    assert refused.value.code == "name_taken"
    assert "someone-elses-run-key" in str(refused.value)
    with pytest.raises(ProviderError) as not_ours:
        HyperPodProvider().find(plan, run_key)
    assert not_ours.value.code == "name_taken"
    (after,) = all_jobs(empty_cluster)
    assert after["metadata"]["resourceVersion"] == theirs["metadata"]["resourceVersion"]


class TestHyperPodRuns(RunConformance):
    """Rerun elsewhere, kills around and inside stage, submit and deploy, and a run with an
    evaluation, through the CLI, with the training and inference operators played in the
    background."""

    @pytest.fixture
    def run_harness(
        self, tmp_path: Path, aws: Aws, operator: Operator, empty_cluster: KubeCluster
    ) -> Iterator[RunHarness]:
        # One dataset (the whole run above stages two): the kill scenarios run the spec
        # several times, and what they check does not depend on how many are staged.
        spec = write_spec(tmp_path, hyperpod_spec(validation=False, endpoint={}))
        clear_endpoint_configs(empty_cluster, "default")
        inference = InferenceOperator(empty_cluster, aws.client("sagemaker"))

        def orphans() -> list[str]:
            """SageMaker endpoints no InferenceEndpointConfig serves any more."""
            served = {found["spec"].get("endpointName") for found in inference.endpoint_configs()}
            return [name for name in inference.sagemaker_endpoints() if name not in served]

        with BackgroundOperator(operator, inference=inference):
            yield RunHarness(
                spec=spec,
                run_name="support-bot",
                jobs=lambda: len(all_jobs(empty_cluster)),
                endpoints=lambda: len(inference.endpoint_configs()),
                orphans=orphans,
                evaluated_spec=evaluated_hyperpod_spec(tmp_path),
                timeout=120,
            )
        clear_endpoint_configs(empty_cluster, "default")

"""Evaluation on HyperPod (``predictions="job"``, as on SageMaker): the golden set is staged
with the datasets, the trainer's config (in the EKS job's environment and in the Slurm
script) answers it into the job's predictions folder on the shared storage, the provider
lists the answers as artifacts in S3 and reads them back, and an answers file FSx has not
exported yet is worth asking again for. EKS: moto and a real kube-apiserver, the operator
and the trainer's answers played (:class:`~.conftest.Training`); Slurm: a real Slurm running
the real trainer, which answers the golden set with the model it trained."""

from __future__ import annotations

import hashlib
import json
import shlex
import time
from pathlib import Path
from typing import Any

import pytest
from tests.providers.hyperpod.conftest import (
    BUCKET,
    EVALUATION,
    SLURM_CLUSTER,
    Aws,
    Training,
    evaluated_hyperpod_spec,
    hyperpod_spec,
    slurm_account,
    slurm_spec,
    write_golden_set,
)
from tests.providers.hyperpod.slurm import SlurmCluster

from tunefleet.errors import ProviderError, TransientProviderError
from tunefleet.events import JobState
from tunefleet.planning import plan_run
from tunefleet.plugins import discover
from tunefleet.provider import ArtifactRef, DatasetRef, JobRef, Plan, fill_placeholders
from tunefleet.spec import RunSpec, parse_spec
from tunefleet.testing.runs import CliRunner
from tunefleet_sagemaker.hyperpod.provider import HyperPodProvider
from tunefleet_trainer.config import TrainerConfig
from tunefleet_trainer.predictions import golden_examples, read_predictions


def _planned(text: str) -> tuple[RunSpec, Plan]:
    spec = parse_spec(text)
    (plan,) = plan_run(spec, registry=discover()).plans
    return spec, plan


def _eks_config(plan: Plan) -> dict[str, Any]:
    """The trainer's config in the planned HyperPodPyTorchJob's environment."""
    body = plan.request("CreateHyperPodPyTorchJob").body
    (container,) = body["spec"]["replicaSpecs"][0]["template"]["spec"]["containers"]
    (value,) = [e["value"] for e in container["env"] if e["name"] == "TUNEFLEET_TRAINER_CONFIG"]
    config: dict[str, Any] = json.loads(value)
    return config


def _slurm_config(script: str) -> dict[str, Any]:
    """The trainer's config the Slurm script exports."""
    (line,) = [x for x in script.splitlines() if x.startswith("export TUNEFLEET_TRAINER_CONFIG=")]
    (assignment,) = shlex.split(line.removeprefix("export "))
    config: dict[str, Any] = json.loads(assignment.split("=", 1)[1])
    return config


def _stage(provider: HyperPodProvider, spec: RunSpec, plan: Plan) -> dict[str, DatasetRef]:
    """Each dataset the plan uploads, staged (the golden set with an evaluation)."""
    locations = {"train": spec.dataset.train, "validation": spec.dataset.validation}
    if spec.evaluation is not None:
        locations["golden_set"] = spec.evaluation.golden_set
    staged = {}
    for role, location in locations.items():
        if location is None:
            continue
        path = Path(spec.resolve_location(location))
        staged[role] = provider.stage(
            plan, role, path, hashlib.sha256(path.read_bytes()).hexdigest()
        )
    return staged


# Plan --------------------------------------------------------------------------------------


def test_an_evaluated_spec_plans_the_job_answering_its_golden_set(aws: Aws, tmp_path: Path) -> None:
    """An evaluation is no longer refused: the plan says the job answers (``job``), uploads
    the golden set beside the training data, and the trainer's config in the job's
    environment reads it from the shared storage and writes the answers to the job's
    predictions folder there; filled in, the config is the trainer's contract."""
    _, plan = _planned(evaluated_hyperpod_spec(tmp_path).read_text())
    assert plan.ok, plan.unmet
    assert plan.predictions == "job"
    uploads = [r.purpose for r in plan.requests if r.operation == "PutObject"]
    assert len(uploads) == 2 and "golden set" in uploads[1], uploads
    assert any("answers the golden set" in note for note in plan.notes), plan.notes
    config = _eks_config(plan)
    assert config["evaluation"] == {
        "golden_set": "${golden_set_path}",
        "max_examples": 3,
        "generation": {"max_new_tokens": 256},
        "baseline": True,
        "predictions_dir": "/fsx/tunefleet/jobs/support-bot-${run_key}/predictions",
    }
    assert "golden_set" not in config, "the golden set is the evaluation's, not a dataset"
    filled = fill_placeholders(
        config,
        {
            "${run_key}": "a" * 32,
            "${train_path}": "/fsx/tunefleet/datasets/t.jsonl",
            "${golden_set_path}": "/fsx/tunefleet/datasets/g.jsonl",
        },
    )
    trainer = TrainerConfig.model_validate(filled)
    assert trainer.evaluation is not None
    assert trainer.evaluation.golden_set == "/fsx/tunefleet/datasets/g.jsonl"


def test_a_spec_without_an_evaluation_stages_and_answers_nothing_more(aws: Aws) -> None:
    """The same spec without an evaluation: no golden set uploaded, no evaluation in the
    trainer's config, no answers planned."""
    _, plan = _planned(hyperpod_spec(validation=False))
    assert plan.ok, plan.unmet
    assert plan.predictions is None
    assert len([r for r in plan.requests if r.operation == "PutObject"]) == 1
    assert "evaluation" not in _eks_config(plan)


def test_the_slurm_script_waits_for_the_golden_set_and_answers_it(
    moto_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """On a Slurm cluster the script carries the same config (the golden set on the shared
    storage, the answers into the job's folder there) and waits for the golden set to be
    imported, as for the datasets."""
    shared = tmp_path / "fsx"
    slurm_account(moto_server, monkeypatch, tmp_path, shared, nodes=1)
    body = json.loads(evaluated_hyperpod_spec(tmp_path).read_text())
    target = body["targets"][0]
    target["compute"] = {"instance_type": "ml.c5.xlarge", "instance_count": 1}
    target["options"] = {
        "cluster": SLURM_CLUSTER,
        "bucket": BUCKET,
        "shared_path": str(shared),
        "python": "/fsx/envs/tunefleet/bin/python",
    }
    _, plan = _planned(json.dumps(body))
    assert plan.ok, plan.unmet
    assert plan.predictions == "job"
    sbatch = plan.request("sbatch").body
    evaluation = _slurm_config(sbatch["script"])["evaluation"]
    assert evaluation["golden_set"] == "${golden_set_path}"
    assert evaluation["predictions_dir"] == (
        f"{shared}/tunefleet/jobs/support-bot-${{run_key}}/predictions"
    )
    waited = sbatch["script"].split("for dataset in ", 1)[1].split(";", 1)[0].split()
    assert waited == ["'${train_path}:${train_size}'", "'${golden_set_path}:${golden_set_size}'"]
    assert sbatch["predictions"] == ["predictions", "baseline_predictions"]


# Artifacts and reading them back (EKS) -----------------------------------------------------


def _trained(
    provider: HyperPodProvider, training: Training, text: str, run_key: str
) -> tuple[Plan, JobRef]:
    """The spec's job submitted and played to its successful end."""
    spec, plan = _planned(text)
    assert plan.ok, plan.unmet
    job = provider.submit(plan, _stage(provider, spec, plan), run_key)
    deadline = time.monotonic() + 60
    while (state := provider.status(job).state) != JobState.SUCCEEDED:
        assert not state.terminal and time.monotonic() < deadline, state
        training.advance(job)
    return plan, job


def test_the_answers_are_listed_and_read_back_from_s3(
    aws: Aws, training: Training, tmp_path: Path
) -> None:
    """A job planned with an evaluation lists its answers (the trained model's and the base
    model's) under its output prefix in S3, where FSx exports the predictions folder;
    read_artifact gives each file whole, in the trainer's format, answering the golden set's
    first examples in order. A file larger than asked for is refused, not downloaded; only
    the job's own answers are read."""
    provider = HyperPodProvider()
    spec_path = evaluated_hyperpod_spec(tmp_path)
    _, job = _trained(provider, training, spec_path.read_text(), "1" * 32)
    assert job.scope["predictions"] == "predictions,baseline_predictions"
    found = {a.kind: a for a in provider.artifacts(job)}
    folder = f"s3://{BUCKET}/tunefleet/jobs/{job.id}/predictions"
    assert found["predictions"].uri == f"{folder}/predictions.jsonl"
    assert found["baseline_predictions"].uri == f"{folder}/baseline_predictions.jsonl"
    assert found["adapter"].uri == f"s3://{BUCKET}/tunefleet/jobs/{job.id}/model/"

    examples = golden_examples(tmp_path / "golden.jsonl", EVALUATION["max_examples"])
    data = provider.read_artifact(job, found["predictions"], 1 << 20)
    trained = read_predictions(data, source=found["predictions"].uri)
    assert [(p.index, p.text) for p in trained] == [(e.index, e.expected) for e in examples]
    baseline = provider.read_artifact(job, found["baseline_predictions"], 1 << 20)
    assert len(read_predictions(baseline, source="baseline")) == len(examples)

    with pytest.raises(ProviderError) as too_large:
        provider.read_artifact(job, found["predictions"], 16)
    assert too_large.value.code == "artifact_too_large"
    with pytest.raises(ProviderError) as not_answers:
        provider.read_artifact(job, found["adapter"], 1 << 20)
    assert not_answers.value.code == "artifact_unreadable"
    elsewhere = ArtifactRef(kind="predictions", uri=f"s3://{BUCKET}/other/predictions.jsonl")
    with pytest.raises(ProviderError) as invalid:
        provider.read_artifact(job, elsewhere, 1 << 20)
    assert invalid.value.code == "artifact_invalid"


def test_a_job_planned_without_an_evaluation_lists_no_answers(aws: Aws, training: Training) -> None:
    """The answers listed are decided by the job's own plan (its ref's scope): none for a
    job planned without an evaluation."""
    provider = HyperPodProvider()
    _, job = _trained(provider, training, hyperpod_spec(validation=False), "2" * 32)
    assert "predictions" not in job.scope
    assert {a.kind for a in provider.artifacts(job)} == {"adapter", "checkpoint"}


def test_answers_not_exported_yet_are_asked_for_again(
    aws: Aws, training: Training, tmp_path: Path
) -> None:
    """The job succeeded but FSx has not exported its answers to the bucket yet (auto-export
    is asynchronous): read_artifact raises a TransientProviderError saying so, which the
    engine retries; once exported, the same call reads them."""
    provider = HyperPodProvider()
    _, job = _trained(provider, training, evaluated_hyperpod_spec(tmp_path).read_text(), "3" * 32)
    answers = {a.kind: a for a in provider.artifacts(job)}["predictions"]
    key = answers.uri.removeprefix(f"s3://{BUCKET}/")
    s3 = aws.client("s3")
    exported = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    s3.delete_object(Bucket=BUCKET, Key=key)  # as before the export

    with pytest.raises(TransientProviderError) as pending:
        provider.read_artifact(job, answers, 1 << 20)
    assert pending.value.code == "NoSuchKey"
    assert "not in S3 yet" in str(pending.value) and "FSx" in str(pending.value)

    s3.put_object(Bucket=BUCKET, Key=key, Body=exported)  # the export, done
    assert provider.read_artifact(job, answers, 1 << 20) == exported


# A whole run on a real Slurm cluster -------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path) -> CliRunner:
    return CliRunner(tmp_path, f"sqlite:///{tmp_path / 'journal.db'}", timeout=300)


@pytest.mark.slow
def test_a_run_on_slurm_registers_the_model_with_its_scores(
    slurm_aws: Aws, slurm: SlurmCluster, cli: CliRunner, tmp_path: Path
) -> None:
    """``tunefleet run`` of a spec with an evaluation on the real Slurm cluster: the real
    trainer trains the tiny model, answers the golden set with the base and the trained
    model into the job's predictions folder on the shared storage, the engine reads the
    answers back from S3 (exported by the played FSx association) and scores them, and the
    model is registered with its evaluation."""
    body = json.loads(slurm_spec(slurm, validation=False))
    body["targets"][0]["compute"]["instance_count"] = 1
    body["hyperparameters"]["epochs"] = 1
    body["evaluation"] = {
        **EVALUATION,
        "golden_set": str(write_golden_set(tmp_path)),
        "max_examples": 2,
        "max_tokens": 8,
    }
    spec = tmp_path / "evaluated.yaml"
    spec.write_text(json.dumps(body))

    ran = cli("run", str(spec))
    assert ran.returncode == 0, ran.stderr
    listed = cli("models", "--json")
    assert listed.returncode == 0, listed.stderr
    (model,) = json.loads(listed.stdout)
    assert model["evaluation"] is not None, model
    scores = model["evaluation"]["metrics"]
    assert set(scores) == {"exact_match"} and isinstance(scores["exact_match"], float), scores
    answered = list(slurm.shared.glob("tunefleet/jobs/*/predictions/predictions.jsonl"))
    assert len(answered) == 1, answered
    assert len(read_predictions(answered[0].read_bytes(), source=str(answered[0]))) == 2
    key = str(answered[0].relative_to(slurm.shared))
    exported = slurm_aws.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert exported == answered[0].read_bytes()

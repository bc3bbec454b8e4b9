"""Evaluation on SageMaker: the training job answers the golden set (Plan.predictions "job").

The plan shows the golden set's upload, its channel and the trainer's evaluation config;
submit sends them; a completed job lists the answers in its output.tar.gz (written for the
job by conftest's ``container_output_data``, the stand-in for the container) and
read_artifact reads one member of it in memory, refusing what is too large or not a file.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from tests.providers.sagemaker.conftest import (
    BUCKET,
    DATA,
    EVALUATION,
    GOLDEN,
    Aws,
    Lifecycle,
    evaluated_spec,
    output_tar_gz,
    sagemaker_spec,
)

from tunefleet.errors import ProviderError, ProviderNotFoundError
from tunefleet.planning import plan_run
from tunefleet.plugins import discover
from tunefleet.provider import ArtifactReading, ArtifactRef, JobRef, Plan
from tunefleet.spec import parse_spec
from tunefleet.testing.runs import RunConformance, RunHarness
from tunefleet_sagemaker import _artifacts
from tunefleet_sagemaker.provider import SageMakerProvider
from tunefleet_trainer.config import TrainerConfig
from tunefleet_trainer.predictions import MAX_PREDICTIONS_BYTES, read_predictions


def spec_text(aws: Aws, *, evaluation: dict[str, Any] | None = EVALUATION, **options: Any) -> str:
    body = json.loads(sagemaker_spec(aws, options=options))
    if evaluation is not None:
        body["evaluation"] = evaluation
    return json.dumps(body)


def plan_of(text: str) -> Plan:
    (plan,) = plan_run(parse_spec(text), registry=discover()).plans
    # Core refused specs with an evaluation until its engine step landed; whatever core
    # says about the section itself, the provider must be able to honour everything.
    mine = [u for u in plan.unmet if u.requirement != "evaluation"]
    assert not mine, mine
    return plan


def job_body(plan: Plan) -> dict[str, Any]:
    return plan.request("CreateTrainingJob").body


def config_of(body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(body["HyperParameters"]["tunefleet_config"])
    return config


def channels(body: dict[str, Any]) -> dict[str, str]:
    return {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in body["InputDataConfig"]
    }


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_job(aws: Aws, plan: Plan, run_key: str = "a" * 32) -> JobRef:
    """Stage what the plan reads (the engine's part), submit, and describe the job until it
    has completed."""
    provider = SageMakerProvider()
    paths = {"train": DATA / "train.jsonl", "validation": DATA / "validation.jsonl"}
    if plan.predictions == "job":
        paths["golden_set"] = GOLDEN
    datasets = {
        role: provider.stage(plan, role, path, sha256(path)) for role, path in paths.items()
    }
    job = provider.submit(plan, datasets, run_key)
    for _ in range(10):
        if provider.status(job).state.terminal:
            break
    assert provider.status(job).state.value == "succeeded"
    return job


# Plan -------------------------------------------------------------------------------------


def test_a_plan_with_an_evaluation_shows_the_golden_channel_and_the_config(aws: Aws) -> None:
    plan = plan_of(spec_text(aws))
    assert plan.predictions == "job"
    body = job_body(plan)
    assert channels(body) == {
        "train": "${train_uri}",
        "validation": "${validation_uri}",
        "golden": "${golden_set_uri}",
    }
    config = config_of(body)
    assert config["evaluation"] == {
        "golden_set": "/opt/ml/input/data/golden",
        "max_examples": 3,
        "generation": {"max_new_tokens": 256},
        "baseline": True,
        "predictions_dir": "/opt/ml/output/data",
    }
    # The golden set is not a training dataset: no top-level path for it.
    assert "golden_set" not in config
    # The config is one the trainer takes (its contract validates it as the trainer will).
    TrainerConfig.model_validate(config)
    # The golden set is uploaded as planned, like the datasets: key, tags and encryption.
    uploads = [r for r in plan.requests_for("stage") if r.operation == "PutObject"]
    golden = sha256(GOLDEN)
    assert [r.purpose.split(" (")[0] for r in uploads] == [
        "upload the train dataset",
        "upload the validation dataset",
        "upload the golden set",
    ]
    assert uploads[2].body["Key"] == f"tunefleet/datasets/{golden}.jsonl"
    assert uploads[2].body["Tagging"] == uploads[0].body["Tagging"]
    assert any("answers the golden set" in note for note in plan.notes)


def test_the_evaluation_config_follows_the_spec(aws: Aws) -> None:
    evaluation = {"golden_set": str(GOLDEN), "metrics": ["token_f1"], "max_tokens": 512}
    config = config_of(job_body(plan_of(spec_text(aws, evaluation=evaluation))))
    assert config["evaluation"]["generation"] == {"max_new_tokens": 512}
    assert "max_examples" not in config["evaluation"], "all examples: nothing to cut"


def test_a_plan_without_an_evaluation_is_unchanged(aws: Aws) -> None:
    plan = plan_of(spec_text(aws, evaluation=None))
    assert plan.predictions is None
    body = job_body(plan)
    assert set(channels(body)) == {"train", "validation"}
    assert "evaluation" not in config_of(body)
    assert len(plan.requests_for("stage")) == 2
    assert not any("golden set" in note for note in plan.notes)


def test_the_golden_channel_counts_towards_the_limits_checked_at_plan(aws: Aws) -> None:
    """The channel name, the channel count (1-20), the S3 URI and the longer trainer config
    (HyperParameters values: at most 2500 characters) are checked against botocore's
    model with the longest values the placeholders can take."""
    from tunefleet_sagemaker._limits import violations
    from tunefleet_sagemaker._planning import fill

    plan = plan_of(spec_text(aws))
    body = fill(
        job_body(plan),
        dict.fromkeys(
            ["train", "validation", "golden_set"],
            f"s3://{BUCKET}/tunefleet/datasets/{'f' * 64}.jsonl",
        ),
        "f" * 32,
    )
    assert violations("sagemaker", "CreateTrainingJob", body, "eu-west-1") == []
    assert len(body["HyperParameters"]["tunefleet_config"]) <= 2500


def test_a_config_too_long_for_a_hyperparameter_is_refused_at_plan(aws: Aws) -> None:
    """A spec whose config with the evaluation no longer fits 2500 characters fails at plan
    (naming the member), instead of being refused by SageMaker at submit."""
    body = json.loads(spec_text(aws))
    body["hyperparameters"]["lora"] = {"target_modules": [f"{i:02d}" + "m" * 99 for i in range(20)]}
    without = json.loads(json.dumps(body))
    del without["evaluation"]
    assert plan_of(json.dumps(without)).ok, "the config fits without the evaluation"
    (plan,) = plan_run(parse_spec(json.dumps(body)), registry=discover()).plans
    reasons = {u.requirement: u.reason for u in plan.unmet}
    assert (
        "at most 2500 are allowed" in reasons["CreateTrainingJob.HyperParameters.tunefleet_config"]
    )


# Submit, artifacts, read_artifact -----------------------------------------------------


def test_submit_sends_the_staged_golden_set_and_the_answers_are_read_back(
    aws: Aws, lifecycle: Lifecycle
) -> None:
    plan = plan_of(spec_text(aws, kms_key_id=aws.kms_key))
    job = run_job(aws, plan)

    # What moto received: the golden channel on the staged object, the config as planned.
    described = aws.client("sagemaker").describe_training_job(TrainingJobName=job.id)
    golden = f"s3://{BUCKET}/tunefleet/datasets/{sha256(GOLDEN)}.jsonl"
    assert channels(described)["golden"] == golden
    assert config_of(described)["evaluation"] == config_of(job_body(plan))["evaluation"]
    # The golden set was staged like the datasets: SSE-KMS with the key, the run's tags.
    s3 = aws.client("s3")
    key = golden.removeprefix(f"s3://{BUCKET}/")
    head = s3.head_object(Bucket=BUCKET, Key=key)
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", aws.kms_key)
    tags = s3.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]
    assert {"Key": "tunefleet:run", "Value": "support-bot"} in tags

    provider = SageMakerProvider()
    assert isinstance(provider, ArtifactReading)
    refs = {ref.kind: ref.uri for ref in provider.artifacts(job)}
    archive = f"s3://{BUCKET}/tunefleet/models/{job.id}/output/output.tar.gz"
    assert refs["predictions"] == f"{archive}#predictions.jsonl"
    assert refs["baseline_predictions"] == f"{archive}#baseline_predictions.jsonl"
    assert refs["adapter"] == f"s3://{BUCKET}/tunefleet/models/{job.id}/output/model.tar.gz"

    expected = [json.loads(line)["messages"][-1]["content"] for line in GOLDEN.open()][:3]
    trained = provider.read_artifact(
        job, ArtifactRef(kind="predictions", uri=refs["predictions"]), MAX_PREDICTIONS_BYTES
    )
    answers = read_predictions(trained, source="predictions")
    assert [(p.index, p.text) for p in answers] == list(enumerate(expected)), "max_examples 3"
    baseline = provider.read_artifact(
        job,
        ArtifactRef(kind="baseline_predictions", uri=refs["baseline_predictions"]),
        MAX_PREDICTIONS_BYTES,
    )
    assert {p.text for p in read_predictions(baseline, source="baseline")} == {"I do not know."}
    # The output data was written as SageMaker writes it: with the output key.
    head = s3.head_object(Bucket=BUCKET, Key=archive.removeprefix(f"s3://{BUCKET}/"))
    assert head["SSEKMSKeyId"] == aws.kms_key


def test_a_member_larger_than_asked_is_refused_before_it_is_read(
    aws: Aws, lifecycle: Lifecycle
) -> None:
    job = run_job(aws, plan_of(spec_text(aws)))
    (ref,) = [r for r in SageMakerProvider().artifacts(job) if r.kind == "predictions"]
    with pytest.raises(ProviderError) as raised:
        SageMakerProvider().read_artifact(job, ref, 10)
    assert raised.value.code == "artifact_too_large"
    assert "predictions.jsonl is" in str(raised.value)


def test_an_archive_far_larger_than_answers_is_not_downloaded(
    aws: Aws, lifecycle: Lifecycle
) -> None:
    # Random bytes do not compress: the archive is larger than any holding 1 KiB answers.
    import os

    lifecycle.output_data = {"predictions.jsonl": b"{}", "noise.bin": os.urandom(2 << 20)}
    job = run_job(aws, plan_of(spec_text(aws)))
    (ref,) = [r for r in SageMakerProvider().artifacts(job) if r.kind == "predictions"]
    with pytest.raises(ProviderError) as raised:
        SageMakerProvider().read_artifact(job, ref, 1024)
    assert raised.value.code == "artifact_too_large"
    assert "it was not downloaded" in str(raised.value)


def test_a_missing_archive_or_member_is_not_found(aws: Aws, lifecycle: Lifecycle) -> None:
    lifecycle.output_data = {"predictions.jsonl": b'{"index":0,"text":"x"}\n'}
    job = run_job(aws, plan_of(spec_text(aws)))
    refs = {r.kind: r for r in SageMakerProvider().artifacts(job)}
    # The trainer wrote no baseline answers: that member is missing.
    with pytest.raises(ProviderNotFoundError) as member:
        SageMakerProvider().read_artifact(job, refs["baseline_predictions"], 1 << 20)
    assert member.value.code == "NoSuchMember"
    # The archive itself is gone.
    bucket, key, _ = _artifacts.split_uri(refs["predictions"].uri)
    aws.client("s3").delete_object(Bucket=bucket, Key=key)
    with pytest.raises(ProviderNotFoundError) as archive:
        SageMakerProvider().read_artifact(job, refs["predictions"], 1 << 20)
    assert archive.value.code == "NoSuchKey"


def test_a_job_without_an_evaluation_lists_no_predictions(aws: Aws, lifecycle: Lifecycle) -> None:
    job = run_job(aws, plan_of(spec_text(aws, evaluation=None)))
    kinds = [ref.kind for ref in SageMakerProvider().artifacts(job)]
    assert kinds == ["adapter", "checkpoint"]


def test_the_artifacts_follow_the_job_not_the_plan_that_found_it(
    aws: Aws, lifecycle: Lifecycle
) -> None:
    """The run key leaves the evaluation out: the same spec without its evaluation finds
    the same job. What the job holds decides, so no answers it never wrote are listed."""
    job = run_job(aws, plan_of(spec_text(aws, evaluation=None)))
    found = SageMakerProvider().find(plan_of(spec_text(aws)), job.run_key)
    assert found is not None and found.id == job.id
    assert "predictions" not in [ref.kind for ref in SageMakerProvider().artifacts(found)]


def test_only_this_jobs_answers_are_read(aws: Aws, lifecycle: Lifecycle) -> None:
    job = run_job(aws, plan_of(spec_text(aws)))
    provider = SageMakerProvider()
    (ref,) = [r for r in provider.artifacts(job) if r.kind == "predictions"]
    for artifact in (
        ArtifactRef(kind="predictions", uri=ref.uri.replace(job.id, "another-job")),
        ArtifactRef(
            kind="predictions", uri=ref.uri.replace("#predictions", "#baseline_predictions")
        ),
        ArtifactRef(kind="adapter", uri=ref.uri),
        ArtifactRef(kind="predictions", uri="https://example.com/output.tar.gz"),
    ):
        with pytest.raises(ProviderError) as raised:
            provider.read_artifact(job, artifact, 1 << 20)
        assert raised.value.code in {"artifact_invalid", "artifact_unreadable"}, artifact


# The archive, without AWS ---------------------------------------------------------------


def tar_gz(*members: tarfile.TarInfo, data: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for info in members:
            content = (data or {}).get(info.name)
            archive.addfile(info, io.BytesIO(content) if content is not None else None)
    return buffer.getvalue()


def entry(
    name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, link: str = ""
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size, link
    return info


def test_the_member_is_found_at_the_root_with_or_without_a_dot() -> None:
    plain = output_tar_gz({"predictions.jsonl": b"a\n"})
    assert _artifacts.member(plain, "predictions.jsonl", 10, where="x") == b"a\n"
    dotted = tar_gz(entry("./predictions.jsonl", size=2), data={"./predictions.jsonl": b"b\n"})
    assert _artifacts.member(dotted, "predictions.jsonl", 10, where="x") == b"b\n"
    nested = tar_gz(
        entry("data/predictions.jsonl", size=2), data={"data/predictions.jsonl": b"c\n"}
    )
    with pytest.raises(ProviderNotFoundError):
        _artifacts.member(nested, "predictions.jsonl", 10, where="x")


@pytest.mark.parametrize(
    "info",
    [
        entry("predictions.jsonl", tarfile.SYMTYPE, link="/etc/passwd"),
        entry("predictions.jsonl", tarfile.LNKTYPE, link="other"),
        entry("predictions.jsonl", tarfile.DIRTYPE),
        entry("predictions.jsonl", tarfile.FIFOTYPE),
        entry("predictions.jsonl", tarfile.CHRTYPE),
    ],
    ids=["symlink", "hardlink", "directory", "fifo", "device"],
)
def test_a_member_that_is_not_a_regular_file_is_refused(info: tarfile.TarInfo) -> None:
    with pytest.raises(ProviderError) as raised:
        _artifacts.member(tar_gz(info), "predictions.jsonl", 1 << 20, where="x")
    assert raised.value.code == "artifact_invalid"


@pytest.mark.parametrize(
    "data",
    [
        b"not gzip at all",
        gzip.compress(b"not a tar archive" * 100),
        output_tar_gz({"a": b"1" * 4096})[:60],
    ],
    ids=["not-gzip", "not-tar", "cut-short"],
)
def test_what_is_not_a_complete_archive_is_refused(data: bytes) -> None:
    with pytest.raises(ProviderError) as raised:
        _artifacts.member(data, "predictions.jsonl", 1 << 20, where="x")
    assert raised.value.code == "artifact_invalid"
    assert type(raised.value) is ProviderError


def test_a_gzip_bomb_is_stopped_without_unpacking_it() -> None:
    """64 MiB of zeros before the member compress to ~64 KiB: the decompression stops at
    its budget (8 x max_bytes + 16 MiB) instead of unpacking it all."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        zeros = entry("padding.bin", size=64 << 20)
        archive.addfile(zeros, io.BytesIO(bytes(64 << 20)))
        archive.addfile(entry("predictions.jsonl", size=2), io.BytesIO(b"x\n"))
    data = buffer.getvalue()
    assert len(data) < 1 << 20
    with pytest.raises(ProviderError) as raised:
        _artifacts.member(data, "predictions.jsonl", 1024, where="x")
    assert raised.value.code == "artifact_too_large"
    assert "unpacks to more" in str(raised.value)


# A whole run through the CLI -------------------------------------------------------------


def test_a_run_with_an_evaluation_scores_the_jobs_answers(
    tmp_path: Path, fake_site: Path, aws: Aws, lifecycle: Lifecycle
) -> None:
    """The engine stages the golden set, the job answers it (the stand-in for the container
    writes the answers), and the evaluation reads them back through read_artifact."""
    from tests.runcli import Cli

    from tunefleet.state import open_journal

    cli = Cli(tmp_path, fake_site, f"sqlite:///{tmp_path / 'journal.db'}")
    cli.env.update(TUNEFLEET_RETRY_BACKOFF="0.01")
    spec = tmp_path / "sagemaker.yaml"
    spec.write_text(evaluated_spec(aws))
    result = cli("run", str(spec), "--json")
    assert result.returncode == 0, result.stderr
    with open_journal(cli.journal_url) as journal:
        (run,) = journal.runs()
        (target,) = journal.targets(run.id)
        kinds = [a.kind for a in journal.artifacts(target.id)]
        (scored,) = journal.evaluations(target.id)
    assert {"predictions", "baseline_predictions"} <= set(kinds)
    assert scored.passed, scored.result
    (exact,) = scored.result["metrics"]
    assert (exact["value"], exact["baseline"]) == (1.0, 0.0), "the trained and the base answers"
    assert scored.result["examples"] == 3, "max_examples"
    assert scored.golden_sha256 == sha256(GOLDEN)
    (name,) = lifecycle.created
    described = aws.client("sagemaker").describe_training_job(TrainingJobName=name)
    assert channels(described)["golden"].endswith(f"/{sha256(GOLDEN)}.jsonl")


class TestKillsWithAGoldenSet(RunConformance):
    """The kill scenarios again, with an evaluation: the golden set is staged and sent with
    the job, so a kill inside stage or submit, or around submit, must still end with one
    job. The other scenarios run once, in test_sagemaker_runs (its harness gives the
    evaluated spec to the evaluation scenario), and are not collected here."""

    test_rerunning_the_spec_elsewhere_reattaches = None
    test_running_the_spec_again_after_a_kill_reattaches = None
    test_a_kill_inside_deploy_leaves_one_endpoint_after_deploying_again = None
    test_a_run_with_an_evaluation_scores_registers_and_rescores_its_model = None

    @pytest.fixture
    def run_harness(self, tmp_path: Path, aws: Aws, lifecycle: Lifecycle) -> RunHarness:
        spec = tmp_path / "sagemaker.yaml"
        spec.write_text(evaluated_spec(aws))
        sagemaker = aws.client("sagemaker")
        return RunHarness(
            spec=spec,
            run_name="support-bot",
            jobs=lambda: len(sagemaker.list_training_jobs()["TrainingJobSummaries"]),
        )

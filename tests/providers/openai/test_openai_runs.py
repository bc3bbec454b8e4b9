"""Whole runs on the OpenAI provider through the CLI, against the fake service.

The CLI runs in subprocesses, as users run it; the fake service runs in this process, so a
test can look at every request it received and change its behaviour mid-run.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter
from tests.providers.openai.conftest import BASE_MODEL, DATA, openai_spec
from tests.providers.openai.fake_openai import FakeOpenAI
from tests.runcli import Cli

from tunefleet.events import CheckpointEvent, Event, LogEvent, MetricEvent, StatusEvent
from tunefleet.state import open_journal
from tunefleet.testing.runs import RunConformance, RunHarness

EVENT: TypeAdapter[Event] = TypeAdapter(Event)


@pytest.fixture
def cli(tmp_path: Path, fake_site: Path, fake_openai: FakeOpenAI) -> Cli:
    runner = Cli(tmp_path, fake_site, f"sqlite:///{tmp_path / 'journal.db'}")
    runner.env.update(TUNEFLEET_QUEUE_INTERVAL="0.05", TUNEFLEET_RETRY_BACKOFF="0.01")
    return runner


def write_spec(cli: Cli, server: FakeOpenAI, **kwargs: Any) -> Path:
    path = cli.tmp_path / "openai.yaml"
    path.write_text(openai_spec(server, **kwargs))
    return path


def create_requests(server: FakeOpenAI) -> list[dict[str, Any]]:
    """The bodies of every createFineTuningJob request, refused ones included."""
    return [body for op, body in server.requests if op == "createFineTuningJob"]


def test_a_whole_run_through_the_cli(cli: Cli, fake_openai: FakeOpenAI) -> None:
    spec = write_spec(cli, fake_openai)
    result = cli("run", str(spec), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert [t["state"] for t in summary["targets"]] == ["succeeded"]

    # The files went up once each, under their content hash, and the job was created as
    # planned: method, hyperparameters, suffix, seed, and the run key in its metadata.
    uploads = [f for f in fake_openai.files.values() if f["purpose"] == "fine-tune"]
    assert sorted(fake_openai.contents[f["id"]] for f in uploads) == sorted(
        (DATA / name).read_bytes() for name in ("train.jsonl", "validation.jsonl")
    )
    (create,) = create_requests(fake_openai)
    assert create["method"] == {
        "type": "supervised",
        "supervised": {
            "hyperparameters": {"n_epochs": 3, "batch_size": 8, "learning_rate_multiplier": 0.5}
        },
    }
    assert (create["suffix"], create["seed"], create["model"]) == (
        "support-bot",
        7,
        "gpt-4o-mini-2024-07-18",
    )
    train_file = fake_openai.contents[create["training_file"]]
    assert train_file == (DATA / "train.jsonl").read_bytes()

    with open_journal(cli.journal_url) as journal:
        (run,) = journal.runs()
        (target,) = journal.targets(run.id)
        assert create["metadata"]["tunefleet:run-key"] == target.run_key
        events = [EVENT.validate_python(e.payload) for e in journal.events(target.id)]
        job = fake_openai.jobs[target.job["id"]]
        assert target.trained_tokens == job.body["trained_tokens"] > 0
        artifacts = [(a.kind, a.uri) for a in journal.artifacts(target.id)]
    metrics = [e for e in events if isinstance(e, MetricEvent)]
    assert [m.step for m in metrics] == list(range(1, job.total_steps + 1))
    assert metrics[-1].train_loss is not None and metrics[0].train_loss is not None
    assert metrics[-1].train_loss < metrics[0].train_loss, "the loss falls"
    assert all(m.valid_loss is not None and m.train_token_accuracy is not None for m in metrics)
    checkpoints = [e for e in events if isinstance(e, CheckpointEvent)]
    assert [c.step for c in checkpoints] == [c["step_number"] for c in job.checkpoints]
    states = [e.state.value for e in events if isinstance(e, StatusEvent)]
    lifecycle = ["queued", "running", "succeeded"]
    assert states[-1] == "succeeded" and states == sorted(set(states), key=lifecycle.index)
    assert any(isinstance(e, LogEvent) and "Fine-tuning job started" in e.message for e in events)
    model = job.body["fine_tuned_model"]
    assert artifacts[0] == ("hosted_model", model)
    assert [uri for kind, uri in artifacts if kind == "checkpoint"] == [
        c["fine_tuned_model_checkpoint"] for c in job.checkpoints[::-1]
    ]

    deployed = cli("deploy", run.id, "--json")
    assert deployed.returncode == 0, deployed.stderr
    assert json.loads(deployed.stdout)["id"] == model
    answer = cli("invoke", run.id, "How do I print a shipping label?")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() == f"[{model}] You asked: How do I print a shipping label?"
    assert cli("undeploy", run.id).returncode == 0
    assert model in fake_openai.models, "undeploying keeps the fine-tuned model"


def test_rerunning_the_spec_elsewhere_reuses_the_files(
    cli: Cli, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    spec = write_spec(cli, fake_openai)
    assert cli("run", str(spec)).returncode == 0
    # Another machine, another journal: the same spec finds the files by their content.
    cli.env["TUNEFLEET_STATE"] = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    again = cli("run", str(spec))
    assert again.returncode == 0, again.stderr
    assert fake_openai.operations().count("createFile") == 2, "no file was uploaded twice"


class TestOpenAIRuns(RunConformance):
    """Rerun elsewhere, kills around submit, reattach: the scenarios every provider runs."""

    @pytest.fixture
    def run_harness(self, tmp_path: Path, fake_openai: FakeOpenAI) -> RunHarness:
        spec = tmp_path / "openai.yaml"
        spec.write_text(openai_spec(fake_openai))
        # The fine-tuned model answers through the chat API: the golden set holds questions
        # it was trained on and one it was not.
        golden = tmp_path / "golden.jsonl"
        trained = (DATA / "train.jsonl").read_text().splitlines()
        unseen = (DATA / "validation.jsonl").read_text().splitlines()[0]
        golden.write_text("\n".join([*trained[:4], unseen]) + "\n")
        evaluated = tmp_path / "openai-evaluated.yaml"
        evaluation = {"golden_set": str(golden), "metrics": ["exact_match", "token_f1"]}
        evaluated.write_text(openai_spec(fake_openai, evaluation=evaluation))
        return RunHarness(
            spec=spec,
            run_name="support-bot",
            jobs=lambda: len(fake_openai.jobs),
            env={"TUNEFLEET_QUEUE_INTERVAL": "0.05"},
            evaluated_spec=evaluated,
        )


def test_a_429_storm_is_survived(cli: Cli, fake_openai: FakeOpenAI) -> None:
    # Every other request throttled for a while, and the job's creation three times running
    # after that: the SDK retries each request, the provider the create (which the SDK must
    # not repeat), and a create still refused after those is queued and sent again later.
    fake_openai.misbehave(
        status=429,
        code="rate_limit_exceeded",
        message="Rate limit reached for requests per min (RPM): Limit 60, Used 60.",
        times=12,
        every=2,
        retry_after="0.01",
    )
    fake_openai.misbehave(
        status=429,
        code="rate_limit_exceeded",
        message="Rate limit reached for requests per min (RPM): Limit 60, Used 60.",
        operation="createFineTuningJob",
        times=3,
        retry_after="0.01",
    )
    fake_openai.misbehave(
        status=503, code=None, message="The server is overloaded.", operation="listFiles"
    )
    result = cli("run", str(write_spec(cli, fake_openai)))
    assert result.returncode == 0, result.stderr
    assert all(m.times == 0 for m in fake_openai.misbehaviours), "every failure was served"
    assert "queued:" in result.stderr and "still refused after 4 attempts" in result.stderr
    assert len(fake_openai.jobs) == 1


def _hold_the_only_slot(cli: Cli, fake_openai: FakeOpenAI) -> Callable[[], None]:
    """Someone else's job takes the service's only slot; call the result to free it."""
    import openai

    fake_openai.max_active_jobs = 1
    other = cli.tmp_path / "other.jsonl"
    other.write_bytes((DATA / "train.jsonl").read_bytes())
    client = openai.OpenAI(base_url=fake_openai.base_url, max_retries=0)
    file = client.files.create(file=other.open("rb"), purpose="fine-tune")
    blocker = client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=file.id)

    def free() -> None:
        client.fine_tuning.jobs.cancel(blocker.id)

    return free


def _queued_reason(cli: Cli, process: subprocess.Popen[str]) -> str:
    """The reason the run's target shows once it is queued."""
    deadline = time.monotonic() + 60
    with open_journal(cli.journal_url) as journal:
        while True:
            runs = journal.runs()
            targets = journal.targets(runs[0].id) if runs else []
            if targets and targets[0].phase == "queued":
                return targets[0].message or ""
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the target never queued"
            time.sleep(0.05)


def test_the_concurrent_job_limit_queues_the_target(cli: Cli, fake_openai: FakeOpenAI) -> None:
    # With options.max_concurrent_jobs the provider counts the project's unfinished jobs
    # before it creates one, so no create is sent while the slot is taken.
    free_the_slot = _hold_the_only_slot(cli, fake_openai)
    spec = write_spec(cli, fake_openai, options={"max_concurrent_jobs": 1})
    process = cli.start("run", str(spec))
    assert "options.max_concurrent_jobs is 1" in _queued_reason(cli, process)
    free_the_slot()
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "queued:" in err
    assert len(fake_openai.jobs) == 2  # the blocker and ours
    # The blocker's create and ours: none was sent while the slot was taken.
    assert len(create_requests(fake_openai)) == 2
    with open_journal(cli.journal_url) as journal:
        (target,) = journal.targets(journal.runs()[0].id)
        assert target.state == "succeeded"
        actions = [entry.action for entry in journal.audit_entries()]
        assert "target.queued" in actions


def test_the_services_own_job_limit_queues_the_target_once_retries_are_spent(
    cli: Cli, fake_openai: FakeOpenAI
) -> None:
    """Without max_concurrent_jobs, the service's limit answers the create with a 429 that
    has no code of its own: retried as throttling, then, still refused, queued (not failed)
    until a slot frees."""
    free_the_slot = _hold_the_only_slot(cli, fake_openai)
    spec = write_spec(cli, fake_openai, options={"max_retries": 1})
    process = cli.start("run", str(spec))
    assert "still refused after 2 attempts" in _queued_reason(cli, process)
    free_the_slot()
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert len(fake_openai.jobs) == 2, "the blocker and ours, no duplicate"


def test_a_daily_limit_fails_with_the_apis_message(cli: Cli, fake_openai: FakeOpenAI) -> None:
    fake_openai.daily_job_limit = 0
    result = cli("run", str(write_spec(cli, fake_openai)))
    assert result.returncode == 3
    assert "maximum of 0 fine-tuning requests per day" in result.stderr
    assert "daily_rate_limit_exceeded" in result.stderr
    assert "no retry will clear" in result.stderr, "it says what clears it"
    assert "retrying" not in result.stderr, "a daily limit is not retried"


def test_a_file_the_service_rejects_fails_the_job_with_its_message(
    cli: Cli, fake_openai: FakeOpenAI
) -> None:
    # The service's safety checks block a training file only it can judge (a file with too
    # few examples is refused at plan, before anything is uploaded).
    fake_openai.unsafe_training_files = True
    result = cli("run", str(write_spec(cli, fake_openai, validation=False)))
    assert result.returncode == 1
    assert "blocked by our moderation system" in result.stderr


def test_a_file_with_too_few_examples_fails_at_plan(cli: Cli, fake_openai: FakeOpenAI) -> None:
    few = cli.tmp_path / "few.jsonl"
    few.write_text("".join((DATA / "train.jsonl").read_text().splitlines(True)[:4]))
    spec = write_spec(cli, fake_openai, validation=False)
    body = json.loads(spec.read_text())
    body["dataset"]["train"] = str(few)
    spec.write_text(json.dumps(body))
    result = cli("run", str(spec))
    assert result.returncode != 0
    assert "the training file has 4 example(s); a fine-tuning job needs at least 10" in (
        result.stderr
    )
    assert not fake_openai.files and not fake_openai.jobs, "nothing was uploaded or created"


def test_an_evaluated_run_answers_through_the_chat_api_and_gates_deploy(
    cli: Cli, fake_openai: FakeOpenAI
) -> None:
    # Four questions the model was trained on and one it was not: exact match 4/5.
    golden = cli.tmp_path / "golden.jsonl"
    trained = (DATA / "train.jsonl").read_text().splitlines()
    unseen = (DATA / "validation.jsonl").read_text().splitlines()[0]
    golden.write_text("\n".join([*trained[:4], unseen]) + "\n")
    judge = "gpt-4o-2024-08-06"
    fake_openai.judge(judge, lambda body: "A")  # always the first: every pair ties
    spec = write_spec(
        cli,
        fake_openai,
        validation=False,
        evaluation={
            "golden_set": str(golden),
            "metrics": ["exact_match", "llm_judge"],
            "thresholds": {"exact_match": 0.9},
            "judge": {
                "provider": "openai",
                "model": judge,
                "options": {"base_url": fake_openai.base_url},
            },
        },
    )
    result = cli("run", str(spec), "--json")
    assert result.returncode == 0, result.stderr
    (target,) = json.loads(result.stdout)["targets"]
    assert target["state"] == "succeeded" and "exact_match" in target["message"]
    (model,) = [a["uri"] for a in target["artifacts"] if a["kind"] == "hosted_model"]
    asked = [body["model"] for body in fake_openai.chat_requests()]
    # The fine-tuned and the base model answer each question; the judge sees each pair
    # in both orders.
    assert (asked.count(model), asked.count(BASE_MODEL), asked.count(judge)) == (5, 5, 10)

    with open_journal(cli.journal_url) as journal:
        (run,) = journal.runs()
    refused = cli("deploy", run.id)
    assert refused.returncode == 1 and "exact_match" in refused.stderr
    forced = cli("deploy", run.id, "--force", "--reason", "accepted by the support lead")
    assert forced.returncode == 0, forced.stderr

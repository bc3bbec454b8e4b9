"""Evaluation on the local provider, for real: a tiny model trained on this machine answers
the golden set in its job, the gate decides the deploy, `--force` overrides it with an
audit entry, and `tunefleet eval` re-scores with a new golden set without retraining.

The model memorises the quickstart's support answers (``scratch:tiny``, about a minute of
CPU), so questions it was trained on are answered right, and an answer it never saw is out of
its reach by construction: that is the unreachable threshold.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.providers.local.conftest import DATA, processes_under

from tunefleet.state import open_journal
from tunefleet.testing.runs import CliRunner

SEEN = 8
"""Training examples the golden set asks again (the model memorises all 48)."""


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _spec(folder: Path, workdir: Path, thresholds: dict[str, float], name: str) -> Path:
    body = {
        "version": 1,
        "name": "memoriser",
        "base_model": "scratch:tiny",
        "dataset": {"train": "train.jsonl"},
        "method": {"type": "supervised", "adapter": "full"},
        "hyperparameters": {
            # The quickstart's settings: they take scratch:tiny to a training loss under 0.1.
            "epochs": 30,
            "batch_size": 8,
            "learning_rate": 0.003,
            "warmup_ratio": 0.05,
            "scheduler": "cosine",
            "seed": 7,
            "max_seq_length": 256,
        },
        "targets": [{"provider": "local", "options": {"workdir": str(workdir), "device": "cpu"}}],
        "evaluation": {
            "golden_set": "golden.jsonl",
            "metrics": ["exact_match", "token_f1"],
            "thresholds": thresholds,
            "max_tokens": 64,
        },
    }
    path = folder / name
    path.write_text(json.dumps(body))
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[CliRunner, Path, str]:
    """A trained, evaluated run (module-scoped: one training for every test here)."""
    folder = tmp_path_factory.mktemp("evaluated")
    examples = _lines(DATA / "train.jsonl")
    (folder / "train.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples))
    golden = examples[:: len(examples) // SEEN][:SEEN]
    (folder / "golden.jsonl").write_text("".join(json.dumps(e) + "\n" for e in golden))
    workdir = folder / "work"
    cli = CliRunner(folder, f"sqlite:///{folder / 'journal.db'}", timeout=900)
    spec = _spec(folder, workdir, {"token_f1": 0.8}, "tunefleet.yaml")
    trained = cli("run", str(spec))
    assert trained.returncode == 0, trained.stderr
    assert "evaluation passed" in trained.stderr
    return cli, folder, "memoriser"


def test_a_model_that_meets_its_threshold_deploys(project: tuple[CliRunner, Path, str]) -> None:
    cli, folder, run = project
    listed = json.loads(cli("models", "--json").stdout)
    (model,) = listed
    assert model["evaluation"]["passed"] and model["evaluation"]["metrics"]["token_f1"] >= 0.8
    deployed = cli("deploy", run)
    assert deployed.returncode == 0, deployed.stderr
    answered = cli("invoke", run, "How do I reset my password?")
    assert answered.returncode == 0 and answered.stdout.strip()
    assert json.loads(cli("models", "show", model["model"], "--json").stdout)["stage"] == (
        "production"
    )
    assert cli("undeploy", run).returncode == 0
    assert not processes_under(folder / "work" / "endpoints")


def test_an_unreachable_threshold_blocks_the_deploy_until_forced(
    project: tuple[CliRunner, Path, str],
) -> None:
    cli, folder, run = project
    # The same spec, and one golden answer the model never saw: exact_match 1.0 is out of
    # its reach.
    golden = folder / "golden-hard.jsonl"
    examples = _lines(folder / "golden.jsonl")
    unseen = {
        "messages": [
            {"role": "user", "content": "What is the code word?"},
            {"role": "assistant", "content": "Zebra-quantum-hedgehog 4711."},
        ]
    }
    golden.write_text("".join(json.dumps(e) + "\n" for e in [*examples, unseen]))
    hard = _spec(folder, folder / "work", {"exact_match": 1.0}, "hard.yaml")
    body = json.loads(hard.read_text())
    body["evaluation"]["golden_set"] = golden.name
    hard.write_text(json.dumps(body))
    rescored = cli("eval", run, "--spec", str(hard))
    assert rescored.returncode == 1, rescored.stderr
    assert "exact_match = " in rescored.stderr and "below its threshold 1" in rescored.stderr

    refused = cli("deploy", run)
    assert refused.returncode == 1
    assert "is not deployed" in refused.stderr
    assert "exact_match = " in refused.stderr and "threshold 1" in refused.stderr
    assert not processes_under(folder / "work" / "endpoints"), "nothing was served"

    no_reason = cli("deploy", run, "--force")
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    forced = cli("deploy", run, "--force", "--reason", "demo for the release review")
    assert forced.returncode == 0, forced.stderr
    audit = json.loads(cli("audit", "log", run, "--json").stdout)
    entries = [e for e in audit if e["action"] == "deploy.forced"]
    assert len(entries) == 1
    assert entries[0]["detail"]["reason"] == "demo for the release review"
    assert any("exact_match" in line for line in entries[0]["detail"]["failures"])
    assert cli("undeploy", run).returncode == 0


def test_eval_rescores_with_a_new_golden_set_without_retraining(
    project: tuple[CliRunner, Path, str],
) -> None:
    cli, folder, run = project
    jobs = sorted((folder / "work" / "jobs").iterdir())
    subset = folder / "golden-subset.jsonl"
    subset.write_text("".join(json.dumps(e) + "\n" for e in _lines(folder / "golden.jsonl")[:3]))
    rescored = cli("eval", run, "--golden", str(subset), "--json")
    assert rescored.returncode in (0, 1), rescored.stderr
    (evaluation,) = json.loads(rescored.stdout)
    assert evaluation["trigger"] == "eval" and evaluation["result"]["examples"] == 3
    assert evaluation["settings"]["answers_from"] == "answer", "the model answered anew"
    with open_journal(cli.journal_url) as journal:
        (row,) = journal.targets(journal.run(run).id)
        first = journal.evaluations(row.id)[0]
    seen = {e["index"]: e["prediction"] for e in first.result["per_example"]}
    again = {e["index"]: e["prediction"] for e in evaluation["result"]["per_example"]}
    assert again == {i: seen[i] for i in range(3)}, "greedy answers are the job's answers"
    assert sorted((folder / "work" / "jobs").iterdir()) == jobs, "nothing was retrained"
    assert not processes_under(folder / "work")

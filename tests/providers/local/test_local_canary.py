"""A canary on the local provider, for real: three versions of one model trained on this
machine, rolled out to one endpoint through the CLI.

A weak version (one epoch) is served first; a strong one (the quickstart's settings) rolls
out as a canary, takes its share of the traffic, beats the weak one in the shadow
comparison and completes, although the deploy driving it is killed in the middle and run
again; then another weak version is compared with the strong one and rolled back by
itself.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from tests.providers.local.conftest import DATA, processes_under

from tunefleet.state import open_journal
from tunefleet.testing.runs import CliRunner

GOLDEN = 8
"""Golden questions: training questions the strong version has learnt."""


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _spec(folder: Path, tag: str, epochs: int, seed: int) -> Path:
    body = {
        "version": 1,
        "name": "helpdesk",
        "base_model": "scratch:tiny",
        "dataset": {"train": "train.jsonl"},
        "method": {"type": "supervised", "adapter": "full"},
        "hyperparameters": {
            "epochs": epochs,
            "batch_size": 8,
            "learning_rate": 0.003,
            "warmup_ratio": 0.05,
            "scheduler": "cosine",
            "seed": seed,
            "max_seq_length": 256,
        },
        "targets": [
            {"provider": "local", "options": {"workdir": str(folder / "work"), "device": "cpu"}}
        ],
        # No thresholds: each version passes its own gate; the canary compares them.
        "evaluation": {
            "golden_set": "golden.jsonl",
            "metrics": ["token_f1", "rouge_l"],
            "max_tokens": 64,
        },
        "endpoint": {
            "name": "helpdesk",
            "canary": {"traffic_percent": 10, "bake_minutes": 1, "shadow_examples": GOLDEN},
        },
    }
    path = folder / f"{tag}.yaml"
    path.write_text(json.dumps(body))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[CliRunner, Path]:
    """Versions 1 (weak), 2 (strong) and 3 (weak) of model ``helpdesk``."""
    folder = tmp_path_factory.mktemp("canary")
    examples = _lines(DATA / "train.jsonl")
    (folder / "train.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples))
    golden = examples[:: len(examples) // GOLDEN][:GOLDEN]
    (folder / "golden.jsonl").write_text("".join(json.dumps(e) + "\n" for e in golden))
    cli = CliRunner(folder, f"sqlite:///{folder / 'journal.db'}", timeout=900)
    for tag, epochs, seed in (("weak", 1, 5), ("strong", 30, 7), ("weak-again", 1, 9)):
        run = cli("run", str(_spec(folder, tag, epochs, seed)))
        assert run.returncode == 0, run.stderr
    return cli, folder


def _rollout(cli: CliRunner, to_version: int) -> Any:
    with open_journal(cli.journal_url) as journal:
        version = journal.model_version(name="helpdesk", version=to_version)
        assert version is not None
        found = [r for r in journal.rollouts("helpdesk") if r.to_version_id == version.id]
        return found[0] if found else None


def _served_by(url: str, count: int) -> list[str]:
    """Which version answered each of ``count`` requests to the endpoint."""
    answered = []
    for _ in range(count):
        body = json.dumps(
            {
                "model": "helpdesk",
                "messages": [{"role": "user", "content": "How do I reset my password?"}],
                "max_tokens": 8,
                "temperature": 0,
            }
        ).encode()
        request = urllib.request.Request(
            f"{url}/chat/completions", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answered.append(response.headers["X-Tunefleet-Version"])
    return answered


def test_a_better_version_takes_its_share_then_all_even_when_its_deploy_is_killed(
    trained: tuple[CliRunner, Path],
) -> None:
    cli, folder = trained
    first = cli("deploy", "helpdesk:1")
    assert first.returncode == 0, first.stderr
    url = first.stdout.strip().rsplit(" at ", 1)[1]

    # Kill the deploy that drives the canary once it bakes (the shadow comparison starts
    # then), as a machine going away would.
    deploying = cli.start("deploy", "helpdesk:2")
    deadline = time.monotonic() + 600
    while (rollout := _rollout(cli, 2)) is None or rollout.phase != "baking":
        assert deploying.poll() is None, deploying.communicate()
        assert time.monotonic() < deadline, "the canary never started baking"
        time.sleep(0.2)
    deploying.send_signal(signal.SIGKILL)
    deploying.communicate(timeout=30)

    # The endpoint outlives the killed CLI and splits its traffic 90/10.
    served = _served_by(url, 20)
    assert served.count("helpdesk-v2") == 2 and served.count("primary") == 18, served

    again = cli("deploy", "helpdesk:2")
    assert again.returncode == 0, again.stderr
    assert "resuming the rollout" in again.stderr
    assert set(_served_by(url, 5)) == {"helpdesk-v2"}, "all traffic on the new version"
    rollout = _rollout(cli, 2)
    assert rollout.phase == "completed"
    metrics = {m["metric"]: m for m in rollout.comparison["result"]["metrics"]}
    assert metrics["token_f1"]["value"] > metrics["token_f1"]["baseline"], (
        "the strong version beat the weak one on the golden sample"
    )
    with open_journal(cli.journal_url) as journal:
        actions = [e.action for e in journal.audit_entries() if e.action.startswith("rollout.")]
        assert actions.count("rollout.started") == 1, "one rollout, resumed"
        assert actions.count("rollout.completed") == 1
        assert journal.verify_audit().ok
    servers = processes_under(folder / "work" / "endpoints", grace=2)
    assert len(servers) == 1, f"one model server for the endpoint: {servers}"


def test_a_worse_version_is_rolled_back_by_itself(trained: tuple[CliRunner, Path]) -> None:
    cli, folder = trained
    if _rollout(cli, 2) is None or _rollout(cli, 2).phase != "completed":
        pytest.skip("needs the strong version serving: run the module's first test")
    worse = cli("deploy", "helpdesk:3")
    assert worse.returncode == 1
    assert "rolled back" in worse.stderr and "token_f1 fell from" in worse.stderr
    rollout = _rollout(cli, 3)
    assert rollout.phase == "rolled_back"
    shown = json.loads(cli("models", "show", "helpdesk:3", "--json").stdout)
    assert shown["stage"] == "candidate"
    assert json.loads(cli("models", "show", "helpdesk:2", "--json").stdout)["stage"] == (
        "production"
    )
    # The endpoint is the strong version's run's, as it was before the rollout.
    strong_run = json.loads(cli("models", "show", "helpdesk:2", "--json").stdout)["run"]
    served = cli("invoke", strong_run, "How do I reset my password?")
    assert served.returncode == 0, served.stderr
    assert cli("undeploy", strong_run).returncode == 0
    assert not processes_under(folder / "work")

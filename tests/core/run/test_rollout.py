"""Canary rollouts with shadow comparison, on the fake provider's versioned endpoints.

Each spec trains a model whose skill on the golden set is known (``fake``'s first
``skill`` share of answers are right), so whether a canary completes or rolls back is
decided by a real comparison of real answers from the two versions.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.core.run.test_engine import FAST

from tunefleet.errors import DeployBlockedError, StateError
from tunefleet.plugins import Registry
from tunefleet.registry import register, resolve
from tunefleet.run import Engine, serving
from tunefleet.state import Journal, open_journal
from tunefleet.testing import crash, write_entry_point
from tunefleet.testing.runs import CliRunner

QUESTIONS = [
    ("Reset my password", "Use the link on the sign-in page."),
    ("Where is my parcel?", "Track it under Orders, then Track parcel."),
    ("Can I return a gift?", "Yes, within 30 days, with the gift receipt."),
    ("How do I change my address?", "Edit it under Account, then Addresses."),
]


def chat(question: str, answer: str) -> str:
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return json.dumps({"messages": messages}) + "\n"


def write_spec(folder: Path, root: Path, tag: str, options: dict[str, Any]) -> Path:
    """A spec whose model is served on endpoint ``support`` with a canary; ``tag`` makes
    it a run of its own (its training data differs by one line)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "golden.jsonl").write_text("".join(chat(q, a) for q, a in QUESTIONS))
    (folder / f"train-{tag}.jsonl").write_text(
        "".join(chat(q, a) for q, a in QUESTIONS) + chat(f"Which run is this? ({tag})", tag)
    )
    body = {
        "name": "support",
        "base_model": "gpt-4o-mini-2024-07-18",
        "dataset": f"train-{tag}.jsonl",
        "hyperparameters": {"epochs": 1},
        "targets": [{"provider": "fake", "options": {"root": str(root), **options}}],
        "evaluation": {
            "golden_set": "golden.jsonl",
            "metrics": ["exact_match", "token_f1"],
            "thresholds": {"exact_match": 0.25},
        },
        "endpoint": {
            "name": "support",
            "canary": {"traffic_percent": 10, "bake_minutes": 0, "shadow_examples": 4},
        },
    }
    path = folder / f"spec-{tag}.yaml"
    path.write_text(json.dumps(body))
    return path


class Setup:
    def __init__(self, tmp_path: Path, journal: Journal, registry: Registry) -> None:
        self.tmp_path = tmp_path
        self.journal = journal
        self.registry = registry
        self.root = tmp_path / "provider"
        self.notices: list[str] = []

    def trained(self, tag: str, **options: Any) -> str:
        spec = write_spec(self.tmp_path, self.root, tag, options)
        engine = Engine(self.journal, registry=self.registry, settings=FAST)
        started = engine.start(spec)
        assert engine.drive(started.run.id).join(60), "the run did not end"
        return started.run.id

    def deploy(self, run_id: str) -> Any:
        return serving.deploy(
            self.journal,
            self.registry,
            self.journal.run(run_id),
            poll=0.01,
            notice=self.notices.append,
        )

    def served(self) -> dict[str, Any]:
        return json.loads((self.root / "endpoints" / "support.json").read_text())["versions"]


@pytest.fixture
def setup(tmp_path: Path, registry: Registry) -> Iterator[Setup]:
    journal = open_journal(f"sqlite:///{tmp_path / 'journal.db'}")
    yield Setup(tmp_path, journal, registry)
    journal.close()


def actions(journal: Journal) -> list[str]:
    return [e.action for e in journal.audit_entries() if e.action.startswith("rollout.")]


def test_a_version_as_good_as_the_old_one_completes_its_canary(setup: Setup) -> None:
    setup.deploy(setup.trained("one", skill=0.75))
    assert set(setup.served()) == {"primary"}
    setup.deploy(setup.trained("two", skill=1.0))
    assert {name: v["weight"] for name, v in setup.served().items()} == {"support-v2": 100}
    (rollout,) = setup.journal.rollouts("support")
    assert (rollout.phase, rollout.from_label, rollout.to_label) == (
        "completed",
        "primary",
        "support-v2",
    )
    assert rollout.comparison["examples"] == 4
    metrics = {m["metric"]: m for m in rollout.comparison["result"]["metrics"]}
    assert (metrics["exact_match"]["value"], metrics["exact_match"]["baseline"]) == (1.0, 0.75)
    assert actions(setup.journal) == [
        "rollout.started",
        "rollout.added",
        "rollout.canary",
        "rollout.compared",
        "rollout.baked",
        "rollout.completed",
    ]
    assert resolve(setup.journal, "support:2").stage == "production"
    assert resolve(setup.journal, "support:1").stage == "archived"
    # The endpoint now belongs to the new version's run: invoke and undeploy find it there.
    endpoint = serving.endpoint_of(setup.journal, setup.journal.run(rollout_run(setup, 2)))
    assert endpoint.name == "support"
    assert setup.journal.verify_audit().ok


def rollout_run(setup: Setup, version: int) -> str:
    return resolve(setup.journal, f"support:{version}").run_id


def test_a_worse_version_is_rolled_back_by_the_shadow_comparison(setup: Setup) -> None:
    setup.deploy(setup.trained("one", skill=1.0))
    worse = setup.trained("two", skill=0.5)  # passes its own gate (0.25), but is worse
    with pytest.raises(DeployBlockedError) as refused:
        setup.deploy(worse)
    assert "rolled back" in str(refused.value)
    assert "exact_match fell from 1 to 0.5" in str(refused.value)
    assert {name: v["weight"] for name, v in setup.served().items()} == {"primary": 100}
    (rollout,) = setup.journal.rollouts("support")
    assert rollout.phase == "rolled_back" and "exact_match" in (rollout.reason or "")
    assert actions(setup.journal)[-2:] == ["rollout.rolling_back", "rollout.rolled_back"]
    assert resolve(setup.journal, "support:1").stage == "production"
    assert resolve(setup.journal, "support:2").stage == "candidate"
    endpoint = serving.endpoint_of(setup.journal, setup.journal.run(rollout_run(setup, 1)))
    assert endpoint.name == "support"


def test_an_alarm_during_the_bake_rolls_the_canary_back(setup: Setup) -> None:
    setup.deploy(setup.trained("one", skill=1.0))
    with pytest.raises(DeployBlockedError, match="alarm"):
        setup.deploy(setup.trained("two", skill=1.0, alarm=True))
    assert set(setup.served()) == {"primary"}


def test_a_rollout_killed_anywhere_finishes_with_one_deployment_when_deployed_again(
    tmp_path: Path, fake_site: Path
) -> None:
    """SIGKILL at points spread across a rollout (measured on a first one), then `deploy`
    again: the rollout completes once and the endpoint serves the new version alone."""
    write_entry_point(fake_site, "tunefleet-fake", {"fake": "tunefleet.testing.fake"})
    cli = CliRunner(
        tmp_path, f"sqlite:///{tmp_path / 'journal.db'}", {"PYTHONPATH": str(fake_site)}
    )
    root = tmp_path / "provider"
    site = str(crash.site_dir(tmp_path / "crash-site"))
    traced = {"PYTHONPATH": os.pathsep.join([site, str(fake_site)])}
    target = "tunefleet.run.rollout:roll_out"

    def train(tag: str) -> None:
        trained = cli("run", str(write_spec(tmp_path, root, tag, {})))
        assert trained.returncode == 0, trained.stderr

    def served() -> dict[str, int]:
        versions = json.loads((root / "endpoints" / "support.json").read_text())["versions"]
        return {name: version["weight"] for name, version in versions.items()}

    train("v1")
    assert cli("deploy", "support:1").returncode == 0
    train("v2")
    count = tmp_path / "lines"
    measured = cli(
        "deploy",
        "support:2",
        env={**traced, crash.ENV: f"{target}:0", crash.COUNT_ENV: str(count)},
    )
    assert measured.returncode == 0, measured.stderr
    assert served() == {"support-v2": 100}
    lines = int(count.read_text())
    for version, share in ((3, 0.3), (4, 0.7)):
        train(f"v{version}")
        kill_at = max(1, int(lines * share))
        killed = cli(
            "deploy", f"support:{version}", env={**traced, crash.ENV: f"{target}:{kill_at}"}
        )
        assert killed.returncode == -signal.SIGKILL, f"not killed at {kill_at} of {lines}"
        again = cli("deploy", f"support:{version}")
        assert again.returncode == 0, again.stderr
        assert served() == {f"support-v{version}": 100}
    with open_journal(cli.journal_url) as journal:
        rollouts = journal.rollouts("support")
        assert [r.phase for r in rollouts] == ["completed"] * 3, "one rollout per version"
        assert [resolve(journal, f"support:{v}").stage for v in (1, 2, 3, 4)] == [
            "archived",
            "archived",
            "archived",
            "production",
        ]
        assert journal.verify_audit().ok


def test_a_rollout_killed_after_the_old_endpoint_was_replaced_completes_in_place(
    tmp_path: Path, fake_site: Path
) -> None:
    """The last moment of a rollout: the old version's endpoint record already says it was
    replaced. Deploying again must finish this rollout, not deploy the model anew."""
    write_entry_point(fake_site, "tunefleet-fake", {"fake": "tunefleet.testing.fake"})
    cli = CliRunner(
        tmp_path, f"sqlite:///{tmp_path / 'journal.db'}", {"PYTHONPATH": str(fake_site)}
    )
    root = tmp_path / "provider"
    for tag in ("v1", "v2"):
        assert cli("run", str(write_spec(tmp_path, root, tag, {}))).returncode == 0
    assert cli("deploy", "support:1").returncode == 0
    cli.kill_at("rollout-superseded", "deploy", "support:2")
    again = cli("deploy", "support:2")
    assert again.returncode == 0, again.stderr
    versions = json.loads((root / "endpoints" / "support.json").read_text())["versions"]
    assert {name: v["weight"] for name, v in versions.items()} == {"support-v2": 100}
    with open_journal(cli.journal_url) as journal:
        (rollout,) = journal.rollouts("support")
        assert rollout.phase == "completed"
        deploys = [e for e in journal.audit_entries() if e.action == "resource.intent"]
        endpoint_intents = [e for e in deploys if json.loads(e.detail).get("kind") == "endpoint"]
        assert len(endpoint_intents) == 2, "the first deploy and the rollout's: none anew"
        assert journal.verify_audit().ok


def test_a_canary_that_cannot_be_served_rolls_back_and_frees_the_endpoint(
    setup: Setup,
) -> None:
    setup.deploy(setup.trained("one", skill=1.0))
    with pytest.raises(DeployBlockedError, match=r"error: .*cannot be loaded"):
        setup.deploy(setup.trained("two", skill=1.0, unloadable=True))
    assert {name: v["weight"] for name, v in setup.served().items()} == {"primary": 100}
    assert [r.phase for r in setup.journal.rollouts("support")] == ["rolled_back"]
    setup.deploy(setup.trained("three", skill=1.0))  # the endpoint is not stuck
    assert {name: v["weight"] for name, v in setup.served().items()} == {"support-v3": 100}


def test_labels_keep_the_version_whatever_the_name_length() -> None:
    from tunefleet.run.rollout import version_label
    from tunefleet.state.models import ModelVersion

    name = "customer-support-multilingual-llama-3b"  # 38 characters
    labels = {version_label(ModelVersion(name=name, version=v)) for v in (1, 10, 11)}
    assert len(labels) == 3
    assert all(len(label) <= 40 and not label.endswith("-") for label in labels)
    assert version_label(ModelVersion(name=name, version=11)).endswith("-v11")


def test_an_endpoint_of_the_same_name_elsewhere_is_not_taken_for_replaced(
    setup: Setup, tmp_path: Path
) -> None:
    """Two runs serve `support` from two places (here two fake roots, as two regions or
    accounts would be): deploying the second leaves the first on record, undeployable."""
    first = setup.trained("one")
    setup.deploy(first)
    setup.root = tmp_path / "elsewhere"
    spec = write_spec(tmp_path, setup.root, "two", {})
    body = json.loads(spec.read_text())
    del body["endpoint"]["canary"]
    spec.write_text(json.dumps(body))
    engine = Engine(setup.journal, registry=setup.registry, settings=FAST)
    started = engine.start(spec)
    assert engine.drive(started.run.id).join(60)
    setup.deploy(started.run.id)
    endpoint = serving.undeploy(setup.journal, setup.registry, setup.journal.run(first))
    assert endpoint.url and not Path(endpoint.url.removeprefix("fake://")).exists()
    assert (tmp_path / "elsewhere" / "endpoints" / "support.json").exists()


def test_one_rollout_at_a_time_per_endpoint(setup: Setup) -> None:
    """Two deploys racing to roll out two versions: the journal lets one start."""
    runs = [setup.trained(tag) for tag in ("one", "two", "three")]
    rows = [setup.journal.targets(run)[0] for run in runs]
    versions = [
        register(setup.journal, setup.journal.run(r), row)
        for r, row in zip(runs, rows, strict=True)
    ]

    def start(to: int) -> Any:
        return setup.journal.start_rollout(
            endpoint="support",
            provider="fake",
            from_target_id=rows[0].id,
            to_target_id=rows[to].id,
            from_version_id=versions[0].id,
            to_version_id=versions[to].id,
            from_label="primary",
            to_label=f"support-v{to + 1}",
            traffic_percent=10,
        )

    first, started = start(1)
    assert (started and start(1) == (first, False)) or start(1)[1] is False
    with pytest.raises(StateError, match="another rollout to endpoint support is under way"):
        start(2)

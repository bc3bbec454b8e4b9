"""The run engine against the fake provider, on SQLite and on PostgreSQL."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tunefleet.errors import RunFailedError
from tunefleet.plugins import Registry
from tunefleet.run import CallPolicy, Engine, EngineSettings, run_progress
from tunefleet.state import Journal, open_journal

FAST = EngineSettings(
    poll_interval=0.01,
    queue_interval=0.02,
    heartbeat_interval=0.2,
    calls=CallPolicy(attempts=4, backoff=0.001, backoff_cap=0.01, timeout=5),
)
TRAIN = (
    '{"messages": [{"role": "user", "content": "Reset my password"},'
    ' {"role": "assistant", "content": "Use the link on the sign-in page."}]}\n'
)


class Setup:
    def __init__(self, tmp_path: Path, journal: Journal, registry: Registry) -> None:
        self.tmp_path = tmp_path
        self.journal = journal
        self.registry = registry
        self.root = tmp_path / "provider"
        self.notices: list[tuple[str, str]] = []
        self.gate = tmp_path / "hold"
        """Jobs with ``hold_while`` set to this file take no step until a notice starting
        with one of ``release_on`` removes it."""
        self.release_on: tuple[str, ...] = ("queued:",)
        (tmp_path / "train.jsonl").write_text(TRAIN)

    def spec(self, *targets: dict[str, Any], name: str = "demo") -> Path:
        body = {
            "name": name,
            "base_model": "gpt-4o-mini-2024-07-18",
            "dataset": "train.jsonl",
            "hyperparameters": {"epochs": 1},
            "targets": [
                {**t, "options": {"root": str(self.root), **t.get("options", {})}} for t in targets
            ],
        }
        path = self.tmp_path / "spec.yaml"
        path.write_text(json.dumps(body))  # JSON is YAML
        return path

    def engine(self, settings: EngineSettings = FAST) -> Engine:
        return Engine(
            self.journal,
            registry=self.registry,
            settings=settings,
            notice=self._notice,
        )

    def _notice(self, target: str, message: str) -> None:
        self.notices.append((target, message))
        if message.startswith(self.release_on):
            self.gate.unlink(missing_ok=True)

    def apply(self, spec: Path, settings: EngineSettings = FAST, **start: Any) -> str:
        engine = self.engine(settings)
        started = engine.start(spec, **start)
        assert engine.drive(started.run.id, retry_errors=True).join(60), "the run did not end"
        return started.run.id

    def submits(self) -> list[str]:
        """The run keys of the jobs the fake holds (each job file is created once)."""
        return sorted(path.stem for path in (self.root / "jobs").glob("*.json"))

    def provider_events(self, run_key: str) -> list[str]:
        job = json.loads((self.root / "jobs" / f"{run_key}.json").read_text())
        return [event["id"] for event in job["events"]]


@pytest.fixture
def setup(tmp_path: Path, journal_url: str, registry: Registry) -> Iterator[Setup]:
    journal = open_journal(journal_url)
    yield Setup(tmp_path, journal, registry)
    journal.close()


def test_a_run_applies_every_target_concurrently(setup: Setup) -> None:
    spec = setup.spec(
        {"name": "cloud", "provider": "fake", "region": "fake-eu-1", "options": {"steps": 6}},
        {"name": "hosted", "provider": "fake_hosted", "options": {"steps": 6}},
    )
    run_id = setup.apply(spec)
    progress = run_progress(setup.journal, setup.journal.run(run_id))
    assert [(t.name, t.phase, t.state) for t in progress.targets] == [
        ("cloud", "done", "succeeded"),
        ("hosted", "done", "succeeded"),
    ]
    progress.raise_for_outcome()  # nothing to raise
    spans = []
    for row, target in zip(setup.journal.targets(run_id), progress.targets, strict=True):
        stored = setup.journal.events(row.id)
        assert [e.event_id for e in stored] == setup.provider_events(row.run_key)
        assert (target.step, target.total_steps, target.train_loss) == (6, 6, round(2.5 / 7, 4))
        # What a trainer-image cloud writes, and what a hosted API names.
        assert (
            target.artifacts[0]["kind"] == {"cloud": "adapter", "hosted": "hosted_model"}[row.name]
        )
        kinds = {(r.kind, r.status) for r in setup.journal.resources(row.id)}
        assert kinds == {("dataset", "confirmed"), ("job", "confirmed")}
        spans.append((stored[0].time, stored[-1].time))
    (start_a, end_a), (start_b, end_b) = spans
    assert start_a < end_b and start_b < end_a, "the two targets' jobs ran at the same time"
    assert setup.journal.verify_audit().ok


def test_running_the_same_spec_again_reattaches_instead_of_submitting(setup: Setup) -> None:
    spec = setup.spec({"provider": "fake", "region": "fake-eu-1"})
    first = setup.apply(spec)
    engine = setup.engine()
    again = engine.start(spec)
    assert (again.run.id, again.created) == (first, False)
    assert engine.drive(again.run.id).join(10)
    assert len(setup.submits()) == 1
    assert len(list((setup.root / "objects").glob("[0-9a-f]*"))) == 1


def test_adding_a_target_keeps_the_run_and_its_first_job(setup: Setup) -> None:
    first = setup.apply(setup.spec({"name": "one", "provider": "fake", "region": "fake-eu-1"}))
    both = setup.spec(
        {"name": "one", "provider": "fake", "region": "fake-eu-1"},
        {"name": "two", "provider": "fake_hosted"},
    )
    assert setup.apply(both) == first
    assert len(setup.submits()) == 2
    assert [t.name for t in setup.journal.targets(first)] == ["one", "two"]


def test_changed_data_is_a_new_run(setup: Setup) -> None:
    spec = setup.spec({"provider": "fake", "region": "fake-eu-1"})
    first = setup.apply(spec)
    (setup.tmp_path / "train.jsonl").write_text(TRAIN + TRAIN.replace("Reset", "Change"))
    assert setup.apply(spec) != first
    assert len(setup.submits()) == 2


def test_a_provider_at_its_concurrency_limit_queues_the_target(setup: Setup) -> None:
    # The job that takes the slot holds until the other target has queued: without the
    # gate, a target slow to reach its submit finds the first job already done.
    setup.gate.touch()
    limit = {"max_concurrent_jobs": 1, "steps": 5, "hold_while": str(setup.gate)}
    spec = setup.spec(
        {"name": "first", "provider": "fake", "region": "fake-eu-1", "options": limit},
        {"name": "second", "provider": "fake", "region": "fake-west-2", "options": limit},
    )
    run_id = setup.apply(spec)
    states = [
        (t.name, t.state) for t in run_progress(setup.journal, setup.journal.run(run_id)).targets
    ]
    assert states == [("first", "succeeded"), ("second", "succeeded")]
    queued = [e for e in setup.journal.audit_entries(run_id) if e.action == "target.queued"]
    assert queued, "one target waited in the queue"
    assert "options.max_concurrent_jobs is 1" in json.loads(queued[0].detail)["reason"]
    assert len(setup.submits()) == 2


def test_a_queue_has_a_time_limit_the_user_sets(setup: Setup) -> None:
    """A target that waits longer than the queue's limit fails with why it waited, instead
    of sending its create again every interval forever; the job ahead of it is unharmed."""
    setup.gate.touch()  # the slot stays taken until the waiting target has failed
    setup.release_on = ("error:",)
    limit = {"max_concurrent_jobs": 1, "steps": 4, "hold_while": str(setup.gate)}
    spec = setup.spec(
        {"name": "first", "provider": "fake", "region": "fake-eu-1", "options": limit},
        {"name": "second", "provider": "fake", "region": "fake-west-2", "options": limit},
    )
    run_id = setup.apply(spec, dataclasses.replace(FAST, max_queue=0.05))
    # Whichever target takes the only slot first trains; the other times out in the queue.
    ran, waited = sorted(setup.journal.targets(run_id), key=lambda t: t.phase == "error")
    assert (ran.state, waited.phase) == ("succeeded", "error")
    assert "longer than the queue's limit" in (waited.message or "")
    assert "options.max_concurrent_jobs is 1" in (waited.message or "")
    assert len(setup.submits()) == 1, "the queued target never created a job"
    settings = EngineSettings.from_env({"TUNEFLEET_MAX_QUEUE_HOURS": "1.5"})
    assert settings.max_queue == 5400
    assert EngineSettings.from_env({}).max_queue is None


def test_transient_errors_are_retried(setup: Setup) -> None:
    spec = setup.spec(
        {"provider": "fake", "region": "fake-eu-1", "options": {"transient_failures": 2}}
    )
    run_id = setup.apply(spec)
    (target,) = run_progress(setup.journal, setup.journal.run(run_id)).targets
    assert target.state == "succeeded"
    retries = [m for _, m in setup.notices if m.startswith("retrying")]
    assert any("stage: fake: 503 Service Unavailable" in m for m in retries)
    assert any("submit: fake: 503" in m for m in retries)
    assert len(setup.submits()) == 1


def test_when_retries_run_out_the_step_fails_and_resume_finishes_it(setup: Setup) -> None:
    spec = setup.spec(
        {"provider": "fake", "region": "fake-eu-1", "options": {"transient_failures": 3}}
    )
    stingy = EngineSettings(
        poll_interval=0.01, calls=CallPolicy(attempts=2, backoff=0.001, backoff_cap=0.01)
    )
    engine = setup.engine(stingy)
    started = engine.start(spec)
    assert engine.drive(started.run.id).join(30)
    progress = run_progress(setup.journal, started.run)
    (target,) = progress.targets
    assert target.phase == "error"
    assert target.message == "fake: 503 Service Unavailable (stage, failure 2)"
    with pytest.raises(RunFailedError) as failed:
        progress.raise_for_outcome()
    assert failed.value.exit_code == 3 and f"tunefleet resume {started.run.id}" in str(failed.value)
    assert setup.engine().drive(started.run.id, retry_errors=True).join(30)
    (target,) = run_progress(setup.journal, started.run).targets
    assert (target.phase, target.state) == ("done", "succeeded")
    assert len(setup.submits()) == 1


def test_a_provider_that_stops_answering_fails_the_step_in_bounded_time(setup: Setup) -> None:
    spec = setup.spec(
        {
            "provider": "fake",
            "region": "fake-eu-1",
            "options": {"hang_on": ["status"], "hang_seconds": 30},
        }
    )
    impatient = EngineSettings(
        poll_interval=0.01, calls=CallPolicy(attempts=2, backoff=0.001, timeout=0.3)
    )
    engine = setup.engine(impatient)
    started = engine.start(spec)
    began = time.monotonic()
    assert engine.drive(started.run.id).join(10), "the engine hung on a silent provider"
    assert time.monotonic() - began < 5
    (target,) = run_progress(setup.journal, started.run).targets
    assert target.phase == "error"
    assert target.message == "fake: status did not answer within 0.3s"


def test_a_permanent_error_fails_with_the_providers_message(setup: Setup) -> None:
    spec = setup.spec({"provider": "fake", "region": "fake-eu-1"})
    run_id = setup.apply(spec)
    engine = setup.engine()
    # The job disappears at the provider (deleted by hand): polling it is a permanent error.
    for job in (setup.root / "jobs").glob("*.json"):
        job.unlink()
    row = setup.journal.targets(run_id)[0]
    owner = engine.owner
    assert setup.journal.acquire(row.id, owner)
    setup.journal.update_target(row.id, owner, phase="watching", state="running")
    setup.journal.release(row.id, owner)
    assert engine.drive(run_id).join(10)
    (target,) = run_progress(setup.journal, setup.journal.run(run_id)).targets
    assert target.phase == "error" and target.message is not None
    assert target.message.startswith("fake: no job ")


def test_cancel_stops_a_running_job(setup: Setup) -> None:
    spec = setup.spec({"provider": "fake", "region": "fake-eu-1", "options": {"steps": 1000}})
    engine = setup.engine()
    started = engine.start(spec)
    handle = engine.drive(started.run.id)
    deadline = time.monotonic() + 20
    while setup.journal.targets(started.run.id)[0].state != "running":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    (requested,) = engine.cancel(started.run.id)
    assert requested.cancel_requested
    assert handle.join(20)
    progress = run_progress(setup.journal, started.run)
    assert (progress.targets[0].phase, progress.targets[0].state) == ("done", "cancelled")
    with pytest.raises(RunFailedError, match=r"^target 'fake': job cancelled$") as failed:
        progress.raise_for_outcome()
    assert failed.value.exit_code == 1
    actions = [e.action for e in setup.journal.audit_entries(started.run.id)]
    assert "target.cancel_requested" in actions and "job.cancel" in actions


def test_a_target_cancelled_before_submission_is_never_submitted(setup: Setup) -> None:
    spec = setup.spec({"provider": "fake", "region": "fake-eu-1"})
    engine = setup.engine()
    started = engine.start(spec)
    engine.cancel(started.run.id)
    assert engine.drive(started.run.id).join(10)
    (target,) = run_progress(setup.journal, started.run).targets
    assert (target.state, target.message) == ("cancelled", "cancelled before a job was created")
    assert setup.submits() == []


def test_a_new_attempt_trains_again_with_a_new_run_key(setup: Setup) -> None:
    spec = setup.spec({"provider": "fake", "region": "fake-eu-1", "options": {"fail_at_step": 2}})
    run_id = setup.apply(spec)
    (target,) = run_progress(setup.journal, setup.journal.run(run_id)).targets
    assert (target.state, target.message) == ("failed", "diverged at step 2")
    assert setup.apply(spec) == run_id and len(setup.submits()) == 1  # a plain re-run reattaches
    setup.apply(spec, new_attempt=True)
    rows = setup.journal.targets(run_id, all_attempts=True)
    assert [r.attempt for r in rows] == [1, 2]
    assert setup.submits() == sorted([rows[0].run_key, rows[1].run_key])


def test_an_untranslated_provider_exception_fails_the_step_in_its_own_words(setup: Setup) -> None:
    spec = setup.spec({"provider": "fake", "region": "fake-eu-1", "options": {"steps": 50}})
    engine = setup.engine()
    started = engine.start(spec)
    handle = engine.drive(started.run.id)
    deadline = time.monotonic() + 20
    while not list((setup.root / "jobs").glob("*.json")):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    (job,) = (setup.root / "jobs").glob("*.json")
    while handle.alive:  # the provider's own state is corrupt: its code raises
        assert time.monotonic() < deadline
        job.write_text("{not json")
        handle.join(0.01)
    assert handle.crashes == [], "a provider's bug must not kill the engine"
    (target,) = run_progress(setup.journal, started.run).targets
    assert target.phase == "error" and target.message is not None
    assert re.match(r"fake: (status|events) failed: JSONDecodeError: ", target.message)

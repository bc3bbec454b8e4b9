"""Local jobs without training to the end: submission rules, failures with their reasons
and codes, staging errors and event pages."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from tests.providers.local.conftest import DATA, local_spec

from tunefleet.errors import (
    AlreadyExistsError,
    ProviderBusyError,
    ProviderError,
    ProviderNotFoundError,
)
from tunefleet.events import CheckpointEvent, JobState, LogEvent, MetricEvent
from tunefleet.planning import plan_run
from tunefleet.plugins import discover
from tunefleet.provider import (
    ArtifactRef,
    DatasetRef,
    EndpointRef,
    JobRef,
    JobStatus,
    Plan,
    Provider,
    Serving,
)
from tunefleet.spec import parse_spec
from tunefleet_local import _events


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path / "work"


@pytest.fixture
def planned(tmp_path: Path, workdir: Path) -> tuple[Provider, Plan]:
    registry = discover()
    spec = parse_spec(local_spec("local-submit", workdir, max_concurrent_jobs=1), base_dir=tmp_path)
    (plan,) = plan_run(spec, registry=registry).plans
    return registry.provider("local"), plan


def staged(provider: Provider, plan: Plan) -> dict[str, DatasetRef]:
    path = DATA / "train.jsonl"
    return {
        "train": provider.stage(plan, "train", path, hashlib.sha256(path.read_bytes()).hexdigest())
    }


def missing(tmp_path: Path) -> dict[str, DatasetRef]:
    """A train dataset that is not there: the trainer refuses it before importing torch."""
    uri = (tmp_path / "missing.jsonl").as_uri()
    return {
        "train": DatasetRef(provider="local", role="train", uri=uri, sha256="0" * 64, size_bytes=0)
    }


def wait(provider: Provider, job: JobRef, timeout: float = 120) -> JobStatus:
    deadline = time.monotonic() + timeout
    while not (status := provider.status(job)).state.terminal:
        assert time.monotonic() < deadline, f"job still {status.state} after {timeout}s"
        time.sleep(0.1)
    return status


def test_a_trainer_refusal_fails_the_job_with_its_reason(
    planned: tuple[Provider, Plan], tmp_path: Path
) -> None:
    provider, plan = planned
    job = provider.submit(plan, missing(tmp_path), "refused")
    status = wait(provider, job)
    assert status.state == JobState.FAILED
    assert (
        status.message == f"the trainer failed: {tmp_path / 'missing.jsonl'}: no such train dataset"
    )
    events = provider.events(job, None).events
    assert [e.state for e in events if e.kind == "status"] == [
        JobState.QUEUED,
        JobState.RUNNING,
        JobState.FAILED,
    ]
    assert any(isinstance(e, LogEvent) and e.level == "error" for e in events)
    with pytest.raises(ProviderNotFoundError) as caught:
        provider.artifacts(job)
    assert caught.value.code == "manifest_not_found"


def test_a_run_key_trains_once_and_a_busy_machine_is_busy(
    planned: tuple[Provider, Plan], tmp_path: Path
) -> None:
    provider, plan = planned
    first = provider.submit(plan, staged(provider, plan), "first")
    try:
        with pytest.raises(AlreadyExistsError) as exists:
            provider.submit(plan, staged(provider, plan), "first")
        assert exists.value.code == "job_exists"
        with pytest.raises(ProviderBusyError) as busy:
            provider.submit(plan, missing(tmp_path), "second")
        assert busy.value.code == "max_concurrent_jobs"
        assert provider.find(plan, "second") is None, "a refused submit leaves no job"
    finally:
        provider.cancel(first)
    assert wait(provider, first).state == JobState.CANCELLED


def test_what_a_submit_that_died_half_way_left_is_cleared(
    planned: tuple[Provider, Plan], tmp_path: Path, workdir: Path
) -> None:
    provider, plan = planned
    debris = workdir / "jobs" / "debris"
    debris.mkdir(parents=True)
    (debris / "trainer.json").write_text("{}")  # no job.json: nobody can find this job
    assert provider.find(plan, "debris") is None
    job = provider.submit(plan, missing(tmp_path), "debris")
    assert wait(provider, job).state == JobState.FAILED
    assert (debris / "trainer.json").read_text() != "{}"


def test_unsafe_run_keys_are_refused(planned: tuple[Provider, Plan], tmp_path: Path) -> None:
    provider, plan = planned
    for call in (
        lambda: provider.find(plan, "../escape"),
        lambda: provider.submit(plan, missing(tmp_path), "../escape"),
    ):
        with pytest.raises(ProviderError) as caught:
            call()
        assert caught.value.code == "invalid_run_key"


def test_a_job_that_is_gone_is_not_found(tmp_path: Path) -> None:
    provider = discover().provider("local")
    gone = JobRef(provider="local", target="local", id=str(tmp_path / "gone"), run_key="gone")
    for call in (provider.status, provider.cancel, provider.artifacts):
        with pytest.raises(ProviderNotFoundError) as caught:
            call(gone)
        assert caught.value.code == "job_not_found"
    with pytest.raises(LookupError):
        provider.events(gone, None)


def test_staging_refuses_content_that_is_not_what_was_validated(
    planned: tuple[Provider, Plan], tmp_path: Path, workdir: Path
) -> None:
    provider, plan = planned
    with pytest.raises(ProviderError) as changed:
        provider.stage(plan, "train", DATA / "train.jsonl", "0" * 64)
    assert changed.value.code == "content_changed"
    with pytest.raises(ProviderError) as absent:
        provider.stage(plan, "train", tmp_path / "absent.jsonl", "0" * 64)
    assert absent.value.code == "ENOENT"
    assert not list((workdir / "datasets").iterdir()), "no partial copy is left behind"


def test_event_pages_hold_whole_lines_and_cursors_it_handed_out(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    for seq in range(3):
        _events.append(log, _events.status_event(seq, JobState.RUNNING, f"event {seq}"))
    with log.open("a") as handle:
        handle.write('{"kind": "log", "id": "e00')  # an event being written
    assert _events.count(log) == 3
    first = _events.page("local", log, None, limit=2)
    assert [e.id for e in first.events] == ["e0000000", "e0000001"] and first.cursor == "2"
    rest = _events.page("local", log, first.cursor, limit=2)
    assert [e.id for e in rest.events] == ["e0000002"] and rest.cursor == "3"
    assert not _events.page("local", log, rest.cursor).events
    assert _events.page("local", log, "1", limit=1).events == first.events[1:]
    for cursor in ("x", "-1", "²"):
        with pytest.raises(ProviderError) as caught:
            _events.page("local", log, cursor)
        assert caught.value.code == "invalid_cursor"


def test_trainer_lines_become_events_as_the_kit_reads_them() -> None:
    metric = _events.trainer_event(
        5, 'tunefleet.metric {"step":3,"total_steps":9,"train_loss":1.5}'
    )
    assert isinstance(metric, MetricEvent)
    assert (metric.id, metric.step, metric.train_loss) == ("e0000005", 3, 1.5)
    checkpoint = _events.trainer_event(
        6, 'tunefleet.checkpoint {"step":9,"path":"/c/checkpoint-9"}'
    )
    assert isinstance(checkpoint, CheckpointEvent) and checkpoint.uri == "/c/checkpoint-9"
    crash = _events.trainer_event(7, "Traceback (most recent call last):")
    assert isinstance(crash, LogEvent) and crash.level == "error"
    malformed = _events.trainer_event(8, "tunefleet.metric {not json")
    assert isinstance(malformed, LogEvent) and malformed.level == "info"


def test_a_model_the_server_cannot_load_fails_the_deploy_with_its_reason(
    planned: tuple[Provider, Plan], tmp_path: Path, workdir: Path
) -> None:
    provider, plan = planned
    assert isinstance(provider, Serving)
    output = tmp_path / "output"
    output.mkdir()
    (output / "manifest.json").write_text("{}")  # a manifest without artifacts
    artifact = ArtifactRef(kind="adapter", uri=(output / "adapter").as_uri())
    with pytest.raises(ProviderError) as caught:
        provider.deploy(plan, artifact, "unloadable")
    assert caught.value.code == "server_exited"
    assert "no readable training manifest" in str(caught.value)
    assert not (workdir / "endpoints" / "unloadable.json").exists()


def test_what_is_not_a_local_training_output_is_not_deployed(
    planned: tuple[Provider, Plan], tmp_path: Path
) -> None:
    provider, plan = planned
    assert isinstance(provider, Serving)
    elsewhere = ArtifactRef(kind="hosted_model", uri="s3://bucket/model.tar.gz")
    nothing = ArtifactRef(kind="adapter", uri=(tmp_path / "adapter").as_uri())
    for artifact, code in ((elsewhere, "not_local"), (nothing, "not_a_training_output")):
        with pytest.raises(ProviderError) as caught:
            provider.deploy(plan, artifact, "refused")
        assert caught.value.code == code
    with pytest.raises(ProviderError) as bad_name:
        provider.deploy(plan, nothing, "../escape")
    assert bad_name.value.code == "invalid_name"
    stray = EndpointRef(provider="local", name="stray", id=str(tmp_path / "stray.json"))
    with pytest.raises(ProviderError) as not_a_record:
        provider.delete_endpoint(stray)
    assert not_a_record.value.code == "not_local"

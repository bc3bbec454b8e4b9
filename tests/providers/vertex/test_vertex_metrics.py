"""A Gemini tuning job's training metrics, read by the provider from where Vertex publishes
them (the job's experiment context, its backing TensorBoard's run, the run's time series)
on the fake Vertex AI: falling training loss, validation loss with validation data, stable
ids, and nothing repeated after a cursor."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
from tests.providers.vertex.conftest import gemini_spec
from tests.providers.vertex.discovery_contract import violations
from tests.providers.vertex.fake_vertex import FakeVertex
from tests.providers.vertex.gcs import FakeGcs

from tunefleet.errors import ProviderError
from tunefleet.events import MetricEvent
from tunefleet.planning import plan_run
from tunefleet.plugins import discover
from tunefleet.provider import JobRef
from tunefleet.spec import parse_spec
from tunefleet_vertex import _jobs
from tunefleet_vertex._client import Where
from tunefleet_vertex._metrics import MAX_DATA_POINTS, tuning_metrics
from tunefleet_vertex.provider import VertexProvider

PROVIDER = VertexProvider()
PREFIX = "GoogleCloudAiplatformV1"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def submitted(fake: FakeVertex, gcs: FakeGcs, *, validation: bool) -> JobRef:
    """A Gemini tuning job of the quickstart data, staged and created by the provider; the
    fake moves it on only when the test says (``advance``)."""
    fake.auto_advance = False
    spec = parse_spec(gemini_spec(fake, gcs, validation=validation))
    (plan,) = plan_run(spec, registry=discover()).plans
    assert plan.ok, plan.unmet
    roles = {"train": spec.dataset.train}
    if validation:
        assert spec.dataset.validation is not None
        roles["validation"] = spec.dataset.validation
    datasets = {}
    for role, location in roles.items():
        path = Path(spec.resolve_location(location))
        datasets[role] = PROVIDER.stage(plan, role, path, _sha256(path))
    return PROVIDER.submit(plan, datasets, f"metrics-{time.time_ns()}")


def job_id(ref: JobRef) -> str:
    return ref.id.rsplit("/", 1)[-1]


def facts(ref: JobRef) -> dict[str, Any]:
    """What the provider reads of the job, with its experiment (the wiring adds it)."""
    kind, job = _jobs._current(ref)
    return {**_jobs._facts(kind, job), "experiment": job.experiment}


def metrics(ref: JobRef, after_step: int = -1) -> list[MetricEvent]:
    return tuning_metrics(Where.from_scope(ref.scope), facts(ref), after_step)


def test_training_metrics_fall_step_by_step_and_resume_after_a_cursor(
    fake_vertex: FakeVertex, gcs: FakeGcs, signed_in: dict[str, str]
) -> None:
    ref = submitted(fake_vertex, gcs, validation=True)
    assert metrics(ref) == [], "a pending job has no experiment yet"

    fake_vertex.advance(job_id(ref), to="JOB_STATE_RUNNING")
    published = fake_vertex.tuning_metrics(job_id(ref))
    train = dict(published["/train_total_loss"])
    evaluated = dict(published["/eval_total_loss"])
    assert train and evaluated, "the fake publishes part of the run while it runs"

    running = metrics(ref)
    steps = [event.step for event in running]
    assert steps == sorted(train)[:-1], "every step but the newest, held back while running"
    assert [event.id for event in running] == [f"metric-{step}" for step in steps]
    losses = [event.train_loss for event in running]
    assert all(loss is not None for loss in losses)
    assert losses == sorted(losses, reverse=True) and losses[0] > losses[-1], "loss falls"
    for event in running:
        assert event.train_loss == pytest.approx(train[event.step])
        assert event.train_token_accuracy is not None and 0 < event.train_token_accuracy < 1
        assert event.valid_loss == (
            pytest.approx(evaluated[event.step]) if event.step in evaluated else None
        )
        assert (event.valid_token_accuracy is None) == (event.step not in evaluated)
    total = int(facts(ref)["stats"]["tuning_step_count"])
    assert all(event.total_steps == total for event in running)

    fake_vertex.advance(job_id(ref), to="JOB_STATE_SUCCEEDED")
    cursor = running[-1].step
    rest = metrics(ref, after_step=cursor)
    assert rest and rest[0].step == cursor + 1, "nothing repeated, nothing skipped"
    assert rest[-1].step == total, "an ended job's last step is reported too"
    assert metrics(ref, after_step=rest[-1].step) == []

    everything = metrics(ref)
    assert [e.id for e in everything] == [e.id for e in running + rest], "ids are stable"
    assert [e.train_loss for e in everything] == [e.train_loss for e in running + rest]
    final_eval = dict(fake_vertex.tuning_metrics(job_id(ref))["/eval_total_loss"])
    assert [e.step for e in everything if e.valid_loss is not None] == sorted(final_eval)
    assert everything[-1].valid_loss is not None, "Vertex evaluates at the last step"
    assert everything[-1].valid_loss < everything[0].train_loss

    reads = [r for r in fake_vertex.requests if r.path.endswith(":read")]
    assert reads and all(r.query.get("maxDataPoints") == str(MAX_DATA_POINTS) for r in reads)
    (listed, *_) = [r for r in fake_vertex.requests if r.path.endswith("/contexts")]
    assert listed.query["filter"] == (
        f'schema_title="system.ExperimentRun" AND parent_contexts:"{facts(ref)["experiment"]}"'
    )


def test_without_validation_data_there_is_no_validation_loss(
    fake_vertex: FakeVertex, gcs: FakeGcs, signed_in: dict[str, str]
) -> None:
    ref = submitted(fake_vertex, gcs, validation=False)
    fake_vertex.advance(job_id(ref), to="JOB_STATE_SUCCEEDED")
    assert not any(name.startswith("/eval_") for name in fake_vertex.tuning_metrics(job_id(ref)))
    events = metrics(ref)
    assert events and [e.step for e in events] == list(range(1, len(events) + 1))
    assert all(e.valid_loss is None and e.valid_token_accuracy is None for e in events)
    assert events[0].train_loss is not None and events[-1].train_loss is not None
    assert events[-1].train_loss < events[0].train_loss


def test_what_the_fake_publishes_is_what_the_discovery_document_describes(
    fake_vertex: FakeVertex, gcs: FakeGcs, signed_in: dict[str, str]
) -> None:
    ref = submitted(fake_vertex, gcs, validation=True)
    fake_vertex.advance(job_id(ref), to="JOB_STATE_SUCCEEDED")
    experiment = str(facts(ref)["experiment"])
    context = fake_vertex.contexts[experiment.rsplit("/", 1)[-1]]
    assert context["schemaTitle"] == "system.Experiment"
    assert context["metadata"]["backing_tensorboard_resource"]
    for found in fake_vertex.contexts.values():
        assert not violations(PREFIX + "Context", found, response=True)
    for series in fake_vertex.time_series.values():
        for entry in series.values():
            assert not violations(
                PREFIX + "TensorboardTimeSeries", entry["resource"], response=True
            )
            data = {
                "tensorboardTimeSeriesId": "1",
                "valueType": "SCALAR",
                "values": entry["points"],
            }
            assert not violations(PREFIX + "TimeSeriesData", data, response=True)


def test_a_run_named_by_its_whole_context_id_is_found_too(
    fake_vertex: FakeVertex, gcs: FakeGcs, signed_in: dict[str, str]
) -> None:
    """Older revisions of Google's tuning notebooks name the TensorBoard run by the run
    context's whole ID; the reader tries that second."""
    ref = submitted(fake_vertex, gcs, validation=False)
    fake_vertex.advance(job_id(ref), to="JOB_STATE_SUCCEEDED")
    ((run, series),) = fake_vertex.time_series.items()
    experiments, _, run_id = run.rpartition("/runs/")
    experiment_id = experiments.rsplit("/", 1)[-1]
    whole = f"{experiments}/runs/{experiment_id}-{run_id}"
    for entry in series.values():
        entry["resource"]["name"] = entry["resource"]["name"].replace(run, whole)
    fake_vertex.time_series = {whole: series}
    events = metrics(ref)
    assert events and events[-1].train_loss is not None


def test_google_errors_are_tunefleets(
    fake_vertex: FakeVertex, gcs: FakeGcs, signed_in: dict[str, str]
) -> None:
    ref = submitted(fake_vertex, gcs, validation=False)
    fake_vertex.advance(job_id(ref), to="JOB_STATE_RUNNING")
    fake_vertex.fail_next(
        "GET", r"/timeSeries/[^/]+:read$", 403, "PERMISSION_DENIED", "Permission denied."
    )
    with pytest.raises(ProviderError) as raised:
        metrics(ref)
    assert raised.value.code == "PERMISSION_DENIED"

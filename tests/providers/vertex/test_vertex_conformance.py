"""The Vertex provider passes the provider conformance suite against the fake Vertex AI
and fake-gcs-server, in both modes: custom jobs and Gemini tuning."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from tests.providers.vertex.conftest import gemini_spec, vertex_spec
from tests.providers.vertex.fake_vertex import FakeVertex
from tests.providers.vertex.gcs import FakeGcs

from tunefleet.planning import plan_run
from tunefleet.plugins import discover
from tunefleet.spec import parse_spec
from tunefleet.testing.conformance import ConformanceHarness, ProviderConformance
from tunefleet_vertex.provider import VertexProvider


class TestVertexCustomJobConformance(ProviderConformance):
    @pytest.fixture
    def harness(
        self, fake_vertex: FakeVertex, gcs: FakeGcs, signed_in: dict[str, str]
    ) -> ConformanceHarness:
        return ConformanceHarness(
            provider=VertexProvider(),
            spec=parse_spec(vertex_spec(fake_vertex, gcs, validation=False)),
            registry=discover(),
            timeout=60,
        )


class TestVertexTuningConformance(ProviderConformance):
    @pytest.fixture
    def harness(
        self, fake_vertex: FakeVertex, gcs: FakeGcs, signed_in: dict[str, str]
    ) -> ConformanceHarness:
        return ConformanceHarness(
            provider=VertexProvider(),
            spec=parse_spec(gemini_spec(fake_vertex, gcs, validation=False)),
            registry=discover(),
            timeout=60,
        )


def test_a_create_whose_answer_was_lost_is_found_not_made_twice(
    fake_vertex: FakeVertex, gcs: FakeGcs, signed_in: dict[str, str]
) -> None:
    """customJobs.create takes no ID of the caller's: a job created whose answer was lost
    (a 504 on the way back) is found by its run-key label before the create is tried
    again, so a retried submit makes no second billed job."""
    provider = VertexProvider()
    spec = parse_spec(vertex_spec(fake_vertex, gcs, validation=False))
    (plan,) = plan_run(spec, registry=discover()).plans
    path = Path(spec.resolve_location(spec.dataset.train))
    staged = {
        "train": provider.stage(plan, "train", path, hashlib.sha256(path.read_bytes()).hexdigest())
    }
    fake_vertex.fail_next(
        "POST", r"/customJobs$", 504, "DEADLINE_EXCEEDED", "Deadline exceeded", after=True
    )
    job = provider.submit(plan, staged, "a" * 32)
    assert len(fake_vertex.custom_jobs) == 1
    assert provider.submit(plan, staged, "a" * 32) == job, "a second submit adopts it"
    assert len(fake_vertex.custom_jobs) == 1
    provider.cancel(job)

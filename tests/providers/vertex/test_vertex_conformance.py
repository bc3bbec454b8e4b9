"""The Vertex provider passes the provider conformance suite against the fake Vertex AI
and fake-gcs-server, in both modes: custom jobs and Gemini tuning."""

from __future__ import annotations

import pytest
from tests.providers.vertex.conftest import gemini_spec, vertex_spec
from tests.providers.vertex.fake_vertex import FakeVertex
from tests.providers.vertex.gcs import FakeGcs

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

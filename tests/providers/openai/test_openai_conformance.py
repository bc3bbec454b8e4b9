"""The OpenAI provider passes the provider conformance suite against the fake service."""

from __future__ import annotations

import pytest
from tests.providers.openai.conftest import openai_spec
from tests.providers.openai.fake_openai import FakeOpenAI

from tunefleet.plugins import discover
from tunefleet.spec import parse_spec
from tunefleet.testing.conformance import ConformanceHarness, ProviderConformance
from tunefleet_openai.provider import OpenAIProvider


class TestOpenAIConformance(ProviderConformance):
    @pytest.fixture
    def harness(self, fake_openai: FakeOpenAI) -> ConformanceHarness:
        return ConformanceHarness(
            provider=OpenAIProvider(),
            spec=parse_spec(openai_spec(fake_openai, validation=False)),
            registry=discover(),
            timeout=30,
        )

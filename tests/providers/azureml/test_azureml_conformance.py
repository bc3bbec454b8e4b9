"""The Azure ML provider passes the provider conformance suite against the fake control
plane and Azurite."""

from __future__ import annotations

import pytest
from tests.providers.azureml.azurite import Azurite
from tests.providers.azureml.conftest import azureml_spec
from tests.providers.azureml.fake_arm import FakeAzureML

from tunefleet.plugins import discover
from tunefleet.spec import parse_spec
from tunefleet.testing.conformance import ConformanceHarness, ProviderConformance
from tunefleet_azureml.provider import AzureMLProvider


class TestAzureMLConformance(ProviderConformance):
    @pytest.fixture
    def harness(self, fake_azureml: FakeAzureML, azurite: Azurite) -> ConformanceHarness:
        return ConformanceHarness(
            provider=AzureMLProvider(),
            spec=parse_spec(azureml_spec(fake_azureml, azurite, validation=False)),
            registry=discover(),
            timeout=60,
        )

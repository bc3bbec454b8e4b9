"""The SageMaker provider passes the provider conformance suite against moto."""

from __future__ import annotations

import pytest
from tests.providers.sagemaker.conftest import Aws, sagemaker_spec

from tunefleet.plugins import discover
from tunefleet.spec import parse_spec
from tunefleet.testing.conformance import ConformanceHarness, ProviderConformance
from tunefleet_sagemaker.provider import SageMakerProvider


class TestSageMakerConformance(ProviderConformance):
    @pytest.fixture
    def harness(self, aws: Aws) -> ConformanceHarness:
        aws.endpoint_results(
            {
                "choices": [
                    {"message": {"role": "assistant", "content": "Hello."}, "finish_reason": "stop"}
                ]
            }
        )
        return ConformanceHarness(
            provider=SageMakerProvider(),
            spec=parse_spec(sagemaker_spec(aws, validation=False)),
            registry=discover(),
            timeout=60,
        )

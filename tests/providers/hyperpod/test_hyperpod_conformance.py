"""The HyperPod provider passes the provider conformance suite on an EKS-orchestrated
cluster: moto for AWS, a real kube-apiserver for the cluster's EKS API (reached with a
token signed from the AWS credentials, as on EKS), the operator and nodes played."""

from __future__ import annotations

import pytest
from tests.providers.hyperpod.conftest import Aws, Training, hyperpod_spec

from tunefleet.plugins import discover
from tunefleet.spec import parse_spec
from tunefleet.testing.conformance import ConformanceHarness, ProviderConformance
from tunefleet_sagemaker.hyperpod.provider import HyperPodProvider


class TestHyperPodConformance(ProviderConformance):
    @pytest.fixture
    def harness(self, aws: Aws, training: Training) -> ConformanceHarness:
        return ConformanceHarness(
            provider=HyperPodProvider(),
            spec=parse_spec(hyperpod_spec(validation=False)),
            registry=discover(),
            advance=training.advance,
            timeout=60,
        )

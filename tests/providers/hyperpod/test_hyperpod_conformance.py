"""The HyperPod provider passes the provider conformance suite on both orchestrators: on an
EKS-orchestrated cluster (moto for AWS, a real kube-apiserver for the cluster's EKS API
reached with a token signed from the AWS credentials as on EKS, the operator and nodes
played) and on a Slurm-orchestrated one (a real Slurm)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from tests.providers.hyperpod.autoplay import BackgroundOperator
from tests.providers.hyperpod.conftest import Aws, Training, hyperpod_spec, slurm_spec
from tests.providers.hyperpod.inference import InferenceOperator, clear_endpoint_configs
from tests.providers.hyperpod.kube import KubeCluster, Operator
from tests.providers.hyperpod.slurm import SlurmCluster

from tunefleet.plugins import discover
from tunefleet.spec import parse_spec
from tunefleet.testing.conformance import ConformanceHarness, ProviderConformance
from tunefleet_sagemaker.hyperpod.provider import HyperPodProvider


class TestHyperPodConformance(ProviderConformance):
    """Jobs are stepped by the suite (``advance``); the inference operator serves the
    endpoint in the background while ``deploy`` waits for it."""

    @pytest.fixture
    def harness(
        self, aws: Aws, kube: KubeCluster, operator: Operator, training: Training
    ) -> Iterator[ConformanceHarness]:
        clear_endpoint_configs(kube, "default")
        inference = InferenceOperator(kube, aws.client("sagemaker"))
        with BackgroundOperator(operator, inference=inference, play_jobs=False):
            yield ConformanceHarness(
                provider=HyperPodProvider(),
                spec=parse_spec(hyperpod_spec(validation=False, endpoint={})),
                registry=discover(),
                advance=training.advance,
                timeout=60,
            )
        clear_endpoint_configs(kube, "default")


class TestHyperPodSlurmConformance(ProviderConformance):
    """The same suite on a Slurm-orchestrated cluster: a real Slurm on this host, the real
    trainer (one node, one epoch, to keep it short), commands run here as on the head node."""

    @pytest.fixture
    def harness(self, slurm_aws: Aws, slurm: SlurmCluster) -> ConformanceHarness:
        text = json.loads(slurm_spec(slurm, validation=False))
        text["targets"][0]["compute"]["instance_count"] = 1
        text["hyperparameters"]["epochs"] = 1
        return ConformanceHarness(
            provider=HyperPodProvider(),
            spec=parse_spec(json.dumps(text)),
            registry=discover(),
            poll_interval=0.5,
            timeout=240,
            cannot_serve="a Slurm cluster has no inference operator (plan refuses endpoints)",
        )

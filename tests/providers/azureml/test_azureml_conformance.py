"""The Azure ML provider passes the provider conformance suite against the fake control
plane and Azurite."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from tests.providers.azureml.azurite import Azurite
from tests.providers.azureml.conftest import azureml_spec
from tests.providers.azureml.fake_arm import JOB_IMMUTABLE, FakeAzureML

from tunefleet.errors import ProviderError
from tunefleet.planning import plan_run
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


def test_a_submit_azure_refuses_as_a_changed_job_adopts_the_job_of_its_run_key(
    fake_azureml: FakeAzureML, azurite: Azurite
) -> None:
    """Azure ML answers a PUT of an existing job with UserError (JobPropertyImmutable), not
    409; azure-core sends a PUT again by itself after a lost answer. The job of that name
    carrying this run key is this run's; another run key's is not adopted."""
    provider = AzureMLProvider()
    spec = parse_spec(azureml_spec(fake_azureml, azurite, validation=False))
    (plan,) = plan_run(spec, registry=discover()).plans
    path = Path(spec.resolve_location(spec.dataset.train))
    staged = {
        "train": provider.stage(plan, "train", path, hashlib.sha256(path.read_bytes()).hexdigest())
    }
    first = provider.submit(plan, staged, "a" * 32)
    fake_azureml.fail_next(
        "PUT", r"/jobs/", 400, "UserError", JOB_IMMUTABLE.format(property="Inputs")
    )
    again = provider.submit(plan, staged, "a" * 32)
    assert again.id == first.id and len(fake_azureml.jobs) == 1
    fake_azureml.jobs[first.id].properties["tags"]["tunefleet:run-key"] = "b" * 32
    fake_azureml.fail_next(
        "PUT", r"/jobs/", 400, "UserError", JOB_IMMUTABLE.format(property="Inputs")
    )
    with pytest.raises(ProviderError) as refused:
        provider.submit(plan, staged, "a" * 32)
    assert refused.value.code == "UserError"
    provider.cancel(first)

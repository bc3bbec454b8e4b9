"""Fixtures of the Azure ML provider's tests: Azurite (the real blob server), the fake Azure
ML and Azure Monitor control planes, a signed-in ``az``, and specs that target them.

Everything speaks TLS with certificates of one throwaway CA, which ``REQUESTS_CA_BUNDLE``
and ``SSL_CERT_FILE`` point at: azure-core sends bearer tokens over https only, as Azure
requires. ``DefaultAzureCredential`` signs in through the fake ``az`` on ``PATH``, the
source it falls back to on a developer's machine. Nothing reaches an Azure host: every URL
the provider uses comes from the options (the fake's and Azurite's) or from the fake's own
answers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from tests.providers.azureml.azurite import (
    Azurite,
    ensure_azurite,
    install_fake_az,
    start_azurite,
    why_unavailable,
)
from tests.providers.azureml.fake_arm import (
    RESOURCE_GROUP,
    SUBSCRIPTION,
    TENANT,
    WORKSPACE,
    FakeAzureML,
)

DATA = Path(__file__).parents[3] / "examples" / "quickstart" / "data"
IMAGE = "acme.azurecr.io/tunefleet-trainer:0.1.0"
REGION = "swedencentral"


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def azurite(ca: trustme.CA, tmp_path: Path) -> Iterator[Azurite]:
    """Azurite over HTTPS with OAuth, in memory, one per test (under a second to start):
    a test never finds what another staged."""
    if ensure_azurite() is None:
        pytest.skip(f"Azurite is not available: {why_unavailable()}")
    with start_azurite(ca, tmp_path / "azurite") as server:
        yield server


@pytest.fixture
def signed_in(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of a developer signed in with ``az login`` who trusts the test CA;
    also what a ``tunefleet`` subprocess needs. Returned as a dict for subprocesses."""
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    folder = tmp_path / "bin"
    install_fake_az(folder, subscription=SUBSCRIPTION, tenant=TENANT)
    env = {
        "PATH": f"{folder}{os.pathsep}{os.environ.get('PATH', '')}",
        "REQUESTS_CA_BUNDLE": str(bundle),
        "SSL_CERT_FILE": str(bundle),
        # The fake finishes a long-running operation on its first poll.
        "TUNEFLEET_AZUREML_POLL_SECONDS": "0.05",
    }
    for variable in (
        "AZURE_CLIENT_ID",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_FEDERATED_TOKEN_FILE",
        "IDENTITY_ENDPOINT",
        "MSI_ENDPOINT",
    ):
        monkeypatch.delenv(variable, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def fake_azureml(
    ca: trustme.CA, tmp_path: Path, azurite: Azurite, signed_in: dict[str, str]
) -> Iterator[FakeAzureML]:
    """The fake control plane; a test fails at teardown if the provider sent something
    Azure's models or rules do not allow."""
    server = FakeAzureML(ca=ca, folder=tmp_path / "fake-azureml", blob=azurite).start()
    try:
        yield server
    finally:
        server.stop()
    assert not server.violations, "\n".join(server.violations)
    assert not server.answer_violations, "\n".join(server.answer_violations)


def azureml_options(fake: FakeAzureML, azurite: Azurite, **extra: Any) -> dict[str, Any]:
    """Options of a target on the fake's workspace, staging to Azurite."""
    return {
        "subscription_id": SUBSCRIPTION,
        "resource_group": RESOURCE_GROUP,
        "workspace": WORKSPACE,
        "management_url": fake.url,
        "storage_account_url": azurite.url,
        "training_image": IMAGE,
        "instance_type": "Standard_NC24ads_A100_v4",
        **extra,
    }


def azureml_spec(
    fake: FakeAzureML,
    azurite: Azurite,
    *,
    options: dict[str, Any] | None = None,
    validation: bool = True,
    **top: Any,
) -> str:
    """A spec (JSON is YAML) training scratch:tiny on the quickstart data on the fake."""
    body: dict[str, Any] = {
        "version": 1,
        "name": "support-bot",
        "base_model": "scratch:tiny",
        "dataset": {
            "train": str(DATA / "train.jsonl"),
            "validation": str(DATA / "validation.jsonl"),
        },
        "method": {"type": "supervised", "adapter": "lora"},
        "hyperparameters": {"epochs": 2, "batch_size": 8, "learning_rate": 0.0002},
        "targets": [
            {
                "provider": "azureml",
                "region": REGION,
                "options": azureml_options(fake, azurite, **(options or {})),
            }
        ],
    }
    if not validation:
        del body["dataset"]["validation"]
    body.update(top)
    return json.dumps(body)


EVALUATION: dict[str, Any] = {
    "golden_set": str(DATA / "validation.jsonl"),
    "metrics": ["exact_match", "token_f1"],
    "max_examples": 3,
}
"""The quickstart's validation examples serve as a golden set: chat examples whose last
turn is the answer expected."""

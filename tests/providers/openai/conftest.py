"""Fixtures of the OpenAI provider's tests: the fake service and specs that target it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.openapi_contract import OPENAI_SPEC, load_contract
from tests.providers.openai.fake_azure import (
    RESOURCE,
    RESOURCE_GROUP,
    SUBSCRIPTION,
    FakeAzureManagement,
    install_fake_az,
)
from tests.providers.openai.fake_openai import API_KEY, FakeOpenAI

DATA = Path(__file__).parents[3] / "examples" / "quickstart" / "data"
BASE_MODEL = "gpt-4o-mini-2024-07-18"


def _amend(document: dict[str, Any]) -> None:
    # FineTuningJob.status lists no "paused", yet pauseFineTuningJob's own example in the
    # same document answers with it: the service has the state, the schema lags behind.
    status = document["components"]["schemas"]["FineTuningJob"]["properties"]["status"]
    status["enum"].append("paused")


@pytest.fixture
def fake_openai(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    """The fake OpenAI service, with the SDK's credentials pointing at it.

    Each exchange is checked against OpenAI's API description when the file is there; a
    test fails at teardown if one did not conform.
    """
    server = FakeOpenAI(load_contract(OPENAI_SPEC, amend=_amend)).start()
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    for variable in ("OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(variable, raising=False)
    try:
        yield server
    finally:
        server.stop()
    assert not server.violations, "\n".join(server.violations)


def openai_spec(
    server: FakeOpenAI,
    *,
    options: dict[str, Any] | None = None,
    validation: bool = True,
    **top: Any,
) -> str:
    """A spec (JSON is YAML) fine-tuning gpt-4o-mini on the quickstart data via ``server``."""
    body: dict[str, Any] = {
        "version": 1,
        "name": "support-bot",
        "base_model": BASE_MODEL,
        "dataset": {"train": str(DATA / "train.jsonl")},
        "method": {"type": "supervised"},
        "hyperparameters": {
            "epochs": 3,
            "batch_size": 8,
            "learning_rate_multiplier": 0.5,
            "seed": 7,
        },
        "targets": [
            {"provider": "openai", "options": {"base_url": server.base_url, **(options or {})}}
        ],
    }
    if validation:
        body["dataset"]["validation"] = str(DATA / "validation.jsonl")
    body.update(top)
    return json.dumps(body)


@pytest.fixture
def fake_azure(
    fake_openai: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeAzureManagement]:
    """A fake Resource Manager for an Azure OpenAI resource in swedencentral whose data
    plane is ``fake_openai``, and a signed-in `az` for DefaultAzureCredential to use."""
    arm = FakeAzureManagement(fake_openai, "swedencentral", tmp_path).start()
    bin_dir = tmp_path / "bin"
    install_fake_az(bin_dir)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("AZURE_TOKEN_CREDENTIALS", "AzureCliCredential")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(arm.ca_path))
    monkeypatch.delenv("AZURE_OPENAI_API_KEY", raising=False)
    try:
        yield arm
    finally:
        arm.stop()


def azure_spec(
    server: FakeOpenAI,
    arm: FakeAzureManagement,
    *,
    region: str = "swedencentral",
    options: dict[str, Any] | None = None,
    **top: Any,
) -> str:
    """Like :func:`openai_spec`, on the azure flavour against ``server`` and ``arm``."""
    body = json.loads(openai_spec(server, **top))
    body["targets"] = [
        {
            "name": "azure",
            "provider": "openai",
            "region": region,
            "options": {
                "flavor": "azure",
                "azure_subscription_id": SUBSCRIPTION,
                "azure_resource_group": RESOURCE_GROUP,
                "azure_resource": RESOURCE,
                "azure_endpoint": server.base_url.removesuffix("/v1"),
                "azure_management_url": arm.url,
                **(options or {}),
            },
        }
    ]
    return json.dumps(body)

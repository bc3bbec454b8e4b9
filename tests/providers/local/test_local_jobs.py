"""Local jobs through the CLI and the engine: progress from metric lines, cancel, serving."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.openapi_contract import OPENAI_SPEC, load_contract

from tunefleet.errors import ProviderNotFoundError
from tunefleet.events import JobState
from tunefleet.planning import plan_run
from tunefleet.plugins import discover
from tunefleet.provider import ChatRequest, EndpointRef, Plan
from tunefleet.spec import parse_spec

DATA = Path(__file__).parents[3] / "examples" / "quickstart" / "data"
SYSTEM = (
    "You are the support assistant for Parcelwise, a shipping and returns app for online "
    "shops. Answer in one or two short sentences."
)
SPEC = """
version: 1
name: local-serving
base_model: "scratch:tiny"
dataset: {train: %(data)s/train.jsonl, validation: %(data)s/validation.jsonl}
method: {type: supervised, adapter: full}
hyperparameters: {epochs: 30, batch_size: 8, learning_rate: 0.003, seed: 7, max_seq_length: 256}
targets:
  - provider: local
    options: {workdir: %(workdir)s, device: cpu}
"""


def post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST JSON, return the status and the JSON answer (errors included)."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Plan, Any]:
    """A run trained through the provider, its plan and its job."""
    workdir = tmp_path_factory.mktemp("local")
    registry = discover()
    spec = parse_spec(SPEC % {"data": DATA, "workdir": workdir})
    (plan,) = plan_run(spec, registry=registry).plans
    provider = registry.provider("local")
    import hashlib

    staged = {
        role: provider.stage(plan, role, path, hashlib.sha256(path.read_bytes()).hexdigest())
        for role, path in (
            ("train", DATA / "train.jsonl"),
            ("validation", DATA / "validation.jsonl"),
        )
    }
    job = provider.submit(plan, staged, "serving-test")
    deadline = time.monotonic() + 300
    while not provider.status(job).state.terminal:
        assert time.monotonic() < deadline, "training took over 5 minutes"
        time.sleep(0.5)
    assert provider.status(job).state == JobState.SUCCEEDED
    return provider, plan, job


def test_metric_lines_become_events_and_the_loss_falls(trained: tuple[Any, Plan, Any]) -> None:
    provider, _, job = trained
    page = provider.events(job, None)
    metrics = [e for e in page.events if e.kind == "metric" and e.train_loss is not None]
    assert len(metrics) == 180  # 48 examples / 8 x 30 epochs, one line per step
    assert metrics[-1].train_loss < metrics[0].train_loss / 2
    assert any(e.kind == "checkpoint" for e in page.events)
    assert [e.state for e in page.events if e.kind == "status"] == [
        JobState.QUEUED,
        JobState.RUNNING,
        JobState.SUCCEEDED,
    ]


@pytest.fixture(scope="module")
def endpoint(trained: tuple[Any, Plan, Any]) -> Iterator[EndpointRef]:
    provider, plan, job = trained
    served = provider.deploy(plan, provider.artifacts(job)[0], "parcelwise")
    yield served
    provider.delete_endpoint(served)


def test_the_endpoint_answers_the_openai_sdk(endpoint: EndpointRef) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=endpoint.url, api_key="unused-locally", max_retries=0)
    completion = client.chat.completions.create(
        model="parcelwise",
        messages=[
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "How do I cancel my subscription?"},
        ],
        temperature=0,
        max_tokens=60,
    )
    answer = completion.choices[0].message.content
    assert answer and "Billing" in answer, answer  # it learnt where plans are cancelled
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert [m.id for m in client.models.list()] == ["parcelwise"]


def test_the_response_follows_openais_published_schema(endpoint: EndpointRef) -> None:
    contract = load_contract()
    if contract is None:
        pytest.skip(f"OpenAI's API description is not at {OPENAI_SPEC} (set TUNEFLEET_SPECS)")
    request = {"model": "parcelwise", "messages": [{"role": "user", "content": "Hello"}]}
    request["max_tokens"] = 8
    body = json.dumps(request).encode()
    assert not contract.check_request("POST", "/v1/chat/completions", {}, "application/json", body)
    status, answer = post(f"{endpoint.url}/chat/completions", request)
    assert status == 200
    assert not contract.check_response("POST", "/v1/chat/completions", status, answer)


def test_what_the_local_model_cannot_do_is_refused(endpoint: EndpointRef) -> None:
    url = f"{endpoint.url}/chat/completions"
    hi = [{"role": "user", "content": "Hi"}]
    status, answer = post(url, {"model": "parcelwise", "messages": hi, "stream": True})
    assert status == 400 and answer["error"]["param"] == "stream"
    status, answer = post(url, {"model": "gpt-4o", "messages": hi})
    assert status == 404 and answer["error"]["code"] == "model_not_found"
    status, answer = post(url, {"model": "parcelwise"})
    assert status == 400 and "messages" in answer["error"]["message"]


def test_invoke_and_delete_through_the_provider(trained: tuple[Any, Plan, Any]) -> None:
    provider, plan, job = trained
    served = provider.deploy(plan, provider.artifacts(job)[0], "second")
    again = provider.deploy(plan, provider.artifacts(job)[0], "second")
    assert again.url == served.url, "deploying the same model again reuses the server"
    reply = provider.invoke(
        served,
        ChatRequest(
            messages=[
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": "What are your support hours?"},
            ],
            max_tokens=40,
        ),
    )
    assert "CET" in reply.text, reply.text
    hi = ChatRequest(messages=[{"role": "user", "content": "Hi"}])
    with pytest.raises(ProviderNotFoundError) as other_model:
        provider.invoke(served.model_copy(update={"name": "another"}), hi)
    assert (other_model.value.code, other_model.value.status) == ("model_not_found", 404)
    provider.delete_endpoint(served)
    with pytest.raises(ProviderNotFoundError) as gone:
        provider.invoke(served, hi)
    assert gone.value.code == "endpoint_not_running"
    provider.delete_endpoint(served)  # a missing endpoint: no-op

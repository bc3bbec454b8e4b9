"""Versions side by side on one local endpoint (TrafficSplitting), as a canary rollout uses
them: real model servers serving real tiny models, trained here from scratch.

Two trainings with different seeds give two models that answer the same prompt
differently; a copy of the second whose chat template refuses system messages (as Gemma's
and Mistral's templates do) is a model that fails for real on such requests; an output
whose manifest lists nothing is one the server cannot load.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.providers.local.conftest import DATA, local_spec, processes_under

from tunefleet.errors import (
    AlreadyExistsError,
    ProviderError,
    ProviderNotFoundError,
    TransientProviderError,
)
from tunefleet.planning import plan_run
from tunefleet.plugins import discover
from tunefleet.provider import ArtifactRef, ChatRequest, EndpointRef, Plan
from tunefleet.spec import parse_spec
from tunefleet.testing import crash
from tunefleet_local._client import VERSION_HEADER
from tunefleet_local._serving import ALARM_MIN_ERRORS, DEPLOYED_VERSION, SERVER
from tunefleet_local.provider import LocalProvider

PROVIDER = LocalProvider()
NEW = "support-v2"
QUESTION = [{"role": "user", "content": "How do I cancel my subscription?"}]
ASK = ChatRequest(messages=QUESTION, max_tokens=2)
WITH_SYSTEM = ChatRequest(
    messages=[{"role": "system", "content": "Answer briefly."}, *QUESTION], max_tokens=2
)
REFUSES_SYSTEM = (
    "{% if messages[0]['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
)


@dataclass(frozen=True)
class Models:
    """Training outputs, as the provider's artifacts name them."""

    old: ArtifactRef
    new: ArtifactRef
    refuses_system: ArtifactRef
    """``new`` with a chat template that raises for a system message."""
    unloadable: ArtifactRef
    """A manifest without artifacts: the server cannot load it."""
    answers: dict[str, str]
    """The greedy answer to ASK of ``old`` and ``new``, asked without a server."""


def _train(root: Path, seed: int) -> Path:
    from tunefleet_trainer.config import TrainerConfig
    from tunefleet_trainer.train import train

    config = TrainerConfig.model_validate(
        {
            "base_model": "scratch:tiny",
            "adapter": "full",
            "hyperparameters": {
                "epochs": 1,
                "batch_size": 16,
                "learning_rate": 0.003,
                "seed": seed,
                "max_seq_length": 96,
            },
            "train": str(DATA / "train.jsonl"),
            "output_dir": str(root / f"seed-{seed}"),
            "device": "cpu",
        }
    )
    train(config, log=lambda line: None)
    return root / f"seed-{seed}"


def _artifact(output: Path) -> ArtifactRef:
    return ArtifactRef(kind="merged_model", uri=(output / "model").as_uri())


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    from tunefleet_trainer.inference import load_trained

    root = tmp_path_factory.mktemp("models")
    old, new = _train(root, 5), _train(root, 6)
    refuses = root / "refuses-system"
    shutil.copytree(new, refuses, ignore=shutil.ignore_patterns("checkpoints"))
    template = refuses / "model" / "chat_template.jinja"
    template.write_text(REFUSES_SYSTEM + template.read_text())
    unloadable = root / "unloadable"
    unloadable.mkdir()
    (unloadable / "manifest.json").write_text("{}")
    answers = {
        label: load_trained(output).complete(QUESTION, max_tokens=2, temperature=0).text
        for label, output in (("old", old), ("new", new))
    }
    assert answers["old"] != answers["new"], "the two models must be told apart by answer"
    return Models(
        _artifact(old), _artifact(new), _artifact(refuses), _artifact(unloadable), answers
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("versions") / "work"


@pytest.fixture(scope="module")
def plan(workdir: Path) -> Plan:
    spec = parse_spec(local_spec("local-versions", workdir), base_dir=workdir.parent)
    (planned,) = plan_run(spec, registry=discover()).plans
    return planned


@pytest.fixture(scope="module")
def served(plan: Plan, models: Models, workdir: Path) -> Iterator[EndpointRef]:
    """One endpoint serving the old model, shared by the tests of this module."""
    endpoint = PROVIDER.deploy(plan, models.old, "canary")
    yield endpoint
    PROVIDER.delete_endpoint(endpoint)
    assert not processes_under(workdir), "delete_endpoint stops every version"


@pytest.fixture
def endpoint(served: EndpointRef) -> Iterator[EndpointRef]:
    """The shared endpoint; afterwards it serves the old model alone again."""
    yield served
    PROVIDER.shift_traffic(served, {DEPLOYED_VERSION: 100})
    for version in PROVIDER.versions(served):
        if version != DEPLOYED_VERSION:
            PROVIDER.remove_version(served, version)


def report(endpoint: EndpointRef) -> dict[str, Any]:
    """The server's ``GET /versions``: each version's state and counts."""
    url = (endpoint.url or "").removesuffix("/v1") + "/versions"
    with urllib.request.urlopen(url, timeout=10) as response:
        found: dict[str, Any] = json.loads(response.read())["versions"]
    return found


def ask(endpoint: EndpointRef, version: str | None = None) -> tuple[int, str | None, Any]:
    """A chat completion over HTTP: status, the version header answered and the body."""
    headers = {"Content-Type": "application/json"}
    if version is not None:
        headers[VERSION_HEADER] = version
    body = {"model": endpoint.name, "messages": QUESTION, "max_tokens": 2, "temperature": 0}
    request = urllib.request.Request(
        f"{endpoint.url}/chat/completions", data=json.dumps(body).encode(), headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return (
                response.status,
                response.headers.get(VERSION_HEADER),
                json.loads(response.read()),
            )
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers.get(VERSION_HEADER), json.loads(exc.read())


def loads(workdir: Path, name: str, version: str) -> int:
    """How often the endpoint's server has loaded ``version`` (its log says each time)."""
    log = (workdir / "endpoints" / f"{name}.log").read_text()
    return log.count(f"version {version}: loaded ")


def servers(workdir: Path) -> list[str]:
    return [line for line in processes_under(workdir, 0) if SERVER in line]


def test_a_deployed_model_is_one_version_with_all_the_traffic(
    endpoint: EndpointRef, models: Models
) -> None:
    assert PROVIDER.versions(endpoint) == {"primary": 100}
    status, answered, body = ask(endpoint)
    assert (status, answered) == (200, "primary"), "the answer names the version"
    assert body["model"] == "canary", "the body names the model asked for"
    assert body["choices"][0]["message"]["content"] == models.answers["old"]
    assert PROVIDER.invoke(endpoint, ASK).text == models.answers["old"]


def test_a_new_version_has_no_traffic_until_it_is_given_its_share(
    endpoint: EndpointRef, models: Models, plan: Plan, workdir: Path
) -> None:
    added = PROVIDER.add_version(plan, endpoint, models.new, NEW)
    assert (added.url, added.id) == (endpoint.url, endpoint.id), "the same endpoint"
    assert PROVIDER.versions(endpoint) == {"primary": 100, NEW: 0}
    assert report(endpoint)[NEW]["state"] == "loaded"

    before = report(endpoint)
    for _ in range(10):
        PROVIDER.invoke(endpoint, ASK)
    after = report(endpoint)
    assert after["primary"]["routed"] - before["primary"]["routed"] == 10
    assert after[NEW]["routed"] == after[NEW]["requests"] == 0, "weight 0: no traffic"

    PROVIDER.shift_traffic(endpoint, {"primary": 30, NEW: 70})
    assert PROVIDER.versions(endpoint) == {"primary": 30, NEW: 70}
    before = report(endpoint)
    replies = [PROVIDER.invoke(endpoint, ASK).text for _ in range(100)]
    after = report(endpoint)
    routed = {v: after[v]["routed"] - before[v]["routed"] for v in ("primary", NEW)}
    assert routed == {"primary": 30, NEW: 70}, "exactly the share of every 100 requests"
    assert replies.count(models.answers["old"]) == 30
    assert replies.count(models.answers["new"]) == 70

    again = PROVIDER.add_version(plan, endpoint, models.new, NEW)
    assert again == added and PROVIDER.versions(endpoint) == {"primary": 30, NEW: 70}
    assert loads(workdir, "canary", NEW) == 1, "adding it again loads nothing"
    with pytest.raises(AlreadyExistsError) as taken:
        PROVIDER.add_version(plan, endpoint, models.old, NEW)
    assert taken.value.code == "version_exists"


def test_a_version_is_asked_directly_whatever_the_weights(
    endpoint: EndpointRef, models: Models, plan: Plan
) -> None:
    PROVIDER.add_version(plan, endpoint, models.new, NEW)
    assert PROVIDER.invoke_version(endpoint, NEW, ASK).text == models.answers["new"]
    assert PROVIDER.invoke_version(endpoint, "primary", ASK).text == models.answers["old"]
    assert PROVIDER.invoke(endpoint, ASK).text == models.answers["old"], "weights 100/0"
    status, answered, _ = ask(endpoint, NEW)
    assert (status, answered) == (200, NEW)

    status, answered, body = ask(endpoint, "support-v9")
    assert (status, answered) == (404, None)
    assert body["error"]["code"] == "version_not_found"
    assert body["error"]["type"] == "invalid_request_error"
    with pytest.raises(ProviderNotFoundError) as unknown:
        PROVIDER.invoke_version(endpoint, "support-v9", ASK)
    assert (unknown.value.code, unknown.value.status) == ("version_not_found", 404)


def test_a_version_with_traffic_stays_and_one_without_is_unloaded(
    endpoint: EndpointRef, models: Models, plan: Plan, workdir: Path
) -> None:
    PROVIDER.add_version(plan, endpoint, models.new, NEW)
    PROVIDER.shift_traffic(endpoint, {"primary": 50, NEW: 50})
    with pytest.raises(ProviderError) as busy:
        PROVIDER.remove_version(endpoint, NEW)
    assert busy.value.code == "version_has_traffic"
    assert PROVIDER.versions(endpoint) == {"primary": 50, NEW: 50}

    PROVIDER.shift_traffic(endpoint, {"primary": 100})  # left out: 0
    assert PROVIDER.versions(endpoint) == {"primary": 100, NEW: 0}
    PROVIDER.remove_version(endpoint, NEW)
    assert PROVIDER.versions(endpoint) == {"primary": 100}
    assert NEW not in report(endpoint), "the server has dropped it when the call returns"
    assert f"version {NEW}: unloaded" in (workdir / "endpoints" / "canary.log").read_text()
    with pytest.raises(ProviderNotFoundError):
        PROVIDER.invoke_version(endpoint, NEW, ASK)
    PROVIDER.remove_version(endpoint, NEW)  # a missing version: no-op


def test_weights_name_served_versions_in_whole_percents_adding_up_to_100(
    endpoint: EndpointRef, models: Models, plan: Plan
) -> None:
    PROVIDER.add_version(plan, endpoint, models.new, NEW)
    for weights in ({"primary": 90}, {"primary": 110, NEW: -10}, {"primary": 99.5, NEW: 0.5}):
        with pytest.raises(ProviderError) as invalid:
            PROVIDER.shift_traffic(endpoint, weights)  # type: ignore[arg-type]
        assert invalid.value.code == "invalid_weights"
    with pytest.raises(ProviderNotFoundError) as unknown:
        PROVIDER.shift_traffic(endpoint, {"primary": 50, "support-v9": 50})
    assert unknown.value.code == "version_not_found"
    with pytest.raises(ProviderError) as label:
        PROVIDER.add_version(plan, endpoint, models.new, "not a label")
    assert label.value.code == "invalid_version"
    assert PROVIDER.versions(endpoint) == {"primary": 100, NEW: 0}


def test_alarms_fire_for_a_version_whose_model_fails(
    endpoint: EndpointRef, models: Models, plan: Plan
) -> None:
    broken = "refuses-system"
    PROVIDER.add_version(plan, endpoint, models.refuses_system, broken)
    assert PROVIDER.invoke_version(endpoint, broken, ASK).text == models.answers["new"]
    assert PROVIDER.alarms(endpoint, broken) == []
    for _ in range(ALARM_MIN_ERRORS - 1):
        with pytest.raises(TransientProviderError) as failed:
            PROVIDER.invoke_version(endpoint, broken, WITH_SYSTEM)
        assert (failed.value.code, failed.value.status) == ("generation_failed", 500)
    assert PROVIDER.alarms(endpoint, broken) == [], "2 errors are under the minimum of 3"

    PROVIDER.shift_traffic(endpoint, {"primary": 90, broken: 10})
    outcomes = []
    for _ in range(40):
        try:
            PROVIDER.invoke(endpoint, WITH_SYSTEM)
            outcomes.append("ok")
        except TransientProviderError as exc:
            outcomes.append(exc.code or "")
    assert outcomes.count("generation_failed") == 4 and outcomes.count("ok") == 36
    (alarm,) = PROVIDER.alarms(endpoint, broken)
    assert alarm.startswith(f"version {broken}: 6 of its last 7 requests failed"), alarm
    assert PROVIDER.alarms(endpoint, "primary") == []
    with pytest.raises(ProviderNotFoundError) as unknown:
        PROVIDER.alarms(endpoint, "support-v9")
    assert unknown.value.code == "version_not_found"


def test_a_model_the_server_cannot_load_is_not_added(
    endpoint: EndpointRef, models: Models, plan: Plan
) -> None:
    with pytest.raises(ProviderError) as caught:
        PROVIDER.add_version(plan, endpoint, models.unloadable, "unloadable")
    assert caught.value.code == "version_load_failed"
    assert "no readable training manifest" in str(caught.value)
    assert PROVIDER.versions(endpoint) == {"primary": 100}, "nothing of it is left"
    assert PROVIDER.invoke(endpoint, ASK).text == models.answers["old"]


_ADD = """
import json, sys
from pathlib import Path
from tunefleet.provider import ArtifactRef, EndpointRef, Plan
from tunefleet_local.provider import LocalProvider

args = json.loads(Path(sys.argv[1]).read_text())
LocalProvider().add_version(
    Plan.model_validate(args["plan"]),
    EndpointRef.model_validate(args["endpoint"]),
    ArtifactRef.model_validate(args["artifact"]),
    args["version"],
)
"""


def test_an_add_killed_anywhere_and_repeated_serves_the_version_once(
    endpoint: EndpointRef, models: Models, plan: Plan, workdir: Path, tmp_path: Path
) -> None:
    arguments = tmp_path / "add.json"
    arguments.write_text(
        json.dumps(
            {
                "plan": plan.model_dump(mode="json"),
                "endpoint": endpoint.model_dump(mode="json"),
                "artifact": models.new.model_dump(mode="json"),
                "version": NEW,
            }
        )
    )
    site = crash.site_dir(tmp_path / "site")
    counted = tmp_path / "lines"

    def add_in_a_process(kill_at: int) -> int:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
            crash.ENV: f"tunefleet_local._serving:add_version:{kill_at}",
            crash.COUNT_ENV: str(counted),
        }
        done = subprocess.run(
            [sys.executable, "-c", _ADD, str(arguments)], env=env, capture_output=True, timeout=120
        )
        return done.returncode

    (server,) = servers(workdir)
    assert add_in_a_process(0) == 0
    lines = int(counted.read_text())
    loaded = loads(workdir, "canary", NEW)
    PROVIDER.remove_version(endpoint, NEW)
    kill_points = sorted({1, *range(2, lines + 1, max(1, lines // 6)), lines})
    for kill_at in kill_points:
        code = add_in_a_process(kill_at)
        # The call's length moves a little with timing (it polls the server): a point near
        # its end can lie past a faster run's last line, which then simply finishes (seen
        # once in CI: line 92 of 92). Every other point must kill it.
        assert code == -9 or (code == 0 and kill_at > lines * 0.8), (
            f"killed at line {kill_at} of {lines}: exit {code}"
        )
        PROVIDER.add_version(plan, endpoint, models.new, NEW)
        assert PROVIDER.versions(endpoint) == {"primary": 100, NEW: 0}, kill_at
        assert servers(workdir) == [server], f"one server, the same, after a kill at {kill_at}"
        assert report(endpoint)[NEW]["state"] == "loaded"
        assert loads(workdir, "canary", NEW) == loaded + 1, f"loaded once (kill at {kill_at})"
        assert PROVIDER.invoke_version(endpoint, NEW, ASK).text == models.answers["new"]
        PROVIDER.remove_version(endpoint, NEW)
        loaded += 1


def test_a_plain_deploy_replaces_every_version_and_reuses_a_completed_canary(
    plan: Plan, models: Models, workdir: Path
) -> None:
    first = PROVIDER.deploy(plan, models.old, "replaced")
    try:
        PROVIDER.add_version(plan, first, models.new, NEW)
        PROVIDER.shift_traffic(first, {NEW: 100})  # the canary completes
        PROVIDER.remove_version(first, "primary")
        assert PROVIDER.deploy(plan, models.new, "replaced") == first, "it serves that alone"
        assert PROVIDER.versions(first) == {NEW: 100}

        second = PROVIDER.deploy(plan, models.old, "replaced")
        assert second.url != first.url, "another model: a new server"
        assert PROVIDER.versions(second) == {"primary": 100}
        assert PROVIDER.invoke(second, ASK).text == models.answers["old"]
        with pytest.raises(ProviderNotFoundError) as stale:
            PROVIDER.versions(first)
        assert stale.value.code == "endpoint_not_found"
        assert len([s for s in servers(workdir) if "replaced.ready" in s]) == 1
        PROVIDER.delete_endpoint(first)  # a ref to the replaced server: no-op
        assert PROVIDER.invoke(second, ASK).text == models.answers["old"]
    finally:
        record = workdir / "endpoints" / "replaced.json"
        url = json.loads(record.read_text()).get("url") if record.exists() else None
        PROVIDER.delete_endpoint(
            EndpointRef(provider="local", name="replaced", url=url, id=str(record))
        )
    assert not [s for s in servers(workdir) if "replaced.ready" in s]

"""The provider kit on its own: what every provider built on it inherits."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from tunefleet.errors import ProviderBusyError, ProviderError
from tunefleet.events import CheckpointEvent, LogEvent, MetricEvent
from tunefleet.kit.chat import chat_body, chat_reply
from tunefleet.kit.cost import HourlyPrices, scaled_epochs, token_cost_event
from tunefleet.kit.files import locked, read_json, write_json
from tunefleet.kit.labels import RUN, RUN_KEY, RUN_KEY_PLACEHOLDER, TARGET, run_labels
from tunefleet.kit.limits import check_concurrency, check_storage_region
from tunefleet.kit.processes import is_alive, start_time
from tunefleet.kit.trainer import line_event, trainer_config, trainer_unmet, with_paths
from tunefleet.provider import ChatRequest, NativeRequest, Plan, fill_placeholders
from tunefleet.spec import parse_spec
from tunefleet_trainer.metrics import format_checkpoint_line, format_metric_line

NOW = datetime(2026, 12, 2, tzinfo=UTC)
SPEC = """
name: kit
base_model: Qwen/Qwen2.5-0.5B-Instruct
dataset: train.jsonl
method: {type: dpo, adapter: qlora, beta: 0.2}
hyperparameters: {epochs: 2, learning_rate_multiplier: 1.5}
placement: {tags: {cost-center: cs-42}}
targets: [{provider: fake, region: fake-eu-1}]
"""


@pytest.fixture
def spec(tmp_path: Path):  # type: ignore[no-untyped-def]
    (tmp_path / "train.jsonl").write_text("{}\n")
    return parse_spec(SPEC, base_dir=tmp_path)


def test_the_trainer_config_comes_from_the_spec_with_the_launchers_paths(spec) -> None:  # type: ignore[no-untyped-def]
    config = trainer_config(spec, device="cuda", merge=None)
    assert config["method"] == "dpo" and config["adapter"] == "qlora" and config["beta"] == 0.2
    assert config["hyperparameters"]["epochs"] == 2
    assert "learning_rate_multiplier" not in config["hyperparameters"]
    assert "merge" not in config, "None settings are left to the trainer's default"
    validated = with_paths(config, train="/data/train.jsonl", output_dir="/out")
    assert (validated.train, validated.output_dir, validated.device) == (
        "/data/train.jsonl",
        "/out",
        "cuda",
    )
    (unmet,) = trainer_unmet(spec)
    assert unmet.requirement == "hyperparameters.learning_rate_multiplier"
    with pytest.raises(ValueError, match="not a valid trainer config"):
        with_paths({**config, "adapter": "prefix"}, train="/t", output_dir="/o")


def test_trainer_lines_become_metric_checkpoint_and_log_events() -> None:
    metric = line_event(
        "[rank0] " + format_metric_line(step=4, epoch=0.5, train_loss=1.25, learning_rate=1e-4),
        event_id="e1",
        time=NOW,
    )
    assert isinstance(metric, MetricEvent) and (metric.step, metric.train_loss) == (4, 1.25)
    checkpoint = line_event(
        format_checkpoint_line(step=8, path="/opt/ml/checkpoints/checkpoint-8"),
        event_id="e2",
        time=NOW,
        checkpoint_uri="s3://bucket/checkpoints/checkpoint-8",
    )
    assert isinstance(checkpoint, CheckpointEvent)
    assert checkpoint.uri == "s3://bucket/checkpoints/checkpoint-8"
    broken = line_event('tunefleet.metric {"step": -3, "train_loss": "x"}', event_id="e3", time=NOW)
    assert isinstance(broken, LogEvent), "a malformed metric line stays a log line"
    error = line_event("RuntimeError: CUDA out of memory", event_id="e4", time=NOW)
    assert isinstance(error, LogEvent) and error.level == "error"
    long = line_event("x" * 10_000, event_id="e5", time=NOW)
    assert isinstance(long, LogEvent) and len(long.message) == 2000


def test_run_labels_carry_the_policys_tags_and_a_run_key_filled_at_submit(spec) -> None:  # type: ignore[no-untyped-def]
    labels = run_labels(spec, target="fake")
    assert labels == {
        "cost-center": "cs-42",
        RUN: "kit",
        TARGET: "fake",
        RUN_KEY: RUN_KEY_PLACEHOLDER,
    }
    filled = fill_placeholders({"labels": labels}, {RUN_KEY_PLACEHOLDER: "0123abcd"})
    assert filled["labels"][RUN_KEY] == "0123abcd"


def test_placeholders_are_filled_in_keys_too() -> None:
    """A map keyed by a name known only later (an endpoint's traffic by deployment)."""
    planned = {"traffic": {"${deployment}": 100}, "tags": ["${deployment}"], "count": 2}
    assert fill_placeholders(planned, {"${deployment}": "primary"}) == {
        "traffic": {"primary": 100},
        "tags": ["primary"],
        "count": 2,
    }


def test_hourly_cost_states_its_assumptions_and_the_actual_cost() -> None:
    prices = HourlyPrices(
        price_date=date(2026, 11, 1),
        per_hour={"eu-west-1": {"ml.g5.2xlarge": 1.5}, "us-east-1": {"ml.g5.2xlarge": 1.2}},
        fallback_region="us-east-1",
        throughput=lambda instance: 3600.0 if instance == "ml.g5.2xlarge" else None,
        startup_hours=0.1,
    )
    cost, notes = prices.estimate(
        instance="ml.g5.2xlarge", count=2, region="eu-west-1", tokens=3600 * 3600 * 2
    )
    assert cost is not None and not notes
    assert cost.amount == pytest.approx((0.1 + 1.0) * 2 * 1.5)
    assert cost.price_date == date(2026, 11, 1)
    assert "3,600 tokens/s" in cost.basis and "eu-west-1" in cost.basis
    spot, _ = prices.estimate(
        instance="ml.g5.2xlarge",
        count=2,
        region="eu-west-1",
        tokens=3600 * 3600 * 2,
        spot_discount=0.6,
    )
    assert spot is not None and spot.amount == pytest.approx(cost.amount * 0.4)
    assert "spot" in spot.basis
    fallback, _ = prices.estimate(instance="ml.g5.2xlarge", count=1, region="ap-east-1", tokens=0)
    assert fallback is not None and "no price for the region" in fallback.basis
    unknown, notes = prices.estimate(instance="ml.x9", count=1, region="eu-west-1", tokens=10)
    assert unknown is None and "options.price_per_hour" in notes[0]
    actual = prices.actual(
        seconds=1800,
        count=2,
        instance="ml.g5.2xlarge",
        region="eu-west-1",
        price_per_hour=None,
        time=NOW,
    )
    assert actual is not None and actual.amount == pytest.approx(1.5)


def test_the_default_epochs_rule_is_openais() -> None:
    """OpenAI's documented ``n_epochs: auto``: 3, raised for small files so they are seen
    at least 100 times (at most 25 epochs), lowered for large ones (at most 25,000)."""
    assert scaled_epochs(1000) == 3
    assert scaled_epochs(10) == 10
    assert scaled_epochs(2) == 25
    assert scaled_epochs(20_000) == 1
    assert token_cost_event(2_000_000, 3.0, NOW).amount == pytest.approx(6.0)


def test_limits_queue_or_refuse_with_the_reason() -> None:
    check_concurrency("fake", active=2, limit=3, where="here")
    check_concurrency("fake", active=99, limit=None, where="here")
    with pytest.raises(ProviderBusyError) as busy:
        check_concurrency("fake", active=3, limit=3, where="in this project")
    assert busy.value.code == "max_concurrent_jobs" and "in this project" in str(busy.value)
    check_storage_region("fake", "bucket b", "eu-west-1", "eu-west-1")
    with pytest.raises(ProviderError) as elsewhere:
        check_storage_region("fake", "bucket b", "us-east-1", "eu-west-1")
    assert elsewhere.value.code == "storage_region_mismatch"
    assert not isinstance(elsewhere.value, ProviderBusyError)


def test_chat_bodies_and_replies_in_openais_terms() -> None:
    request = ChatRequest(messages=[{"role": "user", "content": "Hi"}], max_tokens=8)
    assert chat_body(request, model="bot") == {
        "model": "bot",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 8,
        "temperature": 0.0,
    }
    reply = chat_reply(
        "fake",
        b'{"choices": [{"message": {"content": "Hello"}, "finish_reason": "stop"}],'
        b' "usage": {"prompt_tokens": 3, "completion_tokens": 1}}',
        "endpoint e",
    )
    assert (reply.text, reply.finish_reason, reply.completion_tokens) == ("Hello", "stop", 1)
    with pytest.raises(ProviderError) as bad:
        chat_reply("fake", "<html>502 Bad Gateway</html>", "endpoint e")
    assert bad.value.code == "bad_reply" and "502 Bad Gateway" in str(bad.value)


def test_json_files_are_replaced_whole_by_concurrent_writers(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    assert read_json(path) is None
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(50):
                write_json(path, {"writer": n, "i": i, "pad": "x" * 4096})
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for _ in range(200):
        found = read_json(path)
        assert found is None or len(found["pad"]) == 4096, "never half a file"
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert not list(tmp_path.glob(".*.partial")), "no temporary file is left behind"


def test_a_lock_is_exclusive_across_processes(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from tunefleet.kit.files import locked\n"
            "with locked(Path(sys.argv[1])):\n"
            "    Path(sys.argv[1], 'held').touch(); time.sleep(1.0)\n",
            str(tmp_path),
        ]
    )
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "held").exists():
            assert time.monotonic() < deadline and holder.poll() is None
            time.sleep(0.01)
        started = time.monotonic()
        with locked(tmp_path):
            waited = time.monotonic() - started
        assert waited > 0.3, "the lock was taken while another process held it"
    finally:
        holder.wait(timeout=30)


def test_a_killed_server_is_alive_until_its_socket_is_closed() -> None:
    """A killed process's leader turns zombie while its other threads still exit holding
    its files; a deleted endpoint whose server still accepts connections is not gone."""
    code = (
        "import socket, threading\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(50)\n"
        "print(s.getsockname()[1], flush=True)\n"
        "def spin():\n    while True: pass\n"
        "for _ in range(8): threading.Thread(target=spin, daemon=True).start()\n"
        "threading.Event().wait()\n"
    )
    server = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        started = start_time(server.pid)
        assert is_alive(server.pid, started)
        assert not is_alive(server.pid, (started or 0) + 1), "a reused pid is not the process"
        os.killpg(server.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while is_alive(server.pid, started):
            assert time.monotonic() < deadline
            time.sleep(0.001)
        with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
            probe.connect(("127.0.0.1", port))
    finally:
        server.kill()
        server.wait()


def test_planned_requests_are_found_by_operation_and_phase_never_by_their_purpose() -> None:
    plan = Plan(
        target="t",
        provider="fake",
        region=None,
        options={},
        requests=[
            NativeRequest(phase="stage", service="s", operation="Put", body={"a": 1}, purpose="x"),
            NativeRequest(service="s", operation="Create", body={"b": 2}, purpose="x"),
            NativeRequest(
                phase="deploy", service="s", operation="Create", body={"c": 3}, purpose="x"
            ),
        ],
    )
    assert plan.request("Create").body == {"b": 2}
    assert plan.request("Create", phase="deploy").body == {"c": 3}
    assert [r.operation for r in plan.requests_for("stage")] == ["Put"]
    with pytest.raises(ProviderError) as outdated:
        plan.request("Put", phase="deploy")
    assert outdated.value.code == "plan_outdated" and outdated.value.provider == "fake"


def test_the_trainers_answering_progress_reads_as_words() -> None:
    from tunefleet_trainer.predictions import format_progress_line

    line = format_progress_line(task="predict", model="baseline", done=3, total=24)
    event = line_event(line, event_id="e1", time=datetime.now(UTC))
    assert isinstance(event, LogEvent)
    assert event.message == "answering the golden set with the base model: 3 of 24"
    trained = format_progress_line(task="predict", model="trained", done=24, total=24)
    assert line_event(trained, event_id="e2", time=datetime.now(UTC)).message == (
        "answering the golden set with the trained model: 24 of 24"
    )

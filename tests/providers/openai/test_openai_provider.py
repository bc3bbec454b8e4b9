"""The OpenAI provider's plan, staging, events and errors, called directly."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.openapi_contract import OPENAI_SPEC
from tests.providers.openai.conftest import BASE_MODEL, DATA, openai_spec
from tests.providers.openai.fake_openai import FakeOpenAI

import tunefleet
from tunefleet.errors import (
    ProviderBusyError,
    ProviderError,
    ProviderNotFoundError,
    SpecError,
)
from tunefleet.events import CostEvent, JobState, MetricEvent, StatusEvent
from tunefleet.planning import RunPlan, plan_run
from tunefleet.plugins import discover
from tunefleet.provider import (
    Answering,
    ChatRequest,
    ContextLimits,
    DatasetRef,
    Estimating,
    JobRef,
    Pausable,
    Plan,
    Serving,
    TrafficSplitting,
    capabilities_of,
)
from tunefleet.spec import parse_spec
from tunefleet_openai import pricing
from tunefleet_openai.provider import OpenAIProvider


def planned(server: FakeOpenAI, **kwargs: Any) -> RunPlan:
    return plan_run(parse_spec(openai_spec(server, **kwargs)), registry=discover())


def create_requests(server: FakeOpenAI) -> list[dict[str, Any]]:
    """The bodies of every createFineTuningJob request, refused ones included."""
    return [body for op, body in server.requests if op == "createFineTuningJob"]


def staged(provider: OpenAIProvider, plan: Plan, path: Path) -> DatasetRef:
    return provider.stage(plan, "train", path, hashlib.sha256(path.read_bytes()).hexdigest())


def finish(provider: OpenAIProvider, job: JobRef) -> JobState:
    for _ in range(100):
        state = provider.status(job).state
        if state.terminal:
            return state
    raise AssertionError(f"job {job.id} never finished")


# ---------------------------------------------------------------------- plan


def test_the_plan_shows_the_job_request_and_its_token_priced_cost(
    fake_openai: FakeOpenAI,
) -> None:
    result = planned(fake_openai, hyperparameters={"epochs": 4, "batch_size": 16})
    (plan,) = result.plans
    assert plan.ok and plan.region is None
    assert [(r.phase, r.operation) for r in plan.requests] == [
        ("stage", "createFile"),
        ("stage", "createFile"),
        ("submit", "createFineTuningJob"),
    ]
    train = result.datasets["train"]
    # createFile is a form: the purpose, and the file part, with the name, type and size
    # that go up (the content-addressed name lets a later run find the file again).
    assert plan.requests[0].body == {
        "purpose": "fine-tune",
        "file": {
            "filename": f"tunefleet-{train.sha256}.jsonl",
            "content_type": "text/jsonl",
            "bytes": train.size_bytes,
        },
    }
    body = plan.requests[-1].body
    assert body["method"] == {
        "type": "supervised",
        "supervised": {"hyperparameters": {"n_epochs": 4, "batch_size": 16}},
    }
    assert body["training_file"] == "${train_file}"
    assert body["validation_file"] == "${validation_file}"
    assert body["metadata"] == {
        "tunefleet:run-key": "${run_key}",
        "tunefleet:run": "support-bot",
        "tunefleet:target": "openai",
    }
    assert plan.cost is not None
    assert plan.cost.amount == pytest.approx(train.billable_tokens * 4 * 3.00 / 1e6)
    assert plan.cost.price_date == pricing.PRICE_DATE
    assert f"{train.billable_tokens:,} tokens x 4 epochs x $3.00/M tokens" == plan.cost.basis


def test_unset_epochs_follow_the_services_rule_and_the_price_can_be_overridden(
    fake_openai: FakeOpenAI,
) -> None:
    result = planned(
        fake_openai,
        hyperparameters={},
        options={"training_price_per_million_tokens": 10.0},
    )
    (plan,) = result.plans
    examples = result.datasets["train"].examples
    assert plan.epochs == pricing.PRICES.default_epochs(examples) == 3
    assert "hyperparameters" not in plan.requests[-1].body["method"]["supervised"]
    assert plan.cost is not None and plan.cost.price_date is None
    assert plan.cost.basis.endswith("x $10.00/M tokens (price from options)")


def test_dpo_maps_beta_and_rejects_what_the_api_cannot_take(fake_openai: FakeOpenAI) -> None:
    (plan,) = planned(
        fake_openai,
        validation=False,
        method={"type": "dpo", "beta": 3},
        dataset={"train": str(Path(__file__).parent / "preference.jsonl")},
        hyperparameters={"learning_rate_multiplier": 2.0},
    ).plans
    assert plan.requests[-1].body["method"] == {
        "type": "dpo",
        "dpo": {"hyperparameters": {"learning_rate_multiplier": 2.0, "beta": 3.0}},
    }
    ((requirement, reason),) = [(u.requirement, u.reason) for u in plan.unmet]
    assert requirement == "method.beta"
    assert reason.startswith(
        "createFineTuningJob: method.dpo.hyperparameters.beta is 3, more than 2"
    )
    assert "FineTuneDPOHyperparameters/properties/beta" in reason, "it cites the limit's source"


def test_each_requirement_the_api_cannot_honour_is_refused_with_its_reason(
    fake_openai: FakeOpenAI,
) -> None:
    (plan,) = planned(
        fake_openai,
        method={"type": "supervised", "adapter": "lora"},
        hyperparameters={"learning_rate": 0.0002, "warmup_ratio": 0.1, "max_seq_length": 512},
        placement={
            "allowed_regions": ["eu-*"],
            "require_private_network": True,
            "require_customer_managed_key": True,
            "required_tags": ["team"],
            "tags": {"team": "support"},
        },
    ).plans
    reasons = {u.requirement: u.reason for u in plan.unmet}
    assert set(reasons) == {
        "method.adapter",
        "hyperparameters.learning_rate",
        "hyperparameters.warmup_ratio",
        "hyperparameters.max_seq_length",
        "placement.allowed_regions",
        "placement.require_private_network",
        "placement.require_customer_managed_key",
        "placement.required_tags",
    }
    assert "use learning_rate_multiplier instead" in reasons["hyperparameters.learning_rate"]
    assert "does not let you choose where it trains" in reasons["placement.allowed_regions"]
    assert "chooses the adapter itself" in reasons["method.adapter"]


def test_what_it_can_do_is_read_off_the_protocols_it_implements() -> None:
    provider = OpenAIProvider()
    for protocol in (Pausable, Serving, Estimating, ContextLimits, Answering):
        assert isinstance(provider, protocol), protocol.__name__
    # The API serves each model id on its own: there is nothing to split, so no method.
    assert not isinstance(provider, TrafficSplitting)
    caps = capabilities_of(provider)
    assert (caps.pause, caps.endpoints, caps.traffic_split) == (True, True, False)


@pytest.mark.parametrize(
    ("model", "context"),
    [
        ("gpt-4o-mini-2024-07-18", (65_536, "gpt-4o-mini training context")),
        ("ft:gpt-4o-mini-2024-07-18:acme:bot:abc123", (65_536, "gpt-4o-mini training context")),
        ("gpt-4.1-nano-2025-04-14", (65_536, "gpt-4.1-nano training context")),
        ("gpt-3.5-turbo-1106", (16_385, "gpt-3.5-turbo training context")),
        ("gpt-3.5-turbo-0613", (4_096, "gpt-3.5-turbo-0613 training context")),
        ("davinci-002", None),
        ("Qwen/Qwen2.5-0.5B", None),
    ],
)
def test_the_training_context_of_each_model_family(
    model: str, context: tuple[int, str] | None
) -> None:
    assert OpenAIProvider().training_context(model) == context


def test_validation_counts_tokens_up_to_the_providers_training_context(
    toy_dataset: Path,
) -> None:
    report = tunefleet.validate_dataset(
        toy_dataset, model="gpt-4o-mini-2024-07-18", provider="openai", jobs=1
    )
    assert report.context_limit == 65_536
    assert report.context_limit_source == "gpt-4o-mini training context"
    assert report.training is not None and report.training.provider == "openai"
    # Without a provider nothing names the model's context: the conservative default.
    unknown = tunefleet.validate_dataset(toy_dataset, model="acme-lm-7b", jobs=1)
    assert unknown.context_limit == 4096


def test_reinforcement_is_refused_with_a_reason(fake_openai: FakeOpenAI) -> None:
    with pytest.raises(SpecError, match="reinforcement fine-tuning is not supported yet"):
        parse_spec(openai_spec(fake_openai, method="reinforcement"))


def test_an_api_url_that_would_send_the_key_in_clear_is_refused(fake_openai: FakeOpenAI) -> None:
    spec = parse_spec(openai_spec(fake_openai, options={"base_url": "http://api.example.com/v1"}))
    with pytest.raises(SpecError, match="must use https"):
        plan_run(spec, registry=discover())


def test_loading_the_provider_does_not_import_the_sdk() -> None:
    code = (
        "import sys; from tunefleet.plugins import discover; r = discover(); "
        "r.provider('openai').capabilities(); print('openai' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


# ---------------------------------------------------------------------- staging


def test_large_files_go_up_in_parts_with_progress(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    (plan,) = planned(
        fake_openai, options={"multipart_threshold_bytes": 4096, "upload_part_bytes": 4096}
    ).plans
    fake_openai.misbehave(
        status=429,
        code="rate_limit_exceeded",
        message="Rate limit reached",
        operation="addUploadPart",
        retry_after="0",
    )
    source = DATA / "train.jsonl"
    reports: list[tuple[int, int]] = []
    provider = OpenAIProvider()
    ref = provider.stage(
        plan,
        "train",
        source,
        hashlib.sha256(source.read_bytes()).hexdigest(),
        lambda sent, total: reports.append((sent, total)),
    )
    size = source.stat().st_size
    parts = -(-size // 4096)
    assert len(reports) == parts and reports[-1] == (size, size)
    assert fake_openai.operations().count("addUploadPart") == parts + 1  # one was throttled
    file_id = ref.uri.removeprefix("openai://files/")
    assert fake_openai.contents[file_id] == source.read_bytes()
    assert "createFile" not in fake_openai.operations()


def test_a_wrong_key_fails_without_showing_it(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    (plan,) = planned(fake_openai).plans
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-abcdefghijklmnopqrstuvwxyz0123456789")
    with pytest.raises(ProviderError) as caught:
        staged(OpenAIProvider(), plan, DATA / "train.jsonl")
    assert (caught.value.code, caught.value.status) == ("invalid_api_key", 401)
    message = str(caught.value)
    assert "HTTP 401 invalid_api_key" in message and "check OPENAI_API_KEY" in message
    assert "sk-li" not in message and "6789" not in message


def test_no_key_says_where_credentials_come_from(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    (plan,) = planned(fake_openai).plans
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ProviderError, match="set OPENAI_API_KEY in the environment"):
        staged(OpenAIProvider(), plan, DATA / "train.jsonl")


# ---------------------------------------------------------------------- jobs


def test_pause_and_resume_show_in_status_and_events(fake_openai: FakeOpenAI) -> None:
    (plan,) = planned(fake_openai, validation=False).plans
    provider = OpenAIProvider()
    job = provider.submit(plan, {"train": staged(provider, plan, DATA / "train.jsonl")}, "k1")
    while provider.status(job).state != JobState.RUNNING:
        pass
    first = provider.events(job, None)
    provider.pause(job)
    assert provider.status(job).state == JobState.PAUSED
    paused = provider.events(job, first.cursor)
    provider.resume(job)
    assert finish(provider, job) == JobState.SUCCEEDED
    rest = provider.events(job, paused.cursor)
    assert [e.state for e in paused.events if isinstance(e, StatusEvent)] == [JobState.PAUSED]
    assert [e.state for e in rest.events if isinstance(e, StatusEvent)][-1] == JobState.SUCCEEDED
    ids = [e.id for page in (first, paused, rest) for e in page.events]
    assert len(ids) == len(set(ids)), "a state entered twice is a new event, not a repeat"
    (cost,) = [e for e in rest.events if isinstance(e, CostEvent)]
    trained = fake_openai.jobs[job.id].body["trained_tokens"]
    assert cost.amount == pytest.approx(trained * 3.00 / 1e6)


def test_events_read_again_from_a_cursor_are_the_same_events(fake_openai: FakeOpenAI) -> None:
    (plan,) = planned(fake_openai, validation=False).plans
    provider = OpenAIProvider()
    refs = {"train": staged(provider, plan, DATA / "train.jsonl")}
    job = provider.submit(plan, refs, "k2")
    assert finish(provider, job) == JobState.SUCCEEDED
    whole = provider.events(job, None)
    again = provider.events(job, None)
    assert [e.id for e in again.events if not isinstance(e, StatusEvent)] == [
        e.id for e in whole.events if not isinstance(e, StatusEvent)
    ]
    assert not provider.events(job, whole.cursor).events
    metrics = [e for e in whole.events if isinstance(e, MetricEvent)]
    assert metrics and all(m.total_steps == fake_openai.jobs[job.id].total_steps for m in metrics)


def test_submit_returns_the_job_a_lost_answer_created(fake_openai: FakeOpenAI) -> None:
    (plan,) = planned(fake_openai).plans
    provider = OpenAIProvider()
    refs = {"train": staged(provider, plan, DATA / "train.jsonl")}
    with pytest.raises(ProviderError, match="nothing staged for validation_file"):
        provider.submit(plan, refs, "k3")
    refs["validation"] = staged(provider, plan, DATA / "validation.jsonl")
    first = provider.submit(plan, refs, "k3")
    # The engine retries a submit whose answer it never saw: no second job.
    assert provider.submit(plan, refs, "k3").id == first.id
    assert len(fake_openai.jobs) == 1


def test_max_concurrent_jobs_makes_the_engine_queue_before_the_service_refuses(
    fake_openai: FakeOpenAI,
) -> None:
    (plan,) = planned(fake_openai, validation=False, options={"max_concurrent_jobs": 1}).plans
    provider = OpenAIProvider()
    refs = {"train": staged(provider, plan, DATA / "train.jsonl")}
    provider.submit(plan, refs, "k5")
    with pytest.raises(ProviderBusyError) as caught:
        provider.submit(plan, refs, "k6")
    assert caught.value.code == "max_concurrent_jobs"
    assert "1 job(s) unfinished in this project" in str(caught.value)
    assert len(create_requests(fake_openai)) == 1, "the second create was never sent"


def test_the_services_job_limit_is_throttling_retried_then_queued(
    fake_openai: FakeOpenAI,
) -> None:
    # The service's limit on active jobs has no code of its own (see the fake): it is
    # throttling, repeated here as often as options.max_retries allows, then busy, so the
    # engine queues the target instead of failing it.
    fake_openai.max_active_jobs = 1
    (plan,) = planned(fake_openai, validation=False, options={"max_retries": 1}).plans
    provider = OpenAIProvider()
    refs = {"train": staged(provider, plan, DATA / "train.jsonl")}
    provider.submit(plan, refs, "k7")
    with pytest.raises(ProviderBusyError) as caught:
        provider.submit(plan, refs, "k8")
    assert (caught.value.code, caught.value.status) == ("rate_limit_exceeded", 429)
    assert "still refused after 2 attempts" in str(caught.value)
    assert len(create_requests(fake_openai)) == 1 + 2, "one create, then two refused tries"


def test_invoke_asks_the_fine_tuned_model(fake_openai: FakeOpenAI) -> None:
    (plan,) = planned(fake_openai, validation=False).plans
    provider = OpenAIProvider()
    job = provider.submit(plan, {"train": staged(provider, plan, DATA / "train.jsonl")}, "k4")
    assert finish(provider, job) == JobState.SUCCEEDED
    model = provider.artifacts(job)[0]
    endpoint = provider.deploy(plan, model, "support")
    reply = provider.invoke(
        endpoint,
        ChatRequest(messages=[{"role": "user", "content": "one two three"}], max_tokens=3),
    )
    assert reply.finish_reason == "length" and reply.completion_tokens == 3
    with pytest.raises(ProviderNotFoundError) as gone:
        provider.deploy(plan, model.model_copy(update={"uri": f"{BASE_MODEL}:gone"}), "x")
    assert (gone.value.code, gone.value.status) == ("model_not_found", 404)
    (chat,) = [body for op, body in fake_openai.requests if op == "createChatCompletion"]
    assert chat["max_completion_tokens"] == 3 and chat["model"] == model.uri


def test_every_exchange_was_checked_against_the_api_description(
    fake_openai: FakeOpenAI,
) -> None:
    if fake_openai.contract is None:
        pytest.skip(f"OpenAI's API description is not at {OPENAI_SPEC} (set TUNEFLEET_SPECS)")
    test_invoke_asks_the_fine_tuned_model(fake_openai)
    checked = set(fake_openai.contract.checked)
    assert {
        "listFiles",
        "createFile",
        "createFineTuningJob",
        "listPaginatedFineTuningJobs",
        "retrieveFineTuningJob",
        "listFineTuningJobCheckpoints",
        "retrieveModel",
        "createChatCompletion",
    } <= checked
    assert not fake_openai.violations

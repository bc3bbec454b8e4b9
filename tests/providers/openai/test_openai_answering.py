"""Evaluation on the OpenAI provider: the plan says how the golden set is answered, and
``answer`` asks a model (fine-tuned, base, a judge) through the real SDK against the fake
service, which checks every request against OpenAI's API description.

Plans are made by calling the provider's ``plan`` with the facts validation would have
found, so these tests depend on the provider alone, not on core's evaluation step.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from tests.openapi_contract import OPENAI_SPEC
from tests.providers.openai.conftest import BASE_MODEL, DATA, openai_spec
from tests.providers.openai.fake_openai import API_KEY, FakeOpenAI

from tunefleet.errors import (
    ProviderError,
    ProviderNotFoundError,
    QuotaExceededError,
    TransientProviderError,
)
from tunefleet.provider import Answering, ChatRequest, DatasetFacts, Plan, PlanRequest
from tunefleet.spec import parse_spec
from tunefleet_openai import _answering
from tunefleet_openai.options import OpenAIOptions
from tunefleet_openai.provider import OpenAIProvider

JUDGE = "gpt-4o-2024-08-06"
TRAIN = DATA / "train.jsonl"
GOLDEN = DATA / "validation.jsonl"
EVALUATION = {"golden_set": str(GOLDEN), "metrics": ["exact_match"], "max_tokens": 512}


def facts(role: str, path: Path) -> DatasetFacts:
    data = path.read_bytes()
    return DatasetFacts(
        role=role,  # type: ignore[arg-type]
        location=str(path),
        examples=len(data.splitlines()),
        tokens=len(data) // 4,
        billable_tokens=len(data) // 4,
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
    )


def plan_of(spec_text: str, **datasets: DatasetFacts) -> Plan:
    spec = parse_spec(spec_text)
    target = spec.targets[0]
    options = OpenAIOptions.model_validate(target.options, strict=True)
    datasets.setdefault("train", facts("train", TRAIN))
    return OpenAIProvider().plan(
        PlanRequest(spec=spec, target=target, options=options, datasets=datasets)
    )


def examples(path: Path) -> list[tuple[list[dict[str, Any]], str]]:
    """Each chat example's question (the messages before its answer) and its answer."""
    found = []
    for line in path.read_text().splitlines():
        messages = json.loads(line)["messages"]
        found.append((messages[:-1], messages[-1]["content"]))
    return found


def fine_tuned(server: FakeOpenAI, path: Path = TRAIN, **spec: Any) -> tuple[Plan, str]:
    """A plan and the model its job fine-tuned on ``path`` (the quickstart's training
    data), ``spec`` changing the spec."""
    plan = plan_of(
        openai_spec(server, validation=False, dataset={"train": str(path)}, **spec),
        train=facts("train", path),
    )
    provider = OpenAIProvider()
    ref = provider.stage(plan, "train", path, facts("train", path).sha256 or "")
    job = provider.submit(plan, {"train": ref}, "answering")
    for _ in range(100):
        if provider.status(job).state.terminal:
            break
    artifact = provider.artifacts(job)[0]
    assert artifact.kind == "hosted_model"
    return plan, artifact.uri


def ask(question: list[dict[str, Any]] | str, max_tokens: int = 256, **kw: Any) -> ChatRequest:
    messages = [{"role": "user", "content": question}] if isinstance(question, str) else question
    return ChatRequest(messages=messages, max_tokens=max_tokens, **kw)


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits between retries, recorded instead of spent."""
    seen: list[float] = []
    monkeypatch.setattr(_answering, "sleep", seen.append)
    return seen


# ---------------------------------------------------------------------- answering


def test_the_fine_tuned_model_answers_what_it_learnt_and_the_base_model_does_not(
    fake_openai: FakeOpenAI,
) -> None:
    plan, model = fine_tuned(fake_openai)
    learnt = examples(TRAIN)[:3]
    requests = [ask(question) for question, _ in learnt] + [ask("Where is my parcel?")]
    progress: list[tuple[int, int]] = []
    provider = OpenAIProvider()
    assert isinstance(provider, Answering)

    replies = provider.answer(
        plan.options, model, requests, lambda done, total: progress.append((done, total))
    )

    assert [r.text for r in replies[:3]] == [answer for _, answer in learnt], "in order"
    assert replies[3].text == f"[{model}] You asked: Where is my parcel?"
    assert progress == [(1, 4), (2, 4), (3, 4), (4, 4)]
    for reply, request in zip(replies, requests, strict=True):
        assert reply.finish_reason == "stop"
        # The fake counts a word as a token.
        assert reply.completion_tokens == len(reply.text.split())
        assert reply.prompt_tokens == sum(len(m["content"].split()) for m in request.messages)
    baseline = provider.answer(plan.options, BASE_MODEL, requests[:3])
    expected = {answer for _, answer in learnt}
    assert not expected & {r.text for r in baseline}, "the base model never says the answer"

    bodies = fake_openai.chat_requests()
    assert len(bodies) == 7
    for body, request in zip(bodies, requests + requests[:3], strict=True):
        # max_completion_tokens, not the deprecated max_tokens; one choice; greedy.
        assert body == {
            "model": body["model"],
            "messages": request.messages,
            "max_completion_tokens": 256,
            "temperature": 0.0,
            "n": 1,
        }
    assert [b["model"] for b in bodies] == [model] * 4 + [BASE_MODEL] * 3
    if fake_openai.contract is not None:  # each was checked against the description
        assert fake_openai.contract.checked["createChatCompletion"] == 7


def test_a_dpo_model_answers_with_the_preferred_output(fake_openai: FakeOpenAI) -> None:
    preference = Path(__file__).parent / "preference.jsonl"
    plan, model = fine_tuned(fake_openai, preference, method={"type": "dpo"})
    first = json.loads(preference.read_text().splitlines()[0])
    (reply,) = OpenAIProvider().answer(plan.options, model, [ask(first["input"]["messages"])])
    assert reply.text == first["preferred_output"][-1]["content"]


def test_an_answer_cut_at_max_tokens_says_so(fake_openai: FakeOpenAI) -> None:
    plan = plan_of(openai_spec(fake_openai))
    (reply,) = OpenAIProvider().answer(plan.options, BASE_MODEL, [ask("one two", max_tokens=2)])
    assert (reply.finish_reason, reply.completion_tokens) == ("length", 2)


@pytest.mark.parametrize(
    ("status", "code", "message", "retry_after", "wait"),
    [
        # The words of the API's request-rate limit, with the wait it asks for.
        (
            429,
            "rate_limit_exceeded",
            "Rate limit reached for gpt-4o-mini in organization org-fake on requests per min "
            "(RPM): Limit 3, Used 3, Requested 1. Please try again in 20s.",
            "20",
            20.0,
        ),
        # "The server had an error while processing your request" (the error-codes guide's 500).
        (
            500,
            None,
            "The server had an error while processing your request. Sorry about that!",
            None,
            None,
        ),
        (503, None, "The engine is currently overloaded, please try again later.", None, None),
    ],
)
def test_a_transient_failure_is_asked_again_after_the_wait(
    fake_openai: FakeOpenAI,
    waits: list[float],
    status: int,
    code: str | None,
    message: str,
    retry_after: str | None,
    wait: float | None,
) -> None:
    plan = plan_of(openai_spec(fake_openai))
    fake_openai.misbehave(
        status=status,
        code=code,
        message=message,
        operation="createChatCompletion",
        retry_after=retry_after,  # the first question's first try
    )
    questions = [ask("first?"), ask("second?"), ask("third?")]
    progress: list[tuple[int, int]] = []
    replies = OpenAIProvider().answer(
        plan.options, BASE_MODEL, questions, lambda *seen: progress.append(seen)
    )
    assert [r.text for r in replies] == [
        f"[{BASE_MODEL}] You asked: {q.messages[0]['content']}" for q in questions
    ]
    assert len(fake_openai.chat_requests()) == 4, "one question asked twice, no other again"
    assert progress == [(1, 3), (2, 3), (3, 3)]
    (waited,) = waits
    if wait is not None:
        assert waited == wait, "waits as long as the service asked"
    else:
        assert 0 <= waited <= 60, "jittered backoff, capped"


def test_a_question_throttled_on_every_try_fails_as_transient(
    fake_openai: FakeOpenAI, waits: list[float]
) -> None:
    plan = plan_of(openai_spec(fake_openai, options={"max_retries": 2}))
    fake_openai.misbehave(
        status=429,
        code="rate_limit_exceeded",
        message="Rate limit reached for gpt-4o-mini in organization org-fake on tokens per min.",
        operation="createChatCompletion",
        retry_after="1",
        times=10,
    )
    with pytest.raises(TransientProviderError) as caught:
        OpenAIProvider().answer(plan.options, BASE_MODEL, [ask("first?"), ask("second?")])
    assert (caught.value.code, caught.value.status) == ("rate_limit_exceeded", 429)
    assert caught.value.retry_after == 1.0, "the engine may wait as asked too"
    assert len(fake_openai.chat_requests()) == 3, "max_retries + 1 tries, the SDK adds none"
    assert waits == [1.0, 1.0]


def test_a_model_that_does_not_exist_is_not_found_by_its_code(
    fake_openai: FakeOpenAI, waits: list[float]
) -> None:
    plan = plan_of(openai_spec(fake_openai))
    gone = f"ft:{BASE_MODEL}:org-fake:support-bot:gone"
    with pytest.raises(ProviderNotFoundError) as caught:
        OpenAIProvider().answer(plan.options, gone, [ask("Hello?")])
    assert (caught.value.code, caught.value.status) == ("model_not_found", 404)
    assert gone in str(caught.value)
    assert len(fake_openai.chat_requests()) == 1 and not waits, "not retried"


def test_a_spent_quota_is_a_quota_error_and_not_retried(
    fake_openai: FakeOpenAI, waits: list[float]
) -> None:
    plan = plan_of(openai_spec(fake_openai))
    fake_openai.misbehave(
        status=429,
        code="insufficient_quota",
        # The error-codes guide's words for a 429 no retry clears.
        message="You exceeded your current quota, please check your plan and billing details.",
        operation="createChatCompletion",
    )
    with pytest.raises(QuotaExceededError) as caught:
        OpenAIProvider().answer(plan.options, BASE_MODEL, [ask("Hello?")])
    assert (caught.value.code, caught.value.status) == ("insufficient_quota", 429)
    assert len(fake_openai.chat_requests()) == 1 and not waits


def test_more_tokens_than_the_model_generates_is_refused_not_retried(
    fake_openai: FakeOpenAI, waits: list[float]
) -> None:
    plan = plan_of(openai_spec(fake_openai))
    with pytest.raises(ProviderError) as caught:
        OpenAIProvider().answer(plan.options, BASE_MODEL, [ask("Hello?", max_tokens=20_000)])
    assert not isinstance(caught.value, TransientProviderError | ProviderNotFoundError)
    assert (caught.value.code, caught.value.status) == ("invalid_value", 400)
    assert "(param max_tokens)" in str(caught.value)
    assert len(fake_openai.chat_requests()) == 1 and not waits


def test_a_reasoning_model_takes_no_temperature_but_its_default(fake_openai: FakeOpenAI) -> None:
    plan = plan_of(openai_spec(fake_openai))
    provider = OpenAIProvider()
    with pytest.raises(ProviderError) as caught:
        provider.answer(plan.options, "o3-mini-2025-01-31", [ask("Hello?")])
    assert (caught.value.code, caught.value.status) == ("unsupported_value", 400)
    assert "(param temperature)" in str(caught.value)
    (reply,) = provider.answer(plan.options, "o3-mini-2025-01-31", [ask("Hello?", temperature=1.0)])
    assert reply.finish_reason == "stop"


def test_a_judge_answers_as_the_test_decides(fake_openai: FakeOpenAI) -> None:
    asked: list[dict[str, Any]] = []

    def always_a(body: dict[str, Any]) -> str:
        asked.append(body)
        return "A"

    fake_openai.judge(JUDGE, always_a)
    # A judge's options are its own: a spec's evaluation.judge.options, as JSON.
    options = {"base_url": fake_openai.base_url, "max_retries": 1}
    comparison = ask("Which answer is better, A or B? ...", max_tokens=4)
    replies = OpenAIProvider().answer(options, JUDGE, [comparison, comparison])
    assert [r.text for r in replies] == ["A", "A"]
    assert [b["messages"] for b in asked] == [comparison.messages] * 2


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"max_retries": "3"}, "options.max_retries: Input should be a valid integer"),
        ({"bogus": 1}, "options.bogus: Extra inputs are not permitted"),
        ({"flavor": "azure"}, "flavor azure needs azure_subscription_id"),
    ],
)
def test_options_are_validated_as_the_plan_validates_a_targets(
    fake_openai: FakeOpenAI, options: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ProviderError) as caught:
        OpenAIProvider().answer(
            {"base_url": fake_openai.base_url, **options}, JUDGE, [ask("Hello?")]
        )
    assert caught.value.code == "invalid_options"
    assert problem in str(caught.value)
    assert not fake_openai.chat_requests(), "nothing is sent"


def test_on_azure_a_deployment_answers_by_its_name(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", API_KEY)
    fake_openai.deployments["judge"] = JUDGE
    fake_openai.judge(JUDGE, lambda body: "B")
    options = {
        "flavor": "azure",
        "azure_subscription_id": "00000000-0000-0000-0000-000000000000",
        "azure_resource_group": "rg",
        "azure_resource": "res",
        "azure_endpoint": fake_openai.base_url.removesuffix("/v1"),
    }
    provider = OpenAIProvider()
    (reply,) = provider.answer(options, "judge", [ask("A or B?")])
    assert reply.text == "B"
    # A fine-tuned model answers on Azure only once deployed under a name of its own.
    with pytest.raises(ProviderNotFoundError) as caught:
        provider.answer(options, f"{BASE_MODEL}.ft-0123", [ask("Hello?")])
    assert (caught.value.code, caught.value.status) == ("DeploymentNotFound", 404)


# ---------------------------------------------------------------------- planning


def test_the_plan_shows_the_chat_request_that_answers_the_golden_set(
    fake_openai: FakeOpenAI,
) -> None:
    golden = facts("golden_set", GOLDEN)
    plan = plan_of(
        openai_spec(fake_openai, evaluation={**EVALUATION, "max_examples": 3}),
        golden_set=golden,
    )
    assert plan.ok and plan.predictions == "answer"
    assert [r.operation for r in plan.requests] == [
        "createFile",
        "createFile",
        "createFineTuningJob",
        "createChatCompletion",
    ]
    chat = plan.request("createChatCompletion", "evaluate")
    assert chat.service == "openai"
    assert chat.body == {
        "model": "${model}",
        "messages": "${golden_prompt}",
        "max_completion_tokens": 512,
        "temperature": 0.0,
        "n": 1,
    }
    assert "each of the 3 golden questions with the fine-tuned model" in chat.purpose
    assert f"then with the base model {BASE_MODEL} for the baseline (6 requests" in chat.purpose
    # The planned body is the one answer() sends, question and model filled in.
    question = examples(GOLDEN)[0][0]
    sent = _answering.chat_body(BASE_MODEL, ChatRequest(messages=question, max_tokens=512))
    assert sent == {**chat.body, "model": BASE_MODEL, "messages": question}
    assert any("estimate covers training only" in note for note in plan.notes)


def test_without_a_count_the_plan_says_each_golden_question(fake_openai: FakeOpenAI) -> None:
    plan = plan_of(openai_spec(fake_openai, evaluation=EVALUATION))
    chat = plan.request("createChatCompletion", "evaluate")
    assert "answer each golden question with the fine-tuned model" in chat.purpose


def test_a_plan_without_evaluation_is_unchanged(fake_openai: FakeOpenAI) -> None:
    plan = plan_of(openai_spec(fake_openai))
    assert [r.operation for r in plan.requests] == [
        "createFile",
        "createFile",
        "createFineTuningJob",
    ]
    assert plan.ok and plan.notes == []
    # The fine-tuned model can still answer a golden set later (tunefleet eval).
    assert plan.predictions == "answer"


def test_an_answer_longer_than_the_model_generates_fails_the_plan(
    fake_openai: FakeOpenAI,
) -> None:
    plan = plan_of(
        openai_spec(
            fake_openai,
            base_model="gpt-3.5-turbo-0125",
            evaluation={**EVALUATION, "max_tokens": 8192},
        )
    )
    assert [(u.requirement, u.reason) for u in plan.unmet] == [
        (
            "evaluation.max_tokens",
            "createChatCompletion: max_completion_tokens is 8,192, more than 4,096 "
            "(https://platform.openai.com/docs/models/gpt-3.5-turbo (max output tokens))",
        )
    ]
    within = plan_of(openai_spec(fake_openai, evaluation={**EVALUATION, "max_tokens": 8192}))
    assert within.ok, "gpt-4o-mini generates up to 16,384 tokens"


def _azure(server: FakeOpenAI, **top: Any) -> str:
    body = json.loads(openai_spec(server, validation=False, **top))
    body["targets"] = [
        {
            "name": "azure",
            "provider": "openai",
            "region": "swedencentral",
            "options": {
                "flavor": "azure",
                "azure_subscription_id": "00000000-0000-0000-0000-000000000000",
                "azure_resource_group": "rg",
                "azure_resource": "res",
            },
        }
    ]
    return json.dumps(body)


def test_azure_cannot_evaluate_a_fine_tuned_model_and_says_why(fake_openai: FakeOpenAI) -> None:
    plan = plan_of(_azure(fake_openai, evaluation=EVALUATION))
    assert plan.predictions is None
    ((requirement, reason),) = [(u.requirement, u.reason) for u in plan.unmet]
    assert requirement == "evaluation"
    assert "answers only once it is deployed" in reason
    assert "https://learn.microsoft.com/azure/ai-services/openai/how-to/fine-tuning-deploy" in (
        reason
    )
    assert "without flavor: azure" in reason, "it says what to do instead"
    assert "createChatCompletion" not in [r.operation for r in plan.requests]
    # Without an evaluation, nothing is refused.
    plain = plan_of(_azure(fake_openai))
    assert plain.ok and plain.predictions is None


def test_every_chat_exchange_was_checked_against_the_api_description(
    fake_openai: FakeOpenAI,
) -> None:
    if fake_openai.contract is None:
        pytest.skip(f"OpenAI's API description is not at {OPENAI_SPEC} (set TUNEFLEET_SPECS)")
    test_the_fine_tuned_model_answers_what_it_learnt_and_the_base_model_does_not(fake_openai)
    assert "createChatCompletion" in fake_openai.contract.checked
    assert not fake_openai.violations

"""Answering: a model's replies to chat requests through the Chat Completions API.

This is how an OpenAI target is evaluated (its plan's ``predictions`` is ``answer``): once
the fine-tuning job has succeeded, core asks the fine-tuned model (the ``hosted_model``
artifact's id) every golden question, and the base model the same for the baseline. It is
also how a judge model on the OpenAI API (``evaluation.judge.provider: openai``) is asked.
Nothing is created, so repeating a request costs tokens, never a resource.

Each question is one ``createChatCompletion`` request with ``n: 1``, the messages, the
temperature as given and the answer's length as ``max_completion_tokens``: OpenAI's API
description deprecates ``max_tokens`` "in favor of ``max_completion_tokens``" and says it
"is not compatible with o-series models" (``CreateChatCompletionRequest``), while
``max_completion_tokens`` is taken by every chat model. Reasoning models take no
temperature but their default (1); asked for another, the service refuses the request
with a 400, and the error says so.

Transient failures (a 429 for the request rate, with the wait the service asked for, 408,
409, 5xx, timeouts and dropped connections) are retried per request, with the provider's
policy: ``options.max_retries`` more tries, waiting as asked (``Retry-After``) or with
jittered backoff (:func:`tunefleet.kit.retry.wait_as_asked`), so one throttled question
does not fail an evaluation of hundreds. The SDK's own retries are off for these requests,
so a request is tried ``max_retries + 1`` times, not that squared. Everything else is
translated once (:func:`tunefleet_openai._client.translated`): an unknown model is
ProviderNotFoundError, a spent quota QuotaExceededError, a refused request ProviderError,
each with the service's code and status.

On Azure OpenAI the chat API addresses a deployment, not a model, so ``model`` there is a
deployment's name (a judge deployed in the resource). A fine-tuned model answers there only
once deployed, which tunefleet does only at deploy, after evaluation; an Azure target's
plan therefore has no predictions and refuses an evaluation, saying why
(:data:`AZURE_EVALUATION`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import tenacity
from pydantic import ValidationError

from tunefleet.errors import ProviderError, TransientProviderError
from tunefleet.kit.chat import chat_reply
from tunefleet.kit.retry import wait_as_asked
from tunefleet.provider import ChatReply, ChatRequest, DatasetFacts, NativeRequest, Unmet
from tunefleet.spec import EvaluationSpec, RunSpec
from tunefleet_openai import _limits, pricing
from tunefleet_openai._client import PROVIDER, translated
from tunefleet_openai.options import OpenAIOptions

if TYPE_CHECKING:
    import openai

__all__ = [
    "AZURE_EVALUATION",
    "CHAT",
    "GOLDEN_PROMPT",
    "MODEL",
    "answer",
    "chat_body",
    "options_for_answering",
    "plan",
]

CHAT = "createChatCompletion"
"""The planned request of an evaluation, by the operation id OpenAI's API reference uses."""
MODEL = "${model}"
"""Stands for the model asked in the planned request: the fine-tuned model, then the base."""
GOLDEN_PROMPT = "${golden_prompt}"
"""Stands for a golden question's messages (those before its expected answer)."""
GREEDY = 0.0
"""The temperature golden questions are asked with: evaluation decodes greedily."""
FINE_TUNING_DEPLOY = (
    "https://learn.microsoft.com/azure/ai-services/openai/how-to/fine-tuning-deploy"
)
FINE_TUNE_TEST = "https://learn.microsoft.com/azure/ai-services/openai/how-to/fine-tune-test"
AZURE_EVALUATION = (
    'on Azure OpenAI a fine-tuned model answers only once it is deployed ("When you deploy '
    f'the model, you make the model available for inferencing", {FINE_TUNING_DEPLOY}), and '
    "tunefleet deploys only after the evaluation passed; it does not create a deployment to "
    "evaluate with (Azure's Developer tier for testing a fine-tuned model is a billed "
    "deployment that lives 24 hours and has no data-residency guarantee, "
    f"{FINE_TUNE_TEST}). To evaluate, train the spec on a target on the OpenAI API (without "
    "flavor: azure), whose fine-tuned models answer without a deployment; or remove "
    "evaluation to train and deploy on Azure without the gate"
)
"""Why an Azure target cannot be evaluated, and what to do instead."""

sleep: Callable[[float], None] = time.sleep
"""How retries wait (tests replace it to see the waits without spending them)."""


# ---------------------------------------------------------------------- requests


def _body(model: str, messages: Any, max_tokens: int, temperature: float) -> dict[str, Any]:
    return {
        "model": model,
        "messages": messages,
        "max_completion_tokens": max_tokens,
        "temperature": temperature,
        "n": 1,
    }


def chat_body(model: str, request: ChatRequest) -> dict[str, Any]:
    """The ``createChatCompletion`` body asking ``model`` ``request``: one choice, its
    messages and temperature, its length as ``max_completion_tokens``."""
    return _body(model, request.messages, request.max_tokens, request.temperature)


def options_for_answering(options: Mapping[str, Any]) -> OpenAIOptions:
    """``options`` (a target's or a judge's, as JSON) validated as the plan validates a
    target's: strictly, with the provider's options model; ProviderError
    ``invalid_options`` naming each problem otherwise."""
    try:
        return OpenAIOptions.model_validate(dict(options), strict=True)
    except ValidationError as exc:
        problems = "; ".join(
            f"options.{'.'.join(map(str, error['loc']))}: {error['msg']}"
            if error["loc"]
            else f"options: {error['msg']}"
            for error in exc.errors()
        )
        raise ProviderError(
            PROVIDER, f"cannot answer with these options: {problems}", code="invalid_options"
        ) from None


def answer(
    client: openai.OpenAI,
    options: OpenAIOptions,
    model: str,
    requests: Sequence[ChatRequest],
    progress: Callable[[int, int], None] | None = None,
) -> list[ChatReply]:
    """``model``'s reply to each of ``requests``, in order, one chat completion each;
    ``progress(answered, total)`` after each reply."""
    once = client.with_options(max_retries=0)  # retried here, per request, as asked
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(TransientProviderError),
        stop=tenacity.stop_after_attempt(options.max_retries + 1),
        wait=wait_as_asked(backoff=0.5, cap=60.0),
        sleep=sleep,
        reraise=True,
    )
    where = f"model {model}"

    def ask(body: dict[str, Any]) -> Any:
        with translated(f"ask {where}"):
            return once.chat.completions.create(**body)

    replies = []
    total = len(requests)
    for answered, request in enumerate(requests, start=1):
        completion = retrying(ask, chat_body(model, request))
        replies.append(chat_reply(PROVIDER, completion.model_dump(), where))
        if progress is not None:
            progress(answered, total)
    return replies


# ---------------------------------------------------------------------- planning


def _questions(evaluation: EvaluationSpec, golden: DatasetFacts | None) -> int | None:
    """How many golden questions will be asked, where the plan can tell."""
    examples = golden.examples if golden is not None else None
    if examples is None:
        return None
    cap = evaluation.max_examples
    return min(examples, cap) if cap is not None else examples


def _request(spec: RunSpec, evaluation: EvaluationSpec, questions: int | None) -> NativeRequest:
    base = spec.base_model
    if questions is not None:
        what = f"each of the {questions:,} golden questions"
        count = f"{2 * questions:,} requests"
    elif evaluation.max_examples is not None:
        what = f"each golden question (up to {evaluation.max_examples:,})"
        count = "one request per question and model"
    else:
        what = "each golden question"
        count = "one request per question and model"
    return NativeRequest(
        phase="evaluate",
        service="openai",
        operation=CHAT,
        body=_body(MODEL, GOLDEN_PROMPT, evaluation.max_tokens, GREEDY),
        purpose=f"after the job succeeds: answer {what} with the fine-tuned model "
        f"({MODEL}), then with the base model {base} for the baseline ({count}; "
        f"{GOLDEN_PROMPT} is a question's messages)",
    )


def _limits_of(spec: RunSpec, planned: NativeRequest) -> list[Unmet]:
    """An Unmet for each documented limit the evaluation's requests break; the fine-tuned
    model generates as many tokens as its base, whose limit is checked."""
    sample = {
        **planned.body,
        "model": spec.base_model,
        "messages": [{"role": "user", "content": "?"}],
    }
    schema = _limits.chat_completion_schema(pricing.max_output_tokens(spec.base_model))
    return [
        Unmet(
            requirement=(
                "evaluation.max_tokens"
                if violation.path == "max_completion_tokens"
                else "evaluation"
            ),
            reason=f"{CHAT}: {violation}",
        )
        for violation in _limits.violations(schema, sample)
    ]


def plan(
    spec: RunSpec, options: OpenAIOptions, golden: DatasetFacts | None
) -> tuple[Literal["answer"] | None, list[NativeRequest], list[Unmet], list[str]]:
    """How the golden set's answers come for a target with ``options``, and, when the spec
    has an evaluation, its planned chat request, what it cannot honour and a note on cost:
    ``(predictions, requests, unmet, notes)``.

    On the OpenAI API a fine-tuned model answers by id, so predictions are ``answer``
    whether or not the spec evaluates (a later ``tunefleet eval`` can). On Azure they are
    None, and an evaluation is refused with :data:`AZURE_EVALUATION`.
    """
    evaluation = spec.evaluation
    if options.flavor == "azure":
        unmet = [Unmet(requirement="evaluation", reason=AZURE_EVALUATION)] if evaluation else []
        return None, [], unmet, []
    if evaluation is None:
        return "answer", [], [], []
    questions = _questions(evaluation, golden)
    planned = _request(spec, evaluation, questions)
    note = (
        "evaluation asks the fine-tuned and the base model each golden question "
        f"(up to {evaluation.max_tokens:,} tokens an answer), billed per token at the models' "
        "inference prices; the estimate covers training only"
    )
    return "answer", [planned], _limits_of(spec, planned), [note]

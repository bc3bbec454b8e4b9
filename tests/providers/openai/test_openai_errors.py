"""The translation of the SDKs' errors into tunefleet's, fed the answers the services give.

The openai SDK runs for real here, over a mock transport that answers as the API does: an
HTTP status and ``{"error": {"message", "type", "param", "code"}}`` (the Error object of
OpenAI's API reference, ``components.schemas.Error`` in ../shared/specs/openai-openapi.json,
where all four keys are required). The wording of each answer is OpenAI's own, as its
error-codes guide (https://platform.openai.com/docs/guides/error-codes) gives it or as the
API is publicly reported to say it; the translation never reads it, but a test with
invented wording could hide a translation that did.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx2
import openai
import pytest
from tests.providers.openai.conftest import BASE_MODEL, azure_spec
from tests.providers.openai.fake_azure import FakeAzureManagement
from tests.providers.openai.fake_openai import FakeOpenAI

from tunefleet.errors import (
    ProviderBusyError,
    ProviderError,
    ProviderNotFoundError,
    QuotaExceededError,
    TransientProviderError,
)
from tunefleet.planning import plan_run
from tunefleet.plugins import discover
from tunefleet.provider import ArtifactRef
from tunefleet.spec import parse_spec
from tunefleet_openai._client import ThrottledError, translated
from tunefleet_openai.provider import OpenAIProvider

JOB = "ftjob-abc123"


def answered(
    status: int, error: Mapping[str, Any] | None, headers: Mapping[str, str] | None = None
) -> ProviderError:
    """What retrieving a job raises when the API answers ``status`` with ``error``."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        if error is None:
            raise httpx2.ConnectError("connection refused", request=request)
        return httpx2.Response(status, json={"error": dict(error)}, headers=dict(headers or {}))

    client = openai.OpenAI(
        api_key="sk-test-0000",
        base_url="https://api.openai.test/v1",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )
    with pytest.raises(ProviderError) as caught, translated("retrieve fine-tuning job"):
        client.fine_tuning.jobs.retrieve(JOB)
    return caught.value


def test_not_found_is_a_lookup_error_with_the_services_code() -> None:
    # The API answers 404 for a model that does not exist (publicly reported, e.g.
    # Shopify/roast#13; wording from OpenAI's help center article 7102672).
    error = answered(
        404,
        {
            "message": "The model `ft:gpt-4o-mini-2024-07-18:acme::gone` does not exist or you "
            "do not have access to it.",
            "type": "invalid_request_error",
            "param": None,
            "code": "model_not_found",
        },
    )
    assert isinstance(error, ProviderNotFoundError) and isinstance(error, LookupError)
    assert (error.code, error.status) == ("model_not_found", 404)
    assert not isinstance(error, TransientProviderError)


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("insufficient_quota", "insufficient_quota"),
        # The same answer as older accounts get it, code null (type alone names it).
        (None, "insufficient_quota"),
        # The fine-tuning API's daily limit on job creations.
        ("daily_rate_limit_exceeded", "requests"),
    ],
)
def test_a_quota_that_waiting_cannot_clear_is_not_retried(code: str | None, kind: str) -> None:
    # Error-codes guide: "429 - You exceeded your current quota, please check your plan and
    # billing details" (credits or the monthly budget spent); body as in mattvr/ShellGPT#23.
    error = answered(
        429,
        {
            "message": "You exceeded your current quota, please check your plan and billing "
            "details. For more information on this error, read the docs: "
            "https://platform.openai.com/docs/guides/error-codes/api-errors.",
            "type": kind,
            "param": None,
            "code": code,
        },
        {"retry-after": "20"},
    )
    assert isinstance(error, QuotaExceededError)
    assert not isinstance(error, TransientProviderError), "the engine must not retry it"
    assert (error.code, error.status) == (code or kind, 429)
    assert "no retry will clear" in str(error)


@pytest.mark.parametrize(
    ("headers", "wait"),
    [({"retry-after": "20"}, 20.0), ({"retry-after-ms": "1500"}, 1.5), ({}, None)],
)
def test_throttling_is_transient_and_carries_the_wait_asked_for(
    headers: dict[str, str], wait: float | None
) -> None:
    # Error-codes guide: "429 - Rate limit reached for requests" (pace your requests); the
    # message as the API words it, type `requests`, code `rate_limit_exceeded`.
    error = answered(
        429,
        {
            "message": "Rate limit reached for gpt-4o-mini in organization org-abc on requests "
            "per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s. Visit "
            "https://platform.openai.com/account/rate-limits to learn more.",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        },
        headers,
    )
    assert isinstance(error, ThrottledError) and isinstance(error, TransientProviderError)
    assert not isinstance(error, ProviderBusyError), "a 429 never queues by itself"
    assert (error.code, error.status, error.retry_after) == ("rate_limit_exceeded", 429, wait)


@pytest.mark.parametrize(
    ("status", "message"),
    [
        # Error-codes guide: "500 - The server had an error while processing your request".
        (500, "The server had an error while processing your request. Sorry about that!"),
        # Error-codes guide: "503 - The engine is currently overloaded, please try again later".
        (503, "The engine is currently overloaded, please try again later"),
    ],
)
def test_server_errors_are_transient(status: int, message: str) -> None:
    error = answered(
        status, {"message": message, "type": "server_error", "param": None, "code": None}
    )
    assert isinstance(error, TransientProviderError)
    assert (error.code, error.status) == (None, status)
    assert message in str(error)


def test_a_dropped_connection_is_transient() -> None:
    error = answered(0, None)
    assert isinstance(error, TransientProviderError)
    assert (error.code, error.status) == ("connection_error", None)


@pytest.mark.parametrize(
    "key",
    [
        "sk-abc12***************************************7890",
        "sk-proj-********************************************************************abcd",
    ],
)
def test_a_rejected_key_is_permanent_and_never_shown(key: str) -> None:
    # Error-codes guide: "401 - Incorrect API key provided"; the API echoes part of the key.
    error = answered(
        401,
        {
            "message": f"Incorrect API key provided: {key}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        },
    )
    assert type(error) is ProviderError
    assert (error.code, error.status) == ("invalid_api_key", 401)
    message = str(error)
    assert "[redacted key]" in message and "check OPENAI_API_KEY" in message
    assert key not in message and key[-4:] not in message


def test_an_azure_quota_fails_the_deployment_saying_what_to_request(
    fake_openai: FakeOpenAI, fake_azure: FakeAzureManagement
) -> None:
    fake_azure.capacity_left = 0
    (plan,) = plan_run(parse_spec(azure_spec(fake_openai, fake_azure)), registry=discover()).plans
    with pytest.raises(QuotaExceededError) as caught:
        OpenAIProvider().deploy(plan, ArtifactRef(kind="hosted_model", uri=BASE_MODEL), "bot")
    assert (caught.value.code, caught.value.status) == ("InsufficientQuota", 400)
    assert "request more quota" in str(caught.value)
    assert not fake_azure.deployments

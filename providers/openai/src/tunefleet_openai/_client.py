"""The SDK client, and the SDK's exceptions turned into tunefleet's.

The ``openai`` package is imported here, by the first call that needs a client, never when
the provider is loaded. Retries happen at two levels. The SDK retries each request
(``options.max_retries`` times: 429, 408, 409, 5xx and dropped connections, honouring
``Retry-After``), so one throttled request does not fail a step made of several; what still
fails is translated by :func:`translated`, and the run engine retries the whole step when
it is transient. Creating a job is the exception: the API takes no idempotency key, so
that request is never retried blindly (see ``OpenAIProvider.submit``).
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from tunefleet.errors import ProviderBusyError, ProviderError, TransientProviderError
from tunefleet_openai.options import OpenAIOptions

if TYPE_CHECKING:
    import openai

__all__ = ["PROVIDER", "ThrottledError", "make_client", "redact", "retry_after", "translated"]

PROVIDER = "openai"

# Anything shaped like a key is masked before a message is shown or stored. The API
# itself echoes part of a rejected key ("Incorrect API key provided: sk-abc***xyz").
_KEY = re.compile(r"\b(?:sk|sess|rk)-[A-Za-z0-9_*-]{6,}")


class ThrottledError(TransientProviderError):
    """A 429 for the request rate: the service refused the request without acting on it,
    so even a create may be sent again."""


def redact(text: str) -> str:
    """``text`` with anything that looks like an API key masked."""
    return _KEY.sub("[redacted key]", text)


def make_client(options: OpenAIOptions) -> openai.OpenAI:
    """An SDK client for ``options``; credentials from the SDK's standard variables."""
    import openai

    try:
        return openai.OpenAI(
            base_url=options.base_url,
            organization=options.organization,
            project=options.project,
            max_retries=options.max_retries,
            timeout=options.request_timeout,
        )
    except openai.OpenAIError:
        raise ProviderError(
            PROVIDER,
            "no OpenAI credentials: set OPENAI_API_KEY in the environment (a spec never "
            "holds keys)",
        ) from None


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The wait a response asks for: ``retry-after-ms``, else ``Retry-After`` in seconds or
    as an HTTP date; None when it asks for none (or asks nonsense)."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(float(millis) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _body_error(exc: Any) -> tuple[str, str | None]:
    """The API's own message and error code from an APIStatusError."""
    body = getattr(exc, "body", None)
    message = getattr(exc, "message", None) or str(exc)
    code = getattr(exc, "code", None)
    if isinstance(body, Mapping):
        error = body.get("error", body)
        if isinstance(error, Mapping):
            message = str(error.get("message") or message)
            code = error.get("code") or code
    return message, (str(code) if code is not None else None)


# A 429 is one of three things, told apart by the error's code and words:
_DAILY_LIMIT = re.compile(r"per day|daily", re.IGNORECASE)
_JOB_LIMIT = re.compile(
    r"(concurrent|active|running|in[- ]progress)\b.*\bjobs?\b|\bjobs?\b.*\b(concurrent|"
    r"active|running|in[- ]progress)",
    re.IGNORECASE,
)
_PERMANENT_429_CODES = frozenset({"daily_rate_limit_exceeded", "insufficient_quota"})


@contextmanager
def translated(operation: str) -> Iterator[None]:
    """Run SDK calls, raising tunefleet's errors for the SDK's.

    * 429 with a daily limit or an exhausted quota: ProviderError, the API's message (a
      retry cannot succeed today);
    * 429 about running jobs: ProviderBusyError (the engine queues the target);
    * other 429s: ThrottledError; 408, 409, 5xx, timeouts and dropped connections:
      TransientProviderError; both with the wait the service asked for;
    * everything else: ProviderError with the API's message, the status and the parameter.
    """
    import openai

    try:
        yield
    except openai.APIStatusError as exc:
        message, code = _body_error(exc)
        status = exc.status_code
        param = getattr(exc, "param", None)
        where = f" (param {param})" if param else ""
        text = redact(f"{operation}: HTTP {status}{f' {code}' if code else ''}: {message}{where}")
        wait = retry_after(exc.response.headers)
        if status == 429:
            if code in _PERMANENT_429_CODES or _DAILY_LIMIT.search(message):
                raise ProviderError(PROVIDER, text) from None
            if _JOB_LIMIT.search(message):
                raise ProviderBusyError(PROVIDER, text, retry_after=wait) from None
            raise ThrottledError(PROVIDER, text, retry_after=wait) from None
        if status in {408, 409} or status >= 500:
            raise TransientProviderError(PROVIDER, text, retry_after=wait) from None
        if status in {401, 403}:
            text += "; check OPENAI_API_KEY and the key's organization and project"
        raise ProviderError(PROVIDER, text) from None
    except openai.APIConnectionError as exc:
        kind = "timed out" if isinstance(exc, openai.APITimeoutError) else "could not connect"
        raise TransientProviderError(PROVIDER, f"{operation}: {kind}: {exc.message}") from None
    except openai.OpenAIError as exc:
        raise ProviderError(PROVIDER, redact(f"{operation}: {exc}")) from None

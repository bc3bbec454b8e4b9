"""The OpenAI provider's target options (``targets[].options`` of a spec)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

__all__ = ["OpenAIOptions"]

MiB = 1 << 20
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def _api_url(value: str) -> str:
    """An https URL, or http on this machine only: the API key travels with every request."""
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("must be an http(s) URL such as https://api.openai.com/v1")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError("must use https (plain http is allowed only to this machine)")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("must not carry credentials, a query or a fragment")
    return value.rstrip("/")


ApiUrl = Annotated[str, AfterValidator(_api_url)]


class OpenAIOptions(BaseModel):
    """Options of the ``openai`` provider. Credentials are not options: the SDK reads
    ``OPENAI_API_KEY`` (and ``OPENAI_ORG_ID``, ``OPENAI_PROJECT_ID``) from the environment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: ApiUrl | None = None
    """API root; default ``$OPENAI_BASE_URL``, else https://api.openai.com/v1 (set it for a
    gateway or a regional endpoint)."""
    organization: str | None = Field(default=None, pattern=r"^org-[A-Za-z0-9]{1,64}$")
    """Organization to bill; default ``$OPENAI_ORG_ID`` or the key's default."""
    project: str | None = Field(default=None, pattern=r"^proj_[A-Za-z0-9]{1,64}$")
    """Project the jobs and files belong to; default ``$OPENAI_PROJECT_ID`` or the key's."""
    suffix: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,40}$")
    """Added to the fine-tuned model's name (``ft:gpt-4o-mini:acme:<suffix>:id``); default
    the run name."""
    training_price_per_million_tokens: float | None = Field(default=None, ge=0)
    """USD per million training tokens, replacing the built-in price table."""
    max_concurrent_jobs: int | None = Field(default=None, ge=1, le=100)
    """Queue a submission while this many of the project's jobs are unfinished, to leave
    slots free for others; unset, only the service's own limit queues."""
    multipart_threshold_bytes: int = Field(default=32 * MiB, ge=1, le=512 * MiB)
    """Files at least this large go through the Uploads API in parts, with progress."""
    upload_part_bytes: int = Field(default=64 * MiB, ge=1, le=64 * MiB)
    """Size of each part of a multipart upload (the API takes at most 64 MB a part)."""
    request_timeout: float = Field(default=120.0, gt=0, le=3600)
    """Seconds one HTTP request may take."""
    max_retries: int = Field(default=3, ge=0, le=10)
    """Retries of one throttled or failed request by the SDK (with backoff, honouring
    Retry-After) before the step fails and the run engine retries it."""

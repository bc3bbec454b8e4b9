"""boto3 clients, and botocore's errors turned into tunefleet's.

boto3 is imported by the first call that needs a client, never when the provider loads.
Credentials and the endpoint come from boto3's standard chain (``AWS_PROFILE``, SSO, the
environment, instance roles; ``AWS_ENDPOINT_URL`` for a local endpoint). botocore's own
retries (standard mode) handle throttled requests one by one; what still fails is
translated here, transient failures for the run engine to retry.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tunefleet.errors import ProviderBusyError, ProviderError, TransientProviderError

__all__ = ["PROVIDER", "client", "error_code", "translated"]

PROVIDER = "sagemaker"

_THROTTLED = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "SlowDown",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
    }
)


@functools.cache
def _session() -> Any:
    import boto3

    return boto3.session.Session()


def client(service: str, region: str) -> Any:
    """A boto3 client for ``service`` in ``region``, with standard-mode retries."""
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "max_attempts": 5}, connect_timeout=10, read_timeout=60
    )
    return _session().client(service, region_name=region, config=config)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError ('' for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


@contextmanager
def translated(operation: str) -> Iterator[None]:
    """Run boto3 calls, raising tunefleet's errors for botocore's.

    Throttling and 5xx: TransientProviderError. ``ResourceLimitExceeded`` (an account quota
    on instances or concurrent jobs): ProviderBusyError, so the engine queues the target.
    Missing credentials: ProviderError saying where they come from. Anything else:
    ProviderError with AWS's code and message.
    """
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionError,
        NoCredentialsError,
        NoRegionError,
        ReadTimeoutError,
    )

    try:
        yield
    except ClientError as exc:
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message", str(exc))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        text = f"{operation}: {code}: {message}"
        if code == "ResourceLimitExceeded":
            raise ProviderBusyError(PROVIDER, text) from None
        if code in _THROTTLED or status >= 500:
            raise TransientProviderError(PROVIDER, text) from None
        raise ProviderError(PROVIDER, text) from None
    except NoCredentialsError:
        raise ProviderError(
            PROVIDER,
            f"{operation}: no AWS credentials: sign in (aws sso login, AWS_PROFILE, the "
            "environment or an instance role); a spec never holds keys",
        ) from None
    except NoRegionError:
        raise ProviderError(PROVIDER, f"{operation}: no region; set the target's region") from None
    except (ConnectionError, ReadTimeoutError) as exc:
        raise TransientProviderError(PROVIDER, f"{operation}: {exc}") from None
    except BotoCoreError as exc:
        raise ProviderError(PROVIDER, f"{operation}: {exc}") from None

"""boto3 clients, and botocore's errors turned into tunefleet's.

boto3 is imported by the first call that needs a client, never when the provider loads.
Credentials and the endpoint come from boto3's standard chain (``AWS_PROFILE``, SSO, the
environment, instance roles; ``AWS_ENDPOINT_URL`` for a local endpoint). botocore's own
retries (standard mode) handle throttled requests one by one; what still fails is
translated here, the one place botocore's errors become tunefleet's, by the error's code
(``Error.Code``) and HTTP status, never by its message.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tunefleet.errors import (
    AlreadyExistsError,
    ProviderBusyError,
    ProviderError,
    ProviderNotFoundError,
    TransientProviderError,
)

__all__ = ["PROVIDER", "client", "translated"]

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


_NOT_FOUND = frozenset(
    {
        "ResourceNotFound",  # SageMaker, as its API reference documents it
        "ResourceNotFoundException",  # CloudWatch Logs
        "ObjectNotFoundException",  # Application Auto Scaling
        "NoSuchKey",
        "NoSuchBucket",
        "NotFound",
        "404",  # S3 HEAD requests: no body, so the status is the code
    }
)
_EXISTS = frozenset({"ResourceInUse", "ResourceInUseException", "AlreadyExistsException"})


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


@contextmanager
def translated(operation: str, *, lookup: bool = False, provider: str = PROVIDER) -> Iterator[None]:
    """Run boto3 calls, raising tunefleet's errors for botocore's, each with AWS's code and
    HTTP status.

    A missing resource: ProviderNotFoundError. With ``lookup`` (a Describe or Delete of a
    resource by a name tunefleet made and validated), ``ValidationException`` is one too:
    SageMaker answers a missing training job with ``ValidationException: Requested
    resource not found.`` and a missing endpoint, model or endpoint config with
    ``ValidationException: Could not find ...``, although its API reference lists
    ``ResourceNotFound`` for these operations; the name itself cannot be what failed
    validation. A name that is taken (``ResourceInUse``): AlreadyExistsError. Throttling
    and 5xx: TransientProviderError. ``ResourceLimitExceeded`` (an account quota on
    instances or concurrent jobs): ProviderBusyError, so the engine queues the target;
    submit then asks Service Quotas whether the quota can ever fit the job
    (:mod:`._quotas`), which makes a quota too small a QuotaExceededError.
    Missing credentials: ProviderError saying where they come from. Anything else:
    ProviderError with AWS's code and message. ``provider`` names the provider the errors
    are raised for (this distribution's other provider, ``hyperpod``, shares the
    translation).
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
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = error.get("Message", str(exc))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        text = f"{operation}: {code}: {message}"
        kind: type[ProviderError] = ProviderError
        if code in _NOT_FOUND or (lookup and code == "ValidationException"):
            kind = ProviderNotFoundError
        elif code in _EXISTS:
            kind = AlreadyExistsError
        elif code == "ResourceLimitExceeded":
            kind = ProviderBusyError
        elif code in _THROTTLED or status >= 500:
            kind = TransientProviderError
        raise kind(provider, text, code=code, status=status) from None
    except NoCredentialsError:
        raise ProviderError(
            provider,
            f"{operation}: no AWS credentials: sign in (aws sso login, AWS_PROFILE, the "
            "environment or an instance role); a spec never holds keys",
            code="NoCredentials",
        ) from None
    except NoRegionError:
        raise ProviderError(provider, f"{operation}: no region; set the target's region") from None
    except (ConnectionError, ReadTimeoutError) as exc:
        raise TransientProviderError(provider, f"{operation}: {exc}") from None
    except BotoCoreError as exc:
        raise ProviderError(provider, f"{operation}: {exc}") from None

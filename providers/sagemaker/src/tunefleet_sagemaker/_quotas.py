"""What a refused CreateTrainingJob's ``ResourceLimitExceeded`` means: busy, or a quota too
small to ever fit the job.

SageMaker answers ``ResourceLimitExceeded`` both when the account's quota for an instance
type is smaller than the job (0 is the default for many GPU types, and for spot) and when
other jobs hold the instances the quota allows; the code is the same and the message's
wording is not an interface. Service Quotas tells them apart: each training instance type
has a quota named ``<type> for training job usage`` (``<type> for spot training job
usage`` for managed spot) under the service code ``sagemaker``. An applied value smaller
than the job's instance count will never let the job start: QuotaExceededError naming the
quota to raise. Otherwise the instances are in use and the engine queues the target
(ProviderBusyError). A quota that cannot be read (no permission to read Service Quotas, a
region without it) leaves the job busy, saying so.

Service Quotas API: ListServiceQuotas "Lists the applied quota values for the specified
AWS service. For some quotas, only the default values are available. If the applied quota
value is not available for a quota, the quota is not retrieved"; ListAWSDefaultServiceQuotas
lists the defaults (https://docs.aws.amazon.com/servicequotas/2019-06-24/apireference/).
"""

from __future__ import annotations

from typing import Any

from tunefleet.errors import ProviderBusyError, ProviderError, QuotaExceededError
from tunefleet_sagemaker._client import PROVIDER, client, translated

__all__ = ["SERVICE_CODE", "explain_limit", "quota_name"]

SERVICE_CODE = "sagemaker"


def quota_name(instance_type: str, spot: bool) -> str:
    """The Service Quotas name of the training quota for ``instance_type``."""
    return f"{instance_type} for {'spot ' if spot else ''}training job usage"


def _find(quotas: Any, operation: str, name: str) -> dict[str, Any] | None:
    pages = quotas.get_paginator(operation).paginate(ServiceCode=SERVICE_CODE)
    for page in pages:
        for quota in page.get("Quotas", []):
            if quota.get("QuotaName") == name:
                found: dict[str, Any] = quota
                return found
    return None


def _quota(region: str, name: str) -> tuple[dict[str, Any] | None, str]:
    """The quota named ``name`` (its applied value, else its default) and which it is."""
    quotas = client("service-quotas", region)
    with translated("read the applied SageMaker quotas in Service Quotas"):
        applied = _find(quotas, "list_service_quotas", name)
    if applied is not None:
        return applied, "applied"
    with translated("read the default SageMaker quotas in Service Quotas"):
        return _find(quotas, "list_aws_default_service_quotas", name), "default"


def explain_limit(
    error: ProviderError, region: str, instance_type: str, count: int, spot: bool
) -> ProviderError:
    """The error a ``ResourceLimitExceeded`` on CreateTrainingJob becomes: QuotaExceededError
    when the instance type's quota is smaller than ``count``, else ProviderBusyError."""
    name = quota_name(instance_type, spot)
    try:
        quota, kind = _quota(region, name)
    except ProviderError as exc:
        return ProviderBusyError(
            PROVIDER,
            f"{error.detail} (the quota {name!r} could not be checked in Service Quotas: "
            f"{exc.code or exc.detail}; queued as if other jobs held the instances)",
            code=error.code,
            status=error.status,
        )
    if quota is None:
        return ProviderBusyError(
            PROVIDER,
            f"{error.detail} (Service Quotas lists no SageMaker quota named {name!r}; "
            "queued as if other jobs held the instances)",
            code=error.code,
            status=error.status,
        )
    value = float(quota.get("Value", 0))
    code = quota.get("QuotaCode", "?")
    if value < count:
        return QuotaExceededError(
            PROVIDER,
            f"{error.detail} (the {kind} quota {name!r}, code {code}, is {value:g} "
            f"instance(s) in {region}, fewer than the {count} this job needs, so waiting will "
            f"not help: request an increase of quota {code} of service code {SERVICE_CODE} in "
            "Service Quotas, "
            f"https://console.aws.amazon.com/servicequotas/home/services/sagemaker/quotas/{code})",
            code=error.code,
            status=error.status,
        )
    return ProviderBusyError(
        PROVIDER,
        f"{error.detail} (the quota {name!r} is {value:g} instance(s); other jobs hold them now)",
        code=error.code,
        status=error.status,
    )

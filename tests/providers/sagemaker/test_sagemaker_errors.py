"""The translation of botocore's errors into tunefleet's, fed the errors AWS really returns.

botocore runs for real: its Stubber answers each call with the error AWS documents for the
operation (code, HTTP status and wording), which botocore turns into the ``ClientError`` a
live call raises. Sources, per case:

- SageMaker API reference, CreateTrainingJob "Errors": ResourceInUse, ResourceLimitExceeded
  (HTTP 400) https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateTrainingJob.html
- SageMaker API reference, "Common Errors": ThrottlingException (400), InternalFailure
  (500), ServiceUnavailable (503), ValidationException (400)
  https://docs.aws.amazon.com/sagemaker/latest/APIReference/CommonErrors.html
- DescribeTrainingJob of a missing job: AWS answers ``ValidationException: Requested
  resource not found.`` (as the AWS CLI and SDK users report it), not the ResourceNotFound
  its reference lists.
- S3 HeadObject of a missing key: 404 with no body, so botocore's code is "404"
  (https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html).

The translation never reads the wording; a test with invented wording could hide one that
did.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from tunefleet.errors import (
    AlreadyExistsError,
    ProviderBusyError,
    ProviderError,
    ProviderNotFoundError,
    TransientProviderError,
)
from tunefleet_sagemaker._client import translated

REGION = "eu-west-1"
QUOTA_WORDING = (
    "The account-level service limit 'ml.g5.2xlarge for training job usage' is 0 Instances, "
    "with current utilization of 0 Instances and a request delta of 1 Instances. Please use "
    "AWS Service Quotas to request an increase for this quota."
)


@pytest.fixture
def sagemaker() -> Iterator[tuple[Any, Stubber]]:
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    client = session.client("sagemaker")
    with Stubber(client) as stubber:
        yield client, stubber


def _raised(
    stubbed: tuple[Any, Stubber],
    code: str,
    message: str,
    status: int,
    call: Callable[[Any], object],
    *,
    lookup: bool = False,
) -> ProviderError:
    client, stubber = stubbed
    stubber.add_client_error(
        "describe_training_job",
        service_error_code=code,
        service_message=message,
        http_status_code=status,
    )
    with pytest.raises(ProviderError) as raised, translated("the call", lookup=lookup):
        call(client)
    return raised.value


def _describe(client: Any) -> object:
    return client.describe_training_job(TrainingJobName="support-bot-0123")


@pytest.mark.parametrize(
    ("code", "message", "status", "kind"),
    [
        (
            "ResourceInUse",
            "Training job names must be unique within an AWS account and "
            "region, and a training job with this name already exists "
            "(arn:aws:sagemaker:eu-west-1:123456789012:training-job/support-bot-0123)",
            400,
            AlreadyExistsError,
        ),
        ("ResourceLimitExceeded", QUOTA_WORDING, 400, ProviderBusyError),
        ("ThrottlingException", "Rate exceeded", 400, TransientProviderError),
        ("InternalFailure", "An internal error occurred.", 500, TransientProviderError),
        ("ServiceUnavailable", "Service is unavailable.", 503, TransientProviderError),
        ("ResourceNotFound", "Resource not found.", 400, ProviderNotFoundError),
    ],
)
def test_each_documented_error_becomes_its_kind_with_code_and_status(
    sagemaker: tuple[Any, Stubber], code: str, message: str, status: int, kind: type
) -> None:
    error = _raised(sagemaker, code, message, status, _describe)
    assert type(error) is kind
    assert (error.code, error.status) == (code, status)
    assert message in str(error), "the user sees AWS's own words"


def test_a_missing_job_is_not_found_only_where_tunefleet_named_it(
    sagemaker: tuple[Any, Stubber],
) -> None:
    """A Describe of a name tunefleet made: ValidationException means no such job. Anywhere
    else a ValidationException is a refused request, which must fail the run as such."""
    missing = "Requested resource not found."
    found = _raised(sagemaker, "ValidationException", missing, 400, _describe, lookup=True)
    assert isinstance(found, ProviderNotFoundError) and isinstance(found, LookupError)
    refused = _raised(sagemaker, "ValidationException", missing, 400, _describe)
    assert type(refused) is ProviderError and refused.code == "ValidationException"


def test_an_unknown_code_is_a_plain_error_whatever_its_words_say(
    sagemaker: tuple[Any, Stubber],
) -> None:
    """Words that look like throttling or absence change nothing: only the code counts."""
    error = _raised(
        sagemaker,
        "AccessDeniedException",
        "Rate exceeded: resource not found, throttled",
        400,
        _describe,
    )
    assert type(error) is ProviderError and error.code == "AccessDeniedException"


def test_a_head_of_a_missing_s3_key_is_not_found() -> None:
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    s3 = session.client("s3")
    with Stubber(s3) as stubber:
        stubber.add_client_error(
            "head_object",
            service_error_code="404",
            service_message="Not Found",
            http_status_code=404,
        )
        with pytest.raises(ProviderNotFoundError) as raised, translated("head"):
            s3.head_object(Bucket="tunefleet-data", Key="datasets/0.jsonl")
    assert (raised.value.code, raised.value.status) == ("404", 404)

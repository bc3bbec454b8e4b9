"""The parts a dataset goes to S3 in (``_staging.upload_parts``) and S3's multipart limits
(``_limits.upload_violations``): chosen from the file's size by default, as given by
``upload_part_mb`` otherwise, refused before any request when S3 could not take them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from s3transfer.utils import (
    MAX_PARTS,
    MAX_SINGLE_UPLOAD_SIZE,
    MIN_UPLOAD_CHUNKSIZE,
    ChunksizeAdjuster,
)
from tests.providers.sagemaker.conftest import BUCKET, Aws, sagemaker_spec

from tunefleet.errors import ProviderError
from tunefleet.planning import plan_run
from tunefleet.plugins import discover
from tunefleet.spec import parse_spec
from tunefleet_sagemaker import _limits
from tunefleet_sagemaker._staging import UPLOAD_CONCURRENCY, MiB, UploadParts, upload_parts
from tunefleet_sagemaker.hyperpod.options import HyperPodOptions
from tunefleet_sagemaker.options import SageMakerOptions
from tunefleet_sagemaker.provider import SageMakerProvider

MB = 1000 * 1000
GB = 1000 * MB
TiB = 1 << 40
DEFAULTS = TransferConfig()
SIZES = {
    "empty": 0,
    "1 MB": MB,
    "100 MB": 100 * MB,
    "1 GB": GB,
    "100 GB": 100 * GB,
    "5 TiB": 5 * TiB,
    "largest object": _limits.MAX_S3_OBJECT_BYTES,
}


def assert_within_s3_limits(size: int, parts: UploadParts) -> None:
    """What S3 takes: parts of 5 MiB to 5 GiB (the last one shorter), at most 10,000."""
    assert _limits.upload_violations(size, parts.threshold, parts.part_bytes) == []
    if size >= parts.threshold:
        assert _limits.MIN_S3_PART_BYTES <= parts.part_bytes <= _limits.MAX_S3_PART_BYTES
        assert parts.count(size) <= _limits.MAX_S3_PARTS
    else:
        assert parts.count(size) == 1


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_the_automatic_parts_are_within_s3s_limits_and_fill_the_streams(size: int) -> None:
    parts = upload_parts(size, None)
    assert_within_s3_limits(size, parts)
    if size >= UPLOAD_CONCURRENCY * DEFAULTS.multipart_chunksize:
        assert parts.count(size) >= UPLOAD_CONCURRENCY, "every stream has a part to send"
    # boto3 would not change them either (it doubles a part size that needs too many parts)
    assert ChunksizeAdjuster().adjust_chunksize(parts.part_bytes, size) == parts.part_bytes


@pytest.mark.parametrize("size", [MB, 100 * MB, GB], ids=["1 MB", "100 MB", "1 GB"])
def test_small_files_go_as_boto3s_defaults_send_them(size: int) -> None:
    parts = upload_parts(size, None)
    assert parts == UploadParts(DEFAULTS.multipart_threshold, DEFAULTS.multipart_chunksize)
    assert parts == UploadParts(8 * MiB, 8 * MiB)  # boto3 1.x; read from boto3, not written in


def test_a_100_mb_file_keeps_every_stream_busy() -> None:
    # 64 MiB parts (the old default) made it 2 parts for 8 streams
    assert upload_parts(100 * MB, None).count(100 * MB) == 12


@pytest.mark.parametrize(
    ("size", "part_mib", "count"),
    [(100 * GB, 10, 9537), (5 * TiB, 525, 9987), (_limits.MAX_S3_OBJECT_BYTES, 5120, 10_000)],
    ids=["100 GB", "5 TiB", "largest object"],
)
def test_large_files_take_the_smallest_whole_mib_parts_that_fit(
    size: int, part_mib: int, count: int
) -> None:
    parts = upload_parts(size, None)
    assert (parts.part_bytes, parts.count(size)) == (part_mib * MiB, count)
    smaller = UploadParts(parts.threshold, parts.part_bytes - MiB)
    assert smaller.count(size) > _limits.MAX_S3_PARTS, "one MiB less would not fit"


def test_parts_grow_only_past_10000_of_boto3s() -> None:
    fits = _limits.MAX_S3_PARTS * DEFAULTS.multipart_chunksize
    assert upload_parts(fits, None).part_bytes == DEFAULTS.multipart_chunksize
    assert upload_parts(fits + 1, None).part_bytes == DEFAULTS.multipart_chunksize + MiB


@pytest.mark.parametrize("size", [MB, 100 * MB, 100 * GB], ids=["1 MB", "100 MB", "100 GB"])
def test_an_explicit_part_size_is_sent_as_given(size: int) -> None:
    parts = upload_parts(size, 64)
    assert parts == UploadParts(64 * MiB, 64 * MiB)
    assert_within_s3_limits(size, parts)


def test_an_explicit_part_size_too_small_for_the_file_is_refused_not_raised() -> None:
    parts = upload_parts(100 * GB, 5)
    (found,) = _limits.upload_violations(100 * GB, parts.threshold, parts.part_bytes)
    assert found.path == "UploadPart.PartNumber"
    assert "19074 parts; at most 10000" in found.problem
    assert "parts of 10 MiB or more fit" in found.problem
    assert found.source == _limits.S3_MULTIPART
    assert upload_parts(100 * GB, 10).count(100 * GB) <= _limits.MAX_S3_PARTS


def test_a_file_larger_than_s3s_largest_object_is_refused() -> None:
    size = _limits.MAX_S3_OBJECT_BYTES + 1
    for part_mb in (None, 5120):
        parts = upload_parts(size, part_mb)
        (found,) = _limits.upload_violations(size, parts.threshold, parts.part_bytes)
        assert found.path == "(object)" and found.source == _limits.S3_MULTIPART


def test_the_limits_are_the_ones_boto3_applies() -> None:
    assert _limits.MAX_S3_PARTS == MAX_PARTS
    assert _limits.MIN_S3_PART_BYTES == MIN_UPLOAD_CHUNKSIZE
    assert _limits.MAX_S3_PART_BYTES == MAX_SINGLE_UPLOAD_SIZE


@pytest.mark.parametrize("options", [SageMakerOptions, HyperPodOptions])
def test_the_option_defaults_to_automatic_and_is_bounded_by_s3s_part_sizes(
    options: Any,
) -> None:
    field = options.model_fields["upload_part_mb"]
    assert field.default is None
    bounds = {type(item).__name__: item for item in field.metadata}
    assert bounds["Ge"].ge * MiB == _limits.MIN_S3_PART_BYTES
    assert bounds["Le"].le * MiB == _limits.MAX_S3_PART_BYTES


def planned(aws: Aws, **options: Any) -> Any:
    body = json.loads(sagemaker_spec(aws, options=options))
    (plan,) = plan_run(parse_spec(json.dumps(body)), registry=discover()).plans
    return plan


def test_a_dataset_goes_up_in_boto3s_parts_by_default(aws: Aws, tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_bytes(b'{"messages": []}\n' * (20 * MiB // 17 + 1))
    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    ref = SageMakerProvider().stage(planned(aws), "train", data, digest, None)
    _, key = ref.uri.removeprefix("s3://").split("/", 1)
    head = aws.client("s3").head_object(Bucket=BUCKET, Key=key)
    assert head["ContentLength"] == data.stat().st_size
    assert head["ETag"].endswith('-3"'), "20 MiB in parts of 8 MiB"


def test_a_part_size_too_small_is_refused_before_any_request(aws: Aws, tmp_path: Path) -> None:
    huge = tmp_path / "huge.jsonl"
    with huge.open("wb") as sparse:  # 100 GB on the file system's word, no bytes on disk
        sparse.truncate(100 * GB)
    with pytest.raises(ProviderError) as refused:
        SageMakerProvider().stage(planned(aws, upload_part_mb=5), "train", huge, "f" * 64, None)
    assert refused.value.code == "limit_exceeded"
    assert "parts of 10 MiB or more fit" in str(refused.value)
    assert aws.client("s3").list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0
    assert aws.client("s3").list_multipart_uploads(Bucket=BUCKET).get("Uploads") is None


def test_a_part_size_too_small_for_the_dataset_is_refused_at_plan(aws: Aws) -> None:
    """The validated size is known at plan: the refusal comes before anything is created."""
    from tunefleet.provider import DatasetFacts, PlanRequest
    from tunefleet_sagemaker import _planning

    spec = parse_spec(sagemaker_spec(aws, options={"upload_part_mb": 5}))
    target = spec.targets[0]
    huge = DatasetFacts(role="train", location="train.jsonl", size_bytes=100 * GB)
    request = PlanRequest(
        spec=spec,
        target=target,
        options=SageMakerOptions.model_validate(target.options),
        datasets={"train": huge},
    )
    reasons = {u.requirement: u.reason for u in _planning.plan("sagemaker", request).unmet}
    assert "options.upload_part_mb" in reasons
    assert "parts of 10 MiB or more fit" in reasons["options.upload_part_mb"]
    fits = request.model_copy(update={"options": SageMakerOptions.model_validate(
        {**target.options, "upload_part_mb": 10}
    )})  # fmt: skip
    assert "options.upload_part_mb" not in {
        u.requirement for u in _planning.plan("sagemaker", fits).unmet
    }

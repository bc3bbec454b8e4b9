"""The Cloud Storage fixture (tests/providers/vertex/gcs.py), checked with the real client.

google-cloud-storage talks to fake-gcs-server through the recording proxy exactly as the
Vertex provider will: resumable uploads with ``chunk_size``, generation preconditions, CMEK
requested per object, downloads, and retries after an injected 503.
"""

from __future__ import annotations

import io
import os
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.api_core.exceptions import PreconditionFailed, ServiceUnavailable
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY
from tests.providers.vertex.gcs import FakeGcs, start_fake_gcs, why_unavailable

KEY = "projects/p1/locations/europe-west4/keyRings/tunefleet/cryptoKeys/data"
OTHER_KEY = "projects/p1/locations/europe-west4/keyRings/tunefleet/cryptoKeys/bucket"
CHUNK = 256 * 1024
FAST_RETRY = DEFAULT_RETRY.with_delay(initial=0.01, maximum=0.05)


@pytest.fixture
def gcs(tmp_path: Path) -> Iterator[FakeGcs]:
    reason = why_unavailable()
    if reason is not None:
        pytest.skip(reason)
    with start_fake_gcs(tmp_path / "gcs") as fake:
        fake.create_bucket("tf-data")
        fake.clear_requests()
        yield fake


@pytest.fixture
def client(gcs: FakeGcs, monkeypatch: pytest.MonkeyPatch) -> storage.Client:
    # google-cloud-storage 3.17 otherwise GETs each bucket it first touches from a background
    # thread (_bucket_metadata_cache.py, for OpenTelemetry span attributes): an extra request
    # at an unpredictable place in the recording.
    monkeypatch.setenv("DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA", "true")
    return storage.Client(
        project="p1",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": gcs.url},
    )


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc


def test_starts_on_loopback_and_stops(tmp_path: Path) -> None:
    reason = why_unavailable()
    if reason is not None:
        pytest.skip(reason)
    started = time.monotonic()
    with start_fake_gcs(tmp_path / "gcs") as gcs:
        up = time.monotonic() - started
        assert _host(gcs.url).startswith("127.0.0.1:")
        assert _host(gcs.server_url).startswith("127.0.0.1:")
        assert gcs.url != gcs.server_url
        process = gcs.process
    total = time.monotonic() - started
    print(f"fake-gcs-server up in {up:.2f} s, up and down in {total:.2f} s")
    assert process.poll() is not None, "the server is stopped on exit"
    assert (tmp_path / "gcs" / "requests.jsonl").is_file()


def test_resumable_upload_in_chunks_goes_through_the_proxy_and_reads_back(
    gcs: FakeGcs, client: storage.Client
) -> None:
    data = os.urandom(3_000_000)
    blob = client.bucket("tf-data").blob("runs/r1/train.jsonl", chunk_size=CHUNK)
    # No size: the client cannot know it fits a multipart upload (<= 8 MiB), so resumable.
    blob.upload_from_file(io.BytesIO(data), content_type="application/jsonl")

    initiation, *chunks = [r for r in gcs.requests if r.path.startswith("/upload/")]
    assert (initiation.method, initiation.query["uploadType"]) == ("POST", "resumable")
    assert initiation.json["name"] == "runs/r1/train.jsonl"
    assert initiation.created == "runs/r1/train.jsonl"
    assert [r.method for r in chunks] == ["PUT"] * 12
    assert {r.query["upload_id"] for r in chunks} and all(r.created is None for r in chunks)
    assert chunks[0].headers["content-range"] == f"bytes 0-{CHUNK - 1}/*"
    assert chunks[-1].headers["content-range"] == f"bytes {11 * CHUNK}-2999999/3000000"
    assert [r.status for r in chunks] == [308] * 11 + [200]

    assert gcs.read("tf-data", "runs/r1/train.jsonl") == data
    assert gcs.objects("tf-data") == ["runs/r1/train.jsonl"]
    assert gcs.metadata("tf-data", "runs/r1/train.jsonl")["size"] == "3000000"
    # The resource the client got back leads to the proxy, not around it.
    assert _host(blob.media_link) == _host(gcs.url)
    gcs.clear_requests()
    fresh = client.bucket("tf-data").blob("runs/r1/train.jsonl")
    assert fresh.download_as_bytes() == data
    assert [r.path for r in gcs.requests] == [
        "/download/storage/v1/b/tf-data/o/runs%2Fr1%2Ftrain.jsonl"
    ]


def test_multipart_upload_records_its_metadata_part(gcs: FakeGcs, client: storage.Client) -> None:
    blob = client.bucket("tf-data").blob("small.json")
    blob.metadata = {"run": "r1"}
    blob.upload_from_string(b'{"a": 1}', content_type="application/json")
    (upload,) = gcs.requests
    assert upload.query["uploadType"] == "multipart"
    assert upload.json["name"] == "small.json"
    assert upload.json["metadata"] == {"run": "r1"}
    assert upload.created == "small.json"
    assert gcs.metadata("tf-data", "small.json")["metadata"] == {"run": "r1"}


def test_if_generation_match_zero_on_an_existing_object_is_412(
    gcs: FakeGcs, client: storage.Client
) -> None:
    blob = client.bucket("tf-data").blob("once.txt")
    blob.upload_from_string(b"first", if_generation_match=0)
    with pytest.raises(PreconditionFailed):
        client.bucket("tf-data").blob("once.txt").upload_from_string(
            b"second", if_generation_match=0
        )
    assert [(r.query.get("ifGenerationMatch"), r.status) for r in gcs.requests] == [
        ("0", 200),
        ("0", 412),
    ]
    assert gcs.read("tf-data", "once.txt") == b"first"
    assert gcs.kms_keys_requested("tf-data", "once.txt") == []


@pytest.mark.parametrize("size", [1000, 3_000_000], ids=["multipart", "resumable"])
def test_kms_key_on_the_blob_is_requested_and_the_server_forgets_it(
    gcs: FakeGcs, client: storage.Client, size: int
) -> None:
    blob = client.bucket("tf-data").blob("enc.bin", chunk_size=CHUNK, kms_key_name=KEY)
    blob.upload_from_file(io.BytesIO(os.urandom(size)), size=size if size < CHUNK else None)
    assert gcs.kms_keys_requested("tf-data", "enc.bin") == [KEY]
    assert gcs.kms_keys_requested("tf-data", "other.bin") == []
    # What the server stores has no key (why CMEK is asserted on the request) ...
    assert "kmsKeyName" not in gcs.metadata("tf-data", "enc.bin")
    # ... and the proxy's correction gives clients what GCS would (a bare key, no version).
    assert blob.kms_key_name == KEY
    fresh = client.bucket("tf-data").get_blob("enc.bin")
    assert fresh is not None and fresh.kms_key_name == KEY


def test_bucket_location_and_default_key_come_back_as_created(
    gcs: FakeGcs, client: storage.Client
) -> None:
    bucket = client.bucket("tf-us")
    bucket.default_kms_key_name = OTHER_KEY
    client.create_bucket(bucket, location="us-east1")
    (insert,) = gcs.requests
    assert insert.json["location"] == "us-east1"
    assert insert.json["encryption"] == {"defaultKmsKeyName": OTHER_KEY}
    assert gcs.bucket_kms_key("tf-us") == OTHER_KEY
    reread = client.get_bucket("tf-us")
    assert (reread.location, reread.default_kms_key_name) == ("US-EAST1", OTHER_KEY)
    # An object without a key of its own gets the bucket's default, as in GCS.
    reread.blob("x").upload_from_string(b"x")
    assert gcs.kms_keys_requested("tf-us", "x") == []
    got = reread.get_blob("x")
    assert got is not None and got.kms_key_name == OTHER_KEY
    assert gcs.bucket_kms_key("tf-data") is None


def test_fixture_bucket_has_the_asked_location(gcs: FakeGcs, client: storage.Client) -> None:
    gcs.create_bucket("tf-asia", location="asia-southeast1", kms_key_name=OTHER_KEY)
    bucket = client.get_bucket("tf-asia")
    assert (bucket.location, bucket.default_kms_key_name) == ("ASIA-SOUTHEAST1", OTHER_KEY)
    assert client.get_bucket("tf-data").location == "EUROPE-WEST4"


def test_an_injected_503_is_retried(gcs: FakeGcs, client: storage.Client) -> None:
    gcs.fail_next(503, method="POST", path_contains="/upload/")
    blob = client.bucket("tf-data").blob("retried.txt")
    blob.upload_from_string(b"data", retry=FAST_RETRY)
    assert [(r.status, r.injected) for r in gcs.requests] == [(503, True), (200, False)]
    assert gcs.read("tf-data", "retried.txt") == b"data"


def test_an_injected_503_in_a_resumable_chunk_is_retried(
    gcs: FakeGcs, client: storage.Client
) -> None:
    data = os.urandom(3 * CHUNK + 5)
    gcs.fail_next(503, method="PUT")
    blob = client.bucket("tf-data").blob("chunks.bin", chunk_size=CHUNK)
    blob.upload_from_file(io.BytesIO(data), retry=FAST_RETRY)
    statuses = [r.status for r in gcs.requests if r.method == "PUT"]
    assert statuses[0] == 503 and statuses[-1] == 200
    assert gcs.read("tf-data", "chunks.bin") == data


def test_without_retry_the_injected_status_reaches_the_caller(
    gcs: FakeGcs, client: storage.Client
) -> None:
    gcs.fail_next(503, count=2)
    bucket = client.bucket("tf-data")
    for _ in range(2):
        with pytest.raises(ServiceUnavailable):
            bucket.reload(retry=None)
    bucket.reload(retry=None)
    assert [r.status for r in gcs.requests] == [503, 503, 200]


def test_missing_reads_are_key_errors(gcs: FakeGcs) -> None:
    with pytest.raises(KeyError):
        gcs.read("tf-data", "nope")
    assert gcs.objects("tf-data") == []


def test_why_unavailable_names_a_missing_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEFLEET_FAKE_GCS_SERVER", "/nonexistent/fake-gcs-server")
    reason = why_unavailable()
    assert reason is not None and "/nonexistent/fake-gcs-server is missing" in reason

"""Fixtures of the Vertex provider's tests: fake-gcs-server (the real Cloud Storage JSON API
server) behind a recording proxy, the fake Vertex AI and Cloud Logging REST server, signed-in
Application Default Credentials, and specs that target them.

Nothing reaches a Google host: every URL the provider uses comes from the options (the
fake's and the storage server's). The credentials are a service account key file written
per test (``GOOGLE_APPLICATION_CREDENTIALS``, the first place Application Default
Credentials look) whose ``token_uri`` is the fake's, with a throwaway RSA key.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.providers.vertex.fake_vertex import FakeVertex
from tests.providers.vertex.gcs import FakeGcs, start_fake_gcs, why_unavailable

DATA = Path(__file__).parents[3] / "examples" / "quickstart" / "data"
IMAGE = "europe-west4-docker.pkg.dev/tunefleet-test/tf/trainer:0.1.0"
SERVING_IMAGE = "us-docker.pkg.dev/vertex-ai/vertex-vision-model-garden-dockers/pytorch-vllm-serve:20250601_0916_RC00"
BUCKET = "tunefleet-data"
REGION = "europe-west4"
KEY = "projects/tunefleet-test/locations/europe-west4/keyRings/tf/cryptoKeys/data"

EVALUATION: dict[str, Any] = {
    "golden_set": str(DATA / "validation.jsonl"),
    "metrics": ["exact_match", "token_f1"],
    "max_examples": 3,
}
"""The quickstart's validation examples serve as a golden set."""


@pytest.fixture
def gcs(tmp_path: Path) -> Iterator[FakeGcs]:
    """fake-gcs-server with the staging bucket in europe-west4, one per test."""
    reason = why_unavailable()
    if reason is not None:
        pytest.skip(f"fake-gcs-server is not available: {reason}")
    with start_fake_gcs(tmp_path / "gcs") as server:
        server.create_bucket(BUCKET, location=REGION)
        yield server


@pytest.fixture
def fake_vertex(gcs: FakeGcs) -> Iterator[FakeVertex]:
    """The fake Vertex AI and Cloud Logging; a test fails at teardown if the provider sent
    something the discovery document or Google's rules do not allow."""
    server = FakeVertex(location=REGION, gcs_url=gcs.url).start()
    try:
        yield server
    finally:
        server.stop()
    assert not server.violations, "\n".join(server.violations)
    assert not server.fake_errors, "\n".join(map(str, server.fake_errors))


@pytest.fixture
def signed_in(
    fake_vertex: FakeVertex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The environment of a user whose Application Default Credentials are a service
    account's; also what a ``tunefleet`` subprocess needs."""
    adc = fake_vertex.write_adc_file(tmp_path / "adc.json")
    env = {
        "GOOGLE_APPLICATION_CREDENTIALS": str(adc),
        # The fake has no read quota; a real project's is 60 reads a minute.
        "TUNEFLEET_VERTEX_LOG_SECONDS": "0",
    }
    for variable in ("GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CONFIG", "GCE_METADATA_HOST"):
        monkeypatch.delenv(variable, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def vertex_options(fake: FakeVertex, gcs: FakeGcs, **extra: Any) -> dict[str, Any]:
    """Options of a target on the fake's project, staging to fake-gcs-server."""
    return {
        "project": fake.project,
        "bucket": BUCKET,
        "training_image": IMAGE,
        "serving_image": SERVING_IMAGE,
        "machine_type": "g2-standard-12",
        "api_endpoint": fake.url,
        "storage_endpoint": gcs.url,
        "logging_endpoint": fake.url,
        # A dedicated endpoint's own DNS name is Google's: the fake answers for it.
        "prediction_url": fake.url,
        # The quickstart's data is a few KiB: small chunks still make a resumable upload.
        "upload_chunk_mb": 1,
        **extra,
    }


def vertex_spec(
    fake: FakeVertex,
    gcs: FakeGcs,
    *,
    options: dict[str, Any] | None = None,
    validation: bool = True,
    **top: Any,
) -> str:
    """A spec (JSON is YAML) training scratch:tiny on the quickstart data on the fake."""
    body: dict[str, Any] = {
        "version": 1,
        "name": "support-bot",
        "base_model": "scratch:tiny",
        "dataset": {
            "train": str(DATA / "train.jsonl"),
            "validation": str(DATA / "validation.jsonl"),
        },
        "method": {"type": "supervised", "adapter": "lora"},
        "hyperparameters": {"epochs": 2, "batch_size": 8, "learning_rate": 0.0002},
        "targets": [
            {
                "provider": "vertex",
                "region": REGION,
                "options": vertex_options(fake, gcs, **(options or {})),
            }
        ],
    }
    if not validation:
        del body["dataset"]["validation"]
    body.update(top)
    return json.dumps(body)


def gemini_spec(fake: FakeVertex, gcs: FakeGcs, *, validation: bool = True, **top: Any) -> str:
    """A spec tuning gemini-2.5-flash on the quickstart data on the fake."""
    body = json.loads(vertex_spec(fake, gcs, options={"mode": "tuning"}, validation=validation))
    del body["targets"][0]["options"]["training_image"]
    del body["targets"][0]["options"]["serving_image"]
    body.update(
        base_model="gemini-2.5-flash",
        method={"type": "supervised"},
        hyperparameters={"epochs": 3, "learning_rate_multiplier": 0.5},
    )
    body.update(top)
    return json.dumps(body)

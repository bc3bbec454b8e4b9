"""Vertex AI price facts: GPUs per machine, replica prices as machine + accelerators, the
fallback region, spot, and Gemini tuning families."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tunefleet.kit.cost import HourlyPrices
from tunefleet_vertex import pricing
from tunefleet_vertex.pricing import (
    PRICES,
    TUNING_PRICES,
    accelerators,
    gpus,
    model_family,
    price_key,
    throughput,
)

# A table with figures made up for the test, to show how a price is put together without
# relying on which published rows the real table holds.
_TEST_TABLE = {
    "us-central1": {
        "n1-standard-8": 0.40,
        "g2-standard-12": 0.90,
        "NVIDIA_TESLA_T4": 0.35,
        "NVIDIA_L4": 0.70,
    }
}


def _test_prices() -> HourlyPrices:
    return type(PRICES)(
        price_date=PRICES.price_date,
        per_hour=_TEST_TABLE,
        fallback_region="us-central1",
        throughput=throughput,
        startup_hours=0.0,
    )


def test_a_built_in_gpu_machine_has_its_gpus_and_is_priced_with_them() -> None:
    assert accelerators("a3-highgpu-8g", None, None) == ("NVIDIA_H100_80GB", 8)
    assert accelerators("g2-standard-12", "NVIDIA_L4", 1) == ("NVIDIA_L4", 1)
    assert gpus("a2-ultragpu-4g") == 4
    assert gpus("g2-standard-48") == 4
    assert price_key("g2-standard-12") == "g2-standard-12"
    assert throughput("a3-highgpu-8g") == 8 * 6_000
    # The machine row and its built-in GPU are added up.
    assert _test_prices().price("g2-standard-12", "us-central1") == (0.90 + 0.70, "us-central1")
    # In the real table the H100 is priced but no a3 machine row is: no partial price.
    assert PRICES.per_hour["us-central1"]["NVIDIA_H100_80GB"] == 9.79655057
    assert PRICES.price(price_key("a3-highgpu-8g"), "us-central1") is None


def test_an_n1_machine_with_t4s_is_priced_as_machine_plus_accelerators() -> None:
    key = price_key("n1-standard-8", "NVIDIA_TESLA_T4", 2)
    assert key == "n1-standard-8+NVIDIA_TESLA_T4x2"
    assert gpus("n1-standard-8", "NVIDIA_TESLA_T4", 2) == 2
    assert throughput(key) == 2 * 450
    price, source = _test_prices().price(key, "us-central1") or (None, None)
    assert price == pytest.approx(0.40 + 2 * 0.35)
    assert source == "us-central1"
    # The actual cost of a finished job uses the same sum.
    event = _test_prices().job_cost(
        seconds=3600,
        scope={"instance_type": key, "instance_count": "2"},
        region="us-central1",
        time=datetime(2026, 12, 2, tzinfo=UTC),
    )
    assert event is not None
    assert event.amount == pytest.approx(2 * (0.40 + 2 * 0.35))


def test_an_n1_cpu_machine_has_the_published_price() -> None:
    assert accelerators("n1-standard-4", None, None) == (None, 0)
    assert gpus("n1-standard-4") == 0
    assert PRICES.price(price_key("n1-standard-4"), "us-central1") == (
        0.21849885,
        "us-central1",
    )


def test_a_wrong_accelerator_on_a_g2_machine_is_refused() -> None:
    with pytest.raises(ValueError, match="NVIDIA_L4 built in; it cannot take NVIDIA_TESLA_T4"):
        price_key("g2-standard-12", "NVIDIA_TESLA_T4", 1)
    with pytest.raises(ValueError, match="1 x NVIDIA_L4 built in, not 2"):
        accelerators("g2-standard-12", "NVIDIA_L4", 2)
    with pytest.raises(ValueError, match="only n1 machines"):
        accelerators("e2-standard-4", "NVIDIA_TESLA_T4", 1)


def test_a_region_missing_from_the_table_uses_the_fallback_and_says_so() -> None:
    assert "europe-west4" not in PRICES.per_hour
    assert PRICES.price("n1-standard-4", "europe-west4") == (
        0.21849885,
        "us-central1 (no price for the region)",
    )
    estimate, notes = PRICES.estimate(
        instance="n1-standard-4", count=1, region="europe-west4", tokens=1_000_000
    )
    assert notes == []
    assert estimate is not None
    assert "price from us-central1 (no price for the region)" in estimate.basis


def test_an_unknown_machine_has_no_price_and_the_estimate_asks_for_one() -> None:
    assert gpus("x9-mystery-8") is None
    assert throughput("x9-mystery-8") is None
    assert PRICES.price(price_key("x9-mystery-8"), "us-central1") is None
    estimate, notes = PRICES.estimate(
        instance="x9-mystery-8", count=1, region="us-central1", tokens=1_000
    )
    assert estimate is None
    assert "options.price_per_hour" in notes[0]
    # An options price and speed make it estimable.
    estimate, _ = PRICES.estimate(
        instance="x9-mystery-8",
        count=1,
        region="us-central1",
        tokens=3_600_000,
        price_per_hour=2.0,
        tokens_per_second=1_000,
    )
    assert estimate is not None
    assert estimate.amount == pytest.approx((pricing.STARTUP_HOURS + 1.0) * 2.0)
    assert estimate.price_date is None


def test_a_spot_estimate_applies_the_discount() -> None:
    tokens = 40 * 3600  # one hour at the CPU throughput
    on_demand, _ = PRICES.estimate(
        instance="n1-standard-4", count=2, region="us-central1", tokens=tokens
    )
    spot, _ = PRICES.estimate(
        instance="n1-standard-4", count=2, region="us-central1", tokens=tokens, spot_discount=0.6
    )
    assert on_demand is not None and spot is not None
    hours = pricing.STARTUP_HOURS + 0.5
    assert on_demand.amount == pytest.approx(hours * 2 * 0.21849885)
    assert spot.amount == pytest.approx(on_demand.amount * 0.4)
    assert "spot, assumed 60% off" in spot.basis


def test_a_gemini_model_id_maps_to_its_family_and_price() -> None:
    assert model_family("gemini-2.5-flash") == "gemini-2.5-flash"
    assert model_family("gemini-2.5-flash-001") == "gemini-2.5-flash"
    assert model_family("gemini-2.5-flash-lite") == "gemini-2.5-flash-lite"
    assert model_family("publishers/google/models/gemini-2.0-flash-001") == "gemini-2.0-flash"
    assert "gemini-2.5-flash" in pricing.TUNING_MODELS
    # No published figure is recorded, so the price is the one the options give.
    assert TUNING_PRICES.price("gemini-2.5-flash-001", override=5.0) == 5.0
    estimate = TUNING_PRICES.estimate(
        provider="vertex",
        model="gemini-2.5-flash-001",
        examples=500,
        billable_tokens=200_000,
        epochs=4,
        override=5.0,
    )
    assert estimate.trained_tokens == 800_000
    assert estimate.amount == pytest.approx(4.0)
    for family, price in pricing.TUNING_PRICE_PER_MILLION.items():
        assert TUNING_PRICES.price(family) == price


def test_an_unknown_model_has_no_price() -> None:
    assert model_family("gpt-4o-mini") is None
    assert model_family("gemini-2.5") is None
    assert TUNING_PRICES.price("gpt-4o-mini") is None
    estimate = TUNING_PRICES.estimate(
        provider="vertex",
        model="gpt-4o-mini",
        examples=100,
        billable_tokens=10_000,
        epochs=None,
    )
    assert estimate.amount is None
    assert estimate.epochs == pricing.ASSUMED_TUNING_EPOCHS

"""The playground generator: seeded, realistic, with labelled faults."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta

import pytest

from lakehouse.generator.faults import (
    FATE_COUNTED,
    FATE_DUPLICATE,
    FATE_LATE,
    FaultConfig,
    deliveries,
    expected_fates,
)
from lakehouse.generator.shop import Shop, ShopConfig, seasonality, utc

pytestmark = pytest.mark.unit
START = utc(2026, 11, 27, 20)


def stream(catalog, seed: int = 3, minutes: int = 5, faults: FaultConfig | None = None):  # noqa: ANN001, ANN201
    shop = Shop(ShopConfig(seed=seed, events_per_second=150), START)
    return list(deliveries(shop.events(START + timedelta(minutes=minutes)), catalog, "raw", faults or FaultConfig(), seed))


def test_same_seed_same_stream_and_another_seed_another(catalog) -> None:
    first, again, other = stream(catalog), stream(catalog), stream(catalog, seed=4)
    assert [d.value for d in first] == [d.value for d in again]
    assert [d.value for d in first] != [d.value for d in other]


def test_funnel_and_rate_are_realistic(catalog) -> None:
    events = list(Shop(ShopConfig(seed=9, events_per_second=150, seasonal=False), START).events(START + timedelta(minutes=10)))
    counts = Counter(e["event_type"] for e in events)
    assert 0.7 * 150 * 600 < len(events) < 1.3 * 150 * 600
    assert counts["page_view"] > counts["product_view"] > counts["add_to_cart"] > counts["checkout_started"] > counts["order_placed"] > 0
    assert 0 < counts["payment_failed"] < counts["payment_authorized"]
    assert counts["ad_cost"] == 6 * 9  # every campaign reports once a minute
    restocks = [e for e in events if e["event_type"] == "inventory_adjusted" and e["payload"]["reason"] == "restock"]
    assert restocks and all(e["payload"]["stock_after"] == 40 for e in restocks)
    times = [e["event_time"] for e in events]
    assert times == sorted(times)


def test_traffic_follows_the_day_and_the_week() -> None:
    assert seasonality(utc(2026, 11, 27, 20, 30)) > 3 * seasonality(utc(2026, 11, 27, 4, 0))
    assert seasonality(utc(2026, 11, 28, 20)) > seasonality(utc(2026, 11, 24, 20))  # Saturday > Tuesday


def test_fault_fractions_and_expected_fates(catalog) -> None:
    faults = FaultConfig(duplicate_fraction=0.05, out_of_order_fraction=0.1, late_fraction=0.02, malformed_fraction=0.03)
    delivered = stream(catalog, faults=faults)
    kinds = Counter(d.fault for d in delivered)
    clean = sum(kinds[k] for k in ("none", "out_of_order", "late", "malformed"))
    for kind, fraction in (("duplicate", 0.05), ("out_of_order", 0.1), ("late", 0.02), ("malformed", 0.03)):
        assert kinds[kind] == pytest.approx(fraction * clean, rel=0.25), kind
    arrivals = [d.arrival for d in delivered]
    assert arrivals == sorted(arrivals)
    fates = Counter(f for _, f in expected_fates(delivered, catalog))
    assert fates[FATE_LATE] == kinds["late"] + sum(1 for d in delivered if d.fault == "duplicate" and d.event_id in {x.event_id for x in delivered if x.fault == "late"})
    assert fates[FATE_DUPLICATE] > 0 and fates[FATE_COUNTED] > 0


def test_every_malformed_record_names_the_reason_it_will_get(catalog) -> None:
    delivered = stream(catalog, faults=FaultConfig(malformed_fraction=0.2))
    broken = [d for d in delivered if d.fault == "malformed"]
    reasons = Counter(d.expected_reason.split(":")[0] for d in broken)
    assert set(reasons) >= {"malformed_json", "unknown_event_type", "invalid_event_time", "missing_required", "type_mismatch", "not_allowed"}
    for d in broken:
        if d.expected_reason == "malformed_json":
            with pytest.raises(json.JSONDecodeError):
                json.loads(d.value)


@pytest.mark.unit
def test_a_payment_incident_raises_the_failure_rate_only_inside_its_window() -> None:
    start = utc(2026, 11, 30, 18)
    incident = (start + timedelta(minutes=20), start + timedelta(minutes=40))
    shop = Shop(ShopConfig(seed=3, events_per_second=40, payment_incident=incident), start)
    attempts: dict[bool, list[int]] = {True: [0, 0], False: [0, 0]}
    for event in shop.events(start + timedelta(minutes=60)):
        if event["event_type"] in ("payment_failed", "payment_authorized"):
            at = datetime.fromisoformat(event["event_time"])
            inside = incident[0] <= at < incident[1] + timedelta(minutes=2)  # retries trail the window
            attempts[inside][0] += event["event_type"] == "payment_failed"
            attempts[inside][1] += 1
    inside_rate = attempts[True][0] / attempts[True][1]
    outside_rate = attempts[False][0] / attempts[False][1]
    assert inside_rate > 0.35 > 0.15 > outside_rate  # above payment_failure_rate's max threshold

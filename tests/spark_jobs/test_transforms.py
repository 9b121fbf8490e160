"""The jobs' pure transforms on tiny batch frames (no broker, no streams)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakehouse.contracts import KpiContracts, contracts
from lakehouse.privacy import derive_key, hmac_hex, pseudonymise
from spark_jobs import bronze, gold, silver

pytestmark = pytest.mark.spark
ARRIVAL = datetime(2026, 11, 28, 10, 0, 30, tzinfo=UTC)


def envelope(event_type: str = "order_placed", **changes) -> dict:  # noqa: ANN003
    payload = {
        "order_id": "o-1", "customer_id": "c-1", "email": "ada@example.com", "amount": 42.5, "currency": "EUR",
        "country": "DE", "items": [{"sku": "SKU-1", "quantity": 2, "unit_price": 21.25}],
    }  # fmt: skip
    record = {
        "event_id": "0b8f8a52-5f5a-4b8e-9d1e-2a7b0c3d4e5f", "event_type": event_type, "schema_version": 1,
        "event_time": "2026-11-28T10:00:00+00:00", "source": "test", "payload": payload,
    }  # fmt: skip
    for key, value in changes.items():
        if key.startswith("payload_"):
            name = key.removeprefix("payload_")
            if value is None:
                payload.pop(name, None)
            else:
                payload[name] = value
        else:
            record[key] = value
    return record


def bronze_row(value: str, topic: str = "raw.orders", arrival: datetime = ARRIVAL, offset: int = 0) -> Row:
    return Row(key="o-1", value=value, topic=topic, partition=0, offset=offset, kafka_timestamp=arrival, ingested_at=arrival)


def classify_one(spark, catalog, value: str, **kwargs) -> Row:  # noqa: ANN001, ANN003
    frame = spark.createDataFrame([bronze_row(value, **kwargs)])
    return silver.classify(frame, catalog, "raw").select("reason", "route").first()


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (envelope(), None),
        ('{"event_id": "x", "payload": {', "malformed_json"),
        ("[1, 2, 3]", "malformed_json"),
        (envelope(event_id=None), "missing_envelope_field:event_id"),
        (envelope(event_type="order_shipped"), "unknown_event_type"),
        (envelope(schema_version=2), "unsupported_schema_version"),
        (envelope(event_time="2026-11-28T10:00:00"), "invalid_event_time"),
        (envelope(event_time="2026-11-28T11:00:00+00:00"), "event_time_in_future"),
        (envelope(payload_card_number="4111 1111 1111 1111"), "forbidden_pii:card_number"),
        (envelope(payload_order_id=None), "missing_required:order_id"),
        (envelope(payload_amount="lots"), "type_mismatch:amount"),
        (envelope(payload_currency="USD"), "not_allowed:currency"),
        (envelope(payload_amount=-5), "out_of_range:amount"),
        (envelope(payload_items=[{"sku": "SKU-1", "quantity": 0, "unit_price": 1.0}]), "invalid_item:items.quantity"),
        (envelope(payload_items=[]), "missing_required:items"),
    ],
)
def test_contract_violations_get_their_reason_code(spark, catalog, record, reason) -> None:  # noqa: ANN001
    value = record if isinstance(record, str) else json.dumps({k: v for k, v in record.items() if v is not None})
    row = classify_one(spark, catalog, value)
    assert row.reason == reason
    assert row.route == ("valid" if reason is None else "quarantine")


def test_a_record_on_the_wrong_topic_is_quarantined(spark, catalog) -> None:
    assert classify_one(spark, catalog, json.dumps(envelope()), topic="raw.web").reason == "wrong_topic"


def test_lateness_is_judged_by_arrival_against_the_types_allowance(spark, catalog) -> None:
    on_time = classify_one(spark, catalog, json.dumps(envelope()), arrival=ARRIVAL + timedelta(seconds=90))
    late = classify_one(spark, catalog, json.dumps(envelope()), arrival=ARRIVAL + timedelta(minutes=3))
    assert (on_time.route, late.route) == ("valid", "late")


def test_silver_rows_are_typed_and_pii_protected(spark, catalog) -> None:
    key = b"unit-test-key"
    frame = spark.createDataFrame([bronze_row(json.dumps(envelope(payload_phone="+49 30 1234567")))])
    rows = silver.domain_rows(silver.classify(frame, catalog, "raw"), catalog, "orders", key, "k9").first()
    assert rows.email == f"k9:{hmac_hex(derive_key(key, 'hash'), 'ada@example.com')}"
    assert rows.email == pseudonymise("ada@example.com", "hash", key, "k9")
    assert rows.customer_id == pseudonymise("c-1", "tokenize", key, "k9")
    assert rows.phone is None
    assert rows.amount == 42.5 and rows.items[0].quantity == 2
    assert rows.event_time == datetime(2026, 11, 28, 10, 0)  # session time zone is UTC


def test_quarantined_raw_values_are_scrubbed_of_pii(spark, catalog) -> None:
    record = envelope(payload_card_number="4111 1111 1111 1111")
    frame = silver.classify(spark.createDataFrame([bronze_row(json.dumps(record))]), catalog, "raw")
    raw = silver.quarantine_rows(frame, catalog).first().raw_value
    assert "4111" not in raw and "ada@example.com" not in raw
    assert json.loads(raw)["payload"]["order_id"] == "o-1"  # still valid JSON, still replayable


def test_bronze_keeps_kafka_coordinates(spark) -> None:
    kafka = spark.createDataFrame(
        [Row(key=b"k", value=b'{"a":1}', topic="raw.web", partition=2, offset=7, timestamp=ARRIVAL, timestampType=0)]
    )
    row = bronze.kafka_columns(kafka).first()
    assert (row.key, row.value, row.topic, row.partition, row.offset) == ("k", '{"a":1}', "raw.web", 2, 7)
    assert row.kafka_timestamp == datetime(2026, 11, 28, 10, 0, 30)


def test_measures_are_windowed_per_dimension(spark) -> None:
    silver_orders = spark.createDataFrame(
        [
            Row(event_type="order_placed", event_time=datetime(2026, 11, 28, 10, 0, 5), amount=10.0, country="DE"),
            Row(event_type="order_placed", event_time=datetime(2026, 11, 28, 10, 0, 50), amount=30.0, country="FR"),
            Row(event_type="order_placed", event_time=datetime(2026, 11, 28, 10, 1, 10), amount=5.0, country="DE"),
            Row(event_type="order_cancelled", event_time=datetime(2026, 11, 28, 10, 0, 20), amount=99.0, country="DE"),
        ]
    )
    measures = gold.measure_rows(silver_orders, contracts().measures_of("orders"))
    aggregates = gold.window_aggregates(measures, timedelta(minutes=5)).where("kpi = 'revenue'")
    minute = datetime(2026, 11, 28, 10, 0)
    expected = [
        Row(kpi="revenue", window_start=minute, window_end=minute + timedelta(minutes=1), dimension="all", value=40.0, events=2),
        Row(kpi="revenue", window_start=minute, window_end=minute + timedelta(minutes=1), dimension="country=DE", value=10.0, events=1),
        Row(kpi="revenue", window_start=minute, window_end=minute + timedelta(minutes=1), dimension="country=FR", value=30.0, events=1),
        Row(kpi="revenue", window_start=minute + timedelta(minutes=1), window_end=minute + timedelta(minutes=2), dimension="all", value=5.0, events=1),
        Row(kpi="revenue", window_start=minute + timedelta(minutes=1), window_end=minute + timedelta(minutes=2), dimension="country=DE", value=5.0, events=1),
    ]
    assertDataFrameEqual(aggregates, expected)


def spark_sums(silver_rows, contracts: KpiContracts) -> list[tuple]:  # noqa: ANN001
    """The reference: per (measure, minute, dimension) sums of silver rows by Spark."""
    measures = gold.measure_rows(silver_rows, contracts.of_kind("measure"))
    sums = (
        measures.groupBy(F.window("event_time", "1 minute").start.alias("window_start"), "kpi", "dimension")
        .agg(F.sum("value").alias("value"), F.count(F.lit(1)).alias("events"))
        .collect()
    )
    return [(r["kpi"], r["window_start"].replace(tzinfo=UTC), r["dimension"], r["value"], int(r["events"])) for r in sums]


def test_the_driver_sums_a_batch_as_spark_does(spark) -> None:
    """The hot path sums a batch's measure entries on the driver (Arrow); Spark's aggregation
    of the same rows is the reference: null values, several domains, two minutes."""
    rows = spark.createDataFrame(
        [
            Row(domain="orders", event_type="order_placed", event_time=datetime(2026, 11, 28, 10, 0, 5), amount=10.0, country="DE"),
            Row(domain="orders", event_type="order_placed", event_time=datetime(2026, 11, 28, 10, 0, 50), amount=None, country=None),
            Row(domain="orders", event_type="order_placed", event_time=datetime(2026, 11, 28, 10, 1, 10), amount=5.0, country="DE"),
            Row(domain="orders", event_type="order_cancelled", event_time=datetime(2026, 11, 28, 10, 0, 20), amount=99.0, country="DE"),
            Row(domain="web", event_type="page_view", event_time=datetime(2026, 11, 28, 10, 0, 21), amount=None, country="FR"),
        ],
        "domain string, event_type string, event_time timestamp, amount double, country string",
    )
    measures = contracts().measures_of("orders")
    with_entries = rows.select("event_time", gold.measure_entries(measures).alias("measures"))
    on_driver = gold.arrow_increments(with_entries.toArrow())
    in_spark = spark_sums(rows, KpiContracts(kpis={k.name: k for k in measures}))
    assert on_driver and sorted(on_driver, key=str) == sorted(in_spark, key=str)


def test_rollups_and_ratios_are_derived_from_recent_windows() -> None:
    recent = gold.RecentWindows()
    t0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    for minute, (orders, revenue, sessions) in enumerate([(2, 20.0, 40), (3, 60.0, 50), (0, 0.0, 10)]):
        start = t0 + timedelta(minutes=minute)
        recent.update(("orders", start, "all"), orders, orders)
        recent.update(("revenue", start, "all"), revenue, orders)
        recent.update(("sessions", start, "all"), sessions, sessions)
    touched = [("revenue", t0 + timedelta(minutes=1), "all"), ("orders", t0 + timedelta(minutes=1), "all")]
    rollups = {(r.kpi, r.window_start): r.value for r in gold.rollup_rows(touched, recent, contracts())}
    # every 5-minute window containing 10:01 starts between 09:57 and 10:01
    assert {start for kpi, start in rollups if kpi == "revenue_5m"} == {t0 + timedelta(minutes=k) for k in range(-3, 2)}
    assert rollups[("revenue_5m", t0 - timedelta(minutes=3))] == 80.0  # 09:57–10:02 holds 10:00 and 10:01
    assert rollups[("revenue_5m", t0 + timedelta(minutes=1))] == 60.0
    ratios = {r.kpi: r.inputs for r in gold.ratio_inputs(touched, recent, contracts())}
    assert ratios["average_order_value"] == {"revenue": 60.0, "orders": 3}
    assert ratios["conversion_rate"] == {"orders": 3, "sessions": 50}
    assert "refund_rate" in ratios and ratios["refund_rate"]["refunds"] == 0.0

"""End to end: a seeded stream with duplicates, late, out-of-order and malformed records
goes through the real broker, bronze, silver and gold; every table equals the ground truth
computed independently in Python."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

import pytest
from kafka import KafkaConsumer

from lakehouse.contracts import contracts
from lakehouse.freshness import parse_spark_time
from lakehouse.privacy import derive_key, hmac_hex
from spark_jobs import pipeline
from tests.conftest import TEST_HASH_KEY
from tests.ground_truth import (
    MEASURES,
    RATIOS,
    ROLLUPS,
    counted_events,
    expected_kpis,
    expected_order_payments,
    expected_sessions,
    late_event_ids,
    quarantined,
)
from tests.spark_jobs.stream_fixtures import (
    assert_silver_holds_exactly,
    kpi_differences,
    kpi_rows,
    parquet_bytes,
    produce,
    seeded_stream,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_every_contract_has_an_independent_truth() -> None:
    assert set(contracts().kpis) == set(MEASURES) | set(RATIOS) | set(ROLLUPS)


def test_stream_through_all_layers_equals_ground_truth(deployment, spark, catalog, table_reader, tmp_path) -> None:
    stream = seeded_stream(catalog, deployment, seed=11, minutes=16, rate=16.0)  # long enough to close sessions
    faults = Counter(d.fault for d in stream)
    assert all(faults[f] > 0 for f in ("duplicate", "out_of_order", "late", "malformed"))
    produce(deployment, stream)

    queries = pipeline.drain(spark, deployment, catalog, contracts())

    counted = counted_events(stream, catalog)
    assert len(table_reader(deployment, "bronze.events")) == len(stream)

    # silver: exactly the counted events, each once, in its domain's table
    assert_silver_holds_exactly(counted, deployment, catalog, table_reader)

    # quarantine: every malformed record, with the reason it was built to trigger
    quarantine = table_reader(deployment, "silver.quarantine")
    expected_reasons = Counter((d.expected_reason, d.event_id) for d in quarantined(stream, catalog))
    actual_reasons = Counter(zip(quarantine["reason"], quarantine["event_id"].where(quarantine["event_id"].notna(), None), strict=True))
    assert actual_reasons == expected_reasons

    # ... and every one of them is announced on the dead-letter topic, keyed by its id
    consumer = KafkaConsumer(
        deployment.kafka.dlq_topic, bootstrap_servers=deployment.kafka_bootstrap(),
        auto_offset_reset="earliest", consumer_timeout_ms=5000,
    )  # fmt: skip
    letters = {m.key.decode(): json.loads(m.value) for m in consumer}
    consumer.close()
    assert set(letters) == set(quarantine["quarantine_id"])
    assert all(letter["stage"] == "silver" and letter["reason"] for letter in letters.values())

    # late ledger: every event that arrived after its allowed lateness
    late = table_reader(deployment, "silver.late")
    assert sorted(late["event_id"]) == sorted(late_event_ids(stream, catalog))

    # gold.kpi: every KPI, window and dimension equals the truth
    differences = kpi_differences(kpi_rows(table_reader(deployment, "gold.kpi_current")), expected_kpis(counted))
    assert not differences, "\n".join(differences[:40])

    # the stream-stream join
    joined = table_reader(deployment, "gold.order_payments")
    assert Counter(zip(joined["order_id"], joined["payment_id"], strict=True)) == Counter(expected_order_payments(counted))

    # closed sessions, judged against the sessions query's own final watermark
    watermark = parse_spark_time(queries["gold_sessions"].lastProgress["eventTime"]["watermark"])
    gap = timedelta(seconds=deployment.streaming.session_gap_seconds)
    sessions = table_reader(deployment, "gold.sessions")
    actual_sessions = {
        (r.anonymous_id, r.session_start.to_pydatetime().replace(tzinfo=watermark.tzinfo)): r.events
        for r in sessions.itertuples()
    }
    expected = expected_sessions(counted, gap, watermark)
    assert expected, "the stream should close some sessions"
    assert actual_sessions == expected

    # PII: emails are keyed hashes in silver, and no clear-text canary is in any data file
    orders = table_reader(deployment, "silver.orders").set_index("event_id")
    placed = [e for e in counted if e["event_type"] == "order_placed"]
    key = derive_key(TEST_HASH_KEY.encode(), "hash")
    for event in placed[:50]:
        assert orders.loc[event["event_id"], "email"] == f"k1:{hmac_hex(key, event['payload']['email'])}"
    lake = parquet_bytes(tmp_path / "lake" / "silver") + parquet_bytes(tmp_path / "lake" / "gold")
    for event in placed[:50]:
        assert event["payload"]["email"].encode() not in lake
        assert event["payload"]["phone"].encode() not in lake
    assert b"4111 1111 1111 1111" not in lake

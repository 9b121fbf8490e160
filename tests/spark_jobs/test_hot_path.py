"""The hot path on a real broker, cut into fine micro-batches: skewed clocks and rejected
records cannot make accepted events vanish, and a reset checkpoint keeps writing."""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from lakehouse.config import Settings, load_settings
from lakehouse.contracts import contracts
from lakehouse.generator.faults import Delivery
from lakehouse.runtime import kafka
from lakehouse.tables import checkpoint_location
from spark_jobs import pipeline
from tests.spark_jobs.stream_fixtures import produce

pytestmark = [pytest.mark.integration, pytest.mark.spark]

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
KPI_PATH = ("bronze", "silver_gold")


def record(event_type: str, payload: dict, at: datetime, arrival: datetime, prefix: str, domain: str) -> Delivery:
    """One valid event of ``event_type`` that happened ``at`` and reached Kafka at ``arrival``."""
    event = {
        "event_id": str(uuid.uuid4()), "event_type": event_type, "schema_version": 1,
        "event_time": at.isoformat().replace("+00:00", "Z"), "source": "tests", "payload": payload,
    }  # fmt: skip
    return Delivery(f"{prefix}.{domain}", None, json.dumps(event).encode(), arrival, event_type, event["event_id"], event, "none")


def click(at: datetime, arrival: datetime, prefix: str) -> Delivery:
    payload = {"click_id": uuid.uuid4().hex, "campaign_id": "c1", "channel": "search", "anonymous_id": "a1"}
    return record("ad_click", payload, at, arrival, prefix, "ads")


def ticket(at: datetime, arrival: datetime, prefix: str) -> Delivery:
    payload = {"ticket_id": uuid.uuid4().hex, "channel": "chat", "topic": "delivery", "priority": "normal"}
    return record("ticket_opened", payload, at, arrival, prefix, "support")


def fine_batches(deployment_env: dict[str, str], **extra: str) -> Settings:
    """The deployment with two records per micro-batch (per partition share)."""
    return load_settings("test", environ={**deployment_env, "TRIVAS_STREAMING__MAX_OFFSETS_PER_TRIGGER": "2", **extra})


def drain(spark, settings: Settings, catalog) -> None:  # noqa: ANN001
    finished = pipeline.drain(spark, settings, catalog, contracts(), KPI_PATH)
    assert all(q.exception() is None for q in finished.values())


def counted(table_reader, settings: Settings, kpi: str) -> int:  # noqa: ANN001
    """Events counted by gold for a measure (its total-dimension 1-minute windows)."""
    current = table_reader(settings, "gold.kpi_current")
    rows = current[(current.kpi == kpi) & (current.grain == "1m") & (current.dimension == "all")]
    return int(rows.events.sum())


def test_a_valid_event_dated_ahead_does_not_drop_events_within_their_lateness(
    deployment, deployment_env, spark, catalog, table_reader
) -> None:
    settings = fine_batches(deployment_env)
    prefix = settings.kafka.topic_prefix
    now = T0 + timedelta(minutes=10)
    first = [click(now, now, prefix) for _ in range(3)]
    first.append(click(now + timedelta(minutes=4, seconds=50), now, prefix))  # inside the future tolerance
    produce(settings, first)
    drain(spark, settings, catalog)

    arrival = now + timedelta(seconds=5)
    later_clicks = [click(arrival - timedelta(minutes=3, seconds=30), arrival, prefix) for _ in range(13)]
    late_tickets = [ticket(arrival - timedelta(minutes=4), arrival, prefix) for _ in range(7)]
    produce(settings, later_clicks + late_tickets)
    drain(spark, settings, catalog)

    clicks = first + later_clicks
    assert sorted(table_reader(settings, "silver.ad_events")["event_id"]) == sorted(d.event_id for d in clicks)
    assert sorted(table_reader(settings, "silver.support_tickets")["event_id"]) == sorted(d.event_id for d in late_tickets)
    assert counted(table_reader, settings, "ad_clicks") == len(clicks)
    assert counted(table_reader, settings, "ticket_volume") == len(late_tickets)
    assert len(table_reader(settings, "silver.late")) == 0


def test_a_rejected_record_from_a_fast_clock_cannot_erase_valid_events(
    deployment, deployment_env, spark, catalog, table_reader
) -> None:
    settings = fine_batches(deployment_env)
    prefix = settings.kafka.topic_prefix
    now = T0 + timedelta(minutes=10)
    broken = Delivery(f"{prefix}.ads", None, b"{not json", now + timedelta(minutes=20), "ad_click", None, None, "malformed")
    first = [click(now, now, prefix), click(now, now, prefix)]
    produce(settings, [broken, *first])
    drain(spark, settings, catalog)

    arrival = now + timedelta(seconds=15)
    following = [click(arrival - timedelta(seconds=5), arrival, prefix) for _ in range(12)]
    produce(settings, following)
    drain(spark, settings, catalog)

    valid = first + following
    assert sorted(table_reader(settings, "silver.ad_events")["event_id"]) == sorted(d.event_id for d in valid)
    assert counted(table_reader, settings, "ad_clicks") == len(valid)
    assert table_reader(settings, "silver.quarantine")["reason"].tolist() == ["malformed_json"]


def test_a_valid_event_from_a_fast_clock_cannot_push_the_dedup_watermark_past_honest_events(
    deployment, deployment_env, spark, catalog, table_reader
) -> None:
    settings = fine_batches(deployment_env)
    prefix = settings.kafka.topic_prefix
    now = datetime.now(UTC).replace(microsecond=0)
    skewed = now + timedelta(minutes=20)  # its producer's clock is 20 minutes fast: time and arrival
    produce(settings, [click(skewed, skewed, prefix)])
    drain(spark, settings, catalog)

    honest = [click(now - timedelta(minutes=4), now, prefix) for _ in range(10)]  # 4 of 5 allowed minutes late
    produce(settings, honest)
    drain(spark, settings, catalog)

    ids = set(table_reader(settings, "silver.ad_events")["event_id"])
    assert {d.event_id for d in honest} <= ids
    assert counted(table_reader, settings, "ad_clicks") == len(honest) + 1


def test_a_reset_checkpoint_keeps_writing(deployment, deployment_env, spark, catalog, table_reader) -> None:
    """Pointed at new topics with its checkpoint reset, the query's batch ids restart at 0:
    they must not be taken for replays of the old batches (Delta would skip the writes)."""
    settings = fine_batches(deployment_env)
    now = T0 + timedelta(minutes=10)
    before = [click(now, now, settings.kafka.topic_prefix) for _ in range(8)]
    produce(settings, before)
    drain(spark, settings, catalog)

    moved = fine_batches(deployment_env, TRIVAS_KAFKA__TOPIC_PREFIX=f"m{uuid.uuid4().hex[:8]}")
    kafka.ensure_topics(moved, catalog)
    for query in KPI_PATH:
        shutil.rmtree(checkpoint_location(moved, _query_name(query)), ignore_errors=True)
    after = [click(now + timedelta(seconds=20), now + timedelta(seconds=20), moved.kafka.topic_prefix) for _ in range(5)]
    produce(moved, after)
    drain(spark, moved, catalog)

    assert sorted(table_reader(moved, "silver.ad_events")["event_id"]) == sorted(d.event_id for d in before + after)
    assert sorted(table_reader(moved, "bronze.events")["value"].map(lambda v: json.loads(v)["event_id"])) == sorted(
        d.event_id for d in before + after
    )
    assert counted(table_reader, moved, "ad_clicks") == len(before) + len(after)


def _query_name(job: str) -> str:
    from lakehouse.registry import BRONZE_QUERY, HOT_PATH_QUERY

    return {"bronze": BRONZE_QUERY, "silver_gold": HOT_PATH_QUERY}[job]

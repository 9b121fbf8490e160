"""The act job on a real stream: generated traffic with an idle campaign in ``silver.events``
(Delta) → one pending proposal in ``ops.action_requests``, exactly once per trigger."""

from __future__ import annotations

from datetime import datetime

import pytest

from lakehouse.actions.store import requests_log
from lakehouse.catalog import Catalog
from lakehouse.config import Settings
from lakehouse.registry import SILVER_EVENTS, silver_events_schema
from lakehouse.tables import checkpoint_location, ensure_declared
from spark_jobs import act
from spark_jobs.io import append_idempotent
from tests.actions.conftest import IDLE, actions_config, generated_traffic

pytestmark = [pytest.mark.spark, pytest.mark.integration]
DOMAINS = {"ad_click": "ads", "ad_cost": "ads", "order_placed": "orders", "inventory_adjusted": "inventory"}


def silver_rows(events: list[dict], catalog: Catalog) -> list[tuple]:
    """The events of the act job's domains as ``silver.events`` rows (no PII columns needed)."""
    schema = silver_events_schema(catalog)
    rows = []
    for offset, event in enumerate(e for e in events if e["event_type"] in DOMAINS):
        at = datetime.fromisoformat(event["event_time"])
        payload = {k: v for k, v in event["payload"].items() if k not in ("items", "email", "phone", "customer_id")}
        row = {**{k: event[k] for k in ("event_id", "event_type", "schema_version", "source")}, **payload,
               "event_time": at, "sent_at": at, "domain": DOMAINS[event["event_type"]], "kafka_topic": "raw",
               "kafka_partition": 0, "kafka_offset": offset, "ingested_at": at}  # fmt: skip
        rows.append(tuple(row.get(f) for f in schema.fieldNames()))
    return rows


def run_act(spark, settings: Settings, catalog: Catalog, config) -> None:  # noqa: ANN001
    for query in act.run(spark, settings, catalog, available_now=True, config=config):
        query.awaitTermination(300)
        assert query.exception() is None


def test_an_idle_campaign_in_the_stream_becomes_one_pending_proposal(spark, lake: Settings, catalog: Catalog) -> None:
    config = actions_config()
    ensure_declared(spark, lake, SILVER_EVENTS)
    events = generated_traffic(minutes=11, rate=10)
    frame = spark.createDataFrame(silver_rows(events, catalog), silver_events_schema(catalog))
    append_idempotent(frame, lake, SILVER_EVENTS, "test_silver", 0)

    run_act(spark, lake, catalog, config)
    requests = requests_log(lake).read()
    pauses = requests[requests["policy"] == "pause-idle-campaign"]
    assert pauses[["target", "status", "needs_approval"]].values.tolist() == [[IDLE, "proposed", True]]

    # A replay of the same micro-batch (a lost checkpoint) proposes nothing twice.
    import shutil

    shutil.rmtree(checkpoint_location(lake, act.ACT_QUERY))
    run_act(spark, lake, catalog, config)
    assert requests_log(lake).read()["request_id"].tolist() == requests["request_id"].tolist()


def test_the_audit_log_declared_by_spark_is_append_only_and_takes_idempotent_inserts(spark, lake: Settings) -> None:  # noqa: ANN001
    from deltalake import DeltaTable

    from lakehouse.actions.store import AUDIT_LOG, audit_log, audit_row

    ensure_declared(spark, lake, AUDIT_LOG)  # as `trivas pipeline run` creates it
    log = audit_log(lake)
    row = audit_row("proposed", "policy:p", {"request_id": "act-1", "policy": "p", "action": "pause_campaign", "target": "cmp-01"})
    assert (log.insert_new([row]), log.insert_new([row])) == (1, 0)
    with pytest.raises(Exception, match="append-only"):
        DeltaTable(log.location).delete("event = 'proposed'")
    assert log.read()["audit_id"].tolist() == ["act-1:proposed"]

"""``trivas contracts migrate`` on a live table (issue 13 #2): a new optional field becomes a
nullable ``silver.events`` column while the real hot path (``silver_gold``, a Structured
Streaming query on the real broker) keeps writing that table; after the query restarts on the
new catalog, new events fill the column. The migration records the contract versions and a
second run changes nothing; a change Delta cannot apply in place is refused with its reason."""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from lakehouse.catalog import CATALOG_DIR, load_catalog
from lakehouse.config import Settings
from lakehouse.contract_migrations import (
    REVISION_PROPERTY,
    VERSIONS_PROPERTY,
    apply_plan,
    plan_table,
    table_properties,
)
from lakehouse.contracts import contracts
from lakehouse.generator.faults import Delivery
from lakehouse.registry import SILVER_EVENTS
from lakehouse.tables import table_version
from spark_jobs import hot_path
from tests.spark_jobs.stream_fixtures import produce

pytestmark = [pytest.mark.integration, pytest.mark.spark]


def edited_catalog(folder: Path, version: int, **field: object) -> Path:
    """The project's catalog with one field added to order_placed at ``version`` (older
    versions stay accepted)."""
    shutil.copytree(CATALOG_DIR, folder)
    path = folder / "order_placed.yaml"
    doc = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**doc, "version": version, "oldest_accepted_version": 1,
                                    "fields": [*doc["fields"], field]}, sort_keys=False))  # fmt: skip
    return folder


def order(settings: Settings, version: int, **extra: object) -> Delivery:
    now = datetime.now(UTC)
    payload = {"order_id": f"o-{uuid.uuid4().hex[:10]}", "customer_id": "c-1", "amount": 20.0, "currency": "EUR",
               "country": "DE", "items": [{"sku": "sku-1", "quantity": 2, "unit_price": 10.0}], **extra}  # fmt: skip
    event = {"event_id": str(uuid.uuid4()), "event_type": "order_placed", "schema_version": version,
             "event_time": now.isoformat(), "source": "tests", "payload": payload}  # fmt: skip
    topic = f"{settings.kafka.topic_prefix}.orders"
    return Delivery(topic, None, json.dumps(event).encode(), now, "order_placed", event["event_id"], event, "none")


def send_and_process(settings: Settings, query, deliveries: list[Delivery]) -> None:  # noqa: ANN001
    produce(settings, deliveries)
    query.processAllAvailable()
    assert query.isActive and query.exception() is None


def test_a_nullable_column_is_added_while_the_hot_path_writes_the_table(
    deployment: Settings, spark, catalog, tmp_path: Path, table_reader  # noqa: ANN001
) -> None:
    settings = deployment
    proposed = load_catalog(edited_catalog(tmp_path / "events", 2, name="gift_wrap", type="boolean"))
    query = hot_path.run(spark, settings, catalog, contracts())
    try:
        before = [order(settings, 1) for _ in range(3)]
        send_and_process(settings, query, before)

        plan = plan_table(spark, settings, proposed)
        assert [(s.action, s.column) for s in plan.steps] == [("add_column", "gift_wrap"), ("record_versions", None)]
        assert plan.refused == []
        apply_plan(spark, plan)

        during = [order(settings, 1) for _ in range(3)]  # the running query still holds contract v1
        send_and_process(settings, query, during)
    finally:
        query.stop()

    query = hot_path.run(spark, settings, proposed, contracts())
    try:
        after = [order(settings, 2, gift_wrap=True), order(settings, 2, gift_wrap=False), order(settings, 2, gift_wrap=True)]
        wrapped = {d.event_id: d.event["payload"]["gift_wrap"] for d in after}  # type: ignore[index]
        old_producer = order(settings, 1)  # within the transition window
        send_and_process(settings, query, [*after, old_producer])
    finally:
        query.stop()

    silver = table_reader(settings, SILVER_EVENTS)
    sent = before + during + after + [old_producer]
    mine = silver[silver.event_id.isin([d.event_id for d in sent])]
    assert sorted(mine.event_id) == sorted(d.event_id for d in sent)  # every event once
    by_id = dict(zip(mine.event_id, mine.gift_wrap, strict=True))
    assert {k: by_id[k] for k in wrapped} == wrapped
    assert all(by_id[d.event_id] is None for d in [*before, *during, old_producer])
    assert dict(zip(mine.event_id, mine.schema_version, strict=True))[old_producer.event_id] == 1

    properties = table_properties(spark, settings, SILVER_EVENTS)
    assert json.loads(properties[VERSIONS_PROPERTY])["order_placed"] == 2
    assert properties[REVISION_PROPERTY] == "1"
    version = table_version(spark, settings, SILVER_EVENTS)
    again = plan_table(spark, settings, proposed)
    assert again.up_to_date and apply_plan(spark, again) == []
    assert table_version(spark, settings, SILVER_EVENTS) == version  # idempotent: no commit


def test_a_type_delta_cannot_widen_in_place_is_refused_and_nothing_changes(lake: Settings, spark, catalog, tmp_path: Path) -> None:  # noqa: ANN001
    from lakehouse.tables import ensure_declared

    ensure_declared(spark, lake, SILVER_EVENTS)
    edited_catalog(tmp_path / "events", 2, name="note", type="string")
    page_view = tmp_path / "events" / "page_view.yaml"
    doc = yaml.safe_load(page_view.read_text())
    doc["fields"] = [{**f, "type": "number"} if f["name"] == "page_seq" else f for f in doc["fields"]]
    page_view.write_text(yaml.safe_dump(doc, sort_keys=False))
    widened = load_catalog(tmp_path / "events")

    plan = plan_table(spark, lake, widened)
    assert [(r.column, r.reason.split(";")[0]) for r in plan.refused] == [
        ("page_seq", "Delta cannot change bigint to double in place")
    ]
    # The safe part is still offered; the versions are not recorded while a change is refused.
    assert [(s.action, s.column) for s in plan.steps] == [("add_column", "note")]


def test_nested_columns_are_added_and_types_widened_in_place_on_a_real_table(spark, tmp_path: Path) -> None:  # noqa: ANN001
    """The statements migrate runs, on a Delta table with an INT column and an array of
    structs: a field added inside the array's items, INT widened to BIGINT, values kept."""
    from pyspark.sql import types as T

    from lakehouse.contract_migrations import plan_migration

    item = T.StructType([T.StructField("sku", T.StringType())])
    live = T.StructType([T.StructField("page_seq", T.IntegerType()), T.StructField("items", T.ArrayType(item))])
    path = str(tmp_path / "table")
    spark.createDataFrame([(7, [("sku-1",)])], live).write.format("delta").save(path)
    wider_item = T.StructType([*item.fields, T.StructField("note", T.StringType())])
    target = T.StructType([T.StructField("page_seq", T.LongType()), T.StructField("items", T.ArrayType(wider_item))])

    plan = plan_migration("t", f"delta.`{path}`", live, target, {}, None)
    assert [(s.action, s.column) for s in plan.steps] == [
        ("enable_type_widening", None), ("widen_column", "page_seq"), ("add_column", "items.element.note"),
    ]  # fmt: skip
    apply_plan(spark, plan)

    migrated = spark.read.format("delta").load(path)
    assert migrated.schema == target
    assert [(r.page_seq, [(i.sku, i.note) for i in r["items"]]) for r in migrated.collect()] == [(7, [("sku-1", None)])]
    assert plan_migration("t", f"delta.`{path}`", migrated.schema, target, {}, None).up_to_date

    off = plan_migration("t", "x", live, target, {"delta.enableTypeWidening": "false"}, None)
    assert [r.column for r in off.refused] == ["page_seq"] and "delta.enableTypeWidening=false" in off.refused[0].reason


def test_the_migrate_command_on_a_deployment(lake: Settings, spark, tmp_path: Path) -> None:  # noqa: ANN001
    """``trivas contracts migrate`` as an operator runs it: a separate process, the deployment
    from the environment, the proposed catalog from TRIVAS_CATALOG_DIR; then again (nothing to do)."""
    import os
    import subprocess
    import sys

    from lakehouse import REPO_ROOT
    from lakehouse.tables import ensure_declared, read_table

    ensure_declared(spark, lake, SILVER_EVENTS)
    folder = edited_catalog(tmp_path / "events", 2, name="gift_wrap", type="boolean")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TRIVAS_ENV": "test", "TRIVAS_CATALOG_DIR": str(folder),
           "TRIVAS_PATHS__VAR": str(lake.path(lake.paths.var)), "TRIVAS_TABLES__ROOT": lake.tables.root}  # fmt: skip

    def migrate() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "lakehouse.cli", "contracts", "migrate"],
                              cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)  # fmt: skip

    first = migrate()
    assert first.returncode == 0, first.stdout + first.stderr
    assert "add_column gift_wrap" in first.stdout and "record_versions" in first.stdout
    assert read_table(spark, lake, SILVER_EVENTS).schema["gift_wrap"].dataType.simpleString() == "boolean"
    second = migrate()
    assert second.returncode == 0 and "nothing to do" in second.stdout


def silver_rows(catalog, event_ids: list[str], **extra: object):  # noqa: ANN001, ANN201 - pyarrow.Table
    """``silver.events`` rows of order_placed events (the non-nullable columns filled)."""
    import pyarrow as pa
    from pyspark.sql.pandas.types import to_arrow_schema

    from lakehouse.registry import silver_events_schema

    schema = to_arrow_schema(silver_events_schema(catalog))
    at = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    rows = [{"event_id": e, "event_type": "order_placed", "schema_version": 1, "event_time": at, "source": "tests",
             "domain": "orders", "kafka_topic": "raw.orders", "kafka_partition": 0, "kafka_offset": i, "ingested_at": at,
             **extra} for i, e in enumerate(event_ids)]  # fmt: skip
    return pa.Table.from_pylist(rows, schema=schema)


def test_a_stream_reading_the_table_stops_at_the_new_column_and_resumes_without_loss(
    lake: Settings, spark, catalog, tmp_path: Path  # noqa: ANN001
) -> None:
    """Delta's rule for streaming readers (the pipeline's side jobs read ``silver.events``): a
    schema change stops them once (DELTA_SCHEMA_CHANGED_WITH_VERSION); restarted from their
    checkpoint — the pipeline restarts a failed side job — they read every row once."""
    from pyspark.errors import StreamingQueryException

    from lakehouse.tables import ensure_declared, table_location
    from spark_jobs.io import DriverAppends, read_delta_stream

    ensure_declared(spark, lake, SILVER_EVENTS)
    proposed = load_catalog(edited_catalog(tmp_path / "events", 2, name="gift_wrap", type="boolean"))
    appends = DriverAppends(lake)
    out, checkpoint = str(tmp_path / "out"), str(tmp_path / "reader")

    def start():  # noqa: ANN202 - StreamingQuery
        stream = read_delta_stream(spark, lake, SILVER_EVENTS).select("event_id")
        return stream.writeStream.format("delta").option("checkpointLocation", checkpoint).trigger(processingTime="0.2 seconds").start(out)

    first = [str(uuid.uuid4()) for _ in range(3)]
    appends.append(spark, SILVER_EVENTS, silver_rows(catalog, first), "tests", 0)
    reader = start()
    reader.processAllAvailable()
    apply_plan(spark, plan_table(spark, lake, proposed))
    second = [str(uuid.uuid4()) for _ in range(3)]
    appends.append(spark, SILVER_EVENTS, silver_rows(proposed, second, gift_wrap=True), "tests", 1)
    with pytest.raises(StreamingQueryException, match="DELTA_SCHEMA_CHANGED"):
        reader.processAllAvailable()
    reader.stop()

    reader = start()
    reader.processAllAvailable()
    reader.stop()
    read = [r.event_id for r in spark.read.format("delta").load(out).collect()]
    assert sorted(read) == sorted(first + second)
    stored = spark.read.format("delta").load(table_location(lake, SILVER_EVENTS)).where("gift_wrap").collect()
    assert sorted(r.event_id for r in stored) == sorted(second)

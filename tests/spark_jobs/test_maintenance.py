"""Delta upkeep off the hot path: log checkpoints, compaction and vacuum of a real table."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lakehouse.config import load_settings
from lakehouse.freshness import FRESHNESS_SCHEMA, QueryProgress
from lakehouse.registry import SILVER_EVENTS
from lakehouse.tables import ensure_declared, read_table, table_location
from spark_jobs.maintenance import TableMaintenance

pytestmark = [pytest.mark.spark]


def test_maintenance_checkpoints_compacts_and_vacuums_without_changing_data(spark, tmp_path: Path) -> None:
    settings = load_settings(
        "test",
        environ={
            "TRIVAS_TABLES__ROOT": str(tmp_path / "lake"),
            "TRIVAS_MAINTENANCE__CHECKPOINT_EVERY_COMMITS": "5",
            "TRIVAS_MAINTENANCE__COMPACT_MIN_FILES": "4",
        },
    )
    ensure_declared(spark, settings, "ops.freshness")
    location = table_location(settings, "ops.freshness")
    for batch in range(8):  # eight streaming-sized commits, one small file each
        progress = QueryProgress("q", batch, None, None, batch, None, None, None, None, {}, datetime.now(UTC))
        spark.createDataFrame([progress.as_row()], FRESHNESS_SCHEMA).coalesce(1).write.format("delta").mode("append").save(location)
    before = sorted(map(tuple, read_table(spark, settings, "ops.freshness").collect()))
    maintenance = TableMaintenance(spark, settings, ["ops.freshness", SILVER_EVENTS])

    far_later = 10 * max(settings.maintenance.compact_every_seconds, settings.maintenance.vacuum_every_seconds)
    actions = maintenance.run_once(now=far_later + 1e9)

    kinds = {(a.table, a.kind) for a in actions}
    assert {("ops.freshness", "checkpoint"), ("ops.freshness", "compact"), ("ops.freshness", "vacuum")} <= kinds
    assert all(a.table != SILVER_EVENTS for a in actions)  # a table that does not exist is skipped
    last_checkpoint = json.loads(Path(location, "_delta_log", "_last_checkpoint").read_text())
    assert last_checkpoint["version"] == 8
    files = spark.read.format("delta").load(location).inputFiles()
    assert len(files) == 1
    assert sorted(map(tuple, read_table(spark, settings, "ops.freshness").collect())) == before


def test_views_read_the_same_in_spark_sql_and_arrow(spark, tmp_path: Path) -> None:
    """``gold.kpi_current`` is the latest update per key, whichever reader asks."""
    from datetime import timedelta

    from lakehouse.registry import KPI, KPI_SCHEMA
    from lakehouse.tables import read_arrow, register_views

    settings = load_settings("test", environ={"TRIVAS_TABLES__ROOT": str(tmp_path / "lake")})
    ensure_declared(spark, settings, KPI)
    start = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)

    def update(value: float, seconds: int) -> tuple:
        at = start + timedelta(minutes=1, seconds=seconds)
        return ("orders", "1m", start, start + timedelta(minutes=1), "all", value, None, None, int(value), "orders",
                None, at, {"silver.events": seconds}, False)  # fmt: skip

    spark.createDataFrame([update(1.0, 1), update(3.0, 3), update(2.0, 2)], KPI_SCHEMA).write.format("delta").mode(
        "append"
    ).save(table_location(settings, KPI))
    assert "gold_kpi_current" in register_views(spark, settings)
    assert [r.value for r in spark.sql("SELECT value FROM gold_kpi_current").collect()] == [3.0]
    assert [r.value for r in read_table(spark, settings, "gold.kpi_current").collect()] == [3.0]
    assert read_arrow(settings, "gold.kpi_current").column("value").to_pylist() == [3.0]

"""The catalog binding (Unity Catalog on Databricks), on local Spark's session catalog: Spark
jobs address every table by its catalog name, each table is an external table at its path under
``tables.root``, and the readers that do not run in Spark (the app, the rollup, validations,
the alert store: delta-rs) read the same data at that path."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app import data
from lakehouse.config import Settings, load_settings
from lakehouse.contracts import TOTAL, contracts
from lakehouse.registry import TableSpec, registry
from lakehouse.rollup import HOUR, roll_up
from lakehouse.tables import (
    DEFAULT_PROPERTIES,
    LAYERS,
    read_table,
    table_location,
    table_path,
    table_version,
)
from spark_jobs import pipeline
from tests.ground_truth import counted_events, expected_kpis, quarantined
from tests.spark_jobs.stream_fixtures import (
    assert_silver_holds_exactly,
    kpi_differences,
    kpi_rows,
    produce,
    seeded_stream,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture()
def catalog_bound(deployment: Settings, deployment_env: dict[str, str], spark, tmp_path) -> Iterator[Settings]:  # noqa: ANN001
    """The deployment with ``tables.binding: catalog`` on Spark's session catalog, whose
    schemas (one per layer) exist as the bundle creates them in Unity Catalog."""
    settings = load_settings(
        "test", environ={**deployment_env, "TRIVAS_TABLES__BINDING": "catalog", "TRIVAS_TABLES__CATALOG": "spark_catalog"}
    )
    for layer in LAYERS:
        spark.sql(f"CREATE DATABASE IF NOT EXISTS spark_catalog.{layer} LOCATION '{tmp_path / 'schemas' / layer}'")
    try:
        yield settings
    finally:
        for layer in LAYERS:  # external tables: dropping them leaves their data
            spark.sql(f"DROP DATABASE IF EXISTS spark_catalog.{layer} CASCADE")


def test_catalog_bound_tables_are_external_at_their_paths_and_equal_the_truth(
    catalog_bound: Settings, spark, catalog, table_reader  # noqa: ANN001
) -> None:
    stream = seeded_stream(catalog, catalog_bound, seed=5, minutes=4, rate=8.0)
    produce(catalog_bound, stream)
    pipeline.drain(spark, catalog_bound, catalog, contracts())

    # Every table the pipeline wrote is in the catalog, external, at its path under tables.root.
    written = [name for name, spec in registry().items() if isinstance(spec, TableSpec) and spark.catalog.tableExists(table_location(catalog_bound, name))]
    assert {"bronze.events", "silver.events", "silver.quarantine", "gold.kpi"} <= set(written)
    for name in written:
        detail = spark.sql(f"DESCRIBE DETAIL {table_location(catalog_bound, name)}").first()
        assert detail["location"].removeprefix("file:") == table_path(catalog_bound, name), name
        spec = registry()[name]  # and as declared: schema, partitioning, properties
        assert spark.read.table(table_location(catalog_bound, name)).schema == spec.schema, name
        assert list(detail["partitionColumns"]) == list(spec.partition_by), name
        assert {**DEFAULT_PROPERTIES, **spec.properties}.items() <= dict(detail["properties"]).items(), name
        described = dict(spark.sql(f"DESCRIBE TABLE EXTENDED {table_location(catalog_bound, name)}").select("col_name", "data_type").collect())
        assert described["Type"] == "EXTERNAL", name

    # delta-rs at the paths reads what Spark reads by name, and it is the truth.
    counted = counted_events(stream, catalog)
    assert len(table_reader(catalog_bound, "bronze.events")) == len(stream) == read_table(spark, catalog_bound, "bronze.events").count()
    assert_silver_holds_exactly(counted, catalog_bound, catalog, table_reader)
    assert len(table_reader(catalog_bound, "silver.quarantine")) == len(quarantined(stream, catalog))
    gold = kpi_rows(table_reader(catalog_bound, "gold.kpi_current"))
    assert not kpi_differences(gold, expected_kpis(counted))
    assert gold == kpi_rows(read_table(spark, catalog_bound, "gold.kpi_current").toPandas())

    # The app sees the version Spark committed last.
    state, rows = data.table_use(catalog_bound, "gold.kpi", lambda handle: handle.dataset.count_rows())
    assert state.version == table_version(spark, catalog_bound, "gold.kpi")
    assert rows == read_table(spark, catalog_bound, "gold.kpi").count()

    # The rollup (delta-rs, no JVM) rolls up the catalog-bound gold.kpi.
    run = roll_up(catalog_bound, contracts())
    assert run.hours > 0
    hourly = table_reader(catalog_bound, "gold.kpi_rollup")
    orders = hourly[(hourly["kpi"] == "orders") & (hourly["grain"] == HOUR) & (hourly["dimension"] == TOTAL)]
    assert orders["value"].sum() == sum(1 for e in counted if e["event_type"] == "order_placed")

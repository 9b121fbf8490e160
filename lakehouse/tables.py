"""The table registry: logical names (``layer.table``) bound to Delta storage by config.

Code only ever names tables logically (``silver.orders``); ``conf/<env>.yaml`` decides whether
that is a path under ``tables.root`` (local, tests) or a Unity Catalog table
``<catalog>.<layer>.<table>`` (Databricks). One writer per table (DESIGN §4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from lakehouse.config import Settings

LAYERS = ("bronze", "silver", "gold", "ops")

# Table properties every trivas table gets: log checkpoints off the hot path (a background
# job checkpoints), no column stats on streaming appends (a small machine pays for them on
# every commit), and change data feed off (replay comes from bronze, not from the CDF).
DEFAULT_PROPERTIES = {
    "delta.checkpointInterval": "100",
    "delta.dataSkippingNumIndexedCols": "0",
    "delta.appendOnly": "false",
}


def split_name(logical: str) -> tuple[str, str]:
    """``"silver.orders"`` → ``("silver", "orders")``; rejects unknown layers."""
    layer, _, name = logical.partition(".")
    if layer not in LAYERS or not name or "." in name:
        raise ValueError(f"invalid table name {logical!r}: use <layer>.<table>, layer in {LAYERS}")
    return layer, name


def table_location(settings: Settings, logical: str) -> str:
    """Storage path (path binding) or catalog name (catalog binding) of a table."""
    layer, name = split_name(logical)
    if settings.tables.binding == "catalog":
        return f"{settings.tables.catalog}.{layer}.{name}"
    root = settings.tables.root
    base = root if "://" in root else str(settings.path(root))
    return f"{base}/{layer}/{name}"


def checkpoint_location(settings: Settings, query_name: str) -> str:
    """Checkpoint folder of one streaming query."""
    root = settings.tables.checkpoints
    base = root if "://" in root else str(settings.path(root))
    return f"{base}/{query_name}"


def qualified(settings: Settings, logical: str) -> str:
    """The table as Spark SQL names it: ``delta.`path``` or ``catalog.layer.table``."""
    location = table_location(settings, logical)
    return location if settings.tables.binding == "catalog" else f"delta.`{location}`"


def table_exists(spark: SparkSession, settings: Settings, logical: str) -> bool:
    """True if the Delta table has been created."""
    from delta.tables import DeltaTable

    location = table_location(settings, logical)
    if settings.tables.binding == "catalog":
        return bool(spark.catalog.tableExists(location))
    return Path(location, "_delta_log").exists() and DeltaTable.isDeltaTable(spark, location)


def ensure_table(
    spark: SparkSession,
    settings: Settings,
    logical: str,
    schema: T.StructType,
    partition_by: Sequence[str] = (),
    properties: Mapping[str, str] | None = None,
) -> None:
    """Create the Delta table with ``schema`` if it does not exist (idempotent)."""
    from delta.tables import DeltaTable

    location = table_location(settings, logical)
    builder = DeltaTable.createIfNotExists(spark)
    builder = (
        builder.tableName(location)
        if settings.tables.binding == "catalog"
        else builder.location(location)
    )
    builder = builder.addColumns(schema)
    if partition_by:
        builder = builder.partitionedBy(*partition_by)
    for key, value in {**DEFAULT_PROPERTIES, **(properties or {})}.items():
        builder = builder.property(key, value)
    builder.execute()


def read_table(spark: SparkSession, settings: Settings, logical: str) -> DataFrame:
    """A batch read of the current version of a table."""
    location = table_location(settings, logical)
    if settings.tables.binding == "catalog":
        return spark.read.table(location)
    return spark.read.format("delta").load(location)


def delta_table(spark: SparkSession, settings: Settings, logical: str):  # noqa: ANN201
    """The ``DeltaTable`` handle (for MERGE, history, version)."""
    from delta.tables import DeltaTable

    location = table_location(settings, logical)
    if settings.tables.binding == "catalog":
        return DeltaTable.forName(spark, location)
    return DeltaTable.forPath(spark, location)


def table_version(spark: SparkSession, settings: Settings, logical: str) -> int:
    """Latest commit version of a table."""
    history = delta_table(spark, settings, logical).history(1).select("version").collect()
    return int(history[0]["version"])

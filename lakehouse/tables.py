"""Table bindings: logical names (``layer.table``) bound to Delta storage by config.

Code only ever names tables logically (``silver.orders``); ``conf/<env>.yaml`` decides whether
Spark addresses it by its path under ``tables.root`` (local, tests) or as a Unity Catalog table
``<catalog>.<layer>.<table>`` (Databricks). Either way its data lives at that path: a
catalog-bound table is an external table located there, so the readers and writers that do not
run in Spark (the app, the rollup, validations, the alert store, with delta-rs) address every
table by :func:`table_path` under both bindings. What each table *is* (schema, partitioning,
properties, writer, views over it) is declared once in :mod:`lakehouse.registry`; the
functions here resolve those declarations, so a view (``silver.orders`` over
``silver.events``) reads the same way as a table. One writer per table.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from lakehouse.config import Settings

LAYERS = ("bronze", "silver", "gold", "ops")

# Table properties every trivas table gets: log checkpoints off the hot path (the pipeline's
# maintenance thread checkpoints every table it writes; the interval here is only a safety
# valve for tables written outside the pipeline), no column stats on streaming appends (a
# small machine pays for them on every commit).
DEFAULT_PROPERTIES = {
    "delta.checkpointInterval": "1000",
    "delta.dataSkippingNumIndexedCols": "0",
    "delta.appendOnly": "false",
}


def split_name(logical: str) -> tuple[str, str]:
    """``"silver.orders"`` → ``("silver", "orders")``; rejects unknown layers."""
    layer, _, name = logical.partition(".")
    if layer not in LAYERS or not name or "." in name:
        raise ValueError(f"invalid table name {logical!r}: use <layer>.<table>, layer in {LAYERS}")
    return layer, name


def table_path(settings: Settings, logical: str) -> str:
    """Where a table's data and Delta log are: ``<tables.root>/<layer>/<table>`` (a local
    folder or an object-store URI) under either binding."""
    layer, name = split_name(logical)
    root = settings.tables.root
    base = root if "://" in root else str(settings.path(root))
    return f"{base}/{layer}/{name}"


def table_location(settings: Settings, logical: str) -> str:
    """The table as Spark addresses it: its path (path binding) or its catalog name (catalog
    binding)."""
    if settings.tables.binding == "catalog":
        layer, name = split_name(logical)
        return f"{settings.tables.catalog}.{layer}.{name}"
    return table_path(settings, logical)


def checkpoint_location(settings: Settings, query_name: str) -> str:
    """Checkpoint folder of one streaming query."""
    root = settings.tables.checkpoints
    base = root if "://" in root else str(settings.path(root))
    return f"{base}/{query_name}"


def qualified(settings: Settings, logical: str) -> str:
    """The table as Spark SQL names it: ``delta.`path``` or ``catalog.layer.table``."""
    location = table_location(settings, logical)
    return location if settings.tables.binding == "catalog" else f"delta.`{location}`"


def has_commits(location: str | Path) -> bool:
    """Whether the Delta table at a path has a commit a reader can load: its ``_delta_log``
    folder appears before the first commit is written. Object-store URIs ask delta-rs."""
    if "://" in str(location) and not str(location).startswith("file://"):
        from deltalake import DeltaTable

        return bool(DeltaTable.is_deltatable(str(location)))
    log = Path(str(location).removeprefix("file://"), "_delta_log")
    return log.is_dir() and (any(log.glob("*.json")) or (log / "_last_checkpoint").exists())


def table_exists(spark: SparkSession, settings: Settings, logical: str) -> bool:
    """True if the Delta table has been created."""
    from delta.tables import DeltaTable

    location = table_location(settings, logical)
    if settings.tables.binding == "catalog":
        return bool(spark.catalog.tableExists(location))
    return Path(location, "_delta_log").exists() and DeltaTable.isDeltaTable(spark, location)


CREATE_ATTEMPTS = 3


def ensure_table(
    spark: SparkSession,
    settings: Settings,
    logical: str,
    schema: T.StructType,
    partition_by: Sequence[str] = (),
    properties: Mapping[str, str] | None = None,
) -> None:
    """Create the Delta table with ``schema`` if it does not exist (idempotent): at its path,
    and under the catalog binding as an external table of that name at that path."""
    from delta.tables import DeltaTable

    path, properties = table_path(settings, logical), {**DEFAULT_PROPERTIES, **(properties or {})}
    if settings.tables.binding == "catalog":
        # SQL, not the builder: open-source Delta's builder cannot parse a three-part name.
        statement = create_external_table_sql(table_location(settings, logical), path, schema, partition_by, properties)
        create = partial(spark.sql, statement)
    else:
        builder = DeltaTable.createIfNotExists(spark).location(path).addColumns(schema)
        if partition_by:
            builder = builder.partitionedBy(*partition_by)
        for key, value in properties.items():
            builder = builder.property(key, value)
        create = builder.execute
    for attempt in range(CREATE_ATTEMPTS):
        try:
            create()
            return
        except Exception:
            # Applications of one pipeline start together and may create a table at the same
            # moment: the loser's commit fails (protocol or metadata changed), and its next
            # attempt finds the table there.
            if attempt == CREATE_ATTEMPTS - 1:
                raise
            time.sleep(1.0 + attempt)


def create_external_table_sql(
    name: str, path: str, schema: T.StructType, partition_by: Sequence[str], properties: Mapping[str, str]
) -> str:
    """``CREATE TABLE IF NOT EXISTS`` of a Delta table ``name`` located at ``path``."""
    columns = ", ".join(
        f"`{field.name}` {field.dataType.simpleString()}{'' if field.nullable else ' NOT NULL'}" for field in schema.fields
    )
    statement = f"CREATE TABLE IF NOT EXISTS {name} ({columns}) USING DELTA"
    if partition_by:
        statement += " PARTITIONED BY (" + ", ".join(f"`{column}`" for column in partition_by) + ")"
    statement += f" LOCATION '{path}'"
    if properties:
        statement += " TBLPROPERTIES (" + ", ".join(f"'{key}' = '{value}'" for key, value in properties.items()) + ")"
    return statement


def read_table(spark: SparkSession, settings: Settings, logical: str) -> DataFrame:
    """A batch read of the current version of a table, or of a registered view over one."""
    from lakehouse.registry import view_of

    view = view_of(logical)
    if view is not None:
        return view.over(read_table(spark, settings, view.base))
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


def ensure_declared(spark: SparkSession, settings: Settings, logical: str) -> None:
    """Create a table of :mod:`lakehouse.registry` as declared there (idempotent)."""
    from lakehouse.registry import table_spec

    spec = table_spec(logical)
    ensure_table(spark, settings, logical, spec.schema, spec.partition_by, spec.properties)


def read_arrow(settings: Settings, logical: str):  # noqa: ANN201 - pyarrow.Table
    """A table or view read with delta-rs (no JVM): the app's, the tools' and the tests' reader.

    Raises ``deltalake.exceptions.TableNotFoundError`` while the table does not exist.
    """
    from deltalake import DeltaTable

    from lakehouse.registry import view_of

    view = view_of(logical)
    if view is not None:
        return view.arrow(read_arrow(settings, view.base))
    return DeltaTable(table_path(settings, logical)).to_pyarrow_table()


def read_pandas(settings: Settings, logical: str):  # noqa: ANN201 - pandas.DataFrame
    """:func:`read_arrow` as pandas."""
    return read_arrow(settings, logical).to_pandas()


def register_views(spark: SparkSession, settings: Settings) -> list[str]:
    """Make every registered view queryable in SQL: a persistent view in the catalog
    binding (``trivas.gold.kpi_current``), a session temp view otherwise
    (``gold_kpi_current``, ``silver_orders``). Returns the names created."""
    from lakehouse.registry import ViewSpec, registry

    created = []
    for name, spec in registry().items():
        if not isinstance(spec, ViewSpec) or not table_exists(spark, settings, spec.base):
            continue
        select = spec.sql.format(base=qualified(settings, spec.base))
        if settings.tables.binding == "catalog":
            view = table_location(settings, name)
            spark.sql(f"CREATE OR REPLACE VIEW {view} AS {select}")
        else:
            view = name.replace(".", "_")
            spark.sql(f"CREATE OR REPLACE TEMP VIEW {view} AS {select}")
        created.append(view)
    return created

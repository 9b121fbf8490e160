"""The table registry: one declaration per table and per view.

Every table of the medallion is declared here once — logical name, schema, partitioning,
properties and the streaming query that writes it (one writer per table) — and so is every
view over one. Jobs create and write tables through these declarations, ``trivas tables``
lists them, and readers (Spark, the app's delta-rs reads, the quarantine tools, tests and
benchmarks) resolve views the same way:

- ``silver.events`` holds every valid event of every domain (one Delta commit per
  micro-batch instead of one per domain); ``silver.orders``, ``silver.web_events``, … are
  views of it: the rows of one domain, in that domain's typed columns.
- ``gold.kpi`` is an append-only log of KPI updates: each micro-batch appends the new
  current row of every (kpi, grain, window, dimension) it touched (appending costs one cheap
  commit; a MERGE rewrites files and was 3x slower here). ``gold.kpi_current`` is the view
  that answers "the current value of each key": its latest row by ``computed_at``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse.actions.store import (
    ACT_WRITER,
    ACTION_COMMANDS,
    ACTION_REQUESTS,
    AUDIT_LOG,
    AUDIT_PROPERTIES,
    AUDIT_SCHEMA,
    REQUESTS_SCHEMA,
    WORKER_WRITER,
)
from lakehouse.actions.store import COMMANDS_SCHEMA as ACTION_COMMANDS_SCHEMA
from lakehouse.actions.store import COMMANDS_WRITER as ACTION_COMMANDS_WRITER
from lakehouse.alerts.store import (
    ALERT_COMMANDS,
    COMMANDS_SCHEMA,
    COMMANDS_WRITER,
    NOTIFICATIONS,
    NOTIFICATIONS_SCHEMA,
    ROUTER_WRITER,
)
from lakehouse.catalog import Catalog
from lakehouse.catalog import catalog as load_catalog
from lakehouse.freshness import FRESHNESS_SCHEMA
from lakehouse.validations import QUALITY_WRITER, VALIDATIONS, VALIDATIONS_SCHEMA

# The streaming queries that own tables (their writers).
BRONZE_QUERY = "bronze_events"
HOT_PATH_QUERY = "silver_gold"
SESSIONS_QUERY = "gold_sessions"
ORDER_PAYMENTS_QUERY = "gold_order_payments"
PIPELINE_WRITER = "pipeline"  # the pipeline runner itself (ops tables)
ROLLUP_WRITER = "kpi_rollup"  # the scheduled rollup job (lakehouse.rollup), off the hot path
# Replays and backfills (spark_jobs.backfill): the ledger's writer, and a second appender of the
# hot path's tables (its own txn app ids; gold rows it restates carry BACKFILL_LINEAGE).
BACKFILL_WRITER = "backfill"

BRONZE_EVENTS = "bronze.events"
SILVER_EVENTS = "silver.events"
QUARANTINE = "silver.quarantine"
LATE = "silver.late"
KPI = "gold.kpi"
KPI_CURRENT = "gold.kpi_current"
KPI_ROLLUP = "gold.kpi_rollup"
SESSIONS = "gold.sessions"
ORDER_PAYMENTS = "gold.order_payments"
FRESHNESS = "ops.freshness"
JOB_STATUS = "ops.job_status"
PIPELINE_HEALTH = "ops.pipeline_health"
BACKFILLS = "ops.backfills"

KPI_KEY = ("kpi", "grain", "window_start", "dimension")
LINEAGE_COLUMNS = ("kafka_topic", "kafka_partition", "kafka_offset", "ingested_at")

BRONZE_SCHEMA = T.StructType(
    [
        T.StructField("key", T.StringType(), True),
        T.StructField("value", T.StringType(), True),
        T.StructField("topic", T.StringType(), False),
        T.StructField("partition", T.IntegerType(), False),
        T.StructField("offset", T.LongType(), False),
        T.StructField("kafka_timestamp", T.TimestampType(), False),
        T.StructField("ingested_at", T.TimestampType(), False),
        T.StructField("ingest_date", T.DateType(), False),
    ]
)
QUARANTINE_SCHEMA = T.StructType(
    [
        T.StructField("quarantine_id", T.StringType(), False),
        T.StructField("reason", T.StringType(), False),
        T.StructField("event_type", T.StringType(), True),
        T.StructField("event_id", T.StringType(), True),
        T.StructField("contract_version", T.LongType(), True),
        T.StructField("source", T.StringType(), True),
        T.StructField("raw_value", T.StringType(), True),
        T.StructField("kafka_topic", T.StringType(), False),
        T.StructField("kafka_partition", T.IntegerType(), False),
        T.StructField("kafka_offset", T.LongType(), False),
        T.StructField("kafka_timestamp", T.TimestampType(), False),
        T.StructField("quarantined_at", T.TimestampType(), False),
    ]
)
LATE_SCHEMA = T.StructType(
    [
        T.StructField("event_id", T.StringType(), False),
        T.StructField("event_type", T.StringType(), False),
        T.StructField("domain", T.StringType(), False),
        T.StructField("event_time", T.TimestampType(), False),
        T.StructField("kafka_timestamp", T.TimestampType(), False),
        T.StructField("lateness_seconds", T.DoubleType(), False),
        T.StructField("raw_value", T.StringType(), False),
        T.StructField("kafka_topic", T.StringType(), False),
        T.StructField("kafka_partition", T.IntegerType(), False),
        T.StructField("kafka_offset", T.LongType(), False),
        T.StructField("recorded_at", T.TimestampType(), False),
    ]
)
KPI_SCHEMA = T.StructType(
    [
        T.StructField("kpi", T.StringType(), False),
        T.StructField("grain", T.StringType(), False),
        T.StructField("window_start", T.TimestampType(), False),
        T.StructField("window_end", T.TimestampType(), False),
        T.StructField("dimension", T.StringType(), False),
        T.StructField("value", T.DoubleType(), True),
        T.StructField("numerator", T.DoubleType(), True),
        T.StructField("denominator", T.DoubleType(), True),
        T.StructField("events", T.LongType(), False),
        T.StructField("unit", T.StringType(), False),
        T.StructField("watermark", T.TimestampType(), True),
        T.StructField("computed_at", T.TimestampType(), False),
        T.StructField("source_versions", T.MapType(T.StringType(), T.LongType()), True),
        T.StructField("is_final", T.BooleanType(), False),
    ]
)
# Hourly and daily KPI rows rolled up from gold.kpi's current 1-minute rows: additive values
# and ratio numerators/denominators are summed, ratios recomputed (lakehouse.rollup).
KPI_ROLLUP_SCHEMA = T.StructType(
    [
        *[KPI_SCHEMA[name] for name in ("kpi", "grain", "window_start", "window_end", "dimension", "value", "numerator", "denominator")],
        T.StructField("minutes", T.LongType(), False),
        T.StructField("final_minutes", T.LongType(), False),
        *[KPI_SCHEMA[name] for name in ("unit", "watermark", "computed_at")],
        T.StructField("kpi_version", T.LongType(), False),
        T.StructField("rolled_at", T.TimestampType(), False),
    ]
)
SESSIONS_SCHEMA = T.StructType(
    [
        T.StructField("anonymous_id", T.StringType(), False),
        T.StructField("session_start", T.TimestampType(), False),
        T.StructField("session_end", T.TimestampType(), False),
        T.StructField("first_event_time", T.TimestampType(), False),
        T.StructField("last_event_time", T.TimestampType(), False),
        T.StructField("country", T.StringType(), True),
        T.StructField("page_views", T.LongType(), False),
        T.StructField("product_views", T.LongType(), False),
        T.StructField("add_to_carts", T.LongType(), False),
        T.StructField("checkouts", T.LongType(), False),
        T.StructField("events", T.LongType(), False),
    ]
)
ORDER_PAYMENTS_SCHEMA = T.StructType(
    [
        T.StructField("order_id", T.StringType(), False),
        T.StructField("order_time", T.TimestampType(), False),
        T.StructField("order_amount", T.DoubleType(), True),
        T.StructField("country", T.StringType(), True),
        T.StructField("payment_id", T.StringType(), False),
        T.StructField("payment_event_type", T.StringType(), False),
        T.StructField("payment_time", T.TimestampType(), False),
        T.StructField("payment_amount", T.DoubleType(), True),
        T.StructField("method", T.StringType(), True),
        T.StructField("failure_code", T.StringType(), True),
        T.StructField("seconds_to_payment", T.DoubleType(), False),
    ]
)


def silver_events_schema(catalog: Catalog) -> T.StructType:
    """``silver.events``: the envelope, ``domain``, every domain's payload columns (null
    outside their domain) and the Kafka lineage — each domain view is a projection of it."""
    fields: dict[str, T.StructField] = {}
    for domain in catalog.domains:
        for column in catalog.silver_schema(domain).fields:
            if column.name in LINEAGE_COLUMNS or column.name in fields:
                continue
            # Payload columns are nullable here: other domains' rows leave them empty.
            fields[column.name] = T.StructField(column.name, column.dataType, True)
    envelope = [f.name for f in catalog.envelope]
    ordered = [fields[n] for n in envelope] + [T.StructField("domain", T.StringType(), False)]
    ordered += [f for n, f in fields.items() if n not in envelope]
    ordered += [
        f
        for f in catalog.silver_schema(next(iter(catalog.domains))).fields
        if f.name in LINEAGE_COLUMNS
    ]
    return T.StructType(ordered)


# One row per chunk a replay or backfill has completed: its progress ledger (resumption skips
# the chunks of a run found here) and its report.
BACKFILLS_SCHEMA = T.StructType(
    [
        T.StructField("run_id", T.StringType(), False),
        T.StructField("source", T.StringType(), False),
        T.StructField("chunk", T.LongType(), False),
        T.StructField("chunk_start", T.TimestampType(), False),
        T.StructField("chunk_end", T.TimestampType(), False),
        T.StructField("records", T.LongType(), False),
        T.StructField("valid", T.LongType(), False),
        T.StructField("silver_added", T.LongType(), False),
        T.StructField("quarantined_added", T.LongType(), False),
        T.StructField("late_added", T.LongType(), False),
        T.StructField("gold_restated", T.LongType(), False),
        T.StructField("completed_at", T.TimestampType(), False),
    ]
)

# A job's state: running, failed (waiting for its restart), restarting or stopped.
JOB_STATUS_SCHEMA = T.StructType(
    [
        T.StructField("job", T.StringType(), False),
        T.StructField("state", T.StringType(), False),
        T.StructField("failures", T.IntegerType(), False),
        T.StructField("error", T.StringType(), True),
        T.StructField("restart_at", T.TimestampType(), True),
        T.StructField("recorded_at", T.TimestampType(), False),
    ]
)


@dataclass(frozen=True)
class TableSpec:
    """A Delta table: what it holds and who writes it."""

    logical: str
    schema: T.StructType
    writer: str
    description: str
    partition_by: tuple[str, ...] = ()
    properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ViewSpec:
    """A view over one table, applied identically to Spark and Arrow reads."""

    logical: str
    base: str
    description: str
    spark: Callable[[DataFrame], DataFrame]
    arrow: Callable[[pa.Table], pa.Table]
    sql: str  # the SELECT over ``{base}``, for SQL users (a catalog view, or a temp view locally)

    def over(self, base: DataFrame) -> DataFrame:
        """The view's rows, given a (batch or streaming) DataFrame of its base table."""
        return self.spark(base)


def domain_view(catalog: Catalog, domain: str) -> ViewSpec:
    """``silver.<table>``: the rows of one domain of ``silver.events``, in its typed columns."""
    columns = catalog.silver_schema(domain).fieldNames()

    def spark(events: DataFrame) -> DataFrame:
        return events.where(F.col("domain") == F.lit(domain)).select(*columns)

    def arrow(events: pa.Table) -> pa.Table:
        return events.filter(pc.equal(events["domain"], domain)).select(columns)

    table = catalog.domains[domain].table
    sql = f"SELECT {', '.join(f'`{c}`' for c in columns)} FROM {{base}} WHERE domain = '{domain}'"
    return ViewSpec(
        f"silver.{table}",
        SILVER_EVENTS,
        f"silver.events where domain = '{domain}'",
        spark,
        arrow,
        sql,
    )


def latest_per_key_view(
    logical: str, base: str, key: tuple[str, ...], order_by: str, columns: list[str]
) -> ViewSpec:
    """A view of an append-only log: the latest row of each ``key`` by ``order_by``."""

    def spark(log: DataFrame) -> DataFrame:
        newest_first = Window.partitionBy(*key).orderBy(F.col(order_by).desc())
        return (
            log.withColumn("_rank", F.row_number().over(newest_first))
            .where("_rank = 1")
            .drop("_rank")
        )

    def arrow(log: pa.Table) -> pa.Table:
        if log.num_rows == 0:
            return log
        latest = (
            log.to_pandas()
            .sort_values(order_by, kind="stable")
            .drop_duplicates(list(key), keep="last")
        )
        return pa.Table.from_pandas(latest, schema=log.schema, preserve_index=False)

    sql = (
        f"SELECT {', '.join(columns)} FROM (SELECT *, row_number() OVER "
        f"(PARTITION BY {', '.join(key)} ORDER BY {order_by} DESC) AS _rank FROM {{base}}) WHERE _rank = 1"
    )
    return ViewSpec(
        logical, base, f"latest row of each ({', '.join(key)}) of {base}", spark, arrow, sql
    )


KPI_CURRENT_VIEW = latest_per_key_view(
    KPI_CURRENT, KPI, KPI_KEY, "computed_at", KPI_SCHEMA.fieldNames()
)
PIPELINE_HEALTH_VIEW = latest_per_key_view(
    PIPELINE_HEALTH, JOB_STATUS, ("job",), "recorded_at", JOB_STATUS_SCHEMA.fieldNames()
)


@cache
def registry() -> dict[str, TableSpec | ViewSpec]:
    """Every table and view of the lakehouse by logical name (from the event catalog)."""
    catalog = load_catalog()
    tables = [
        TableSpec(BRONZE_EVENTS, BRONZE_SCHEMA, BRONZE_QUERY, "every Kafka record as received", ("ingest_date",)),
        TableSpec(SILVER_EVENTS, silver_events_schema(catalog), HOT_PATH_QUERY,
                  "valid, deduplicated, PII-protected events of every domain", ("domain",)),
        TableSpec(QUARANTINE, QUARANTINE_SCHEMA, HOT_PATH_QUERY, "refused records with a reason code"),
        TableSpec(LATE, LATE_SCHEMA, HOT_PATH_QUERY, "valid events later than their allowed lateness"),
        # The change data feed lets detect read each appended update once.
        TableSpec(KPI, KPI_SCHEMA, HOT_PATH_QUERY, "KPI updates (append-only; see gold.kpi_current)",
                  properties={"delta.enableChangeDataFeed": "true"}),
        TableSpec(KPI_ROLLUP, KPI_ROLLUP_SCHEMA, ROLLUP_WRITER,
                  "hourly and daily KPI rows rolled up from gold.kpi_current (a scheduled job)"),
        TableSpec(SESSIONS, SESSIONS_SCHEMA, SESSIONS_QUERY, "closed visitor sessions"),
        TableSpec(ORDER_PAYMENTS, ORDER_PAYMENTS_SCHEMA, ORDER_PAYMENTS_QUERY, "orders joined with payment attempts"),
        TableSpec(FRESHNESS, FRESHNESS_SCHEMA, PIPELINE_WRITER, "progress of every streaming query"),
        TableSpec(JOB_STATUS, JOB_STATUS_SCHEMA, PIPELINE_WRITER, "state changes of every pipeline job (see ops.pipeline_health)"),
        TableSpec(BACKFILLS, BACKFILLS_SCHEMA, BACKFILL_WRITER, "completed chunks of every replay and backfill (their ledger)"),
        TableSpec(NOTIFICATIONS, NOTIFICATIONS_SCHEMA, ROUTER_WRITER,
                  "alert lifecycle and every notification attempt (receiver, status, response code, retries)"),
        TableSpec(ALERT_COMMANDS, COMMANDS_SCHEMA, COMMANDS_WRITER, "acknowledgements and silences of alerts"),
        TableSpec(ACTION_REQUESTS, REQUESTS_SCHEMA, ACT_WRITER, "proposed and suppressed actions (one per idempotency key)"),
        TableSpec(ACTION_COMMANDS, ACTION_COMMANDS_SCHEMA, ACTION_COMMANDS_WRITER, "approvals, rejections, rollbacks and the kill switch"),
        TableSpec(VALIDATIONS, VALIDATIONS_SCHEMA, QUALITY_WRITER,
                  "outcome of every expectation of every validation run (gx/expectations suites)"),
        TableSpec(AUDIT_LOG, AUDIT_SCHEMA, WORKER_WRITER, "append-only audit trail of every action step", properties=AUDIT_PROPERTIES),
    ]  # fmt: skip
    views = [domain_view(catalog, d) for d in catalog.domains] + [
        KPI_CURRENT_VIEW,
        PIPELINE_HEALTH_VIEW,
    ]
    return {spec.logical: spec for spec in [*tables, *views]}


def view_of(logical: str) -> ViewSpec | None:
    """The view declared under ``logical``, or None when it is a table (or undeclared)."""
    spec = registry().get(logical)
    return spec if isinstance(spec, ViewSpec) else None


def table_spec(logical: str) -> TableSpec:
    """The declaration of a table (KeyError with the known names when it is not one)."""
    spec = registry().get(logical)
    if not isinstance(spec, TableSpec):
        known = sorted(n for n, s in registry().items() if isinstance(s, TableSpec))
        raise KeyError(f"{logical!r} is not a declared table; tables: {known}")
    return spec


def tables_written_by(query: str) -> list[TableSpec]:
    """The tables a query writes."""
    return [s for s in registry().values() if isinstance(s, TableSpec) and s.writer == query]

"""CDC job: Debezium change events (Kafka) → silver mirrors of the shop's tables (Delta MERGE).

Debezium is at-least-once: after a worker crash the changes since its last offset flush are
delivered again, after newer ones. The mirror therefore applies changes by their position in
the source's WAL, never by arrival:

- each row carries ``_lsn`` (the change's WAL position) and ``_op``; a change is applied only if
  it is newer than the stored row — a higher LSN, or the same LSN when the stored row came from
  a snapshot (``op=r`` records carry the snapshot's LSN, which the first streamed change can
  share) — so a redelivered or older change never overwrites a newer state;
- within a micro-batch only the latest change per key is kept (a MERGE source needs one row per
  key, and the latest is the only one that matters);
- deletes are soft: the row stays with ``_deleted = true`` and its LSN (a later redelivery of an
  older insert/update then cannot resurrect it); readers take ``_deleted = false`` rows
  (``current_rows``); tombstones (null values) are skipped;
- every MERGE also carries Delta's ``txnAppId``/``txnVersion``, so a replayed micro-batch is a
  no-op before it is even compared.

The pure part (``parse_changes``, ``latest_change_per_key``, ``merge_changes``) is testable as
batch; ``run`` owns the stream I/O.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.streaming import StreamingQuery

from lakehouse.catalog import catalog as event_catalog
from lakehouse.config import Settings, hash_key
from lakehouse.ingest.cdc import CdcSettings, MirroredTable, mirrored_tables
from lakehouse.privacy import apply_pii_policy
from lakehouse.tables import checkpoint_location, delta_table, ensure_table
from spark_jobs.io import read_kafka, start_foreach_batch

QUERY_NAME = "cdc_silver"

METADATA_SCHEMA = T.StructType(
    [
        T.StructField("_op", T.StringType(), False),  # r (snapshot), c, u, d
        T.StructField("_deleted", T.BooleanType(), False),
        T.StructField("_lsn", T.LongType(), False),
        T.StructField("_commit_lsn", T.LongType(), True),  # Debezium's lastCommitLsn
        T.StructField("_tx_id", T.LongType(), True),
        T.StructField("_source_ts", T.TimestampType(), True),  # commit time at the source
        T.StructField("_ingested_at", T.TimestampType(), False),
    ]
)

_SOURCE_SCHEMA = T.StructType(
    [
        T.StructField("lsn", T.LongType()),
        T.StructField("txId", T.LongType()),
        T.StructField("sequence", T.StringType()),
        T.StructField("ts_ms", T.LongType()),
        T.StructField("schema", T.StringType()),
        T.StructField("table", T.StringType()),
    ]
)


def row_schema(table: MirroredTable) -> T.StructType:
    """The source table's columns as Spark types."""
    return T.StructType(
        [
            T.StructField(c.name, T._parse_datatype_string(c.spark_type), c.name not in table.keys)
            for c in table.columns
        ]
    )


def silver_schema(table: MirroredTable) -> T.StructType:
    """The mirror: the source columns plus the change metadata."""
    return T.StructType([*row_schema(table).fields, *METADATA_SCHEMA.fields])


def envelope_schema(table: MirroredTable) -> T.StructType:
    """Debezium's JSON envelope (JsonConverter, schemas off); row images read as strings."""
    image = T.StructType([T.StructField(c.name, T.StringType()) for c in table.columns])
    return T.StructType(
        [
            T.StructField("before", image),
            T.StructField("after", image),
            T.StructField("op", T.StringType()),
            T.StructField("source", _SOURCE_SCHEMA),
        ]
    )


def parse_changes(records: DataFrame, table: MirroredTable, topic: str) -> DataFrame:
    """Kafka records of ``topic`` → one typed row per change (tombstones dropped).

    A delete's row is its before-image (REPLICA IDENTITY FULL: the whole old row).
    """
    events = (
        records.where((F.col("topic") == topic) & F.col("value").isNotNull())
        .select(F.from_json(F.col("value").cast("string"), envelope_schema(table)).alias("e"))
        .where(F.col("e.op").isin("r", "c", "u", "d"))
    )
    image = F.when(F.col("e.op") == "d", F.col("e.before")).otherwise(F.col("e.after"))
    columns = [_typed(image[c.name], c.spark_type).alias(c.name) for c in table.columns]
    # sequence = ["<lastCommitLsn or null>", "<lsn>"] as a JSON string.
    commit_lsn = F.from_json(F.col("e.source.sequence"), "array<string>")[0].cast("long")
    return events.select(
        *columns,
        F.col("e.op").alias("_op"),
        (F.col("e.op") == "d").alias("_deleted"),
        F.col("e.source.lsn").alias("_lsn"),
        commit_lsn.alias("_commit_lsn"),
        F.col("e.source.txId").alias("_tx_id"),
        F.timestamp_millis(F.col("e.source.ts_ms")).alias("_source_ts"),
        F.current_timestamp().alias("_ingested_at"),
    ).where(F.col("_lsn").isNotNull())


def _typed(value: Column, spark_type: str) -> Column:
    # Debezium sends timestamptz as ISO-8601 with zone and numeric as a decimal string
    # (decimal.handling.mode=string); a plain cast parses both exactly.
    return value.cast(spark_type)


def change_order(prefix: str = "") -> Column:
    """The position of a change in the source: (LSN, streamed-after-snapshot)."""
    return F.struct(
        F.col(f"{prefix}_lsn").alias("lsn"),
        (F.col(f"{prefix}_op") != "r").alias("streamed"),
    )


def latest_change_per_key(changes: DataFrame, table: MirroredTable) -> DataFrame:
    """Keep only the newest change of each key (by LSN; a streamed change beats a snapshot row)."""
    others = [c for c in changes.columns if c not in table.keys]
    latest = changes.groupBy(*table.keys).agg(
        F.max(F.struct(change_order().alias("order"), *[F.col(c) for c in others])).alias("m")
    )
    return latest.select(*table.keys, *[F.col(f"m.{c}").alias(c) for c in others]).select(
        *changes.columns
    )


def newer_than_stored() -> Column:
    """MERGE condition: the incoming change (``s``) is newer than the stored row (``t``)."""
    return (F.col("s._lsn") > F.col("t._lsn")) | (
        (F.col("s._lsn") == F.col("t._lsn")) & (F.col("t._op") == "r") & (F.col("s._op") != "r")
    )


def merge_changes(target, latest: DataFrame, table: MirroredTable) -> None:  # noqa: ANN001
    """Upsert the latest changes into the mirror ``target`` (a DeltaTable); older ones lose."""
    on = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in table.keys)
    (
        target.alias("t")
        .merge(latest.alias("s"), on)
        .whenMatchedUpdateAll(condition=newer_than_stored())
        .whenNotMatchedInsertAll()
        .execute()
    )


def current_rows(mirror: DataFrame, table: MirroredTable) -> DataFrame:
    """The source table's current state from its mirror (soft-deleted rows left out)."""
    return mirror.where(~F.col("_deleted")).select(*table.column_names)


def _query_id(spark: SparkSession, checkpoint: str) -> str:
    """The id Spark keeps in the checkpoint: stable across restarts, new for a new checkpoint.

    Part of ``txnAppId``, so a fresh checkpoint (batch ids from 0 again) is not mistaken for a
    replay of the old one.
    """
    text = spark.read.text(f"{checkpoint}/metadata").first()
    return str(json.loads(text[0])["id"]) if text else "unknown"


def apply_batch_fn(  # noqa: ANN201
    settings: Settings,
    tables: Sequence[MirroredTable],
    cdc: CdcSettings,
    query_id: str | None = None,
):
    """The ``foreachBatch`` writer: one idempotent MERGE per mirrored table.

    ``query_id`` (part of every ``txnAppId``) defaults to the id in the query's checkpoint.
    """
    checkpoint = checkpoint_location(settings, QUERY_NAME)
    query_ids: list[str] = [query_id] if query_id else []
    # Every path into silver applies the catalog's PII policy (a mirrored customer_id is
    # tokenized exactly as silver.orders' is, so the two join).
    master_key, key_id = hash_key(settings), settings.privacy.hash_key_id
    pii = {table.source: table.pii_classes(event_catalog()) for table in tables}

    def apply_batch(batch: DataFrame, batch_id: int) -> None:
        # The stream's own (cloned) session: txn settings stay private to this query.
        spark = batch.sparkSession
        if not query_ids:
            query_ids.append(_query_id(spark, checkpoint))
        records = batch.select("topic", "value").persist()
        try:
            present = {row.topic for row in records.select("topic").distinct().collect()}
            for table in tables:
                if cdc.topic(table.source) not in present:
                    continue  # a MERGE of nothing still costs a Delta commit's worth of jobs
                changes = apply_pii_policy(
                    parse_changes(records, table, cdc.topic(table.source)),
                    pii[table.source], master_key, key_id,
                )  # fmt: skip
                latest = latest_change_per_key(changes, table)
                app_id = f"{QUERY_NAME}:{table.silver}:{query_ids[0]}"
                spark.conf.set("spark.databricks.delta.write.txnAppId", app_id)
                spark.conf.set("spark.databricks.delta.write.txnVersion", str(batch_id))
                try:
                    merge_changes(delta_table(spark, settings, table.silver), latest, table)
                finally:
                    spark.conf.unset("spark.databricks.delta.write.txnAppId")
                    spark.conf.unset("spark.databricks.delta.write.txnVersion")
        finally:
            records.unpersist()

    return apply_batch


def run(
    spark: SparkSession,
    settings: Settings,
    available_now: bool = False,
    cdc: CdcSettings | None = None,
) -> StreamingQuery:
    """Start the Debezium topics → ``silver.shop_*`` mirror query."""
    cdc = cdc or settings.cdc
    tables = mirrored_tables(cdc)
    for table in tables:
        ensure_table(spark, settings, table.silver, silver_schema(table))
    records = read_kafka(spark, settings, cdc.topics())
    return start_foreach_batch(
        records,
        settings,
        QUERY_NAME,
        apply_batch_fn(settings, tables, cdc),
        settings.streaming.side_trigger_seconds,
        available_now=available_now,
    )

"""Readers and writers of the streaming jobs: the only place that touches stream I/O.

Transforms never call ``readStream``/``writeStream``; they receive and return DataFrames.
Every sink here is exactly-once: Delta's streaming sink commits with the checkpoint, and
``foreachBatch`` writers pass Delta's ``txnAppId``/``txnVersion`` so that a micro-batch
replayed after a crash is skipped by Delta instead of written twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import DataStreamWriter, StreamingQuery

from lakehouse.config import Settings
from lakehouse.tables import checkpoint_location, table_location


def read_kafka(spark: SparkSession, settings: Settings, topics: Sequence[str]) -> DataFrame:
    """A Kafka source over ``topics`` with a per-trigger offset limit (burst attenuation)."""
    return (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka_bootstrap())
        .option("subscribe", ",".join(topics))
        .option("startingOffsets", settings.streaming.starting_offsets)
        .option("maxOffsetsPerTrigger", settings.streaming.max_offsets_per_trigger)
        .option("includeHeaders", "false")
        .load()
    )


def read_delta_stream(spark: SparkSession, settings: Settings, logical: str) -> DataFrame:
    """A streaming read of a Delta table's appends."""
    location = table_location(settings, logical)
    reader = spark.readStream.format("delta").option("maxFilesPerTrigger", 1000)
    if settings.tables.binding == "catalog":
        return reader.table(location)
    return reader.load(location)


def append_idempotent(df: DataFrame, settings: Settings, logical: str, app_id: str, batch_id: int) -> None:
    """Append ``df`` as micro-batch ``batch_id`` of writer ``app_id``; a replay is a no-op."""
    writer = (
        df.write.format("delta")
        .mode("append")
        .option("txnAppId", app_id)
        .option("txnVersion", batch_id)
    )
    location = table_location(settings, logical)
    if settings.tables.binding == "catalog":
        writer.saveAsTable(location)
    else:
        writer.save(location)


def _in_own_pool(df: DataFrame, query_name: str) -> None:
    """Give the query its own FAIR scheduler pool (inherited by its stream thread), so a short
    bronze batch is not queued behind a long MERGE of another query in the same application."""
    df.sparkSession.sparkContext.setLocalProperty("spark.scheduler.pool", query_name)


def _with_trigger(writer: DataStreamWriter, seconds: float, available_now: bool) -> DataStreamWriter:
    if available_now:
        return writer.trigger(availableNow=True)
    return writer.trigger(processingTime=f"{int(seconds * 1000)} milliseconds")


def start_delta_sink(
    df: DataFrame,
    settings: Settings,
    query_name: str,
    logical: str,
    trigger_seconds: float,
    available_now: bool = False,
    partition_by: Sequence[str] = (),
) -> StreamingQuery:
    """Start an append-only query into a Delta table (exactly-once through its checkpoint)."""
    _in_own_pool(df, query_name)
    writer = (
        df.writeStream.queryName(query_name)
        .format("delta")
        .outputMode("append")
        .option("checkpointLocation", checkpoint_location(settings, query_name))
    )
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    writer = _with_trigger(writer, trigger_seconds, available_now)
    location = table_location(settings, logical)
    if settings.tables.binding == "catalog":
        return writer.toTable(location)
    return writer.start(location)


def start_foreach_batch(
    df: DataFrame,
    settings: Settings,
    query_name: str,
    write_batch: Callable[[DataFrame, int], None],
    trigger_seconds: float,
    available_now: bool = False,
    output_mode: str = "append",
) -> StreamingQuery:
    """Start a query whose micro-batches are written by ``write_batch(batch_df, batch_id)``."""
    _in_own_pool(df, query_name)
    writer = (
        df.writeStream.queryName(query_name)
        .outputMode(output_mode)
        .option("checkpointLocation", checkpoint_location(settings, query_name))
        .foreachBatch(write_batch)
    )
    return _with_trigger(writer, trigger_seconds, available_now).start()

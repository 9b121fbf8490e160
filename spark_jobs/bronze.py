"""Bronze: every Kafka record, as received, with its Kafka coordinates (the replay log)."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from lakehouse.catalog import Catalog, topic_for
from lakehouse.config import Settings
from lakehouse.registry import BRONZE_EVENTS as TABLE
from lakehouse.registry import BRONZE_QUERY as QUERY_NAME
from lakehouse.tables import ensure_declared
from spark_jobs.io import DriverAppends, WriterIdentity, read_kafka, start_foreach_batch


def kafka_columns(kafka_records: DataFrame) -> DataFrame:
    """Kafka source rows → the record as received (payload bytes decoded as UTF-8, nothing
    parsed) with its Kafka coordinates."""
    return kafka_records.select(
        F.col("key").cast("string").alias("key"),
        F.col("value").cast("string").alias("value"),
        "topic",
        "partition",
        "offset",
        F.col("timestamp").alias("kafka_timestamp"),
    )


def stamped(records: pa.Table, now: datetime) -> pa.Table:
    """Bronze rows from :func:`kafka_columns` rows on the driver: stamped with the time of the
    micro-batch there, not in the Spark plan (a time literal in the plan makes Spark generate
    and compile the batch's code anew each micro-batch)."""
    return records.append_column("ingested_at", pa.array([now] * records.num_rows, pa.timestamp("us", "UTC"))).append_column(
        "ingest_date", pa.array([now.date()] * records.num_rows, pa.date32())
    )


def raw_topics(settings: Settings, catalog: Catalog) -> list[str]:
    """The raw topics bronze subscribes to: one per catalog domain."""
    return [topic_for(settings.kafka.topic_prefix, domain) for domain in catalog.domains]


class BronzeWriter:
    """Appends each micro-batch to ``bronze.events`` from the driver (a Spark job collects the
    records as Arrow, delta-rs commits them: Spark's own Delta sink spent most of a batch on
    its commit here), idempotently by the query's :class:`WriterIdentity` and batch id."""

    def __init__(self, settings: Settings) -> None:
        self.identity = WriterIdentity(settings, QUERY_NAME)
        self.appends = DriverAppends(settings)

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        spark = batch.sparkSession
        records = batch.toArrow()
        if records.num_rows:
            rows = stamped(records, datetime.now(UTC))
            self.appends.append(spark, TABLE, rows, self.identity.app_id(spark), batch_id)


def run(
    spark: SparkSession, settings: Settings, catalog: Catalog, available_now: bool = False
) -> StreamingQuery:
    """Start the Kafka → ``bronze.events`` query."""
    ensure_declared(spark, settings, TABLE)
    records = read_kafka(spark, settings, raw_topics(settings, catalog))
    return start_foreach_batch(
        kafka_columns(records),
        settings,
        QUERY_NAME,
        BronzeWriter(settings),
        settings.streaming.bronze_trigger_seconds,
        available_now=available_now,
    )

"""Bronze: every Kafka record, as received, with its Kafka coordinates (the replay log)."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from lakehouse.catalog import Catalog, topic_for
from lakehouse.config import Settings
from lakehouse.registry import BRONZE_EVENTS as TABLE
from lakehouse.registry import BRONZE_QUERY as QUERY_NAME
from lakehouse.registry import table_spec
from lakehouse.tables import ensure_declared
from spark_jobs.io import read_kafka, start_delta_sink


def transform(kafka_records: DataFrame) -> DataFrame:
    """Kafka source rows → bronze rows (payload bytes decoded as UTF-8, nothing parsed)."""
    ingested_at = F.current_timestamp()
    return kafka_records.select(
        F.col("key").cast("string").alias("key"),
        F.col("value").cast("string").alias("value"),
        "topic",
        "partition",
        "offset",
        F.col("timestamp").alias("kafka_timestamp"),
        ingested_at.alias("ingested_at"),
        F.to_date(ingested_at).alias("ingest_date"),
    )


def raw_topics(settings: Settings, catalog: Catalog) -> list[str]:
    """The raw topics bronze subscribes to: one per catalog domain."""
    return [topic_for(settings.kafka.topic_prefix, domain) for domain in catalog.domains]


def run(
    spark: SparkSession, settings: Settings, catalog: Catalog, available_now: bool = False
) -> StreamingQuery:
    """Start the Kafka → ``bronze.events`` query."""
    ensure_declared(spark, settings, TABLE)
    records = read_kafka(spark, settings, raw_topics(settings, catalog))
    return start_delta_sink(
        transform(records),
        settings,
        QUERY_NAME,
        TABLE,
        settings.streaming.bronze_trigger_seconds,
        available_now=available_now,
        partition_by=table_spec(TABLE).partition_by,
    )

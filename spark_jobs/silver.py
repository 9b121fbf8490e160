"""Silver: parse bronze by the catalog, enforce contracts, protect PII, dedup, route.

Two queries read ``bronze.events``:

- ``silver_events``: valid, on-time records → dedup by ``event_id`` within the watermark →
  one typed, PII-protected table per domain (``silver.orders``, ``silver.web_events``, …);
- ``silver_rejects``: everything else, stateless, so nothing can ever be dropped by a
  watermark: contract violations → ``silver.quarantine`` with a reason code (and the Kafka
  dlq topic), events later than their allowed lateness → ``silver.late``.

A bad record never stops a query: every failure mode is a row with a reason.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.streaming import StreamingQuery

from lakehouse.catalog import Catalog
from lakehouse.config import Settings, hash_key
from lakehouse.privacy import apply_pii_policy, scrub_raw_json
from lakehouse.quality import lateness_exceeded, payload_struct_column, rejection_reason
from lakehouse.tables import ensure_table
from spark_jobs.io import append_idempotent, read_delta_stream, start_foreach_batch

EVENTS_QUERY = "silver_events"
REJECTS_QUERY = "silver_rejects"
QUARANTINE = "silver.quarantine"
LATE = "silver.late"
ROUTE_VALID, ROUTE_LATE, ROUTE_QUARANTINE = "valid", "late", "quarantine"

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


def parse_envelope(bronze: DataFrame, catalog: Catalog) -> DataFrame:
    """Bronze rows + ``value_map``/``payload_map`` (the record and its payload parsed once as
    ``map<string,string>``; null when not a JSON object), the typed ``envelope`` struct,
    ``event_time_text``, ``domain`` and one parsed ``payload_<domain>`` struct per domain
    (null for records of other domains)."""
    value_map = F.from_json("value", "map<string,string>")
    parsed = bronze.withColumn("value_map", value_map)
    fields = []
    for spec in catalog.envelope:
        raw = F.col("value_map")[spec.name]
        # Timestamps stay text until the zone is checked; try_cast never fails a query.
        typed = raw if spec.type == "string" else raw.try_cast(spec.spark_type())
        fields.append(typed.alias(spec.name))
    parsed = parsed.withColumn(
        "envelope", F.struct(*fields, F.col("value_map")["payload"].alias("payload"))
    ).withColumn("event_time_text", F.col("value_map")["event_time"])
    parsed = parsed.withColumn("payload_map", F.from_json("envelope.payload", "map<string,string>"))
    domain_of_type = F.coalesce(
        *[
            F.when(F.col("envelope.event_type") == F.lit(e.event_type), F.lit(e.domain))
            for e in catalog.event_types.values()
        ]
    )
    parsed = parsed.withColumn("domain", domain_of_type)
    for domain in catalog.domains:
        parsed = parsed.withColumn(
            payload_struct_column(domain),
            F.when(
                F.col("domain") == F.lit(domain),
                F.from_json("envelope.payload", catalog.payload_schema(domain)),
            ),
        )
    return parsed


def classify(bronze: DataFrame, catalog: Catalog, topic_prefix: str) -> DataFrame:
    """Parse bronze rows and add ``reason`` (null when valid) and ``route``."""
    parsed = parse_envelope(bronze, catalog).withColumn(
        "reason", rejection_reason(catalog, topic_prefix)
    )
    route = (
        F.when(F.col("reason").isNotNull(), F.lit(ROUTE_QUARANTINE))
        .when(lateness_exceeded(catalog), F.lit(ROUTE_LATE))
        .otherwise(F.lit(ROUTE_VALID))
    )
    return parsed.withColumn("route", route)


def dedup_delay(catalog: Catalog, margin: timedelta) -> timedelta:
    """Watermark delay of the dedup state: the longest dedup horizon, and never shorter
    than the longest allowed lateness plus margin (so no accepted event is dropped)."""
    return max(catalog.max_dedup_horizon(), catalog.max_allowed_lateness() + margin)


def dedupe_events(classified: DataFrame, delay: timedelta) -> DataFrame:
    """Keep the first copy of each valid ``event_id`` seen within the watermark delay.

    Every record passes through (rejects keyed by their unique Kafka coordinates and timed by
    their arrival); the writer keeps the valid ones. Filtering on ``route`` before this point
    would make Spark evaluate the whole contract expression twice, once inside the filter.
    Rejects are written by ``silver_rejects``, a stateless query that cannot drop anything.
    """
    valid = F.col("route") == ROUTE_VALID
    coordinates = F.concat_ws(":", "topic", "partition", "offset")
    keyed = classified.withColumn(
        "dedup_key", F.when(valid, F.col("envelope.event_id")).otherwise(coordinates)
    ).withColumn(
        "event_time", F.when(valid, F.col("envelope.event_time")).otherwise(F.col("kafka_timestamp"))
    )
    return keyed.withWatermark("event_time", f"{int(delay.total_seconds())} seconds").dropDuplicatesWithinWatermark(
        ["dedup_key"]
    )


def domain_rows(
    valid: DataFrame, catalog: Catalog, domain: str, master_key: bytes, key_id: str
) -> DataFrame:
    """Typed, PII-protected silver rows of one domain, in the silver table's column order."""
    schema = catalog.silver_schema(domain)
    payload = payload_struct_column(domain)
    payload_names = {f.name for f in catalog.domain_fields(domain)}
    columns = []
    for field in schema.fields:
        if field.name in payload_names:
            source = F.col(f"{payload}.{field.name}")
        elif field.name == "kafka_topic":
            source = F.col("topic")
        elif field.name == "kafka_partition":
            source = F.col("partition")
        elif field.name == "kafka_offset":
            source = F.col("offset")
        elif field.name == "ingested_at":
            source = F.col("kafka_timestamp")
        else:
            source = F.col(f"envelope.{field.name}")
        columns.append(source.cast(field.dataType).alias(field.name))
    rows = valid.where(F.col("domain") == F.lit(domain)).select(*columns)
    return apply_pii_policy(rows, catalog.pii_classes(domain), master_key, key_id)


def protected_field_names(catalog: Catalog) -> list[str]:
    """Every payload field with a PII class, in any domain."""
    return sorted({name for d in catalog.domains for name in catalog.pii_classes(d)})


def quarantine_rows(rejects: DataFrame, catalog: Catalog) -> DataFrame:
    """``silver.quarantine`` rows: the raw record (PII scrubbed), why it was refused, and
    where it came from (its Kafka coordinates, so bronze still holds the original)."""
    return rejects.where(F.col("route") == ROUTE_QUARANTINE).select(
        F.concat_ws(":", "topic", "partition", "offset").alias("quarantine_id"),
        "reason",
        F.col("envelope.event_type").alias("event_type"),
        F.col("envelope.event_id").alias("event_id"),
        F.col("envelope.schema_version").cast("long").alias("contract_version"),
        F.col("envelope.source").alias("source"),
        scrub_raw_json(F.col("value"), protected_field_names(catalog)).alias("raw_value"),
        F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        "kafka_timestamp",
        F.current_timestamp().alias("quarantined_at"),
    )


def late_rows(rejects: DataFrame, catalog: Catalog) -> DataFrame:
    """``silver.late`` rows: valid events that arrived after their allowed lateness."""
    lateness = (
        F.unix_micros("kafka_timestamp") - F.unix_micros("envelope.event_time")
    ) / 1_000_000.0
    return rejects.where(F.col("route") == ROUTE_LATE).select(
        F.col("envelope.event_id").alias("event_id"),
        F.col("envelope.event_type").alias("event_type"),
        "domain",
        F.col("envelope.event_time").alias("event_time"),
        "kafka_timestamp",
        lateness.alias("lateness_seconds"),
        scrub_raw_json(F.col("value"), protected_field_names(catalog)).alias("raw_value"),
        F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.current_timestamp().alias("recorded_at"),
    )


def ensure_silver_tables(spark: SparkSession, settings: Settings, catalog: Catalog) -> None:
    """Create every silver table that does not exist yet."""
    for domain, spec in catalog.domains.items():
        ensure_table(spark, settings, f"silver.{spec.table}", catalog.silver_schema(domain))
    ensure_table(spark, settings, QUARANTINE, QUARANTINE_SCHEMA)
    ensure_table(spark, settings, LATE, LATE_SCHEMA)


def write_domains(settings: Settings, catalog: Catalog, master_key: bytes):  # noqa: ANN201
    """The ``foreachBatch`` writer of ``silver_events``: one idempotent append per domain."""

    def write(batch: DataFrame, batch_id: int) -> None:
        batch = batch.where(F.col("route") == ROUTE_VALID).persist()
        try:
            present = {r["domain"] for r in batch.select("domain").distinct().collect()}
            jobs = [
                (f"silver.{spec.table}", domain_rows(batch, catalog, d, master_key, settings.privacy.hash_key_id))
                for d, spec in catalog.domains.items()
                if d in present
            ]
            # Commits to different tables are independent: overlap their I/O.
            with ThreadPoolExecutor(max_workers=len(jobs) or 1) as pool:
                futures = [
                    pool.submit(append_idempotent, rows, settings, table, EVENTS_QUERY, batch_id)
                    for table, rows in jobs
                ]
                for future in futures:
                    future.result()
        finally:
            batch.unpersist()

    return write


def publish_dead_letters(quarantined: DataFrame, settings: Settings) -> None:
    """Announce quarantined records on the Kafka dlq topic (PII-scrubbed, keyed by their
    quarantine id). Kafka writes are at-least-once: after a crash a record may be announced
    twice, and consumers dedup by key; ``silver.quarantine`` stays the exactly-once ledger."""
    letters = quarantined.select(
        F.col("quarantine_id").alias("key"),
        F.to_json(
            F.struct(
                "quarantine_id", "reason", "event_type", "event_id", "contract_version", "source",
                F.lit("silver").alias("stage"), "raw_value", "kafka_topic", "kafka_partition", "kafka_offset",
            )
        ).alias("value"),
    )
    (
        letters.write.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka_bootstrap())
        .option("topic", settings.kafka.dlq_topic)
        .save()
    )


def write_rejects(settings: Settings, catalog: Catalog):  # noqa: ANN201
    """The ``foreachBatch`` writer of ``silver_rejects``: quarantine and late ledgers."""

    def write(batch: DataFrame, batch_id: int) -> None:
        # Only what the ledgers need is cached: the parsed payload structs stay behind.
        batch = batch.select(
            "route", "reason", "domain", "envelope", "value", "topic", "partition", "offset", "kafka_timestamp"
        ).where(F.col("route") != ROUTE_VALID).persist()
        try:
            quarantined = quarantine_rows(batch, catalog).persist()
            append_idempotent(quarantined, settings, QUARANTINE, REJECTS_QUERY, batch_id)
            append_idempotent(late_rows(batch, catalog), settings, LATE, REJECTS_QUERY, batch_id)
            publish_dead_letters(quarantined, settings)
            quarantined.unpersist()
        finally:
            batch.unpersist()

    return write


def run(
    spark: SparkSession, settings: Settings, catalog: Catalog, available_now: bool = False
) -> list[StreamingQuery]:
    """Start ``silver_events`` and ``silver_rejects`` reading ``bronze.events``."""
    ensure_silver_tables(spark, settings, catalog)
    margin = timedelta(seconds=settings.streaming.watermark_margin_seconds)
    prefix = settings.kafka.topic_prefix
    events = start_foreach_batch(
        dedupe_events(classify(read_delta_stream(spark, settings, "bronze.events"), catalog, prefix), dedup_delay(catalog, margin)),
        settings,
        EVENTS_QUERY,
        write_domains(settings, catalog, hash_key(settings)),
        settings.streaming.silver_trigger_seconds,
        available_now=available_now,
    )
    rejects = start_foreach_batch(
        classify(read_delta_stream(spark, settings, "bronze.events"), catalog, prefix),
        settings,
        REJECTS_QUERY,
        write_rejects(settings, catalog),
        settings.streaming.side_trigger_seconds,
        available_now=available_now,
    )
    return [events, rejects]

"""Silver transforms: parse each record once by the catalog, classify, dedup, shape.

These are the pure parts of the hot path (``spark_jobs.hot_path`` runs them): one pass over
a raw Kafka record yields its route — ``valid`` (typed, PII-protected ``silver.events`` rows),
``quarantine`` (a contract violation, with its reason code) or ``late`` (valid, but later than
its type's allowed lateness) — and the dedup keeps the first copy of each valid ``event_id``.

A bad record never stops a query: every failure mode is a row with a reason.
"""

from __future__ import annotations

from datetime import timedelta

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehouse.catalog import Catalog
from lakehouse.privacy import apply_pii_policy, scrub_raw_json
from lakehouse.quality import FUTURE_TOLERANCE, judged, lateness_exceeded, payload_struct_column
from lakehouse.registry import LATE_SCHEMA, QUARANTINE_SCHEMA, silver_events_schema

ROUTE_VALID, ROUTE_LATE, ROUTE_QUARANTINE = "valid", "late", "quarantine"
__all__ = ["LATE_SCHEMA", "QUARANTINE_SCHEMA"]


def classify(bronze: DataFrame, catalog: Catalog, topic_prefix: str) -> DataFrame:
    """Judge and read bronze rows in one pass (:func:`lakehouse.quality.judged`: ``reason``,
    the typed ``envelope``, ``domain``, ``payload_<domain>``), then add ``route``: refused
    records go to quarantine, valid ones later than their type allows to the late ledger.
    ``value`` stays as read."""
    route = (
        F.when(F.col("reason").isNotNull(), F.lit(ROUTE_QUARANTINE))
        .when(lateness_exceeded(catalog), F.lit(ROUTE_LATE))
        .otherwise(F.lit(ROUTE_VALID))
    )
    return judged(bronze, catalog, topic_prefix).withColumn("route", route)


def dedup_delay(catalog: Catalog, margin: timedelta) -> timedelta:
    """Watermark delay of the dedup state: the longest dedup horizon, and never shorter than
    the longest allowed lateness plus the future tolerance plus margin — a valid event dated
    up to the tolerance ahead may lead the watermark, and no accepted event may fall behind it."""
    return max(catalog.max_dedup_horizon(), catalog.max_allowed_lateness() + FUTURE_TOLERANCE + margin)


def dedup_time(valid: Column, delay: timedelta) -> Column:
    """The time that feeds the dedup watermark: the event time, held within a band around the
    micro-batch's processing time (Spark stores it in the offset log, so a replay sees the
    same value), and null for rejected records.

    - ceiling: processing time + the future tolerance — a producer with a fast clock cannot
      drag the watermark ahead of events still within their allowed lateness;
    - floor: processing time − (delay − tolerance) / 2 — above any watermark the earlier
      batches can have set (at most processing time + tolerance − delay), so no valid record
      is ever dropped as "late" by the dedup operator. Without it, catching up on a backlog
      drops valid events: Spark splits ``maxOffsetsPerTrigger`` across partitions by offset
      count, so one batch can read one partition minutes of event time ahead of another;
    - rejected records have no time: a null moves no watermark and keeps no state.

    Live, event time lies inside the band and the horizon is event time's; on a backlog the
    floor rules and state expires by processing time (after ``2 × delay`` of it).
    """
    tolerance = int(FUTURE_TOLERANCE.total_seconds())
    below = int((delay.total_seconds() - tolerance) / 2)
    now = F.current_timestamp()
    floor = now - F.expr(f"INTERVAL {below} SECONDS")
    ceiling = now + F.expr(f"INTERVAL {tolerance} SECONDS")
    return F.when(valid, F.least(F.greatest(F.col("envelope.event_time"), floor), ceiling))


def dedupe_events(classified: DataFrame, delay: timedelta) -> DataFrame:
    """Keep the first copy of each valid ``event_id`` seen within the dedup horizon.

    Every record passes through, so the one micro-batch holds valid, quarantined and late
    records alike: rejects are keyed by their unique Kafka coordinates and carry no dedup
    time (:func:`dedup_time` says why no record can make a valid event vanish). Filtering on
    ``route`` before this point would make Spark evaluate the whole contract expression
    twice, once inside the filter.
    """
    valid = F.col("route") == ROUTE_VALID
    coordinates = F.concat_ws(":", "topic", "partition", "offset")
    keyed = classified.withColumn(
        "dedup_key", F.when(valid, F.col("envelope.event_id")).otherwise(coordinates)
    ).withColumn("dedup_time", dedup_time(valid, delay))
    return keyed.withWatermark("dedup_time", f"{int(delay.total_seconds())} seconds").dropDuplicatesWithinWatermark(
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


def silver_event_columns(catalog: Catalog) -> list[Column]:
    """The ``silver.events`` columns of a classified record, in the table's order (before the
    PII policy): a payload column takes its value from the struct of the record's own domain
    (the others are null)."""
    envelope = {f.name for f in catalog.envelope}
    lineage = {"kafka_topic": "topic", "kafka_partition": "partition", "kafka_offset": "offset", "ingested_at": "kafka_timestamp"}
    owners: dict[str, list[str]] = {}
    for domain in catalog.domains:
        for spec in catalog.domain_fields(domain):
            owners.setdefault(spec.name, []).append(domain)
    columns = []
    for field in silver_events_schema(catalog).fields:
        if field.name in envelope:
            source = F.col(f"envelope.{field.name}")
        elif field.name == "domain":
            source = F.col("domain")
        elif field.name in lineage:
            source = F.col(lineage[field.name])
        else:
            source = F.coalesce(*[F.col(f"{payload_struct_column(d)}.{field.name}") for d in owners[field.name]])
        columns.append(source.cast(field.dataType).alias(field.name))
    return columns


def silver_pii_classes(catalog: Catalog) -> dict[str, str]:
    """The PII class of every protected ``silver.events`` column."""
    return {name: pii for d in catalog.domains for name, pii in catalog.pii_classes(d).items()}


def silver_event_rows(
    valid: DataFrame, catalog: Catalog, master_key: bytes, key_id: str
) -> DataFrame:
    """``silver.events`` rows of valid records of every domain, in one projection, with the
    PII policy applied to every classified column."""
    return apply_pii_policy(
        valid.select(*silver_event_columns(catalog)),
        silver_pii_classes(catalog),
        master_key,
        key_id,
    )


def protected_field_names(catalog: Catalog) -> list[str]:
    """Every payload field with a PII class, in any domain."""
    return sorted({name for d in catalog.domains for name in catalog.pii_classes(d)})


def quarantine_rows(rejects: DataFrame, catalog: Catalog) -> DataFrame:
    """``silver.quarantine`` rows of the quarantined records among ``rejects``."""
    columns = quarantine_columns(catalog)
    return rejects.where(F.col("route") == ROUTE_QUARANTINE).select(*[c.alias(n) for n, c in columns.items()])


def quarantine_columns(catalog: Catalog) -> dict[str, Column]:
    """A ``silver.quarantine`` row, column by column: the raw record (PII scrubbed), why it
    was refused, and where it came from (its Kafka coordinates, so bronze still holds the
    original)."""
    return {
        "quarantine_id": F.concat_ws(":", "topic", "partition", "offset"),
        "reason": F.col("reason"),
        "event_type": F.col("envelope.event_type"),
        "event_id": F.col("envelope.event_id"),
        "contract_version": F.col("envelope.schema_version").cast("long"),
        "source": F.col("envelope.source"),
        "raw_value": scrub_raw_json(F.col("value"), protected_field_names(catalog)),
        "kafka_topic": F.col("topic"),
        "kafka_partition": F.col("partition"),
        "kafka_offset": F.col("offset"),
        "kafka_timestamp": F.col("kafka_timestamp"),
        "quarantined_at": F.current_timestamp(),
    }


def late_rows(rejects: DataFrame, catalog: Catalog) -> DataFrame:
    """``silver.late`` rows of the late records among ``rejects``."""
    columns = late_columns(catalog)
    return rejects.where(F.col("route") == ROUTE_LATE).select(*[c.alias(n) for n, c in columns.items()])


def late_columns(catalog: Catalog) -> dict[str, Column]:
    """A ``silver.late`` row, column by column: a valid event that arrived after its allowed
    lateness."""
    lateness = (F.unix_micros("kafka_timestamp") - F.unix_micros("envelope.event_time")) / 1_000_000.0
    return {
        "event_id": F.col("envelope.event_id"),
        "event_type": F.col("envelope.event_type"),
        "domain": F.col("domain"),
        "event_time": F.col("envelope.event_time"),
        "kafka_timestamp": F.col("kafka_timestamp"),
        "lateness_seconds": lateness,
        "raw_value": scrub_raw_json(F.col("value"), protected_field_names(catalog)),
        "kafka_topic": F.col("topic"),
        "kafka_partition": F.col("partition"),
        "kafka_offset": F.col("offset"),
        "recorded_at": F.current_timestamp(),
    }


def dead_letters(quarantined: DataFrame) -> DataFrame:
    """Kafka dlq records of quarantined rows (PII-scrubbed, keyed by their quarantine id).
    Kafka writes are at-least-once: after a crash a record may be announced twice, and
    consumers dedup by key; ``silver.quarantine`` stays the exactly-once ledger."""
    return quarantined.select(
        F.col("quarantine_id").alias("key"), dead_letter_value().alias("value")
    )


def dead_letter_value(row: str | None = None) -> Column:
    """The dlq record (JSON) of a ``silver.quarantine`` row (its columns, or the fields of
    struct column ``row``)."""
    field = (lambda name: F.col(name)) if row is None else (lambda name: F.col(f"{row}.{name}"))
    names = ("quarantine_id", "reason", "event_type", "event_id", "contract_version", "source")
    return F.to_json(
        F.struct(
            *[field(n).alias(n) for n in names], F.lit("silver").alias("stage"),
            *[field(n).alias(n) for n in ("raw_value", "kafka_topic", "kafka_partition", "kafka_offset")],
        )
    )  # fmt: skip

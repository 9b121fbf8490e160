"""The hot path: Kafka → silver and gold.kpi in one micro-batch (query ``silver_gold``).

One query reads the raw topics (the same offsets ``bronze_events`` archives) and, per
micro-batch: parses and classifies every record once (valid, quarantine, late), drops
duplicate ``event_id``s within the dedup watermark, and writes

- ``silver.events`` — the valid events of every domain, one commit;
- ``silver.quarantine`` / ``silver.late`` — only when the batch has such records, plus the
  Kafka dlq announcement of quarantined ones;
- ``gold.kpi`` — the KPI rows the batch changed, appended (one commit), computed on the
  driver by :class:`spark_jobs.gold.KpiBook` from the batch's per-window sums.

So an event is in gold one micro-batch after it reaches Kafka, not one per layer, and a
batch costs two Delta commits (silver, gold) that overlap with the ledgers' commits.
Every write is idempotent (``txnAppId`` = :class:`spark_jobs.io.WriterIdentity`,
``txnVersion`` = batch id); after a crash the book is restored from ``gold.kpi`` and the
batches gold already holds (Delta remembers the last ``txnVersion`` per writer) are not
applied to it again.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from lakehouse.catalog import Catalog
from lakehouse.config import Settings, hash_key
from lakehouse.contracts import KpiContracts
from lakehouse.quality import payload_struct_column
from lakehouse.registry import (
    HOT_PATH_QUERY,
    KPI,
    KPI_CURRENT,
    LATE,
    QUARANTINE,
    SILVER_EVENTS,
    tables_written_by,
)
from lakehouse.tables import ensure_declared, read_table
from spark_jobs import bronze
from spark_jobs.gold import BASE_GRAIN, KpiBook, batch_increments, finality_delay, kpi_frame
from spark_jobs.io import (
    WriterIdentity,
    append_idempotent,
    committed_batch,
    committed_version,
    in_background,
    publish_to_kafka,
    read_kafka,
    start_foreach_batch,
)
from spark_jobs.silver import (
    ROUTE_LATE,
    ROUTE_QUARANTINE,
    ROUTE_VALID,
    classify,
    dead_letters,
    dedup_delay,
    dedupe_events,
    late_rows,
    quarantine_rows,
    silver_event_rows,
)

log = logging.getLogger("trivas.hot_path")
QUERY = HOT_PATH_QUERY


def transform(records: DataFrame, catalog: Catalog, topic_prefix: str, delay: timedelta) -> DataFrame:
    """Kafka source rows → classified, deduplicated records (every route, one pass)."""
    return dedupe_events(classify(bronze.transform(records), catalog, topic_prefix), delay)


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


class SilverGoldWriter:
    """The ``foreachBatch`` writer of the hot path (see the module docstring)."""

    def __init__(self, settings: Settings, catalog: Catalog, contracts: KpiContracts) -> None:
        self.settings = settings
        self.catalog = catalog
        self.contracts = contracts
        self.identity = WriterIdentity(settings, QUERY)
        self.book = KpiBook(contracts, finality_delay(catalog, settings))
        self.master_key = hash_key(settings)
        self.measures = [k.name for k in contracts.of_kind("measure")]
        self.restored = False
        self.gold_holds: int | None = None  # the last batch id gold.kpi holds from this writer
        # What the writes read of a batch (the raw maps the contract checks used stay behind);
        # the raw text only for the ledgers (quarantine and late rows carry it).
        ledger_text = F.when(F.col("route") != ROUTE_VALID, F.col("value")).alias("value")
        self.cached_columns = [
            "route", "reason", "domain", "envelope", ledger_text, "topic", "partition", "offset", "kafka_timestamp",
            *[payload_struct_column(d) for d in catalog.domains],
        ]  # fmt: skip

    # -- restart ------------------------------------------------------------------------------

    def restore(self, spark: SparkSession, app_id: str) -> None:
        """Rebuild the book from ``gold.kpi`` (recent minutes, their finality, the watermark)."""
        self.gold_holds = committed_batch(spark, self.settings, KPI, app_id)
        updates = read_table(spark, self.settings, KPI)
        watermark = _utc(updates.agg(F.max("watermark")).first()[0])
        minutes = read_table(spark, self.settings, KPI_CURRENT).where(
            (F.col("grain") == BASE_GRAIN) & F.col("kpi").isin(self.measures)
        )
        if watermark is not None:
            # Final minutes matter only while an open rollup window may still sum them.
            oldest = watermark - self.book.longest_rollup - timedelta(minutes=2) - self.book.keep
            minutes = minutes.where((F.col("window_start") >= F.lit(oldest)) | ~F.col("is_final"))
        self.book.restore(
            (
                ((r["kpi"], _utc(r["window_start"]), r["dimension"]), r["value"], int(r["events"]), bool(r["is_final"]))
                for r in minutes.collect()
            ),
            watermark,
        )
        self.restored = True
        log.info("hot path: book restored (%d minutes, watermark %s, gold holds batch %s)",
                 len(self.book.recent.values), watermark, self.gold_holds)  # fmt: skip

    def load_evicted(self, spark: SparkSession, ranges: list[tuple[str, str, datetime, datetime]]) -> None:
        """Bring minutes the book had forgotten back from ``gold.kpi`` (an event for a
        long-closed window: rare, so a read of gold is affordable). One coarse predicate (the
        measures, dimensions and time span involved), then the exact ranges on the driver: a
        filter with one clause per range overflows the JVM's stack when a backfill touches
        thousands of them."""
        measures, dimensions = sorted({r[0] for r in ranges}), sorted({r[1] for r in ranges})
        coarse = read_table(spark, self.settings, KPI_CURRENT).where(
            (F.col("grain") == BASE_GRAIN) & F.col("kpi").isin(measures) & F.col("dimension").isin(dimensions)
            & (F.col("window_start") >= F.lit(min(r[2] for r in ranges)))
            & (F.col("window_start") < F.lit(max(r[3] for r in ranges)))
        )  # fmt: skip
        rows = [((r["kpi"], _utc(r["window_start"]), r["dimension"]), r["value"], int(r["events"])) for r in coarse.collect()]
        for key, value, events in within_ranges(rows, ranges):
            if key not in self.book.recent.values:
                self.book.recent.update(key, value, events)
        log.info("hot path: %d evicted minute ranges loaded back from gold", len(ranges))

    # -- one micro-batch ------------------------------------------------------------------------

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        spark = batch.sparkSession
        app_id = self.identity.app_id(spark)
        if not self.restored:
            self.restore(spark, app_id)
        # The batch holds a stateful dedup: cache it so the writes below evaluate it once.
        clock = BatchClock()
        records = batch.select(*self.cached_columns).persist()
        try:
            routes = {r["route"]: (r["records"], r["newest_arrival"]) for r in records.groupBy("route").agg(
                F.count(F.lit(1)).alias("records"), F.max("kafka_timestamp").alias("newest_arrival")).collect()}  # fmt: skip
            clock.mark("read_judge_dedup")
            if not routes:
                return
            self.write_batch(spark, records, routes, app_id, batch_id, clock)
            log.info("hot path batch %d: %d records; %s", batch_id, sum(n for n, _ in routes.values()), clock)
        finally:
            records.unpersist()

    def write_batch(self, spark: SparkSession, records: DataFrame, routes: dict, app_id: str, batch_id: int, clock: BatchClock) -> None:
        route = F.col("route")
        pending = []
        silver_rows = None
        if ROUTE_VALID in routes:
            silver_rows = silver_event_rows(
                records.where(route == ROUTE_VALID), self.catalog, self.master_key, self.settings.privacy.hash_key_id
            ).persist()
            silver_write = in_background(append_idempotent, silver_rows, self.settings, SILVER_EVENTS, app_id, batch_id)
            pending.append(silver_write)
        if ROUTE_QUARANTINE in routes:
            pending.append(in_background(self.write_quarantine, records, app_id, batch_id))
        if ROUTE_LATE in routes:
            late = late_rows(records.where(route == ROUTE_LATE), self.catalog)
            pending.append(in_background(append_idempotent, late, self.settings, LATE, app_id, batch_id))
        try:
            if silver_rows is not None and (self.gold_holds is None or batch_id > self.gold_holds):
                self.write_gold(spark, silver_rows, routes[ROUTE_VALID][1], silver_write, app_id, batch_id, clock)
            for future in pending:
                future.result()
            clock.mark("ledgers")
        finally:
            if silver_rows is not None:
                silver_rows.unpersist()

    def write_quarantine(self, records: DataFrame, app_id: str, batch_id: int) -> None:
        quarantined = quarantine_rows(records.where(F.col("route") == ROUTE_QUARANTINE), self.catalog).persist()
        try:
            append_idempotent(quarantined, self.settings, QUARANTINE, app_id, batch_id)
            publish_to_kafka(dead_letters(quarantined), self.settings, self.settings.kafka.dlq_topic)
        finally:
            quarantined.unpersist()

    def write_gold(
        self, spark: SparkSession, silver_rows: DataFrame, newest_arrival: datetime, silver_write: Future,
        app_id: str, batch_id: int, clock: BatchClock,
    ) -> None:  # fmt: skip
        """Add the batch to the book and append the KPI rows it changed, stamped with the
        ``silver.events`` version that holds the batch (so wait for that commit first)."""
        increments = batch_increments(silver_rows, self.contracts)
        clock.mark("kpi_sums")
        evicted = self.book.missing(increments)
        if evicted:
            self.load_evicted(spark, evicted)
        rows = self.book.apply(increments, _utc(newest_arrival))
        if not rows:
            return
        silver_write.result()
        clock.mark("silver_commit")
        versions = {SILVER_EVENTS: committed_version(spark, self.settings, SILVER_EVENTS)}
        frame = kpi_frame(spark, rows, self.contracts, self.book.watermark, datetime.now(UTC), versions)
        append_idempotent(frame, self.settings, KPI, app_id, batch_id)
        clock.mark("gold_commit")
        self.gold_holds = batch_id


class BatchClock:
    """Where a micro-batch's time goes: seconds per part, in the pipeline log (the parts
    Spark's progress cannot see inside ``foreachBatch``)."""

    def __init__(self) -> None:
        self.last = time.perf_counter()
        self.parts: dict[str, float] = {}

    def mark(self, part: str) -> None:
        now = time.perf_counter()
        self.parts[part] = self.parts.get(part, 0.0) + now - self.last
        self.last = now

    def __str__(self) -> str:
        return ", ".join(f"{part} {seconds:.2f}s" for part, seconds in self.parts.items())


def within_ranges(rows: list[tuple], ranges: list[tuple[str, str, datetime, datetime]]) -> list[tuple]:
    """The ``((kpi, window_start, dimension), …)`` rows inside one of the ``(kpi, dimension,
    since, until)`` ranges."""
    spans: dict[tuple[str, str], list[tuple[datetime, datetime]]] = {}
    for measure, dimension, since, until in ranges:
        spans.setdefault((measure, dimension), []).append((_utc(since), _utc(until)))
    return [
        row for row in rows
        if any(since <= row[0][1] < until for since, until in spans.get((row[0][0], row[0][2]), ()))
    ]  # fmt: skip


def ensure_hot_path_tables(spark: SparkSession, settings: Settings) -> None:
    for spec in tables_written_by(QUERY):
        ensure_declared(spark, settings, spec.logical)


def run(
    spark: SparkSession, settings: Settings, catalog: Catalog, contracts: KpiContracts, available_now: bool = False
) -> StreamingQuery:
    """Start ``silver_gold``: the raw topics → silver tables and ``gold.kpi``."""
    ensure_hot_path_tables(spark, settings)
    margin = timedelta(seconds=settings.streaming.watermark_margin_seconds)
    records = read_kafka(spark, settings, bronze.raw_topics(settings, catalog))
    return start_foreach_batch(
        transform(records, catalog, settings.kafka.topic_prefix, dedup_delay(catalog, margin)),
        settings,
        QUERY,
        SilverGoldWriter(settings, catalog, contracts),
        settings.streaming.hot_path_trigger_seconds,
        available_now=available_now,
    )

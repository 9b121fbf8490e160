"""The hot path: Kafka → silver and gold.kpi in one micro-batch (query ``silver_gold``).

One query reads the raw topics (the same offsets ``bronze_events`` archives). Per
micro-batch, ONE Spark job parses and classifies every record once (valid, quarantine,
late), drops duplicate ``event_id``s within the dedup watermark, shapes each record into
the rows its writes need (:class:`BatchShape`) and brings them to the driver as Arrow. The
driver then writes, with no further Spark job:

- ``silver.events`` — the valid events of every domain, one commit;
- ``silver.quarantine`` / ``silver.late`` — only when the batch has such records, plus the
  Kafka dlq announcement of quarantined ones;
- ``gold.kpi`` — the KPI rows the batch changed, appended (one commit), computed by
  :class:`spark_jobs.gold.KpiBook` from the batch's per-window sums.

So an event is in gold one micro-batch after it reaches Kafka, not one per layer, and a
batch costs two Delta commits (silver, gold) that overlap with the ledgers' commits, each
a delta-rs append of tens of milliseconds (:class:`spark_jobs.io.DriverAppends`). Every
write is idempotent (Delta's ``txn`` action: app id = :class:`spark_jobs.io.WriterIdentity`,
version = batch id); after a crash the book is restored from ``gold.kpi`` and the batches
gold already holds are not applied to it again.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from lakehouse.catalog import Catalog
from lakehouse.config import Settings, hash_key
from lakehouse.contracts import KpiContracts
from lakehouse.privacy import protected_field
from lakehouse.registry import (
    HOT_PATH_QUERY,
    KPI,
    KPI_CURRENT,
    LATE,
    QUARANTINE,
    SILVER_EVENTS,
    silver_events_schema,
    tables_written_by,
)
from lakehouse.tables import ensure_declared, read_table
from spark_jobs import bronze
from spark_jobs.gold import (
    BASE_GRAIN,
    Increment,
    KpiBook,
    arrow_increments,
    finality_delay,
    kpi_table,
    measure_entries,
)
from spark_jobs.io import (
    DriverAppends,
    WriterIdentity,
    in_background,
    publish_records,
    read_kafka,
    start_foreach_batch,
)
from spark_jobs.silver import (
    ROUTE_LATE,
    ROUTE_QUARANTINE,
    ROUTE_VALID,
    classify,
    dead_letter_value,
    dedup_delay,
    dedupe_events,
    late_columns,
    quarantine_columns,
    silver_event_columns,
    silver_pii_classes,
)

log = logging.getLogger("trivas.hot_path")
QUERY = HOT_PATH_QUERY


def transform(records: DataFrame, catalog: Catalog, topic_prefix: str, delay: timedelta) -> DataFrame:
    """Kafka source rows → classified, deduplicated records (every route, one pass)."""
    return dedupe_events(classify(bronze.kafka_columns(records), catalog, topic_prefix), delay)


QUARANTINE_ROW, LATE_ROW, MEASURES, DEAD_LETTER = (
    "quarantine_row",
    "late_row",
    "measures",
    "dead_letter",
)


class BatchShape:
    """Classified, deduplicated records → one row per record holding everything its writes
    need, so that one Spark job brings the whole micro-batch to the driver: its ``route``,
    its ``silver.events`` columns (PII-protected), the measure entries it adds to the KPIs,
    and its ``silver.quarantine`` or ``silver.late`` row with the dlq record of a
    quarantined one. The driver keeps the columns of each record's own route.

    The column expressions are built once (a few hundred of them: building them per batch
    cost half a second of the driver's time); each batch only selects them."""

    def __init__(self, catalog: Catalog, contracts: KpiContracts, master_key: bytes, key_id: str) -> None:
        route = F.col("route")
        silver_schema = silver_events_schema(catalog)
        pii = silver_pii_classes(catalog)
        self.shaped = [
            route,
            _route_row(route == ROUTE_QUARANTINE, _unstamped(quarantine_columns(catalog))).alias(QUARANTINE_ROW),
            _route_row(route == ROUTE_LATE, _unstamped(late_columns(catalog))).alias(LATE_ROW),
            *silver_event_columns(catalog),
        ]
        protected = [
            protected_field(f.name, f.dataType, pii[f.name], master_key, key_id) if f.name in pii else F.col(f.name)
            for f in silver_schema.fields
        ]
        self.written = [
            route, F.col(QUARANTINE_ROW), F.col(LATE_ROW), *protected,
            F.when(route == ROUTE_VALID, measure_entries(contracts.of_kind("measure"))).alias(MEASURES),
            F.when(route == ROUTE_QUARANTINE, dead_letter_value(QUARANTINE_ROW)).alias(DEAD_LETTER),
        ]  # fmt: skip

    def rows(self, records: DataFrame) -> DataFrame:
        return records.select(*self.shaped).select(*self.written)


# Ledger times are stamped on the driver: a time literal in the plan (current_timestamp)
# makes Spark generate and compile the batch's whole projection anew every micro-batch.
STAMPED_ON_DRIVER = ("quarantined_at", "recorded_at")


def _unstamped(columns: dict[str, Column]) -> dict[str, Column]:
    return {name: column for name, column in columns.items() if name not in STAMPED_ON_DRIVER}


def _route_row(of_route: Column, columns: dict[str, Column]) -> Column:
    """A ledger row as a struct whose fields are null outside its route (a null struct with
    non-nullable fields cannot cross to Arrow)."""
    return F.struct(*[F.when(of_route, column).alias(name) for name, column in columns.items()])


@dataclass
class BatchTables:
    """One micro-batch on the driver, split by route into the rows of each table."""

    silver: pa.Table
    quarantine: pa.Table
    late: pa.Table
    dead_letters: list[tuple[str, str]]
    increments: list[Increment]
    newest_arrival: datetime | None

    @classmethod
    def split(cls, rows: pa.Table, silver_columns: list[str], now: datetime) -> BatchTables:
        def of(route: str) -> pa.Table:
            return rows.filter(pc.equal(rows.column("route"), route))

        valid, quarantined = of(ROUTE_VALID), of(ROUTE_QUARANTINE)
        return cls(
            silver=valid.select(silver_columns),
            quarantine=_struct_rows(quarantined.column(QUARANTINE_ROW), "quarantined_at", now),
            late=_struct_rows(of(ROUTE_LATE).column(LATE_ROW), "recorded_at", now),
            dead_letters=list(zip(
                pc.struct_field(quarantined.column(QUARANTINE_ROW), "quarantine_id").to_pylist(),
                quarantined.column(DEAD_LETTER).to_pylist(), strict=True,
            )),
            increments=arrow_increments(valid.select(["event_time", MEASURES])),
            newest_arrival=pc.max(valid.column("ingested_at")).as_py() if valid.num_rows else None,
        )  # fmt: skip

    def __str__(self) -> str:
        return f"{self.silver.num_rows} valid, {self.quarantine.num_rows} quarantined, {self.late.num_rows} late"


def _struct_rows(column: pa.ChunkedArray, stamp: str, now: datetime) -> pa.Table:
    """A ledger's struct column → its rows, stamped with the batch's time."""
    if not len(column):
        return pa.table({})
    rows = pa.Table.from_struct_array(column.combine_chunks())
    return rows.append_column(stamp, pa.array([now] * rows.num_rows, pa.timestamp("us", "UTC")))


def _utc(moment: datetime | None) -> datetime | None:
    """``moment`` as an aware UTC time (Spark hands back naive UTC times)."""
    if moment is None or moment.tzinfo is None:
        return moment and moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class SilverGoldWriter:
    """The ``foreachBatch`` writer of the hot path (see the module docstring)."""

    def __init__(self, settings: Settings, catalog: Catalog, contracts: KpiContracts) -> None:
        self.settings = settings
        self.catalog = catalog
        self.contracts = contracts
        self.identity = WriterIdentity(settings, QUERY)
        self.appends = DriverAppends(settings)
        self.book = KpiBook(contracts, finality_delay(catalog, settings))
        self.master_key = hash_key(settings)
        self.measures = [k.name for k in contracts.of_kind("measure")]
        self.silver_columns = silver_events_schema(catalog).fieldNames()
        self.shape = BatchShape(catalog, contracts, self.master_key, settings.privacy.hash_key_id)
        self.restored = False
        self.gold_holds: int | None = None  # the last batch id gold.kpi holds from this writer

    # -- restart ------------------------------------------------------------------------------

    def restore(self, spark: SparkSession, app_id: str) -> None:
        """Rebuild the book from ``gold.kpi`` (recent minutes, their finality, the watermark)."""
        self.gold_holds = self.appends.committed_batch(spark, KPI, app_id)
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
        clock = BatchClock()
        rows = self.shape.rows(batch).toArrow()
        clock.mark("spark_job")
        if rows.num_rows == 0:
            return
        tables = BatchTables.split(rows, self.silver_columns, datetime.now(UTC))
        clock.mark("split")
        self.write_batch(spark, tables, app_id, batch_id, clock)
        log.info("hot path batch %d: %s; %s", batch_id, tables, clock)

    def write_batch(
        self,
        spark: SparkSession,
        tables: BatchTables,
        app_id: str,
        batch_id: int,
        clock: BatchClock,
    ) -> None:
        """Silver and the ledgers on writer threads; gold here, once silver's commit is known."""
        silver_write = None
        pending = []
        if tables.silver.num_rows:
            silver_write = in_background(
                self.appends.append, spark, SILVER_EVENTS, tables.silver, app_id, batch_id
            )
            pending.append(silver_write)
        if tables.quarantine.num_rows:
            pending.append(in_background(self.write_quarantine, spark, tables, app_id, batch_id))
        if tables.late.num_rows:
            pending.append(
                in_background(self.appends.append, spark, LATE, tables.late, app_id, batch_id)
            )
        if silver_write is not None and (self.gold_holds is None or batch_id > self.gold_holds):
            self.write_gold(spark, tables, silver_write, app_id, batch_id, clock)
        for future in pending:
            future.result()
        clock.mark("ledgers")

    def write_quarantine(
        self, spark: SparkSession, tables: BatchTables, app_id: str, batch_id: int
    ) -> None:
        self.appends.append(spark, QUARANTINE, tables.quarantine, app_id, batch_id)
        publish_records(self.settings, self.settings.kafka.dlq_topic, tables.dead_letters)

    def write_gold(
        self,
        spark: SparkSession,
        tables: BatchTables,
        silver_write: Future,
        app_id: str,
        batch_id: int,
        clock: BatchClock,
    ) -> None:
        """Add the batch to the book and append the KPI rows it changed, stamped with the
        ``silver.events`` version that holds the batch (so wait for that commit first)."""
        evicted = self.book.missing(tables.increments)
        if evicted:
            self.load_evicted(spark, evicted)
        rows = self.book.apply(tables.increments, _utc(tables.newest_arrival))
        clock.mark("book")
        if not rows:
            return
        silver_version = silver_write.result()
        if silver_version is None:  # a replay: silver held this batch already
            silver_version = self.appends.version(spark, SILVER_EVENTS)
        clock.mark("silver_commit")
        versions = {SILVER_EVENTS: silver_version}
        table = kpi_table(rows, self.contracts, self.book.watermark, datetime.now(UTC), versions)
        self.appends.append(spark, KPI, table, app_id, batch_id)
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
    if settings.streaming.hot_path_read_tasks:
        records = records.coalesce(settings.streaming.hot_path_read_tasks)
    return start_foreach_batch(
        transform(records, catalog, settings.kafka.topic_prefix, dedup_delay(catalog, margin)),
        settings,
        QUERY,
        SilverGoldWriter(settings, catalog, contracts),
        settings.streaming.hot_path_trigger_seconds,
        available_now=available_now,
    )

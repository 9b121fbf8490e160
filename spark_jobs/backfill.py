"""Replay and backfill: re-derive silver and ``gold.kpi`` for a bounded set of raw records.

A batch job, run as its own low-priority Spark application (``trivas replay bronze``,
``trivas backfill online-retail``) beside the live pipeline. Its records come from a
:mod:`spark_jobs.backfill_sources` source, cut into chunks of whole arrival hours
(:func:`plan_chunks`), and each chunk goes the live way:

1. the hot path's own transform judges, classifies and deduplicates them (the same contract
   code as the collector and the live silver: no side door) and shapes them into the rows of
   each table (:class:`spark_jobs.hot_path.BatchShape`);
2. what silver does not hold yet is appended: valid events whose ``event_id`` is not in
   ``silver.events``, refused records whose quarantine id is not in ``silver.quarantine``,
   late ones whose Kafka coordinates are not in ``silver.late``;
3. every KPI window the chunk's valid events fall in is recomputed from ``silver.events``
   (the minutes, the sliding windows and ratios they feed: the live book's functions), and
   the rows that differ from ``gold.kpi_current`` are appended — restated, with the run in
   their lineage (``source_versions`` key ``backfill:<run id>``), so the app marks them;
4. the chunk is recorded in the ledger ``ops.backfills``.

Safe to run twice and to kill at any instant: steps 2 and 3 only add what is missing or
different, so a chunk redone after a crash adds nothing twice, and a second run of a finished
backfill skips its chunks (the ledger) and would write nothing anyway. Appends carry Delta's
``txn`` action (``backfill:<run id>``, chunk number) like the live sinks. One backfill runs at
a time per deployment (a lock file).

A replay is additive: an event silver holds stays, even if today's contract would refuse it.
It restates only windows the live hot path has let go of (older than
``backfill.settled_after_seconds``): the live KPI book still adds to newer ones, and a
restatement there would be overwritten by its next update.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lakehouse.catalog import Catalog
from lakehouse.config import Settings, hash_key
from lakehouse.contracts import KpiContracts
from lakehouse.registry import (
    BACKFILL_WRITER,
    BACKFILLS,
    BACKFILLS_SCHEMA,
    KPI,
    KPI_CURRENT,
    KPI_KEY,
    LATE,
    QUARANTINE,
    SILVER_EVENTS,
    silver_events_schema,
)
from lakehouse.tables import ensure_declared, read_table
from spark_jobs.backfill_sources import RawSource
from spark_jobs.gold import (
    BASE_GRAIN,
    MINUTE,
    Key,
    KpiRow,
    RecentWindows,
    arrow_increments,
    kpi_table,
    measure_entries,
    ratio_inputs,
    rollup_rows,
)
from spark_jobs.hot_path import MEASURES, BatchClock, BatchShape, BatchTables
from spark_jobs.io import DriverAppends
from spark_jobs.silver import ROUTE_VALID, classify

log = logging.getLogger("trivas.backfill")
LINEAGE_PREFIX = "backfill:"  # the source_versions key of a restated gold row: backfill:<run id>


@dataclass(frozen=True)
class Chunk:
    """Records arriving in ``[start, end)``: whole hours, the unit of work and of resumption."""

    number: int
    start: datetime
    end: datetime
    records: int


@dataclass
class ChunkReport:
    """What one chunk did (``skipped``: the ledger had it from an earlier attempt)."""

    chunk: Chunk
    valid: int = 0
    silver_added: int = 0
    quarantined_added: int = 0
    late_added: int = 0
    gold_restated: int = 0
    skipped: bool = False


def plan_chunks(hourly: list[tuple[datetime, int]], chunk_events: int) -> list[Chunk]:
    """Consecutive hours packed into chunks of at most ``chunk_events`` records (an hour holding
    more is a chunk of its own); a chunk ends where the next begins, so none is ever empty."""
    chunks: list[Chunk] = []
    start: datetime | None = None
    count = 0
    for hour, records in hourly:
        if start is not None and count + records > chunk_events:
            chunks.append(Chunk(len(chunks), start, hour, count))
            start, count = None, 0
        if start is None:
            start = hour
        count += records
    if start is not None:
        chunks.append(Chunk(len(chunks), start, hourly[-1][0] + timedelta(hours=1), count))
    return chunks


def run_id_of(identity: str, chunks: list[Chunk]) -> str:
    """The run's id: its source and plan (the same backfill again resumes the same run)."""
    plan = ";".join(f"{c.start.isoformat()}/{c.records}" for c in chunks)
    return hashlib.sha256(f"{identity}|{plan}".encode()).hexdigest()[:16]


class Pacer:
    """The throughput budget: after each chunk, wait until the records done so far fit within
    ``per_second`` on average since the start (0: no limit)."""

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:  # fmt: skip
        self.per_second = per_second
        self.clock, self.sleep = clock, sleep
        self.started = clock()
        self.done = 0

    def wait(self, records: int) -> float:
        """Count ``records`` as done; sleep as long as the budget asks. Returns the wait."""
        self.done += records
        if self.per_second <= 0:
            return 0.0
        delay = self.started + self.done / self.per_second - self.clock()
        if delay > 0:
            self.sleep(delay)
        return max(delay, 0.0)


def first_copies(classified: DataFrame) -> DataFrame:
    """The live dedup (:func:`spark_jobs.silver.dedupe_events`) on a bounded batch: the first
    arrival of each valid ``event_id``; refused and late records are keyed by their Kafka
    coordinates, so every one of them stays."""
    valid = F.col("route") == ROUTE_VALID
    key = F.when(valid, F.col("envelope.event_id")).otherwise(F.concat_ws(":", "topic", "partition", "offset"))
    first = Window.partitionBy("dedup_key").orderBy("kafka_timestamp", "topic", "partition", "offset")
    keyed = classified.withColumn("dedup_key", key)
    return keyed.withColumn("_copy", F.row_number().over(first)).where("_copy = 1").drop("_copy")


def restated_rows(minutes: dict[Key, tuple[float | None, int]], touched: list[Key], contracts: KpiContracts) -> list[KpiRow]:
    """The ``gold.kpi`` rows of the touched minutes, of the sliding windows and the ratios they
    feed, from complete minute values (``minutes`` covers the rollup windows around them)."""
    recent = RecentWindows()
    recent.values = dict(minutes)  # type: ignore[arg-type]
    base = [KpiRow(m, BASE_GRAIN, s, s + MINUTE, d, *minutes[(m, s, d)]) for m, s, d in touched]
    return base + rollup_rows(touched, recent, contracts) + ratio_inputs(touched, recent, contracts)


ROW_FIELDS = ("value", "numerator", "denominator", "events", "is_final")


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is None and b is None
        if math.isnan(a) or math.isnan(b):  # type: ignore[arg-type]
            return math.isnan(a) and math.isnan(b)  # type: ignore[arg-type]
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)  # type: ignore[arg-type]
    return a == b


def changed(rows: pa.Table, current: dict[tuple, tuple]) -> pa.Table:
    """The rows whose key ``gold.kpi_current`` lacks or holds with other values (sums of the
    same events in another order differ in the last bits: equal within 1e-9)."""
    keep = []
    for row in rows.select([*KPI_KEY, *ROW_FIELDS]).to_pylist():
        held = current.get(tuple(_utc(v) if isinstance(v, datetime) else v for v in (row[k] for k in KPI_KEY)))
        keep.append(held is None or not all(_same(a, b) for a, b in zip(held, (row[f] for f in ROW_FIELDS), strict=True)))
    return rows.filter(pa.array(keep, pa.bool_()))


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Backfill:
    """One replay or backfill of ``source`` (see the module docstring)."""

    def __init__(
        self,
        spark: SparkSession,
        settings: Settings,
        catalog: Catalog,
        contracts: KpiContracts,
        source: RawSource,
        chunk_events: int | None = None,
        events_per_second: float | None = None,
    ) -> None:
        self.spark, self.settings, self.catalog, self.contracts = spark, settings, catalog, contracts
        self.source = source
        self.chunk_events = chunk_events or settings.backfill.chunk_events
        self.events_per_second = settings.backfill.events_per_second if events_per_second is None else events_per_second
        self.appends = DriverAppends(settings)
        self.shape = BatchShape(catalog, contracts, hash_key(settings), settings.privacy.hash_key_id)
        self.measures = contracts.of_kind("measure")
        self.longest_rollup = max((k.window for k in contracts.of_kind("rollup") if k.window), default=MINUTE)
        self.silver_columns = silver_events_schema(catalog).fieldNames()
        self.chunks: list[Chunk] = []
        self.run_id = ""

    @property
    def app_id(self) -> str:
        return f"{BACKFILL_WRITER}:{self.run_id}"

    def plan(self) -> list[Chunk]:
        """Cut the source into chunks, name the run, and refuse windows the live path owns."""
        for table in (SILVER_EVENTS, QUARANTINE, LATE, KPI, BACKFILLS):
            ensure_declared(self.spark, self.settings, table)
        self.chunks = plan_chunks(self.source.hourly_counts(self.spark), self.chunk_events)
        self.run_id = run_id_of(self.source.identity, self.chunks)
        settled = datetime.now(UTC) - timedelta(seconds=self.settings.backfill.settled_after_seconds)
        if self.chunks and self.chunks[-1].end > settled:
            raise ValueError(
                f"records up to {self.chunks[-1].end:%Y-%m-%d %H:%M} UTC: the live hot path still owns windows "
                f"after {settled:%Y-%m-%d %H:%M} UTC (backfill.settled_after_seconds); end the range earlier"
            )
        return self.chunks

    def completed(self) -> set[int]:
        """Chunks of this run the ledger holds."""
        done = read_table(self.spark, self.settings, BACKFILLS).where(F.col("run_id") == self.run_id)
        return {int(r["chunk"]) for r in done.select("chunk").collect()}

    def run(self, on_chunk: Callable[[ChunkReport], None] = lambda _: None) -> list[ChunkReport]:
        """Every chunk not done yet, within the throughput budget; one report per chunk."""
        with exclusive(self.settings):
            if not self.chunks:
                self.plan()
            done = self.completed()
            pacer = Pacer(self.events_per_second)
            reports = []
            for chunk in self.chunks:
                if chunk.number in done:
                    report = ChunkReport(chunk, skipped=True)
                else:
                    report = self.process(chunk)
                    pacer.wait(chunk.records)
                reports.append(report)
                on_chunk(report)
            return reports

    # -- one chunk -------------------------------------------------------------------------------

    def process(self, chunk: Chunk) -> ChunkReport:
        clock = BatchClock()
        records = self.source.records(self.spark, chunk.start, chunk.end)
        classified = first_copies(classify(records, self.catalog, self.settings.kafka.topic_prefix))
        rows = self.shape.rows(classified).toArrow()
        tables = BatchTables.split(rows, self.silver_columns, datetime.now(UTC))
        report = ChunkReport(chunk, valid=tables.silver.num_rows)
        clock.mark("judge")
        silver = self.missing(tables.silver, SILVER_EVENTS, ["event_id"])
        quarantine = self.missing(tables.quarantine, QUARANTINE, ["quarantine_id"])
        late = self.missing(tables.late, LATE, ["kafka_topic", "kafka_partition", "kafka_offset"])
        clock.mark("held_reads")
        silver_version = None
        for logical, added in ((SILVER_EVENTS, silver), (QUARANTINE, quarantine), (LATE, late)):
            if added.num_rows:
                version = self.appends.append(self.spark, logical, added, self.app_id, chunk.number)
                silver_version = version if logical == SILVER_EVENTS else silver_version
        report.silver_added, report.quarantined_added, report.late_added = silver.num_rows, quarantine.num_rows, late.num_rows
        clock.mark("silver_commits")
        if tables.silver.num_rows:
            times = tables.silver.column("event_time")
            span = (_minute(pc.min(times).as_py()), _minute(pc.max(times).as_py()) + MINUTE)
            report.gold_restated = self.restate(span, chunk.number, silver_version, clock)
        self.record(report)
        clock.mark("ledger")
        log.info("backfill %s chunk %d: %s; %s", self.run_id, chunk.number, report, clock)
        return report

    def missing(self, rows: pa.Table, logical: str, key: list[str]) -> pa.Table:
        """The rows whose ``key`` the table does not hold yet."""
        if not rows.num_rows:
            return rows
        wanted = list(set(rows.column(key[-1]).to_pylist()))
        held = read_table(self.spark, self.settings, logical).where(F.col(key[-1]).isin(wanted)).select(*key).toArrow()
        present = set(zip(*(held.column(k).to_pylist() for k in key), strict=True))
        keys = zip(*(rows.column(k).to_pylist() for k in key), strict=True)
        return rows.filter(pa.array([tuple(k) not in present for k in keys], pa.bool_()))

    def restate(self, span: tuple[datetime, datetime], number: int, silver_version: int | None, clock: BatchClock) -> int:
        """Recompute from ``silver.events`` every KPI row the minutes of ``span`` feed; append
        those that differ from ``gold.kpi_current``. Returns how many were appended."""
        since, until = span[0] - self.longest_rollup, span[1] + self.longest_rollup
        silver = read_table(self.spark, self.settings, SILVER_EVENTS).where(
            F.col("domain").isin(sorted({m.source for m in self.measures}))
            & (F.col("event_time") >= F.lit(since)) & (F.col("event_time") < F.lit(until))
        )  # fmt: skip
        entries = silver.select("event_time", measure_entries(self.measures).alias(MEASURES)).toArrow()
        minutes = {(k, s, d): (v, e) for k, s, d, v, e in arrow_increments(entries)}
        clock.mark("silver_read")
        touched = [key for key in minutes if span[0] <= key[1] < span[1]]
        if not touched:
            return 0
        if silver_version is None:
            silver_version = self.appends.version(self.spark, SILVER_EVENTS)
        now = datetime.now(UTC)
        lineage = {SILVER_EVENTS: silver_version, f"{LINEAGE_PREFIX}{self.run_id}": number}
        # Every window a backfill restates is settled (plan() refuses newer ones): final. The
        # settled horizon as the rows' watermark never runs ahead of the live path's, which a
        # restarted hot path restores from gold's newest watermark.
        watermark = now - timedelta(seconds=self.settings.backfill.settled_after_seconds)
        rows = kpi_table(restated_rows(minutes, touched, self.contracts), self.contracts, watermark, now, lineage)
        clock.mark("kpi_rows")
        held = self.current(rows)
        clock.mark("gold_read")
        fresh = changed(rows, held)
        clock.mark("gold_diff")
        if fresh.num_rows:
            self.appends.append(self.spark, KPI, fresh, self.app_id, number)
        clock.mark("gold_commit")
        return fresh.num_rows

    def current(self, rows: pa.Table) -> dict[tuple, tuple]:
        """``gold.kpi_current`` for the keys of ``rows``: key → (value, numerator, denominator,
        events, is_final)."""
        starts = rows.column("window_start")
        held = read_table(self.spark, self.settings, KPI_CURRENT).where(
            (F.col("window_start") >= F.lit(pc.min(starts).as_py())) & (F.col("window_start") <= F.lit(pc.max(starts).as_py()))
            & F.col("kpi").isin(sorted(set(rows.column("kpi").to_pylist())))
        )  # fmt: skip
        table = held.select(*KPI_KEY, *ROW_FIELDS).toArrow()
        columns = [table.column(c).to_pylist() for c in (*KPI_KEY, *ROW_FIELDS)]
        return {
            (kpi, grain, _utc(start), dimension): tuple(values)
            for kpi, grain, start, dimension, *values in zip(*columns, strict=True)
        }

    def record(self, report: ChunkReport) -> None:
        """The chunk's row in the ledger ``ops.backfills``."""
        c = report.chunk
        row = {
            "run_id": self.run_id, "source": self.source.identity, "chunk": c.number, "chunk_start": c.start,
            "chunk_end": c.end, "records": c.records, "valid": report.valid, "silver_added": report.silver_added,
            "quarantined_added": report.quarantined_added, "late_added": report.late_added,
            "gold_restated": report.gold_restated, "completed_at": datetime.now(UTC),
        }  # fmt: skip
        from pyspark.sql.pandas.types import to_arrow_schema

        table = pa.Table.from_pylist([row], schema=to_arrow_schema(BACKFILLS_SCHEMA))
        self.appends.append(self.spark, BACKFILLS, table, self.app_id, c.number)


def _minute(moment: datetime) -> datetime:
    return _utc(moment).replace(second=0, microsecond=0)


@contextmanager
def exclusive(settings: Settings) -> Iterator[None]:
    """One backfill at a time per deployment: two at once could both find a record missing
    and both append it."""
    lock_file = Path(settings.path(settings.paths.var)) / "backfill.lock"
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another backfill of this deployment is running ({lock_file})") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

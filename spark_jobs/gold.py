"""Gold: contract-driven KPIs, sessions, and orders joined with their payments.

KPIs (``gold.kpi``, written by the hot path in the same micro-batch as silver): every
``measure`` contract is summed from the batch's valid events per 1-minute window and
dimension; :class:`KpiBook` adds those increments to the current values it keeps for the
recent windows and derives the ``rollup`` (sliding) and ``ratio`` rows they feed, so each
batch appends only the rows it changed — no state store, no re-read of gold. Nothing is
dropped by a watermark here: every event silver accepts is counted; gold's watermark
(newest arrival minus the largest allowed lateness and a margin) only decides ``is_final``.

``gold_sessions`` — session windows per visitor (``anonymous_id``), appended once closed.
``gold_order_payments`` — a stream-stream join of orders with their payment attempts.
Both are side queries reading the ``silver.web_events``/``silver.orders``/``silver.payments``
views of ``silver.events`` on their own (slower) cadence.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.streaming import StreamingQuery

from lakehouse.catalog import Catalog
from lakehouse.config import Settings
from lakehouse.contracts import TOTAL, KpiContract, KpiContracts, compile_arithmetic
from lakehouse.registry import KPI as KPI_TABLE
from lakehouse.registry import (
    KPI_SCHEMA,
    ORDER_PAYMENTS_QUERY,
    SESSIONS_QUERY,
)
from lakehouse.registry import ORDER_PAYMENTS as ORDER_PAYMENTS_TABLE
from lakehouse.registry import SESSIONS as SESSIONS_TABLE
from lakehouse.tables import delta_table, ensure_declared, ensure_table, read_table, table_location
from spark_jobs.io import WriterIdentity, append_idempotent, read_delta_stream, start_foreach_batch

# Kept importable from here: detect and the model benchmark name gold.kpi through this module.
__all__ = ["KPI_SCHEMA", "KPI_TABLE", "delta_table", "ensure_table", "read_table", "table_location"]
BASE_GRAIN = "1m"
MINUTE = timedelta(minutes=1)
SESSION_GAP = "30 minutes"
PAYMENT_WITHIN = timedelta(minutes=15)

# -- pure transforms -------------------------------------------------------------------------


def dimension_value(column: str) -> F.Column:
    """``country`` → ``"country=DE"`` (``unknown`` when the column is null)."""
    return F.concat(F.lit(f"{column}="), F.coalesce(F.col(column).cast("string"), F.lit("unknown")))


def measure_entries(measures: Iterable[KpiContract], by_domain: bool = True) -> F.Column:
    """What one silver row contributes to the measures: an array of ``(kpi, dimension,
    value)``, one per measure whose filter selects the row, per dimension it is reported by
    (plus the total). With ``by_domain`` (rows of ``silver.events``: all domains, a ``domain``
    column) a row counts only for its own domain's measures."""
    entries = []
    for measure in measures:
        assert measure.filter and measure.value
        selected = F.expr(measure.filter)
        if by_domain:
            selected = (F.col("domain") == F.lit(measure.source)) & selected
        value = F.expr(measure.value).cast("double")
        dimensions = [F.lit(TOTAL)] + [dimension_value(d) for d in measure.dimensions]
        for dimension in dimensions:
            entries.append(
                F.when(
                    F.coalesce(selected, F.lit(False)),
                    F.struct(
                        F.lit(measure.name).alias("kpi"),
                        dimension.alias("dimension"),
                        value.alias("value"),
                    ),
                )
            )
    if not entries:
        return F.array().cast("array<struct<kpi:string,dimension:string,value:double>>")
    return F.filter(F.array(*entries), lambda entry: entry.isNotNull())


def measure_rows(silver: DataFrame, measures: Iterable[KpiContract]) -> DataFrame:
    """Silver rows → one ``(event_time, kpi, dimension, value)`` row per measure entry
    (:func:`measure_entries`)."""
    exploded = silver.select("event_time", F.explode(measure_entries(measures, "domain" in silver.columns)).alias("m"))
    return exploded.select("event_time", "m.kpi", "m.dimension", "m.value")


def window_aggregates(measures: DataFrame, watermark_delay: timedelta) -> DataFrame:
    """1-minute tumbling sums per (kpi, dimension), with the event-time watermark."""
    return (
        measures.withWatermark("event_time", f"{int(watermark_delay.total_seconds())} seconds")
        .groupBy(F.window("event_time", "1 minute"), "kpi", "dimension")
        .agg(F.sum("value").alias("value"), F.count(F.lit(1)).alias("events"))
        .select(
            "kpi",
            F.col("window.start").alias("window_start"),
            F.col("window.end").alias("window_end"),
            "dimension",
            "value",
            "events",
        )
    )


def sessions(web_events: DataFrame, watermark_delay: timedelta, gap: str = SESSION_GAP) -> DataFrame:
    """Visitor sessions: web events of one ``anonymous_id`` separated by less than ``gap``."""
    counts = {
        "page_views": "page_view",
        "product_views": "product_view",
        "add_to_carts": "add_to_cart",
        "checkouts": "checkout_started",
    }
    return (
        web_events.withWatermark("event_time", f"{int(watermark_delay.total_seconds())} seconds")
        .groupBy(F.session_window("event_time", gap).alias("session"), "anonymous_id")
        .agg(
            F.min("event_time").alias("first_event_time"),
            F.max("event_time").alias("last_event_time"),
            F.first("country", ignorenulls=True).alias("country"),
            *[F.count(F.when(F.col("event_type") == t, 1)).alias(n) for n, t in counts.items()],
            F.count(F.lit(1)).alias("events"),
        )
        .select(
            "anonymous_id",
            F.col("session.start").alias("session_start"),
            F.col("session.end").alias("session_end"),
            "first_event_time",
            "last_event_time",
            "country",
            *counts,
            "events",
        )
    )


def order_payments(orders: DataFrame, payments: DataFrame, watermark_delay: timedelta) -> DataFrame:
    """Each placed order joined with every payment attempt within ``PAYMENT_WITHIN`` of it."""
    delay = f"{int(watermark_delay.total_seconds())} seconds"
    placed = (
        orders.where(F.col("event_type") == "order_placed")
        .select(
            F.col("order_id").alias("o_order_id"),
            F.col("event_time").alias("order_time"),
            F.col("amount").alias("order_amount"),
            "country",
        )
        .withWatermark("order_time", delay)
    )
    attempts = (
        payments.where(F.col("event_type").isin("payment_authorized", "payment_failed"))
        .select(
            F.col("order_id").alias("p_order_id"),
            "payment_id",
            F.col("event_type").alias("payment_event_type"),
            F.col("event_time").alias("payment_time"),
            F.col("amount").alias("payment_amount"),
            "method",
            "failure_code",
        )
        .withWatermark("payment_time", delay)
    )
    within = int(PAYMENT_WITHIN.total_seconds())
    joined = placed.join(
        attempts,
        F.expr(
            f"p_order_id = o_order_id AND payment_time >= order_time "
            f"AND payment_time <= order_time + INTERVAL {within} SECONDS"
        ),
    )
    seconds = (F.unix_micros("payment_time") - F.unix_micros("order_time")) / 1_000_000.0
    return joined.select(
        F.col("o_order_id").alias("order_id"),
        "order_time",
        "order_amount",
        "country",
        "payment_id",
        "payment_event_type",
        "payment_time",
        "payment_amount",
        "method",
        "failure_code",
        seconds.alias("seconds_to_payment"),
    )


# -- derived KPI rows (driver side, per micro-batch) ----------------------------------------

Key = tuple[str, datetime, str]  # (measure, window_start, dimension)


@dataclass
class KpiRow:
    """One row of ``gold.kpi`` before its metadata columns."""

    kpi: str
    grain: str
    window_start: datetime
    window_end: datetime
    dimension: str
    value: float | None
    events: int
    inputs: dict[str, float] | None = None  # measure values feeding a ratio


class RecentWindows:
    """1-minute measure values of the recent past, the inputs of rollups and ratios (kept by
    :class:`KpiBook`, which decides what to forget)."""

    def __init__(self) -> None:
        self.values: dict[Key, tuple[float, int]] = {}

    def update(self, key: Key, value: float, events: int) -> None:
        self.values[key] = (value, events)

    def get(self, measure: str, start: datetime, dimension: str) -> tuple[float, int]:
        return self.values.get((measure, start, dimension), (0.0, 0))


def rollup_rows(
    touched: Iterable[Key], recent: RecentWindows, contracts: KpiContracts
) -> list[KpiRow]:
    """Sliding-window rows for every window that contains a touched minute."""
    rows: dict[tuple[str, datetime, str], KpiRow] = {}
    touched = list(touched)
    for rollup in contracts.of_kind("rollup"):
        assert rollup.window and rollup.slide and rollup.of
        allowed = {TOTAL} | set(rollup.dimensions)
        minutes = int(rollup.window / MINUTE)
        slide_minutes = int(rollup.slide / MINUTE)
        for measure, start, dimension in touched:
            if measure != rollup.of or dimension.split("=")[0] not in allowed:
                continue
            aligned = start - timedelta(minutes=(start.minute % slide_minutes))
            for k in range(0, minutes, slide_minutes):
                window_start = aligned - timedelta(minutes=k)
                if window_start + rollup.window <= start:
                    continue
                values = [recent.get(measure, window_start + j * MINUTE, dimension) for j in range(minutes)]
                rows[(rollup.name, window_start, dimension)] = KpiRow(
                    rollup.name, rollup.window_label, window_start, window_start + rollup.window,
                    dimension, sum(v for v, _ in values), sum(e for _, e in values),
                )  # fmt: skip
    return list(rows.values())


def ratio_inputs(
    touched: Iterable[Key], recent: RecentWindows, contracts: KpiContracts
) -> list[KpiRow]:
    """For every ratio fed by a touched window: the current values of all its inputs."""
    rows: dict[tuple[str, datetime, str], KpiRow] = {}
    for measure, start, dimension in touched:
        for ratio in contracts.of_kind("ratio"):
            if measure not in ratio.inputs:
                continue
            if dimension != TOTAL and dimension.split("=")[0] not in ratio.dimensions:
                continue
            inputs = {name: recent.get(name, start, dimension) for name in ratio.inputs}
            rows[(ratio.name, start, dimension)] = KpiRow(
                ratio.name, ratio.grain, start, start + MINUTE, dimension, None,
                sum(e for _, e in inputs.values()), {n: v for n, (v, _) in inputs.items()},
            )  # fmt: skip
    return list(rows.values())


# -- the KPI book: current values of recent windows, kept on the driver -------------------------

Increment = tuple[str, datetime, str, float | None, int]  # (measure, window_start, dimension, sum, events)


def _add(current: float | None, increment: float | None) -> float | None:
    """Sum as Spark's ``sum`` does: null only while every value was null."""
    if current is None and increment is None:
        return None
    return (current or 0.0) + (increment or 0.0)


class KpiBook:
    """The current 1-minute measure values of the recent past, and the rows a batch changes.

    ``apply`` adds one micro-batch's per-window sums and returns every ``gold.kpi`` row that
    changed: the touched minutes, the sliding rollups and ratios they feed, and the windows
    that the advancing watermark has just made final. The book is exact because gold is
    written by the same micro-batch that writes silver, and a batch is applied once
    (:class:`spark_jobs.hot_path.SilverGoldWriter` skips batches gold already holds).

    Gold's watermark is the newest arrival (Kafka timestamp) of a valid event minus the
    largest allowed lateness and a margin: after it, no event can still be accepted for a
    window, so the window is final. It never drops anything; an event that still comes for
    a final window (partitions read far out of step) restates it.
    """

    def __init__(self, contracts: KpiContracts, finality_delay: timedelta, keep: timedelta = timedelta(hours=2)) -> None:
        """``keep``: how long final minutes stay in memory behind the watermark. Catching up
        on a backlog, Spark reads partitions minutes of event time apart, so the slowest one
        still adds to minutes the fastest has closed; a minute needed after that is loaded
        back from gold (:meth:`missing`), which is exact but costs a read of gold."""
        self.contracts = contracts
        self.finality_delay = finality_delay
        self.keep = keep
        self.longest_rollup = max((k.window for k in contracts.of_kind("rollup") if k.window), default=MINUTE)
        self.recent = RecentWindows()
        self.open_minutes: set[Key] = set()
        self.newest_arrival: datetime | None = None
        self.evicted_before: datetime | None = None

    @property
    def watermark(self) -> datetime | None:
        return None if self.newest_arrival is None else self.newest_arrival - self.finality_delay

    def restore(self, minutes: Iterable[tuple[Key, float | None, int, bool]], watermark: datetime | None) -> None:
        """Load the book from ``gold.kpi`` after a restart: the current value of each recent
        minute, whether it is final yet, and the watermark gold last wrote."""
        for key, value, events, final in minutes:
            self.recent.update(key, value, events)  # type: ignore[arg-type]
            if not final:
                self.open_minutes.add(key)
        if watermark is not None:
            self.newest_arrival = watermark + self.finality_delay

    def missing(self, increments: Iterable[Increment]) -> list[tuple[str, str, datetime, datetime]]:
        """(measure, dimension, from, to) ranges of minutes a batch needs that were evicted
        (an event for a long-closed window), with the rollup windows around them: the caller
        loads them from gold first."""
        if self.evicted_before is None:
            return []
        return [
            (measure, dimension, start - self.longest_rollup, start + self.longest_rollup)
            for measure, start, dimension, _, _ in increments
            if start - self.longest_rollup < self.evicted_before
        ]

    def apply(self, increments: Iterable[Increment], newest_arrival: datetime | None) -> list[KpiRow]:
        """Add a batch's window sums; the rows of ``gold.kpi`` that changed."""
        touched: list[Key] = []
        for measure, start, dimension, value, events in increments:
            key = (measure, start, dimension)
            current, counted = self.recent.get(measure, start, dimension) if key in self.recent.values else (None, 0)
            self.recent.update(key, _add(current, value), counted + events)  # type: ignore[arg-type]
            self.open_minutes.add(key)
            touched.append(key)
        if newest_arrival is not None and (self.newest_arrival is None or newest_arrival > self.newest_arrival):
            self.newest_arrival = newest_arrival
        watermark = self.watermark
        finalised = [k for k in self.open_minutes if watermark is not None and k[1] + MINUTE <= watermark]
        self.open_minutes.difference_update(finalised)
        changed = list(dict.fromkeys(touched + finalised))
        base = [
            KpiRow(m, BASE_GRAIN, start, start + MINUTE, d, *self.recent.values[(m, start, d)])
            for m, start, d in changed
        ]
        rows = base + rollup_rows(changed, self.recent, self.contracts) + ratio_inputs(changed, self.recent, self.contracts)
        self._evict()
        return rows

    def _evict(self) -> None:
        """Forget final minutes that no open rollup window still needs."""
        watermark = self.watermark
        if watermark is None:
            return
        oldest_kept = watermark - self.longest_rollup - MINUTE - self.keep
        for key in [k for k in self.recent.values if k[1] < oldest_kept and k not in self.open_minutes]:
            del self.recent.values[key]
            if self.evicted_before is None or key[1] + MINUTE > self.evicted_before:
                self.evicted_before = key[1] + MINUTE


def kpi_table(
    rows: list[KpiRow],
    contracts: KpiContracts,
    watermark: datetime | None,
    computed_at: datetime,
    source_versions: dict[str, int],
) -> pa.Table:
    """``gold.kpi`` rows (its columns) from book rows, on the driver: ratio values from their
    inputs by the contracts' arithmetic, units, watermark, lineage and ``is_final``."""
    ratios = {k.name: (compile_arithmetic(k.numerator), compile_arithmetic(k.denominator))
              for k in contracts.of_kind("ratio") if k.numerator and k.denominator}  # fmt: skip
    units = {k.name: k.unit for k in contracts.kpis.values()}
    lineage = list(source_versions.items())
    table = []
    for r in rows:
        numerator = denominator = None
        value = r.value
        if r.kpi in ratios:
            numerator, denominator = (part(r.inputs or {}) for part in ratios[r.kpi])
            value = None if numerator is None or not denominator else numerator / denominator
        table.append({
            "kpi": r.kpi, "grain": r.grain, "window_start": r.window_start, "window_end": r.window_end,
            "dimension": r.dimension, "value": value, "numerator": numerator, "denominator": denominator,
            "events": r.events, "unit": units.get(r.kpi), "watermark": watermark, "computed_at": computed_at,
            "source_versions": lineage, "is_final": watermark is not None and r.window_end <= watermark,
        })  # fmt: skip
    return pa.Table.from_pylist(table, schema=KPI_ARROW_SCHEMA)


KPI_ARROW_SCHEMA = to_arrow_schema(KPI_SCHEMA)


def arrow_increments(valid: pa.Table) -> list[Increment]:
    """A batch's valid rows on the driver (``event_time`` and their :func:`measure_entries`
    in ``measures``) → its per (measure, minute, dimension) sums, without a Spark job."""
    entries = valid.column("measures")
    flat = pc.list_flatten(entries)
    if len(flat) == 0:
        return []
    times = pc.take(valid.column("event_time"), pc.list_parent_indices(entries))
    measures = pa.table({
        "kpi": pc.struct_field(flat, "kpi"),
        "window_start": pc.floor_temporal(times, unit="minute"),
        "dimension": pc.struct_field(flat, "dimension"),
        "value": pc.struct_field(flat, "value"),
    })  # fmt: skip
    sums = measures.group_by(["kpi", "window_start", "dimension"], use_threads=False).aggregate(
        [("value", "sum"), ("value", "count", pc.CountOptions(mode="all"))]
    )
    return [
        (
            r["kpi"],
            r["window_start"].astimezone(UTC),
            r["dimension"],
            r["value_sum"],
            int(r["value_count"]),
        )
        for r in sums.to_pylist()
    ]


def finality_delay(catalog: Catalog, settings: Settings) -> timedelta:
    """How long after the newest arrival a window stays open: the longest allowed lateness
    plus the configured margin (partitions read out of step, clock skew)."""
    return catalog.max_allowed_lateness() + timedelta(seconds=settings.streaming.watermark_margin_seconds)


# -- side queries ------------------------------------------------------------------------------


def watermark_delay(catalog: Catalog, settings: Settings) -> timedelta:
    """Event-time watermark delay of the stateful side queries (sessions, the join): the
    longest allowed lateness, the future tolerance and the margin, so that an event silver
    accepted is never dropped by their state."""
    from lakehouse.quality import FUTURE_TOLERANCE

    return finality_delay(catalog, settings) + FUTURE_TOLERANCE


def silver_stream(spark: SparkSession, settings: Settings, catalog: Catalog, domain: str) -> DataFrame:
    """The valid events of one domain as a stream (the domain's view of ``silver.events``)."""
    return read_delta_stream(spark, settings, f"silver.{catalog.domains[domain].table}")


def ensure_gold_tables(spark: SparkSession, settings: Settings) -> None:
    for table in (KPI_TABLE, SESSIONS_TABLE, ORDER_PAYMENTS_TABLE):
        ensure_declared(spark, settings, table)


def run_sessions(spark: SparkSession, settings: Settings, catalog: Catalog, available_now: bool = False, gap: str = SESSION_GAP) -> StreamingQuery:
    """Start ``gold_sessions`` (closed sessions are appended once)."""
    web = silver_stream(spark, settings, catalog, "web")
    writer = WriterIdentity(settings, SESSIONS_QUERY)

    def write(batch: DataFrame, batch_id: int) -> None:
        append_idempotent(batch, settings, SESSIONS_TABLE, writer.app_id(batch.sparkSession), batch_id)

    return start_foreach_batch(
        sessions(web, watermark_delay(catalog, settings), gap), settings, SESSIONS_QUERY, write,
        settings.streaming.side_trigger_seconds, available_now=available_now, output_mode="append",
    )  # fmt: skip


def run_order_payments(spark: SparkSession, settings: Settings, catalog: Catalog, available_now: bool = False) -> StreamingQuery:
    """Start ``gold_order_payments`` (inner stream-stream join, appended as matched)."""
    joined = order_payments(
        silver_stream(spark, settings, catalog, "orders"),
        silver_stream(spark, settings, catalog, "payments"),
        watermark_delay(catalog, settings),
    )
    writer = WriterIdentity(settings, ORDER_PAYMENTS_QUERY)

    def write(batch: DataFrame, batch_id: int) -> None:
        append_idempotent(batch, settings, ORDER_PAYMENTS_TABLE, writer.app_id(batch.sparkSession), batch_id)

    return start_foreach_batch(
        joined, settings, ORDER_PAYMENTS_QUERY, write, settings.streaming.side_trigger_seconds,
        available_now=available_now, output_mode="append",
    )  # fmt: skip


def run(spark: SparkSession, settings: Settings, catalog: Catalog, contracts: KpiContracts, available_now: bool = False, session_gap: str = SESSION_GAP) -> list[StreamingQuery]:
    """Start the gold side queries (``gold.kpi`` is written by the hot path)."""
    ensure_gold_tables(spark, settings)
    return [
        run_sessions(spark, settings, catalog, available_now, session_gap),
        run_order_payments(spark, settings, catalog, available_now),
    ]

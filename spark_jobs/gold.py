"""Gold: contract-driven KPIs, sessions, and orders joined with their payments.

``gold_kpi`` — every ``measure`` contract is aggregated from its silver domain in 1-minute
tumbling windows (one streaming aggregation over the union of the domains, update mode, so
an open window's partial value is written within a trigger and restated as late events
arrive). Each micro-batch MERGEs the updated windows into ``gold.kpi`` together with the
``rollup`` (sliding) and ``ratio`` rows those windows feed, computed from a driver-side
cache of recent 1-minute values — no full recompute, no re-read of gold per batch.

``gold_sessions`` — session windows per visitor (``anonymous_id``), appended once closed.
``gold_order_payments`` — a stream-stream join of orders with their payment attempts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.streaming import StreamingQuery

from lakehouse.catalog import Catalog
from lakehouse.config import Settings
from lakehouse.contracts import TOTAL, KpiContract, KpiContracts
from lakehouse.freshness import ProgressTracker
from lakehouse.tables import delta_table, ensure_table, read_table, table_location
from spark_jobs.io import append_idempotent, read_delta_stream, start_foreach_batch

KPI_QUERY, SESSIONS_QUERY, ORDER_PAYMENTS_QUERY = "gold_kpi", "gold_sessions", "gold_order_payments"
KPI_TABLE, SESSIONS_TABLE, ORDER_PAYMENTS_TABLE = "gold.kpi", "gold.sessions", "gold.order_payments"
BASE_GRAIN = "1m"
MINUTE = timedelta(minutes=1)
SESSION_GAP = "30 minutes"
PAYMENT_WITHIN = timedelta(minutes=15)

KPI_SCHEMA = T.StructType(
    [
        T.StructField("kpi", T.StringType(), False),
        T.StructField("grain", T.StringType(), False),
        T.StructField("window_start", T.TimestampType(), False),
        T.StructField("window_end", T.TimestampType(), False),
        T.StructField("dimension", T.StringType(), False),
        T.StructField("value", T.DoubleType(), True),
        T.StructField("numerator", T.DoubleType(), True),
        T.StructField("denominator", T.DoubleType(), True),
        T.StructField("events", T.LongType(), False),
        T.StructField("unit", T.StringType(), False),
        T.StructField("watermark", T.TimestampType(), True),
        T.StructField("computed_at", T.TimestampType(), False),
        T.StructField("source_versions", T.MapType(T.StringType(), T.LongType()), True),
        T.StructField("is_final", T.BooleanType(), False),
    ]
)
SESSIONS_SCHEMA = T.StructType(
    [
        T.StructField("anonymous_id", T.StringType(), False),
        T.StructField("session_start", T.TimestampType(), False),
        T.StructField("session_end", T.TimestampType(), False),
        T.StructField("first_event_time", T.TimestampType(), False),
        T.StructField("last_event_time", T.TimestampType(), False),
        T.StructField("country", T.StringType(), True),
        T.StructField("page_views", T.LongType(), False),
        T.StructField("product_views", T.LongType(), False),
        T.StructField("add_to_carts", T.LongType(), False),
        T.StructField("checkouts", T.LongType(), False),
        T.StructField("events", T.LongType(), False),
    ]
)
ORDER_PAYMENTS_SCHEMA = T.StructType(
    [
        T.StructField("order_id", T.StringType(), False),
        T.StructField("order_time", T.TimestampType(), False),
        T.StructField("order_amount", T.DoubleType(), True),
        T.StructField("country", T.StringType(), True),
        T.StructField("payment_id", T.StringType(), False),
        T.StructField("payment_event_type", T.StringType(), False),
        T.StructField("payment_time", T.TimestampType(), False),
        T.StructField("payment_amount", T.DoubleType(), True),
        T.StructField("method", T.StringType(), True),
        T.StructField("failure_code", T.StringType(), True),
        T.StructField("seconds_to_payment", T.DoubleType(), False),
    ]
)


# -- pure transforms -------------------------------------------------------------------------


def dimension_value(column: str) -> F.Column:
    """``country`` → ``"country=DE"`` (``unknown`` when the column is null)."""
    return F.concat(F.lit(f"{column}="), F.coalesce(F.col(column).cast("string"), F.lit("unknown")))


def measure_rows(silver: DataFrame, measures: Iterable[KpiContract]) -> DataFrame:
    """Silver rows → one ``(event_time, kpi, dimension, value)`` row per measure, per
    dimension it is reported by (plus the total), for the rows its filter selects."""
    entries = []
    for measure in measures:
        assert measure.filter and measure.value
        selected = F.expr(measure.filter)
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
        return silver.sparkSession.createDataFrame([], "event_time timestamp, kpi string, dimension string, value double")
    exploded = silver.select("event_time", F.explode(F.array(*entries)).alias("m"))
    return exploded.where(F.col("m").isNotNull()).select("event_time", "m.kpi", "m.dimension", "m.value")


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
    """1-minute measure values of the recent past, the inputs of rollups and ratios.

    Seeded from ``gold.kpi`` when the job (re)starts and updated from every micro-batch, so
    derived rows are exact without re-reading gold. Windows older than ``horizon`` behind the
    newest are forgotten: the watermark no longer lets events into them.
    """

    def __init__(self, horizon: timedelta) -> None:
        self.horizon = horizon
        self.values: dict[Key, tuple[float, int]] = {}
        self.newest: datetime | None = None

    def update(self, key: Key, value: float, events: int) -> None:
        self.values[key] = (value, events)
        if self.newest is None or key[1] > self.newest:
            self.newest = key[1]

    def get(self, measure: str, start: datetime, dimension: str) -> tuple[float, int]:
        return self.values.get((measure, start, dimension), (0.0, 0))

    def evict(self) -> None:
        if self.newest is None:
            return
        oldest = self.newest - self.horizon
        for key in [k for k in self.values if k[1] < oldest]:
            del self.values[key]


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


def ratio_value_columns(contracts: KpiContracts) -> tuple[F.Column, F.Column]:
    """(numerator, denominator) expressions chosen by each row's ``kpi``."""
    ratios = contracts.of_kind("ratio")
    numerator = F.coalesce(*[F.when(F.col("kpi") == r.name, F.expr(r.numerator)) for r in ratios])
    denominator = F.coalesce(*[F.when(F.col("kpi") == r.name, F.expr(r.denominator)) for r in ratios])
    return numerator.cast("double"), denominator.cast("double")


# -- the gold.kpi writer -----------------------------------------------------------------------


class KpiWriter:
    """``foreachBatch`` writer of ``gold_kpi``: MERGE base, rollup and ratio rows."""

    def __init__(self, spark: SparkSession, settings: Settings, contracts: KpiContracts, watermark_delay: timedelta) -> None:
        self.spark = spark
        self.settings = settings
        self.contracts = contracts
        self.tracker = ProgressTracker.install(spark)
        longest_rollup = max((k.window for k in contracts.of_kind("rollup") if k.window), default=MINUTE)
        self.recent = RecentWindows(watermark_delay + longest_rollup + 2 * MINUTE)
        self.seeded = False
        self.finalised_up_to: datetime | None = None
        self.measures = [k.name for k in contracts.of_kind("measure")]
        self.units = {k.name: k.unit for k in contracts.kpis.values()}

    def seed(self) -> None:
        """Load the recent 1-minute measure values from ``gold.kpi`` (after a restart)."""
        table = read_table(self.spark, self.settings, KPI_TABLE).where(
            (F.col("grain") == BASE_GRAIN) & F.col("kpi").isin(self.measures)
        )
        newest = table.agg(F.max("window_start")).first()[0]
        if newest is not None:
            newest = newest.replace(tzinfo=UTC)
            oldest = newest - self.recent.horizon
            for row in table.where(F.col("window_start") >= F.lit(oldest)).collect():
                key = (row["kpi"], row["window_start"].replace(tzinfo=UTC), row["dimension"])
                self.recent.update(key, row["value"], row["events"])
        self.seeded = True

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        if not self.seeded:
            self.seed()
        updates = batch.collect()
        if not updates:
            self.finalise_closed_windows(batch.sparkSession)
            return
        base: list[KpiRow] = []
        touched: list[Key] = []
        for row in updates:
            start = row["window_start"].replace(tzinfo=UTC)
            key = (row["kpi"], start, row["dimension"])
            self.recent.update(key, row["value"], row["events"])
            touched.append(key)
            base.append(KpiRow(row["kpi"], BASE_GRAIN, start, start + MINUTE, row["dimension"], row["value"], row["events"]))
        derived = rollup_rows(touched, self.recent, self.contracts)
        ratios = ratio_inputs(touched, self.recent, self.contracts)
        # The batch's own session is the query's clone: conf set on it (the txn pair) cannot
        # leak into the writes of other queries running at the same moment.
        self.merge(batch.sparkSession, self.to_frame(base + derived, ratios), batch_id)
        self.recent.evict()
        self.finalise_closed_windows(batch.sparkSession)

    def to_frame(self, rows: list[KpiRow], ratios: list[KpiRow]) -> DataFrame:
        """All rows of this batch as a DataFrame in ``gold.kpi``'s schema."""
        progress = self.tracker.latest(KPI_QUERY)
        watermark = progress.watermark if progress else None
        versions = self.source_versions()
        now = datetime.now(UTC)
        measure_fields = [T.StructField(m, T.DoubleType(), True) for m in self.measures]
        schema = T.StructType(
            [
                T.StructField("kpi", T.StringType()),
                T.StructField("grain", T.StringType()),
                T.StructField("window_start", T.TimestampType()),
                T.StructField("window_end", T.TimestampType()),
                T.StructField("dimension", T.StringType()),
                T.StructField("value", T.DoubleType()),
                T.StructField("events", T.LongType()),
                *measure_fields,
            ]
        )
        data: list[tuple[Any, ...]] = []
        for r in rows + ratios:
            inputs = r.inputs or {}
            data.append(
                (r.kpi, r.grain, r.window_start, r.window_end, r.dimension, r.value, r.events,
                 *[inputs.get(m) for m in self.measures])
            )  # fmt: skip
        frame = self.spark.createDataFrame(data, schema)
        numerator, denominator = ratio_value_columns(self.contracts)
        is_ratio = F.col("kpi").isin([k.name for k in self.contracts.of_kind("ratio")])
        frame = frame.select(
            "kpi", "grain", "window_start", "window_end", "dimension",
            F.when(is_ratio, numerator).alias("numerator"),
            F.when(is_ratio, denominator).alias("denominator"),
            "value", "events",
        )  # fmt: skip
        unit = F.create_map(*[F.lit(x) for kv in self.units.items() for x in kv])[F.col("kpi")]
        final = F.lit(False) if watermark is None else F.col("window_end") <= F.lit(watermark)
        return frame.select(
            "kpi", "grain", "window_start", "window_end", "dimension",
            F.when(is_ratio, F.try_divide("numerator", "denominator")).otherwise(F.col("value")).alias("value"),
            "numerator", "denominator", "events", unit.alias("unit"),
            F.lit(watermark).cast("timestamp").alias("watermark"),
            F.lit(now).cast("timestamp").alias("computed_at"),
            F.create_map(*[F.lit(x) for kv in versions.items() for x in kv]).cast("map<string,bigint>").alias("source_versions"),
            final.alias("is_final"),
        )  # fmt: skip

    def source_versions(self) -> dict[str, int]:
        """Logical silver table → the Delta version the query had read up to."""
        progress = self.tracker.latest(KPI_QUERY)
        if progress is None:
            return {}
        by_path = {table_location(self.settings, f"silver.{t}"): f"silver.{t}" for t in _silver_tables(self.settings)}
        return {by_path.get(path.rstrip("/"), path): version for path, version in progress.source_versions.items()}

    def merge(self, session: SparkSession, frame: DataFrame, batch_id: int) -> None:
        """Upsert by (kpi, grain, window_start, dimension); replaying a batch is harmless
        (it writes the same values) and skipped outright by Delta's txn check."""
        target = delta_table(session, self.settings, KPI_TABLE)
        session.conf.set("spark.databricks.delta.write.txnAppId", KPI_QUERY)
        session.conf.set("spark.databricks.delta.write.txnVersion", str(batch_id))
        try:
            (
                target.alias("t")
                .merge(
                    frame.alias("s"),
                    "t.kpi = s.kpi AND t.grain = s.grain AND t.window_start = s.window_start "
                    "AND t.dimension = s.dimension",
                )
                .whenMatchedUpdateAll()
                .whenNotMatchedInsertAll()
                .execute()
            )
        finally:
            session.conf.unset("spark.databricks.delta.write.txnAppId")
            session.conf.unset("spark.databricks.delta.write.txnVersion")

    def finalise_closed_windows(self, session: SparkSession) -> None:
        """Flag windows the watermark has passed as final (once per minute of event time)."""
        watermark = self.tracker.watermark(KPI_QUERY)
        if watermark is None:
            return
        boundary = watermark.replace(second=0, microsecond=0)
        if self.finalised_up_to is not None and boundary <= self.finalised_up_to:
            return
        delta_table(session, self.settings, KPI_TABLE).update(
            condition=(~F.col("is_final")) & (F.col("window_end") <= F.lit(watermark)),
            set={"is_final": F.lit(True)},
        )
        self.finalised_up_to = boundary


def _silver_tables(settings: Settings) -> list[str]:
    from lakehouse.catalog import catalog

    return [d.table for d in catalog().domains.values()]


# -- run -----------------------------------------------------------------------------------


def watermark_delay(catalog: Catalog, settings: Settings) -> timedelta:
    """Gold's watermark delay: the longest allowed lateness plus the configured margin, so an
    event silver accepted is never dropped by gold's state."""
    return catalog.max_allowed_lateness() + timedelta(seconds=settings.streaming.watermark_margin_seconds)


def silver_stream(spark: SparkSession, settings: Settings, catalog: Catalog, domain: str) -> DataFrame:
    return read_delta_stream(spark, settings, f"silver.{catalog.domains[domain].table}")


def ensure_gold_tables(spark: SparkSession, settings: Settings) -> None:
    # The change data feed lets the detector read only the rows each MERGE changed.
    ensure_table(spark, settings, KPI_TABLE, KPI_SCHEMA, properties={"delta.enableChangeDataFeed": "true"})
    ensure_table(spark, settings, SESSIONS_TABLE, SESSIONS_SCHEMA)
    ensure_table(spark, settings, ORDER_PAYMENTS_TABLE, ORDER_PAYMENTS_SCHEMA)


def run_kpi(
    spark: SparkSession, settings: Settings, catalog: Catalog, contracts: KpiContracts, available_now: bool = False
) -> StreamingQuery:
    """Start ``gold_kpi``: silver domains → windowed measures → ``gold.kpi``."""
    delay = watermark_delay(catalog, settings)
    sources = [
        measure_rows(silver_stream(spark, settings, catalog, domain), contracts.measures_of(domain))
        for domain in catalog.domains
        if contracts.measures_of(domain)
    ]
    union = sources[0]
    for other in sources[1:]:
        union = union.unionByName(other)
    return start_foreach_batch(
        window_aggregates(union, delay),
        settings,
        KPI_QUERY,
        KpiWriter(spark, settings, contracts, delay),
        settings.streaming.gold_trigger_seconds,
        available_now=available_now,
        output_mode="update",
    )


def run_sessions(spark: SparkSession, settings: Settings, catalog: Catalog, available_now: bool = False, gap: str = SESSION_GAP) -> StreamingQuery:
    """Start ``gold_sessions`` (closed sessions are appended once)."""
    web = silver_stream(spark, settings, catalog, "web")

    def write(batch: DataFrame, batch_id: int) -> None:
        append_idempotent(batch, settings, SESSIONS_TABLE, SESSIONS_QUERY, batch_id)

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

    def write(batch: DataFrame, batch_id: int) -> None:
        append_idempotent(batch, settings, ORDER_PAYMENTS_TABLE, ORDER_PAYMENTS_QUERY, batch_id)

    return start_foreach_batch(
        joined, settings, ORDER_PAYMENTS_QUERY, write, settings.streaming.side_trigger_seconds,
        available_now=available_now, output_mode="append",
    )  # fmt: skip


def run(spark: SparkSession, settings: Settings, catalog: Catalog, contracts: KpiContracts, available_now: bool = False, session_gap: str = SESSION_GAP) -> list[StreamingQuery]:
    """Start every gold query."""
    ensure_gold_tables(spark, settings)
    return [
        run_kpi(spark, settings, catalog, contracts, available_now),
        run_sessions(spark, settings, catalog, available_now, session_gap),
        run_order_payments(spark, settings, catalog, available_now),
    ]

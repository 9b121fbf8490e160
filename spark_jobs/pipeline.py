"""All streaming queries of a deployment in one Spark application (``trivas pipeline run``).

Locally every job shares one JVM (one small machine); on Databricks each job can run as its
own task with ``--jobs``. Stopping is graceful: queries finish their current micro-batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from lakehouse.catalog import Catalog
from lakehouse.config import Settings
from lakehouse.contracts import KpiContracts
from lakehouse.freshness import FRESHNESS_SCHEMA, ProgressTracker
from lakehouse.tables import ensure_table
from spark_jobs import bronze, gold, silver
from spark_jobs.io import append_idempotent

log = logging.getLogger("trivas.pipeline")
JOBS = ("bronze", "silver", "gold")
FRESHNESS_TABLE = "ops.freshness"

Starter = Callable[[SparkSession, Settings, Catalog, KpiContracts, bool], list[StreamingQuery]]


def _bronze(spark: SparkSession, s: Settings, c: Catalog, k: KpiContracts, now: bool) -> list[StreamingQuery]:
    return [bronze.run(spark, s, c, available_now=now)]


def _silver(spark: SparkSession, s: Settings, c: Catalog, k: KpiContracts, now: bool) -> list[StreamingQuery]:
    return silver.run(spark, s, c, available_now=now)


def _gold(spark: SparkSession, s: Settings, c: Catalog, k: KpiContracts, now: bool) -> list[StreamingQuery]:
    return gold.run(spark, s, c, k, available_now=now, session_gap=f"{s.streaming.session_gap_seconds} seconds")


def _cdc(spark: SparkSession, s: Settings, c: Catalog, k: KpiContracts, now: bool) -> list[StreamingQuery]:
    from spark_jobs import cdc  # the CDC mirror needs the shop database's Debezium topics

    return [cdc.run(spark, s, available_now=now)]


def _detect(spark: SparkSession, s: Settings, c: Catalog, k: KpiContracts, now: bool) -> list[StreamingQuery]:
    from spark_jobs import detect  # loads MLflow models: only when asked for

    return detect.run(spark, s, c, k, available_now=now)


def _refund_risk(spark: SparkSession, s: Settings, c: Catalog, k: KpiContracts, now: bool) -> list[StreamingQuery]:
    from spark_jobs import refund_risk

    return refund_risk.run(spark, s, c, k, available_now=now)


STARTERS: dict[str, Starter] = {
    "bronze": _bronze,
    "silver": _silver,
    "gold": _gold,
    "detect": _detect,
    "refund_risk": _refund_risk,
    "cdc": _cdc,
}


def prepare_tables(spark: SparkSession, settings: Settings, catalog: Catalog, jobs: Sequence[str] = JOBS) -> None:
    """Create every table up front (before any query starts: a table property change during
    a MERGE would fail one of the two commits), so downstream streams can start first."""
    ensure_table(spark, settings, bronze.TABLE, bronze.SCHEMA, partition_by=["ingest_date"])
    silver.ensure_silver_tables(spark, settings, catalog)
    gold.ensure_gold_tables(spark, settings)
    ensure_table(spark, settings, FRESHNESS_TABLE, FRESHNESS_SCHEMA)
    if "detect" in jobs:
        from spark_jobs import detect

        detect.ensure_detect_tables(spark, settings)
    if "refund_risk" in jobs:
        from spark_jobs import refund_risk

        refund_risk.ensure_refund_risk_table(spark, settings)


def start(
    spark: SparkSession,
    settings: Settings,
    catalog: Catalog,
    contracts: KpiContracts,
    jobs: Sequence[str] = JOBS,
    available_now: bool = False,
) -> list[StreamingQuery]:
    """Start the chosen jobs' queries (upstream first)."""
    unknown = set(jobs) - set(STARTERS)
    if unknown:
        raise ValueError(f"unknown jobs {sorted(unknown)}; choose from {list(STARTERS)}")
    ProgressTracker.install(spark)
    prepare_tables(spark, settings, catalog, jobs)
    queries: list[StreamingQuery] = []
    for job in [j for j in STARTERS if j in jobs]:
        queries.extend(STARTERS[job](spark, settings, catalog, contracts, available_now))
    return queries


def drain(
    spark: SparkSession,
    settings: Settings,
    catalog: Catalog,
    contracts: KpiContracts,
    jobs: Sequence[str] = JOBS,
) -> dict[str, StreamingQuery]:
    """Process everything that is there, layer after layer, then stop (backfills, tests).

    Each layer runs with ``availableNow`` only after the one above has finished, so it sees
    all of its input; micro-batches stay bounded by the per-trigger limits.
    """
    ProgressTracker.install(spark)
    prepare_tables(spark, settings, catalog, jobs)
    finished: dict[str, StreamingQuery] = {}
    for job in [j for j in STARTERS if j in jobs]:
        for query in STARTERS[job](spark, settings, catalog, contracts, True):
            query.awaitTermination()
            finished[query.name] = query
    return finished


def record_freshness(spark: SparkSession, settings: Settings, tracker: ProgressTracker, sequence: int) -> None:
    """Append the latest progress of every query to ``ops.freshness``."""
    rows = [p.as_row() for p in tracker.snapshot()]
    if rows:
        frame = spark.createDataFrame(rows, FRESHNESS_SCHEMA)
        append_idempotent(frame, settings, FRESHNESS_TABLE, "pipeline_freshness", sequence)


def run_until_stopped(
    spark: SparkSession,
    settings: Settings,
    catalog: Catalog,
    contracts: KpiContracts,
    jobs: Sequence[str] = JOBS,
    stop: threading.Event | None = None,
    freshness_every_s: float = 10.0,
) -> None:
    """Run the queries until ``stop`` is set or a query fails (its error is raised)."""
    stop = stop or threading.Event()
    queries = start(spark, settings, catalog, contracts, jobs)
    tracker = ProgressTracker.install(spark)
    log.info("started %s", ", ".join(q.name for q in queries))
    # A monotonically increasing txnVersion across restarts: milliseconds since epoch.
    next_snapshot = time.monotonic() + freshness_every_s
    try:
        while not stop.is_set():
            for query in queries:
                if not query.isActive:
                    error = query.exception()
                    raise RuntimeError(f"query {query.name} stopped: {error}")
            if time.monotonic() >= next_snapshot:
                record_freshness(spark, settings, tracker, int(datetime.now(UTC).timestamp() * 1000))
                next_snapshot = time.monotonic() + freshness_every_s
            stop.wait(0.5)
    finally:
        for query in queries:
            try:
                query.stop()
            except Exception:  # noqa: BLE001 - stopping the rest matters more
                log.exception("stopping %s", query.name)

"""Data quality on a schedule: the validation suites over recent data, off the hot path.

:class:`QualitySchedule` is a thread of the pipeline process (like Delta maintenance) that
every ``quality.check_every_seconds`` validates the last ``quality.window_minutes`` of every
table with a suite (:class:`lakehouse.validations.QualityCheck`: delta-rs reads, Great
Expectations on pandas, no Spark job), records the outcomes in ``ops.validations``, rebuilds
the Data Docs and opens or resolves ``data_quality`` alerts in ``gold.alerts``
(:class:`QualityAlerts`, through the shared :class:`~lakehouse.alerts.sink.AlertSink`), which
the alert router delivers.

Why a schedule and not the silver micro-batch: GX on Spark costs 0.5–2 s per call, more than
a whole hot-path batch; sampled batches validated with pandas cost less but still add a Spark
job (sample + ``toPandas``) to every batch, and volume and freshness expectations only mean
something over a window anyway (``bench/bench_quality.py`` measures the three).
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

from pyspark.sql import SparkSession

from lakehouse.alerts.lifecycle import QUALITY_GRAIN, QUALITY_KPI, RULE_DATA_QUALITY, AlertBook
from lakehouse.alerts.sink import AlertSink
from lakehouse.config import Settings
from lakehouse.validations import QualityCheck, QualityRun, Window

log = logging.getLogger("trivas.quality")
POOL = "maintenance"  # the alert MERGE shares upkeep's lowest-weight FAIR pool


def series_of(table: str) -> str:
    """The alert series of a table, in the ``kpi|grain|dimension`` form of KPI alerts."""
    return f"{QUALITY_KPI}|{QUALITY_GRAIN}|{table}"


class QualityAlerts:
    """One ``data_quality`` alert per table: fires on a run where any expectation of the
    table fails (``observed`` = failed expectations), extends while runs fail, resolves on
    the first run that passes. Alerts a previous process left firing are picked up."""

    def __init__(self, spark: SparkSession, settings: Settings) -> None:
        from lakehouse.alerts.lifecycle import ALERTS_SCHEMA, ALERTS_TABLE
        from lakehouse.tables import ensure_table

        self.spark = spark
        ensure_table(spark, settings, ALERTS_TABLE, ALERTS_SCHEMA)
        self.sink = AlertSink(settings)
        self.book = AlertBook()
        for alert in self.sink.open_alerts(spark, [RULE_DATA_QUALITY]):
            self.book.open[(series_of(alert.dimension), RULE_DATA_QUALITY)] = alert

    def __call__(self, run: QualityRun) -> None:
        for table in run.tables:
            point = {"kpi": QUALITY_KPI, "grain": QUALITY_GRAIN, "dimension": table.table,
                     "window_start": run.window.since, "window_end": run.window.until}  # fmt: skip
            failed = len(table.failed)
            self.book.observe(
                series_of(table.table), RULE_DATA_QUALITY, failed > 0, point, run.run_at,
                observed=float(failed), expected=0.0, upper=0.0, score=1.0, confidence=1.0,
            )  # fmt: skip
        self.spark.sparkContext.setLocalProperty("spark.scheduler.pool", POOL)
        self.sink.write(self.spark, self.book.take_changes())


class QualitySchedule(threading.Thread):
    """Runs the quality check every ``quality.check_every_seconds`` until stopped."""

    def __init__(self, spark: SparkSession, settings: Settings) -> None:
        super().__init__(name="trivas-quality", daemon=True)
        self.spark = spark
        self.settings = settings
        self.stopped = threading.Event()
        self.check: QualityCheck | None = None
        self.runs: list[QualityRun] = []

    def stop(self) -> None:
        self.stopped.set()

    def run(self) -> None:
        while not self.stopped.wait(self.settings.quality.check_every_seconds):
            self.run_once()

    def run_once(self, now: datetime | None = None) -> QualityRun | None:
        """One validation run over the recent window (None when it failed: logged, retried
        at the next period; quality checks never take the pipeline down)."""
        now = now or datetime.now(UTC)
        try:
            if self.check is None:  # built on first use: importing GX takes seconds
                self.check = QualityCheck(self.settings, QualityAlerts(self.spark, self.settings))
            run = self.check.run(Window.recent(now, self.settings.quality.window_minutes), now=now)
        except Exception:  # noqa: BLE001 - a quality run must never stop the pipeline
            log.exception("quality run failed; will retry")
            return None
        failed = [f"{t.table} ({len(t.failed)})" for t in run.tables if t.failed]
        log.info("quality run %s: %s", run.run_id, "all suites pass" if not failed else "failed: " + ", ".join(failed))
        self.runs = [*self.runs[-9:], run]
        return run

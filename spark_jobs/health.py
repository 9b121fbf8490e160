"""Pipeline health: the state of every job, on ``ops.job_status`` and as alerts.

The runner reports each change of a job's state (starting, running, failed, stopped) here.
Every change is one row of ``ops.job_status`` (``ops.pipeline_health`` is its latest row per
job: what an operator's health view shows, with the error and when the next restart is due).
A side job's failure also opens a ``pipeline_job_failed`` alert in ``gold.alerts`` (kpi
``pipeline``, dimension = the job), resolved once the restarted job makes progress again, so
a failing side query reaches on-call like any other alert instead of only a log line.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pyspark.sql import SparkSession

from lakehouse.alerts.lifecycle import ALERTS_SCHEMA, ALERTS_TABLE, RULE_JOB_FAILED, AlertBook
from lakehouse.alerts.sink import AlertSink
from lakehouse.config import Settings
from lakehouse.registry import JOB_STATUS, JOB_STATUS_SCHEMA, PIPELINE_WRITER
from spark_jobs.io import append_idempotent

log = logging.getLogger("trivas.health")

STARTING, RUNNING, FAILED, STOPPED = "starting", "running", "failed", "stopped"
PIPELINE_KPI, JOB_GRAIN = "pipeline", "job"
ERROR_CHARS = 2000  # enough for the exception's head; the full trace is in the pipeline log


def error_summary(error: object) -> str | None:
    """The first ``ERROR_CHARS`` of an exception's text (None for no error)."""
    if error is None:
        return None
    text = str(error).strip() or type(error).__name__
    return text[:ERROR_CHARS]


@dataclass
class JobHealth:
    """Writes job state changes to ``ops.job_status`` and failure alerts to ``gold.alerts``."""

    spark: SparkSession
    settings: Settings
    jobs: Sequence[str]  # this runner's jobs: alerts of other applications' jobs are theirs
    writer: str = f"{PIPELINE_WRITER}_job_status"  # txnAppId of this runner's appends
    sink: AlertSink = field(init=False)
    book: AlertBook = field(default_factory=AlertBook, init=False)

    def __post_init__(self) -> None:
        from lakehouse.tables import ensure_declared, ensure_table

        ensure_declared(self.spark, self.settings, JOB_STATUS)
        ensure_table(self.spark, self.settings, ALERTS_TABLE, ALERTS_SCHEMA)
        self.sink = AlertSink(self.settings)
        # Alerts a previous run left firing resolve once their job runs again.
        for alert in self.sink.open_alerts(self.spark, [RULE_JOB_FAILED]):
            if alert.dimension in self.jobs:
                self.book.open[(series_of(alert.dimension), RULE_JOB_FAILED)] = alert

    def report(
        self,
        job: str,
        state: str,
        failures: int = 0,
        error: object = None,
        restart_at: datetime | None = None,
    ) -> None:
        """Record ``job``'s new state; a failure opens its alert, running again resolves it."""
        now = datetime.now(UTC)
        # The alert first: whoever sees the new state on the health view finds its alert too.
        if state in (FAILED, RUNNING):
            point = {"kpi": PIPELINE_KPI, "grain": JOB_GRAIN, "dimension": job, "window_start": now, "window_end": now}
            self.book.observe(
                series_of(job), RULE_JOB_FAILED, state == FAILED, point, now,
                observed=float(failures), expected=0.0, upper=0.0, score=1.0, confidence=1.0,
            )  # fmt: skip
            self._write_alerts()
        row = (job, state, failures, error_summary(error), restart_at, now)
        try:
            frame = self.spark.createDataFrame([row], JOB_STATUS_SCHEMA)
            # txnVersion: milliseconds since epoch, increasing across restarts of the runner.
            append_idempotent(
                frame, self.settings, JOB_STATUS, self.writer, int(now.timestamp() * 1000)
            )
        except Exception:  # noqa: BLE001 - reporting must never stop the runner
            log.exception("could not record job %s as %s", job, state)

    def _write_alerts(self) -> None:
        changed = self.book.take_changes()
        try:
            self.sink.write(self.spark, changed)
        except Exception:  # noqa: BLE001 - reporting must never stop the runner
            log.exception("could not write the alerts of jobs %s", [a.dimension for a in changed])


def series_of(job: str) -> str:
    """The alert series of a job, in the ``kpi|grain|dimension`` form of KPI alerts."""
    return f"{PIPELINE_KPI}|{JOB_GRAIN}|{job}"


__all__ = [
    "FAILED",
    "RULE_JOB_FAILED",
    "RUNNING",
    "STARTING",
    "STOPPED",
    "JobHealth",
    "error_summary",
]

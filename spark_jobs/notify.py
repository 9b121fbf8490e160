"""The ``notify`` job: the alert router inside the pipeline (``trivas pipeline run --jobs …,notify``).

A ticker query (Spark's ``rate`` source, one micro-batch per ``poll_interval`` of
``conf/alerts.yaml``) runs one router tick per micro-batch, so the router is supervised,
restarted with backoff and reported on ``ops.pipeline_health`` like every side job. The router
reads and writes its tables with delta-rs (:mod:`lakehouse.alerts.router`); a replayed
micro-batch is just one more tick, and ticks send nothing twice. One router per process and
deployment: a restarted query reuses it, so retries in flight are not duplicated.
With ``available_now`` (``pipeline drain``) the job routes once, waits for the deliveries and
starts no query.
"""

from __future__ import annotations

import logging
import threading

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from lakehouse.alerts.router import AlertRouter
from lakehouse.config import Settings
from lakehouse.contracts import KpiContracts
from spark_jobs.io import start_foreach_batch

log = logging.getLogger("trivas.notify")
NOTIFY_QUERY = "notify_alerts"
_routers: dict[str, AlertRouter] = {}
_lock = threading.Lock()


def router_for(settings: Settings, contracts: KpiContracts) -> AlertRouter:
    """The process's router of this deployment (created once)."""
    key = settings.tables.root
    with _lock:
        if key not in _routers:
            _routers[key] = AlertRouter(settings, contracts)
        return _routers[key]


def run(spark: SparkSession, settings: Settings, contracts: KpiContracts, available_now: bool = False) -> list[StreamingQuery]:
    """Start the ticker query (or, with ``available_now``, route once and return no query)."""
    router = router_for(settings, contracts)
    if available_now:
        router.tick()
        router.wait_idle()
        router.recorder.flush()
        return []
    ticks = spark.readStream.format("rate").option("rowsPerSecond", 1).load()
    period = router.config.poll_interval.total_seconds()
    return [start_foreach_batch(ticks, settings, NOTIFY_QUERY, lambda _batch, _id: router.tick(), period)]

"""All streaming queries of a deployment in one Spark application (``trivas pipeline run``).

Locally every job shares one JVM (one small machine); on Databricks each job can run as its
own task with ``--jobs``. The jobs:

- ``bronze``: Kafka → ``bronze.events`` (the raw, replayable archive);
- ``silver_gold``: the hot path, Kafka → silver tables and ``gold.kpi`` in one micro-batch;
- ``gold``: side queries over silver (sessions, the order↔payment join);
- ``detect``, ``refund_risk``, ``cdc``: side queries of their own;
- ``notify``: the alert router (``gold.alerts`` → e-mail, Slack, PagerDuty, webhooks);
- ``act``: action policies (alerts, scores, silver → ``ops.action_requests``; the worker acts).

The first two are the KPI path: if one fails, the pipeline stops with its error. A side query
that fails is restarted with exponential backoff and never takes the KPI path down; the failure
is on ``ops.pipeline_health`` and opens an alert (:mod:`spark_jobs.health`). Each
query runs in its own FAIR scheduler pool; ``conf/fairscheduler.xml`` weights the KPI path
above the side queries. Delta maintenance runs in a thread of its own
(:mod:`spark_jobs.maintenance`), and so do the validation suites over recent data
(:mod:`spark_jobs.quality`, every ``quality.check_every_seconds``). Stopping is graceful: queries finish their micro-batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from lakehouse.catalog import Catalog
from lakehouse.config import Settings
from lakehouse.contracts import KpiContracts
from lakehouse.freshness import ProgressTracker
from lakehouse.registry import (
    FRESHNESS,
    JOB_STATUS,
    PIPELINE_WRITER,
    TableSpec,
    registry,
    tables_written_by,
)
from lakehouse.tables import ensure_declared, register_views
from spark_jobs import bronze, gold, hot_path
from spark_jobs.health import FAILED, RUNNING, STARTING, STOPPED, JobHealth
from spark_jobs.io import append_idempotent
from spark_jobs.maintenance import TableMaintenance
from spark_jobs.quality import QualitySchedule

log = logging.getLogger("trivas.pipeline")
JOBS = ("bronze", "silver_gold", "gold")
KPI_PATH = ("bronze", "silver_gold")
# Side jobs that may take turns (settings.streaming.side_schedule): each start reads what its
# sources hold and rebuilds nothing costly. detect keeps per-series model state and its
# freshness watchdog, notify its delivery loop: those two stay always on.
TURN_JOBS = ("gold", "refund_risk", "cdc")
FRESHNESS_TABLE = FRESHNESS
RUNNER = "pipeline"  # the runner's name when the jobs are not split into applications

Starter = Callable[[SparkSession, Settings, Catalog, KpiContracts, bool], list[StreamingQuery]]


def _bronze(
    spark: SparkSession, s: Settings, c: Catalog, k: KpiContracts, now: bool
) -> list[StreamingQuery]:
    return [bronze.run(spark, s, c, available_now=now)]


def _silver_gold(
    spark: SparkSession, s: Settings, c: Catalog, k: KpiContracts, now: bool
) -> list[StreamingQuery]:
    return [hot_path.run(spark, s, c, k, available_now=now)]


def _gold(
    spark: SparkSession, s: Settings, c: Catalog, k: KpiContracts, now: bool
) -> list[StreamingQuery]:
    return gold.run(
        spark, s, c, k, available_now=now, session_gap=f"{s.streaming.session_gap_seconds} seconds"
    )


def _cdc(
    spark: SparkSession, s: Settings, c: Catalog, k: KpiContracts, now: bool
) -> list[StreamingQuery]:
    from spark_jobs import cdc  # the CDC mirror needs the shop database's Debezium topics

    return [cdc.run(spark, s, available_now=now)]


def _detect(
    spark: SparkSession, s: Settings, c: Catalog, k: KpiContracts, now: bool
) -> list[StreamingQuery]:
    from spark_jobs import detect  # loads MLflow models: only when asked for

    return detect.run(spark, s, c, k, available_now=now)


def _refund_risk(
    spark: SparkSession, s: Settings, c: Catalog, k: KpiContracts, now: bool
) -> list[StreamingQuery]:
    from spark_jobs import refund_risk

    return refund_risk.run(spark, s, c, k, available_now=now)


def _notify(
    spark: SparkSession, s: Settings, c: Catalog, k: KpiContracts, now: bool
) -> list[StreamingQuery]:
    from spark_jobs import notify  # the alert router (conf/alerts.yaml)

    return notify.run(spark, s, k, available_now=now)


def _act(
    spark: SparkSession, s: Settings, c: Catalog, k: KpiContracts, now: bool
) -> list[StreamingQuery]:
    from spark_jobs import act  # action policies (conf/actions.yaml) → ops.action_requests

    return act.run(spark, s, c, available_now=now)


STARTERS: dict[str, Starter] = {
    "bronze": _bronze,
    "silver_gold": _silver_gold,
    "gold": _gold,
    "detect": _detect,
    "refund_risk": _refund_risk,
    "cdc": _cdc,
    "notify": _notify,
    "act": _act,
}
# ``drain`` runs the jobs in these waves: each wave reads only what earlier waves wrote.
DRAIN_WAVES = (
    ("bronze", "silver_gold", "cdc"),
    ("gold", "refund_risk"),
    ("detect",),
    ("notify", "act"),
)


def _check(jobs: Sequence[str]) -> None:
    unknown = set(jobs) - set(STARTERS)
    if unknown:
        raise ValueError(f"unknown jobs {sorted(unknown)}; choose from {list(STARTERS)}")


def prepare_tables(
    spark: SparkSession, settings: Settings, catalog: Catalog, jobs: Sequence[str] = JOBS
) -> None:
    """Create every declared table up front (before any query starts: a table property
    change during a commit would fail one of the two), so readers can start first."""
    for spec in registry().values():
        if isinstance(spec, TableSpec):
            ensure_declared(spark, settings, spec.logical)
    register_views(spark, settings)
    if "detect" in jobs:
        from spark_jobs import detect

        detect.ensure_detect_tables(spark, settings)
    if "refund_risk" in jobs:
        from spark_jobs import refund_risk

        refund_risk.ensure_refund_risk_table(spark, settings)


def progress_log(settings: Settings, runner: str = RUNNER) -> Path:
    """Where a runner's progress documents go: ``<logs>/progress.jsonl`` for the default
    runner, ``<logs>/progress-<application>.jsonl`` for a named application."""
    name = "progress.jsonl" if runner == RUNNER else f"progress-{runner}.jsonl"
    return settings.path(settings.paths.logs) / name


def install_tracker(
    spark: SparkSession, settings: Settings, runner: str = RUNNER
) -> ProgressTracker:
    """The progress listener, logging every progress document to :func:`progress_log`."""
    return ProgressTracker.install(spark, progress_log(settings, runner))


def start(
    spark: SparkSession,
    settings: Settings,
    catalog: Catalog,
    contracts: KpiContracts,
    jobs: Sequence[str] = JOBS,
    available_now: bool = False,
) -> list[StreamingQuery]:
    """Start the chosen jobs' queries."""
    _check(jobs)
    install_tracker(spark, settings)
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
    """Process everything that is there, then stop (``--available-now``, backfills, tests).

    Jobs run with ``availableNow`` in waves (:data:`DRAIN_WAVES`): the Kafka readers first,
    then what reads their tables, so one call leaves every layer complete. Micro-batches stay
    bounded by the per-trigger limits.
    """
    _check(jobs)
    install_tracker(spark, settings)
    prepare_tables(spark, settings, catalog, jobs)
    finished: dict[str, StreamingQuery] = {}
    for wave in DRAIN_WAVES:
        running = [
            q
            for job in wave
            if job in jobs
            for q in STARTERS[job](spark, settings, catalog, contracts, True)
        ]
        for query in running:
            query.awaitTermination()
            finished[query.name] = query
    return finished


def record_freshness(
    spark: SparkSession,
    settings: Settings,
    tracker: ProgressTracker,
    sequence: int,
    runner: str = RUNNER,
) -> None:
    """Append the latest progress of every query of this runner to ``ops.freshness``."""
    from lakehouse.freshness import FRESHNESS_SCHEMA

    rows = [p.as_row() for p in tracker.snapshot()]
    if rows:
        frame = spark.createDataFrame(rows, FRESHNESS_SCHEMA)
        append_idempotent(
            frame, settings, FRESHNESS_TABLE, writer_id(runner, "freshness"), sequence
        )


def writer_id(runner: str, table: str) -> str:
    """The txnAppId of a runner's own appends: two applications never share one."""
    return (
        f"{PIPELINE_WRITER}_{table}" if runner == RUNNER else f"{PIPELINE_WRITER}:{runner}_{table}"
    )


@dataclass
class RunningJob:
    """A job's queries, its state (see :mod:`spark_jobs.health`) and, for a side job, when it
    may be restarted after a failure."""

    name: str
    queries: list[StreamingQuery]
    failures: int = 0
    restart_at: float | None = None
    state: str = STARTING
    last_turn: float = -float("inf")  # when its last turn began (side jobs taking turns)

    def failed(self) -> StreamingQuery | None:
        return next((q for q in self.queries if not q.isActive), None)

    def progressing(self) -> bool:
        return bool(self.queries) and all(q.lastProgress for q in self.queries)

    def stop(self) -> None:
        for query in self.queries:
            try:
                query.stop()
            except Exception:  # noqa: BLE001 - stopping the rest matters more
                log.exception("stopping %s", query.name)


def backoff_seconds(failures: int, base: float = 5.0, cap: float = 300.0) -> float:
    """Wait before restarting a side job after its ``failures``-th failure in a row."""
    return min(cap, base * 2 ** max(failures - 1, 0))


def run_until_stopped(
    spark: SparkSession,
    settings: Settings,
    catalog: Catalog,
    contracts: KpiContracts,
    jobs: Sequence[str] = JOBS,
    stop: threading.Event | None = None,
    freshness_every_s: float = 10.0,
    runner: str = RUNNER,
) -> None:
    """Run the jobs until ``stop`` is set or a KPI-path query fails (its error is raised);
    side jobs that fail are restarted with backoff and reported (``ops.pipeline_health``,
    a ``pipeline_job_failed`` alert). ``runner`` names this application when the jobs are
    spread over several (``settings.pipeline.applications``)."""
    _check(jobs)
    stop = stop or threading.Event()
    tracker = install_tracker(spark, settings, runner)
    prepare_tables(spark, settings, catalog, jobs)
    health = JobHealth(spark, settings, jobs, writer_id(runner, "job_status"))
    running: dict[str, RunningJob] = {}
    in_turns = settings.streaming.side_schedule == "turns"
    for job in [j for j in STARTERS if j in jobs]:
        if job in KPI_PATH:
            running[job] = RunningJob(
                job, STARTERS[job](spark, settings, catalog, contracts, False)
            )
            health.report(job, STARTING)
        elif in_turns and job in TURN_JOBS:  # started by SideTurns, one at a time
            running[job] = RunningJob(job, [])
            health.report(job, STARTING)
        else:  # a side job that cannot start is retried by supervise()
            running[job] = RunningJob(job, [], restart_at=time.monotonic())
    log.info("started %s", ", ".join(q.name for r in running.values() for q in r.queries))
    maintained = [
        t.logical
        for job in running.values()
        for q in job.queries
        for t in tables_written_by(q.name)
    ]
    if any(job in KPI_PATH for job in jobs):  # one application keeps the ops tables
        maintained += [FRESHNESS_TABLE, JOB_STATUS]
    maintenance = TableMaintenance(spark, settings, maintained)
    if settings.maintenance.enabled:
        maintenance.start()
    quality = QualitySchedule(spark, settings)
    if settings.quality.enabled and "silver_gold" in jobs:  # with the tables it validates
        quality.start()
    next_snapshot = time.monotonic() + freshness_every_s
    taking_turns = [running[j] for j in running if in_turns and j in TURN_JOBS]
    turns = SideTurns(taking_turns, settings.streaming.side_trigger_seconds) if taking_turns else None
    try:
        while not stop.is_set():
            for job in running.values():
                if turns is None or job.name not in TURN_JOBS:
                    supervise(job, spark, settings, catalog, contracts, health)
            if turns is not None:
                turns.step(spark, settings, catalog, contracts, health)
            if time.monotonic() >= next_snapshot:
                # A monotonically increasing txnVersion across restarts: milliseconds since epoch.
                record_freshness(
                    spark, settings, tracker, int(datetime.now(UTC).timestamp() * 1000), runner
                )
                next_snapshot = time.monotonic() + freshness_every_s
            stop.wait(0.5)
    finally:
        maintenance.stop()
        quality.stop()
        for job in running.values():
            job.stop()
            health.report(job.name, STOPPED, job.failures)


class SideTurns:
    """Side jobs take turns: one at a time drains what its sources hold (``availableNow``) and
    stops, then the next one whose turn is due; a job's turns begin at most once per
    ``every_s``.

    Why: on a small machine every micro-batch of every query costs a second or more of fixed
    work (planning, source and Delta log reads, commits). Side queries that are always on hold
    the cores in parallel and starve the KPI hot path; taking turns bounds them to one job's
    work at a time, and each turn works on everything that arrived since the last (few, large
    batches instead of many small ones). Their results lag by up to one round of turns. A
    failed turn is reported like a failed query and retried after its backoff; the KPI path
    never waits for a side job.
    """

    def __init__(self, jobs: Iterable[RunningJob], every_s: float) -> None:
        self.queue = deque(jobs)
        self.every_s = every_s
        self.current: RunningJob | None = None

    def step(
        self, spark: SparkSession, settings: Settings, catalog: Catalog, contracts: KpiContracts, health: JobHealth
    ) -> None:
        """End the current turn if its queries have stopped; else begin the next due one."""
        now = time.monotonic()
        if self.current is not None:
            if any(q.isActive for q in self.current.queries):
                return
            self.end_turn(self.current, health, now)
            self.current = None
        for _ in range(len(self.queue)):
            job = self.queue[0]
            self.queue.rotate(-1)
            if self.due(job, now):
                self.begin_turn(job, spark, settings, catalog, contracts, health, now)
                return

    def due(self, job: RunningJob, now: float) -> bool:
        if job.restart_at is not None and now < job.restart_at:
            return False
        return now - job.last_turn >= self.every_s

    def begin_turn(
        self, job: RunningJob, spark: SparkSession, settings: Settings, catalog: Catalog,
        contracts: KpiContracts, health: JobHealth, now: float,
    ) -> None:  # fmt: skip
        job.last_turn = now
        if start_side_job(job, spark, settings, catalog, contracts, health, now, available_now=True):
            self.current = job

    def end_turn(self, job: RunningJob, health: JobHealth, now: float) -> None:
        error = next((e for e in (q.exception() for q in job.queries) if e is not None), None)
        job.queries = []
        if error is not None:
            log.error("side job %s failed its turn: %s", job.name, error)
            _failed(job, error, health, now)
            return
        job.failures = 0
        if job.state != RUNNING:
            _set_state(job, RUNNING, health)


def start_side_job(
    job: RunningJob, spark: SparkSession, settings: Settings, catalog: Catalog, contracts: KpiContracts,
    health: JobHealth, now: float, available_now: bool,
) -> bool:  # fmt: skip
    """Start a side job's queries; one that cannot start is reported failed and waits for its
    backoff (False)."""
    job.restart_at = None
    try:
        job.queries = STARTERS[job.name](spark, settings, catalog, contracts, available_now)
    except Exception as error:  # noqa: BLE001 - a side job that cannot start waits and tries again
        log.exception("side job %s could not start", job.name)
        job.queries = []
        _failed(job, error, health, now)
        return False
    return True


def supervise(
    job: RunningJob,
    spark: SparkSession,
    settings: Settings,
    catalog: Catalog,
    contracts: KpiContracts,
    health: JobHealth,
) -> None:
    """Raise if a KPI-path query stopped; restart a failed side job once its backoff is over;
    report every change of the job's state to ``health``."""
    now = time.monotonic()
    if job.restart_at is not None:
        if now < job.restart_at:
            return
        log.warning("starting side job %s (after %d failures)", job.name, job.failures)
        if start_side_job(job, spark, settings, catalog, contracts, health, now, available_now=False):
            _set_state(job, STARTING, health)
        return
    dead = job.failed()
    if dead is None:
        if job.state != RUNNING and job.progressing():
            job.failures = 0  # it has made progress (again)
            _set_state(job, RUNNING, health)
        return
    error = dead.exception()
    if job.name in KPI_PATH:
        health.report(job.name, FAILED, job.failures + 1, error)
        raise RuntimeError(f"query {dead.name} stopped: {error}")
    job.stop()
    log.error("side query %s of job %s failed: %s", dead.name, job.name, error)
    _failed(job, error, health, now)


def _failed(job: RunningJob, error: object, health: JobHealth, now: float) -> None:
    job.failures += 1
    job.restart_at = now + backoff_seconds(job.failures)
    job.state = FAILED
    restart_at = datetime.now(UTC) + timedelta(seconds=job.restart_at - now)
    log.error(
        "side job %s failed %d time(s) in a row; restarting in %.0fs",
        job.name,
        job.failures,
        job.restart_at - now,
    )
    health.report(job.name, FAILED, job.failures, error, restart_at)


def _set_state(job: RunningJob, state: str, health: JobHealth) -> None:
    job.state = state
    health.report(job.name, state, job.failures)

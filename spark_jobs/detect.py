"""Detect: KPI anomalies (MLflow champion), static thresholds and freshness SLAs → ``gold.alerts``.

Reading ``gold.kpi``. The gold job MERGEs ``gold.kpi`` every micro-batch, so its commits
rewrite files. A plain Delta stream fails on such commits; ``skipChangeCommits`` skips whole
MERGE commits and with them the new windows they insert; ``ignoreChanges`` re-emits every row
of every rewritten file, and because a MERGE writes the old rows of a touched file next to the
hot (open) windows, that is close to the whole table on every batch. The change data feed
(``delta.enableChangeDataFeed=true`` on ``gold.kpi``) gives exactly the rows each commit
inserted or updated, with their commit version: detect reads that (O(changes) per batch).

Updates, not rows. ``gold.kpi`` is read as a stream of updates: whether the gold job
MERGEs a key (``update_postimage`` changes) or appends one row per touched key and micro-batch
(append-only: every change an ``insert``), a (kpi, grain, window_start, dimension) key can
appear many times; of one batch's images of a key the latest (commit version, then
``computed_at``) wins.

What is scored, twice. (1) Final windows (``is_final``: gold's watermark has passed
``window_end``), once each, in event-time order, learnt by the model: a per-series cursor — the
last scored ``window_start`` — makes the change feed's repeats harmless, and a final window
restated later (a backfill) is not scored again. (2) Open windows, every batch, as an early
warning (rule ``anomaly_model_open``): the latest partial value of each is
extrapolated to the full window for additive KPIs and scored against the model's expectation
of the full window without learning, with evidence and confidence growing as the window
fills (:mod:`models.kpi_scoring`, :mod:`models.open_window`). A final alert comes one gold
watermark delay (about six minutes) after its window closed; an open-window alert comes
within about a minute of an outage's start. Rises of a KPI during a promotion of
``conf/campaign_calendar.yaml`` do not page. A series is ``kpi|grain|dimension``
(``orders|1m|country=DE``), its timestamp ``window_start``. Both read gold's progress as well as its rows
(:mod:`spark_jobs.detect_windows`): a tumbling count's minute without a row is a zero, and an
open window has elapsed up to gold's newest processed arrival, not only up to its last update.

Scorer state is persisted, in two parts named by the batch id inside the query's checkpoint
folder (through Hadoop's file system API, so ``dbfs:/`` and object stores work;
:class:`DetectorSnapshots`). The scorer's per-series state, the bulk of the bytes, is saved
(``<batch>.scorer``) only by a batch that learnt final windows or switched champion; the
cursors, the open alerts, gold's watermark and the latest image of every window not final yet
change nearly every batch and are saved (``<batch>.snapshot``, written second) after each batch
that changed anything, naming the scorer snapshot they go with. Batch N starts from the newest
``.snapshot`` older than N and the scorer it names — the scorer as of batch N-1 — so a batch
replayed after a crash (its ``gold.alerts`` MERGE already committed and skipped by Delta's
``txnAppId``/``txnVersion``), even one between its two writes, is scored from the same state
again and nothing is learnt twice. Older snapshots are deleted once no replay can need them.

Alias moves. :class:`models.champion.ChampionWatcher` looks the alias up at most every
``alias_check_seconds``; when it has moved, that version is loaded and rebuilt from history
— warmed with the final ``gold.kpi`` rows of every live series it has not seen (after its own
last timestamp of the series, up to the cursor, within ``warmup_horizon``) — and scores from
the next window on, in the same query. Without a champion, thresholds and freshness still
run; the model joins when one is registered.

Alert lifecycle. One alert per episode of a (series, rule): it fires on the first window
that trips the rule (for ``anomaly_model_open``: on the first batch whose open windows of the
series trip it; it is updated while they do and resolved by the first batch whose updates of
the series' open windows are back in band, so a restated window resolves its alert) (``alert_id`` = hash of kpi, grain, dimension, rule and that window's
start, so a replay writes the same id), is extended while later windows trip, and is
resolved by the first later window of the series back in band. ``gold.alerts`` is MERGEd by
``alert_id`` (:class:`lakehouse.alerts.sink.AlertSink`, shared with the pipeline's health
reporter); the alert lifecycle itself lives in :mod:`lakehouse.alerts.lifecycle`, and the
alert router (:mod:`lakehouse.alerts.router`) takes the rows from there to the people on call.

Freshness watchdog. A KPI whose newest ``gold.kpi`` write (``computed_at``, processing time)
is older than its contract's ``freshness_sla`` fires a ``freshness_sla`` alert
(``window_start`` = that last write, ``observed`` = the lag in seconds, ``upper`` = the SLA)
that resolves when the KPI is written again. It is checked after every detect batch and, in
a continuous run, every ``freshness_check_seconds`` by a ticker query (a stale table produces
no change-feed batches). A KPI that has never been written is not watched.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from lakehouse.alerts.lifecycle import (
    ALERTS_SCHEMA,
    ALERTS_TABLE,
    FIRING,
    RESOLVED,
    RULE_FRESHNESS,
    RULE_MAX,
    RULE_MIN,
    RULE_MODEL,
    RULE_MODEL_OPEN,
    Alert,
    AlertBook,
    alert_id,
)
from lakehouse.alerts.lifecycle import clean_value as _clean
from lakehouse.alerts.sink import AlertSink
from lakehouse.catalog import Catalog
from lakehouse.config import Settings
from lakehouse.contracts import TOTAL, TOTAL_ONLY, KpiContracts
from lakehouse.tables import (
    checkpoint_location,
    delta_table,
    ensure_table,
    read_table,
    table_exists,
    table_location,
)
from models.series import EXPOSURE
from spark_jobs import detect_windows as windows
from spark_jobs.gold import KPI_TABLE
from spark_jobs.io import start_foreach_batch

log = logging.getLogger("trivas.detect")

DETECT_QUERY = "detect_kpi"
FRESHNESS_QUERY = "detect_freshness"
CHANGE_FEED_PROPERTY = "delta.enableChangeDataFeed"
KPI_KEY = ("kpi", "grain", "window_start", "dimension")
# numerator/denominator: a ratio KPI's counts, which its binomial test reads (models.ratio_test)
# watermark: gold's, as of the row's write (the frontier of windows without rows, detect_windows)
POINT_COLUMNS = [
    "kpi", "grain", "window_start", "window_end", "dimension", "value", "numerator", "denominator", "is_final", "computed_at",
    "watermark",
]  # fmt: skip
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

def utc_now() -> datetime:
    """Processing time (the default clock)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class DetectOptions:
    """Knobs of the detect job (defaults suit a live deployment).

    Attributes:
        alias: Registry alias scored with.
        alias_check_seconds: Minimum seconds between two look-ups of the alias (0 = every batch).
        freshness_check_seconds: Period of the freshness ticker query (continuous runs).
        warmup_horizon: History replayed into a newly loaded model, per series.
        trigger_seconds: Trigger of the detect query (default: the gold trigger).
        clock: Processing time (tests pin it).
        tracking_uri: MLflow URI (default: ``settings.mlflow.tracking_uri``).
    """

    alias: str = "champion"
    alias_check_seconds: float = 30.0
    freshness_check_seconds: float = 10.0
    warmup_horizon: timedelta = timedelta(days=14)
    trigger_seconds: float | None = None
    clock: Callable[[], datetime] = utc_now
    tracking_uri: str | None = None


# -- pure functions ----------------------------------------------------------------------------


def series_key(kpi: str, grain: str, dimension: str) -> str:
    """The model's series of one KPI row: ``kpi|grain|dimension``."""
    return f"{kpi}|{grain}|{dimension}"


def keyed(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows with their model series (``series_key``) and ``t`` (epoch seconds of
    ``window_start``)."""
    if rows.empty:
        return rows.assign(series_key=pd.Series(dtype=str), t=pd.Series(dtype=float))
    return rows.assign(series_key=rows["kpi"] + "|" + rows["grain"] + "|" + rows["dimension"], t=_seconds(rows["window_start"]))


def latest_kpi_changes(changes: DataFrame) -> DataFrame:
    """Change-feed rows of ``gold.kpi`` → the newest image of each KPI row in the batch.

    Keeps inserts (a new window, or an appended update of a key in an append-only gold.kpi)
    and update post-images (a MERGEd restatement, a window flipped to final); of several
    images of one (kpi, grain, window_start, dimension) the one of the latest commit, then the
    latest ``computed_at``, then a final one, wins.
    """
    newest = Window.partitionBy(*KPI_KEY).orderBy(
        F.col("_commit_version").desc(), F.col("computed_at").desc_nulls_last(), F.col("is_final").desc()
    )
    return (
        changes.where(F.col("_change_type").isin("insert", "update_postimage"))
        .withColumn("_rank", F.row_number().over(newest))
        .where(F.col("_rank") == 1)
        .select(*POINT_COLUMNS)
    )


def _utc(value: Any) -> datetime:
    moment = pd.Timestamp(value)
    moment = moment.tz_localize(UTC) if moment.tzinfo is None else moment.tz_convert(UTC)
    return moment.to_pydatetime()


def _seconds(timestamps: pd.Series) -> np.ndarray:
    ts = pd.to_datetime(timestamps, utc=True)
    return (ts - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=float)


def new_points(rows: pd.DataFrame, cursor: dict[str, float]) -> pd.DataFrame:
    """Final rows not scored yet (after their series' cursor), in event-time order per series.

    Args:
        rows: ``POINT_COLUMNS`` (the newest image of each changed KPI row).
        cursor: ``series_key`` → epoch seconds of the last scored ``window_start``.

    Returns:
        The rows to score with a ``series_key`` and a ``t`` (epoch seconds) column.
    """
    final = keyed(rows[rows["is_final"].astype(bool)])
    if final.empty:
        return final
    done = final["series_key"].map(cursor).astype(float).fillna(-np.inf).to_numpy()
    fresh = final[final["t"].to_numpy() > done]
    return fresh.sort_values(["series_key", "t"], kind="stable").reset_index(drop=True)


def open_points(rows: pd.DataFrame, cursor: dict[str, float], contracts: KpiContracts, frontier: datetime | None = None) -> pd.DataFrame:
    """Open windows to score as an early warning: not final, after their series' cursor.

    Args:
        rows: ``POINT_COLUMNS`` (the newest image of each not-final KPI window).
        cursor: ``series_key`` → epoch seconds of the last final ``window_start`` scored.
        contracts: KPI contracts (which KPIs add up over a window).
        frontier: Gold's newest processed arrival (:mod:`spark_jobs.detect_windows`): a
            window has elapsed up to it whether or not its row changed since; ``None``: up to
            each row's ``computed_at``.

    Returns:
        The rows with ``series_key``, ``t``, ``timestamp`` (= ``window_start``), ``fraction``
        (share of the window elapsed) and ``additive``, in event-time order per series.
    """
    from models.open_window import elapsed_fraction

    open_ = rows[~rows["is_final"].astype(bool)].copy()
    if open_.empty:
        return open_.assign(series_key=pd.Series(dtype=str), t=pd.Series(dtype=float), fraction=pd.Series(dtype=float))
    open_ = keyed(open_)
    done = open_["series_key"].map(cursor).astype(float).fillna(-np.inf).to_numpy()
    open_ = open_[open_["t"].to_numpy() > done]
    open_["timestamp"] = open_["window_start"]
    as_of = open_["computed_at"] if frontier is None else pd.Series(pd.Timestamp(frontier), index=open_.index)
    open_["fraction"] = elapsed_fraction(open_["window_start"], open_["window_end"], as_of)
    kinds = {k: c.kind for k, c in contracts.kpis.items()}
    open_["additive"] = open_["kpi"].map(kinds).isin(["measure", "rollup"]).to_numpy()
    open_["tumbling"] = (open_["kpi"].map(kinds) == "measure").to_numpy()
    return open_.sort_values(["series_key", "t"], kind="stable").reset_index(drop=True)


def apply_open_rule(
    book: AlertBook, points: pd.DataFrame, scores: pd.DataFrame, model_version: str | None, now: datetime
) -> None:
    """Advance the early-warning alert of each series by one batch of open-window scores.

    A series trips when any of its open windows in the batch is anomalous (the alert points
    at the first such window); otherwise its firing early-warning alert resolves. While the
    series' final-window alert is firing, its episode is already paging: an early warning
    does not open a second one (a spike's final alert, then the count test's memory of it in
    the next open minutes).
    """
    if points.empty:
        return
    frame = points.assign(**{f"_{c}": scores[c].to_numpy() for c in scores.columns})
    for series, part in frame.groupby("series_key", sort=False):
        tripped = part[part["_is_anomaly"].astype(bool)]
        warning = (series, RULE_MODEL_OPEN) in book.open
        if not warning and (tripped.empty or (series, RULE_MODEL) in book.open):
            continue
        row = tripped.iloc[0] if len(tripped) else part.iloc[-1]
        point = {
            "kpi": row["kpi"], "grain": row["grain"], "dimension": row["dimension"],
            "window_start": _utc(row["window_start"]), "window_end": _utc(row["window_end"]),
        }  # fmt: skip
        book.observe(
            str(series), RULE_MODEL_OPEN, bool(len(tripped)), point, now,
            observed=_clean(float(row["value"])), expected=_clean(float(row["_expected"])), lower=_clean(float(row["_lower"])),
            upper=_clean(float(row["_upper"])), score=_clean(float(row["_anomaly_score"])),
            confidence=_clean(float(row["_confidence"])), model_version=model_version,
        )  # fmt: skip


def threshold_outcomes(points: pd.DataFrame, contracts: KpiContracts) -> pd.DataFrame:
    """Per point: 1.0 if it breaks its KPI's static min (max), 0.0 if within, NaN if no such
    threshold, no value, or a series outside the thresholds' scope (a dimension's series of a
    KPI whose bounds speak of the total)."""
    total_only = points["kpi"].map({k: c.thresholds.scope == TOTAL_ONLY for k, c in contracts.kpis.items()}).eq(True)
    out_of_scope = (total_only & (points["dimension"] != TOTAL)).to_numpy()
    lows = points["kpi"].map({k: c.thresholds.min for k, c in contracts.kpis.items()}).astype(float).mask(out_of_scope)
    highs = points["kpi"].map({k: c.thresholds.max for k, c in contracts.kpis.items()}).astype(float).mask(out_of_scope)
    value = pd.to_numeric(points["value"], errors="coerce").astype(float)
    out = pd.DataFrame(index=points.index)
    out[RULE_MIN] = np.where(lows.isna() | value.isna(), np.nan, (value < lows).astype(float))
    out[RULE_MAX] = np.where(highs.isna() | value.isna(), np.nan, (value > highs).astype(float))
    out["min"] = lows
    out["max"] = highs
    return out


def apply_rules(
    book: AlertBook,
    points: pd.DataFrame,
    scores: pd.DataFrame | None,
    contracts: KpiContracts,
    model_version: str | None,
    now: datetime,
) -> None:
    """Run every window of ``points`` (ordered per series) through the alert lifecycle.

    Args:
        book: Open alerts, advanced in place.
        points: From :func:`new_points`.
        scores: Model outputs indexed like ``points`` (rows not scored: NaN), or ``None``.
        contracts: KPI contracts (thresholds).
        model_version: The version that produced ``scores``.
        now: Processing time.
    """
    if points.empty:
        return
    limits = threshold_outcomes(points, contracts)
    outcomes = {RULE_MIN: limits[RULE_MIN].to_numpy(), RULE_MAX: limits[RULE_MAX].to_numpy()}
    if scores is not None:
        scored = scores["anomaly_score"].notna().to_numpy() & pd.to_numeric(points["value"], errors="coerce").notna().to_numpy()
        outcomes[RULE_MODEL] = np.where(scored, scores["is_anomaly"].fillna(False).astype(float).to_numpy(), np.nan)
    tripped_any = np.zeros(len(points), bool)
    for values in outcomes.values():
        tripped_any |= values == 1.0
    open_series = {s for s, _ in book.open}
    series = points["series_key"].to_numpy()
    relevant = tripped_any | np.isin(series, list(open_series))
    # Only series with a breach in this batch or an open alert can change state.
    busy = np.flatnonzero(np.isin(series, list(set(series[relevant]))))
    if not len(busy):
        return
    columns = {c: points[c].to_numpy()[busy] for c in ("kpi", "grain", "dimension", "series_key")}
    starts = [_utc(v) for v in points["window_start"].to_numpy()[busy]]
    ends = [_utc(v) for v in points["window_end"].to_numpy()[busy]]
    observed = pd.to_numeric(points["value"], errors="coerce").astype(float).to_numpy()[busy]
    model = scores.to_numpy(dtype=object)[busy] if scores is not None else None
    model_cols = {c: i for i, c in enumerate(scores.columns)} if scores is not None else {}
    lows, highs = limits["min"].to_numpy()[busy], limits["max"].to_numpy()[busy]
    for j, i in enumerate(busy):
        point = {
            "kpi": columns["kpi"][j], "grain": columns["grain"][j], "dimension": columns["dimension"][j],
            "window_start": starts[j], "window_end": ends[j],
        }  # fmt: skip
        value = _clean(float(observed[j]))
        for rule, values in outcomes.items():
            if np.isnan(values[i]):
                continue
            if rule == RULE_MODEL:
                m = model[j]
                extra = {
                    "expected": _clean(float(m[model_cols["expected"]])), "lower": _clean(float(m[model_cols["lower"]])),
                    "upper": _clean(float(m[model_cols["upper"]])), "score": _clean(float(m[model_cols["anomaly_score"]])),
                    "confidence": _clean(float(m[model_cols["confidence"]])), "model_version": model_version,
                }  # fmt: skip
            else:
                extra = {
                    "expected": None, "lower": _clean(float(lows[j])), "upper": _clean(float(highs[j])),
                    "score": 1.0, "confidence": 1.0, "model_version": None,
                }  # fmt: skip
            book.observe(columns["series_key"][j], rule, bool(values[i] == 1.0), point, now, observed=value, **extra)


def freshness_transitions(
    last_written: dict[str, datetime],
    open_alerts: dict[str, Alert],
    contracts: KpiContracts,
    now: datetime,
) -> list[Alert]:
    """Fire, keep or resolve the freshness alert of every watched KPI (``open_alerts`` is
    updated in place; returns the alerts to write).

    Args:
        last_written: KPI → newest ``computed_at`` of its ``gold.kpi`` rows.
        open_alerts: KPI → its firing freshness alert.
        contracts: For each KPI's ``freshness_sla`` and grain label.
        now: Processing time.
    """
    changes: list[Alert] = []
    for kpi, last in sorted(last_written.items()):
        contract = contracts.kpis.get(kpi)
        if contract is None:
            continue
        sla = contract.freshness_sla
        lag = now - last
        current = open_alerts.get(kpi)
        if current is not None and (lag <= sla or current.window_start < last):
            resolved = replace(current, state=RESOLVED, updated_at=now)
            del open_alerts[kpi]
            changes.append(resolved)
            current = None
        if current is None and lag > sla:
            grain = contract.window_label
            alert = Alert(
                alert_id=alert_id(kpi, grain, TOTAL, RULE_FRESHNESS, last), kpi=kpi, grain=grain,
                window_start=last, window_end=last + sla, dimension=TOTAL, observed=lag.total_seconds(),
                expected=None, lower=None, upper=sla.total_seconds(), score=1.0, confidence=1.0,
                model_version=None, rule=RULE_FRESHNESS, state=FIRING, first_seen_at=now, updated_at=now,
            )  # fmt: skip
            open_alerts[kpi] = alert
            changes.append(alert)
    return changes


# -- tables and the change feed ----------------------------------------------------------------


def ensure_detect_tables(spark: SparkSession, settings: Settings) -> None:
    """Create ``gold.alerts`` and turn on ``gold.kpi``'s change data feed (both idempotent).

    Call before any query starts (``pipeline.prepare_tables``): changing a table property
    while the gold job MERGEs would make one of the two commits fail.
    """
    ensure_table(spark, settings, ALERTS_TABLE, ALERTS_SCHEMA)
    enable_kpi_change_feed(spark, settings)


def change_feed_enabled(spark: SparkSession, settings: Settings) -> bool:
    """Whether ``gold.kpi`` records its changes."""
    detail = delta_table(spark, settings, KPI_TABLE).detail().select("properties").first()
    return str((detail["properties"] or {}).get(CHANGE_FEED_PROPERTY, "false")).lower() == "true"


def enable_kpi_change_feed(spark: SparkSession, settings: Settings) -> None:
    """Set ``delta.enableChangeDataFeed=true`` on ``gold.kpi`` if it is not set."""
    if table_exists(spark, settings, KPI_TABLE) and not change_feed_enabled(spark, settings):
        name = table_location(settings, KPI_TABLE)
        target = name if settings.tables.binding == "catalog" else f"delta.`{name}`"
        spark.sql(f"ALTER TABLE {target} SET TBLPROPERTIES ('{CHANGE_FEED_PROPERTY}' = 'true')")
        log.info("enabled the change data feed of %s", KPI_TABLE)


def read_kpi_changes(spark: SparkSession, settings: Settings) -> DataFrame:
    """The change feed of ``gold.kpi`` as a stream (a new checkpoint starts with the whole
    table as inserts)."""
    location = table_location(settings, KPI_TABLE)
    reader = spark.readStream.format("delta").option("readChangeFeed", "true").option("maxFilesPerTrigger", 1000)
    if settings.tables.binding == "catalog":
        return reader.table(location)
    return reader.load(location)


# -- snapshots of the detector's state ---------------------------------------------------------


class SnapshotStore:
    """Versioned blobs of one kind (``<batch id>.<kind>``) in a folder, through Hadoop's FileSystem."""

    def __init__(self, spark: SparkSession, directory: str, kind: str) -> None:
        jvm = spark.sparkContext._jvm
        self._jvm = jvm
        self._dir = jvm.org.apache.hadoop.fs.Path(directory)
        self._fs = self._dir.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
        self._suffix = f".{kind}"

    def _batches(self) -> list[int]:
        if not self._fs.exists(self._dir):
            return []
        names = [status.getPath().getName() for status in self._fs.listStatus(self._dir)]
        return sorted(int(n.removesuffix(self._suffix)) for n in names if n.endswith(self._suffix))

    def _path(self, batch_id: int):  # noqa: ANN202 - a Hadoop Path
        return self._jvm.org.apache.hadoop.fs.Path(self._dir, f"{batch_id:020d}{self._suffix}")

    def save(self, batch_id: int, payload: bytes) -> None:
        """Write atomically (temporary file, then rename)."""
        self._fs.mkdirs(self._dir)
        tmp = self._jvm.org.apache.hadoop.fs.Path(self._dir, f".{batch_id:020d}{self._suffix}.tmp")
        out = self._fs.create(tmp, True)
        try:
            out.write(bytearray(payload))
        finally:
            out.close()
        final = self._path(batch_id)
        if self._fs.exists(final):
            self._fs.delete(final, False)
        if not self._fs.rename(tmp, final):
            raise OSError(f"could not rename {tmp} to {final}")

    def read(self, batch_id: int) -> bytes:
        """The snapshot of one batch."""
        stream = self._fs.open(self._path(batch_id))
        try:
            return bytes(self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
        finally:
            stream.close()

    def latest_before(self, batch_id: int) -> tuple[int, bytes] | None:
        """The newest snapshot of a batch older than ``batch_id``."""
        older = [b for b in self._batches() if b < batch_id]
        return (older[-1], self.read(older[-1])) if older else None

    def prune(self, keep_from: int) -> None:
        """Delete snapshots of batches older than ``keep_from``."""
        for batch in self._batches():
            if batch < keep_from:
                self._fs.delete(self._path(batch), False)


class DetectorSnapshots:
    """The detector's state as two kinds of snapshot in one folder.

    The scorer (per-series arrays, the bulk of the bytes) changes only when final windows
    were learnt or the champion switched: ``<batch>.scorer`` is written by those batches
    alone. The rest (cursors, open alerts, watermark, open windows) changes nearly every
    batch: ``<batch>.snapshot``, written last, names the scorer snapshot it pairs with. A
    crash between the two writes leaves a scorer snapshot no ``.snapshot`` names, which
    the replay of that batch never reads (and rewrites).
    """

    def __init__(self, spark: SparkSession, directory: str) -> None:
        self.states = SnapshotStore(spark, directory, "snapshot")
        self.scorers = SnapshotStore(spark, directory, "scorer")

    def restore(self, batch_id: int) -> tuple[int, DetectorState] | None:
        """The state saved by the newest batch older than ``batch_id`` (``None``: no snapshot)."""
        found = self.states.latest_before(batch_id)
        if found is None:
            return None
        state = DetectorState.from_bytes(found[1])
        if state.scorer_batch >= 0:
            state.restore_scorer(self.scorers.read(state.scorer_batch))
        return found[0], state

    def save(self, state: DetectorState, batch_id: int) -> None:
        """Save ``state`` as of ``batch_id`` (its scorer only if it changed), then drop the
        snapshots a replay of ``batch_id`` would not read."""
        previous, previous_scorer = state.batch_id, state.scorer_batch
        if state.scorer_changed:
            self.scorers.save(batch_id, state.scorer_bytes())
            state.scorer_batch, state.scorer_changed = batch_id, False
        state.batch_id = batch_id
        self.states.save(batch_id, state.to_bytes())
        # A replay of this batch starts from the previous batch's snapshot and its scorer.
        self.states.prune(previous if previous >= 0 else batch_id)
        self.scorers.prune(previous_scorer if previous >= 0 else state.scorer_batch)


@dataclass
class DetectorState:
    """What a detect batch starts from: scorer, cursors, open alerts (model and thresholds),
    gold's newest watermark and the latest image of every window not final yet.

    ``scorer_batch`` is the batch whose scorer snapshot holds ``scorer`` (-1: none saved);
    ``scorer_changed`` says the scorer has learnt (or was replaced) since.
    """

    scorer: Any | None = None  # models.scorer.KpiScorer
    model_version: str | None = None
    cursor: dict[str, float] = field(default_factory=dict)
    book: AlertBook = field(default_factory=AlertBook)
    batch_id: int = -1
    watermark: datetime | None = None
    views: pd.DataFrame = field(default_factory=pd.DataFrame)
    scorer_batch: int = -1
    scorer_changed: bool = False

    def use_scorer(self, scorer: Any, model_version: str | None) -> None:
        """Score with another scorer from now on."""
        self.scorer, self.model_version, self.scorer_changed = scorer, model_version, True

    def to_bytes(self) -> bytes:
        """Everything but the scorer (:meth:`scorer_bytes`), which ``scorer_batch`` names."""
        return _npz(self.arrays())

    def scorer_bytes(self) -> bytes:
        """The scorer: family, hyper-parameters, paging thresholds, model version and state."""
        return _npz(self.scorer_arrays())

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays of :meth:`to_bytes`."""
        meta = {
            "cursor": self.cursor,
            "open": [[s, r, a.to_json()] for (s, r), a in self.book.open.items()],
            "batch_id": self.batch_id,
            "watermark": None if self.watermark is None else self.watermark.isoformat(),
            "scorer_batch": self.scorer_batch,
        }
        arrays: dict[str, np.ndarray] = {"meta": np.frombuffer(json.dumps(meta).encode(), np.uint8)}
        if len(self.views):
            arrays["views"] = np.frombuffer(_frame_bytes(self.views), np.uint8)
        return arrays

    def scorer_arrays(self) -> dict[str, np.ndarray]:
        """The arrays of :meth:`scorer_bytes`."""
        assert self.scorer is not None
        config = {"kind": self.scorer.kind, "params": self.scorer.params.to_dict(), "page_thresholds": self.scorer.page_thresholds,
                  "open_thresholds": self.scorer.open_thresholds, "model_version": self.model_version}  # fmt: skip
        arrays = {"scorer_config": np.frombuffer(json.dumps(config).encode(), np.uint8)}
        if self.scorer.state is not None:
            arrays.update({f"state_{k}": v for k, v in self.scorer.state.to_arrays().items()})
        return arrays

    def restore_scorer(self, payload: bytes) -> None:
        """Take the scorer of a :meth:`scorer_bytes` payload."""
        self.scorer, self.model_version = _scorer_of(_arrays_of(payload))

    @classmethod
    def from_bytes(cls, payload: bytes) -> DetectorState:
        """Inverse of :meth:`to_bytes` (the scorer comes with :meth:`restore_scorer`)."""
        arrays = _arrays_of(payload)
        meta = json.loads(arrays.pop("meta").tobytes())
        book = AlertBook(open={(s, r): Alert.from_json(a) for s, r, a in meta["open"]})
        watermark = datetime.fromisoformat(meta["watermark"]) if meta.get("watermark") else None
        views = _frame_of(arrays["views"].tobytes()) if "views" in arrays else pd.DataFrame()
        cursor = {k: float(v) for k, v in meta["cursor"].items()}
        state = cls(None, None, cursor, book, meta["batch_id"], watermark, views, meta.get("scorer_batch", -1))
        if "scorer_config" in arrays:  # a snapshot from before the split held its scorer: save it apart next
            scorer, version = _scorer_of(arrays)
            state.use_scorer(scorer, version or meta.get("model_version"))
        return state


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _arrays_of(payload: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(payload), allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _scorer_of(arrays: dict[str, np.ndarray]) -> tuple[Any, str | None]:
    """The scorer and model version of a snapshot's ``scorer_config`` and ``state_*`` arrays."""
    from models.scorer import FAMILIES, KpiScorer

    config = json.loads(arrays["scorer_config"].tobytes())
    scorer = KpiScorer.new(config["kind"], **config["params"])
    state_arrays = {k.removeprefix("state_"): v for k, v in arrays.items() if k.startswith("state_")}
    if state_arrays:
        scorer.state = FAMILIES[scorer.kind][2].from_arrays(state_arrays)
    scorer.page_thresholds = {str(k): float(v) for k, v in config.get("page_thresholds", {}).items()}
    scorer.open_thresholds = {str(k): float(v) for k, v in config.get("open_thresholds", {}).items()}
    return scorer, config.get("model_version")


def _frame_bytes(frame: pd.DataFrame) -> bytes:
    """A frame as Arrow IPC bytes (the snapshot's open windows)."""
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _frame_of(payload: bytes) -> pd.DataFrame:
    import pyarrow as pa

    return pa.ipc.open_stream(payload).read_all().to_pandas()


# -- the detect writer -------------------------------------------------------------------------


class FreshnessWatchdog:
    """Per-KPI time of the newest ``gold.kpi`` write, checked against the SLAs."""

    def __init__(self, settings: Settings, contracts: KpiContracts, sink: AlertSink, clock: Callable[[], datetime]) -> None:
        self.settings = settings
        self.contracts = contracts
        self.sink = sink
        self.clock = clock
        self.lock = threading.RLock()
        self.last_written: dict[str, datetime] = {}
        self.open: dict[str, Alert] | None = None

    def _seed(self, session: SparkSession) -> None:
        if self.open is not None:
            return
        latest = read_table(session, self.settings, KPI_TABLE).groupBy("kpi").agg(F.max("computed_at").alias("at")).collect()
        for row in latest:
            if row["at"] is not None:
                self.observe({row["kpi"]: _utc(row["at"])})
        self.open = {a.kpi: a for a in self.sink.open_alerts(session, [RULE_FRESHNESS])}

    def observe(self, written: dict[str, datetime]) -> None:
        """Record new writes (KPI → newest ``computed_at`` seen)."""
        with self.lock:
            for kpi, at in written.items():
                if kpi not in self.last_written or at > self.last_written[kpi]:
                    self.last_written[kpi] = at

    def check(self, session: SparkSession) -> list[Alert]:
        """Fire/resolve freshness alerts now; returns what was written."""
        with self.lock:
            self._seed(session)
            assert self.open is not None
            changes = freshness_transitions(dict(self.last_written), self.open, self.contracts, self.clock())
        self.sink.write(session, changes)
        return changes


class KpiDetector:
    """``foreachBatch`` writer of ``detect_kpi`` (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        contracts: KpiContracts,
        options: DetectOptions,
        sink: AlertSink,
        watchdog: FreshnessWatchdog,
        finality_delay: timedelta = timedelta(0),
    ) -> None:
        """``finality_delay``: gold's (:func:`spark_jobs.gold.finality_delay`), which places
        its newest processed arrival after the watermark its rows carry."""
        from models.champion import ChampionWatcher, load_anomaly_version, resolve_settings_uri

        self.settings = settings
        self.contracts = contracts
        self.options = options
        self.sink = sink
        self.watchdog = watchdog
        uri = options.tracking_uri or resolve_settings_uri(settings.mlflow.tracking_uri)
        self.watcher = ChampionWatcher(
            settings.mlflow.anomaly_model, uri, load_anomaly_version, alias=options.alias,
            check_seconds=options.alias_check_seconds,
        )  # fmt: skip
        self.state: DetectorState | None = None
        self.snapshots: DetectorSnapshots | None = None
        self.scored_points = 0
        self.modelled = {k for k, c in contracts.kpis.items() if c.anomaly_detection}
        # KPIs summed over tumbling 1-minute windows: a final window is a complete count
        # (exposure 1) for the model's count tests; sliding rollups are not tested
        self.tumbling_counts = {k: c.kind == "measure" for k, c in contracts.kpis.items()}
        self.counts = {k for k, tumbling in self.tumbling_counts.items() if tumbling}
        self.finality_delay = finality_delay
        from lakehouse.campaigns import CampaignCalendar

        self.calendar = CampaignCalendar.load()

    # -- state

    def _restore(self, session: SparkSession, batch_id: int) -> DetectorState:
        self.snapshots = DetectorSnapshots(session, f"{checkpoint_location(self.settings, DETECT_QUERY)}/scorer_state")
        found = self.snapshots.restore(batch_id)
        if found is not None:
            batch, state = found
            log.info("detect: restored the state of batch %s (scorer of batch %s, model version %s)", batch, state.scorer_batch, state.model_version)
            return state
        seeded = self.sink.open_alerts(session, [RULE_MODEL, RULE_MODEL_OPEN, RULE_MIN, RULE_MAX])
        book = AlertBook(open={(series_key(a.kpi, a.grain, a.dimension), a.rule): a for a in seeded})
        return DetectorState(book=book)

    def _follow_champion(self, session: SparkSession, state: DetectorState) -> bool:
        version = self.watcher.version()
        if version is None or version == state.model_version:
            return False
        scorer = self.watcher.load(version)
        warmed = self.warm(session, scorer, state.cursor)
        log.info("detect: now scoring with version %s (warmed on %d history points)", version, warmed)
        state.use_scorer(scorer, version)
        return True

    def warm(self, session: SparkSession, scorer: Any, cursor: dict[str, float]) -> int:
        """Replay the final ``gold.kpi`` rows a newly loaded model has not seen, per live
        series: after the model's last timestamp of it, up to the cursor, within the horizon."""
        modelled = {k: t for k, t in cursor.items() if k.split("|", 1)[0] in self.modelled}
        if not modelled:
            return 0
        horizon = self.options.warmup_horizon.total_seconds()
        lows: dict[str, float] = {}
        for key, upto in modelled.items():
            low = upto - horizon
            if scorer.state is not None and scorer.state.has(key):
                last = scorer.state.last_t[scorer.state.index_of([key])[0]]
                low = max(low, float(last)) if np.isfinite(last) else low
            if low < upto:
                lows[key] = low
        if not lows:
            return 0
        since = datetime.fromtimestamp(min(lows.values()), UTC)
        history = (
            read_table(session, self.settings, KPI_TABLE)
            .where(F.col("is_final") & (F.col("window_start") > F.lit(since)) & F.col("kpi").isin(sorted(self.modelled)))
            .select(*POINT_COLUMNS)
        )
        frame = history.toArrow().to_pandas()
        if frame.empty:
            return 0
        # An append-only gold.kpi may hold a restated final window twice: the latest wins.
        frame = frame.sort_values("computed_at", kind="stable").drop_duplicates(list(KPI_KEY), keep="last")
        frame = keyed(frame)
        low = frame["series_key"].map(lows).astype(float).to_numpy()
        high = frame["series_key"].map(modelled).astype(float).to_numpy()
        frame = frame[(frame["t"].to_numpy() > low) & (frame["t"].to_numpy() <= high)]
        frame = frame.sort_values(["series_key", "t"], kind="stable")
        if len(frame):
            history = frame[["window_start", "value", "series_key", "numerator", "denominator"]].rename(columns={"window_start": "timestamp"})
            # a final window of a tumbling count is complete: the count tests learn it as the
            # live path will score it (without it they would wait for an hour of live windows)
            history[EXPOSURE] = np.where(frame["kpi"].isin(self.counts).to_numpy(), 1.0, np.nan)
            scorer.score(history)
        return len(frame)

    # -- one micro-batch

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        session = batch.sparkSession
        if self.state is None:
            self.state = self._restore(session, batch_id)
        state = self.state
        rows = latest_kpi_changes(batch).toArrow().to_pandas()
        if not rows.empty:
            written = rows.groupby("kpi")["computed_at"].max()
            self.watchdog.observe({k: _utc(v) for k, v in written.items()})
        switched = self._follow_champion(session, state)
        now = self.options.clock()
        watermark = windows.newest_watermark(rows)
        if watermark is not None and (state.watermark is None or watermark > state.watermark):
            state.watermark = watermark
        points = new_points(rows, state.cursor)
        points = windows.with_empty_final_windows(
            points, windows.followed_counts(state.cursor, self.counts), state.watermark, now, state.views
        )
        scores = self.score(state, points)
        apply_rules(state.book, points, scores, self.contracts, state.model_version, now)
        if len(points):
            last = points.groupby("series_key")["t"].max()
            state.cursor.update({k: float(v) for k, v in last.items()})
        opened = self.open_windows(state, rows, now)
        if state.scorer is not None and len(opened):
            from models.kpi_scoring import score_open

            apply_open_rule(state.book, opened, score_open(state.scorer, opened, self.calendar), state.model_version, now)
        changes = state.book.take_changes()
        self.sink.write(session, changes, DETECT_QUERY, batch_id)
        self.scored_points += len(points)
        if len(rows) or len(points) or switched or changes:
            assert self.snapshots is not None
            self.snapshots.save(state, batch_id)
        self.watchdog.check(session)

    def open_windows(self, state: DetectorState, rows: pd.DataFrame, now: datetime) -> pd.DataFrame:
        """The open windows of modelled KPIs to score this batch: every window not final yet
        (its latest image, changed in this batch or not) and the empty minutes of followed
        counts, elapsed up to gold's frontier (:mod:`spark_jobs.detect_windows`)."""
        modelled = keyed(rows[rows["kpi"].isin(self.modelled).to_numpy() & ~rows["is_final"].astype(bool).to_numpy()])
        state.views = windows.carry_open_views(state.views, modelled, state.cursor, state.watermark)
        frontier = windows.frontier_of(state.watermark, self.finality_delay)
        follow = windows.followed_counts(state.cursor, self.counts & self.modelled)
        candidates = windows.with_empty_open_windows(state.views, follow, state.watermark, frontier, now)
        if candidates.empty:
            return open_points(rows.iloc[0:0], state.cursor, self.contracts)
        return open_points(candidates, state.cursor, self.contracts, frontier)

    def score(self, state: DetectorState, points: pd.DataFrame) -> pd.DataFrame | None:
        """Model outputs for the points of KPIs with anomaly detection on (others NaN)."""
        if state.scorer is None or points.empty:
            return None
        modelled = points["kpi"].isin(self.modelled).to_numpy()
        out = pd.DataFrame(np.nan, index=points.index, columns=["expected", "lower", "upper", "anomaly_score", "confidence"])
        out["is_anomaly"] = False
        if modelled.any():
            from models.kpi_scoring import score_final

            subset = points[modelled]
            frame = pd.DataFrame(
                {"timestamp": subset["window_start"], "value": subset["value"].astype(float),
                 "series_key": subset["series_key"], "kpi": subset["kpi"],
                 "numerator": subset["numerator"].astype(float), "denominator": subset["denominator"].astype(float),
                 "additive": subset["kpi"].map(self.tumbling_counts).fillna(False).astype(bool)}
            )  # fmt: skip
            scored = score_final(state.scorer, frame, self.calendar)
            state.scorer_changed = True  # it learnt these windows
            for column in scored.columns:
                out.loc[subset.index, column] = scored[column].to_numpy()
        return out


# -- run -----------------------------------------------------------------------------------------


def run(
    spark: SparkSession,
    settings: Settings,
    catalog: Catalog,
    contracts: KpiContracts,
    available_now: bool = False,
    options: DetectOptions | None = None,
) -> list[StreamingQuery]:
    """Start ``detect_kpi`` (change feed of ``gold.kpi`` → ``gold.alerts``) and, unless
    ``available_now``, the ``detect_freshness`` ticker.

    Raises:
        RuntimeError: ``gold.kpi`` does not record its changes (call
            :func:`ensure_detect_tables` before the queries start).
    """
    options = options or DetectOptions()
    ensure_table(spark, settings, ALERTS_TABLE, ALERTS_SCHEMA)
    if not change_feed_enabled(spark, settings):
        raise RuntimeError(
            f"{KPI_TABLE} has no change data feed: create it with {CHANGE_FEED_PROPERTY}=true or call "
            "spark_jobs.detect.ensure_detect_tables() before starting the queries"
        )
    sink = AlertSink(settings)
    watchdog = FreshnessWatchdog(settings, contracts, sink, options.clock)
    from lakehouse.catalog import catalog as load_catalog
    from spark_jobs.gold import finality_delay

    delay = finality_delay(catalog or load_catalog(), settings)
    detector = KpiDetector(settings, contracts, options, sink, watchdog, finality_delay=delay)
    trigger = options.trigger_seconds or settings.streaming.side_trigger_seconds
    queries = [
        start_foreach_batch(read_kpi_changes(spark, settings), settings, DETECT_QUERY, detector, trigger, available_now=available_now)
    ]
    if not available_now:
        ticks = spark.readStream.format("rate").option("rowsPerSecond", 1).load()
        queries.append(
            start_foreach_batch(
                ticks, settings, FRESHNESS_QUERY, lambda batch, _id: watchdog.check(batch.sparkSession),
                options.freshness_check_seconds,
            )  # fmt: skip
        )
    return queries


__all__ = [
    "DETECT_QUERY",
    "DetectOptions",
    "FRESHNESS_QUERY",
    "KpiDetector",
    "apply_open_rule",
    "apply_rules",
    "ensure_detect_tables",
    "enable_kpi_change_feed",
    "freshness_transitions",
    "latest_kpi_changes",
    "new_points",
    "open_points",
    "run",
    "series_key",
    "threshold_outcomes",
]

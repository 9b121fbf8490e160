"""The ``act`` job: action policies evaluated in the stream (alerts, scores, silver in; proposals out).

A ``foreachBatch`` query over ``silver.events``: each micro-batch moves the stream's event-time
clock (its newest event) and triggers one evaluation of every policy of ``conf/actions.yaml``
over the evidence of that moment — firing ``gold.alerts``, recent ``gold.refund_risk`` scores,
recent ad, order and inventory rows of silver (bounded reads: the longest policy window). The
guardrails then decide, and the proposals go to ``ops.action_requests`` by an insert-only MERGE
on their idempotency key, so a replayed micro-batch or a restarted query proposes nothing
twice. Nothing is executed here: the action worker (``trivas actions work``) does that outside
Spark, so a slow platform never stalls a query.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from lakehouse.actions.config import (
    ActionsConfig,
    ModelScoreTrigger,
    RuleTrigger,
    load_actions_config,
)
from lakehouse.actions.engine import ProposalBook
from lakehouse.actions.store import ACT_WRITER
from lakehouse.actions.triggers import Evidence
from lakehouse.alerts.lifecycle import ALERTS_TABLE
from lakehouse.catalog import Catalog
from lakehouse.config import Settings
from lakehouse.registry import SILVER_EVENTS
from lakehouse.tables import read_table, table_exists
from spark_jobs.io import read_delta_stream, start_foreach_batch

log = logging.getLogger("trivas.act")
ACT_QUERY = ACT_WRITER  # the query that writes ops.action_requests
DOMAINS = ("ads", "orders", "inventory")
COLUMNS = {
    "ad_events": ["event_type", "event_time", "campaign_id", "channel", "amount"],
    "orders": ["event_type", "event_time", "order_id", "campaign_id"],
    "inventory": ["event_time", "sku", "warehouse", "delta", "stock_after", "reason"],
}
ALERT_COLUMNS = ["alert_id", "kpi", "rule", "state", "dimension", "window_start", "confidence", "observed", "expected"]
SCORE_COLUMNS = ["order_id", "event_time", "refund_risk", "model_version"]


def lookback(config: ActionsConfig) -> timedelta:
    """The longest window any policy looks back over."""
    windows = [p.trigger.window for p in config.policies if isinstance(p.trigger, RuleTrigger | ModelScoreTrigger)]
    return max(windows, default=timedelta(minutes=30))


def stream_clock(batch: DataFrame) -> datetime | None:
    """The newest event time of a micro-batch (None when it is empty)."""
    # In microseconds: Python datetimes from Spark are naive, in the driver's local zone.
    newest = batch.agg(F.unix_micros(F.max("event_time")).alias("newest")).first()
    if newest is None or newest["newest"] is None:
        return None
    return datetime.fromtimestamp(newest["newest"] / 1e6, tz=UTC)


def _pandas(frame: DataFrame) -> pd.DataFrame:
    return frame.toArrow().to_pandas()


def collect_evidence(spark: SparkSession, settings: Settings, catalog: Catalog, now: datetime, since: datetime) -> Evidence:
    """The evidence of one evaluation: bounded batch reads of silver and gold."""
    evidence = Evidence(now=now)
    if table_exists(spark, settings, SILVER_EVENTS):
        for name, domain in (("ad_events", "ads"), ("orders", "orders"), ("inventory", "inventory")):
            table = f"silver.{catalog.domains[domain].table}"
            rows = read_table(spark, settings, table).where(F.col("event_time") > F.lit(since)).select(*COLUMNS[name])
            setattr(evidence, name, _pandas(rows))
    if table_exists(spark, settings, ALERTS_TABLE):
        alerts = read_table(spark, settings, ALERTS_TABLE).where("state = 'firing'").select(*ALERT_COLUMNS)
        evidence.alerts = _pandas(alerts)
    if table_exists(spark, settings, "gold.refund_risk"):
        scores = read_table(spark, settings, "gold.refund_risk").where(F.col("event_time") > F.lit(since))
        columns = SCORE_COLUMNS + (["reason"] if "reason" in scores.columns else [])
        evidence.scores = _pandas(scores.select(*columns))
    return evidence


class PolicyEvaluation:
    """``foreachBatch`` of ``act_policies``: one evaluation per micro-batch."""

    def __init__(self, settings: Settings, catalog: Catalog, config: ActionsConfig,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:  # fmt: skip
        self.settings = settings
        self.catalog = catalog
        self.config = config
        self.clock = clock
        self.book = ProposalBook(settings)
        self.window = lookback(config)

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        now = stream_clock(batch)
        if now is None:
            return
        evidence = collect_evidence(batch.sparkSession, self.settings, self.catalog, now, now - self.window)
        processed_at = self.clock()
        evaluation = self.book.evaluate(self.config, evidence, processed_at)
        proposed = sum(1 for r in evaluation.rows if r.status == "proposed")
        if evaluation.rows:
            log.info("act batch %d: %d proposed, %d suppressed, dropped %s; newest event → proposal %.1fs",
                     batch_id, proposed, len(evaluation.rows) - proposed, dict(evaluation.dropped),
                     (processed_at - now).total_seconds())  # fmt: skip


def run(
    spark: SparkSession, settings: Settings, catalog: Catalog, available_now: bool = False,
    config: ActionsConfig | None = None, clock: Callable[[], datetime] | None = None,
) -> list[StreamingQuery]:  # fmt: skip
    """Start ``act_policies`` (``silver.events`` → ``ops.action_requests``)."""
    config = config or load_actions_config()
    evaluation = PolicyEvaluation(settings, catalog, config, *([clock] if clock else []))
    events = read_delta_stream(spark, settings, SILVER_EVENTS).where(F.col("domain").isin(*DOMAINS)).select("event_time")
    every = config.evaluation.trigger
    trigger = every.total_seconds() if every is not None else settings.streaming.side_trigger_seconds
    return [start_foreach_batch(events, settings, ACT_QUERY, evaluation, trigger, available_now=available_now)]

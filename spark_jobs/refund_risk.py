"""Refund risk in the stream: every placed order of ``silver.orders`` scored into ``gold.refund_risk``.

The refund-risk champion (``models:/<settings.mlflow.refund_model>@champion``) scores each
micro-batch of new ``order_placed`` rows on the driver (pandas; a micro-batch is a few hundred
orders). Features are order-time only (:func:`models.refund_risk.build_order_features`): the
basket, calendar, country, the model's training priors and the customer's earlier orders in
the same micro-batch. The alias is followed as in the detect job: a moved champion scores
from the next micro-batch on, without restarting the query.

Exactly once: silver deduplicates events, the batch is deduplicated by ``order_id``, and the
append carries ``txnAppId``/``txnVersion`` so a replayed micro-batch is skipped by Delta
(an append, not a MERGE by ``order_id``: a MERGE would scan the whole table every batch).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.streaming import StreamingQuery

from lakehouse.catalog import Catalog
from lakehouse.config import Settings
from lakehouse.contracts import KpiContracts
from lakehouse.tables import ensure_table, qualified, read_table
from spark_jobs.io import WriterIdentity, append_idempotent, read_delta_stream, start_foreach_batch

log = logging.getLogger("trivas.refund_risk")

REFUND_RISK_TABLE = "gold.refund_risk"
REFUND_RISK_QUERY = "gold_refund_risk"
ORDER_COLUMNS = ["order_id", "customer_id", "event_time", "amount", "country", "items"]
REFUND_RISK_SCHEMA = T.StructType(
    [
        T.StructField("order_id", T.StringType(), False),
        T.StructField("event_time", T.TimestampType(), False),
        T.StructField("refund_risk", T.DoubleType(), False),
        T.StructField("review", T.BooleanType(), False),
        T.StructField("model_version", T.StringType(), False),
        T.StructField("scored_at", T.TimestampType(), False),
        # The model's top feature group (models.refund_risk.REASON_GROUPS): the review queue's reason.
        T.StructField("reason", T.StringType(), True),
    ]
)


@dataclass(frozen=True)
class RefundRiskOptions:
    """Knobs of the refund-risk job.

    Attributes:
        alias: Registry alias scored with.
        alias_check_seconds: Minimum seconds between two look-ups of the alias.
        trigger_seconds: Trigger of the query (default: the gold trigger).
        tracking_uri: MLflow URI (default: ``settings.mlflow.tracking_uri``).
        clock: Processing time for ``scored_at``.
    """

    alias: str = "champion"
    alias_check_seconds: float = 30.0
    trigger_seconds: float | None = None
    tracking_uri: str | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


def placed_orders(orders: DataFrame) -> DataFrame:
    """``silver.orders`` rows → the placed orders in the model's input shape, one per order_id."""
    return (
        orders.where(F.col("event_type") == "order_placed")
        .select(*ORDER_COLUMNS)
        .dropDuplicates(["order_id"])
    )


def score_orders(model, orders: pd.DataFrame, model_version: str, scored_at: datetime) -> pd.DataFrame:  # noqa: ANN001 - RefundModel
    """Score placed orders (pure: a model and a frame in, ``gold.refund_risk`` rows out).

    Args:
        model: :class:`models.refund_risk.RefundModel`.
        orders: ``ORDER_COLUMNS``; ``items`` as a list of ``{sku, quantity, unit_price}``.
        model_version: Registry version of ``model``.
        scored_at: Processing time.
    """
    if orders.empty:
        return pd.DataFrame(columns=REFUND_RISK_SCHEMA.fieldNames())
    frame = orders.reset_index(drop=True).copy()
    frame["items"] = [_items(v) for v in frame["items"]]
    frame["country"] = frame["country"].astype("string")
    scores = model.score(frame, with_reasons=True)
    return pd.DataFrame(
        {
            "order_id": frame["order_id"].astype(str),
            "event_time": pd.to_datetime(frame["event_time"], utc=True),
            "refund_risk": scores["refund_risk"].astype(float).to_numpy(),
            "review": scores["review"].astype(bool).to_numpy(),
            "model_version": model_version,
            "scored_at": scored_at,
            "reason": scores["reason"].astype(str).to_numpy(),
        }
    )


def _items(value) -> list[dict]:  # noqa: ANN001 - list of dicts, numpy array of dicts or JSON
    if value is None:
        return []
    if isinstance(value, str):
        return json.loads(value)
    return [dict(item) for item in value]


def ensure_refund_risk_table(spark: SparkSession, settings: Settings) -> None:
    """Create ``gold.refund_risk`` if it does not exist, and add the columns a table created
    by an earlier version lacks (``reason``)."""
    ensure_table(spark, settings, REFUND_RISK_TABLE, REFUND_RISK_SCHEMA)
    present = set(read_table(spark, settings, REFUND_RISK_TABLE).columns)
    missing = [f for f in REFUND_RISK_SCHEMA.fields if f.name not in present]
    if missing:
        columns = ", ".join(f"{f.name} {f.dataType.simpleString()}" for f in missing)
        spark.sql(f"ALTER TABLE {qualified(settings, REFUND_RISK_TABLE)} ADD COLUMNS ({columns})")


class RefundRiskWriter:
    """``foreachBatch`` writer of ``gold_refund_risk``."""

    def __init__(self, settings: Settings, options: RefundRiskOptions) -> None:
        from models.champion import ChampionWatcher, load_refund_version, resolve_settings_uri

        uri = options.tracking_uri or resolve_settings_uri(settings.mlflow.tracking_uri)
        self.settings = settings
        self.options = options
        self.watcher = ChampionWatcher(
            settings.mlflow.refund_model, uri, load_refund_version, alias=options.alias,
            check_seconds=options.alias_check_seconds,
        )  # fmt: skip
        self.model = None
        self.version: str | None = None
        self.identity = WriterIdentity(settings, REFUND_RISK_QUERY)

    def ensure_model(self) -> None:
        """Load the champion, or the new one when the alias has moved."""
        version = self.watcher.version(force=self.model is None)
        if version is None:
            if self.model is None:
                raise LookupError(
                    f"no version of {self.settings.mlflow.refund_model!r} has alias {self.options.alias!r}; "
                    "run `trivas model bootstrap`"
                )
            return
        if version != self.version:
            self.model, self.version = self.watcher.load(version), version
            log.info("refund risk: scoring with version %s", version)

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        self.ensure_model()
        orders = placed_orders(batch).toArrow().to_pandas()
        if orders.empty:
            return
        assert self.version is not None
        scored = score_orders(self.model, orders, self.version, self.options.clock())
        rows = zip(
            scored["order_id"].tolist(), [t.to_pydatetime() for t in scored["event_time"]],
            scored["refund_risk"].astype(float).tolist(), scored["review"].astype(bool).tolist(),
            scored["model_version"].tolist(), [t.to_pydatetime() for t in scored["scored_at"]], scored["reason"].tolist(),
            strict=True,
        )  # fmt: skip
        frame = batch.sparkSession.createDataFrame(list(rows), REFUND_RISK_SCHEMA)
        append_idempotent(frame, self.settings, REFUND_RISK_TABLE, self.identity.app_id(batch.sparkSession), batch_id)


def run(
    spark: SparkSession,
    settings: Settings,
    catalog: Catalog,
    contracts: KpiContracts | None = None,
    available_now: bool = False,
    options: RefundRiskOptions | None = None,
) -> list[StreamingQuery]:
    """Start ``gold_refund_risk`` (``silver.orders`` → ``gold.refund_risk``).

    Raises:
        LookupError: No refund-risk champion is registered (``trivas model bootstrap``).
    """
    options = options or RefundRiskOptions()
    ensure_refund_risk_table(spark, settings)
    writer = RefundRiskWriter(settings, options)
    writer.ensure_model()  # fail at start, not in the first batch
    orders = read_delta_stream(spark, settings, f"silver.{catalog.domains['orders'].table}")
    trigger = options.trigger_seconds or settings.streaming.side_trigger_seconds
    return [start_foreach_batch(orders, settings, REFUND_RISK_QUERY, writer, trigger, available_now=available_now)]


__all__ = [
    "REFUND_RISK_QUERY",
    "REFUND_RISK_SCHEMA",
    "REFUND_RISK_TABLE",
    "RefundRiskOptions",
    "RefundRiskWriter",
    "ensure_refund_risk_table",
    "placed_orders",
    "run",
    "score_orders",
]

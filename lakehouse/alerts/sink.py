"""The writer of ``gold.alerts``: a MERGE of alert rows by ``alert_id`` (Spark).

The detect job's queries and the pipeline's health reporter write alerts through it; a
``foreachBatch`` caller passes its ``txnAppId``/``txnVersion`` so a replayed micro-batch is a
no-op. The router reads the table (:mod:`lakehouse.alerts.store`); nothing else writes it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.alerts.lifecycle import ALERTS_SCHEMA, ALERTS_TABLE, FIRING, Alert
from lakehouse.config import Settings
from lakehouse.tables import delta_table, read_table


def _utc(value: Any) -> datetime:
    moment = pd.Timestamp(value)
    moment = moment.tz_localize(UTC) if moment.tzinfo is None else moment.tz_convert(UTC)
    return moment.to_pydatetime()


def _set_txn(session: SparkSession, app_id: str | None, version: int | None) -> None:
    # Delta reads the idempotent-write pair from the session conf. A query's session is
    # cloned from the root session at start, possibly while another job had set its own pair:
    # always set or clear both explicitly.
    for key, value in (("spark.databricks.delta.write.txnAppId", app_id), ("spark.databricks.delta.write.txnVersion", version)):
        if value is None:
            session.conf.unset(key)
        else:
            session.conf.set(key, str(value))


class AlertSink:
    """MERGE of alert rows into ``gold.alerts`` by ``alert_id`` (serialised across every sink
    of the process: the detect and freshness queries and the pipeline's job health all write
    alerts, and two concurrent MERGEs would conflict)."""

    lock = threading.Lock()

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def write(self, session: SparkSession, alerts: list[Alert], app_id: str | None = None, version: int | None = None) -> None:
        if not alerts:
            return
        frame = session.createDataFrame([a.as_row() for a in alerts], ALERTS_SCHEMA)
        keep = {"first_seen_at"}
        updates = {c: f"s.{c}" for c in ALERTS_SCHEMA.fieldNames() if c not in keep}
        with self.lock:
            _set_txn(session, app_id, version)
            try:
                (
                    delta_table(session, self.settings, ALERTS_TABLE).alias("t")
                    .merge(frame.alias("s"), "t.alert_id = s.alert_id")
                    .whenMatchedUpdate(set=updates)
                    .whenNotMatchedInsertAll()
                    .execute()
                )  # fmt: skip
            finally:
                _set_txn(session, None, None)

    def open_alerts(self, session: SparkSession, rules: Iterable[str]) -> list[Alert]:
        """Firing alerts of some rules (seed after a restart without a snapshot)."""
        rows = (
            read_table(session, self.settings, ALERTS_TABLE)
            .where((F.col("state") == FIRING) & F.col("rule").isin(list(rules)))
            .collect()
        )
        out = []
        for row in rows:
            data = row.asDict()
            for name in ("window_start", "window_end", "first_seen_at", "updated_at"):
                data[name] = _utc(data[name])
            out.append(Alert(**data))
        return out

"""The router's tables, read and written with delta-rs (no JVM in the router process).

- ``ops.notifications`` (writer: the router, :data:`ROUTER_WRITER`): the audit trail. Lifecycle
  rows (receiver ``*``: ``firing`` when the router first sees an alert, ``acknowledged``,
  ``resolved``) and one row per delivery attempt: receiver, event, status (``sending``,
  ``delivered``, ``retrying``, ``failed``, ``abandoned``; ``silenced``/``inhibited`` for muted
  alerts, with the reason), the HTTP status or SMTP reply code, the attempt and retry count.
  No secret ever goes in: rows carry receiver names, never URLs, keys or addresses.
- ``ops.alert_commands`` (writer: :data:`COMMANDS_WRITER`, the ``trivas alerts`` CLI):
  acknowledgements, silences and their removal; the router reads them every tick.
- ``gold.alerts`` is read as it is (the detect job MERGEs it), re-read only when its version moved.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pyarrow as pa
from pyspark.sql import types as T

from lakehouse.alerts.config import Matcher, parse_matcher
from lakehouse.alerts.dispatch import Ack, Delivered, delivery_key
from lakehouse.alerts.lifecycle import ALERTS_SCHEMA, ALERTS_TABLE, Alert
from lakehouse.alerts.routing import Silence
from lakehouse.config import Settings
from lakehouse.tables import table_path

NOTIFICATIONS = "ops.notifications"
ALERT_COMMANDS = "ops.alert_commands"
ROUTER_WRITER = "alert_router"
COMMANDS_WRITER = "alert_commands"
LIFECYCLE_RECEIVER = "*"
SENDING, DELIVERED, RETRYING, FAILED, ABANDONED = "sending", "delivered", "retrying", "failed", "abandoned"
SILENCED, INHIBITED = "silenced", "inhibited"
ACK, SILENCE, UNSILENCE = "ack", "silence", "unsilence"

NOTIFICATIONS_SCHEMA = T.StructType(
    [
        T.StructField("notification_id", T.StringType(), False),
        T.StructField("alert_id", T.StringType(), False),
        T.StructField("receiver", T.StringType(), False),
        T.StructField("route", T.StringType(), True),
        T.StructField("event", T.StringType(), False),
        T.StructField("status", T.StringType(), False),
        T.StructField("response_code", T.IntegerType(), True),
        T.StructField("attempt", T.IntegerType(), False),
        T.StructField("retry_count", T.IntegerType(), False),
        T.StructField("delivery_key", T.StringType(), True),
        T.StructField("detail", T.StringType(), True),
        T.StructField("recorded_at", T.TimestampType(), False),
    ]
)
COMMANDS_SCHEMA = T.StructType(
    [
        T.StructField("command_id", T.StringType(), False),
        T.StructField("kind", T.StringType(), False),
        T.StructField("alert_id", T.StringType(), True),
        T.StructField("silence_id", T.StringType(), True),
        T.StructField("matchers", T.StringType(), True),
        T.StructField("author", T.StringType(), False),
        T.StructField("reason", T.StringType(), True),
        T.StructField("starts_at", T.TimestampType(), True),
        T.StructField("ends_at", T.TimestampType(), True),
        T.StructField("source", T.StringType(), False),
        T.StructField("created_at", T.TimestampType(), False),
    ]
)
_ARROW = {
    T.StringType: pa.string(),
    T.IntegerType: pa.int32(),
    T.LongType: pa.int64(),
    T.DoubleType: pa.float64(),
    T.BooleanType: pa.bool_(),
    T.TimestampType: pa.timestamp("us", tz="UTC"),
}


def arrow_schema(schema: T.StructType) -> pa.Schema:
    """The Arrow schema delta-rs writes for a declared Spark schema."""
    return pa.schema([pa.field(f.name, _ARROW[type(f.dataType)], f.nullable) for f in schema.fields])


@dataclass(frozen=True)
class NotificationRow:
    notification_id: str
    alert_id: str
    receiver: str
    route: str | None
    event: str
    status: str
    response_code: int | None
    attempt: int
    detail: str | None = None
    recorded_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "notification_id": self.notification_id, "alert_id": self.alert_id, "receiver": self.receiver,
            "route": self.route, "event": self.event, "status": self.status, "response_code": self.response_code,
            "attempt": self.attempt, "retry_count": max(self.attempt - 1, 0),
            "delivery_key": delivery_key(self.alert_id, self.receiver, self.event),
            "detail": self.detail, "recorded_at": self.recorded_at or datetime.now(UTC),
        }  # fmt: skip


class DeltaLog:
    """An append-only Delta table written with delta-rs (created on first use)."""

    def __init__(self, settings: Settings, logical: str, schema: T.StructType) -> None:
        self.location = table_path(settings, logical)
        self.spark_schema = schema
        self.lock = threading.Lock()
        self._table: Any = None
        self._cache: tuple[int, pd.DataFrame] | None = None

    def append(self, rows: list[dict[str, Any]]) -> None:
        from deltalake import write_deltalake

        if not rows:
            return
        frame = pa.Table.from_pylist(rows, schema=arrow_schema(self.spark_schema))
        with self.lock:
            write_deltalake(self.location, frame, mode="append")

    def table(self) -> Any:
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        try:
            if self._table is None:
                self._table = DeltaTable(self.location)
            else:
                self._table.update_incremental()
        except TableNotFoundError:
            return None
        return self._table

    def version(self) -> int | None:
        table = self.table()
        return None if table is None else table.version()

    def read(self) -> pd.DataFrame:
        """The whole table (re-read only when its version moved; callers must not modify it)."""
        table = self.table()
        if table is None:
            return pd.DataFrame({name: pd.Series(dtype=object) for name in self.spark_schema.fieldNames()})
        version = table.version()
        if self._cache is None or self._cache[0] != version:
            self._cache = (version, table.to_pyarrow_table().to_pandas())
        return self._cache[1]


class NotificationLog(DeltaLog):
    """``ops.notifications``."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, NOTIFICATIONS, NOTIFICATIONS_SCHEMA)

    def record(self, rows: Iterable[NotificationRow]) -> None:
        self.append([r.as_dict() for r in rows])

    def delivered(self) -> Delivered:
        """What was sent before (seeds the dispatcher after a restart).

        A key counts as sent unless its latest row proves it was not accepted (waiting for a
        retry after a refusal with a code: HTTP 429/5xx, SMTP 4xx): those are sent again. A key
        whose outcome is unknown (the router died mid-send, or the last attempt timed out) is
        not, so nothing is sent twice.
        """
        frame = self.read()
        out = Delivered()
        attempts = frame[frame["receiver"] != LIFECYCLE_RECEIVER]
        attempts = attempts[~attempts["status"].isin([SILENCED, INHIBITED])]
        if attempts.empty:
            return out
        latest = attempts.sort_values("recorded_at", kind="stable").groupby("delivery_key").tail(1)
        refused = (latest["status"] == RETRYING) & latest["response_code"].notna()
        for row in latest[~refused].itertuples(index=False):
            out.add(row.alert_id, row.receiver, row.event, row.recorded_at.to_pydatetime())
        return out

    def lifecycle_seen(self) -> set[tuple[str, str]]:
        """(alert id, lifecycle state) rows already written."""
        frame = self.read()
        rows = frame[frame["receiver"] == LIFECYCLE_RECEIVER]
        return set(zip(rows["alert_id"], rows["status"], strict=True))


class CommandLog(DeltaLog):
    """``ops.alert_commands``: acknowledgements and silences."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, ALERT_COMMANDS, COMMANDS_SCHEMA)

    def ack(self, alert_id: str, author: str, source: str = "cli", at: datetime | None = None) -> str:
        command = self._row(ACK, author, source, at, alert_id=alert_id)
        self.append([command])
        return command["command_id"]

    def silence(
        self, matchers: list[Matcher], author: str, reason: str, ends_at: datetime, starts_at: datetime | None = None,
        at: datetime | None = None,
    ) -> str:  # fmt: skip
        if not matchers:
            raise ValueError("a silence needs at least one matcher")
        silence_id = f"s-{uuid.uuid4().hex[:10]}"
        now = at or datetime.now(UTC)
        self.append(
            [
                self._row(
                    SILENCE, author, "cli", now, silence_id=silence_id, matchers=json.dumps([str(m) for m in matchers]),
                    reason=reason, starts_at=starts_at or now, ends_at=ends_at,
                )  # fmt: skip
            ]
        )
        return silence_id

    def unsilence(self, silence_id: str, author: str, at: datetime | None = None) -> None:
        if silence_id not in {s.id for s in self.silences(include_expired=True)}:
            raise KeyError(f"no silence {silence_id!r}")
        self.append([self._row(UNSILENCE, author, "cli", at, silence_id=silence_id)])

    @staticmethod
    def _row(kind: str, author: str, source: str, at: datetime | None, **values: Any) -> dict[str, Any]:
        return {"command_id": uuid.uuid4().hex, "kind": kind, "author": author, "source": source, "created_at": at or datetime.now(UTC), **values}

    def acks(self) -> dict[str, Ack]:
        frame = self.read()
        rows = frame[frame["kind"] == ACK].sort_values("created_at", kind="stable")
        out: dict[str, Ack] = {}
        for row in rows.itertuples(index=False):
            out.setdefault(row.alert_id, Ack(row.alert_id, row.author, row.created_at.to_pydatetime(), row.source))
        return out

    def silences(self, include_expired: bool = False, now: datetime | None = None) -> list[Silence]:
        frame = self.read()
        removed = set(frame.loc[frame["kind"] == UNSILENCE, "silence_id"])
        rows = frame[(frame["kind"] == SILENCE) & ~frame["silence_id"].isin(removed)]
        now = now or datetime.now(UTC)
        out = []
        for row in rows.itertuples(index=False):
            silence = Silence(
                row.silence_id, tuple(parse_matcher(m) for m in json.loads(row.matchers)), row.author, row.reason or "",
                row.starts_at.to_pydatetime(), row.ends_at.to_pydatetime(),
            )  # fmt: skip
            if include_expired or silence.ends_at > now:
                out.append(silence)
        return out


class AlertReader:
    """``gold.alerts`` rows as :class:`Alert` objects (re-read only when the table moved)."""

    def __init__(self, settings: Settings) -> None:
        self.log = DeltaLog(settings, ALERTS_TABLE, ALERTS_SCHEMA)
        self._version: int | None = None
        self._alerts: list[Alert] = []

    def alerts(self) -> list[Alert]:
        version = self.log.version()
        if version is None or version == self._version:
            return self._alerts
        frame = self.log.read()
        self._alerts = [alert_from_row(r) for r in frame.to_dict("records")]
        self._version = version
        return self._alerts


def _moment(value: Any) -> datetime:
    moment = pd.Timestamp(value)
    moment = moment.tz_localize(UTC) if moment.tzinfo is None else moment.tz_convert(UTC)
    return moment.to_pydatetime()


def _optional(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and value != value) else value


def alert_from_row(row: dict[str, Any]) -> Alert:
    data = {name: _optional(row.get(name)) for name in ALERTS_SCHEMA.fieldNames()}
    for name in ("window_start", "window_end", "first_seen_at", "updated_at"):
        data[name] = _moment(data[name])
    for name in ("observed", "expected", "lower", "upper", "score", "confidence"):
        data[name] = None if data[name] is None else float(data[name])
    return Alert(**data)

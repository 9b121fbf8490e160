"""The action tables, read and written with delta-rs (no JVM: the worker, the CLI, the app).

- ``ops.action_requests`` (writer: the act job, :data:`ACT_WRITER`): one row per proposal
  (``proposed``) or suppressed trigger (``suppressed``, with the guardrail's reason), keyed by
  the idempotency key. Written by an insert-only MERGE: a replayed batch adds nothing.
- ``ops.action_commands`` (writer: the approvers, through ``trivas actions`` or the app):
  approve / reject / rollback of a request and the kill switch, each with actor, role and
  reason. The worker checks every command's actor against the accounts again before obeying.
- ``ops.audit_log`` (writer: the action worker, :data:`WORKER_WRITER`): append-only
  (``delta.appendOnly``: Delta refuses UPDATE and DELETE), one row per step — proposed,
  approved / rejected / expired / refused, executing (with the target's previous state),
  executed (with the platform's response) / failed / dry_run, rolled_back / rollback_failed.
  Each row's id is deterministic, and rows go in by insert-only MERGE, so a worker that
  restarts mid-step never writes a step twice.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pyarrow as pa
from pyspark.sql import types as T

from lakehouse.alerts.store import DeltaLog, arrow_schema
from lakehouse.config import Settings

ACTION_REQUESTS, ACTION_COMMANDS, AUDIT_LOG = "ops.action_requests", "ops.action_commands", "ops.audit_log"
ACT_WRITER, COMMANDS_WRITER, WORKER_WRITER = "act_policies", "action_commands", "action_worker"
APPROVE, REJECT, ROLLBACK, KILL_ON, KILL_OFF = "approve", "reject", "rollback", "kill_switch_on", "kill_switch_off"
COMMAND_KINDS = (APPROVE, REJECT, ROLLBACK, KILL_ON, KILL_OFF)

REQUESTS_SCHEMA = T.StructType(
    [
        T.StructField("request_id", T.StringType(), False),
        T.StructField("policy", T.StringType(), False),
        T.StructField("action", T.StringType(), False),
        T.StructField("target", T.StringType(), False),
        T.StructField("window_start", T.TimestampType(), False),
        T.StructField("confidence", T.DoubleType(), False),
        T.StructField("reason", T.StringType(), False),
        T.StructField("evidence", T.StringType(), False),
        T.StructField("status", T.StringType(), False),
        T.StructField("detail", T.StringType(), True),
        T.StructField("dry_run", T.BooleanType(), False),
        T.StructField("needs_approval", T.BooleanType(), False),
        T.StructField("expires_at", T.TimestampType(), True),
        T.StructField("proposed_at", T.TimestampType(), False),
    ]
)
COMMANDS_SCHEMA = T.StructType(
    [
        T.StructField("command_id", T.StringType(), False),
        T.StructField("kind", T.StringType(), False),
        T.StructField("request_id", T.StringType(), True),
        T.StructField("actor", T.StringType(), False),
        T.StructField("role", T.StringType(), False),
        T.StructField("reason", T.StringType(), True),
        T.StructField("source", T.StringType(), False),
        T.StructField("created_at", T.TimestampType(), False),
    ]
)
AUDIT_SCHEMA = T.StructType(
    [
        T.StructField("audit_id", T.StringType(), False),
        T.StructField("request_id", T.StringType(), True),
        T.StructField("policy", T.StringType(), True),
        T.StructField("action", T.StringType(), True),
        T.StructField("target", T.StringType(), True),
        T.StructField("event", T.StringType(), False),
        T.StructField("actor", T.StringType(), False),
        T.StructField("detail", T.StringType(), True),
        T.StructField("previous_state", T.StringType(), True),
        T.StructField("response", T.StringType(), True),
        T.StructField("response_code", T.IntegerType(), True),
        T.StructField("idempotency_key", T.StringType(), True),
        T.StructField("recorded_at", T.TimestampType(), False),
    ]
)
AUDIT_PROPERTIES = {"delta.appendOnly": "true"}
MERGE_ATTEMPTS = 3


class KeyedLog(DeltaLog):
    """A Delta table whose rows go in once per key (insert-only MERGE; created on first use)."""

    def __init__(self, settings: Settings, logical: str, schema: T.StructType, key: str,
                 properties: dict[str, str] | None = None) -> None:  # fmt: skip
        super().__init__(settings, logical, schema)
        self.key = key
        self.properties = properties or {}

    def insert_new(self, rows: list[dict[str, Any]]) -> int:
        """Insert the rows whose key is not in the table yet; returns how many went in."""
        from deltalake import DeltaTable, write_deltalake
        from deltalake.exceptions import CommitFailedError, TableNotFoundError

        if not rows:
            return 0
        frame = pa.Table.from_pylist(rows, schema=arrow_schema(self.spark_schema))
        with self.lock:
            for attempt in range(MERGE_ATTEMPTS):
                try:
                    table = DeltaTable(self.location)
                except TableNotFoundError:
                    write_deltalake(self.location, frame.slice(0, 0), mode="append", configuration=self.properties or None)
                    table = DeltaTable(self.location)
                try:
                    metrics = (
                        table.merge(source=frame, predicate=f"t.{self.key} = s.{self.key}", source_alias="s", target_alias="t")
                        .when_not_matched_insert_all()
                        .execute()
                    )
                    return int(metrics["num_target_rows_inserted"])
                except CommitFailedError:
                    # A concurrent commit (the pipeline's compaction of this table) won: the
                    # MERGE is idempotent, so it runs again on the new version.
                    if attempt == MERGE_ATTEMPTS - 1:
                        raise
                    time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    def insert_new_by(self, rows: list[dict[str, Any]], column: str) -> dict[str, int]:
        """:meth:`insert_new`, counting the rows that went in by ``column``."""
        if not rows:
            return {}
        present = set(self.read()[self.key])
        fresh = [r for r in rows if r[self.key] not in present]
        self.insert_new(rows)
        counts: dict[str, int] = {}
        for row in fresh:
            counts[row[column]] = counts.get(row[column], 0) + 1
        return counts


def requests_log(settings: Settings) -> KeyedLog:
    return KeyedLog(settings, ACTION_REQUESTS, REQUESTS_SCHEMA, "request_id")


def audit_log(settings: Settings) -> KeyedLog:
    return KeyedLog(settings, AUDIT_LOG, AUDIT_SCHEMA, "audit_id", AUDIT_PROPERTIES)


@dataclass(frozen=True)
class Command:
    kind: str
    request_id: str | None
    actor: str
    role: str
    reason: str | None
    source: str
    created_at: datetime
    command_id: str = ""


class CommandLog(DeltaLog):
    """``ops.action_commands``."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, ACTION_COMMANDS, COMMANDS_SCHEMA)

    def add(self, kind: str, actor: str, role: str, request_id: str | None = None, reason: str | None = None,
            source: str = "cli", at: datetime | None = None) -> str:  # fmt: skip
        if kind not in COMMAND_KINDS:
            raise ValueError(f"unknown command {kind!r}; commands: {COMMAND_KINDS}")
        command_id = uuid.uuid4().hex
        self.append([{"command_id": command_id, "kind": kind, "request_id": request_id, "actor": actor, "role": role,
                      "reason": reason, "source": source, "created_at": at or datetime.now(UTC)}])  # fmt: skip
        return command_id

    def commands(self) -> list[Command]:
        frame = self.read().sort_values("created_at", kind="stable")
        return [
            Command(r.kind, None if pd.isna(r.request_id) else r.request_id, r.actor, r.role,
                    None if pd.isna(r.reason) else r.reason, r.source, _moment(r.created_at), r.command_id)  # fmt: skip
            for r in frame.itertuples(index=False)
        ]


def _moment(value: Any) -> datetime:
    moment = pd.Timestamp(value)
    return (moment.tz_localize(UTC) if moment.tzinfo is None else moment.tz_convert(UTC)).to_pydatetime()


def audit_row(event: str, actor: str, request: dict[str, Any] | None, *, step: str = "", detail: str | None = None,
              previous: dict[str, Any] | None = None, response: dict[str, Any] | None = None, code: int | None = None,
              key: str | None = None, at: datetime | None = None) -> dict[str, Any]:  # fmt: skip
    """One ``ops.audit_log`` row; its id is (request, event, step), so writing it twice is a no-op."""
    request_id = request["request_id"] if request else None
    return {
        "audit_id": f"{request_id or 'global'}:{event}{':' + step if step else ''}",
        "request_id": request_id,
        "policy": request["policy"] if request else None,
        "action": request["action"] if request else None,
        "target": request["target"] if request else None,
        "event": event,
        "actor": actor,
        "detail": detail,
        "previous_state": None if previous is None else json.dumps(previous, sort_keys=True),
        "response": None if response is None else json.dumps(response, sort_keys=True, default=str)[:4000],
        "response_code": code,
        "idempotency_key": key,
        "recorded_at": at or datetime.now(UTC),
    }

"""Delta table upkeep, scheduled by the pipeline itself and kept off the hot path.

A streaming pipeline commits to each of its tables every second or so. Left alone, a table
degrades over a day: every commit adds small files (readers open tens of thousands of them),
and Delta's inline log checkpoint — every ``delta.checkpointInterval`` commits, *inside* the
commit that reaches it — stalls that micro-batch while it rewrites the whole log state.

:class:`TableMaintenance` is a thread of the pipeline process, in a FAIR pool of its own
(lowest weight), that for every table the running queries write:

- writes the log checkpoint itself every ``checkpoint_every_commits`` commits (the tables'
  own interval is set high, so no commit does it inline);
- compacts small files (``OPTIMIZE``; it commits with ``dataChange=false``, so it never
  conflicts with the streaming appends) every ``compact_every_seconds`` when a table has at
  least ``compact_min_files`` files;
- vacuums files no version within ``vacuum_retain_hours`` references.

Each action is logged with its duration (``trivas.maintenance``) and kept in ``history``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import SparkSession

from lakehouse.config import Settings
from lakehouse.tables import delta_table, table_exists

log = logging.getLogger("trivas.maintenance")
POOL = "maintenance"


@dataclass
class Action:
    """One maintenance action that ran."""

    table: str
    kind: str  # checkpoint | compact | vacuum
    version: int
    seconds: float
    detail: str = ""


@dataclass
class TableState:
    checkpointed_version: int = -1
    compacted_at: float = 0.0
    vacuumed_at: float = 0.0


class TableMaintenance(threading.Thread):
    """Checkpoints, compacts and vacuums ``tables`` until stopped (see the module docstring)."""

    def __init__(self, spark: SparkSession, settings: Settings, tables: Sequence[str]) -> None:
        super().__init__(name="trivas-maintenance", daemon=True)
        self.spark = spark
        self.settings = settings
        self.policy = settings.maintenance
        self.tables = list(tables)
        started = time.monotonic()
        # Compaction and vacuum wait one period after start: a restart loop must not
        # turn into a compaction loop.
        self.state = {t: TableState(compacted_at=started, vacuumed_at=started) for t in self.tables}
        self.history: list[Action] = []
        self.stopped = threading.Event()

    def stop(self) -> None:
        self.stopped.set()

    def run(self) -> None:
        self.spark.sparkContext.setLocalProperty("spark.scheduler.pool", POOL)
        while not self.stopped.wait(self.policy.check_every_seconds):
            self.run_once()

    def run_once(self, now: float | None = None) -> list[Action]:
        """One round over every table; the actions it took."""
        done: list[Action] = []
        for table in self.tables:
            if self.stopped.is_set() and now is None:
                break
            try:
                done += self.maintain(table, time.monotonic() if now is None else now)
            except Exception:  # noqa: BLE001 - upkeep must never take the pipeline down
                log.exception("maintenance of %s failed; will retry", table)
        self.history += done
        return done

    def maintain(self, table: str, now: float) -> list[Action]:
        if not table_exists(self.spark, self.settings, table):
            return []
        state = self.state.setdefault(table, TableState())
        handle = delta_table(self.spark, self.settings, table)
        delta_log = handle._jdt.deltaLog()
        none = self.spark._jvm.scala.Option.empty()
        snapshot = delta_log.update(False, none, none)
        version = int(snapshot.version())
        actions = []
        if state.checkpointed_version < 0:
            last = delta_log.readLastCheckpointFile()
            state.checkpointed_version = int(last.get().version()) if last.isDefined() else 0
        if version - state.checkpointed_version >= self.policy.checkpoint_every_commits:
            began = time.monotonic()
            delta_log.checkpoint(snapshot, none)
            state.checkpointed_version = version
            actions.append(Action(table, "checkpoint", version, time.monotonic() - began))
        if now - state.compacted_at >= self.policy.compact_every_seconds:
            files = int(snapshot.numOfFiles())
            if files >= self.policy.compact_min_files:
                began = time.monotonic()
                metrics = handle.optimize().executeCompaction().first()["metrics"]
                detail = f"{metrics['numFilesRemoved']} files → {metrics['numFilesAdded']}"
                actions.append(Action(table, "compact", version, time.monotonic() - began, detail))
            state.compacted_at = now
        if now - state.vacuumed_at >= self.policy.vacuum_every_seconds:
            began = time.monotonic()
            handle.vacuum(self.policy.vacuum_retain_hours)
            actions.append(Action(table, "vacuum", version, time.monotonic() - began))
            state.vacuumed_at = now
        for action in actions:
            log.info("%s %s at v%d in %.2fs %s", action.kind, table, action.version, action.seconds, action.detail)
        return actions

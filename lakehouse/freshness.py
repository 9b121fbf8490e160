"""Freshness and lineage of the streaming queries, from Spark's progress events.

A :class:`ProgressTracker` listens to every query of the session and keeps its latest
progress: watermark, batch id, input and processing rates, batch duration and the Delta
versions its sources have reached. Jobs read it to stamp rows (``gold.kpi.watermark``,
``source_versions``, ``is_final``); the pipeline runner snapshots it into ``ops.freshness``.
With a ``progress_log``, every progress document is also appended as one JSON line (the
benchmark's per-batch durations come from there); the file is rotated at 64 MiB.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import types as T
from pyspark.sql.streaming import StreamingQueryListener

_DELTA_SOURCE = re.compile(r"DeltaSource\[(?P<path>[^\]]+)\]")

FRESHNESS_SCHEMA = T.StructType(
    [
        T.StructField("query", T.StringType(), False),
        T.StructField("batch_id", T.LongType(), False),
        T.StructField("watermark", T.TimestampType(), True),
        T.StructField("max_event_time", T.TimestampType(), True),
        T.StructField("input_rows", T.LongType(), False),
        T.StructField("input_rows_per_second", T.DoubleType(), True),
        T.StructField("processed_rows_per_second", T.DoubleType(), True),
        T.StructField("batch_duration_ms", T.LongType(), True),
        T.StructField("state_rows", T.LongType(), True),
        T.StructField("source_versions", T.MapType(T.StringType(), T.LongType()), True),
        T.StructField("recorded_at", T.TimestampType(), False),
    ]
)


def parse_spark_time(text: str | None) -> datetime | None:
    """Spark progress timestamps (``2026-11-28T04:31:00.000Z``) → aware datetimes."""
    if not text:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return None if moment.timestamp() <= 0 else moment


@dataclass
class QueryProgress:
    """The latest progress of one query, reduced to what trivas reports."""

    query: str
    batch_id: int
    watermark: datetime | None
    max_event_time: datetime | None
    input_rows: int
    input_rows_per_second: float | None
    processed_rows_per_second: float | None
    batch_duration_ms: int | None
    state_rows: int | None
    source_versions: dict[str, int] = field(default_factory=dict)
    recorded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def as_row(self) -> tuple[Any, ...]:
        return (
            self.query, self.batch_id, self.watermark, self.max_event_time, self.input_rows,
            self.input_rows_per_second, self.processed_rows_per_second, self.batch_duration_ms,
            self.state_rows, self.source_versions, self.recorded_at,
        )  # fmt: skip


def delta_source_versions(sources: list[dict[str, Any]]) -> dict[str, int]:
    """Delta table path → the version a query's sources have read up to."""
    versions: dict[str, int] = {}
    for source in sources:
        match = _DELTA_SOURCE.search(source.get("description", ""))
        end = source.get("endOffset")
        if not match or not end:
            continue
        offset = json.loads(end) if isinstance(end, str) else end
        path = match.group("path").removeprefix("file:")
        versions[path] = int(offset.get("reservoirVersion", -1))
    return versions


def summarise(progress: dict[str, Any]) -> QueryProgress:
    """A Spark progress JSON document → :class:`QueryProgress`."""
    event_time = progress.get("eventTime") or {}
    state = progress.get("stateOperators") or []
    return QueryProgress(
        query=progress.get("name") or progress.get("id", "?"),
        batch_id=int(progress.get("batchId", -1)),
        watermark=parse_spark_time(event_time.get("watermark")),
        max_event_time=parse_spark_time(event_time.get("max")),
        input_rows=int(progress.get("numInputRows", 0)),
        input_rows_per_second=progress.get("inputRowsPerSecond"),
        processed_rows_per_second=progress.get("processedRowsPerSecond"),
        batch_duration_ms=(progress.get("durationMs") or {}).get("triggerExecution"),
        state_rows=sum(int(s.get("numRowsTotal", 0)) for s in state) if state else None,
        source_versions=delta_source_versions(progress.get("sources") or []),
    )


class ProgressTracker(StreamingQueryListener):
    """Keeps the latest progress of every query of a session (thread-safe)."""

    _installed: dict[int, ProgressTracker] = {}
    ROTATE_BYTES = 64 * 1024 * 1024

    def __init__(self, progress_log: Path | None = None) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._latest: dict[str, QueryProgress] = {}
        self.progress_log = progress_log

    @classmethod
    def install(cls, spark: SparkSession, progress_log: Path | None = None) -> ProgressTracker:
        """The session's tracker, registered on first use (a later ``progress_log`` is kept)."""
        key = id(spark)
        if key not in cls._installed:
            tracker = cls(progress_log)
            spark.streams.addListener(tracker)
            cls._installed[key] = tracker
        elif progress_log is not None:
            cls._installed[key].progress_log = progress_log
        return cls._installed[key]

    def _append(self, document: str) -> None:
        path = self.progress_log
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.stat().st_size > self.ROTATE_BYTES:
            path.replace(path.with_suffix(".jsonl.1"))
        with path.open("a") as out:
            out.write(document.replace("\n", " ") + "\n")

    def onQueryStarted(self, event: Any) -> None:  # noqa: N802 - Spark's API
        pass

    def onQueryProgress(self, event: Any) -> None:  # noqa: N802
        document = event.progress.json
        progress = summarise(json.loads(document))
        with self._lock:
            self._latest[progress.query] = progress
            self._append(document)

    def onQueryIdle(self, event: Any) -> None:  # noqa: N802
        pass

    def onQueryTerminated(self, event: Any) -> None:  # noqa: N802
        pass

    def latest(self, query: str) -> QueryProgress | None:
        """The latest progress of ``query`` (None before its first batch completes)."""
        with self._lock:
            return self._latest.get(query)

    def snapshot(self) -> list[QueryProgress]:
        """The latest progress of every query."""
        with self._lock:
            return list(self._latest.values())

    def watermark(self, query: str) -> datetime | None:
        progress = self.latest(query)
        return progress.watermark if progress else None

"""The alert lifecycle: what an alert is, its id, and how an episode fires, extends, resolves.

An alert is one episode of a (series, rule): it fires on the first window that trips the
rule, is extended while later windows trip, and resolves on the first window back in band.
Its id is a hash of what started it, so a replayed batch writes the same id. ``gold.alerts``
holds the episodes (the detect job and the pipeline's health reporter write them); the alert
router (:mod:`lakehouse.alerts.router`) turns them into notifications, recorded in
``ops.notifications`` as firing → notified → acknowledged → resolved.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pyspark.sql import types as T

ALERTS_TABLE = "gold.alerts"
FIRING, RESOLVED, ACKNOWLEDGED = "firing", "resolved", "acknowledged"
RULE_MODEL, RULE_MIN, RULE_MAX, RULE_FRESHNESS = "anomaly_model", "threshold_min", "threshold_max", "freshness_sla"
RULE_MODEL_OPEN = "anomaly_model_open"  # early warning on windows still filling
RULE_JOB_FAILED = "pipeline_job_failed"  # a pipeline job failed (spark_jobs.health)
RULE_DATA_QUALITY = "data_quality"  # a table failed expectations of its suite (lakehouse.validations)
QUALITY_KPI, QUALITY_GRAIN = "data_quality", "suite"  # kpi and grain of data-quality alerts
RULES = (RULE_MODEL, RULE_MODEL_OPEN, RULE_MIN, RULE_MAX, RULE_FRESHNESS)

ALERTS_SCHEMA = T.StructType(
    [
        T.StructField("alert_id", T.StringType(), False),
        T.StructField("kpi", T.StringType(), False),
        T.StructField("grain", T.StringType(), False),
        T.StructField("window_start", T.TimestampType(), False),
        T.StructField("window_end", T.TimestampType(), False),
        T.StructField("dimension", T.StringType(), False),
        T.StructField("observed", T.DoubleType(), True),
        T.StructField("expected", T.DoubleType(), True),
        T.StructField("lower", T.DoubleType(), True),
        T.StructField("upper", T.DoubleType(), True),
        T.StructField("score", T.DoubleType(), True),
        T.StructField("confidence", T.DoubleType(), True),
        T.StructField("model_version", T.StringType(), True),
        T.StructField("rule", T.StringType(), False),
        T.StructField("state", T.StringType(), False),
        T.StructField("first_seen_at", T.TimestampType(), False),
        T.StructField("updated_at", T.TimestampType(), False),
    ]
)


def alert_id(kpi: str, grain: str, dimension: str, rule: str, first_window_start: datetime) -> str:
    """Deterministic id of an alert episode (same input → same id, on any replay)."""
    stamp = first_window_start.astimezone(UTC).isoformat()
    return hashlib.sha256(f"{kpi}|{grain}|{dimension}|{rule}|{stamp}".encode()).hexdigest()[:32]



@dataclass
class Alert:
    """One row of ``gold.alerts``."""

    alert_id: str
    kpi: str
    grain: str
    window_start: datetime
    window_end: datetime
    dimension: str
    observed: float | None
    expected: float | None
    lower: float | None
    upper: float | None
    score: float | None
    confidence: float | None
    model_version: str | None
    rule: str
    state: str
    first_seen_at: datetime
    updated_at: datetime

    def as_row(self) -> tuple[Any, ...]:
        return tuple(clean_value(getattr(self, f.name)) for f in ALERTS_SCHEMA.fields)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("window_start", "window_end", "first_seen_at", "updated_at"):
            data[name] = data[name].isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Alert:
        data = dict(data)
        for name in ("window_start", "window_end", "first_seen_at", "updated_at"):
            data[name] = datetime.fromisoformat(data[name])
        return cls(**data)


def clean_value(value: Any) -> Any:
    if isinstance(value, float | np.floating) and not np.isfinite(value):
        return None
    if isinstance(value, np.floating):
        return float(value)
    return value


@dataclass
class AlertBook:
    """Lifecycle of alert episodes (pure; no I/O).

    ``open`` maps (series_key, rule) to its firing alert; ``changed`` collects every alert
    whose row must be (re)written, by id.
    """

    open: dict[tuple[str, str], Alert] = field(default_factory=dict)
    changed: dict[str, Alert] = field(default_factory=dict)

    def observe(
        self,
        series: str,
        rule: str,
        tripped: bool,
        point: dict[str, Any],
        now: datetime,
        **values: Any,
    ) -> None:
        """Advance one (series, rule) by one window: fire, extend or resolve.

        Args:
            series: ``kpi|grain|dimension``.
            rule: One of :data:`RULES`.
            tripped: Whether this window breaks the rule.
            point: ``kpi, grain, dimension, window_start, window_end`` of the window.
            now: Processing time of the transition.
            values: observed, expected, lower, upper, score, confidence, model_version.
        """
        key = (series, rule)
        current = self.open.get(key)
        if tripped:
            if current is None:
                current = Alert(
                    alert_id=alert_id(point["kpi"], point["grain"], point["dimension"], rule, point["window_start"]),
                    kpi=point["kpi"], grain=point["grain"], dimension=point["dimension"],
                    window_start=point["window_start"], window_end=point["window_end"],
                    rule=rule, state=FIRING, first_seen_at=now, updated_at=now,
                    **{k: values.get(k) for k in ("observed", "expected", "lower", "upper", "score", "confidence", "model_version")},
                )  # fmt: skip
            else:
                current = replace(current, window_end=point["window_end"], updated_at=now, **values)
            self.open[key] = current
            self.changed[current.alert_id] = current
        elif current is not None:
            resolved = replace(current, state=RESOLVED, updated_at=now)
            del self.open[key]
            self.changed[resolved.alert_id] = resolved

    def take_changes(self) -> list[Alert]:
        """The alerts to write since the last call."""
        changes = list(self.changed.values())
        self.changed = {}
        return changes



__all__ = [
    "ACKNOWLEDGED",
    "ALERTS_SCHEMA",
    "ALERTS_TABLE",
    "FIRING",
    "RESOLVED",
    "RULES",
    "QUALITY_GRAIN",
    "QUALITY_KPI",
    "RULE_DATA_QUALITY",
    "RULE_FRESHNESS",
    "RULE_JOB_FAILED",
    "RULE_MAX",
    "RULE_MIN",
    "RULE_MODEL",
    "RULE_MODEL_OPEN",
    "Alert",
    "AlertBook",
    "alert_id",
]

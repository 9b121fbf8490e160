"""Builders and fixtures of the alert tests: alerts, a controllable clock, a deployment's tables."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from lakehouse.alerts.config import AlertsConfig, parse_config
from lakehouse.alerts.dispatch import AlertContext
from lakehouse.alerts.lifecycle import (
    ALERTS_SCHEMA,
    ALERTS_TABLE,
    FIRING,
    RESOLVED,
    Alert,
    alert_id,
)
from lakehouse.alerts.routing import alert_labels
from lakehouse.alerts.store import arrow_schema
from lakehouse.config import Settings, load_settings
from lakehouse.contracts import KpiContracts, contracts
from lakehouse.tables import table_location

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


class Clock:
    """Processing time that moves only when a test says so."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def make_alert(
    kpi: str = "orders", dimension: str = "country=DE", rule: str = "anomaly_model", state: str = FIRING,
    first_seen_at: datetime = T0, grain: str = "1m", **values: object,
) -> Alert:  # fmt: skip
    """An alert row as detect writes it (keyword overrides for anything else)."""
    window_start = values.pop("window_start", first_seen_at - timedelta(minutes=7))
    base = Alert(
        alert_id=alert_id(kpi, grain, dimension, rule, window_start), kpi=kpi, grain=grain, window_start=window_start,
        window_end=window_start + timedelta(minutes=1), dimension=dimension, observed=3.0, expected=41.5, lower=30.2,
        upper=52.8, score=7.9, confidence=0.97, model_version="4", rule=rule, state=state, first_seen_at=first_seen_at,
        updated_at=first_seen_at,
    )  # fmt: skip
    return replace(base, **values)


def resolved(alert: Alert, at: datetime) -> Alert:
    return replace(alert, state=RESOLVED, updated_at=at)


@pytest.fixture(scope="session")
def kpi_contracts() -> KpiContracts:
    return contracts()


def context_of(alert: Alert, config: AlertsConfig, kpis: KpiContracts) -> AlertContext:
    return AlertContext(alert, alert_labels(alert, kpis, config.severities), {"watermark": T0, "is_final": True, "lineage": "gold.kpi@v7 ← silver.events@v12"})


def config_of(text: str) -> AlertsConfig:
    return parse_config(yaml.safe_load(text))


@pytest.fixture()
def lake(tmp_path: Path) -> Settings:
    """Settings of a deployment whose tables live under ``tmp_path``."""
    return load_settings(
        "test",
        environ={
            "TRIVAS_PATHS__VAR": str(tmp_path / "var"),
            "TRIVAS_TABLES__ROOT": str(tmp_path / "lake"),
            "TRIVAS_TABLES__CHECKPOINTS": str(tmp_path / "checkpoints"),
        },
    )


def write_alerts(settings: Settings, alerts: list[Alert]) -> None:
    """Make ``gold.alerts`` hold exactly these rows (one new Delta version, as a MERGE makes)."""
    from deltalake import write_deltalake

    rows = [dict(zip(ALERTS_SCHEMA.fieldNames(), a.as_row(), strict=True)) for a in alerts]
    frame = pa.Table.from_pylist(rows, schema=arrow_schema(ALERTS_SCHEMA))
    write_deltalake(table_location(settings, ALERTS_TABLE), frame, mode="overwrite")

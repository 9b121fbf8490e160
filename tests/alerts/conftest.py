"""Builders and fixtures of the alert tests: alerts, a controllable clock, a deployment's tables."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
import yaml
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

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
from lakehouse.config import Settings
from lakehouse.contracts import KpiContracts, contracts
from lakehouse.tables import table_location

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
SLACK_TOKEN = "xoxb-SLACKTOKEN-5d1e"  # noqa: S105 - test secrets, asserted never to leak
PD_KEY = "PDROUTINGKEY-77aa11"
HOOK_SECRET = "whsec-router-991"


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


def write_alerts(settings: Settings, alerts: list[Alert]) -> None:
    """Make ``gold.alerts`` hold exactly these rows (one new Delta version, as a MERGE makes)."""
    from deltalake import write_deltalake

    rows = [dict(zip(ALERTS_SCHEMA.fieldNames(), a.as_row(), strict=True)) for a in alerts]
    frame = pa.Table.from_pylist(rows, schema=arrow_schema(ALERTS_SCHEMA))
    write_deltalake(table_location(settings, ALERTS_TABLE), frame, mode="overwrite")


class Endpoint:
    """A path of the local server that answers from a script: a status code, or a callable
    returning one (None: the caller has given up, nothing was delivered)."""

    def __init__(self, script: list | None = None) -> None:
        self.script = list(script or [])
        self.received: list[tuple[float, dict]] = []
        self.lock = threading.Lock()
        self.got = threading.Event()  # set once a request was accepted

    def __call__(self, request: Request) -> Response:
        with self.lock:
            step = self.script.pop(0) if self.script else 200
        if callable(step):
            step = step()
        if step is None:
            return Response("too late", status=200)
        if step < 300:
            self.received.append((time.monotonic(), request.get_json()))
            self.got.set()
        return Response("ok", status=step)


@pytest.fixture()
def endpoints(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Endpoint]]:
    """Slack, PagerDuty and webhook endpoints on one threaded local server (a hanging receiver
    must not hold up the others' requests)."""
    from lakehouse.runtime.processes import free_port

    httpserver = HTTPServer(host="127.0.0.1", port=free_port(), threaded=True)
    httpserver.start()
    found = {"slack": Endpoint(), "pager": Endpoint(), "hook": Endpoint()}
    paths = {"slack": f"/services/{SLACK_TOKEN}", "pager": "/v2/enqueue", "hook": "/hook"}
    for name, path in paths.items():
        httpserver.expect_request(path, method="POST").respond_with_handler(lambda r, n=name: found[n](r))
    monkeypatch.setenv("T_SLACK_URL", httpserver.url_for(paths["slack"]))
    monkeypatch.setenv("T_PD_URL", httpserver.url_for(paths["pager"]))
    monkeypatch.setenv("T_PD_KEY", PD_KEY)
    monkeypatch.setenv("T_HOOK_URL", httpserver.url_for(paths["hook"]))
    monkeypatch.setenv("T_HOOK_SECRET", HOOK_SECRET)
    yield found
    httpserver.clear()
    httpserver.stop()


def values(frame, columns: list[str]) -> list[list]:  # noqa: ANN001
    """Rows as lists, missing values as None."""
    return frame[columns].astype(object).where(frame[columns].notna(), None).values.tolist()


def live_clock() -> Clock:
    """Now (silences and acknowledgements from the CLI are stamped with the real time)."""
    return Clock(datetime.now(UTC).replace(microsecond=0))



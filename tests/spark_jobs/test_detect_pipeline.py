"""Detect on the real pipeline's gold: a minute without a single order is never written to
``gold.kpi``, and detect reads it as a zero (real broker, Spark, Delta and MLflow registry).

The seeded shop's checkout dies for three minutes (its order_placed events are not sent).
Each run of minutes without orders, once gold's watermark has passed it, is one
``threshold_min`` episode of the orders contract (``min: 1, scope: total``), firing at the
run's first minute and resolved by the next minute with an order. A country's empty minute
pages nothing (that ``min`` holds the total only).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from lakehouse.alerts.lifecycle import ALERTS_TABLE, FIRING, RESOLVED, RULE_MIN
from lakehouse.catalog import Catalog
from lakehouse.config import load_settings
from lakehouse.contracts import contracts
from lakehouse.runtime import kafka
from spark_jobs import pipeline
from tests.ground_truth import counted_events, expected_kpis, minute_of
from tests.spark_jobs.stream_fixtures import START, produce, seeded_stream

pytestmark = [pytest.mark.spark, pytest.mark.integration, pytest.mark.slow]
MINUTE = timedelta(minutes=1)
JOBS = ("bronze", "silver_gold", "gold", "detect")


def expected_episodes(orders: dict[datetime, int], after: datetime, watermark: datetime) -> set[tuple[datetime, str]]:
    """Runs of minutes without orders after ``after`` whose windows end by the watermark:
    (first minute, firing | resolved)."""
    episodes, run = set(), None
    minute = after + MINUTE
    while minute + MINUTE <= watermark:
        if orders.get(minute, 0) == 0:
            run = run or minute
        elif run is not None:
            episodes.add((run, RESOLVED))
            run = None
        minute += MINUTE
    if run is not None:
        episodes.add((run, FIRING))
    return episodes


def utc(value: object) -> datetime:
    moment = pd.Timestamp(value)
    return (moment.tz_localize(UTC) if moment.tzinfo is None else moment.tz_convert(UTC)).to_pydatetime()


def test_minutes_without_orders_page_the_orders_minimum(deployment_env, catalog: Catalog, spark, table_reader, tmp_path: Path) -> None:  # noqa: ANN001
    settings = load_settings("test", environ={**deployment_env, "TRIVAS_MLFLOW__TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    kafka.ensure_topics(settings, catalog)
    dead = (START + 14 * MINUTE, START + 17 * MINUTE)
    stream = [
        d for d in seeded_stream(catalog, settings, seed=3, minutes=24, rate=16.0)
        if not (d.event_type == "order_placed" and d.event and dead[0] <= minute_of(d.event) < dead[1])
    ]  # fmt: skip
    split = START + 12 * MINUTE
    # Two drains: detect follows the orders series from the first one's final windows on.
    produce(settings, [d for d in stream if d.arrival < split])
    pipeline.drain(spark, settings, catalog, contracts(), JOBS)
    first = table_reader(settings, "gold.kpi")
    followed_from = utc(first.query("kpi == 'orders' and dimension == 'all' and is_final")["window_start"].max())
    produce(settings, [d for d in stream if d.arrival >= split])
    pipeline.drain(spark, settings, catalog, contracts(), JOBS)
    watermark = utc(table_reader(settings, "gold.kpi")["watermark"].max())

    truth = expected_kpis(counted_events(stream, catalog))
    orders = {start: int(value) for (kpi, grain, start, dim), (value, _) in truth.items() if (kpi, grain, dim) == ("orders", "1m", "all")}
    expected = expected_episodes(orders, followed_from, watermark)
    assert (dead[0], RESOLVED) in expected

    alerts = table_reader(settings, ALERTS_TABLE)
    minimum = alerts[(alerts["kpi"] == "orders") & (alerts["rule"] == RULE_MIN)]
    assert set(minimum["dimension"]) == {"all"}
    assert {(utc(r.window_start), r.state) for r in minimum.itertuples()} == expected

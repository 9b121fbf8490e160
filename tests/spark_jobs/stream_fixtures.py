"""Builders of seeded test streams and readers of what the pipeline wrote."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from lakehouse.catalog import Catalog
from lakehouse.config import Settings
from lakehouse.generator.faults import Delivery, FaultConfig, deliveries
from lakehouse.generator.producer import make_producer, send
from lakehouse.generator.shop import Shop, ShopConfig
from lakehouse.kafka_security import python_client_config
from tests.ground_truth import KpiKey

START = datetime(2026, 11, 27, 20, 0, tzinfo=UTC)
FAULTS = FaultConfig(duplicate_fraction=0.03, out_of_order_fraction=0.05, late_fraction=0.01, malformed_fraction=0.01)


def seeded_stream(
    catalog: Catalog, settings: Settings, seed: int, minutes: float, rate: float = 80.0
) -> list[Delivery]:
    """A reproducible shop stream with every kind of fault."""
    shop = Shop(ShopConfig(seed=seed, events_per_second=rate), START)
    events = shop.events(START + timedelta(minutes=minutes))
    return list(deliveries(events, catalog, settings.kafka.topic_prefix, FAULTS, seed))


def produce(settings: Settings, stream: list[Delivery]) -> None:
    """Send the stream to the deployment's raw topics."""
    producer = make_producer(settings.kafka_bootstrap(), **python_client_config(settings))
    try:
        send(stream, producer)
    finally:
        producer.close()


def kpi_rows(frame: pd.DataFrame) -> dict[KpiKey, tuple[float | None, int]]:
    """``gold.kpi`` (as pandas) → key → (value, events)."""
    rows = {}
    for r in frame.itertuples(index=False):
        start = pd.Timestamp(r.window_start).to_pydatetime()
        start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
        value = None if r.value is None or (isinstance(r.value, float) and math.isnan(r.value)) else float(r.value)
        rows[(r.kpi, r.grain, start, r.dimension)] = (value, int(r.events))
    return rows


def kpi_differences(
    actual: dict[KpiKey, tuple[float | None, int]], expected: dict[KpiKey, tuple[float | None, int]]
) -> list[str]:
    """Human-readable differences between gold and the ground truth (empty when equal)."""
    problems = []
    for key in sorted(set(actual) | set(expected), key=str):
        if key not in actual:
            problems.append(f"missing {key}: expected {expected[key]}")
        elif key not in expected:
            problems.append(f"unexpected {key}: {actual[key]}")
        else:
            (a, an), (e, en) = actual[key], expected[key]
            same_value = (a is None and e is None) or (
                a is not None and e is not None and math.isclose(a, e, rel_tol=1e-9, abs_tol=1e-6)
            )
            if not same_value or an != en:
                problems.append(f"{key}: gold {actual[key]} != truth {expected[key]}")
    return problems


def assert_silver_holds_exactly(counted: list[dict], settings: Settings, catalog: Catalog, table_reader) -> None:  # noqa: ANN001
    """Every counted event is in its domain's silver table exactly once, and nothing else is."""
    for domain, spec in catalog.domains.items():
        silver = table_reader(settings, f"silver.{spec.table}")
        expected_ids = sorted(e["event_id"] for e in counted if catalog.event(e["event_type"]).domain == domain)
        assert sorted(silver["event_id"]) == expected_ids, domain


def parquet_bytes(root: Path) -> bytes:
    """Every data file under ``root`` concatenated (for PII canary scans)."""
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*.parquet")))

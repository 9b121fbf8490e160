"""Rows of ``silver.events`` from clean playground events, without Kafka or Spark.

Each event is read by the contract's own reader (:class:`lakehouse.quality.Judge`, the one
silver uses) and protected by the catalog's PII policy (:func:`lakehouse.privacy.protect_record`,
the Python twin of silver's), then laid out in ``silver.events``' columns. The quality tests
and ``bench/bench_quality.py`` use it to write realistic silver rows with delta-rs as the hot
path does, and to plant violations in them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import pyarrow as pa

from lakehouse.catalog import Catalog, topic_for
from lakehouse.privacy import protect_record
from lakehouse.quality import Judge

TOPIC_PREFIX = "raw"


def silver_rows(events: Iterable[dict[str, Any]], catalog: Catalog, ingested_at: datetime, master_key: bytes, key_id: str = "k1") -> list[dict[str, Any]]:
    """``silver.events`` rows of valid events (their offsets numbered per domain from 0).

    Raises:
        ValueError: An event the contract refuses (the playground sends only valid ones here).
    """
    judge = Judge(catalog, TOPIC_PREFIX)
    offsets: dict[str, int] = {}
    rows = []
    for event in events:
        domain = catalog.event(event["event_type"]).domain
        topic = topic_for(TOPIC_PREFIX, domain)
        reason, envelope, domain, payload = judge.judge(json.dumps(event), topic, ingested_at)
        if reason is not None or envelope is None or payload is None or domain is None:
            raise ValueError(f"event {event.get('event_id')} refused by its contract: {reason}")
        offset = offsets.get(domain, 0)
        offsets[domain] = offset + 1
        rows.append(
            {
                **envelope,
                "domain": domain,
                **protect_record(payload, catalog.pii_classes(domain), master_key, key_id),
                "kafka_topic": topic, "kafka_partition": 0, "kafka_offset": offset, "ingested_at": ingested_at,
            }  # fmt: skip
        )
    return rows


def silver_table(rows: list[dict[str, Any]]) -> pa.Table:
    """The rows as an Arrow table in ``silver.events``' declared schema (missing columns null)."""
    from pyspark.sql.pandas.types import to_arrow_schema

    from lakehouse.registry import SILVER_EVENTS, table_spec

    schema = to_arrow_schema(table_spec(SILVER_EVENTS).schema)
    return pa.Table.from_pylist([{name: row.get(name) for name in schema.names} for row in rows], schema=schema)

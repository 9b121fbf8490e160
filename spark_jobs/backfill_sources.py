"""Where a replay or backfill reads its raw records: ``bronze.events`` or a file of history.

A source yields raw records in the shape of :func:`spark_jobs.bronze.kafka_columns` (``key``,
``value``, ``topic``, ``partition``, ``offset``, ``kafka_timestamp``), so the backfill judges
them with the very transform of the live hot path. It also says how many records arrived in
each hour (the backfill packs whole hours into chunks) and names itself (``identity``: the
run id derives from it, so the same source and range resume the same run).

- :class:`BronzeRange` — the records bronze archived in an arrival-time range, or in Kafka
  offset ranges (``topic:partition:from-to``): re-derives silver and gold for them.
- :class:`RetailFile` — the UCI Online Retail invoices as ``order_placed`` /
  ``order_cancelled`` events (:func:`retail_events`). Their arrival is their invoice time (as
  if they had been sent then): lateness is judged as at the time, not against today.
  Records not from Kafka carry ``partition`` -1 and ``offset`` = the invoice's first line
  number in the file, so a refused invoice has a stable quarantine id across runs.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.catalog import topic_for
from lakehouse.config import Settings
from lakehouse.registry import BRONZE_EVENTS
from lakehouse.tables import read_table

RAW_COLUMNS = ("key", "value", "topic", "partition", "offset", "kafka_timestamp")
FILE_PARTITION = -1  # a record read from a file, not from a Kafka partition
RETAIL_NAMESPACE = uuid.UUID("6a1b7f0e-2c4d-5e8f-9a0b-1c2d3e4f5a6b")
RETAIL_SOURCE = "backfill:online_retail"
# The Online Retail file gives no reason for a cancellation; the contract wants one.
RETAIL_CANCEL_REASON = "customer_request"


class RawSource(Protocol):
    """Raw records for a backfill (see the module docstring)."""

    identity: str

    def hourly_counts(self, spark: SparkSession) -> list[tuple[datetime, int]]:
        """``(hour, records arriving in it)`` for every hour that has records, in order."""
        ...

    def records(self, spark: SparkSession, start: datetime, end: datetime) -> DataFrame:
        """The raw records that arrived in ``[start, end)``."""
        ...


@dataclass(frozen=True)
class OffsetRange:
    """Kafka offsets ``[start, end)`` of one partition of one topic."""

    topic: str
    partition: int
    start: int
    end: int

    @classmethod
    def parse(cls, text: str) -> OffsetRange:
        """``raw.orders:0:100-250`` → offsets 100 to 249 of partition 0 of ``raw.orders``."""
        try:
            topic, partition, span = text.rsplit(":", 2)
            start, end = span.split("-")
            parsed = cls(topic, int(partition), int(start), int(end))
        except ValueError:
            raise ValueError(f"expected TOPIC:PARTITION:FROM-TO, got {text!r}") from None
        if parsed.start < 0 or parsed.end <= parsed.start:
            raise ValueError(f"empty or negative offset range in {text!r}")
        return parsed

    def condition(self) -> F.Column:
        return (
            (F.col("topic") == self.topic)
            & (F.col("partition") == self.partition)
            & (F.col("offset") >= self.start)
            & (F.col("offset") < self.end)
        )


def _hours(frame: DataFrame) -> list[tuple[datetime, int]]:
    hourly = frame.groupBy(F.date_trunc("hour", "kafka_timestamp").alias("hour")).count()
    return sorted((_aware(r["hour"]), int(r["count"])) for r in hourly.collect())


def _aware(moment: datetime) -> datetime:
    from datetime import UTC

    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


class BronzeRange:
    """The records ``bronze.events`` holds in an arrival-time range and/or offset ranges."""

    def __init__(
        self,
        settings: Settings,
        since: datetime | None = None,
        until: datetime | None = None,
        offsets: Sequence[OffsetRange] = (),
    ) -> None:
        if since is None and until is None and not offsets:
            raise ValueError("give a time range (--since/--until) or offset ranges (--offsets)")
        self.settings = settings
        self.since, self.until, self.offsets = since, until, tuple(offsets)
        spans = ",".join(f"{o.topic}:{o.partition}:{o.start}-{o.end}" for o in self.offsets)
        self.identity = f"bronze:{since and since.isoformat()}..{until and until.isoformat()}:{spans}"

    def _selected(self, spark: SparkSession) -> DataFrame:
        rows = read_table(spark, self.settings, BRONZE_EVENTS)
        if self.since is not None:
            rows = rows.where(F.col("kafka_timestamp") >= F.lit(self.since))
        if self.until is not None:
            rows = rows.where(F.col("kafka_timestamp") < F.lit(self.until))
        if self.offsets:
            condition = self.offsets[0].condition()
            for more in self.offsets[1:]:
                condition = condition | more.condition()
            rows = rows.where(condition)
        return rows

    def hourly_counts(self, spark: SparkSession) -> list[tuple[datetime, int]]:
        return _hours(self._selected(spark))

    def records(self, spark: SparkSession, start: datetime, end: datetime) -> DataFrame:
        chunk = self._selected(spark).where(
            (F.col("kafka_timestamp") >= F.lit(start)) & (F.col("kafka_timestamp") < F.lit(end))
        )
        return chunk.select(*RAW_COLUMNS)


def retail_events(lines: pd.DataFrame, eur_per_gbp: float) -> pd.DataFrame:
    """Online Retail invoice lines → one event per invoice, as a producer would send it.

    - an invoice whose number starts with ``C`` is an ``order_cancelled``, any other an
      ``order_placed``; ``order_id`` is the invoice number;
    - ``event_time`` (and ``sent_at``) is the invoice's earliest line time, read as UTC;
    - ``amount`` = Σ |quantity| × unit price over its lines, converted from GBP at
      ``eur_per_gbp`` (the contracts take the shop's EUR); ``items`` keep each line's
      quantity and converted unit price (an order's lines, in file order);
    - ``customer_id`` is the customer number, left out when the file has none, and
      ``event_id`` a UUIDv5 of the invoice number, the same on every run.

    Nothing is repaired: an invoice with a missing customer, a zero or negative quantity or
    a negative price is sent as it is, and the contract refuses it (``silver.quarantine``).

    Returns one row per invoice: ``offset`` (its first line number), ``event_time``,
    ``event_id``, ``event_type`` and ``value`` (the JSON record).
    """
    lines = lines.assign(line=range(len(lines))) if "line" not in lines else lines
    rows = []
    for invoice, group in lines.groupby("InvoiceNo", sort=False):
        cancelled = str(invoice).startswith("C")
        when = group["event_time"].min().isoformat()
        prices = group["UnitPrice"].to_numpy() * eur_per_gbp
        quantities = group["Quantity"].to_numpy().astype("int64")
        payload = {
            "order_id": str(invoice),
            "amount": float((abs(quantities) * prices).sum()),
            "currency": "EUR",
            "country": str(group["Country"].iloc[0]),
        }
        customer = group["customer_id"].iloc[0]
        if not pd.isna(customer):
            payload["customer_id"] = str(customer)
        if cancelled:
            payload["reason"] = RETAIL_CANCEL_REASON
        else:
            payload["items"] = [
                {"sku": str(sku), "quantity": int(q), "unit_price": float(p)}
                for sku, q, p in zip(group["StockCode"], quantities, prices, strict=True)
            ]
        event_id = str(uuid.uuid5(RETAIL_NAMESPACE, f"online-retail:{invoice}"))
        event_type = "order_cancelled" if cancelled else "order_placed"
        record = {
            "event_id": event_id, "event_type": event_type, "schema_version": 1, "event_time": when,
            "source": RETAIL_SOURCE, "sent_at": when, "payload": payload,
        }  # fmt: skip
        rows.append((int(group["line"].iloc[0]), group["event_time"].min(), event_id, event_type, json.dumps(record)))
    return pd.DataFrame(rows, columns=["offset", "event_time", "event_id", "event_type", "value"])


def file_digest(path: Path) -> str:
    """A short content hash: a changed file is another source (another run)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


class RetailFile:
    """The Online Retail history (optionally one event-time range of it) as raw records."""

    def __init__(
        self, settings: Settings, path: Path, since: datetime | None = None, until: datetime | None = None
    ) -> None:
        from models.refund_risk import read_retail_lines  # the one reader of the file

        lines = read_retail_lines(path)
        lines = lines.assign(line=range(len(lines)))
        if since is not None:
            lines = lines[lines.groupby("InvoiceNo")["event_time"].transform("min") >= pd.Timestamp(since)]
        if until is not None:
            lines = lines[lines.groupby("InvoiceNo")["event_time"].transform("min") < pd.Timestamp(until)]
        events = retail_events(lines, settings.backfill.eur_per_gbp).sort_values("event_time", kind="stable")
        topic = topic_for(settings.kafka.topic_prefix, "orders")
        self.table = pa.table({
            "key": pa.array(events["event_id"], pa.string()),
            "value": pa.array(events["value"], pa.string()),
            "topic": pa.array([topic] * len(events), pa.string()),
            "partition": pa.array([FILE_PARTITION] * len(events), pa.int32()),
            "offset": pa.array(events["offset"], pa.int64()),
            "kafka_timestamp": pa.array(events["event_time"].dt.as_unit("us"), pa.timestamp("us", "UTC")),
        })  # fmt: skip
        self.identity = (
            f"file:{path.name}:{file_digest(path)}:{since and since.isoformat()}..{until and until.isoformat()}"
        )

    def hourly_counts(self, spark: SparkSession) -> list[tuple[datetime, int]]:
        hours = pc.floor_temporal(self.table.column("kafka_timestamp"), unit="hour")
        counts = pa.table({"hour": hours}).group_by("hour").aggregate([("hour", "count")])
        return sorted((h, int(n)) for h, n in zip(counts["hour"].to_pylist(), counts["hour_count"].to_pylist(), strict=True))

    def records(self, spark: SparkSession, start: datetime, end: datetime) -> DataFrame:
        arrival = self.table.column("kafka_timestamp")
        chunk = self.table.filter(
            pc.and_(pc.greater_equal(arrival, pa.scalar(start, arrival.type)), pc.less(arrival, pa.scalar(end, arrival.type)))
        )
        return spark.createDataFrame(chunk)

"""Contract checks of silver: the same rules as the collector's edge, in one pass per record.

:func:`judged` reads each raw record once, in Python over Arrow batches (``mapInArrow``): it
runs :class:`lakehouse.event_contract.RecordRules` — the rule set the collector applies before
producing — and, for a valid record, reads its typed envelope and payload from the same parsed
dict. So the edge and silver cannot drift apart: one parser (strict JSON: duplicate keys,
NaN/Infinity, single quotes and trailing content refused), one set of type rules (exact JSON
types, non-finite numbers refused), one reason vocabulary
(:class:`lakehouse.event_contract.Reason`, documented there) — and a value the rules accept
is the value silver stores (``10:58Z`` or ``1.0`` for an integer included).

Spark's own JSON reader is lenient on exactly those points (it reads ``49`` into a string
column, ``"NaN"`` into a double, single-quoted JSON and a trailing ``}`` as valid), and parsing
a record three times (map, envelope, payload) cost more than the rules themselves; this is why
silver no longer parses with ``from_json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from lakehouse.catalog import Catalog, FieldSpec
from lakehouse.event_contract import (
    FUTURE_TOLERANCE,
    INT64,
    ZONED_TIMESTAMP,
    Reason,
    RecordRules,
    parse_time,
)

__all__ = [
    "FUTURE_TOLERANCE",
    "ZONED_TIMESTAMP",
    "Judge",
    "judged",
    "judged_schema",
    "lateness_exceeded",
    "payload_struct_column",
    "typed_value",
]


def payload_struct_column(domain: str) -> str:
    """Name of the parsed-payload struct column of ``domain``."""
    return f"payload_{domain}"


def judged_schema(bronze: T.StructType, catalog: Catalog) -> T.StructType:
    """Bronze columns + ``reason`` (null when valid), the typed ``envelope``, ``domain`` and
    one ``payload_<domain>`` struct per domain (null outside the record's own domain)."""
    added = [
        T.StructField("reason", T.StringType(), True),
        T.StructField("envelope", catalog.envelope_schema(), True),
        T.StructField("domain", T.StringType(), True),
        *[T.StructField(payload_struct_column(d), catalog.payload_schema(d), True) for d in catalog.domains],
    ]
    return T.StructType([*bronze.fields, *added])


class Unreadable(ValueError):
    """A value the rules accepted but its Spark type cannot hold (the rules and the catalog's
    types disagree): the record is refused rather than stored with a null."""


def typed_value(spec: FieldSpec, value: Any) -> Any:
    """``value`` of a valid record as its column stores it. The rules have checked the JSON
    type already; accepted spellings Spark would not read (``10:58Z``, ``1.0`` for an
    integer, a lower-case ``t``) are read here, so no value is lost."""
    if value is None:
        return None
    try:
        if spec.type == "timestamp":
            moment = parse_time(value)
            if moment is None:
                raise Unreadable(spec.name)
            return moment
        if spec.type == "integer":
            if isinstance(value, bool) or not float(value).is_integer():
                raise Unreadable(spec.name)
            return int(value)
        if spec.type == "number":
            return float(value)
        if spec.type == "boolean":
            if not isinstance(value, bool):
                raise Unreadable(spec.name)
            return value
        if spec.type == "array":
            return [{i.name: typed_value(i, element.get(i.name)) for i in spec.items} for element in value]
    except (TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise Unreadable(spec.name) from exc
    if not isinstance(value, str):
        raise Unreadable(spec.name)
    return value


def loose_value(spec: FieldSpec, value: Any) -> Any:
    """What can be read of an envelope field of a refused record (its quarantine row shows
    it): text as text, an integer only if it is one, a time only if it parses."""
    if value is None or isinstance(value, dict | list):
        return None
    if spec.type == "timestamp":
        return parse_time(value)
    if spec.type == "integer":
        return value if isinstance(value, int) and not isinstance(value, bool) and INT64[0] <= value <= INT64[1] else None
    if spec.type == "string":
        return value if isinstance(value, str) else json.dumps(value)
    return None


class Judge:
    """Judges raw records by the contract and reads their typed values, in one pass.

    Per record: the verdict of :class:`RecordRules` (the collector's rules), and for a valid
    record its typed envelope and payload — read from the very dict the rules checked, so
    silver parses each record once and stores exactly the values the rules accepted.
    """

    def __init__(self, catalog: Catalog, topic_prefix: str) -> None:
        self.catalog = catalog
        self.topic_prefix = topic_prefix
        self.rules = RecordRules(catalog)
        self.payload_fields = {d: catalog.all_payload_fields(d) for d in catalog.domains}
        # Per event type, the spec whose aliases find each domain column in its payload (its
        # own field's, so a rename in one type never reads another type's field).
        self.readers = {
            name: [(f, next((own for own in e.fields if own.name == f.name), replace(f, aliases=()))) for f in self.payload_fields[e.domain]]
            for name, e in catalog.event_types.items()
        }

    def judge(self, text: str | None, topic: str | None, arrival: datetime) -> tuple[str | None, dict | None, str | None, dict | None]:
        """``(reason, envelope, domain, payload)`` of one raw record."""
        verdict, record = self.rules.judge_text(text, arrival, topic, self.topic_prefix)
        event = self.rules.event(record.get("event_type")) if isinstance(record, dict) else None
        domain = event.domain if event is not None else None
        if verdict is not None:
            return verdict.qualified, self.loose_envelope(record if record is not None else lenient_loads(text)), domain, None
        try:
            envelope = {f.name: typed_value(f, record.get(f.name)) for f in self.catalog.envelope}
            payload = {f.name: typed_value(f, own.value_in(record["payload"])) for f, own in self.readers[event.event_type]}
        except Unreadable as exc:
            reason = Reason.INVALID_EVENT_TIME.value if str(exc) == "event_time" else f"{Reason.TYPE_MISMATCH.value}:{exc}"
            return reason, self.loose_envelope(record), domain, None
        return None, envelope, domain, payload

    def loose_envelope(self, record: Any) -> dict | None:
        if not isinstance(record, dict):
            return None
        return {f.name: loose_value(f, record.get(f.name)) for f in self.catalog.envelope}

    def batch(self, batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
        """One Arrow batch of bronze rows → the same rows with the judged columns."""
        arrivals = [_as_utc(a) for a in batch.column("kafka_timestamp").to_pylist()]
        judged = [
            self.judge(text, topic, arrival)
            for text, topic, arrival in zip(batch.column("value").to_pylist(), batch.column("topic").to_pylist(), arrivals, strict=True)
        ]  # fmt: skip
        reasons, envelopes, domains, payloads = zip(*judged, strict=True) if judged else ((), (), (), ())
        added = [reasons, envelopes, domains]
        added += [[p if d == domain else None for d, p in zip(domains, payloads, strict=True)] for domain in self.catalog.domains]
        columns = list(batch.columns)
        for values in added:
            columns.append(pa.array(list(values), type=schema.field(len(columns)).type))
        return pa.RecordBatch.from_arrays(columns, schema=schema)


def _as_utc(moment: datetime | None) -> datetime:
    if moment is None:
        return datetime.now(UTC)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def lenient_loads(text: str | bytes | None) -> Any:
    """The record as a lenient parser reads it (duplicate keys, NaN): only to show what a
    refused record claimed to be in its quarantine row."""
    try:
        return json.loads(text) if text is not None else None
    except ValueError:
        return None


def judged(bronze: DataFrame, catalog: Catalog, topic_prefix: str) -> DataFrame:
    """Bronze rows judged and read in one Python pass (``mapInArrow``): see :class:`Judge`.
    Reads the bronze columns ``value``, ``topic`` and ``kafka_timestamp`` (arrival, for the
    future tolerance); every bronze column is kept as it is."""
    schema = judged_schema(bronze.schema, catalog)
    arrow_schema = to_arrow_schema(schema)

    def judge_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        judge = Judge(catalog, topic_prefix)  # once per task: two dicts and the field lists
        for batch in batches:
            yield judge.batch(batch, arrow_schema)

    return bronze.mapInArrow(judge_batches, schema)


def lateness_exceeded(catalog: Catalog) -> Column:
    """True when a valid record arrived later than its type's allowed lateness.

    Lateness is arrival (the Kafka record timestamp) minus event time: a property of the
    record itself, so the verdict is the same however the stream is cut into micro-batches
    and however often it is replayed.
    """
    arrival_lag_us = F.unix_micros(F.col("kafka_timestamp")) - F.unix_micros(
        F.col("envelope.event_time")
    )
    limits = [
        F.when(
            F.col("envelope.event_type") == F.lit(e.event_type),
            F.lit(int(e.allowed_lateness.total_seconds() * 1_000_000)),
        )
        for e in catalog.event_types.values()
    ]
    return arrival_lag_us > F.coalesce(*limits)

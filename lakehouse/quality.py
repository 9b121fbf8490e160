"""Contract checks of silver, as Spark columns: the same rules as the collector's edge.

``rejection_reason`` yields, per bronze record, the first contract violation as a qualified
reason code (``type_mismatch:country``; ``None`` when the record is valid). It runs
:class:`lakehouse.event_contract.RecordRules` — the rule set the collector applies before
producing — on the raw record text in a vectorised (Arrow) Python UDF, so the edge and silver
cannot drift apart: one parser (strict JSON: duplicate keys, NaN/Infinity, single quotes and
trailing content refused), one set of type rules (exact JSON types, non-finite numbers refused),
one reason vocabulary (:class:`lakehouse.event_contract.Reason`, documented there).

Spark's own JSON reader is lenient on exactly those points (it reads ``49`` into a string
column, ``"NaN"`` into a double, single-quoted JSON and a trailing ``}`` as valid), which is why
the verdict is not built from the parsed columns.
"""

from __future__ import annotations

from datetime import UTC

import orjson
import pandas as pd
from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf

from lakehouse.catalog import Catalog
from lakehouse.event_contract import (
    FUTURE_TOLERANCE,
    SPARK_TIMESTAMP,
    ZONED_TIMESTAMP,
    Reason,
    RecordRules,
    strict_loads,
)

__all__ = [
    "FUTURE_TOLERANCE",
    "ZONED_TIMESTAMP",
    "canonical_record_text",
    "lateness_exceeded",
    "payload_struct_column",
    "record_verdicts",
    "rejection_reason",
]


def payload_struct_column(domain: str) -> str:
    """Name of the parsed-payload struct column of ``domain``."""
    return f"payload_{domain}"


def record_verdicts(
    rules: RecordRules, values: pd.Series, topics: pd.Series, arrivals: pd.Series, topic_prefix: str
) -> pd.Series:
    """The qualified reason (or None) of each raw record; ``arrivals`` in UTC."""
    out = []
    for text, topic, arrival in zip(values, topics, arrivals, strict=True):
        when = pd.Timestamp(arrival)
        when = (when.tz_localize(UTC) if when.tzinfo is None else when.tz_convert(UTC)).to_pydatetime()
        verdict = rules.check_text(text, when, topic, topic_prefix)
        out.append(None if verdict is None else verdict.qualified)
    return pd.Series(out, dtype=object)


def rejection_reason(catalog: Catalog, topic_prefix: str) -> Column:
    """The first contract violation of a bronze record, or null when it is valid.

    Reads the bronze columns ``value`` (the record text), ``topic`` and ``kafka_timestamp``
    (arrival, for the future tolerance). It also refuses a record the rules accept in a
    spelling the typed parse of ``spark_jobs.silver.parse_envelope`` cannot read (an
    ``event_time`` without seconds or in lower case): ``invalid_event_time`` until silver parses
    :meth:`RecordRules.canonical` records; the collector always writes the canonical spelling.
    """

    @pandas_udf("string")  # type: ignore[call-overload]
    def verdicts(values: pd.Series, topics: pd.Series, arrivals: pd.Series) -> pd.Series:
        # Built per Arrow batch: cheap (two dicts), and no state outlives a task.
        return record_verdicts(RecordRules(catalog), values, topics, arrivals, topic_prefix)

    reason = verdicts(F.col("value"), F.col("topic"), F.col("kafka_timestamp"))
    return F.coalesce(reason, _unreadable_by_typed_parse(catalog))


def _unreadable_by_typed_parse(catalog: Catalog) -> Column:
    """A valid record that silver's typed parse would still lose a value of: an event_time
    Spark cannot cast, or a field whose raw value parses to null (``1.0`` read as a long).
    The collector never writes those spellings (it writes :meth:`RecordRules.canonical`)."""
    envelope = F.col("envelope")
    checks = [
        F.when(
            ~F.coalesce(F.col("event_time_text").rlike(SPARK_TIMESTAMP.pattern), F.lit(False))
            | envelope["event_time"].isNull(),
            F.lit(Reason.INVALID_EVENT_TIME.value),
        )
    ]
    per_type = []
    for event in catalog.event_types.values():
        parsed = F.col(payload_struct_column(event.domain))
        lost = [
            F.when(
                F.col("payload_map")[spec.name].isNotNull() & parsed[spec.name].isNull(),
                F.lit(f"{Reason.TYPE_MISMATCH.value}:{spec.name}"),
            )
            for spec in event.stored_fields
        ]
        for spec in event.stored_fields:
            if spec.type != "array":
                continue
            raw_items = F.from_json(F.col("payload_map")[spec.name], "array<map<string,string>>")
            for item in spec.items:
                present_raw = F.size(F.filter(raw_items, _has(item.name)))
                present_parsed = F.size(F.filter(parsed[spec.name], _has(item.name)))
                lost.append(
                    F.when(
                        present_raw != present_parsed,
                        F.lit(f"{Reason.INVALID_ITEM.value}:{spec.name}.{item.name}"),
                    )
                )
        per_type.append(F.when(envelope["event_type"] == F.lit(event.event_type), F.coalesce(*lost)))
    return F.coalesce(*checks, *per_type)


def _has(name: str):  # noqa: ANN202 - a one-argument lambda for F.filter
    return lambda element: element[name].isNotNull()


def canonical_record_text(catalog: Catalog) -> Column:
    """The bronze ``value`` of a valid record in the canonical spelling the typed parse reads
    (integral numbers of integer fields as integers, times with seconds and upper-case T/Z);
    other records unchanged. Parsing this column instead of ``value`` lets silver accept every
    spelling the collector accepts."""

    @pandas_udf("string")  # type: ignore[call-overload]
    def canonical(values: pd.Series) -> pd.Series:
        rules = RecordRules(catalog)
        out = []
        for text in values:
            try:
                record = strict_loads(text) if text is not None else None
                valid = isinstance(record, dict) and rules.event(record.get("event_type")) is not None
                out.append(orjson.dumps(rules.canonical(record)).decode() if valid else text)
            except Exception:  # noqa: BLE001 - anything unreadable is judged by rejection_reason
                out.append(text)
        return pd.Series(out, dtype=object)

    return canonical(F.col("value"))


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

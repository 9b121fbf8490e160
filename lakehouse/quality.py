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
)

__all__ = [
    "FUTURE_TOLERANCE",
    "ZONED_TIMESTAMP",
    "lateness_exceeded",
    "payload_struct_column",
    "record_judgement",
    "record_judgements",
    "rejection_reason",
    "unreadable_by_typed_parse",
]


def payload_struct_column(domain: str) -> str:
    """Name of the parsed-payload struct column of ``domain``."""
    return f"payload_{domain}"


JUDGEMENT_TYPE = "struct<reason:string,canonical:string>"


def record_judgements(
    rules: RecordRules, values: pd.Series, topics: pd.Series, arrivals: pd.Series, topic_prefix: str
) -> pd.DataFrame:
    """Per raw record: ``reason``, the qualified reason (None when valid), and ``canonical``,
    the record's canonical text when it is valid but spelled otherwise (else None)."""
    reasons, canonical = [], []
    for text, topic, arrival in zip(values, topics, arrivals, strict=True):
        when = pd.Timestamp(arrival)
        when = (when.tz_localize(UTC) if when.tzinfo is None else when.tz_convert(UTC)).to_pydatetime()
        verdict, record = rules.judge_text(text, when, topic, topic_prefix)
        reasons.append(None if verdict is None else verdict.qualified)
        respelled = rules.respelled(record) if verdict is None and record is not None else None
        canonical.append(None if respelled is None else orjson.dumps(respelled).decode())
    return pd.DataFrame({"reason": pd.Series(reasons, dtype=object), "canonical": pd.Series(canonical, dtype=object)})


def record_judgement(catalog: Catalog, topic_prefix: str) -> Column:
    """The contract's judgement of a bronze record, one Python pass per record: a struct of
    ``reason`` (the first violation, null when valid) and ``canonical`` (the text to parse
    instead of ``value`` when a valid record is spelled in a form Spark cannot read, such as
    ``10:58Z`` or ``1.0`` for an integer; null otherwise).

    Reads the bronze columns ``value`` (the record text), ``topic`` and ``kafka_timestamp``
    (arrival, for the future tolerance).
    """

    @pandas_udf(JUDGEMENT_TYPE)  # type: ignore[call-overload]
    def judgements(values: pd.Series, topics: pd.Series, arrivals: pd.Series) -> pd.DataFrame:
        # Built per Arrow batch: cheap (two dicts), and no state outlives a task.
        return record_judgements(RecordRules(catalog), values, topics, arrivals, topic_prefix)

    return judgements(F.col("value"), F.col("topic"), F.col("kafka_timestamp"))


def rejection_reason(judgement: Column, catalog: Catalog) -> Column:
    """The reason of a judged record (null when valid), also refusing a valid record whose
    typed parse would still lose a value: a safety net, as the canonical text is parsed."""
    return F.coalesce(judgement["reason"], unreadable_by_typed_parse(catalog))


def unreadable_by_typed_parse(catalog: Catalog) -> Column:
    """A valid record that silver's typed parse would still lose a value of: an event_time
    Spark cannot cast, or a field whose raw value parses to null. Silver parses the canonical
    text of every valid record, so this fires only if the rules and the parse disagree."""
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

"""Contract checks derived from the event catalog, as Spark column expressions.

``rejection_reason`` yields, per raw record, the first contract violation as a reason code
(``None`` when the record is valid). Reason codes are stable strings that dashboards and the
replay tooling match on:

- ``malformed_json``: not a JSON object;
- ``missing_envelope_field:<f>``, ``unknown_event_type``, ``unsupported_schema_version``,
  ``wrong_topic`` (the type's domain does not own the topic);
- ``invalid_event_time`` (unparsable or without a zone), ``event_time_in_future``;
- ``forbidden_pii:<f>``; ``missing_required:<f>``; ``type_mismatch:<f>``;
  ``not_allowed:<f>``; ``out_of_range:<f>``; ``invalid_item:<f>``.
"""

from __future__ import annotations

from datetime import timedelta

from pyspark.sql import Column
from pyspark.sql import functions as F

from lakehouse.catalog import Catalog, EventType, FieldSpec, topic_for

# ISO-8601 with an explicit zone: Z or ±hh:mm / ±hhmm.
ZONED_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$"
# Clock skew tolerated before an event counts as coming from the future; such an event
# would otherwise drag every watermark forward and make honest events look late.
FUTURE_TOLERANCE = timedelta(minutes=5)


def payload_struct_column(domain: str) -> str:
    """Name of the parsed-payload struct column of ``domain``."""
    return f"payload_{domain}"


def _first(checks: list[Column]) -> Column:
    return F.coalesce(*checks) if checks else F.lit(None).cast("string")


def _field_checks(event: EventType, parsed: Column, raw_payload: Column) -> list[Column]:
    """Checks of one type's payload; ``raw_payload`` is the payload parsed once as a
    ``map<string,string>`` (raw JSON text per key, null for JSON null) — one parse per record
    instead of one ``get_json_object`` per field."""
    checks: list[Column] = []
    for spec in event.fields:
        raw_value = raw_payload[spec.name]
        value = parsed[spec.name]
        if spec.pii == "forbidden":
            checks.append(F.when(raw_value.isNotNull(), F.lit(f"forbidden_pii:{spec.name}")))
            continue
        if spec.required:
            checks.append(F.when(raw_value.isNull(), F.lit(f"missing_required:{spec.name}")))
        checks.append(
            F.when(raw_value.isNotNull() & value.isNull(), F.lit(f"type_mismatch:{spec.name}"))
        )
        checks.extend(_value_checks(spec, value))
    return checks


def _value_checks(spec: FieldSpec, value: Column) -> list[Column]:
    checks: list[Column] = []
    if spec.allowed is not None:
        checks.append(
            F.when(
                value.isNotNull() & ~value.isin(list(spec.allowed)),
                F.lit(f"not_allowed:{spec.name}"),
            )
        )
    if spec.min is not None:
        checks.append(F.when(value < F.lit(spec.min), F.lit(f"out_of_range:{spec.name}")))
    if spec.max is not None:
        checks.append(F.when(value > F.lit(spec.max), F.lit(f"out_of_range:{spec.name}")))
    if spec.type == "array":
        if spec.required:
            checks.append(F.when(F.size(value) < 1, F.lit(f"missing_required:{spec.name}")))
        for item in spec.items:
            bad_item = _item_invalid(item)
            checks.append(
                F.when(F.exists(value, bad_item), F.lit(f"invalid_item:{spec.name}.{item.name}"))
            )
    return checks


def _item_invalid(item: FieldSpec):  # noqa: ANN202 - returns a lambda for F.exists
    def invalid(element: Column) -> Column:
        value = element[item.name]
        condition = F.lit(False)
        if item.required:
            condition = condition | value.isNull()
        if item.min is not None:
            condition = condition | (value < F.lit(item.min))
        if item.max is not None:
            condition = condition | (value > F.lit(item.max))
        return condition

    return invalid


def rejection_reason(catalog: Catalog, topic_prefix: str) -> Column:
    """The first contract violation of a parsed bronze record, or null when it is valid.

    Expects the columns produced by ``spark_jobs.silver.parse_envelope``: ``value_map``
    (the record as ``map<string,string>``, null unless a JSON object), ``payload_map``,
    ``topic``, ``kafka_timestamp``, ``envelope`` (struct), ``event_time_text`` and one
    ``payload_<domain>`` struct per domain.
    """
    envelope = F.col("envelope")
    envelope_checks = [
        F.when(F.col("value_map").isNull(), F.lit("malformed_json")),
        *[
            F.when(envelope[f.name].isNull(), F.lit(f"missing_envelope_field:{f.name}"))
            for f in catalog.envelope
            if f.required and f.name not in ("event_time",)
        ],
        F.when(F.col("event_time_text").isNull(), F.lit("missing_envelope_field:event_time")),
        F.when(envelope["payload"].isNull(), F.lit("missing_envelope_field:payload")),
        F.when(
            ~envelope["event_type"].isin(list(catalog.event_types)),
            F.lit("unknown_event_type"),
        ),
    ]
    per_type = []
    for event in catalog.event_types.values():
        parsed = F.col(payload_struct_column(event.domain))
        checks = [
            F.when(envelope["schema_version"] != F.lit(event.version), F.lit("unsupported_schema_version")),
            F.when(
                F.col("topic") != F.lit(topic_for(topic_prefix, event.domain)), F.lit("wrong_topic")
            ),
            F.when(
                ~F.col("event_time_text").rlike(ZONED_TIMESTAMP) | envelope["event_time"].isNull(),
                F.lit("invalid_event_time"),
            ),
            F.when(
                envelope["event_time"]
                > F.col("kafka_timestamp") + F.expr(f"INTERVAL {int(FUTURE_TOLERANCE.total_seconds())} SECONDS"),
                F.lit("event_time_in_future"),
            ),
            *_field_checks(event, parsed, F.col("payload_map")),
        ]
        per_type.append(F.when(envelope["event_type"] == F.lit(event.event_type), _first(checks)))
    return _first([*envelope_checks, F.coalesce(*per_type)])


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

"""Edge validation of event records against the catalog (the collector's and replay's check).

One precompiled validator per event type from :meth:`Catalog.json_schema` (jsonschema-rs when
installed: ~1 µs per event; the pure-Python ``jsonschema`` otherwise). A rejection carries a
reason code and a detail built only from the field path and the failed keyword, never from the
value, so that a rejection can be logged and dead-lettered without leaking PII.

Reason codes: ``malformed`` (not a JSON object), ``unknown_event_type``, ``forbidden_pii``
(a field classed ``forbidden`` is present: card numbers, CVV…), ``schema_version_mismatch``,
``schema_violation``, ``event_time_in_future`` (beyond the clock-skew tolerance silver uses:
such an event would drag every watermark forward).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from lakehouse.catalog import Catalog, EventType

# Same tolerance as silver's contract check (lakehouse.quality.FUTURE_TOLERANCE), kept here
# literally so the collector does not import Spark for one constant.
FUTURE_TOLERANCE = timedelta(minutes=5)
# Silver's accepted spelling of a zoned timestamp (lakehouse.quality.ZONED_TIMESTAMP): RFC 3339
# also allows a lower-case t/z, which silver would quarantine, so the edge refuses it too.
ZONED_TIMESTAMP = re.compile(
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$"
)

try:  # pragma: no branch
    import jsonschema_rs

    def _compile(schema: dict[str, Any]) -> Any:
        return jsonschema_rs.validator_for(schema, validate_formats=True)

    def _errors(validator: Any, record: Any) -> list[tuple[str, str]]:
        return [
            (_path(e.instance_path), str(e.schema_path[-1]) if e.schema_path else "schema")
            for e in validator.iter_errors(record)
        ]

except ImportError:  # pragma: no cover - the fallback is exercised where jsonschema-rs is absent
    import jsonschema

    def _compile(schema: dict[str, Any]) -> Any:
        cls = jsonschema.validators.validator_for(schema)
        return cls(schema, format_checker=cls.FORMAT_CHECKER)

    def _errors(validator: Any, record: Any) -> list[tuple[str, str]]:
        return [
            (_path(e.absolute_path), str(e.validator) if e.validator else "schema")
            for e in validator.iter_errors(record)
        ]


def _path(parts: Any) -> str:
    return ".".join(str(p) for p in parts) or "$"


@dataclass(frozen=True)
class Rejection:
    """Why a record was refused: a reason code and a value-free detail."""

    reason: str
    detail: str


class EventValidator:
    """Validates envelope records against the catalog contracts."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._validators = {t: _compile(catalog.json_schema(t)) for t in catalog.event_types}
        self._forbidden = {
            t: frozenset(f.name for f in e.fields if f.pii == "forbidden")
            for t, e in catalog.event_types.items()
        }

    def event(self, event_type: Any) -> EventType | None:
        """The contract of ``event_type`` if it is a known type."""
        if isinstance(event_type, str):
            return self.catalog.event_types.get(event_type)
        return None

    def check(self, record: Any) -> Rejection | None:
        """None if ``record`` is a valid envelope record, else the rejection."""
        if not isinstance(record, dict):
            return Rejection("malformed", "a record must be a JSON object")
        event_type = record.get("event_type")
        event = self.event(event_type)
        if event is None:
            return Rejection("unknown_event_type", "event_type is not in the catalog")
        payload = record.get("payload")
        if isinstance(payload, dict):
            present = self._forbidden[event.event_type].intersection(payload)
            if present:
                fields = ", ".join(f"payload.{name}" for name in sorted(present))
                return Rejection("forbidden_pii", f"forbidden fields present: {fields}")
        validator = self._validators[event.event_type]
        if validator.is_valid(record):
            text = record["event_time"]
            try:
                if not ZONED_TIMESTAMP.match(text):
                    raise ValueError(text)
                event_time = datetime.fromisoformat(text)
            except ValueError:  # lower-case t/z, leap seconds: valid RFC 3339, not for silver
                return Rejection("invalid_event_time", "event_time: use ISO-8601 with a zone")
            if event_time > datetime.now(UTC) + FUTURE_TOLERANCE:
                return Rejection(
                    "event_time_in_future",
                    f"event_time is more than {int(FUTURE_TOLERANCE.total_seconds())}s ahead",
                )
            return None
        if record.get("schema_version") != event.version:
            return Rejection(
                "schema_version_mismatch", f"schema_version must be {event.version}"
            )
        errors = _errors(validator, record)[:5]
        detail = "; ".join(f"{path}: {keyword}" for path, keyword in errors) or "invalid"
        return Rejection("schema_violation", detail)

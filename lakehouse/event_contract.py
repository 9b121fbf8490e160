"""The one rule set of a raw event record, shared by the collector's edge and silver.

Every record on a raw topic is checked by :class:`RecordRules` — the collector calls it on each
event of a batch before producing, silver calls it (through :func:`lakehouse.quality.record_judgement`)
on each bronze record — so both refuse the same records for the same :class:`Reason`. The rules
are derived from the event catalog (``conf/events/``); nothing here names an event type.

Decisions (each case is a test in ``tests/ingest/test_contract_rules.py``):

- **Strict JSON.** A record is one JSON object: single quotes, trailing content after the
  object, ``NaN``/``Infinity`` literals, numbers beyond a double's range and duplicate keys are
  refused (``malformed_json``, ``non_finite_number``, ``duplicate_key``). A duplicate key has no
  agreed meaning (last-wins in one parser, first-wins or an error in another).
- **Exact types.** A ``string`` field takes a JSON string only (``49`` and ``{"code": "DE"}`` are
  ``type_mismatch``); a ``number`` takes a JSON number (``"12.5"`` is ``type_mismatch``,
  ``"NaN"``/``"Infinity"`` are ``non_finite_number``); an ``integer`` takes a JSON number without
  a fractional part (``1.0`` is accepted and written as ``1``; ``1.5`` is ``type_mismatch``), within
  64 bits; a ``boolean`` takes ``true``/``false`` only. ``payload`` must be an object: a payload
  sent as a JSON string holding JSON (encoded twice) is ``type_mismatch:payload``.
- **Times.** ISO-8601 / RFC 3339 with a zone: ``Z`` or ``±hh:mm``/``±hhmm``; ``T`` or a space
  between date and time; seconds and up to 9 fraction digits optional; ``t``/``z`` accepted in
  lower case (RFC 3339 §5.6 allows it). A time without a zone, a leap second or an impossible date
  is ``invalid_event_time``. Spellings Spark cannot cast (no seconds, lower case) are rewritten
  canonically by :meth:`RecordRules.canonical`: the collector writes that form to Kafka, and
  silver parses that form of a record a producer wrote to Kafka directly.
- **Depth and size of numbers.** A record nested deeper than :data:`MAX_DEPTH` levels is
  ``too_deeply_nested`` (catalog records need 4; serialisers give up near 255); an integer beyond
  64 bits anywhere is ``out_of_range`` (no reader of the raw topics can hold it).

The first violation found, in the order of :class:`Reason`, is the verdict. Silver stores it
qualified by the field (``type_mismatch:country``); the collector answers the bare code and the
field separately. Details name fields and rules, never values (they are logged).
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from lakehouse.catalog import Catalog, EventType, FieldSpec, topic_for

MAX_DEPTH = 16
FUTURE_TOLERANCE = timedelta(minutes=5)
INT64 = (-(2**63), 2**63 - 1)
NON_FINITE_TEXT = frozenset({"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"})
ZONED_TIMESTAMP = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?([Zz]|[+-]\d{2}:?\d{2})$"
)
# The spelling Spark's timestamp cast understands (silver parses event_time with it).
SPARK_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})$")


class Reason(StrEnum):
    """Why a record is refused, at the edge and in silver (checked in this order).

    The value is the code clients, dashboards and ``trivas quarantine list --reason`` match on.
    """

    MALFORMED_JSON = "malformed_json"
    """Not one strict JSON object (single quotes, trailing content, truncated, not an object)."""
    TOO_DEEPLY_NESTED = "too_deeply_nested"
    """Objects/arrays nested more than MAX_DEPTH levels."""
    DUPLICATE_KEY = "duplicate_key"
    """An object names the same key twice (field: the key's path)."""
    NON_FINITE_NUMBER = "non_finite_number"
    """NaN or ±Infinity, as a literal, as an overflowing number or as the text of a number field."""
    MISSING_ENVELOPE_FIELD = "missing_envelope_field"
    """A required envelope field (event_id, event_type, …, payload) is absent or null."""
    UNKNOWN_ENVELOPE_FIELD = "unknown_envelope_field"
    """A top-level field the envelope does not declare."""
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    """event_type is not a catalog type."""
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    """schema_version is not an integer, or newer than the catalog's current version of the type."""
    RETIRED_SCHEMA_VERSION = "retired_schema_version"
    """schema_version is older than the type's transition window (``oldest_accepted_version``
    in its catalog file): its producer must upgrade; replayable after a contract fix."""
    WRONG_TOPIC = "wrong_topic"
    """Silver only: the record sits on another domain's raw topic."""
    INVALID_EVENT_TIME = "invalid_event_time"
    """event_time (or sent_at) is not an ISO-8601 time with a zone."""
    EVENT_TIME_IN_FUTURE = "event_time_in_future"
    """event_time more than FUTURE_TOLERANCE after arrival (the clock of the collector, or the
    Kafka timestamp in silver): it would drag every watermark forward."""
    FORBIDDEN_PII = "forbidden_pii"
    """A field classed ``forbidden`` (card number, CVV) is present: refused, never stored."""
    MISSING_REQUIRED = "missing_required"
    """A required payload field is absent or null (or a required array is empty)."""
    TYPE_MISMATCH = "type_mismatch"
    """A field's JSON type is not its contract type (see the module docstring)."""
    NOT_ALLOWED = "not_allowed"
    """A value outside the field's allowed list."""
    OUT_OF_RANGE = "out_of_range"
    """A number below min, above max, or an integer beyond 64 bits."""
    INVALID_ITEM = "invalid_item"
    """An element of an array field breaks the item contract (field: ``array.item``)."""


@dataclass(frozen=True)
class Verdict:
    """A refusal: the reason, the field it concerns (if any) and a value-free detail."""

    reason: Reason
    field: str | None = None
    detail: str = ""

    @property
    def qualified(self) -> str:
        """``reason:field`` (as silver's quarantine stores it), or the bare reason."""
        return f"{self.reason.value}:{self.field}" if self.field else self.reason.value


class _Duplicates(dict):
    """A parsed object that named some key twice (``keys`` lists them)."""

    keys_twice: tuple[str, ...] = ()


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        flagged = _Duplicates(obj)
        flagged.keys_twice = tuple(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        return flagged
    return obj


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=float)


class MalformedJson(ValueError):
    """The text is not one JSON document (``reason`` tells which way)."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def strict_loads(text: str | bytes) -> Any:
    """Parse one JSON document, keeping what the rules must see.

    Duplicate keys are flagged on the object (checked by :meth:`RecordRules.check`), NaN and
    Infinity literals and overflowing numbers become non-finite floats (refused there too).

    Raises:
        MalformedJson: not one JSON document, or nested beyond the parser's recursion limit.
    """
    if isinstance(text, bytes | bytearray):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedJson(Reason.MALFORMED_JSON, "the body is not UTF-8") from None
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise MalformedJson(Reason.TOO_DEEPLY_NESTED, f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError:
        raise MalformedJson(Reason.MALFORMED_JSON, "not one strict JSON document") from None


def _structure_violation(value: Any) -> Verdict | None:
    """Depth, duplicate keys, non-finite numbers and oversized integers anywhere in a record.

    A fast pass without paths first (nearly every record is clean); only a record that fails
    it is walked again to name the place."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        kind = type(node)
        if kind is dict or kind is list:
            if depth > MAX_DEPTH:
                return _locate_violation(value)
            stack.extend((child, depth + 1) for child in (node.values() if kind is dict else node))
        elif kind is _Duplicates:
            return _locate_violation(value)
        elif kind is float:
            if node != node or node in (math.inf, -math.inf):
                return _locate_violation(value)
        elif kind is int and not INT64[0] <= node <= INT64[1]:
            return _locate_violation(value)
    return None


def _locate_violation(value: Any) -> Verdict | None:
    """The structural violation of ``value`` with the path where it is (the slow pass)."""
    stack: list[tuple[Any, str, int]] = [(value, "", 1)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, dict):
            if depth > MAX_DEPTH:
                return Verdict(Reason.TOO_DEEPLY_NESTED, None, f"nested deeper than {MAX_DEPTH} levels")
            if isinstance(node, _Duplicates):
                where = (f"{path}.{node.keys_twice[0]}" if path else node.keys_twice[0]).removeprefix("payload.")
                return Verdict(Reason.DUPLICATE_KEY, where, f"{where}: key given twice")
            stack.extend((v, f"{path}.{k}" if path else str(k), depth + 1) for k, v in node.items())
        elif isinstance(node, list):
            if depth > MAX_DEPTH:
                return Verdict(Reason.TOO_DEEPLY_NESTED, None, f"nested deeper than {MAX_DEPTH} levels")
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(node))
        elif isinstance(node, int) and not isinstance(node, bool) and not INT64[0] <= node <= INT64[1]:
            where = path.removeprefix("payload.") or None
            return Verdict(Reason.OUT_OF_RANGE, where, f"{path or 'record'}: integer beyond 64 bits")
        elif isinstance(node, float) and not math.isfinite(node):
            return Verdict(Reason.NON_FINITE_NUMBER, path.removeprefix("payload.") or None, f"{path or 'record'}: NaN or Infinity")
    return None


def parse_time(text: Any) -> datetime | None:
    """The zone-aware time an accepted spelling names, else None."""
    if not isinstance(text, str):
        return None
    match = ZONED_TIMESTAMP.match(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    zone = zone.upper()
    if zone != "Z" and ":" not in zone:
        zone = f"{zone[:3]}:{zone[3:]}"
    micro = (fraction or "").ljust(6, "0")[:6]
    try:
        return datetime.fromisoformat(
            f"{year}-{month}-{day}T{hour}:{minute}:{second or '00'}.{micro}{'+00:00' if zone == 'Z' else zone}"
        )
    except ValueError:  # 25:00, 23:59:60, 2026-02-30
        return None


def _type_ok(spec: FieldSpec, value: Any) -> bool:
    kind = spec.type
    if kind in ("string", "timestamp"):
        return isinstance(value, str)
    if isinstance(value, bool):
        return kind == "boolean"
    if kind == "number":
        return isinstance(value, int | float)
    if kind == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if kind == "array":
        return isinstance(value, list)
    return False


def _value_violation(spec: FieldSpec, value: Any, name: str, prefix: str = "") -> Verdict | None:
    """The violation of one present, non-null value of ``spec`` (``name`` is the qualifier,
    ``prefix + name`` the path named in the detail)."""
    path = prefix + name
    if spec.type in ("number", "integer") and isinstance(value, str) and value.strip().lower() in NON_FINITE_TEXT:
        return Verdict(Reason.NON_FINITE_NUMBER, name, f"{path}: NaN or Infinity is not a number")
    if not _type_ok(spec, value):
        return Verdict(Reason.TYPE_MISMATCH, name, f"{path}: must be a JSON {spec.type}")
    if spec.type == "timestamp" and parse_time(value) is None:
        # event_time is the record's time axis: its reason needs no qualifier.
        where = None if name == "event_time" else name
        return Verdict(Reason.INVALID_EVENT_TIME, where, f"{path}: use ISO-8601 with a zone")
    if spec.type == "number" and isinstance(value, int) and not isinstance(value, bool) and abs(value) > 1.7e308:
        return Verdict(Reason.NON_FINITE_NUMBER, name, f"{path}: beyond a double's range")
    if spec.type == "integer" and not INT64[0] <= value <= INT64[1]:
        return Verdict(Reason.OUT_OF_RANGE, name, f"{path}: beyond a 64-bit integer")
    if spec.allowed is not None and value not in spec.allowed:
        return Verdict(Reason.NOT_ALLOWED, name, f"{path}: not an allowed value")
    if spec.min is not None and value < spec.min:
        return Verdict(Reason.OUT_OF_RANGE, name, f"{path}: below {spec.min:g}")
    if spec.max is not None and value > spec.max:
        return Verdict(Reason.OUT_OF_RANGE, name, f"{path}: above {spec.max:g}")
    if spec.format == "uuid":
        try:
            uuid.UUID(value)
        except ValueError:
            return Verdict(Reason.TYPE_MISMATCH, name, f"{path}: must be a UUID")
    return None


def _version_violation(event: EventType, version: Any) -> Verdict | None:
    """None when ``version`` is within ``event``'s accepted versions (its transition window)."""
    accepted = event.accepted_versions
    integral = isinstance(version, int) or (isinstance(version, float) and version.is_integer())
    if isinstance(version, bool) or not integral or not 1 <= version <= event.version:
        return Verdict(
            Reason.UNSUPPORTED_SCHEMA_VERSION, None,
            f"schema_version must be an integer within {accepted.start}..{event.version}",
        )  # fmt: skip
    if version < accepted.start:
        return Verdict(
            Reason.RETIRED_SCHEMA_VERSION, None,
            f"schema_version {version} is older than the transition window ({accepted.start}..{event.version})",
        )  # fmt: skip
    return None


class RecordRules:
    """The contract of raw records, derived from the catalog."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._envelope = {f.name: f for f in catalog.envelope}

    def event(self, event_type: Any) -> EventType | None:
        """The contract of ``event_type`` if it is a known type."""
        return self.catalog.event_types.get(event_type) if isinstance(event_type, str) else None

    def check(
        self,
        record: Any,
        arrival: datetime,
        topic: str | None = None,
        topic_prefix: str | None = None,
    ) -> Verdict | None:
        """None when ``record`` (as :func:`strict_loads` returns it) is valid, else the verdict.

        Args:
            record: the parsed record.
            arrival: when it arrived (collector clock, or the Kafka timestamp in silver); the
                future tolerance is measured from it.
            topic: the raw topic it was read from (silver); None at the edge.
            topic_prefix: the deployment's raw-topic prefix, needed with ``topic``.
        """
        if not isinstance(record, dict):
            return Verdict(Reason.MALFORMED_JSON, None, "a record must be a JSON object")
        structural = _structure_violation(record)
        if structural is not None:
            return structural
        for name, spec in self._envelope.items():
            if spec.required and record.get(name) is None:
                return Verdict(Reason.MISSING_ENVELOPE_FIELD, name, f"{name} is required")
        if record.get("payload") is None:
            return Verdict(Reason.MISSING_ENVELOPE_FIELD, "payload", "payload is required")
        unknown = sorted(set(record) - set(self._envelope) - {"payload"})
        if unknown:
            return Verdict(Reason.UNKNOWN_ENVELOPE_FIELD, unknown[0], f"{unknown[0]}: not an envelope field")
        event = self.event(record["event_type"])
        if event is None:
            return Verdict(Reason.UNKNOWN_EVENT_TYPE, None, "event_type is not in the catalog")
        version = record["schema_version"]
        version_verdict = _version_violation(event, version)
        if version_verdict is not None:
            return version_verdict
        if topic is not None and topic_prefix is not None and topic != topic_for(topic_prefix, event.domain):
            return Verdict(Reason.WRONG_TOPIC, None, f"{event.event_type} belongs on {topic_for(topic_prefix, event.domain)}")
        for name, spec in self._envelope.items():
            value = record.get(name)
            if value is None or name in ("event_type", "schema_version"):
                continue
            violation = _value_violation(spec, value, name)
            if violation is not None:
                return violation
        event_time = parse_time(record["event_time"])
        assert event_time is not None  # checked above as a timestamp field
        if event_time > arrival + FUTURE_TOLERANCE:
            return Verdict(
                Reason.EVENT_TIME_IN_FUTURE,
                None,
                f"event_time is more than {int(FUTURE_TOLERANCE.total_seconds())}s after arrival",
            )
        payload = record["payload"]
        if not isinstance(payload, dict):
            return Verdict(Reason.TYPE_MISMATCH, "payload", "payload must be a JSON object")
        return self._payload_violation(event, payload, int(version))

    def _payload_violation(self, event: EventType, payload: dict[str, Any], version: int) -> Verdict | None:
        forbidden = sorted(
            f.name for f in event.fields if f.pii == "forbidden" and any(n in payload for n in (f.name, *f.aliases))
        )
        if forbidden:
            return Verdict(
                Reason.FORBIDDEN_PII,
                forbidden[0],
                "forbidden fields present: " + ", ".join(f"payload.{n}" for n in forbidden),
            )
        for spec in event.fields:
            value = spec.value_in(payload)
            if value is None:
                if spec.required_in(version):
                    return Verdict(Reason.MISSING_REQUIRED, spec.name, f"payload.{spec.name} is required")
                continue
            violation = _value_violation(spec, value, spec.name, "payload.")
            if violation is not None:
                return violation
            if spec.type == "array":
                if spec.required_in(version) and not value:
                    return Verdict(Reason.MISSING_REQUIRED, spec.name, f"payload.{spec.name} must not be empty")
                for element in value:
                    violation = self._item_violation(spec, element)
                    if violation is not None:
                        return violation
        return None

    @staticmethod
    def _item_violation(spec: FieldSpec, element: Any) -> Verdict | None:
        if not isinstance(element, dict):
            return Verdict(Reason.INVALID_ITEM, spec.name, f"payload.{spec.name}: items must be objects")
        for item in spec.items:
            name = f"{spec.name}.{item.name}"
            value = element.get(item.name)
            if value is None:
                if item.required:
                    return Verdict(Reason.INVALID_ITEM, name, f"payload.{name} is required")
                continue
            violation = _value_violation(item, value, name, "payload.")
            if violation is not None:
                # Inside arrays every violation is reported as the item's (one code per array).
                return Verdict(Reason.INVALID_ITEM if violation.reason != Reason.NON_FINITE_NUMBER else violation.reason, name, violation.detail)
        return None

    def canonical(self, record: dict[str, Any]) -> dict[str, Any]:
        """A valid record in the spelling every reader parses: integral numbers of integer
        fields as integers, times with seconds and an upper-case ``T``/``Z``."""
        return self.respelled(record) or record

    def respelled(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """:meth:`canonical` of a valid record when it differs from ``record``, else None
        (most records are already canonical: silver then parses the text it read)."""
        event = self.catalog.event_types[record["event_type"]]
        out, changed = dict(record), False
        for name, spec in self._envelope.items():
            value = out.get(name)
            if spec.type == "timestamp" and isinstance(value, str) and not SPARK_TIMESTAMP.match(value):
                out[name], changed = parse_time(value).isoformat(), True  # type: ignore[union-attr]
        payload = dict(out["payload"])
        for spec in event.fields:
            alias = next((a for a in spec.aliases if a in payload), None)
            if alias is not None:
                # A record written before a rename travels under the current name.
                value = payload.pop(alias)
                payload.setdefault(spec.name, value)
                changed = True
            value = payload.get(spec.name)
            if value is None:
                continue
            if spec.type == "integer" and isinstance(value, float):
                payload[spec.name], changed = int(value), True
            elif spec.type == "timestamp" and not SPARK_TIMESTAMP.match(value):
                payload[spec.name], changed = parse_time(value).isoformat(), True  # type: ignore[union-attr]
            elif spec.type == "array" and any(i.type == "integer" for i in spec.items):
                integers = {i.name for i in spec.items if i.type == "integer"}
                if any(isinstance(element.get(k), float) for element in value for k in integers):
                    payload[spec.name] = [
                        {k: int(v) if k in integers and isinstance(v, float) else v for k, v in element.items()}
                        for element in value
                    ]
                    changed = True
        out["payload"] = payload
        return out if changed else None

    def check_text(
        self, text: str | bytes | None, arrival: datetime, topic: str | None = None, topic_prefix: str | None = None
    ) -> Verdict | None:
        """:meth:`check` of a raw record's text (what silver reads from bronze)."""
        return self.judge_text(text, arrival, topic, topic_prefix)[0]

    def judge_text(
        self, text: str | bytes | None, arrival: datetime, topic: str | None = None, topic_prefix: str | None = None
    ) -> tuple[Verdict | None, dict[str, Any] | None]:
        """:meth:`check_text` and the parsed record (None when the text is not JSON)."""
        if text is None:
            return Verdict(Reason.MALFORMED_JSON, None, "empty record"), None
        try:
            record = strict_loads(text)
        except MalformedJson as exc:
            return Verdict(exc.reason, None, str(exc)), None
        return self.check(record, arrival, topic, topic_prefix), record


def clip_depth(value: Any, depth: int = MAX_DEPTH) -> Any:
    """A copy of ``value`` with anything nested deeper than ``depth`` replaced by a marker
    (so a refused record can still be serialised into a dead letter)."""
    if depth <= 0 and isinstance(value, dict | list):
        return "[too deep]"
    if isinstance(value, dict):
        return {str(k): clip_depth(v, depth - 1) for k, v in value.items()}
    if isinstance(value, list):
        return [clip_depth(v, depth - 1) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool) and not INT64[0] <= value <= INT64[1]:
        return str(value)
    return value

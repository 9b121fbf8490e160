"""Every decided case of the record contract, with its reason (None: accepted).

One table for both validators: ``test_edge_unit`` runs it through the collector's edge
validator, ``test_contract_parity`` through silver's ``classify`` as well. Each case is the raw
text of one record (as a producer would write it), with the reason both must give.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

ARRIVAL = datetime(2026, 11, 28, 10, 0, 30, tzinfo=UTC)
EVENT_ID = "0b8f8a52-5f5a-4b8e-9d1e-2a7b0c3d4e5f"


def order(**changes: Any) -> dict[str, Any]:
    """A valid order_placed record; ``payload_<name>=…`` changes a payload field (None drops it)."""
    payload: dict[str, Any] = {
        "order_id": "o-1", "customer_id": "c-1", "email": "ada@example.com", "amount": 42.5,
        "currency": "EUR", "country": "DE", "items": [{"sku": "SKU-1", "quantity": 2, "unit_price": 21.25}],
    }  # fmt: skip
    record: dict[str, Any] = {
        "event_id": EVENT_ID, "event_type": "order_placed", "schema_version": 1,
        "event_time": "2026-11-28T10:00:00+00:00", "source": "sdk:test", "payload": payload,
    }  # fmt: skip
    for key, value in changes.items():
        target, name = (payload, key.removeprefix("payload_")) if key.startswith("payload_") else (record, key)
        if value is None:
            target.pop(name, None)
        else:
            target[name] = value
    return record


def page_view(**changes: Any) -> dict[str, Any]:
    """A valid page_view record (same ``changes`` convention)."""
    record = order(event_type="page_view", **{f"payload_{k}": None for k in order()["payload"]})
    record["payload"] = {"session_id": "s-1", "anonymous_id": "a-1", "page_url": "/", "page_seq": 1,
                         "device": "mobile", "country": "DE"}  # fmt: skip
    for key, value in changes.items():
        target, name = (record["payload"], key.removeprefix("payload_")) if key.startswith("payload_") else (record, key)
        target[name] = value
    return record


def text(record: Any) -> str:
    return json.dumps(record)


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


@dataclass(frozen=True)
class Case:
    """A record's raw text, its domain topic suffix and the (qualified) reason expected."""

    name: str
    raw: str
    reason: str | None
    domain: str = "orders"
    # The collector writes accepted records canonically; silver reads what is on the topic.
    canonical_differs: bool = False


_AMOUNT = '"amount": 42.5'
CASES: list[Case] = [
    Case("valid order", text(order()), None),
    Case("valid page view", text(page_view()), None, "web"),
    Case("optional field null", text(order(payload_campaign_id=None) | {"payload": {**order()["payload"], "campaign_id": None}}), None),
    # strict JSON
    Case("not an object", "[1, 2, 3]", "malformed_json"),
    Case("single-quoted JSON", text(order()).replace('"', "'"), "malformed_json"),
    Case("trailing brace", text(order()) + "}", "malformed_json"),
    Case("truncated", text(order())[:-5], "malformed_json"),
    Case("record encoded twice", json.dumps(text(order())), "malformed_json"),
    Case("duplicate key", text(order()).replace('"currency": "EUR"', '"currency": "EUR", "currency": "USD"'), "duplicate_key:currency"),
    Case("nested 300 levels", text(order(payload_extra=nested(300))), "too_deeply_nested"),
    Case("integer beyond 64 bits", text(order(payload_extra=2**70)), "out_of_range:extra"),
    # non-finite numbers
    Case("NaN literal", text(order()).replace(_AMOUNT, '"amount": NaN'), "non_finite_number:amount"),
    Case("Infinity literal", text(order()).replace(_AMOUNT, '"amount": Infinity'), "non_finite_number:amount"),
    Case("-Infinity literal", text(order()).replace(_AMOUNT, '"amount": -Infinity'), "non_finite_number:amount"),
    Case("overflowing number", text(order()).replace(_AMOUNT, '"amount": 1e999'), "non_finite_number:amount"),
    Case("NaN as text", text(order(payload_amount="NaN")), "non_finite_number:amount"),
    Case("Infinity as text", text(order(payload_amount="Infinity")), "non_finite_number:amount"),
    Case("NaN item price", text(order(payload_items=[{"sku": "S", "quantity": 1, "unit_price": "nan"}])), "non_finite_number:items.unit_price"),
    # exact types
    Case("number for a string", text(order(payload_country=49)), "type_mismatch:country"),
    Case("object for a string", text(order(payload_country={"code": "DE"})), "type_mismatch:country"),
    Case("boolean for a string", text(order(payload_country=True)), "type_mismatch:country"),
    Case("text for a number", text(order(payload_amount="12.5")), "type_mismatch:amount"),
    Case("payload encoded twice", text(order(payload=json.dumps(order()["payload"]))), "type_mismatch:payload"),
    Case("integral float for an integer", text(page_view(payload_page_seq=1.0)), None, "web", canonical_differs=True),
    Case("fraction for an integer", text(page_view(payload_page_seq=1.5)), "type_mismatch:page_seq", "web"),
    Case("text for an integer", text(page_view(payload_page_seq="1")), "type_mismatch:page_seq", "web"),
    Case("integral float item quantity", text(order(payload_items=[{"sku": "S", "quantity": 2.0, "unit_price": 1}])), None, canonical_differs=True),
    Case("text item quantity", text(order(payload_items=[{"sku": "S", "quantity": "2", "unit_price": 1}])), "invalid_item:items.quantity"),
    Case("event id not a UUID", text(order(event_id="ada@example.com")), "type_mismatch:event_id"),
    Case("schema version as text", text(order(schema_version="1")), "unsupported_schema_version"),
    # times
    Case("time without seconds", text(order(event_time="2026-11-28T10:00Z")), None, canonical_differs=True),
    Case("lower-case t and z", text(order(event_time="2026-11-28t10:00:00z")), None, canonical_differs=True),
    Case("nanoseconds and compact offset", text(order(event_time="2026-11-28T11:00:00.123456789+0100")), None),
    Case("space separator", text(order(event_time="2026-11-28 10:00:00Z")), None),
    Case("no zone", text(order(event_time="2026-11-28T10:00:00")), "invalid_event_time"),
    Case("leap second", text(order(event_time="2026-11-28T23:59:60Z")), "invalid_event_time"),
    Case("impossible date", text(order(event_time="2026-02-30T10:00:00Z")), "invalid_event_time"),
    Case("time as a number", text(order(event_time=1764324000)), "type_mismatch:event_time"),
    Case("in the future", text(order(event_time=(ARRIVAL + timedelta(minutes=6)).isoformat())), "event_time_in_future"),
    Case("inside the future tolerance", text(order(event_time=(ARRIVAL + timedelta(minutes=4)).isoformat())), None),
    # envelope and contract
    Case("missing event id", text(order(event_id=None)), "missing_envelope_field:event_id"),
    Case("missing payload", text(order(payload=None)), "missing_envelope_field:payload"),
    Case("unknown envelope field", text(order(unexpected="x")), "unknown_envelope_field:unexpected"),
    Case("unknown event type", text(order(event_type="order_shipped")), "unknown_event_type"),
    Case("other schema version", text(order(schema_version=2)), "unsupported_schema_version"),
    Case("forbidden card number", text(order(payload_card_number="4111 1111 1111 1111")), "forbidden_pii:card_number"),
    Case("missing required", text(order(payload_order_id=None)), "missing_required:order_id"),
    Case("not allowed", text(order(payload_currency="USD")), "not_allowed:currency"),
    Case("below min", text(order(payload_amount=-5)), "out_of_range:amount"),
    Case("bad item", text(order(payload_items=[{"sku": "S", "quantity": 0, "unit_price": 1}])), "invalid_item:items.quantity"),
    Case("empty required array", text(order(payload_items=[])), "missing_required:items"),
]

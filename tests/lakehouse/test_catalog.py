"""The event catalog and what is derived from it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import jsonschema
import pytest
import yaml
from pyspark.sql import types as T

from lakehouse.catalog import load_catalog, parse_duration
from lakehouse.generator.shop import Shop, ShopConfig, utc

pytestmark = pytest.mark.unit

REQUIRED_TYPES = {
    "page_view", "product_view", "add_to_cart", "checkout_started", "order_placed", "order_cancelled",
    "payment_authorized", "payment_failed", "refund_issued", "ad_click", "ad_cost", "ticket_opened",
    "ticket_resolved", "inventory_adjusted",
}  # fmt: skip


def test_catalog_covers_all_six_domains(catalog) -> None:
    assert set(catalog.event_types) >= REQUIRED_TYPES
    assert set(catalog.domains) == {"web", "orders", "payments", "ads", "support", "inventory"}
    assert all(catalog.events_of(d) for d in catalog.domains)


def test_generated_events_satisfy_every_json_schema(catalog) -> None:
    validators = {t: jsonschema.Draft202012Validator(catalog.json_schema(t), format_checker=jsonschema.FormatChecker()) for t in catalog.event_types}
    events = list(Shop(ShopConfig(seed=5, events_per_second=40), utc(2026, 11, 27, 20)).events(utc(2026, 11, 27, 20, 12)))
    assert {e["event_type"] for e in events} == REQUIRED_TYPES
    for event in events:
        errors = list(validators[event["event_type"]].iter_errors(event))
        assert not errors, (event, errors[0].message)


def test_json_schema_refuses_forbidden_pii_and_bad_values(catalog) -> None:
    validator = jsonschema.Draft202012Validator(catalog.json_schema("payment_authorized"))
    good = {
        "event_id": "6f1c1f4e-0d7f-4bd1-9a59-3c2d7e9b0c11", "event_type": "payment_authorized", "schema_version": 1,
        "event_time": "2026-11-28T10:00:00+00:00", "source": "sdk:web",
        "payload": {"payment_id": "p1", "order_id": "o1", "amount": 10.0, "currency": "EUR", "method": "card"},
    }  # fmt: skip
    assert validator.is_valid(good)
    assert not validator.is_valid({**good, "payload": {**good["payload"], "card_number": "4111111111111111"}})
    assert not validator.is_valid({**good, "payload": {**good["payload"], "method": "cash"}})
    assert not validator.is_valid({**good, "payload": {**good["payload"], "amount": -1}})


def test_spark_schemas_are_derived_once(catalog) -> None:
    orders = catalog.payload_schema("orders")
    assert orders["amount"].dataType == T.DoubleType()
    assert orders["items"].dataType == T.ArrayType(
        T.StructType([T.StructField("sku", T.StringType()), T.StructField("quantity", T.LongType()), T.StructField("unit_price", T.DoubleType())])
    )
    silver = catalog.silver_schema("orders")
    assert "card_number" not in silver.fieldNames()  # forbidden fields are never stored
    assert not silver["event_id"].nullable and silver["sent_at"].nullable
    assert catalog.pii_classes("orders") == {"customer_id": "tokenize", "email": "hash", "phone": "redact", "card_number": "forbidden"}


def test_lateness_and_dedup_horizons(catalog) -> None:
    assert catalog.event("order_placed").allowed_lateness == timedelta(minutes=2)
    assert catalog.max_allowed_lateness() == timedelta(minutes=5)
    assert catalog.max_dedup_horizon() == timedelta(minutes=10)
    assert parse_duration("90s") == timedelta(seconds=90) and parse_duration("1h") == timedelta(hours=1)
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration("soon")


def test_a_field_typed_differently_within_a_domain_is_rejected(tmp_path: Path) -> None:
    source = Path(__file__).resolve().parents[2] / "conf" / "events"
    for path in source.glob("*.yaml"):
        (tmp_path / path.name).write_text(path.read_text())
    broken = yaml.safe_load((tmp_path / "order_cancelled.yaml").read_text())
    broken["fields"][2]["type"] = "string"  # amount: number in order_placed
    (tmp_path / "order_cancelled.yaml").write_text(yaml.safe_dump(broken))
    with pytest.raises(ValueError, match="field 'amount' is"):
        load_catalog(tmp_path)

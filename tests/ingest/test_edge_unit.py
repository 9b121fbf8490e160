"""Unit tests of the collector's edge logic: contracts, signatures, mapping, limits, PII."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from lakehouse.catalog import catalog as load_catalog
from lakehouse.config import load_settings
from lakehouse.ingest.keys import add_key, key_hash, load_key_store, revoke_source
from lakehouse.ingest.ratelimit import RateLimiter, TokenBucket, retry_after_header
from lakehouse.ingest.scrub import PiiLogFilter, RecordScrubber
from lakehouse.ingest.validation import EventValidator
from lakehouse.ingest.webhooks import (
    SignatureError,
    map_shopify,
    map_stripe,
    shopify_signature,
    stripe_header,
    verify_shopify,
    verify_stripe,
    webhook_event_id,
)
from lakehouse.privacy import (
    KeyRing,
    PiiVault,
    VaultLockedError,
    load_key_ring,
    mask_pii_patterns,
    pseudonymise,
)

from .contract_cases import ARRIVAL, CASES, Case

pytestmark = pytest.mark.unit

CANARIES = {
    "email": "canary.jane.doe@example.org",
    "phone": "+49 151 23456789",
    "ip": "203.0.113.77",
    "card": "4111 1111 1111 1111",
    "customer": "cust-canary-0042",
}


def order(**overrides: Any) -> dict[str, Any]:
    """A valid order_placed record; payload keys in ``overrides`` replace payload fields."""
    payload = {
        "order_id": "o-1",
        "customer_id": CANARIES["customer"],
        "email": CANARIES["email"],
        "phone": CANARIES["phone"],
        "amount": 42.5,
        "currency": "EUR",
        "country": "DE",
        "items": [{"sku": "sku-1", "quantity": 1, "unit_price": 42.5}],
    }
    payload.update(overrides.pop("payload", {}))
    record = {
        "event_id": str(uuid.uuid4()),
        "event_type": "order_placed",
        "schema_version": 1,
        "event_time": datetime.now(UTC).isoformat(),
        "source": "sdk:test",
        "payload": payload,
    }
    record.update(overrides)
    return record


@pytest.fixture(scope="module")
def validator() -> EventValidator:
    return EventValidator(load_catalog())


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_edge_validation_reasons(validator: EventValidator, case: Case) -> None:
    """Every decided contract case, in both directions (the same table runs through silver in
    test_contract_parity)."""
    rejection = validator.rules.check_text(case.raw, ARRIVAL)
    assert (rejection.qualified if rejection else None) == case.reason


def test_edge_accepts_spellings_and_writes_them_canonically(validator: EventValidator) -> None:
    record = orjson.loads(next(c.raw for c in CASES if c.name == "time without seconds"))
    assert validator.check(record, ARRIVAL) is None
    assert validator.canonical(record)["event_time"] == "2026-11-28T10:00:00+00:00"
    view = orjson.loads(next(c.raw for c in CASES if c.name == "integral float for an integer"))
    canonical = validator.canonical(view)
    assert canonical["payload"]["page_seq"] == 1 and isinstance(canonical["payload"]["page_seq"], int)
    upper = validator.canonical({**record, "event_time": "2026-11-28t10:00:00.5z"})
    assert upper["event_time"] == "2026-11-28T10:00:00.500000+00:00"


def test_rejection_detail_never_echoes_values(validator: EventValidator) -> None:
    rejection = validator.check(order(payload={"email": 12345, "amount": "4111111111111111"}))
    assert rejection is not None and rejection.detail == "payload.email: must be a JSON string"
    rejection = validator.check(order(payload={"amount": "4111111111111111"}))
    assert rejection is not None and rejection.detail == "payload.amount: must be a JSON number"


def test_shopify_signature_accepts_any_configured_secret_and_refuses_forgeries() -> None:
    body = b'{"id": 1}'
    verify_shopify(body, shopify_signature(body, "new"), ["old", "new"])
    forged = base64.b64encode(hmac.new(b"attacker", body, hashlib.sha256).digest()).decode()
    for header, reason in [(None, "missing_signature"), (forged, "invalid_signature"),
                           (shopify_signature(body + b" ", "new"), "invalid_signature")]:  # fmt: skip
        with pytest.raises(SignatureError) as err:
            verify_shopify(body, header, ["old", "new"])
        assert err.value.reason == reason and err.value.status == 401


def test_stripe_signature_tolerance_rotation_and_malformed_headers() -> None:
    body = b'{"id": "evt_1"}'
    now = time.time()
    verify_stripe(body, stripe_header(body, ["rolled", "current"], int(now)), ["current"], now=now)
    cases = [
        (None, 400, "missing_signature"),
        ("v1=abc", 400, "malformed_signature"),
        ("t=abc,v1=abc", 400, "malformed_signature"),
        (stripe_header(body, ["wrong"], int(now)), 401, "invalid_signature"),
        (stripe_header(body, ["current"], int(now) - 301), 401, "stale_signature"),
        (stripe_header(body, ["current"], int(now) + 301), 401, "stale_signature"),
    ]
    for header, status, reason in cases:
        with pytest.raises(SignatureError) as err:
            verify_stripe(body, header, ["current"], now=now)
        assert (err.value.status, err.value.reason) == (status, reason), header


def shopify_order() -> dict[str, Any]:
    """The shape of Shopify's orders/create payload (trimmed to what matters here)."""
    return {
        "id": 820982911946154508,
        "admin_graphql_api_id": "gid://shopify/Order/820982911946154508",
        "created_at": datetime.now(timezone(timedelta(hours=-5))).isoformat(timespec="seconds"),
        "currency": "EUR",
        "email": CANARIES["email"],
        "phone": CANARIES["phone"],
        "browser_ip": CANARIES["ip"],
        "total_price": "199.00",
        "financial_status": "paid",
        "customer": {"id": 115310627314723954, "email": CANARIES["email"], "first_name": "Jane"},
        "billing_address": {"country_code": "DE", "phone": CANARIES["phone"]},
        "line_items": [
            {"id": 866550311766439020, "variant_id": 808950810, "sku": "IPOD2008PINK", "quantity": 1, "price": "199.00"},
            {"id": 141249953214522974, "variant_id": 49148385, "sku": "", "quantity": 2, "price": "0.00"},
        ],
    }


def test_shopify_order_maps_to_a_valid_order_placed(validator: EventValidator) -> None:
    mapped = map_shopify("orders/create", shopify_order())
    assert mapped is not None and mapped.event_type == "order_placed"
    assert mapped.payload["order_id"] == "820982911946154508"
    assert mapped.payload["items"][1]["sku"] == "49148385"  # empty sku → variant id
    record = {"event_id": webhook_event_id("shopify", "e1"), "event_type": mapped.event_type,
              "schema_version": 1, "event_time": mapped.event_time, "source": "webhook:shopify",
              "payload": mapped.payload}  # fmt: skip
    assert validator.check(record) is None
    assert map_shopify("products/update", shopify_order()) is None


def stripe_event(kind: str, obj: dict[str, Any], event_id: str = "evt_1") -> dict[str, Any]:
    return {"id": event_id, "object": "event", "type": kind, "created": int(time.time()),
            "api_version": "2024-06-20", "livemode": False, "data": {"object": obj}}  # fmt: skip


def payment_intent(**extra: Any) -> dict[str, Any]:
    return {"id": "pi_123", "object": "payment_intent", "amount": 2599, "currency": "eur",
            "payment_method_types": ["card"], "metadata": {"order_id": "o-9"}, **extra}  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "obj", "event_type", "checks"),
    [
        ("payment_intent.succeeded", payment_intent(), "payment_authorized", {"amount": 25.99, "currency": "EUR"}),
        ("payment_intent.payment_failed",
         payment_intent(last_payment_error={"code": "card_declined", "decline_code": "insufficient_funds"}),
         "payment_failed", {"failure_code": "insufficient_funds"}),
        ("charge.refunded",
         {"id": "ch_1", "object": "charge", "amount": 2599, "amount_refunded": 1000, "currency": "eur",
          "payment_intent": "pi_123", "metadata": {"order_id": "o-9"},
          "billing_details": {"email": CANARIES["email"]},
          "refunds": {"data": [{"id": "re_1", "amount": 1000, "reason": "fraudulent"}]}},
         "refund_issued", {"refund_id": "re_1", "amount": 10.0, "reason": "fraud"}),
    ],
)  # fmt: skip
def test_stripe_events_map_to_valid_catalog_events(
    validator: EventValidator, kind: str, obj: dict[str, Any], event_type: str, checks: dict[str, Any]
) -> None:
    mapped = map_stripe(stripe_event(kind, obj))
    assert mapped is not None and mapped.event_type == event_type
    assert {k: mapped.payload[k] for k in checks} == checks
    record = {"event_id": webhook_event_id("stripe", "evt_1"), "event_type": event_type,
              "schema_version": 1, "event_time": mapped.event_time, "source": "webhook:stripe",
              "payload": mapped.payload}  # fmt: skip
    assert validator.check(record) is None
    assert map_stripe(stripe_event("customer.created", {})) is None


def test_webhook_event_ids_are_deterministic_per_provider_and_key() -> None:
    assert webhook_event_id("stripe", "evt_1") == webhook_event_id("stripe", "evt_1")
    assert webhook_event_id("stripe", "evt_1") != webhook_event_id("shopify", "evt_1")
    uuid.UUID(webhook_event_id("shopify", "x"))


def test_token_bucket_grants_bursts_then_says_when_to_retry() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=100, burst=200, clock=lambda: now[0])
    assert bucket.take(150) == 0.0
    wait = bucket.take(100)
    assert wait == pytest.approx(0.5)
    now[0] += 0.5
    assert bucket.take(100) == 0.0
    assert retry_after_header(0.01) == "1" and retry_after_header(2.1) == "3"
    limiter = RateLimiter(rate=1, burst=1, clock=lambda: now[0])
    assert limiter.take("a", 1) == 0.0 and limiter.take("b", 1) == 0.0 and limiter.take("a", 1) > 0


def test_api_keys_are_stored_hashed_and_revocable(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    api_key = add_key(keys_file, "shop-web")
    assert api_key not in keys_file.read_text() and key_hash(api_key) in keys_file.read_text()
    assert keys_file.stat().st_mode & 0o777 == 0o600
    store = load_key_store(keys_file, environ={"TRIVAS_COLLECTOR_API_KEYS": f"app:{key_hash('k2')}"})
    assert store.source_for(api_key) == "shop-web" and store.source_for("k2") == "app"
    assert store.source_for("wrong") is None and store.source_for(None) is None
    assert revoke_source(keys_file, "shop-web") == 1
    assert load_key_store(keys_file, environ={}).source_for(api_key) is None


def test_scrubbed_dead_letters_and_logs_hold_no_canary(validator: EventValidator) -> None:
    scrubber = RecordScrubber(load_catalog(), b"k" * 32, "k1")
    record = order(payload={"card_number": CANARIES["card"], "note": f"call {CANARIES['phone']} from {CANARIES['ip']}"})
    unknown = {**record, "event_type": "mystery"}
    for candidate in (record, unknown, "free text " + " ".join(CANARIES.values())):
        text = orjson.dumps(scrubber.scrub_record(candidate)).decode()
        for name, canary in CANARIES.items():
            if name != "customer" or not isinstance(candidate, str):
                assert canary not in text, (name, text)
    scrubbed = scrubber.scrub_record(record)
    assert scrubbed["payload"]["email"].startswith("k1:") and scrubbed["payload"]["phone"] is None
    assert "card_number" not in scrubbed["payload"]
    assert scrubbed["payload"]["customer_id"].startswith("tok_")


def test_log_filter_masks_patterns() -> None:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "from %s: %s", (CANARIES["ip"], CANARIES["email"]), None)
    PiiLogFilter().filter(record)
    assert CANARIES["ip"] not in record.getMessage() and CANARIES["email"] not in record.getMessage()
    assert mask_pii_patterns("order 2026-11-28T10:00:00+00:00 id 3f0c6c2e-5b1d") == "order 2026-11-28T10:00:00+00:00 id 3f0c6c2e-5b1d"


def test_key_ring_rotation_verifies_old_hashes(tmp_path: Path) -> None:
    old = KeyRing({"k1": b"old-secret"}, "k1")
    stored = old.hash_value("jane@example.org")
    keys_file = tmp_path / "pii_keys"
    keys_file.write_text("# retired keys\nk1=old-secret\n")
    settings = load_settings("test", environ={"TRIVAS_PRIVACY__HASH_KEY_ID": "k2", "TRIVAS_PRIVACY__HASH_KEY": "new-secret",
                                              "TRIVAS_PRIVACY__RETIRED_KEYS_FILE": str(keys_file)})  # fmt: skip
    ring = load_key_ring(settings)
    assert ring.current()[0] == "k2"
    assert ring.verify_hash("jane@example.org", stored) and ring.needs_rehash(stored)
    assert not ring.verify_hash("john@example.org", stored)
    fresh = ring.hash_value("jane@example.org")
    assert fresh.startswith("k2:") and ring.verify_hash("jane@example.org", fresh)
    assert fresh == pseudonymise("jane@example.org", "hash", b"new-secret", "k2")  # silver's twin


def test_vault_reveals_only_with_its_key_and_logs_access(tmp_path: Path) -> None:
    key = bytes(range(32))
    token = pseudonymise(CANARIES["customer"], "tokenize", b"master", "k1")
    vault = PiiVault(tmp_path / "vault.sqlite", key)
    assert vault.store([(token, CANARIES["customer"], "k1")]) == 1
    assert vault.store([(token, CANARIES["customer"], "k1")]) == 0  # idempotent
    assert CANARIES["customer"].encode() not in (tmp_path / "vault.sqlite").read_bytes()
    assert vault.reveal(token, actor="dpo", purpose="subject access request") == CANARIES["customer"]
    vault.close()
    locked = PiiVault(tmp_path / "vault.sqlite", None)
    with pytest.raises(VaultLockedError):
        locked.reveal(token, actor="eve", purpose="curiosity")
    wrong = PiiVault(tmp_path / "vault.sqlite", bytes(32))
    with pytest.raises(Exception):  # noqa: B017 - AES-GCM authentication fails
        wrong.reveal(token, actor="eve", purpose="curiosity")
    assert (tmp_path / "vault.sqlite").stat().st_mode & 0o777 == 0o600


def test_an_exception_in_a_worker_thread_is_caught_for_the_test() -> None:
    """What the autouse ``fail_on_thread_exceptions`` fixture relies on (issue 10 #16)."""
    import threading

    from .conftest import collect_thread_exceptions

    def worker() -> None:
        raise AssertionError("seen")

    with collect_thread_exceptions() as caught:
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
    assert [str(c.exc_value) for c in caught] == ["seen"]


def test_collector_outside_development_refuses_to_start_without_its_secrets(tmp_path: Path) -> None:
    """No webhook secret or no vault key: the process stops naming the variable, instead of
    refusing every webhook (or never storing tokens) at run time."""
    from lakehouse.config import MissingSecretError
    from lakehouse.ingest.collector import Collector

    environ = {
        "TRIVAS_PRIVACY__HASH_KEY": "hash-secret",
        "TRIVAS_COLLECTOR__API_KEYS_FILE": str(tmp_path / "keys.json"),
        "TRIVAS_COLLECTOR__WEBHOOKS__DEDUP_STORE": str(tmp_path / "deliveries.sqlite"),
        "TRIVAS_COLLECTOR__WEBHOOKS__PROVIDERS__SHOPIFY__SECRETS_FILE": str(tmp_path / "none"),
        "TRIVAS_COLLECTOR__WEBHOOKS__PROVIDERS__STRIPE__SECRETS_FILE": str(tmp_path / "none"),
        "TRIVAS_COLLECTOR__VAULT__PATH": str(tmp_path / "vault.sqlite"),
        "TRIVAS_COLLECTOR__VAULT__KEY_FILE": str(tmp_path / "none"),
    }
    webhook_secrets = {"TRIVAS_SHOPIFY_WEBHOOK_SECRETS": "s1", "TRIVAS_STRIPE_WEBHOOK_SECRETS": "s2"}
    settings = load_settings("databricks", environ=environ)
    with pytest.raises(MissingSecretError, match="TRIVAS_SHOPIFY_WEBHOOK_SECRETS"):
        Collector(settings, load_catalog(), settings.collector, environ)
    with pytest.raises(MissingSecretError, match="TRIVAS_PRIVACY__VAULT_KEY"):
        Collector(settings, load_catalog(), settings.collector, {**environ, **webhook_secrets})
    complete = {**environ, **webhook_secrets, "TRIVAS_PRIVACY__VAULT_KEY": "11" * 32}
    settings = load_settings("databricks", environ=complete)
    collector = Collector(settings, load_catalog(), settings.collector, complete)
    assert collector.secrets == {"shopify": ["s1"], "stripe": ["s2"]}
    # The same gaps in a development environment leave the features off instead.
    local = load_settings("test", environ=environ)
    assert Collector(local, load_catalog(), local.collector, environ).secrets == {"shopify": [], "stripe": []}

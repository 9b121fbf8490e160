"""The collector over real HTTP against a real broker: auth, limits, webhooks, dead letters."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from lakehouse.ingest.webhooks import shopify_signature, stripe_header, webhook_event_id

from .conftest import (
    OTHER_KEY,
    SHOPIFY_SECRETS,
    STRIPE_SECRETS,
    CollectorProcess,
    Deployment,
    read_all_raw,
    read_topic,
)
from .test_edge_unit import CANARIES, payment_intent, shopify_order, stripe_event

pytestmark = pytest.mark.integration


def sdk_event(**payload_overrides: Any) -> dict[str, Any]:
    payload = {
        "session_id": f"s-{uuid.uuid4().hex[:8]}",
        "anonymous_id": "anon-1",
        "customer_id": CANARIES["customer"],
        "page_url": "https://shop.example/p/1",
        "page_seq": 1,
        "device": "mobile",
        "country": "DE",
        "ip_address": CANARIES["ip"],
        **payload_overrides,
    }
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "page_view",
        "event_time": datetime.now(UTC).isoformat(),
        "payload": payload,
    }


def test_health_metrics_and_openapi(collector: CollectorProcess) -> None:
    assert httpx.get(collector.url + "/healthz").json() == {"status": "ok", "kafka": "connected"}
    assert "trivas_collector_requests_total" in httpx.get(collector.url + "/metrics").text
    spec = httpx.get(collector.url + "/openapi.json").json()
    assert {"/v1/events", "/v1/webhooks/{provider}", "/healthz", "/metrics"} <= set(spec["paths"])


@pytest.mark.parametrize(
    ("headers", "reason"),
    [({}, "missing_api_key"), ({"Authorization": "Bearer trk_nope"}, "invalid_api_key"),
     ({"X-API-Key": "trk_nope"}, "invalid_api_key")],
)  # fmt: skip
def test_unknown_or_missing_api_keys_are_refused(
    collector: CollectorProcess, headers: dict[str, str], reason: str
) -> None:
    response = httpx.post(collector.url + "/v1/events", json={"events": [sdk_event()]}, headers=headers)
    assert response.status_code == 401 and response.json()["error"] == reason


def test_batch_answers_per_event_and_dead_letters_are_scrubbed(
    deployment: Deployment, collector: CollectorProcess, auth: dict[str, str]
) -> None:
    good = sdk_event()
    forbidden = {
        **sdk_event(),
        "event_type": "order_placed",
        "payload": {"order_id": "o-x", "customer_id": CANARIES["customer"], "email": CANARIES["email"],
                    "phone": CANARIES["phone"], "amount": 1.0, "currency": "EUR", "country": "DE",
                    "items": [], "card_number": CANARIES["card"]},
    }  # fmt: skip
    invalid = sdk_event(page_seq=0, referrer=f"mailto:{CANARIES['email']}")
    response = httpx.post(
        collector.url + "/v1/events", json={"events": [good, forbidden, invalid, "junk"]}, headers=auth
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (1, 3)
    assert [r["status"] for r in body["results"]] == ["accepted", "rejected", "rejected", "rejected"]
    assert [r.get("reason") for r in body["results"][1:]] == ["forbidden_pii", "out_of_range", "malformed_json"]

    raw = [r["value"] for r in read_all_raw(deployment.settings)]
    assert [r["event_id"] for r in raw].count(good["event_id"]) == 1
    mine = next(r for r in raw if r["event_id"] == good["event_id"])
    assert mine["source"] == "sdk:test" and mine["schema_version"] == 1
    assert forbidden["event_id"] not in {r["event_id"] for r in raw}

    dead = {d["value"].get("event_id"): d for d in read_topic(deployment.settings, "dlq")}
    entry = dead[forbidden["event_id"]]
    assert entry["value"]["reason"] == "forbidden_pii:card_number" and entry["value"]["contract_version"] == 1
    assert entry["value"]["source"] == "sdk:test" and entry["headers"]["reason"] == b"forbidden_pii:card_number"
    assert dead[invalid["event_id"]]["value"]["reason"] == "out_of_range:page_seq"
    dlq_bytes = b"".join(d["raw"] for d in dead.values())
    for canary in CANARIES.values():
        assert canary.encode() not in dlq_bytes


def test_oversized_bodies_and_batches_get_413(collector: CollectorProcess, auth: dict[str, str]) -> None:
    huge = {"events": [sdk_event(page_url="https://x/" + "a" * 70_000)]}
    response = httpx.post(collector.url + "/v1/events", content=orjson.dumps(huge), headers=auth)
    assert response.status_code == 413 and response.json()["error"] == "body_too_large"

    def chunks():  # no Content-Length: the limit holds while streaming
        for _ in range(20):
            yield b" " * 8192

    response = httpx.post(collector.url + "/v1/events", content=chunks(), headers=auth)
    assert response.status_code == 413 and response.json()["error"] == "body_too_large"
    too_many = {"events": [{} for _ in range(201)]}
    response = httpx.post(collector.url + "/v1/events", json=too_many, headers=auth)
    assert response.status_code == 413 and response.json()["error"] == "batch_too_large"
    body = orjson.dumps({"id": "evt", "pad": "x" * 70_000})
    response = httpx.post(collector.url + "/v1/webhooks/stripe", content=body,
                          headers={"Stripe-Signature": stripe_header(body, STRIPE_SECRETS)})  # fmt: skip
    assert response.status_code == 413


def post_shopify(collector: CollectorProcess, body: bytes, **headers: str) -> httpx.Response:
    base = {"Content-Type": "application/json", "X-Shopify-Topic": "orders/create",
            "X-Shopify-Shop-Domain": "canary.myshopify.com"}  # fmt: skip
    return httpx.post(collector.url + "/v1/webhooks/shopify", content=body, headers={**base, **headers})


def test_shopify_signatures_and_redelivery_counted_once(
    deployment: Deployment, collector: CollectorProcess
) -> None:
    document = shopify_order()
    document["id"] = int(time.time() * 1000)
    body = json.dumps(document).encode()
    event_key = f"evt-{uuid.uuid4()}"
    good = shopify_signature(body, SHOPIFY_SECRETS[1])
    missing = post_shopify(collector, body, **{"X-Shopify-Event-Id": event_key})
    forged = post_shopify(collector, body, **{"X-Shopify-Hmac-Sha256": shopify_signature(body, "guess"), "X-Shopify-Event-Id": event_key})
    tampered = post_shopify(collector, body.replace(b"199.00", b"1.00"), **{"X-Shopify-Hmac-Sha256": good, "X-Shopify-Event-Id": event_key})
    assert [r.status_code for r in (missing, forged, tampered)] == [401, 401, 401]
    assert [r.json()["error"] for r in (missing, forged, tampered)] == ["missing_signature", "invalid_signature", "invalid_signature"]

    first = post_shopify(collector, body, **{"X-Shopify-Hmac-Sha256": good, "X-Shopify-Event-Id": event_key, "X-Shopify-Webhook-Id": "w-1"})
    # Shopify retries with the same event id (and a new webhook id); the old secret also signs.
    again = post_shopify(collector, body, **{"X-Shopify-Hmac-Sha256": shopify_signature(body, SHOPIFY_SECRETS[0]), "X-Shopify-Event-Id": event_key, "X-Shopify-Webhook-Id": "w-2"})
    assert first.status_code == 200 and first.json()["status"] == "accepted"
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    event_id = webhook_event_id("shopify", event_key)
    assert first.json()["event_id"] == again.json()["event_id"] == event_id

    orders = [r for r in read_topic(deployment.settings, "raw.orders") if r["value"]["event_id"] == event_id]
    assert len(orders) == 1
    assert orders[0]["key"] == str(document["id"]).encode()
    assert orders[0]["value"]["payload"]["email"] == CANARIES["email"]  # raw keeps it; silver protects


def test_shopify_falls_back_to_the_webhook_id(collector: CollectorProcess) -> None:
    body = json.dumps({**shopify_order(), "id": 7}).encode()
    headers = {"X-Shopify-Hmac-Sha256": shopify_signature(body, SHOPIFY_SECRETS[0]), "X-Shopify-Webhook-Id": f"w-{uuid.uuid4()}"}
    first, second = post_shopify(collector, body, **headers), post_shopify(collector, body, **headers)
    assert first.json()["status"] == "accepted" and second.json()["status"] == "duplicate"
    assert post_shopify(collector, body, **{"X-Shopify-Hmac-Sha256": headers["X-Shopify-Hmac-Sha256"]}).status_code == 400


def post_stripe(collector: CollectorProcess, body: bytes, signature: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return httpx.post(collector.url + "/v1/webhooks/stripe", content=body, headers=headers)


def test_stripe_signatures_tolerance_and_redelivery(
    deployment: Deployment, collector: CollectorProcess
) -> None:
    stripe_id = f"evt_{uuid.uuid4().hex}"
    body = json.dumps(stripe_event("payment_intent.succeeded", payment_intent(), stripe_id)).encode()
    now = int(time.time())
    refused = {
        "missing": post_stripe(collector, body, None),
        "forged": post_stripe(collector, body, stripe_header(body, ["whsec_forged"], now)),
        "stale": post_stripe(collector, body, stripe_header(body, STRIPE_SECRETS, now - 600)),
        "malformed": post_stripe(collector, body, "garbage"),
    }
    assert {k: (r.status_code, r.json()["error"]) for k, r in refused.items()} == {
        "missing": (400, "missing_signature"),
        "forged": (401, "invalid_signature"),
        "stale": (401, "stale_signature"),
        "malformed": (400, "malformed_signature"),
    }
    # During a secret roll Stripe sends one v1 per secret; ours may be either.
    rolling = stripe_header(body, ["whsec_retired", STRIPE_SECRETS[1]], now)
    first = post_stripe(collector, body, rolling)
    redelivered = post_stripe(collector, body, stripe_header(body, STRIPE_SECRETS[:1], int(time.time())))
    assert first.status_code == 200 and first.json()["status"] == "accepted"
    assert redelivered.status_code == 200 and redelivered.json()["status"] == "duplicate"
    ignored = json.dumps(stripe_event("customer.created", {"id": "cus_1"}, f"evt_{uuid.uuid4().hex}")).encode()
    assert post_stripe(collector, ignored, stripe_header(ignored, STRIPE_SECRETS)).json()["status"] == "ignored"

    event_id = webhook_event_id("stripe", stripe_id)
    payments = [r["value"] for r in read_topic(deployment.settings, "raw.payments") if r["value"]["event_id"] == event_id]
    assert len(payments) == 1 and payments[0]["event_type"] == "payment_authorized"
    assert payments[0]["payload"]["amount"] == 25.99 and payments[0]["source"] == "webhook:stripe"


def test_redelivery_after_a_collector_restart_is_a_duplicate(deployment: Deployment) -> None:
    """Issue 10 #4: the delivery store survives a restart, so a provider retry arriving after
    it (and after silver's dedup horizon) produces nothing."""
    collector = CollectorProcess(deployment, "restart-webhook", {}).start()
    stripe_id = f"evt_{uuid.uuid4().hex}"
    body = json.dumps(stripe_event("charge.refunded", {"id": "ch_9", "amount_refunded": 500, "currency": "eur",
                      "payment_intent": "pi_9", "metadata": {"order_id": "o-9"}}, stripe_id)).encode()  # fmt: skip
    try:
        assert post_stripe(collector, body, stripe_header(body, STRIPE_SECRETS)).json()["status"] == "accepted"
        collector.stop()
        collector.start()
        again = post_stripe(collector, body, stripe_header(body, STRIPE_SECRETS))
    finally:
        collector.stop()
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    event_id = webhook_event_id("stripe", stripe_id)
    copies = [r["value"] for r in read_topic(deployment.settings, "raw.payments") if r["value"]["event_id"] == event_id]
    assert len(copies) == 1


def test_concurrent_redeliveries_produce_one_record(deployment: Deployment, collector: CollectorProcess) -> None:
    """Issue 10 #4: 50 simultaneous deliveries of one new Stripe event → one Kafka record,
    one ``accepted`` answer, 49 ``duplicate`` answers (the claim precedes the produce)."""
    stripe_id = f"evt_{uuid.uuid4().hex}"
    body = json.dumps(stripe_event("payment_intent.succeeded", payment_intent(), stripe_id)).encode()
    header = stripe_header(body, STRIPE_SECRETS)
    start = threading.Barrier(50)

    def deliver() -> tuple[int, str]:
        start.wait()
        response = post_stripe(collector, body, header)
        return response.status_code, response.json().get("status", response.json().get("error"))

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = Counter(pool.map(lambda _: deliver(), range(50)))
    assert answers == Counter({(200, "accepted"): 1, (200, "duplicate"): 49})
    event_id = webhook_event_id("stripe", stripe_id)
    assert [r["value"]["event_id"] for r in read_topic(deployment.settings, "raw.payments")].count(event_id) == 1


def test_bursts_get_429_with_retry_after_and_nothing_accepted_is_lost(deployment: Deployment) -> None:
    collector = CollectorProcess(
        deployment, "burst", {"limits": {"events_per_s": 500, "burst": 400, "max_batch_events": 100}}
    ).start()
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def client() -> None:  # no assertions here: a failure in a thread would be lost
        with httpx.Client(headers={"Authorization": f"Bearer {OTHER_KEY}"}) as http:
            for _ in range(8):
                batch = [sdk_event() for _ in range(100)]
                response = http.post(collector.url + "/v1/events", json={"events": batch})
                with lock:
                    answers.append(response)

    try:
        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        metrics = httpx.get(collector.url + "/metrics").text
    finally:
        collector.stop()
    statuses = Counter(r.status_code for r in answers)
    assert len(answers) == 32 and set(statuses) <= {200, 429}, statuses
    limited = [r for r in answers if r.status_code == 429]
    assert all(r.json()["error"] == "rate_limited" for r in limited)
    retry_afters = {r.headers["Retry-After"] for r in limited}
    accepted = [e["event_id"] for r in answers if r.status_code == 200 for e in r.json()["results"] if e["status"] == "accepted"]
    assert statuses[429] > 0 and statuses[200] > 0
    assert all(int(v) >= 1 for v in retry_afters)
    assert 'trivas_collector_rate_limited_total{source="sdk:burst"}' in metrics
    in_kafka = Counter(r["value"]["event_id"] for r in read_topic(deployment.settings, "raw.web"))
    assert all(in_kafka[e] == 1 for e in accepted), "an accepted event is missing or doubled"


def test_canaries_never_in_collector_logs(collector: CollectorProcess, auth: dict[str, str]) -> None:
    events = [sdk_event(), sdk_event(page_seq=-1, referrer=CANARIES["email"]), {"event_type": "order_placed",
              "payload": {"card_number": CANARIES["card"], "email": CANARIES["email"]}}]  # fmt: skip
    httpx.post(collector.url + "/v1/events", json={"events": events}, headers=auth)
    body = json.dumps({**shopify_order(), "currency": "USD"}).encode()  # violates the contract
    response = post_shopify(collector, body, **{"X-Shopify-Hmac-Sha256": shopify_signature(body, SHOPIFY_SECRETS[0]), "X-Shopify-Event-Id": str(uuid.uuid4())})
    assert response.status_code == 200 and response.json()["status"] == "rejected"
    time.sleep(0.5)
    logs = collector.logs()
    assert "event rejected" in logs and "webhook rejected" in logs
    for canary in CANARIES.values():
        assert canary not in logs

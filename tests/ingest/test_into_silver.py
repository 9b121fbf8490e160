"""End to end into silver: SDK through a SIGKILLed collector, webhook redeliveries, a
quarantined record replayed once, and PII canaries nowhere in clear.

Runs the lead's real ``spark_jobs.bronze`` and ``spark_jobs.silver`` (``availableNow``) on the
session broker; everything is read back from the Delta tables with delta-rs.
"""

from __future__ import annotations

import json
import signal
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from lakehouse.catalog import catalog as load_catalog
from lakehouse.ingest.quarantine import list_quarantined, replay
from lakehouse.ingest.settings import load_collector_settings
from lakehouse.ingest.webhooks import shopify_signature, stripe_header, webhook_event_id

from .conftest import API_KEY, SHOPIFY_SECRETS, STRIPE_SECRETS, CollectorProcess, Deployment
from .test_edge_unit import CANARIES, payment_intent, shopify_order, stripe_event
from .test_sdk import track_through_restart

pytestmark = [pytest.mark.spark, pytest.mark.integration, pytest.mark.slow]


def run_pipeline(spark: Any, deployment: Deployment) -> None:  # noqa: ANN401
    from lakehouse.contracts import contracts
    from spark_jobs import pipeline

    finished = pipeline.drain(spark, deployment.settings, load_catalog(), contracts(), ("bronze", "silver_gold"))
    assert all(query.exception() is None for query in finished.values())


def rows(deployment: Deployment, logical: str) -> list[dict[str, Any]]:
    from lakehouse.tables import read_arrow

    return read_arrow(deployment.settings, logical).to_pylist()


def silver_tables(deployment: Deployment) -> list[str]:
    catalog = load_catalog()
    return [f"silver.{d.table}" for d in catalog.domains.values()] + ["silver.quarantine", "silver.late"]


def order_with_canaries(order_id: str) -> dict[str, Any]:
    return {"order_id": order_id, "customer_id": CANARIES["customer"], "email": CANARIES["email"],
            "phone": CANARIES["phone"], "amount": 10.0, "currency": "EUR", "country": "DE",
            "items": [{"sku": "s", "quantity": 1, "unit_price": 10.0}]}  # fmt: skip


def test_every_event_lands_in_silver_exactly_once_and_pii_never_in_clear(
    spark: Any,  # noqa: ANN401
    deployment: Deployment,
) -> None:
    settings = deployment.settings
    # 1. SDK events through a SIGKILLed collector: retries may duplicate in Kafka, never in silver.
    ids, client, _ = track_through_restart(deployment, "silver-sdk", 600, signal.SIGKILL)
    assert client.stats.accepted == 600
    collector = CollectorProcess(deployment, "silver-hooks", {}).start()
    try:
        from lakehouse.ingest.sdk import TrivasClient

        with TrivasClient(collector.url, API_KEY) as sdk:
            order_ids = [sdk.track("order_placed", order_with_canaries(f"o-{i}")) for i in range(20)]
            sdk.track("page_view", {"session_id": "s-ip", "anonymous_id": "a", "page_url": "/",
                                    "page_seq": 1, "device": "mobile", "country": "DE",
                                    "ip_address": CANARIES["ip"], "customer_id": CANARIES["customer"]})  # fmt: skip
        # 2. A Shopify webhook delivered before and after a collector restart: the delivery
        #    store survives it, the redelivery produces nothing.
        document = {**shopify_order(), "id": 4242}
        body = json.dumps(document).encode()
        headers = {"X-Shopify-Topic": "orders/create", "X-Shopify-Event-Id": f"evt-{uuid.uuid4()}",
                   "X-Shopify-Hmac-Sha256": shopify_signature(body, SHOPIFY_SECRETS[0])}  # fmt: skip
        assert httpx.post(collector.url + "/v1/webhooks/shopify", content=body, headers=headers).json()["status"] == "accepted"
        collector.stop()
        collector.start()
        assert httpx.post(collector.url + "/v1/webhooks/shopify", content=body, headers=headers).json()["status"] == "duplicate"
        shopify_id = webhook_event_id("shopify", headers["X-Shopify-Event-Id"])
        stripe_body = json.dumps(stripe_event("payment_intent.succeeded", payment_intent(), f"evt_{uuid.uuid4().hex}")).encode()
        answers = [
            httpx.post(collector.url + "/v1/webhooks/stripe", content=stripe_body,
                       headers={"Stripe-Signature": stripe_header(stripe_body, STRIPE_SECRETS)})
            for _ in range(2)
        ]  # fmt: skip
        assert [(a.status_code, a.json()["status"]) for a in answers] == [(200, "accepted"), (200, "duplicate")]
        stripe_id = answers[0].json()["event_id"]
    finally:
        collector.stop()

    # 3. A record that bypassed the edge and breaks the contract: silver quarantines it.
    from kafka import KafkaProducer

    bad_id = str(uuid.uuid4())
    bad = {"event_id": bad_id, "event_type": "order_placed", "schema_version": 1,
           "event_time": datetime.now(UTC).isoformat(), "source": "sdk:legacy", "sent_at": None,
           "payload": {**order_with_canaries("o-bad"), "currency": "USD"}}  # fmt: skip
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap())
    metadata = producer.send("raw.orders", key=b"o-bad", value=orjson.dumps(bad)).get(timeout=30)
    producer.close()

    run_pipeline(spark, deployment)

    web = Counter(r["event_id"] for r in rows(deployment, "silver.web_events"))
    assert all(web[e] == 1 for e in ids), "an SDK event is missing from silver or counted twice"
    orders = Counter(r["event_id"] for r in rows(deployment, "silver.orders"))
    assert orders[shopify_id] == 1 and all(orders[e] == 1 for e in order_ids)
    assert Counter(r["event_id"] for r in rows(deployment, "silver.payments"))[stripe_id] == 1
    quarantined = [r for r in list_quarantined(settings) if r.event_id == bad_id]
    assert len(quarantined) == 1 and orders[bad_id] == 0
    qid = quarantined[0].quarantine_id
    assert qid == f"raw.orders:{metadata.partition}:{metadata.offset}"

    # 4. Replay the fixed record: once, through the normal path, with its original event id.
    fixes = {qid: {"quarantine_id": qid, "patch": {"payload": {"currency": "EUR"}}}}
    config = load_collector_settings()
    first = replay(settings, load_catalog(), config, fixes=fixes)
    second = replay(settings, load_catalog(), config, fixes=fixes)
    assert first.replayed == [qid] and second.replayed == [] and second.already_replayed == [qid]
    run_pipeline(spark, deployment)
    replayed = [r for r in rows(deployment, "silver.orders") if r["event_id"] == bad_id]
    assert len(replayed) == 1 and replayed[0]["currency"] == "EUR"
    assert replayed[0]["email"].startswith(f"{settings.privacy.hash_key_id}:")  # from bronze's original
    assert len(rows(deployment, "ops.quarantine_replays")) >= 1

    # 5. Canaries: nowhere in clear in silver, in the dead letters, or in the collector's logs.
    dumped = orjson.dumps([rows(deployment, t) for t in silver_tables(deployment)], default=str).decode()
    for name, canary in CANARIES.items():
        assert canary not in dumped, f"{name} canary in clear in silver"
        assert canary not in collector.logs(), f"{name} canary in the collector logs"

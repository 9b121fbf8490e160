"""The webhook delivery store (a real SQLite file) and the provider table."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest

from lakehouse.ingest.webhook_deliveries import Claim, WebhookDeliveries
from lakehouse.ingest.webhooks import WebhookProvider, providers

pytestmark = pytest.mark.unit
DAY = 86400.0


def test_one_claim_wins_among_concurrent_ones_across_connections(tmp_path: Path) -> None:
    store = WebhookDeliveries(tmp_path / "d.sqlite")
    results: list[Claim] = []
    lock = threading.Lock()
    start = threading.Barrier(20)

    def claim() -> None:
        start.wait()
        result = store.claim("evt-1", "stripe", DAY)
        with lock:
            results.append(result.claim)

    threads = [threading.Thread(target=claim) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(Claim.OWNED) == 1 and results.count(Claim.IN_FLIGHT) == 19


def test_done_survives_a_reopen_released_claims_can_be_retried_and_dead_owners_are_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite"
    store = WebhookDeliveries(path, lease_s=60)
    owned = store.claim("evt-ok", "stripe", DAY, now=1000.0)
    store.mark_done("evt-ok", owned.token or "", "accepted")
    failed = store.claim("evt-failed", "stripe", DAY, now=1000.0)
    store.release("evt-failed", failed.token or "")
    store.claim("evt-orphan", "stripe", DAY, now=1000.0)  # its collector dies mid-produce
    store.close()

    reopened = WebhookDeliveries(path, lease_s=60)  # a collector restart
    assert reopened.claim("evt-ok", "stripe", DAY, now=1001.0).claim == Claim.DONE
    assert reopened.claim("evt-ok", "stripe", DAY, now=1001.0).outcome == "accepted"
    assert reopened.claim("evt-failed", "stripe", DAY, now=1001.0).claim == Claim.OWNED
    assert reopened.claim("evt-orphan", "stripe", DAY, now=1030.0).claim == Claim.IN_FLIGHT
    assert reopened.claim("evt-orphan", "stripe", DAY, now=1061.0).claim == Claim.OWNED


def test_delivered_ids_are_kept_for_the_retention_then_purged(tmp_path: Path) -> None:
    store = WebhookDeliveries(tmp_path / "d.sqlite")
    owned = store.claim("evt-old", "shopify", 3600.0, now=0.0)
    store.mark_done("evt-old", owned.token or "", "accepted")
    assert store.claim("evt-old", "shopify", 3600.0, now=3599.0).claim == Claim.DONE
    store.claim("evt-other", "shopify", 3600.0, now=3700.0)  # a claim purges at most once a minute
    assert store.count() == 1
    assert store.claim("evt-old", "shopify", 3600.0, now=3701.0).claim == Claim.OWNED


def test_every_provider_module_is_served_with_its_retry_window() -> None:
    table = providers()
    assert set(table) == {"shopify", "stripe"}
    assert all(isinstance(p, WebhookProvider) for p in table.values())
    assert table["stripe"].retry_window == timedelta(days=3)
    assert table["shopify"].retry_window == timedelta(hours=4)

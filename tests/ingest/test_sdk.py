"""The SDK: buffer policy without a collector, and delivery through a collector restart."""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from lakehouse.ingest.sdk import BufferFullError, InvalidEventError, TrivasClient
from lakehouse.runtime.processes import free_port

from .conftest import API_KEY, CollectorProcess, Deployment, read_topic


def page_view(i: int) -> dict[str, Any]:
    return {"session_id": f"sdk-{i % 50}", "anonymous_id": f"a-{i}", "page_url": f"https://shop/p/{i}",
            "page_seq": 1 + i % 5, "device": "desktop", "country": "FR"}  # fmt: skip


@pytest.mark.unit
def test_full_buffer_drops_oldest_and_counts() -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nobody listens
    client = TrivasClient(down, API_KEY, max_buffer=10, batch_size=5, flush_interval_s=30, max_backoff_s=0.2)
    ids = [client.track("page_view", page_view(i)) for i in range(25)]
    assert len(set(ids)) == 25
    assert client.stats.dropped >= 10 and client.buffered <= 10
    client.close(timeout_s=0.5)
    assert client.stats.accepted == 0
    assert client.stats.dropped + client.stats.undelivered == 25


@pytest.mark.unit
def test_raise_and_block_policies() -> None:
    down = f"http://127.0.0.1:{free_port()}"
    strict = TrivasClient(down, API_KEY, max_buffer=3, batch_size=100, flush_interval_s=30, on_full="raise")
    blocking = TrivasClient(down, API_KEY, max_buffer=3, batch_size=100, flush_interval_s=30,
                            on_full="block", block_timeout_s=0.2)  # fmt: skip
    for client in (strict, blocking):
        for i in range(3):
            client.track("page_view", page_view(i))
        with pytest.raises(BufferFullError):
            client.track("page_view", page_view(9))
        assert client.buffered == 3 and client.stats.tracked == 3
        client.close(timeout_s=0.2)
    with pytest.raises(ValueError):
        TrivasClient(down, API_KEY, on_full="spill")  # type: ignore[arg-type]


def track_through_restart(
    deployment: Deployment, name: str, total: int, sig: int
) -> tuple[list[str], TrivasClient, CollectorProcess]:
    """Track ``total`` events while the collector is stopped with ``sig`` and restarted."""
    collector = CollectorProcess(deployment, name, {}).start()
    client = TrivasClient(collector.url, API_KEY, batch_size=50, flush_interval_s=0.05,
                          initial_backoff_s=0.05, max_backoff_s=0.5, timeout_s=5)  # fmt: skip
    ids: list[str] = []

    def produce() -> None:
        for i in range(total):
            ids.append(client.track("page_view", page_view(i), event_time=datetime.now(UTC)))
            time.sleep(0.002)

    producer = threading.Thread(target=produce)
    producer.start()
    time.sleep(0.6)
    collector.stop(sig)
    time.sleep(1.0)  # the SDK retries against a closed port meanwhile
    collector.start()
    producer.join()
    assert client.flush(timeout_s=60)
    client.close()
    collector.stop()
    return ids, client, collector


@pytest.mark.integration
def test_sdk_retries_through_a_collector_restart_and_delivers_every_event(deployment: Deployment) -> None:
    ids, client, _ = track_through_restart(deployment, "sdk-restart", 1000, signal.SIGTERM)
    assert client.stats.accepted == 1000 and client.stats.retries > 0
    assert client.stats.dropped == client.stats.undelivered == client.stats.failed == 0
    in_kafka = Counter(r["value"]["event_id"] for r in read_topic(deployment.settings, "raw.web"))
    assert all(in_kafka[e] >= 1 for e in ids), "an event was lost"
    # A graceful stop answers what it accepted: a copy more than once would need a lost answer.
    assert sum(in_kafka[e] for e in ids) <= len(ids) + client.batch_size


@pytest.mark.integration
def test_sdk_event_ids_survive_retries(deployment: Deployment) -> None:
    """Two sends of one event (a retry after a lost answer) carry one event id."""
    collector = CollectorProcess(deployment, "sdk-ids", {}).start()
    try:
        event_id = str(uuid.uuid4())
        for _ in range(2):
            with TrivasClient(collector.url, API_KEY) as client:
                assert client.track("page_view", page_view(1), event_id=event_id) == event_id
    finally:
        collector.stop()
    copies = [r for r in read_topic(deployment.settings, "raw.web") if r["value"]["event_id"] == event_id]
    assert len(copies) == 2 and len({c["value"]["event_id"] for c in copies}) == 1


@pytest.mark.integration
def test_a_bad_event_is_refused_at_track_and_the_sender_keeps_delivering(deployment: Deployment) -> None:
    """Issue 10 #3: a Decimal amount (or NaN, or a set) used to kill the sender thread: the
    client kept buffering, flush() returned False and the stats said nothing was wrong."""
    collector = CollectorProcess(deployment, "sdk-bad-events", {}).start()
    try:
        client = TrivasClient(collector.url, API_KEY, batch_size=10, flush_interval_s=0.05)
        refused = []
        for bad in ({"price": Decimal("9.99")}, {"price": float("nan")}, {"tags": {"a", "b"}}):
            with pytest.raises(InvalidEventError) as caught:
                client.track("add_to_cart", {**page_view(0), **bad})
            refused.append(caught.value.reason)
        nested = {"sku": "s-1"}
        ids = [client.track("page_view", {**page_view(i), "extra": nested}) for i in range(5)]
        nested["price"] = Decimal("1.5")  # too late to matter: the event was serialised at track
        delivered = client.flush(timeout_s=60)
        stats = client.stats
        client.close()
    finally:
        collector.stop()
    assert refused == ["not_json", "non_finite_number", "not_json"]
    assert delivered and (stats.invalid, stats.tracked, stats.accepted, stats.failed) == (3, 5, 5, 0)
    in_kafka = {r["value"]["event_id"] for r in read_topic(deployment.settings, "raw.web")}
    assert set(ids) <= in_kafka


class _GarbageThenValid(BaseHTTPRequestHandler):
    """A real HTTP server whose first answer is unreadable, later ones are collector-like."""

    answered = 0

    def do_POST(self) -> None:  # noqa: N802 - the http.server hook name
        length = int(self.headers["Content-Length"])
        events = json.loads(self.rfile.read(length))["events"]
        type(self).answered += 1
        if type(self).answered == 1:
            body = b"<html>proxy error</html>"
        else:
            body = json.dumps({"results": [{"index": i, "status": "accepted"} for i in range(len(events))]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.unit
def test_the_sender_thread_survives_an_unreadable_answer() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _GarbageThenValid)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        client = TrivasClient(f"http://127.0.0.1:{server.server_port}", API_KEY, batch_size=3, flush_interval_s=0.05)
        for i in range(3):
            client.track("page_view", page_view(i))
        first = client.flush(timeout_s=30)
        for i in range(3):
            client.track("page_view", page_view(i))
        second = client.flush(timeout_s=30)
        client.close()
    finally:
        server.shutdown()
    assert first and second
    assert (client.stats.failed, client.stats.accepted) == (3, 3)
    assert client.stats.failure_reasons == {"sender_error:JSONDecodeError": 3}

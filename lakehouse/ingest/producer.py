"""The collector's Kafka producer: idempotent, ``acks=all``, one record per event.

A record's key is the event's partition-key field (``catalog.event(t).key``) so that all
events of one order/session land on one partition in order; the value is the JSON envelope.
The Kafka timestamp is left to the producer (CreateTime = arrival), which is what silver
judges lateness by — except on a quarantine replay, which restores the original arrival time.

The collector answers 2xx only after the broker acknowledged every accepted record; a batch
whose produce fails or times out is answered 503 as a whole, and the client's retry (same
event ids) is deduplicated by silver.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import orjson
from kafka import KafkaProducer

from lakehouse.catalog import Catalog, topic_for
from lakehouse.config import Settings
from lakehouse.ingest.settings import Producer as ProducerSettings
from lakehouse.kafka_security import python_client_config


def producer_config(settings: Settings, tuning: ProducerSettings, client_id: str) -> dict[str, Any]:
    """kafka-python settings shared by the collector, replay and the benchmark's raw producer."""
    return {
        "bootstrap_servers": settings.kafka_bootstrap(),
        "client_id": client_id,
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": tuning.linger_ms,
        "batch_size": tuning.batch_size,
        "max_in_flight_requests_per_connection": tuning.max_in_flight_requests_per_connection,
        "allow_auto_create_topics": False,
        # Never block the event loop for long: a broker outage becomes a 503, not a hang.
        "max_block_ms": 5000,
        "delivery_timeout_ms": int(tuning.ack_timeout_seconds * 1000) + 5000,
        "request_timeout_ms": int(tuning.ack_timeout_seconds * 1000),
        # kafka-python's per-record sensors cost ~10 % of a Python-bound producer.
        "metrics_enabled": False,
        **python_client_config(settings),
    }


class AckWaiter:
    """One asyncio future resolved when every produce future of a batch has completed."""

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int) -> None:
        self.future: asyncio.Future[list[tuple[int, Exception]]] = loop.create_future()
        self._loop = loop
        self._remaining = count
        self._errors: list[tuple[int, Exception]] = []
        self.metadata: dict[int, Any] = {}
        self._lock = threading.Lock()
        if count == 0:
            self.future.set_result([])

    def _done(self) -> None:
        with self._lock:
            self._remaining -= 1
            finished = self._remaining == 0
        if finished:
            self._loop.call_soon_threadsafe(self._resolve)

    def _resolve(self) -> None:
        if not self.future.done():
            self.future.set_result(self._errors)

    def track(self, index: int, future: Any) -> None:
        """Count ``future`` (a kafka-python produce future) towards this batch."""

        def ok(metadata: Any) -> None:
            self.metadata[index] = metadata
            self._done()

        def failed(exc: Exception) -> None:
            self._errors.append((index, exc))
            self._done()

        future.add_callback(ok)
        future.add_errback(failed)

    def fail(self, index: int, exc: Exception) -> None:
        """Count a record whose ``send`` raised."""
        self._errors.append((index, exc))
        self._done()


class EventProducer:
    """Sends envelope records to their domain topic and dead letters to the dlq topic."""

    def __init__(
        self, settings: Settings, catalog: Catalog, tuning: ProducerSettings, client_id: str
    ) -> None:
        self.settings = settings
        self.dlq_topic = settings.kafka.dlq_topic
        self._topics = {
            t: topic_for(settings.kafka.topic_prefix, e.domain) for t, e in catalog.event_types.items()
        }
        self._keys = {t: e.key for t, e in catalog.event_types.items()}
        self.kafka = KafkaProducer(**producer_config(settings, tuning, client_id))

    def topic_of(self, event_type: str) -> str:
        """The raw topic of an event type."""
        return self._topics[event_type]

    def send_event(
        self, record: dict[str, Any], timestamp_ms: int | None = None, value: bytes | None = None
    ) -> Any:
        """Send one valid envelope record (``value``: its serialised form, if already made);
        returns kafka-python's produce future."""
        event_type = record["event_type"]
        key = record["payload"].get(self._keys[event_type])
        return self.kafka.send(
            self._topics[event_type],
            value=orjson.dumps(record) if value is None else value,
            key=None if key is None else str(key).encode(),
            timestamp_ms=timestamp_ms,
        )

    def send_dead_letter(self, entry: dict[str, Any]) -> Any:
        """Send one (already scrubbed) dead-letter entry, keyed by its (scrubbed) event id."""
        key = entry.get("event_id")
        headers = [
            (name, str(entry.get(name) or "").encode())
            for name in ("reason", "contract_version", "source", "event_type")
        ]
        return self.kafka.send(
            self.dlq_topic,
            value=orjson.dumps(entry),
            key=key.encode() if isinstance(key, str) else None,
            headers=headers,
        )

    def send_batch(
        self,
        records: Sequence[tuple[dict[str, Any], bytes]],
        dead_letters: Sequence[dict[str, Any]],
    ) -> AckWaiter:
        """Send ``(record, serialised record)`` pairs then dead letters; the waiter resolves
        when all are acknowledged."""
        waiter = AckWaiter(asyncio.get_running_loop(), len(records) + len(dead_letters))
        for index, (record, value) in enumerate(records):
            try:
                waiter.track(index, self.send_event(record, value=value))
            except Exception as exc:  # noqa: BLE001 - any send failure becomes a 503
                waiter.fail(index, exc)
        offset = len(records)
        for index, entry in enumerate(dead_letters, start=offset):
            try:
                waiter.track(index, self.send_dead_letter(entry))
            except Exception as exc:  # noqa: BLE001
                waiter.fail(index, exc)
        return waiter

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush what is in flight and close."""
        try:
            self.kafka.flush(timeout=timeout_s)
        finally:
            self.kafka.close(timeout=timeout_s)

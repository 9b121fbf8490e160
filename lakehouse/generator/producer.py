"""Send deliveries to Kafka with kafka-python (idempotent producer, acks=all)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from kafka import KafkaProducer

from lakehouse.generator.faults import Delivery


@dataclass
class SendStats:
    """What a producer run did."""

    sent: int = 0
    seconds: float = 0.0

    @property
    def per_second(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


def make_producer(bootstrap: str, **overrides: object) -> KafkaProducer:
    """An idempotent producer tuned for throughput on loopback."""
    options: dict[str, object] = {
        "bootstrap_servers": bootstrap,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "batch_size": 256 * 1024,
        "compression_type": None,
    }
    options.update(overrides)
    return KafkaProducer(**options)


def send(
    stream: Iterable[Delivery],
    producer: KafkaProducer,
    live: bool = False,
    stop: Callable[[], bool] = lambda: False,
    on_sent: Callable[[Delivery], None] | None = None,
) -> SendStats:
    """Send every delivery, with its arrival time as the Kafka record timestamp.

    Args:
        stream: deliveries in arrival order.
        producer: the Kafka producer (flushed, not closed, at the end).
        live: wait until each delivery's arrival time on the wall clock (the playground);
            otherwise send as fast as possible (tests and replays).
        stop: polled between records; True ends the run early (Ctrl-C in the demo).
        on_sent: called after each record is handed to the producer.
    """
    stats = SendStats()
    started = time.monotonic()
    for delivery in stream:
        if stop():
            break
        if live:
            delay = (delivery.arrival - datetime.now(UTC)).total_seconds()
            if delay > 0:
                time.sleep(min(delay, 1.0))
                while (wait := (delivery.arrival - datetime.now(UTC)).total_seconds()) > 0:
                    if stop():
                        break
                    time.sleep(min(wait, 1.0))
        producer.send(delivery.topic, key=delivery.key, value=delivery.value, timestamp_ms=delivery.timestamp_ms)
        stats.sent += 1
        if on_sent is not None:
            on_sent(delivery)
    producer.flush()
    stats.seconds = time.monotonic() - started
    return stats

"""Delivery faults: how clean events reach Kafka in a real shop.

Every clean event becomes one or more :class:`Delivery` records with an arrival time (the
Kafka record timestamp) and an expected fate, so tests know exactly what silver must hold:

- network delay of a few hundred milliseconds (on time);
- out of order: delayed, but within the type's allowed lateness (counted);
- late: delayed beyond the allowed lateness (``silver.late``);
- retried duplicate: the same bytes again a little later (counted once);
- malformed: replaced by a broken record with a known reason code (``silver.quarantine``).
"""

from __future__ import annotations

import copy
import heapq
import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from lakehouse.catalog import Catalog, topic_for

FATE_COUNTED, FATE_DUPLICATE, FATE_LATE, FATE_QUARANTINED = "counted", "duplicate", "late", "quarantined"


@dataclass(frozen=True)
class FaultConfig:
    """Fractions of clean events that suffer each fault (they are independent draws)."""

    duplicate_fraction: float = 0.02
    out_of_order_fraction: float = 0.05
    late_fraction: float = 0.01
    malformed_fraction: float = 0.01
    network_delay_ms: tuple[int, int] = (5, 250)


@dataclass(frozen=True)
class Delivery:
    """One Kafka record as the shop's infrastructure would send it."""

    topic: str
    key: bytes | None
    value: bytes
    arrival: datetime
    event_type: str
    event_id: str | None
    event: dict[str, Any] | None
    fault: str  # none | duplicate | out_of_order | late | malformed
    expected_reason: str | None = None

    @property
    def timestamp_ms(self) -> int:
        return int(self.arrival.timestamp() * 1000)

    def ledger_row(self) -> dict[str, Any]:
        """A JSON-serialisable record of this delivery, for the ground-truth ledger."""
        return {
            "topic": self.topic,
            "arrival": self.arrival.isoformat(),
            "event_type": self.event_type,
            "event_id": self.event_id,
            "fault": self.fault,
            "expected_reason": self.expected_reason,
            "event": self.event,
        }


def encode(event: dict[str, Any]) -> bytes:
    """The wire form of an event: compact JSON, UTF-8."""
    return json.dumps(event, separators=(",", ":")).encode()


def event_time(event: dict[str, Any]) -> datetime:
    """Event time of a clean event."""
    return datetime.fromisoformat(event["event_time"])


class Malformer:
    """Turns a clean event into a broken record with exactly one, known, contract violation."""

    def __init__(self, catalog: Catalog, rng: random.Random) -> None:
        self.catalog = catalog
        self.rng = rng

    def __call__(self, event: dict[str, Any]) -> tuple[bytes, str, str | None]:
        """(raw value, expected reason code, event_id the record still carries)."""
        contract = self.catalog.event(event["event_type"])
        options = ["truncated", "unknown_type", "naive_time", "missing_event_id"]
        if [f for f in contract.fields if f.required and f.pii != "forbidden"]:
            options.append("missing_required")
        if [f for f in contract.fields if f.type in ("number", "integer")]:
            options.append("type_mismatch")
        if [f for f in contract.fields if f.allowed]:
            options.append("not_allowed")
        if [f for f in contract.fields if f.min is not None and f.type in ("number", "integer")]:
            options.append("out_of_range")
        if [f for f in contract.fields if f.pii == "forbidden"]:
            options.append("forbidden_pii")
        kind = self.rng.choice(sorted(options))
        broken = copy.deepcopy(event)
        payload = broken["payload"]
        if kind == "truncated":
            raw = encode(event)
            return raw[: len(raw) // 2], "malformed_json", None
        if kind == "unknown_type":
            broken["event_type"] = event["event_type"] + "_v0"
            return encode(broken), "unknown_event_type", broken["event_id"]
        if kind == "naive_time":
            broken["event_time"] = event_time(event).replace(tzinfo=None).isoformat()
            return encode(broken), "invalid_event_time", broken["event_id"]
        if kind == "missing_event_id":
            del broken["event_id"]
            return encode(broken), "missing_envelope_field:event_id", None
        if kind == "missing_required":
            spec = self.rng.choice([f for f in contract.fields if f.required and f.pii != "forbidden"])
            payload.pop(spec.name, None)
            return encode(broken), f"missing_required:{spec.name}", broken["event_id"]
        if kind == "type_mismatch":
            spec = self.rng.choice([f for f in contract.fields if f.type in ("number", "integer")])
            payload[spec.name] = "not-a-number"
            return encode(broken), f"type_mismatch:{spec.name}", broken["event_id"]
        if kind == "not_allowed":
            spec = self.rng.choice([f for f in contract.fields if f.allowed])
            payload[spec.name] = "bogus"
            return encode(broken), f"not_allowed:{spec.name}", broken["event_id"]
        if kind == "out_of_range":
            spec = self.rng.choice(
                [f for f in contract.fields if f.min is not None and f.type in ("number", "integer")]
            )
            payload[spec.name] = spec.min - 1
            return encode(broken), f"out_of_range:{spec.name}", broken["event_id"]
        spec = next(f for f in contract.fields if f.pii == "forbidden")
        payload[spec.name] = "4111 1111 1111 1111"
        return encode(broken), f"forbidden_pii:{spec.name}", broken["event_id"]


def deliveries(
    events: Iterable[dict[str, Any]],
    catalog: Catalog,
    topic_prefix: str,
    faults: FaultConfig,
    seed: int,
) -> Iterator[Delivery]:
    """Deliveries of ``events`` (in event-time order) in arrival order, lazily.

    A delivery is released once the next clean event's time passes its arrival: no later
    event can arrive before that, so the output is sorted by arrival without buffering the
    whole stream.
    """
    rng = random.Random(seed ^ 0x5EED)
    malform = Malformer(catalog, rng)
    pending: list[tuple[datetime, int, Delivery]] = []
    counter = 0

    def push(delivery: Delivery) -> None:
        nonlocal counter
        counter += 1
        heapq.heappush(pending, (delivery.arrival, counter, delivery))

    for event in events:
        at = event_time(event)
        while pending and pending[0][0] <= at:
            yield heapq.heappop(pending)[2]
        contract = catalog.event(event["event_type"])
        topic = topic_for(topic_prefix, contract.domain)
        key_value = event["payload"].get(contract.key)
        key = str(key_value).encode() if key_value is not None else None
        arrival = at + timedelta(milliseconds=rng.randint(*faults.network_delay_ms))
        draw = rng.random()
        if draw < faults.malformed_fraction:
            raw, reason, event_id = malform(event)
            push(Delivery(topic, key, raw, arrival, event["event_type"], event_id, None, "malformed", reason))
            continue
        draw -= faults.malformed_fraction
        fault = "none"
        if draw < faults.late_fraction:
            arrival = at + contract.allowed_lateness + timedelta(seconds=rng.uniform(30, 300))
            fault = "late"
        elif draw < faults.late_fraction + faults.out_of_order_fraction:
            slack = contract.allowed_lateness.total_seconds() / 2
            arrival += timedelta(seconds=rng.uniform(5, slack))
            fault = "out_of_order"
        raw = encode(event)
        push(Delivery(topic, key, raw, arrival, event["event_type"], event["event_id"], event, fault))
        if rng.random() < faults.duplicate_fraction:
            retry = arrival + timedelta(milliseconds=rng.randint(500, 5000))
            push(Delivery(topic, key, raw, retry, event["event_type"], event["event_id"], event, "duplicate"))
    while pending:
        yield heapq.heappop(pending)[2]


def expected_fates(stream: Iterable[Delivery], catalog: Catalog) -> list[tuple[Delivery, str]]:
    """The fate silver must give each delivery, by the catalog's rules.

    Quarantined if malformed; late if it arrived after its allowed lateness; otherwise
    counted the first time its ``event_id`` is seen and a duplicate after that.
    """
    seen: set[str] = set()
    fates = []
    for delivery in stream:
        if delivery.expected_reason is not None:
            fates.append((delivery, FATE_QUARANTINED))
            continue
        assert delivery.event is not None and delivery.event_id is not None
        lateness = delivery.arrival - event_time(delivery.event)
        if lateness > catalog.event(delivery.event_type).allowed_lateness:
            fates.append((delivery, FATE_LATE))
        elif delivery.event_id in seen:
            fates.append((delivery, FATE_DUPLICATE))
        else:
            seen.add(delivery.event_id)
            fates.append((delivery, FATE_COUNTED))
    return fates

"""``POST /v1/events``: a batch from an SDK source, one verdict per event.

The body is parsed with the strict parser of the shared rule set
(:func:`lakehouse.event_contract.strict_loads`); a body that is not JSON, or nested beyond the
parser's limit, is a 400 with a reason. Each event is then checked on its own
(:class:`lakehouse.ingest.validation.EventValidator`): accepted events are written in their
canonical spelling, refused ones are dead-lettered, and a record that cannot be serialised is
refused on its own — client input never turns into a 5xx.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import Request

from lakehouse.event_contract import MalformedJson, Reason, Verdict, strict_loads
from lakehouse.ingest.http_errors import HttpError
from lakehouse.ingest.request_limits import read_body

if TYPE_CHECKING:
    from lakehouse.ingest.collector import Collector

log = logging.getLogger("trivas.collector")


def parse_batch(body: bytes, max_events: int) -> list[Any]:
    """The events of a batch body, or the 4xx that explains why there are none."""
    try:
        batch = strict_loads(body)
    except MalformedJson as exc:
        raise HttpError(400, exc.reason.value, str(exc)) from None
    events = batch.get("events") if isinstance(batch, dict) else None
    if not isinstance(events, list):
        raise HttpError(422, "not_a_batch", 'the body must be {"events": [...]}')
    if len(events) > max_events:
        raise HttpError(413, "batch_too_large", f"at most {max_events} events per request")
    return events


def serialise(record: dict[str, Any]) -> bytes | Verdict:
    """The record as the raw topic carries it, or why it cannot be written."""
    try:
        return orjson.dumps(record)
    except orjson.JSONEncodeError:
        return Verdict(Reason.MALFORMED_JSON, None, "the record cannot be serialised as JSON")


async def receive_batch(collector: Collector, request: Request, source: str) -> dict[str, Any]:
    """Validate, publish and answer a batch of ``source`` (see the module docstring)."""
    body = await read_body(request, collector.config.limits)
    events = parse_batch(body, collector.config.limits.max_batch_events)
    origin = f"sdk:{source}"
    collector.take_tokens(origin, max(1, len(events)))
    now = datetime.now(UTC)
    received_at = now.isoformat()
    results: list[dict[str, Any]] = []
    accepted: list[tuple[dict[str, Any], bytes]] = []
    dead_letters: list[dict[str, Any]] = []
    reasons: dict[str, int] = {}
    for index, record in enumerate(events):
        if isinstance(record, dict):
            record["source"] = origin
            if record.get("sent_at") is None:
                record["sent_at"] = received_at
            if "schema_version" not in record and record.get("event_type") in collector.versions:
                record["schema_version"] = collector.versions[record["event_type"]]
        verdict: Verdict | bytes | None = collector.validator.check(record, now)
        if verdict is None:
            canonical = collector.validator.canonical(record)
            verdict = serialise(canonical)
            if isinstance(verdict, bytes):
                accepted.append((canonical, verdict))
                results.append({"index": index, "event_id": canonical["event_id"], "status": "accepted"})
                continue
        entry = collector.dead_letters.entry(record, verdict, origin)
        dead_letters.append(entry)
        reasons[verdict.reason.value] = reasons.get(verdict.reason.value, 0) + 1
        results.append(
            {
                "index": index,
                "event_id": entry["event_id"],
                "status": "rejected",
                "reason": verdict.reason.value,
                "field": verdict.field,
                "detail": verdict.detail,
            }
        )
    await collector.publisher.publish(accepted, dead_letters)
    collector.count_batch(origin, len(accepted), dead_letters, reasons)
    return {"accepted": len(accepted), "rejected": len(dead_letters), "results": results}

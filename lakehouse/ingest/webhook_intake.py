"""``POST /v1/webhooks/{provider}``: verify, deduplicate, map, validate, publish.

The provider table (:func:`lakehouse.ingest.webhooks.providers`) supplies the signature check,
the dedup key and the mapper. Each delivery claims its deterministic event id in the persistent
store of deliveries (:class:`lakehouse.ingest.webhook_deliveries.WebhookDeliveries`) *before*
producing, so concurrent redeliveries and redeliveries after a restart produce nothing: they
are answered ``200 {"status": "duplicate"}``. A contract violation is dead-lettered and answered
``200 rejected`` (a redelivery would not heal it, and providers retry non-2xx answers for days).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import Request

from lakehouse.event_contract import MalformedJson, strict_loads
from lakehouse.ingest.event_intake import serialise
from lakehouse.ingest.http_errors import HttpError
from lakehouse.ingest.request_limits import read_body
from lakehouse.ingest.webhook_deliveries import Claim
from lakehouse.ingest.webhooks import SignatureError, webhook_event_id

if TYPE_CHECKING:
    from lakehouse.ingest.collector import Collector

log = logging.getLogger("trivas.collector")
IN_FLIGHT_POLL_S = 0.05


async def _claim(collector: Collector, provider: str, event_id: str) -> tuple[Claim, str | None]:
    """Claim ``event_id``; while another request produces it, wait for its outcome."""
    deliveries = collector.deliveries
    retention_s = collector.retention_s[provider]
    deadline = time.monotonic() + collector.config.producer.ack_timeout_seconds + 5
    while True:
        result = await asyncio.to_thread(deliveries.claim, event_id, provider, retention_s)
        if result.claim != Claim.IN_FLIGHT:
            return result.claim, result.token
        if time.monotonic() > deadline:
            raise HttpError(503, "delivery_in_flight", "the same event is being delivered; retry", {"Retry-After": "5"})
        await asyncio.sleep(IN_FLIGHT_POLL_S)


async def receive_webhook(collector: Collector, provider_name: str, request: Request) -> dict[str, Any]:
    """Handle one delivery of ``provider_name`` (see the module docstring)."""
    provider = collector.providers[provider_name]
    body = await read_body(request, collector.config.limits)
    headers = request.headers
    secrets = collector.config.webhooks.providers[provider_name]
    try:
        provider.verify(body, headers, collector.secrets[provider_name], secrets.tolerance_seconds)
        try:
            document = strict_loads(body)
        except MalformedJson as exc:
            raise HttpError(400, exc.reason.value, str(exc)) from None
        dedup_key = provider.dedup_key(headers, document)
    except SignatureError as exc:
        collector.metrics.webhooks.labels(provider_name, exc.reason).inc()
        log.warning("webhook refused", extra={"fields": {"provider": provider_name, "reason": exc.reason}})
        raise HttpError(exc.status, exc.reason, exc.detail) from None
    event_id = webhook_event_id(provider_name, dedup_key)
    try:
        mapped = provider.map_event(headers, document)
    except Exception as exc:  # noqa: BLE001 - a payload shaped unlike the provider's docs
        collector.metrics.webhooks.labels(provider_name, "unmappable").inc()
        log.warning("webhook unmappable", extra={"fields": {"provider": provider_name, "error": type(exc).__name__}})
        raise HttpError(422, "unmappable_payload", "the payload does not have the provider's documented shape") from None
    if mapped is None:
        # Providers retry anything but 2xx: acknowledge what trivas does not consume.
        collector.metrics.webhooks.labels(provider_name, "ignored").inc()
        return {"status": "ignored", "event_id": None}
    claim, token = await _claim(collector, provider_name, event_id)
    if claim == Claim.DONE:
        collector.metrics.webhooks.labels(provider_name, "duplicate").inc()
        log.info("webhook duplicate", extra={"fields": {"provider": provider_name, "event_id": event_id}})
        return {"status": "duplicate", "event_id": event_id}
    assert token is not None
    try:
        result = await _deliver(collector, provider_name, event_id, mapped)
    except BaseException:
        await asyncio.to_thread(collector.deliveries.release, event_id, token)
        raise
    await asyncio.to_thread(collector.deliveries.mark_done, event_id, token, result["status"])
    return result


async def _deliver(collector: Collector, provider: str, event_id: str, mapped: Any) -> dict[str, Any]:
    origin = f"webhook:{provider}"
    collector.take_tokens(origin, 1)
    now = datetime.now(UTC)
    record = {
        "event_id": event_id,
        "event_type": mapped.event_type,
        "schema_version": collector.versions[mapped.event_type],
        "event_time": mapped.event_time,
        "source": origin,
        "sent_at": now.isoformat(),
        "payload": mapped.payload,
    }
    verdict = collector.validator.check(record, now)
    if verdict is None:
        canonical = collector.validator.canonical(record)
        value = serialise(canonical)
        if isinstance(value, bytes):
            await collector.publisher.publish([(canonical, value)], [])
            collector.metrics.webhooks.labels(provider, "accepted").inc()
            collector.metrics.events.labels(origin, "accepted").inc()
            log.info("webhook accepted", extra={"fields": {"provider": provider, "event_id": event_id, "event_type": mapped.event_type}})
            return {"status": "accepted", "event_id": event_id}
        verdict = value
    await collector.publisher.publish([], [collector.dead_letters.entry(record, verdict, origin)])
    collector.metrics.webhooks.labels(provider, "rejected").inc()
    collector.metrics.events.labels(origin, "rejected").inc()
    collector.metrics.rejections.labels(verdict.reason.value).inc()
    log.info(
        "webhook rejected",
        extra={"fields": {"provider": provider, "event_id": event_id, "reason": verdict.qualified, "detail": verdict.detail}},
    )
    return {
        "status": "rejected",
        "event_id": event_id,
        "reason": verdict.reason.value,
        "field": verdict.field,
        "detail": verdict.detail,
    }

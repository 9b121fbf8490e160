"""Shopify (https://shopify.dev/docs/apps/build/webhooks): ``orders/create`` → ``order_placed``.

``X-Shopify-Hmac-Sha256`` is the base64 HMAC-SHA256 of the raw body under the app's client
secret; ``X-Shopify-Topic`` names the event; the dedup key is ``X-Shopify-Event-Id`` (the same
across retries of one event), falling back to ``X-Shopify-Webhook-Id``. Shopify retries a
failed delivery 8 times over 4 hours.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from lakehouse.ingest.webhooks.base import (
    Headers,
    MappedEvent,
    SignatureError,
    WebhookProvider,
    decimal_text,
    dict_at,
    identifier,
    text,
)


def shopify_signature(body: bytes, secret: str) -> str:
    """What Shopify puts in ``X-Shopify-Hmac-Sha256`` for ``body``."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def verify_shopify(body: bytes, header: str | None, secrets: Sequence[str]) -> None:
    """Raise :class:`SignatureError` unless ``header`` signs ``body`` under one of ``secrets``."""
    if not secrets:
        raise SignatureError(503, "webhook_not_configured", "no Shopify webhook secret is configured")
    if not header:
        raise SignatureError(401, "missing_signature", "X-Shopify-Hmac-Sha256 header is missing")
    presented = header.strip().encode()
    matched = False
    for secret in secrets:  # no early exit: the timing does not reveal which secret matched
        matched |= hmac.compare_digest(shopify_signature(body, secret).encode(), presented)
    if not matched:
        raise SignatureError(401, "invalid_signature", "X-Shopify-Hmac-Sha256 does not match the body")


def verify(body: bytes, headers: Headers, secrets: Sequence[str], tolerance_s: int) -> None:
    """The provider-table form of :func:`verify_shopify` (Shopify signs no timestamp)."""
    verify_shopify(body, headers.get("x-shopify-hmac-sha256"), secrets)


def dedup_key(headers: Headers, document: Any) -> str:
    """``X-Shopify-Event-Id``, else ``X-Shopify-Webhook-Id``."""
    key = headers.get("x-shopify-event-id") or headers.get("x-shopify-webhook-id")
    if not key:
        raise SignatureError(400, "missing_dedup_key", "X-Shopify-Event-Id or X-Shopify-Webhook-Id is required")
    return key


def map_shopify(topic: str | None, body: Any) -> MappedEvent | None:
    """``orders/create`` → ``order_placed``; None for topics trivas does not consume."""
    if topic != "orders/create" or not isinstance(body, dict):
        return None
    customer = dict_at(body, "customer")
    billing = dict_at(body, "billing_address")
    shipping = dict_at(body, "shipping_address")
    items = []
    for line in body.get("line_items") or []:
        if not isinstance(line, dict):
            continue
        items.append(
            {
                # Shopify's sku may be empty for variants without one: the variant id is stable.
                "sku": text(line.get("sku")) or identifier(line.get("variant_id")) or identifier(line.get("id")),
                "quantity": line.get("quantity"),
                "unit_price": decimal_text(line.get("price")),
            }
        )
    payload = {
        "order_id": identifier(body.get("id")),
        "customer_id": identifier(customer.get("id")),
        "email": text(body.get("email")) or text(customer.get("email")),
        "phone": text(body.get("phone")) or text(customer.get("phone")) or text(billing.get("phone")),
        "amount": decimal_text(body.get("total_price")),
        "currency": text(body.get("currency")),
        "country": text(billing.get("country_code")) or text(shipping.get("country_code")),
        "items": items,
    }
    return MappedEvent(
        "order_placed",
        text(body.get("created_at")) or datetime.now(UTC).isoformat(),
        payload,
    )


def map_event(headers: Headers, document: Any) -> MappedEvent | None:
    """The provider-table form of :func:`map_shopify`."""
    return map_shopify(headers.get("x-shopify-topic"), document)


PROVIDER = WebhookProvider("shopify", verify, dedup_key, map_event, retry_window=timedelta(hours=4))

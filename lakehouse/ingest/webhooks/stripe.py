"""Stripe (https://docs.stripe.com/webhooks): payment intents and refunds.

``Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`` where v1 is the hex HMAC-SHA256 of
``"<t>.<raw body>"`` under the endpoint secret; several v1 appear while a secret is rolled; a
timestamp outside the tolerance (5 minutes) is refused against replay attacks; the event ``id``
is the dedup key. Stripe retries a failed delivery for up to 3 days.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from lakehouse.ingest.webhooks.base import (
    Headers,
    MappedEvent,
    SignatureError,
    WebhookProvider,
    identifier,
    text,
)

STRIPE_TOLERANCE_S = 300
# Stripe amounts are in the currency's minor unit except for zero-decimal currencies.
ZERO_DECIMAL = {
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
}  # fmt: skip
STRIPE_METHODS = {"card": "card", "paypal": "paypal", "klarna": "klarna", "apple_pay": "apple_pay"}
STRIPE_REFUND_REASONS = {
    "fraudulent": "fraud",
    "requested_by_customer": "changed_mind",
    "duplicate": "changed_mind",
}


def stripe_signature(body: bytes, secret: str, timestamp: int) -> str:
    """The hex v1 signature Stripe computes for ``body`` at ``timestamp``."""
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def stripe_header(body: bytes, secrets: Sequence[str], timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` value signing ``body`` with every secret (as during rotation)."""
    t = int(time.time()) if timestamp is None else timestamp
    return ",".join([f"t={t}", *(f"v1={stripe_signature(body, s, t)}" for s in secrets)])


def verify_stripe(
    body: bytes,
    header: str | None,
    secrets: Sequence[str],
    tolerance_s: int = STRIPE_TOLERANCE_S,
    now: float | None = None,
) -> int:
    """Verify a ``Stripe-Signature`` header; returns its timestamp or raises SignatureError."""
    if not secrets:
        raise SignatureError(503, "webhook_not_configured", "no Stripe webhook secret is configured")
    if not header:
        raise SignatureError(400, "missing_signature", "Stripe-Signature header is missing")
    timestamp: int | None = None
    signatures: list[bytes] = []
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if name == "t":
            try:
                timestamp = int(value)
            except ValueError:
                timestamp = None
        elif name == "v1":
            signatures.append(value.strip().encode())
    if timestamp is None or not signatures:
        raise SignatureError(
            400, "malformed_signature", "Stripe-Signature needs t=<timestamp> and at least one v1="
        )
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError(
            401, "stale_signature", f"Stripe-Signature timestamp is outside the {tolerance_s}s tolerance"
        )
    matched = False
    for secret in secrets:
        expected = stripe_signature(body, secret, timestamp).encode()
        for presented in signatures:
            matched |= hmac.compare_digest(expected, presented)
    if not matched:
        raise SignatureError(401, "invalid_signature", "no v1 signature matches the body")
    return timestamp


def verify(body: bytes, headers: Headers, secrets: Sequence[str], tolerance_s: int) -> None:
    """The provider-table form of :func:`verify_stripe`."""
    verify_stripe(body, headers.get("stripe-signature"), secrets, tolerance_s)


def dedup_key(headers: Headers, document: Any) -> str:
    """The Stripe event id (``evt_…``)."""
    stripe_id = document.get("id") if isinstance(document, dict) else None
    if not isinstance(stripe_id, str) or not stripe_id:
        raise SignatureError(400, "missing_dedup_key", "a Stripe event needs its id")
    return stripe_id


def _minor_to_major(amount: Any, currency: Any) -> Any:
    if not isinstance(amount, int | float) or isinstance(amount, bool):
        return amount
    return float(amount) if str(currency).lower() in ZERO_DECIMAL else amount / 100.0


def _order_id(obj: dict[str, Any]) -> str | None:
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    return identifier(metadata.get("order_id"))


def map_stripe(body: Any) -> MappedEvent | None:
    """Stripe events → payment_authorized / payment_failed / refund_issued; None otherwise."""
    if not isinstance(body, dict):
        return None
    kind = body.get("type")
    data = body.get("data") if isinstance(body.get("data"), dict) else {}
    obj = data.get("object") if isinstance(data.get("object"), dict) else {}
    created = body.get("created")
    event_time = (
        datetime.fromtimestamp(created, UTC).isoformat()
        if isinstance(created, int) and not isinstance(created, bool) and 0 <= created < 2**33
        else datetime.now(UTC).isoformat()
    )
    currency = obj.get("currency")
    if kind in ("payment_intent.succeeded", "payment_intent.payment_failed"):
        types = obj.get("payment_method_types") or []
        method = STRIPE_METHODS.get(types[0], types[0]) if isinstance(types, list) and types else "card"
        payload: dict[str, Any] = {
            "payment_id": identifier(obj.get("id")),
            "order_id": _order_id(obj),
            "amount": _minor_to_major(obj.get("amount"), currency),
            "currency": currency.upper() if isinstance(currency, str) else currency,
            "method": method,
            "provider": "stripe",
        }
        if kind == "payment_intent.succeeded":
            return MappedEvent("payment_authorized", event_time, payload)
        error = obj.get("last_payment_error") if isinstance(obj.get("last_payment_error"), dict) else {}
        payload["failure_code"] = (
            text(error.get("decline_code")) or text(error.get("code")) or "unknown"
        )
        return MappedEvent("payment_failed", event_time, payload)
    if kind == "charge.refunded":
        refunds = obj.get("refunds") if isinstance(obj.get("refunds"), dict) else {}
        latest = (refunds.get("data") or [None])[0] if isinstance(refunds.get("data"), list) else None
        latest = latest if isinstance(latest, dict) else {}
        metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        reason = text(metadata.get("refund_reason")) or STRIPE_REFUND_REASONS.get(
            str(latest.get("reason")), "changed_mind"
        )
        amount = latest.get("amount", obj.get("amount_refunded"))
        payload = {
            # Without an expanded refund list (recent API versions) the Stripe event id is
            # the most precise stable id of this refund.
            "refund_id": identifier(latest.get("id")) or identifier(body.get("id")),
            "order_id": _order_id(obj),
            "payment_id": identifier(obj.get("payment_intent")) or identifier(obj.get("id")),
            "amount": _minor_to_major(amount, currency),
            "currency": currency.upper() if isinstance(currency, str) else currency,
            "reason": reason,
        }
        return MappedEvent("refund_issued", event_time, payload)
    return None


def map_event(headers: Headers, document: Any) -> MappedEvent | None:
    """The provider-table form of :func:`map_stripe`."""
    return map_stripe(document)


PROVIDER = WebhookProvider("stripe", verify, dedup_key, map_event, retry_window=timedelta(days=3))

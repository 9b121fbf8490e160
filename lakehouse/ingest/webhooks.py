"""Signed webhooks from SaaS platforms, mapped to catalog events.

Shopify (https://shopify.dev/docs/apps/build/webhooks): ``X-Shopify-Hmac-Sha256`` is the
base64 HMAC-SHA256 of the raw body under the app's client secret; ``X-Shopify-Topic`` names the
event (``orders/create``); the dedup key is ``X-Shopify-Event-Id`` (the same across retries of
one event), falling back to ``X-Shopify-Webhook-Id``.

Stripe (https://docs.stripe.com/webhooks#verify-manually): ``Stripe-Signature: t=<unix>,
v1=<hex>[,v1=<hex>…]`` where v1 is the hex HMAC-SHA256 of ``"<t>.<raw body>"`` under the
endpoint secret; several v1 appear while a secret is rolled; a timestamp older (or newer) than
the tolerance (5 minutes) is refused against replay attacks; the event ``id`` is the dedup key.

Every comparison of a signature is constant-time (``hmac.compare_digest``). Several secrets
may be configured at once (rotation); any one that matches is enough.

The event id of a mapped event is ``uuid5(WEBHOOK_NAMESPACE, "<provider>:<dedup key>")``: a
redelivery carries the same dedup key, hence the same event id, and silver counts it once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

WEBHOOK_NAMESPACE = uuid.UUID("3f0c6c2e-5b1d-5c8e-9a57-7d1f3c1e8a42")
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


class SignatureError(Exception):
    """A webhook whose signature cannot be trusted; ``status`` is the HTTP answer."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.reason, self.detail = status, reason, detail


@dataclass(frozen=True)
class MappedEvent:
    """A catalog event derived from a webhook (before edge validation)."""

    event_type: str
    event_time: str
    payload: dict[str, Any]


def webhook_event_id(provider: str, dedup_key: str) -> str:
    """The deterministic event id of a webhook delivery."""
    return str(uuid.uuid5(WEBHOOK_NAMESPACE, f"{provider}:{dedup_key}"))


# --- signatures -------------------------------------------------------------------------------


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


# --- payload mapping --------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _number(value: Any) -> Any:
    """Shopify sends money as decimal strings; anything unparsable is left for validation."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def map_shopify(topic: str | None, body: Any) -> MappedEvent | None:
    """``orders/create`` → ``order_placed``; None for topics trivas does not consume."""
    if topic != "orders/create" or not isinstance(body, dict):
        return None
    customer = body.get("customer") if isinstance(body.get("customer"), dict) else {}
    billing = body.get("billing_address") if isinstance(body.get("billing_address"), dict) else {}
    shipping = body.get("shipping_address") if isinstance(body.get("shipping_address"), dict) else {}
    items = []
    for line in body.get("line_items") or []:
        if not isinstance(line, dict):
            continue
        items.append(
            {
                # Shopify's sku may be empty for variants without one: the variant id is stable.
                "sku": _text(line.get("sku")) or _text(line.get("variant_id")) or _text(line.get("id")),
                "quantity": line.get("quantity"),
                "unit_price": _number(line.get("price")),
            }
        )
    payload = {
        "order_id": _text(body.get("id")),
        "customer_id": _text(customer.get("id")),
        "email": _text(body.get("email")) or _text(customer.get("email")),
        "phone": _text(body.get("phone")) or _text(customer.get("phone")) or _text(billing.get("phone")),
        "amount": _number(body.get("total_price")),
        "currency": _text(body.get("currency")),
        "country": _text(billing.get("country_code")) or _text(shipping.get("country_code")),
        "items": items,
    }
    return MappedEvent(
        "order_placed",
        _text(body.get("created_at")) or datetime.now(UTC).isoformat(),
        payload,
    )


def _minor_to_major(amount: Any, currency: Any) -> Any:
    if not isinstance(amount, int | float) or isinstance(amount, bool):
        return amount
    return float(amount) if str(currency).lower() in ZERO_DECIMAL else amount / 100.0


def _order_id(obj: dict[str, Any]) -> str | None:
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    return _text(metadata.get("order_id"))


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
            "payment_id": _text(obj.get("id")),
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
            _text(error.get("decline_code")) or _text(error.get("code")) or "unknown"
        )
        return MappedEvent("payment_failed", event_time, payload)
    if kind == "charge.refunded":
        refunds = obj.get("refunds") if isinstance(obj.get("refunds"), dict) else {}
        latest = (refunds.get("data") or [None])[0] if isinstance(refunds.get("data"), list) else None
        latest = latest if isinstance(latest, dict) else {}
        metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        reason = _text(metadata.get("refund_reason")) or STRIPE_REFUND_REASONS.get(
            str(latest.get("reason")), "changed_mind"
        )
        amount = latest.get("amount", obj.get("amount_refunded"))
        payload = {
            # Without an expanded refund list (recent API versions) the Stripe event id is
            # the most precise stable id of this refund.
            "refund_id": _text(latest.get("id")) or _text(body.get("id")),
            "order_id": _order_id(obj),
            "payment_id": _text(obj.get("payment_intent")) or _text(obj.get("id")),
            "amount": _minor_to_major(amount, currency),
            "currency": currency.upper() if isinstance(currency, str) else currency,
            "reason": reason,
        }
        return MappedEvent("refund_issued", event_time, payload)
    return None


class RecentIds:
    """A bounded set of recently accepted dedup keys (an optimisation, not the guarantee)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: str) -> bool:
        return key in self._ids

    def add(self, key: str) -> None:
        """Remember ``key``, forgetting the oldest beyond capacity."""
        self._ids[key] = None
        self._ids.move_to_end(key)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)

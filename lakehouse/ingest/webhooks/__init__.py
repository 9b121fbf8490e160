"""Signed webhooks from SaaS platforms, mapped to catalog events: the provider table.

Each module of this package that defines ``PROVIDER`` (a :class:`WebhookProvider`: signature
check, dedup key, mapper, retry window) is served at ``POST /v1/webhooks/<name>``; adding a
provider is adding one module (and its secrets under ``webhooks.providers`` in
``conf/collector.yaml``).
"""

from __future__ import annotations

import importlib
import pkgutil

from lakehouse.ingest.webhooks.base import (
    WEBHOOK_NAMESPACE,
    MappedEvent,
    SignatureError,
    WebhookProvider,
    webhook_event_id,
)
from lakehouse.ingest.webhooks.shopify import map_shopify, shopify_signature, verify_shopify
from lakehouse.ingest.webhooks.stripe import (
    map_stripe,
    stripe_header,
    stripe_signature,
    verify_stripe,
)

__all__ = [
    "WEBHOOK_NAMESPACE",
    "MappedEvent",
    "SignatureError",
    "WebhookProvider",
    "map_shopify",
    "map_stripe",
    "providers",
    "shopify_signature",
    "stripe_header",
    "stripe_signature",
    "verify_shopify",
    "verify_stripe",
    "webhook_event_id",
]


def providers() -> dict[str, WebhookProvider]:
    """Every provider module's ``PROVIDER``, by name."""
    found: dict[str, WebhookProvider] = {}
    for module in pkgutil.iter_modules(__path__):
        provider = getattr(importlib.import_module(f"{__name__}.{module.name}"), "PROVIDER", None)
        if isinstance(provider, WebhookProvider):
            found[provider.name] = provider
    return found

"""What every webhook provider is: a signature check, a dedup key and a mapper to a catalog event.

A provider is one module of this package defining ``PROVIDER`` (a :class:`WebhookProvider`);
the collector serves ``POST /v1/webhooks/<name>`` for each. Signatures are compared in constant
time (``hmac.compare_digest``) against every configured secret (rotation). The event id of a
mapped event is ``uuid5(WEBHOOK_NAMESPACE, "<provider>:<dedup key>")``: a redelivery carries the
same dedup key, hence the same event id.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

WEBHOOK_NAMESPACE = uuid.UUID("3f0c6c2e-5b1d-5c8e-9a57-7d1f3c1e8a42")


class SignatureError(Exception):
    """A webhook that cannot be trusted or identified; ``status`` is the HTTP answer."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.reason, self.detail = status, reason, detail


@dataclass(frozen=True)
class MappedEvent:
    """A catalog event derived from a webhook (before edge validation)."""

    event_type: str
    event_time: str
    payload: dict[str, Any]


Headers = Mapping[str, str]


@dataclass(frozen=True)
class WebhookProvider:
    """One provider: how to trust, identify and translate its deliveries.

    Attributes:
        name: the path segment (``/v1/webhooks/<name>``) and the ``webhook:<name>`` source.
        verify: ``(body, headers, secrets, tolerance_s)``; raises :class:`SignatureError`.
        dedup_key: ``(headers, document)`` → the key that is the same for every redelivery of
            one event; raises :class:`SignatureError` (400) when there is none.
        map_event: ``(headers, document)`` → a :class:`MappedEvent`, or None for deliveries
            trivas does not consume (answered 200 ``ignored``).
        retry_window: how long the provider redelivers an event; the collector remembers a
            delivered dedup key at least this long.
    """

    name: str
    verify: Callable[[bytes, Headers, Sequence[str], int], None]
    dedup_key: Callable[[Headers, Any], str]
    map_event: Callable[[Headers, Any], MappedEvent | None]
    retry_window: timedelta


def webhook_event_id(provider: str, dedup_key: str) -> str:
    """The deterministic event id of a webhook delivery."""
    return str(uuid.uuid5(WEBHOOK_NAMESPACE, f"{provider}:{dedup_key}"))


def identifier(value: Any) -> str | None:
    """An id as text (providers send ids as numbers or strings); None if absent."""
    if isinstance(value, bool) or value is None or value == "":
        return None
    return str(value) if isinstance(value, str | int) else value


def text(value: Any) -> Any:
    """A text field as sent: a string, None when absent/empty, anything else unchanged (so
    that the contract check refuses a number or an object where text belongs)."""
    return None if value is None or value == "" else value


def decimal_text(value: Any) -> Any:
    """Money sent as decimal text (``"199.00"``) as a number; anything else unchanged."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def dict_at(obj: Any, key: str) -> dict[str, Any]:
    """``obj[key]`` if it is an object, else an empty one."""
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, dict) else {}

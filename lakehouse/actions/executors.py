"""Executors: each action type, its inverse, and the HTTP client they share.

An executor is a small interface (:class:`Executor`): read a target's current state (kept in
the audit log as the previous state), apply the action, restore a previous state (rollback),
and describe a plan without acting (dry run). The commerce adapters talk to a platform with
the sandbox's API (:mod:`lakehouse.actions.sandbox`); a real ads or shop API is one more
adapter with the same four methods. Escalation goes through the alert routing: the PagerDuty
receiver of ``conf/alerts.yaml`` (its URL and routing key, Events API v2).

Every call carries the request's ``Idempotency-Key`` (a rollback: ``<key>:rollback``); a
timeout, a connection error, 429 or 5xx is retried with the same key (exponential backoff,
``platform.attempts`` in all), any other 4xx fails at once. The outcome is an :class:`Outcome`
for the audit log, never an exception.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import RetryError, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from lakehouse.actions.config import (
    ADJUST_BID,
    ESCALATE_INCIDENT,
    PAUSE_CAMPAIGN,
    QUEUE_REFUND_REVIEW,
    SURFACE_PRODUCT,
    ActionsConfig,
    Platform,
    Policy,
)

log = logging.getLogger("trivas.actions.executors")
ROLLBACK_SUFFIX = ":rollback"


@dataclass(frozen=True)
class Outcome:
    """One call's result as the audit log records it."""

    ok: bool
    code: int | None
    response: dict[str, Any] | None
    detail: str = ""
    attempts: int = 1


class Retryable(Exception):
    """A 429/5xx answer: worth another attempt with the same key."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def _retryable(error: BaseException) -> bool:
    return isinstance(error, Retryable | httpx.TimeoutException | httpx.TransportError)


def _json(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return {"text": response.text[:300]}
    return body if isinstance(body, dict) else {"items": body}


class HttpClient:
    """JSON over HTTP with timeouts, retries and the ``Idempotency-Key`` header."""

    def __init__(self, platform: Platform, base_url: str | None = None, verify: Any = True, token: bool = True) -> None:
        self.platform = platform
        self.base_url = platform.base_url() if base_url is None else base_url
        secret = platform.token() if token else None
        headers = {"Authorization": f"Bearer {secret.get_secret_value()}"} if secret else {}
        self.client = httpx.Client(base_url=self.base_url, timeout=platform.timeout.total_seconds(), headers=headers, verify=verify)

    def get(self, path: str) -> dict[str, Any]:
        """A read (retried like a write); raises ``httpx.HTTPError`` when it cannot be done."""
        for attempt in self._retrying():
            with attempt:
                response = self.client.get(path)
                if response.status_code == 429 or response.status_code >= 500:
                    raise Retryable(response)
                response.raise_for_status()
                return _json(response) or {}
        raise AssertionError("unreachable")

    def post(self, path: str, body: dict[str, Any], key: str) -> Outcome:
        """A write with ``Idempotency-Key: key``: retried on timeouts, 429 and 5xx."""
        body = json_safe(body)  # evidence may hold NaN/inf (an alert without a band): JSON has no such numbers
        attempts = 0
        try:
            for attempt in self._retrying():
                with attempt:
                    attempts += 1
                    response = self.client.post(path, json=body, headers={"Idempotency-Key": key})
                    if response.status_code == 429 or response.status_code >= 500:
                        raise Retryable(response)
        except RetryError as exhausted:
            error = exhausted.last_attempt.exception()
            if isinstance(error, Retryable):
                return Outcome(False, error.response.status_code, _json(error.response), f"HTTP {error.response.status_code} after {attempts} attempts", attempts)
            return Outcome(False, None, None, f"{type(error).__name__} after {attempts} attempts", attempts)
        ok = 200 <= response.status_code < 300
        return Outcome(ok, response.status_code, _json(response), "" if ok else f"HTTP {response.status_code}", attempts)

    def _retrying(self) -> Retrying:
        first = self.platform.backoff.total_seconds()
        return Retrying(
            stop=stop_after_attempt(self.platform.attempts),
            wait=wait_exponential(multiplier=first, min=first, max=first * 8),
            retry=retry_if_exception(_retryable),
        )

    def close(self) -> None:
        self.client.close()


class Executor:
    """One action type: state, apply, restore, plan."""

    def __init__(self, http: HttpClient, policy: Policy) -> None:
        self.http = http
        self.policy = policy

    def state(self, target: str) -> dict[str, Any]:
        raise NotImplementedError

    def change(self, target: str, state: dict[str, Any], reason: str) -> tuple[str, dict[str, Any]]:
        """The call (path, body) that applies the action to a target in ``state``."""
        raise NotImplementedError

    def restoring(self, target: str, previous: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The call (path, body) that puts ``previous`` back."""
        raise NotImplementedError

    def apply(self, target: str, previous: dict[str, Any], reason: str, key: str) -> Outcome:
        path, body = self.change(target, previous, reason)
        return self.http.post(path, body, key)

    def restore(self, target: str, previous: dict[str, Any], key: str) -> Outcome:
        path, body = self.restoring(target, previous)
        return self.http.post(path, body, key + ROLLBACK_SUFFIX)

    def plan(self, target: str, previous: dict[str, Any], reason: str) -> str:
        path, body = self.change(target, previous, reason)
        return f"POST {path} {body} (now {previous})"

    def landed(self, target: str, previous: dict[str, Any], reason: str) -> bool:
        """Whether the target now shows the change (after calls that got no answer)."""
        _, body = self.change(target, previous, reason)
        current = self.state(target)
        return all(body.get(k) == v for k, v in current.items() if k in body) and any(k in body for k in current)


class CampaignStatus(Executor):
    """Pause an ad campaign; rollback: the previous status."""

    def state(self, target: str) -> dict[str, Any]:
        return {"status": self.http.get(f"/campaigns/{target}")["status"]}

    def change(self, target: str, state: dict[str, Any], reason: str) -> tuple[str, dict[str, Any]]:
        return f"/campaigns/{target}/status", {"status": "paused"}

    def restoring(self, target: str, previous: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return f"/campaigns/{target}/status", {"status": previous["status"]}


def next_bid(current: float, step_pct: float, min_bid: float, max_bid: float) -> float:
    """One step of at most ``step_pct`` % from ``current``, kept within [min_bid, max_bid]."""
    return round(min(max(current * (1 + step_pct / 100.0), min_bid), max_bid), 4)


class CampaignBid(Executor):
    """Change a bid by one step within [min_bid, max_bid]; rollback: the previous bid."""

    def state(self, target: str) -> dict[str, Any]:
        return {"bid": float(self.http.get(f"/campaigns/{target}")["bid"])}

    def change(self, target: str, state: dict[str, Any], reason: str) -> tuple[str, dict[str, Any]]:
        p = self.policy.params
        bid = next_bid(float(state["bid"]), float(p["step_pct"]), float(p["min_bid"]), float(p["max_bid"]))
        return f"/campaigns/{target}/bid", {"bid": bid}

    def restoring(self, target: str, previous: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return f"/campaigns/{target}/bid", {"bid": previous["bid"]}


class ProductVisibility(Executor):
    """Surface a product on the storefront; rollback: its previous visibility (hide it again)."""

    def state(self, target: str) -> dict[str, Any]:
        return {"visible": bool(self.http.get(f"/storefront/products/{target}")["visible"])}

    def change(self, target: str, state: dict[str, Any], reason: str) -> tuple[str, dict[str, Any]]:
        return f"/storefront/products/{target}/visibility", {"visible": True}

    def restoring(self, target: str, previous: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return f"/storefront/products/{target}/visibility", {"visible": previous["visible"]}


class RefundReview(Executor):
    """Queue an order for refund-risk review with its reason; rollback: take it off the queue
    (unless it was queued before)."""

    def state(self, target: str) -> dict[str, Any]:
        return {"queued": bool(self.http.get(f"/review-queue/{target}")["queued"])}

    def change(self, target: str, state: dict[str, Any], reason: str) -> tuple[str, dict[str, Any]]:
        return "/review-queue", {"order_id": target, "reason": reason}

    def landed(self, target: str, previous: dict[str, Any], reason: str) -> bool:
        return self.state(target)["queued"]

    def restoring(self, target: str, previous: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if previous.get("queued"):
            return "/review-queue", {"order_id": target, "reason": previous.get("reason", "restored")}
        return f"/review-queue/{target}/remove", {}


class IncidentEscalation(Executor):
    """Page through the alert routing's PagerDuty receiver (Events API v2, the idempotency key
    as ``dedup_key``, the evidence in ``custom_details``); rollback: resolve the incident."""

    def __init__(self, http: HttpClient, policy: Policy, url: str, routing_key: str, evidence: dict[str, Any] | None = None) -> None:
        super().__init__(http, policy)
        self.url = url
        self.routing_key = routing_key
        self.evidence = evidence or {}

    def state(self, target: str) -> dict[str, Any]:
        return {"incident": "none"}

    def event(self, key: str, action: str, summary: str = "") -> dict[str, Any]:
        event: dict[str, Any] = {"routing_key": self.routing_key, "event_action": action, "dedup_key": key}
        if action == "trigger":
            event["payload"] = {"summary": summary[:1024], "source": "trivas/actions", "severity": "critical",
                                "class": self.policy.name, "custom_details": self.evidence}  # fmt: skip
            event["client"] = "trivas"
        return event

    def apply(self, target: str, previous: dict[str, Any], reason: str, key: str) -> Outcome:
        return self.http.post(self.url, self.event(key, "trigger", f"[trivas] {reason} (alert {target[:8]})"), key)

    def restore(self, target: str, previous: dict[str, Any], key: str) -> Outcome:
        return self.http.post(self.url, self.event(key, "resolve"), key + ROLLBACK_SUFFIX)

    def plan(self, target: str, previous: dict[str, Any], reason: str) -> str:
        return f"page on-call via PagerDuty ({self.policy.name}): {reason}"

    def landed(self, target: str, previous: dict[str, Any], reason: str) -> bool:
        return False  # PagerDuty cannot be asked; a retry with the dedup_key is harmless


COMMERCE_EXECUTORS: dict[str, type[Executor]] = {
    PAUSE_CAMPAIGN: CampaignStatus,
    ADJUST_BID: CampaignBid,
    SURFACE_PRODUCT: ProductVisibility,
    QUEUE_REFUND_REVIEW: RefundReview,
}


class Executors:
    """The executor of each policy: commerce adapters on one platform client, escalation on
    the PagerDuty receiver of the alert routing."""

    def __init__(self, config: ActionsConfig, platform_url: str | None = None) -> None:
        self.config = config
        self.http = HttpClient(config.platform, platform_url)
        self._pager: tuple[HttpClient, str, str] | None = None

    def for_policy(self, policy: Policy, evidence: dict[str, Any] | None = None) -> Executor:
        if policy.action == ESCALATE_INCIDENT:
            http, url, key = self._pagerduty()
            return IncidentEscalation(http, policy, url, key, evidence)
        return COMMERCE_EXECUTORS[policy.action](self.http, policy)

    def _pagerduty(self) -> tuple[HttpClient, str, str]:
        """The escalation receiver's client, URL and routing key (secrets from its env/file)."""
        if self._pager is None:
            from lakehouse.alerts.config import load_alerts_config, resolve_secret
            from lakehouse.alerts.receivers import PAGERDUTY_URL

            receiver = load_alerts_config().receivers[self.config.escalation.receiver]
            key = resolve_secret(receiver.options, "routing_key")
            if key is None:
                raise LookupError(f"receiver {receiver.name} has no routing_key_env/routing_key_file")
            url = str(receiver.option("url", PAGERDUTY_URL))
            verify: Any = receiver.option("ca_file") or True
            self._pager = (HttpClient(self.config.platform, "", verify, token=False), url, key.get_secret_value())
        return self._pager

    def close(self) -> None:
        self.http.close()
        if self._pager is not None:
            self._pager[0].close()


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, ±inf) replaced by None, so it is valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value

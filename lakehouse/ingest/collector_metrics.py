"""The collector's Prometheus metrics (a registry of its own) and the middleware timing requests."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

disable_created_metrics()  # the *_created series only add noise to a scrape


@dataclass
class Metrics:
    """The collector's Prometheus metrics, in a registry of its own."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "trivas_collector_requests", "HTTP requests", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "trivas_collector_request_seconds",
            "request duration",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.events = Counter(
            "trivas_collector_events", "events by outcome", ["source", "outcome"], registry=r
        )
        self.rejections = Counter(
            "trivas_collector_rejections", "rejected events by reason", ["reason"], registry=r
        )
        self.webhooks = Counter(
            "trivas_collector_webhooks", "webhook deliveries", ["provider", "outcome"], registry=r
        )
        self.rate_limited = Counter(
            "trivas_collector_rate_limited", "requests refused with 429", ["source"], registry=r
        )
        self.produce_errors = Counter(
            "trivas_collector_produce_errors", "records Kafka did not acknowledge", registry=r
        )


def _route_label(path: str) -> str:
    if path == "/v1/events":
        return "events"
    if path.startswith("/v1/webhooks/"):
        return "webhooks"
    if path in ("/healthz", "/metrics", "/openapi.json", "/docs"):
        return path.strip("/")
    return "other"


class MetricsMiddleware:
    """Counts requests by route and status and times them (pure ASGI: cheap)."""

    def __init__(self, app: Any, metrics: Callable[[], Metrics]) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = _route_label(scope.get("path", ""))
            m = self.metrics()
            m.requests.labels(route, str(status["code"])).inc()
            m.latency.labels(route).observe(time.perf_counter() - started)



"""The HTTP collector: SDK batches and signed webhooks in, one Kafka record per event out.

``POST /v1/events`` takes ``{"events": [<envelope record>, …]}`` from a source authenticated by
its API key (``Authorization: Bearer <key>`` or ``X-API-Key``); ``source`` is set from the key.
Each event is checked against the shared rule set (:mod:`lakehouse.event_contract`, the same
rules silver applies); the answer lists every event as accepted or rejected with a reason.
Rejected events go to the dlq topic, PII-scrubbed. ``POST /v1/webhooks/{provider}`` serves
every provider module of :mod:`lakehouse.ingest.webhooks`. Limits: header bytes (431), header
and body time (408), body size (413), batch size (413), per-source token bucket (429 +
Retry-After). ``GET /healthz``, ``GET /metrics`` (Prometheus), ``GET /openapi.json``.

A 2xx means every accepted record was acknowledged by the broker (``acks=all``, idempotent
producer). Nothing PII-bearing is logged: log lines carry ids, types, reason codes and counts,
and a filter masks PII patterns in every log line as a last line of defence.

This module wires the parts together: :mod:`~lakehouse.ingest.event_intake` and
:mod:`~lakehouse.ingest.webhook_intake` (the handlers), :mod:`~lakehouse.ingest.publishing`,
:mod:`~lakehouse.ingest.dead_letters`, :mod:`~lakehouse.ingest.request_limits`,
:mod:`~lakehouse.ingest.collector_metrics`, :mod:`~lakehouse.ingest.api_models`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import StrEnum
from typing import Any

import orjson
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from lakehouse.catalog import Catalog, load_catalog
from lakehouse.config import MissingSecretError, Settings, hash_key, load_settings
from lakehouse.ingest.api_models import ERRORS, BatchResponse, EventBatch, WebhookResponse
from lakehouse.ingest.collector_metrics import Metrics, MetricsMiddleware
from lakehouse.ingest.dead_letters import DeadLetters
from lakehouse.ingest.event_intake import receive_batch
from lakehouse.ingest.http_errors import HttpError, error_response
from lakehouse.ingest.keys import ApiKeyStore, load_key_store
from lakehouse.ingest.publishing import Publisher
from lakehouse.ingest.ratelimit import RateLimiter, retry_after_header
from lakehouse.ingest.scrub import RecordScrubber
from lakehouse.ingest.settings import CollectorSettings, load_collector_settings, read_secrets
from lakehouse.ingest.validation import EventValidator
from lakehouse.ingest.webhook_deliveries import WebhookDeliveries
from lakehouse.ingest.webhook_intake import receive_webhook
from lakehouse.ingest.webhooks import providers
from lakehouse.privacy import VAULT_KEY_VARIABLE, PiiVault, load_vault_key

log = logging.getLogger("trivas.collector")
DEDUP_MARGIN_HOURS = 24.0
# The path parameter of /v1/webhooks/{provider}: one value per provider module.
Provider = StrEnum("Provider", {name: name for name in sorted(providers())})  # type: ignore[misc]


class Collector:
    """Everything a request needs: contracts, keys, limits, the publisher, metrics."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        config: CollectorSettings,
        environ: dict[str, str] | None = None,
    ) -> None:
        environ = dict(os.environ if environ is None else environ)
        self.settings, self.catalog, self.config = settings, catalog, config
        self.validator = EventValidator(catalog)
        master_key = hash_key(settings)
        scrubber = RecordScrubber(catalog, master_key, settings.privacy.hash_key_id)
        self.dead_letters = DeadLetters(catalog, scrubber)
        self.keys: ApiKeyStore = load_key_store(config.path(config.api_keys_file), environ)
        self.limiter = RateLimiter(config.limits.events_per_s, config.limits.burst)
        self.providers = {
            name: provider
            for name, provider in providers().items()
            if name in config.webhooks.providers
        }
        self.secrets = {
            name: read_secrets(environ.get(conf.secrets_env), config.path(conf.secrets_file))
            for name, conf in config.webhooks.providers.items()
        }
        for name, conf in config.webhooks.providers.items():
            if not self.secrets[name] and not settings.secrets.development_fallbacks:
                raise MissingSecretError(f"{conf.secrets_env} (or the file {conf.secrets_file})", settings.env)
        self.retention_s = {
            name: 3600.0
            * (
                conf.dedup_retention_hours
                or self.providers[name].retry_window.total_seconds() / 3600 + DEDUP_MARGIN_HOURS
            )
            for name, conf in config.webhooks.providers.items()
            if name in self.providers
        }
        self.deliveries = WebhookDeliveries(
            config.path(config.webhooks.dedup_store),
            lease_s=config.producer.ack_timeout_seconds + 30,
        )
        self.metrics = Metrics()
        self.versions = {t: e.version for t, e in catalog.event_types.items()}
        vault_key = load_vault_key(settings.privacy.vault_key, config.path(config.vault.key_file))
        if vault_key is None and not settings.secrets.development_fallbacks:
            raise MissingSecretError(f"{VAULT_KEY_VARIABLE} (or the file {config.vault.key_file})", settings.env)
        vault = PiiVault(config.path(config.vault.path), vault_key) if vault_key else None
        self.publisher = Publisher(
            settings, catalog, config, master_key, vault, self.metrics.produce_errors.inc
        )

    def start(self) -> None:
        """Connect the producer (at application start-up)."""
        self.publisher.start()

    def stop(self) -> None:
        """Flush and close (at shutdown)."""
        self.publisher.stop()
        self.deliveries.close()

    def kafka_reachable(self) -> bool:
        """True if a bootstrap server accepts connections."""
        from lakehouse.runtime.processes import port_open

        for server in self.settings.kafka_bootstrap().split(","):
            host, _, port = server.strip().rpartition(":")
            if port.isdigit() and port_open(host or "localhost", int(port)):
                return True
        return False

    def take_tokens(self, source: str, n: int) -> None:
        """Charge ``n`` events to ``source``'s bucket, or refuse with 429 + Retry-After."""
        wait = self.limiter.take(source, n)
        if wait > 0:
            self.metrics.rate_limited.labels(source).inc()
            raise HttpError(
                429,
                "rate_limited",
                f"source {source} is over {self.config.limits.events_per_s:g} events/s",
                {"Retry-After": retry_after_header(wait)},
            )

    def authenticate(self, authorization: str | None, api_key: str | None) -> str:
        """The source of the presented API key, or 401."""
        presented = api_key
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                presented = token.strip()
        source = self.keys.source_for(presented)
        if source is None:
            reason = "missing_api_key" if not presented else "invalid_api_key"
            raise HttpError(401, reason, "a valid API key is required", {"WWW-Authenticate": "Bearer"})
        return source

    def count_batch(
        self, origin: str, accepted: int, dead_letters: list[dict[str, Any]], reasons: dict[str, int]
    ) -> None:
        """Metrics and log lines of one answered batch (ids and reason codes only)."""
        m = self.metrics
        if accepted:
            m.events.labels(origin, "accepted").inc(accepted)
        if dead_letters:
            m.events.labels(origin, "rejected").inc(len(dead_letters))
            for reason, count in reasons.items():
                m.rejections.labels(reason).inc(count)
            for entry in dead_letters:
                log.info(
                    "event rejected",
                    extra={"fields": {k: entry[k] for k in ("event_id", "event_type", "reason", "detail", "source")}},
                )
        log.info(
            "batch",
            extra={"fields": {"source": origin, "accepted": accepted, "rejected": len(dead_letters), "reasons": reasons}},
        )


def create_app(
    settings: Settings | None = None,
    catalog: Catalog | None = None,
    config: CollectorSettings | None = None,
    environ: dict[str, str] | None = None,
) -> FastAPI:
    """The collector application (the producer connects at start-up)."""
    collector = Collector(
        settings or load_settings(environ=environ),
        catalog or load_catalog(),
        config or load_collector_settings(environ),
        environ,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(collector.start)
        log.info("collector started", extra={"fields": {"bootstrap": collector.settings.kafka_bootstrap()}})
        try:
            yield
        finally:
            await asyncio.to_thread(collector.stop)
            log.info("collector stopped")

    app = FastAPI(
        title="trivas collector",
        version="1",
        description=__doc__,
        lifespan=lifespan,
    )
    app.state.collector = collector
    app.add_middleware(MetricsMiddleware, metrics=lambda: collector.metrics)

    event_types = sorted(collector.catalog.event_types)
    batch_schema = EventBatch.model_json_schema(ref_template="#/components/schemas/{model}")
    record_schema = batch_schema.pop("$defs")["EventRecord"]
    record_schema["properties"]["event_type"]["enum"] = event_types

    @app.post(
        "/v1/events",
        response_model=BatchResponse,
        responses=ERRORS,
        summary="Send a batch of events (SDK)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EventBatch"}}},
            },
            "security": [{"bearer": []}, {"apiKey": []}],
        },
    )
    async def post_events(
        request: Request,
        authorization: str | None = Header(None),
        x_api_key: str | None = Header(None),
    ) -> Response:
        try:
            source = collector.authenticate(authorization, x_api_key)
            result = await receive_batch(collector, request, source)
        except HttpError as exc:
            return error_response(exc)
        return Response(orjson.dumps(result), media_type="application/json")

    @app.post(
        "/v1/webhooks/{provider}",
        response_model=WebhookResponse,
        responses=ERRORS,
        summary="Receive a provider's webhook (" + ", ".join(sorted(collector.providers)) + ")",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    )
    async def post_webhook(
        provider: Provider,  # type: ignore[valid-type]
        request: Request,
        x_shopify_hmac_sha256: str | None = Header(None),
        x_shopify_topic: str | None = Header(None),
        x_shopify_event_id: str | None = Header(None),
        x_shopify_webhook_id: str | None = Header(None),
        stripe_signature: str | None = Header(None),
    ) -> Response:
        try:
            if provider.value not in collector.providers:
                raise HttpError(404, "unknown_provider", "this provider is not configured")
            result = await receive_webhook(collector, provider.value, request)
        except HttpError as exc:
            return error_response(exc)
        return Response(orjson.dumps(result), media_type="application/json")

    @app.get("/healthz", summary="Liveness and Kafka connectivity")
    async def healthz() -> JSONResponse:
        producer = collector.publisher.producer
        ok = producer is not None and await asyncio.to_thread(collector.kafka_reachable)
        return JSONResponse(
            {"status": "ok" if ok else "degraded", "kafka": "connected" if ok else "unreachable"},
            status_code=200 if ok else 503,
        )

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(collector.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {})["EventBatch"] = batch_schema
        components["schemas"]["EventRecord"] = record_schema
        components["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app



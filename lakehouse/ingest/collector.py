"""The HTTP collector: SDK batches and signed webhooks in, one Kafka record per event out.

``POST /v1/events`` takes ``{"events": [<envelope record>, …]}`` from a source authenticated by
its API key (``Authorization: Bearer <key>`` or ``X-API-Key``); ``source`` is set from the key.
Each event is validated at the edge (catalog JSON Schema, forbidden PII refused); the answer
lists every event as accepted or rejected with a reason. Rejected events go to the dlq topic,
PII-scrubbed. ``POST /v1/webhooks/{provider}`` verifies Shopify/Stripe signatures, maps the
provider payload to a catalog event with a deterministic event id, and answers 2xx to a
redelivery. Limits: body size (413), batch size (413), per-source token bucket (429 +
Retry-After). ``GET /healthz``, ``GET /metrics`` (Prometheus), ``GET /openapi.json``.

A 2xx means every accepted record was acknowledged by the broker (``acks=all``, idempotent
producer). Nothing PII-bearing is logged: log lines carry ids, types, reason codes and counts,
and a filter masks PII patterns in every log line as a last line of defence.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import orjson
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from pydantic import BaseModel, Field

from lakehouse.catalog import Catalog, load_catalog
from lakehouse.config import Settings, hash_key, load_settings
from lakehouse.ingest.keys import ApiKeyStore, load_key_store
from lakehouse.ingest.producer import EventProducer
from lakehouse.ingest.ratelimit import RateLimiter, retry_after_header
from lakehouse.ingest.scrub import PiiLogFilter, RecordScrubber
from lakehouse.ingest.settings import CollectorSettings, load_collector_settings, read_secrets
from lakehouse.ingest.validation import EventValidator, Rejection
from lakehouse.ingest.webhooks import (
    RecentIds,
    SignatureError,
    map_shopify,
    map_stripe,
    verify_shopify,
    verify_stripe,
    webhook_event_id,
)
from lakehouse.privacy import PiiVault, load_vault_key, pseudonymise

log = logging.getLogger("trivas.collector")
disable_created_metrics()  # the *_created series only add noise to a scrape


# --- OpenAPI models (documentation and schemathesis; the handlers parse with orjson) -----------


class EventRecord(BaseModel):
    """One event in the envelope of the catalog (``conf/events/_envelope.yaml``)."""

    event_id: str = Field(description="UUID; the idempotency key, reused by retries")
    event_type: str = Field(description="a catalog event type")
    schema_version: int | None = Field(None, description="defaults to the catalog version")
    event_time: str = Field(description="ISO-8601 with zone")
    sent_at: str | None = None
    source: str | None = Field(None, description="ignored: set from the API key")
    payload: dict[str, Any]


class EventBatch(BaseModel):
    """A batch of events from one source."""

    events: list[EventRecord]


class EventResult(BaseModel):
    index: int
    event_id: str | None
    status: Literal["accepted", "rejected"]
    reason: str | None = None
    detail: str | None = None


class BatchResponse(BaseModel):
    accepted: int
    rejected: int
    results: list[EventResult]


class ErrorResponse(BaseModel):
    error: str = Field(description="reason code")
    detail: str


class WebhookResponse(BaseModel):
    status: Literal["accepted", "duplicate", "ignored", "rejected"]
    event_id: str | None = None
    reason: str | None = None
    detail: str | None = None


class Provider(StrEnum):
    shopify = "shopify"
    stripe = "stripe"


ERRORS = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {
        400: "malformed request (missing signature header, invalid JSON)",
        401: "missing/unknown API key, or invalid/stale webhook signature",
        413: "body larger than max_body_bytes, or more events than max_batch_events",
        422: "the body is JSON but not a batch",
        429: "the source's token bucket is empty; retry after Retry-After seconds",
        503: "Kafka did not acknowledge in time; retry (event ids make it safe)",
    }.items()
}


# --- state ------------------------------------------------------------------------------------


class HttpError(Exception):
    """An error answer with a reason code."""

    def __init__(self, status: int, reason: str, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.reason, self.detail, self.headers = status, reason, detail, headers or {}


def error_response(exc: HttpError) -> JSONResponse:
    return JSONResponse(
        {"error": exc.reason, "detail": exc.detail}, status_code=exc.status, headers=exc.headers
    )


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


class Collector:
    """Everything a request needs: contracts, keys, limits, the producer, metrics."""

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
        self.master_key = hash_key(settings)
        self.key_id = settings.privacy.hash_key_id
        self.scrubber = RecordScrubber(catalog, self.master_key, self.key_id)
        self.keys: ApiKeyStore = load_key_store(config.path(config.api_keys_file), environ)
        limits = config.limits
        self.limiter = RateLimiter(limits.events_per_s, limits.burst)
        hooks = config.webhooks
        self.secrets = {
            "shopify": read_secrets(
                environ.get(hooks.shopify.secrets_env), config.path(hooks.shopify.secrets_file)
            ),
            "stripe": read_secrets(
                environ.get(hooks.stripe.secrets_env), config.path(hooks.stripe.secrets_file)
            ),
        }
        self.recent = RecentIds(hooks.recent_ids)
        self.metrics = Metrics()
        self.versions = {t: e.version for t, e in catalog.event_types.items()}
        self.tokenized = {
            t: tuple(f.name for f in e.fields if f.pii == "tokenize")
            for t, e in catalog.event_types.items()
        }
        vault_key = load_vault_key(environ, config.path(config.vault.key_file))
        self.vault = PiiVault(config.path(config.vault.path), vault_key) if vault_key else None
        self._vaulted: RecentIds = RecentIds(200_000)
        self.producer: EventProducer | None = None

    def start(self) -> None:
        """Connect the producer (at application start-up)."""
        self.producer = EventProducer(
            self.settings, self.catalog, self.config.producer, client_id="trivas-collector"
        )

    def stop(self) -> None:
        """Flush and close (at shutdown)."""
        if self.producer is not None:
            self.producer.close()
            self.producer = None
        if self.vault is not None:
            self.vault.close()

    def kafka_reachable(self) -> bool:
        """True if a bootstrap server accepts connections."""
        from lakehouse.runtime.processes import port_open

        for server in self.settings.kafka_bootstrap().split(","):
            host, _, port = server.strip().rpartition(":")
            if port.isdigit() and port_open(host or "localhost", int(port)):
                return True
        return False

    # --- shared steps -------------------------------------------------------------------------

    async def read_body(self, request: Request) -> bytes:
        """The raw body, refused with 413 as soon as it exceeds the limit."""
        limit = self.config.limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                if int(declared) > limit:
                    raise HttpError(413, "body_too_large", f"body exceeds {limit} bytes")
            except ValueError:
                raise HttpError(400, "malformed_request", "invalid Content-Length") from None
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HttpError(413, "body_too_large", f"body exceeds {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def take_tokens(self, source: str, n: int) -> None:
        wait = self.limiter.take(source, n)
        if wait > 0:
            self.metrics.rate_limited.labels(source).inc()
            raise HttpError(
                429,
                "rate_limited",
                f"source {source} is over {self.config.limits.events_per_s:g} events/s",
                {"Retry-After": retry_after_header(wait)},
            )

    def dead_letter(self, record: Any, rejection: Rejection, source: str) -> dict[str, Any]:
        """A scrubbed dead-letter entry (the columns of ``silver.quarantine`` that apply)."""
        event_type = record.get("event_type") if isinstance(record, dict) else None
        event_id = record.get("event_id") if isinstance(record, dict) else None
        event = self.validator.event(event_type)
        return {
            "quarantine_id": str(uuid.uuid4()),
            "reason": rejection.reason,
            "detail": rejection.detail,
            "event_type": event_type if event is not None else None,
            "event_id": event_id if isinstance(event_id, str) else None,
            "contract_version": event.version if event is not None else None,
            "source": source,
            "raw_value": orjson.dumps(self.scrubber.scrub_record(record)).decode(),
            "stage": "collector",
            "quarantined_at": datetime.now(UTC).isoformat(),
        }

    def vault_tokens(self, records: list[dict[str, Any]]) -> None:
        """Store the clear value behind every new token of the accepted records."""
        if self.vault is None:
            return
        entries = []
        for record in records:
            payload = record["payload"]
            for name in self.tokenized[record["event_type"]]:
                value = payload.get(name)
                if value is None:
                    continue
                value = str(value)
                token = pseudonymise(value, "tokenize", self.master_key, self.key_id)
                if token is not None and token not in self._vaulted:
                    entries.append((token, value, self.key_id))
                    self._vaulted.add(token)
        if entries:
            self.vault.store(entries)

    async def publish(
        self, records: list[dict[str, Any]], dead_letters: list[dict[str, Any]]
    ) -> None:
        """Produce and wait for the broker's acknowledgement of everything (else 503)."""
        if self.producer is None:
            raise HttpError(503, "kafka_unavailable", "the collector is not connected to Kafka")
        waiter = self.producer.send_batch(records, dead_letters)
        vaulting = asyncio.to_thread(self.vault_tokens, records) if self.vault and records else None
        try:
            errors = await asyncio.wait_for(
                waiter.future, timeout=self.config.producer.ack_timeout_seconds
            )
        except TimeoutError:
            errors = [(-1, TimeoutError("no acknowledgement in time"))]
        if vaulting is not None:
            await vaulting
        if errors:
            self.metrics.produce_errors.inc(len(errors))
            log.error(
                "produce failed",
                extra={"fields": {"failed": len(errors), "error": type(errors[0][1]).__name__}},
            )
            raise HttpError(503, "kafka_unavailable", "Kafka did not acknowledge; retry", {"Retry-After": "1"})

    # --- handlers -----------------------------------------------------------------------------

    def authenticate(self, authorization: str | None, api_key: str | None) -> str:
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

    async def events(self, request: Request, source: str) -> dict[str, Any]:
        body = await self.read_body(request)
        try:
            batch = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise HttpError(400, "malformed_json", "the body is not valid JSON") from None
        events = batch.get("events") if isinstance(batch, dict) else None
        if not isinstance(events, list):
            raise HttpError(422, "not_a_batch", 'the body must be {"events": [...]}')
        limit = self.config.limits.max_batch_events
        if len(events) > limit:
            raise HttpError(413, "batch_too_large", f"at most {limit} events per request")
        origin = f"sdk:{source}"
        self.take_tokens(origin, max(1, len(events)))
        received_at = datetime.now(UTC).isoformat()
        results: list[dict[str, Any]] = []
        accepted: list[dict[str, Any]] = []
        dead_letters: list[dict[str, Any]] = []
        reasons: dict[str, int] = {}
        for index, record in enumerate(events):
            if isinstance(record, dict):
                record["source"] = origin
                if record.get("sent_at") is None:
                    record["sent_at"] = received_at
                if "schema_version" not in record and record.get("event_type") in self.versions:
                    record["schema_version"] = self.versions[record["event_type"]]
            rejection = self.validator.check(record)
            event_id = record.get("event_id") if isinstance(record, dict) else None
            event_id = event_id if isinstance(event_id, str) else None
            if rejection is None:
                accepted.append(record)
                results.append({"index": index, "event_id": event_id, "status": "accepted"})
                continue
            dead_letters.append(self.dead_letter(record, rejection, origin))
            reasons[rejection.reason] = reasons.get(rejection.reason, 0) + 1
            results.append(
                {
                    "index": index,
                    "event_id": event_id,
                    "status": "rejected",
                    "reason": rejection.reason,
                    "detail": rejection.detail,
                }
            )
        await self.publish(accepted, dead_letters)
        m = self.metrics
        if accepted:
            m.events.labels(origin, "accepted").inc(len(accepted))
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
            extra={"fields": {"source": origin, "accepted": len(accepted), "rejected": len(dead_letters), "reasons": reasons}},
        )
        return {"accepted": len(accepted), "rejected": len(dead_letters), "results": results}

    async def webhook(self, provider: str, request: Request) -> dict[str, Any]:
        body = await self.read_body(request)
        headers = request.headers
        try:
            if provider == "shopify":
                verify_shopify(body, headers.get("x-shopify-hmac-sha256"), self.secrets["shopify"])
                dedup_key = headers.get("x-shopify-event-id") or headers.get("x-shopify-webhook-id")
                if not dedup_key:
                    raise SignatureError(
                        400, "missing_dedup_key", "X-Shopify-Event-Id or X-Shopify-Webhook-Id is required"
                    )
            else:
                verify_stripe(
                    body,
                    headers.get("stripe-signature"),
                    self.secrets["stripe"],
                    self.config.webhooks.stripe.tolerance_seconds,
                )
                dedup_key = None
        except SignatureError as exc:
            self.metrics.webhooks.labels(provider, exc.reason).inc()
            log.warning("webhook refused", extra={"fields": {"provider": provider, "reason": exc.reason}})
            raise HttpError(exc.status, exc.reason, exc.detail) from None
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise HttpError(400, "malformed_json", "the body is not valid JSON") from None
        if provider == "stripe":
            stripe_id = document.get("id") if isinstance(document, dict) else None
            if not isinstance(stripe_id, str) or not stripe_id:
                raise HttpError(400, "missing_dedup_key", "a Stripe event needs its id")
            dedup_key = stripe_id
        assert dedup_key is not None
        event_id = webhook_event_id(provider, dedup_key)
        origin = f"webhook:{provider}"
        if event_id in self.recent:
            self.metrics.webhooks.labels(provider, "duplicate").inc()
            log.info("webhook duplicate", extra={"fields": {"provider": provider, "event_id": event_id}})
            return {"status": "duplicate", "event_id": event_id}
        mapped = (
            map_shopify(headers.get("x-shopify-topic"), document)
            if provider == "shopify"
            else map_stripe(document)
        )
        if mapped is None:
            # Providers retry anything but 2xx: acknowledge what trivas does not consume.
            self.metrics.webhooks.labels(provider, "ignored").inc()
            return {"status": "ignored", "event_id": None}
        self.take_tokens(origin, 1)
        record = {
            "event_id": event_id,
            "event_type": mapped.event_type,
            "schema_version": self.versions[mapped.event_type],
            "event_time": mapped.event_time,
            "source": origin,
            "sent_at": datetime.now(UTC).isoformat(),
            "payload": mapped.payload,
        }
        rejection = self.validator.check(record)
        if rejection is None:
            await self.publish([record], [])
            self.recent.add(event_id)
            self.metrics.webhooks.labels(provider, "accepted").inc()
            self.metrics.events.labels(origin, "accepted").inc()
            log.info("webhook accepted", extra={"fields": {"provider": provider, "event_id": event_id, "event_type": mapped.event_type}})
            return {"status": "accepted", "event_id": event_id}
        # A contract violation will not heal by redelivery: dead-letter it (replayable after a
        # fix) and answer 2xx so the provider does not retry it for days.
        await self.publish([], [self.dead_letter(record, rejection, origin)])
        self.recent.add(event_id)
        self.metrics.webhooks.labels(provider, "rejected").inc()
        self.metrics.events.labels(origin, "rejected").inc()
        self.metrics.rejections.labels(rejection.reason).inc()
        log.info(
            "webhook rejected",
            extra={"fields": {"provider": provider, "event_id": event_id, "reason": rejection.reason, "detail": rejection.detail}},
        )
        return {"status": "rejected", "event_id": event_id, "reason": rejection.reason, "detail": rejection.detail}


# --- the ASGI application ---------------------------------------------------------------------


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
        log.info("collector started", extra={"fields": {"bootstrap": settings_bootstrap(collector)}})
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
            result = await collector.events(request, source)
        except HttpError as exc:
            return error_response(exc)
        return Response(orjson.dumps(result), media_type="application/json")

    @app.post(
        "/v1/webhooks/{provider}",
        response_model=WebhookResponse,
        responses=ERRORS,
        summary="Receive a Shopify or Stripe webhook",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    )
    async def post_webhook(
        provider: Provider,
        request: Request,
        x_shopify_hmac_sha256: str | None = Header(None),
        x_shopify_topic: str | None = Header(None),
        x_shopify_event_id: str | None = Header(None),
        x_shopify_webhook_id: str | None = Header(None),
        stripe_signature: str | None = Header(None),
    ) -> Response:
        try:
            result = await collector.webhook(provider.value, request)
        except HttpError as exc:
            return error_response(exc)
        return Response(orjson.dumps(result), media_type="application/json")

    @app.get("/healthz", summary="Liveness and Kafka connectivity")
    async def healthz() -> JSONResponse:
        producer = collector.producer
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


def settings_bootstrap(collector: Collector) -> str:
    return collector.settings.kafka_bootstrap()


# --- logging and serving ----------------------------------------------------------------------


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(log_file: Path | None, level: int = logging.INFO) -> None:
    """JSON lines to stderr (and ``log_file``), every line passed through the PII filter."""
    formatter = JsonLineFormatter()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(PiiLogFilter())
        handler.addFilter(_FieldsFilter())
        root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "kafka"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    logging.getLogger("kafka").setLevel(logging.WARNING)


class _FieldsFilter(logging.Filter):
    """Masks PII patterns inside the structured ``fields`` of a record too."""

    def filter(self, record: logging.LogRecord) -> bool:
        from lakehouse.privacy import mask_pii_patterns

        fields = getattr(record, "fields", None)
        if fields:
            record.fields = {
                k: mask_pii_patterns(v) if isinstance(v, str) else v for k, v in fields.items()
            }
        return True


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (several workers): everything from the environment."""
    settings = load_settings()
    configure_logging(settings.path(settings.paths.logs) / "collector.log")
    return create_app(settings=settings)


def serve(
    settings: Settings,
    config: CollectorSettings,
    host: str | None = None,
    port: int | None = None,
    workers: int = 1,
) -> None:
    """Run the collector with uvicorn until interrupted (``trivas collect``)."""
    import uvicorn

    log_file = settings.path(settings.paths.logs) / "collector.log"
    configure_logging(log_file)
    options: dict[str, Any] = {
        "host": host or config.host,
        "port": port or config.port,
        # Access logs would record client IP addresses (PII): the app logs its own lines.
        "access_log": False,
        "log_config": None,
        "timeout_graceful_shutdown": 10,
    }
    if workers > 1:
        uvicorn.run("lakehouse.ingest.collector:create_app_from_env", factory=True, workers=workers, **options)
    else:
        uvicorn.run(create_app(settings=settings, config=config), **options)

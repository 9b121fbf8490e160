"""The collector's HTTP API as pydantic models: the OpenAPI documentation (and what schemathesis
fuzzes). The handlers parse bodies with the strict JSON parser of :mod:`lakehouse.event_contract`,
not with these models."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


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
    """The verdict on one event of a batch (reason: a ``lakehouse.event_contract.Reason``)."""

    index: int
    event_id: str | None
    status: Literal["accepted", "rejected"]
    reason: str | None = None
    field: str | None = None
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


ERRORS = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {
        400: "malformed request (missing signature header, invalid or too deeply nested JSON)",
        408: "the headers or the body did not arrive within body_read_timeout_seconds",
        401: "missing/unknown API key, or invalid/stale webhook signature",
        413: "body larger than max_body_bytes, or more events than max_batch_events",
        431: "request headers larger than max_header_bytes",
        422: "the body is JSON but not a batch",
        429: "the source's token bucket is empty; retry after Retry-After seconds",
        503: "Kafka did not acknowledge in time; retry (event ids make it safe)",
    }.items()
}



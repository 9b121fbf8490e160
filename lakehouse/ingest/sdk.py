"""The trivas tracking SDK: ``TrivasClient(endpoint, api_key).track(event_type, payload)``.

Delivery contract:

- ``track`` assigns the ``event_id`` (uuid4) at once and returns it; every retry of the event
  reuses it, so a retry after a lost answer is deduplicated downstream (silver, by event_id):
  an event is counted once however often it is sent.
- Events are sent in batches (``batch_size``, or whatever is buffered after
  ``flush_interval_s``) by one background thread.
- Network errors, 429 and 5xx are retried with exponential backoff and full jitter (tenacity),
  honouring ``Retry-After``; the batch keeps its place and order. 413 splits the batch in two.
  Other 4xx (bad key, malformed) cannot succeed by retrying: the batch is counted ``failed``.
- Rejections the collector reports per event (contract violations) are counted ``rejected``
  and passed to ``on_rejected(event, reason, detail)``; they are not retried.
- **Buffer policy**: at most ``max_buffer`` events wait in memory (plus one batch in flight).
  When the buffer is full, ``on_full`` decides: ``"drop_oldest"`` (default: the oldest
  buffered event is discarded and counted in ``stats.dropped`` — an analytics client must never
  block or crash the app it instruments), ``"block"`` (``track`` waits up to
  ``block_timeout_s`` for room, then raises :class:`BufferFullError`), or ``"raise"``.
- ``close()`` (also run at interpreter exit) flushes for at most ``close_timeout_s`` while
  retrying; what is still undelivered then is counted in ``stats.undelivered`` and logged.
- **Bad events are refused at** ``track``: an event that is not plain JSON (a ``Decimal``, a
  ``set``, an object) or holds NaN/Infinity raises :class:`InvalidEventError` (a ``ValueError``)
  and is counted in ``stats.invalid``; nothing about it ever reaches the sender. The event is
  serialised there and then, so mutating the payload afterwards changes nothing.
- **The sender thread survives anything**: an unexpected error while delivering a batch
  (an unreadable answer, a bug) counts the batch ``failed`` under a reason
  (``stats.failure_reasons``), is logged, and the thread goes on with the next batch.
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import orjson
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_any,
    stop_never,
    wait_exponential_jitter,
)

log = logging.getLogger("trivas.sdk")

OnFull = Literal["drop_oldest", "block", "raise"]


class BufferFullError(RuntimeError):
    """``track`` could not buffer the event (``on_full="block"`` timed out, or ``"raise"``)."""


class InvalidEventError(ValueError):
    """``track`` was given an event that cannot be sent as JSON (``reason`` says why)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _TooLarge(Exception):
    pass


class _Fatal(Exception):
    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class ClientStats:
    """What happened to the tracked events so far."""

    tracked: int = 0
    invalid: int = 0
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    dropped: int = 0
    undelivered: int = 0
    retries: int = 0
    batches: int = 0
    failure_reasons: dict[str, int] = field(default_factory=dict)

    def fail(self, count: int, reason: str) -> None:
        """Count ``count`` events as failed for ``reason``."""
        self.failed += count
        self.failure_reasons[reason] = self.failure_reasons.get(reason, 0) + count


class TrivasClient:
    """Buffers, batches and delivers events to a trivas collector."""

    def __init__(
        self,
        endpoint: str,
        api_key: str,
        *,
        batch_size: int = 100,
        flush_interval_s: float = 0.5,
        max_buffer: int = 10_000,
        on_full: OnFull = "drop_oldest",
        block_timeout_s: float = 5.0,
        timeout_s: float = 10.0,
        initial_backoff_s: float = 0.1,
        max_backoff_s: float = 10.0,
        close_timeout_s: float = 30.0,
        on_rejected: Callable[[dict[str, Any], str, str], None] | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        if on_full not in ("drop_oldest", "block", "raise"):
            raise ValueError(f"on_full must be drop_oldest, block or raise, not {on_full!r}")
        self.url = endpoint.rstrip("/") + "/v1/events"
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_buffer = max_buffer
        self.on_full = on_full
        self.block_timeout_s = block_timeout_s
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.close_timeout_s = close_timeout_s
        self.on_rejected = on_rejected
        self.stats = ClientStats()
        self._http = http_client or httpx.Client(timeout=timeout_s)
        self._headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        # Each buffered event with its JSON (made at track time; sent_at is added at send time).
        self._buffer: deque[tuple[dict[str, Any], bytes]] = deque()
        self._in_flight = 0
        self._cond = threading.Condition()
        self._flush_requested = False
        self._closing = False
        self._deadline: float | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trivas-sdk", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # --- public API ---------------------------------------------------------------------------

    def track(
        self,
        event_type: str,
        payload: Mapping[str, Any],
        event_time: datetime | str | None = None,
        event_id: str | None = None,
    ) -> str:
        """Buffer one event for delivery; returns its event id (kept across retries)."""
        if isinstance(event_time, datetime):
            if event_time.tzinfo is None:
                raise ValueError("event_time must be timezone-aware")
            event_time = event_time.isoformat()
        event = {
            "event_id": event_id or str(uuid.uuid4()),
            "event_type": event_type,
            "event_time": event_time or datetime.now(UTC).isoformat(),
            "payload": dict(payload),
        }
        encoded = self._encode(event)
        with self._cond:
            if self._closing:
                raise RuntimeError("the client is closed")
            if len(self._buffer) >= self.max_buffer:
                self._make_room()
            self._buffer.append((json.loads(encoded), encoded))
            self.stats.tracked += 1
            if len(self._buffer) >= self.batch_size:
                self._cond.notify_all()
        return event["event_id"]

    def _encode(self, event: dict[str, Any]) -> bytes:
        """The event as JSON, or :class:`InvalidEventError` (counted in ``stats.invalid``)."""
        try:
            # The standard encoder refuses NaN/Infinity (allow_nan=False); orjson would
            # silently write them as null.
            return json.dumps(event, allow_nan=False, separators=(",", ":")).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            with self._cond:
                self.stats.invalid += 1
            if isinstance(exc, TypeError):
                reason = "not_json"
            elif isinstance(exc, RecursionError):
                reason = "too_deeply_nested"
            else:
                reason = "non_finite_number"
            raise InvalidEventError(reason, f"{event['event_type']} event: {exc}") from None

    def flush(self, timeout_s: float | None = None) -> bool:
        """Send everything buffered now; True if the buffer drained within ``timeout_s``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            self._flush_requested = True
            self._cond.notify_all()
            while self._buffer or self._in_flight:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining if remaining is not None else 0.5)
            return True

    def close(self, timeout_s: float | None = None) -> None:
        """Flush (retrying for at most ``timeout_s``, default ``close_timeout_s``) and stop."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._deadline = time.monotonic() + (
                self.close_timeout_s if timeout_s is None else timeout_s
            )
            self._cond.notify_all()
        self._thread.join()
        self._http.close()
        atexit.unregister(self.close)

    def __enter__(self) -> TrivasClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def buffered(self) -> int:
        """Events waiting (not counting the batch in flight)."""
        return len(self._buffer)

    # --- internals ----------------------------------------------------------------------------

    def _make_room(self) -> None:
        """Called with the lock held and the buffer full: apply the ``on_full`` policy."""
        if self.on_full == "drop_oldest":
            self._buffer.popleft()
            self.stats.dropped += 1
            if self.stats.dropped in (1, 10, 100) or self.stats.dropped % 1000 == 0:
                log.warning("trivas buffer full: dropped %d oldest events so far", self.stats.dropped)
            return
        if self.on_full == "block":
            deadline = time.monotonic() + self.block_timeout_s
            while len(self._buffer) >= self.max_buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closing:
                    raise BufferFullError(f"buffer full ({self.max_buffer} events)")
                self._cond.wait(remaining)
            return
        raise BufferFullError(f"buffer full ({self.max_buffer} events)")

    def _next_batch(self) -> list[tuple[dict[str, Any], bytes]] | None:
        """Wait for a full batch, the flush interval, a flush or close; None to stop."""
        with self._cond:
            waited_since = time.monotonic()
            while True:
                if len(self._buffer) >= self.batch_size or (
                    self._buffer and (self._flush_requested or self._closing)
                ):
                    break
                if self._buffer and time.monotonic() - waited_since >= self.flush_interval_s:
                    break
                if not self._buffer:
                    self._flush_requested = False
                    if self._closing:
                        return None
                self._cond.wait(self.flush_interval_s)
            batch = [self._buffer.popleft() for _ in range(min(self.batch_size, len(self._buffer)))]
            self._in_flight = len(batch)
            self._cond.notify_all()  # room for blocked producers
            return batch

    def _run(self) -> None:
        try:
            while (batch := self._next_batch()) is not None:
                try:
                    self._deliver(batch)
                except Exception as exc:  # noqa: BLE001 - the sender must outlive any batch
                    self.stats.fail(len(batch), f"sender_error:{type(exc).__name__}")
                    log.exception("trivas could not deliver a batch of %d events", len(batch))
                with self._cond:
                    self._in_flight = 0
                    self._cond.notify_all()
        finally:
            with self._cond:
                left = len(self._buffer)
                if left:
                    self.stats.undelivered += left
                    self._buffer.clear()
                    log.error("trivas client closed with %d undelivered events", left)
                self._stopped.set()
                self._cond.notify_all()

    def _deliver(self, batch: list[tuple[dict[str, Any], bytes]]) -> None:
        """Deliver one batch, retrying until delivered or the close deadline passes."""
        stamp = b'{"sent_at":"' + datetime.now(UTC).isoformat().encode() + b'",'
        body = b'{"events":[' + b",".join(stamp + encoded[1:] for _, encoded in batch) + b"]}"
        try:
            for attempt in self._retrying():
                with attempt:
                    self._post(batch, body)
        except _TooLarge:
            if len(batch) == 1:
                self.stats.fail(1, "too_large")
                log.error("trivas event %s too large for the collector", batch[0][0]["event_id"])
                return
            middle = len(batch) // 2
            self._deliver(batch[:middle])
            self._deliver(batch[middle:])
        except _Fatal as exc:
            self.stats.fail(len(batch), exc.reason)
            log.error("trivas batch of %d events refused: %s", len(batch), exc)
        except _Retryable as exc:  # the close deadline passed
            self.stats.undelivered += len(batch)
            log.error("trivas gave up on %d events at close: %s", len(batch), exc)

    def _retrying(self) -> Retrying:
        backoff = wait_exponential_jitter(
            initial=self.initial_backoff_s, max=self.max_backoff_s, jitter=self.initial_backoff_s
        )

        def wait(state: RetryCallState) -> float:
            delay = backoff(state)
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, _Retryable) and exc.retry_after:
                delay = max(delay, exc.retry_after)
            if self._deadline is not None:
                delay = min(delay, max(0.0, self._deadline - time.monotonic()))
            return delay

        def past_deadline(_: RetryCallState) -> bool:
            return self._deadline is not None and time.monotonic() >= self._deadline

        def count_retry(_: RetryCallState) -> None:
            self.stats.retries += 1

        return Retrying(
            retry=retry_if_exception_type(_Retryable),
            wait=wait,
            stop=stop_any(stop_never, past_deadline),
            before_sleep=count_retry,
            reraise=True,
        )

    def _post(self, batch: list[tuple[dict[str, Any], bytes]], body: bytes) -> None:
        try:
            response = self._http.post(self.url, content=body, headers=self._headers)
        except httpx.HTTPError as exc:
            raise _Retryable(f"{type(exc).__name__}") from exc
        status = response.status_code
        if status == 200:
            self._record(batch, orjson.loads(response.content))
            return
        if status == 429 or status >= 500 or status == 408:
            retry_after = response.headers.get("Retry-After")
            raise _Retryable(
                f"HTTP {status}",
                float(retry_after) if retry_after and retry_after.isdigit() else None,
            )
        if status == 413:
            raise _TooLarge()
        try:
            reason = f"http_{status}:{orjson.loads(response.content).get('error', '')}"
        except (orjson.JSONDecodeError, AttributeError):
            reason = f"http_{status}"
        raise _Fatal(f"HTTP {status}: {response.text[:200]}", reason)

    def _record(self, batch: list[tuple[dict[str, Any], bytes]], answer: dict[str, Any]) -> None:
        self.stats.batches += 1
        for result in answer.get("results", []):
            if result.get("status") == "accepted":
                self.stats.accepted += 1
                continue
            self.stats.rejected += 1
            if self.on_rejected is not None:
                index = result.get("index", -1)
                event = batch[index][0] if 0 <= index < len(batch) else {}
                try:
                    self.on_rejected(event, result.get("reason", ""), result.get("detail", ""))
                except Exception:  # noqa: BLE001 - a user callback never stops delivery
                    log.exception("trivas on_rejected callback failed")

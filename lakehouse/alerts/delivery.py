"""Delivery: one worker thread per receiver, retries with exponential backoff.

Each receiver has its own queue and thread, so a receiver that is down or slow (timeouts)
only delays its own messages: the others go out at once. A failed attempt that is worth a
retry (see :class:`lakehouse.alerts.receivers.Outcome`) is put back with a delay of
``backoff * 2^(attempt-1)`` capped at ``max_backoff``, up to ``max_attempts``; meanwhile the
worker sends the receiver's other due messages. Every attempt is one row of
``ops.notifications`` (written in batches by :class:`Recorder`, off the sending threads).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from lakehouse.alerts.config import ReceiverConfig
from lakehouse.alerts.dispatch import Notification
from lakehouse.alerts.receivers import Outcome, Sender
from lakehouse.alerts.store import DELIVERED, FAILED, RETRYING, NotificationRow

log = logging.getLogger("trivas.alerts.delivery")


def backoff_delay(spec: ReceiverConfig, attempt: int) -> float:
    """Seconds to wait after the ``attempt``-th failed attempt."""
    return min(spec.max_backoff_s, spec.backoff_s * 2 ** max(attempt - 1, 0))


def attempt_rows(notification: Notification, attempt: int, status: str, outcome: Outcome) -> list[NotificationRow]:
    return [
        NotificationRow(notification.id, item.alert_id, notification.receiver, notification.route, item.event, status,
                        outcome.code, attempt, outcome.detail or None)
        for item in notification.items
    ]  # fmt: skip


class Recorder:
    """Batches rows to ``ops.notifications`` from a thread of its own."""

    def __init__(self, write: Callable[[list[NotificationRow]], None], every_s: float = 0.1) -> None:
        self.write = write
        self.every_s = every_s
        self.rows: queue.Queue[NotificationRow] = queue.Queue()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="alert-recorder", daemon=True)
        self.thread.start()

    def add(self, rows: list[NotificationRow]) -> None:
        for row in rows:
            self.rows.put(row)

    def flush(self) -> None:
        batch: list[NotificationRow] = []
        while True:
            try:
                batch.append(self.rows.get_nowait())
            except queue.Empty:
                break
        if batch:
            try:
                self.write(batch)
            except Exception:  # noqa: BLE001 - the audit trail must not stop deliveries
                log.exception("could not record %d notification rows", len(batch))

    def _run(self) -> None:
        while not self.stopping.wait(self.every_s):
            self.flush()
        self.flush()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    notification: Notification
    attempt: int


class ReceiverWorker:
    """Sends one receiver's notifications in order of due time, retrying with backoff."""

    def __init__(self, sender: Sender, recorder: Recorder, on_delivered: Callable[[Notification, float], None] | None = None) -> None:
        self.sender = sender
        self.spec = sender.spec
        self.recorder = recorder
        self.on_delivered = on_delivered
        self.heap: list[_Job] = []
        self.seq = itertools.count()
        self.wake = threading.Condition()
        self.stopping = False
        self.in_flight = 0
        self.thread = threading.Thread(target=self._run, name=f"alert-receiver-{self.spec.name}", daemon=True)
        self.thread.start()

    def submit(self, notification: Notification) -> None:
        with self.wake:
            heapq.heappush(self.heap, _Job(time.monotonic(), next(self.seq), notification, 1))
            self.wake.notify()

    def pending(self) -> int:
        """Messages queued, waiting for a retry or being sent."""
        with self.wake:
            return len(self.heap) + self.in_flight

    def _next(self) -> _Job | None:
        with self.wake:
            while not self.stopping:
                if self.heap and self.heap[0].due <= time.monotonic():
                    self.in_flight += 1
                    return heapq.heappop(self.heap)
                timeout = self.heap[0].due - time.monotonic() if self.heap else None
                self.wake.wait(timeout)
            return None

    def _run(self) -> None:
        while (job := self._next()) is not None:
            try:
                self._attempt(job)
            finally:
                with self.wake:
                    self.in_flight -= 1

    def _attempt(self, job: _Job) -> None:
        outcome = self.sender.attempt(job.notification)
        if outcome.delivered:
            self.recorder.add(attempt_rows(job.notification, job.attempt, DELIVERED, outcome))
            log.info("notification %s delivered to %s (attempt %d)", job.notification.id, self.spec.name, job.attempt)
            if self.on_delivered:
                self.on_delivered(job.notification, time.time())
            return
        retry = outcome.retryable and job.attempt < self.spec.max_attempts
        status = RETRYING if retry else FAILED
        self.recorder.add(attempt_rows(job.notification, job.attempt, status, outcome))
        log.warning(
            "notification %s to %s: attempt %d failed (%s, code %s)%s", job.notification.id, self.spec.name,
            job.attempt, outcome.detail, outcome.code, "; retrying" if retry else "; giving up",
        )  # fmt: skip
        if retry:
            with self.wake:
                due = time.monotonic() + backoff_delay(self.spec, job.attempt)
                heapq.heappush(self.heap, _Job(due, next(self.seq), job.notification, job.attempt + 1))

    def stop(self) -> None:
        with self.wake:
            self.stopping = True
            self.wake.notify()
        self.thread.join(timeout=self.spec.timeout_s + 5)

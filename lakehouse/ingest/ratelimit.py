"""Per-source token buckets: the collector's first burst attenuator.

A bucket holds at most ``burst`` tokens and refills at ``rate`` tokens per second; a request
of n events takes n tokens or none at all. A refused request learns how long until n tokens
are back (``Retry-After``), so a well-behaved client (the SDK) waits instead of hammering.
A batch larger than ``burst`` could never pass: the collector's batch limit stays below it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class TokenBucket:
    """One source's bucket (thread-safe)."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()
        self._lock = threading.Lock()

    def take(self, n: int) -> float:
        """Take ``n`` tokens; 0.0 if granted, else the seconds until they would be available."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if n <= self._tokens:
                self._tokens -= n
                return 0.0
            return (min(n, self.burst) - self._tokens) / self.rate


class RateLimiter:
    """A bucket per source, created on first use."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self._clock = rate, burst, clock
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def take(self, source: str, n: int) -> float:
        """See :meth:`TokenBucket.take`."""
        bucket = self._buckets.get(source)
        if bucket is None:
            with self._lock:
                bucket = self._buckets.setdefault(
                    source, TokenBucket(self.rate, self.burst, self._clock)
                )
        return bucket.take(n)


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` in whole seconds (HTTP delay-seconds), at least 1."""
    return str(max(1, math.ceil(seconds)))

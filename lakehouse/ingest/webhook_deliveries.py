"""Which webhook events were delivered: a persistent claim per dedup key, so that a provider's
redeliveries — concurrent, or days later after a collector restart — produce one record.

Each delivery first *claims* its event id in a SQLite table whose primary key is the event id
(``INSERT OR IGNORE``: exactly one concurrent request wins, across the collector's worker
processes too). The winner produces and then marks the claim ``done``; if the produce fails the
claim is released, so the provider's retry can produce. A request that finds a ``done`` claim
answers "duplicate" without producing; one that finds a claim in flight waits for it. A claim
left ``pending`` by a collector that died mid-produce is taken over after ``lease_s``: that
delivery may then reach Kafka twice with the same event id, which silver's event-id dedup
absorbs (the window is the milliseconds between the broker's acknowledgement and the mark).

Rows are kept for each provider's retention (its retry window plus a margin) and purged
afterwards. Sizes and timings: ``bench/bench_webhook_deliveries.py``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

PURGE_EVERY_S = 60.0


class Claim(StrEnum):
    """What a delivery may do with its event id."""

    OWNED = "owned"  # produce, then mark done (or release on failure)
    DONE = "done"  # already delivered: answer duplicate
    IN_FLIGHT = "in_flight"  # another request is producing it right now


@dataclass(frozen=True)
class ClaimResult:
    """The claim's state, the token that owns it (when ``OWNED``), and the stored outcome."""

    claim: Claim
    token: str | None = None
    outcome: str | None = None


class WebhookDeliveries:
    """The persistent store of claimed and delivered webhook event ids (thread-safe)."""

    def __init__(self, path: Path, lease_s: float = 60.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.lease_s = lease_s
        self._local = threading.local()
        self._last_purge = 0.0
        with self._connect() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS deliveries ("
                " event_id TEXT PRIMARY KEY, provider TEXT NOT NULL, state TEXT NOT NULL,"
                " token TEXT, outcome TEXT, claimed_at REAL NOT NULL, expires_at REAL NOT NULL"
                ") WITHOUT ROWID"
            )
            db.execute("CREATE INDEX IF NOT EXISTS deliveries_expiry ON deliveries (expires_at)")
        path.chmod(0o600)

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
            # WAL: readers never wait for the writer; NORMAL sync is durable across a process
            # crash (the collector's failure mode); a power cut may forget the last claims,
            # which silver's event-id dedup then covers.
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def claim(self, event_id: str, provider: str, retention_s: float, now: float | None = None) -> ClaimResult:
        """Claim ``event_id`` for producing, or say why not."""
        now = time.time() if now is None else now
        token = uuid.uuid4().hex
        db = self._connect()
        self._maybe_purge(db, now)
        inserted = db.execute(
            "INSERT OR IGNORE INTO deliveries VALUES (?, ?, 'pending', ?, NULL, ?, ?)",
            (event_id, provider, token, now, now + retention_s),
        ).rowcount
        if inserted:
            return ClaimResult(Claim.OWNED, token)
        row = db.execute(
            "SELECT state, outcome, claimed_at FROM deliveries WHERE event_id = ?", (event_id,)
        ).fetchone()
        if row is None:  # released between the two statements: try again
            return self.claim(event_id, provider, retention_s, now)
        state, outcome, claimed_at = row
        if state == "done":
            return ClaimResult(Claim.DONE, outcome=outcome)
        if claimed_at < now - self.lease_s:  # its owner died mid-produce: take it over
            taken = db.execute(
                "UPDATE deliveries SET token = ?, claimed_at = ? "
                "WHERE event_id = ? AND state = 'pending' AND claimed_at = ?",
                (token, now, event_id, claimed_at),
            ).rowcount
            if taken:
                return ClaimResult(Claim.OWNED, token)
        return ClaimResult(Claim.IN_FLIGHT)

    def mark_done(self, event_id: str, token: str, outcome: str) -> None:
        """Record that the owner of ``token`` delivered ``event_id`` (``accepted``/``rejected``)."""
        self._connect().execute(
            "UPDATE deliveries SET state = 'done', outcome = ? WHERE event_id = ? AND token = ?",
            (outcome, event_id, token),
        )

    def release(self, event_id: str, token: str) -> None:
        """Give up a claim whose produce failed, so that a redelivery can produce."""
        self._connect().execute(
            "DELETE FROM deliveries WHERE event_id = ? AND token = ? AND state = 'pending'",
            (event_id, token),
        )

    def _maybe_purge(self, db: sqlite3.Connection, now: float) -> None:
        if now - self._last_purge < PURGE_EVERY_S:
            return
        self._last_purge = now
        db.execute("DELETE FROM deliveries WHERE expires_at < ? AND state = 'done'", (now,))

    def count(self) -> int:
        """Rows currently kept (for metrics and the benchmark)."""
        return self._connect().execute("SELECT count(*) FROM deliveries").fetchone()[0]

    def close(self) -> None:
        """Close this thread's connection."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

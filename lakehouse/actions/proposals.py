"""What a policy proposes, and its idempotency key.

A :class:`Signal` is one trigger that fired for one target in one triggering window; the
guardrails (:mod:`lakehouse.actions.guardrails`) turn the signals that pass into
:class:`Proposal` rows of ``ops.action_requests``. The idempotency key is a hash of
(policy, target, triggering window): a replayed micro-batch, a retry or a restart computes the
same key, so the request is written once, executed once, and its HTTP calls carry it as the
``Idempotency-Key`` header.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

PROPOSED, SUPPRESSED = "proposed", "suppressed"


def idempotency_key(policy: str, target: str, window_start: datetime) -> str:
    """``act-<32 hex>``: the same (policy, target, window) gives the same key, on any replay."""
    stamp = window_start.astimezone(UTC).isoformat()
    return "act-" + hashlib.sha256(f"{policy}|{target}|{stamp}".encode()).hexdigest()[:32]


def window_floor(moment: datetime, width: timedelta) -> datetime:
    """The start of the tumbling window of ``width`` holding ``moment`` (aligned to the epoch)."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + width * ((moment.astimezone(UTC) - epoch) // width)


@dataclass(frozen=True)
class Signal:
    """A trigger fired: policy, target, triggering window, confidence and the evidence."""

    policy: str
    target: str
    window_start: datetime
    confidence: float
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return idempotency_key(self.policy, self.target, self.window_start)


@dataclass(frozen=True)
class Proposal:
    """One row of ``ops.action_requests`` (``request_id`` is the idempotency key)."""

    request_id: str
    policy: str
    action: str
    target: str
    window_start: datetime
    confidence: float
    reason: str
    evidence: dict[str, Any]
    status: str  # proposed | suppressed
    detail: str | None
    dry_run: bool
    needs_approval: bool
    expires_at: datetime | None
    proposed_at: datetime

    def as_row(self) -> dict[str, Any]:
        row = {name: getattr(self, name) for name in self.__dataclass_fields__}
        row["evidence"] = json.dumps(self.evidence, sort_keys=True, default=str)
        return row

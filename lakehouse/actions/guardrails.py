"""The guardrails between a fired trigger and a proposed action (pure: rows in, decisions out).

In this order, a signal is

1. dropped below the policy's confidence threshold (never proposed, not recorded: a model
   scores every order);
2. dropped when the policy may not touch its target (the target selector);
3. dropped when its idempotency key was proposed before (a replayed batch, a restart);
4. suppressed (recorded, with the reason) within the target's cool-down, beyond the policy's
   actions per hour, or beyond its blast radius: the share of known targets it may touch a day.

Rows that pass are proposed; they still need an approval when the policy says so, and the
worker executes nothing while the kill switch is on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from lakehouse.actions.config import Policy
from lakehouse.actions.proposals import PROPOSED, SUPPRESSED, Proposal, Signal

BELOW_THRESHOLD, NOT_SELECTED, DUPLICATE = "below_threshold", "target_not_selected", "duplicate"
COOLDOWN, RATE_LIMIT, BLAST_RADIUS = "cooldown", "rate_limit", "blast_radius"


@dataclass(frozen=True)
class Past:
    """An earlier proposal of a policy (from ``ops.action_requests``)."""

    key: str
    target: str
    status: str
    proposed_at: datetime


@dataclass
class Screening:
    """What the guardrails decided for one policy's signals."""

    rows: list[Proposal] = field(default_factory=list)  # proposed and suppressed
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> count

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    @property
    def proposed(self) -> list[Proposal]:
        return [r for r in self.rows if r.status == PROPOSED]

    @property
    def suppressed(self) -> list[Proposal]:
        return [r for r in self.rows if r.status == SUPPRESSED]


def blast_radius_cap(policy: Policy, known_targets: int) -> int:
    """Distinct targets a policy may touch in a day (at least one when it may touch any)."""
    if policy.limits.max_share_per_day >= 1.0:
        return math.inf  # type: ignore[return-value]
    return max(1, math.floor(policy.limits.max_share_per_day * known_targets)) if policy.limits.max_share_per_day > 0 else 0


def screen(
    policy: Policy, signals: Iterable[Signal], past: list[Past], now: datetime, known_targets: int, dry_run: bool,
) -> Screening:  # fmt: skip
    """Apply the guardrails to one policy's signals (see the module docstring)."""
    out = Screening()
    seen = {p.key for p in past}
    acted = [p for p in past if p.status == PROPOSED]
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    hour_ago = now - timedelta(hours=1)
    last_by_target: dict[str, datetime] = {}
    for p in acted:
        last_by_target[p.target] = max(p.proposed_at, last_by_target.get(p.target, p.proposed_at))
    in_last_hour = sum(1 for p in acted if p.proposed_at > hour_ago)
    touched_today = {p.target for p in acted if p.proposed_at >= day_start}
    cap = blast_radius_cap(policy, known_targets)
    for signal in sorted(signals, key=lambda s: (s.window_start, -s.confidence, s.target)):
        if signal.confidence < policy.confidence_threshold:
            out.drop(BELOW_THRESHOLD)
            continue
        if not policy.target.selects(signal.target):
            out.drop(NOT_SELECTED)
            continue
        if signal.key in seen:
            out.drop(DUPLICATE)
            continue
        seen.add(signal.key)
        last = last_by_target.get(signal.target)
        if last is not None and now - last < policy.cooldown:
            verdict = f"{COOLDOWN}: {signal.target} acted on at {last.isoformat()} (cool-down {policy.cooldown})"
        elif in_last_hour >= policy.limits.max_per_hour:
            verdict = f"{RATE_LIMIT}: {in_last_hour} actions in the last hour (max {policy.limits.max_per_hour})"
        elif signal.target not in touched_today and len(touched_today) >= cap:
            verdict = f"{BLAST_RADIUS}: {len(touched_today)} of {known_targets} targets touched today (max share {policy.limits.max_share_per_day})"
        else:
            verdict = None
        if verdict is None:
            in_last_hour += 1
            touched_today.add(signal.target)
            last_by_target[signal.target] = now
        out.rows.append(_proposal(policy, signal, now, dry_run, verdict))
    return out


def _proposal(policy: Policy, signal: Signal, now: datetime, dry_run: bool, suppressed: str | None) -> Proposal:
    return Proposal(
        request_id=signal.key, policy=policy.name, action=policy.action, target=signal.target,
        window_start=signal.window_start, confidence=float(signal.confidence), reason=signal.reason,
        evidence=signal.evidence, status=SUPPRESSED if suppressed else PROPOSED, detail=suppressed,
        dry_run=dry_run, needs_approval=policy.needs_approval,
        expires_at=now + policy.approval_expiry if policy.needs_approval else None, proposed_at=now,
    )  # fmt: skip

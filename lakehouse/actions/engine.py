"""Policies → proposals: trigger evaluation, then the guardrails (pure but for the one write).

The act job (:mod:`spark_jobs.act`) calls :func:`propose` once per micro-batch with the
evidence it collected and :class:`ProposalBook` to write the result; tests and the playground
call the same functions without Spark.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pandas as pd

from lakehouse.actions.config import ActionsConfig
from lakehouse.actions.guardrails import Past, screen
from lakehouse.actions.proposals import Proposal
from lakehouse.actions.store import KeyedLog, requests_log
from lakehouse.actions.triggers import Evidence, signals_of
from lakehouse.config import Settings

HISTORY = timedelta(days=2)  # enough for every cool-down, rate and daily limit


@dataclass
class Evaluation:
    """One evaluation: the rows to write and what the guardrails dropped (per reason)."""

    rows: list[Proposal] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)


def past_of(requests: pd.DataFrame, since: datetime) -> dict[str, list[Past]]:
    """Earlier requests per policy (pure)."""
    out: dict[str, list[Past]] = {}
    recent = requests[pd.to_datetime(requests["proposed_at"], utc=True) >= pd.Timestamp(since)]
    for r in recent.itertuples(index=False):
        out.setdefault(r.policy, []).append(Past(r.request_id, r.target, r.status, pd.Timestamp(r.proposed_at).to_pydatetime()))
    return out


def propose(config: ActionsConfig, evidence: Evidence, past: dict[str, list[Past]], now: datetime) -> Evaluation:
    """Every policy's signals through the guardrails (``now``: processing time of the proposal)."""
    out = Evaluation()
    for policy in config.policies:
        screening = screen(policy, signals_of(policy, evidence), past.get(policy.name, []), now,
                           evidence.known_targets(policy), config.dry_run_for(policy))  # fmt: skip
        out.rows += screening.rows
        out.dropped.update({f"{policy.name}:{k}": v for k, v in screening.dropped.items()})
    return out


class ProposalBook:
    """``ops.action_requests``: earlier proposals in, new ones out (insert-only by key)."""

    def __init__(self, settings: Settings) -> None:
        self.log: KeyedLog = requests_log(settings)

    def past(self, now: datetime) -> dict[str, list[Past]]:
        return past_of(self.log.read(), now - HISTORY)

    def write(self, proposals: list[Proposal]) -> int:
        return self.log.insert_new([p.as_row() for p in proposals])

    def evaluate(self, config: ActionsConfig, evidence: Evidence, now: datetime | None = None) -> Evaluation:
        """Evaluate and write: what a trigger of the act job does (``now``: processing time)."""
        now = now or datetime.now(UTC)
        evaluation = propose(config, evidence, self.past(now), now)
        self.write(evaluation.rows)
        return evaluation

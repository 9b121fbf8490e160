"""Trigger evaluation: the signals each policy's trigger gives over the current evidence (pure).

The evidence is small pandas frames (the act job collects them per micro-batch; tests build
them by hand): firing alerts of ``gold.alerts``, scored rows of ``gold.refund_risk`` and the
recent ad, order and inventory rows of silver. ``now`` is the stream's event-time clock (the
newest event seen), so a replayed batch evaluates the same windows and yields the same keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from lakehouse.actions.config import (
    ADJUST_BID,
    BACK_IN_STOCK,
    IDLE_CAMPAIGN_SPEND,
    AlertTrigger,
    ModelScoreTrigger,
    Policy,
    RuleTrigger,
)
from lakehouse.actions.proposals import Signal, window_floor

ALL_DIMENSIONS = "all"
# Refund-review reasons: the model's top feature group (see models.refund_risk.REASON_GROUPS).
REFUND_REASONS = ("customer_history", "product_return_rate", "amount_anomaly")


def _frame(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})


@dataclass
class Evidence:
    """What the policies look at in one evaluation."""

    now: datetime
    alerts: pd.DataFrame = field(default_factory=lambda: _frame(["alert_id", "kpi", "rule", "state", "dimension", "window_start", "confidence", "observed", "expected"]))
    scores: pd.DataFrame = field(default_factory=lambda: _frame(["order_id", "event_time", "refund_risk", "model_version", "reason"]))
    ad_events: pd.DataFrame = field(default_factory=lambda: _frame(["event_type", "event_time", "campaign_id", "channel", "amount"]))
    orders: pd.DataFrame = field(default_factory=lambda: _frame(["event_type", "event_time", "order_id", "campaign_id"]))
    inventory: pd.DataFrame = field(default_factory=lambda: _frame(["event_time", "sku", "warehouse", "delta", "stock_after", "reason"]))

    def campaigns(self) -> pd.DataFrame:
        """The campaigns seen in the ad events: ``campaign_id, channel`` (the known targets)."""
        return self.ad_events[["campaign_id", "channel"]].dropna().drop_duplicates("campaign_id").sort_values("campaign_id")

    def known_targets(self, policy: Policy) -> int:
        """How many targets the policy could touch (the base of its blast-radius share)."""
        if policy.action in ("pause_campaign", ADJUST_BID):
            return len(self.campaigns())
        if policy.action == "surface_product":
            return int(self.inventory["sku"].nunique())
        return 0


def _utc(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True)


def _recent(frame: pd.DataFrame, now: datetime, width) -> pd.DataFrame:  # noqa: ANN001 - timedelta
    times = _utc(frame["event_time"])
    return frame[(times > pd.Timestamp(now - width)) & (times <= pd.Timestamp(now))]


def alert_signals(policy: Policy, evidence: Evidence) -> list[Signal]:
    """Firing alerts about the trigger's KPI (and rules): one signal per target the action
    applies to — the alert itself (escalation) or the campaigns of the alert's dimension."""
    trigger = policy.trigger
    assert isinstance(trigger, AlertTrigger)
    alerts = evidence.alerts
    firing = alerts[(alerts["state"] == "firing") & (alerts["kpi"] == trigger.kpi)]
    if trigger.rules:
        firing = firing[firing["rule"].isin(trigger.rules)]
    signals = []
    for alert in firing.to_dict("records"):
        confidence = 1.0 if pd.isna(alert.get("confidence")) else float(alert["confidence"])
        evidence_row = {k: alert.get(k) for k in ("alert_id", "kpi", "rule", "dimension", "observed", "expected", "window_start")}
        targets = _campaigns_of(alert["dimension"], evidence) if policy.action == ADJUST_BID else [alert["alert_id"]]
        start = pd.Timestamp(alert["window_start"]).to_pydatetime()
        reason = f"{alert['kpi']} {alert['rule']} on {alert['dimension']}"
        signals += [Signal(policy.name, t, start, confidence, reason, evidence_row) for t in targets]
    return signals


def _campaigns_of(dimension: str, evidence: Evidence) -> list[str]:
    campaigns = evidence.campaigns()
    column, _, value = str(dimension).partition("=")
    if column == "channel":
        campaigns = campaigns[campaigns["channel"] == value]
    return campaigns["campaign_id"].tolist()


def score_signals(policy: Policy, evidence: Evidence) -> list[Signal]:
    """Scored orders of the model (within the trigger's window): the score is the confidence,
    the reason the model's top feature group."""
    trigger = policy.trigger
    assert isinstance(trigger, ModelScoreTrigger)
    scores = _recent(evidence.scores, evidence.now, trigger.window)
    signals = []
    for row in scores.to_dict("records"):
        reason = row.get("reason") if row.get("reason") in REFUND_REASONS else "model_score"
        at = pd.Timestamp(row["event_time"]).to_pydatetime()
        facts = {"model": f"{trigger.model}@{trigger.alias}", "model_version": row.get("model_version"),
                 "refund_risk": float(row["refund_risk"]), "event_time": at.isoformat()}  # fmt: skip
        signals.append(Signal(policy.name, str(row["order_id"]), at, float(row["refund_risk"]), reason, facts))
    return signals


def idle_campaign_signals(policy: Policy, evidence: Evidence) -> list[Signal]:
    """Campaigns that spent at least ``min_spend`` in the last ``window`` with no order
    attributed to them (triggering window: the tumbling window holding ``now``)."""
    trigger = policy.trigger
    assert isinstance(trigger, RuleTrigger)
    costs = _recent(evidence.ad_events, evidence.now, trigger.window)
    costs = costs[costs["event_type"] == "ad_cost"]
    clicks = _recent(evidence.ad_events, evidence.now, trigger.window)
    clicks = clicks[clicks["event_type"] == "ad_click"].groupby("campaign_id").size()
    orders = _recent(evidence.orders, evidence.now, trigger.window)
    orders = orders[orders["event_type"] == "order_placed"].groupby("campaign_id").size()
    spend = costs.groupby("campaign_id")["amount"].sum()
    window = window_floor(evidence.now, trigger.window)
    signals = []
    for campaign, spent in spend.items():
        conversions = int(orders.get(campaign, 0))
        if float(spent) >= trigger.min_spend and conversions == 0:
            facts = {"spend": round(float(spent), 2), "clicks": int(clicks.get(campaign, 0)), "conversions": 0,
                     "window": str(trigger.window), "until": evidence.now.isoformat()}  # fmt: skip
            reason = f"spent {float(spent):.2f} with 0 conversions in {trigger.window}"
            signals.append(Signal(policy.name, str(campaign), window, 1.0, reason, facts))
    return signals


def back_in_stock_signals(policy: Policy, evidence: Evidence) -> list[Signal]:
    """SKUs restocked from zero within the window (one signal per restock)."""
    trigger = policy.trigger
    assert isinstance(trigger, RuleTrigger)
    moves = _recent(evidence.inventory, evidence.now, trigger.window)
    restocked = moves[(moves["reason"] == "restock") & (moves["stock_after"] - moves["delta"] <= 0)]
    signals = []
    for row in restocked.to_dict("records"):
        at = pd.Timestamp(row["event_time"]).to_pydatetime()
        facts = {"warehouse": row["warehouse"], "stock_after": int(row["stock_after"]), "restocked_at": at.isoformat()}
        signals.append(Signal(policy.name, str(row["sku"]), at, 1.0, f"back in stock in {row['warehouse']}", facts))
    return signals


RULES: dict[str, Callable[[Policy, Evidence], list[Signal]]] = {
    IDLE_CAMPAIGN_SPEND: idle_campaign_signals,
    BACK_IN_STOCK: back_in_stock_signals,
}


def signals_of(policy: Policy, evidence: Evidence) -> list[Signal]:
    """The signals of one policy's trigger."""
    trigger = policy.trigger
    if isinstance(trigger, AlertTrigger):
        return alert_signals(policy, evidence)
    if isinstance(trigger, ModelScoreTrigger):
        return score_signals(policy, evidence)
    return RULES[trigger.rule](policy, evidence)

"""Builders and fixtures of the action tests: a real sandbox platform over HTTP, a deployment's
tables, accounts with each role, generated traffic with an idle-campaign incident."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

from lakehouse.actions.config import ActionsConfig, parse_actions_config
from lakehouse.actions.sandbox import SandboxServer
from lakehouse.actions.triggers import Evidence
from lakehouse.actions.worker import ActionWorker
from lakehouse.config import Settings
from lakehouse.generator.shop import Shop, ShopConfig

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
IDLE = "cmp-02"
ACCOUNTS = {"accounts": {"viola": {"role": "viewer"}, "april": {"role": "approver"},
                         "adam": {"role": "admin"}}}  # fmt: skip

POLICIES = """
platform: {url: "http://unused", timeout: 1s, attempts: 3, backoff: 10ms}
worker: {poll: 100ms}
policies:
  - name: pause-idle-campaign
    trigger: {kind: rule, rule: idle_campaign_spend, min_spend: 5, window: 10m}
    action: pause_campaign
    target: {match: "cmp-*"}
    approval: required
    approval_expiry: 30m
    cooldown: 2h
    limits: {max_per_hour: 3, max_share_per_day: 0.5}
  - name: review-risky-orders
    trigger: {kind: model_score, model: trivas-refund-risk, window: 15m}
    action: queue_refund_review
    confidence_threshold: 0.6
    approval: auto
    cooldown: 24h
    limits: {max_per_hour: 1000, max_share_per_day: 1.0}
  - name: bid-down-on-roas-drop
    trigger: {kind: alert, kpi: roas, rules: [threshold_min]}
    action: adjust_bid
    params: {step_pct: -10, min_bid: 0.5, max_bid: 3.0}
    confidence_threshold: 0.8
    approval: auto
  - name: surface-back-in-stock
    trigger: {kind: rule, rule: back_in_stock, window: 10m}
    action: surface_product
    target: {match: "SKU-*"}
    approval: auto
  - name: escalate-payment-failures
    trigger: {kind: alert, kpi: payment_failure_rate}
    action: escalate_incident
    approval: required
    approval_expiry: 15m
"""


def actions_config(text: str = POLICIES, accounts: Path | None = None, **overrides: object) -> ActionsConfig:
    raw = yaml.safe_load(text)
    if accounts is not None:
        raw["accounts_file"] = str(accounts)
    raw.update(overrides)
    return parse_actions_config(raw)


@pytest.fixture()
def accounts(tmp_path: Path) -> Path:
    path = tmp_path / "accounts.yaml"
    path.write_text(yaml.safe_dump(ACCOUNTS))
    return path


@pytest.fixture()
def config(accounts: Path) -> ActionsConfig:
    return actions_config(accounts=accounts)


@pytest.fixture()
def sandbox() -> Iterator[SandboxServer]:
    """The sandbox commerce platform, served over HTTP on a free port."""
    with SandboxServer() as server:
        yield server


@pytest.fixture()
def platform(sandbox: SandboxServer) -> Iterator[httpx.Client]:
    """A plain HTTP client of the sandbox: what the tests observe the platform with."""
    with httpx.Client(base_url=sandbox.url, timeout=5) as client:
        yield client


@pytest.fixture()
def worker(lake: Settings, config: ActionsConfig, sandbox: SandboxServer) -> Iterator[ActionWorker]:
    made = ActionWorker(lake, config, platform_url=sandbox.url)
    yield made
    made.close()


def generated_traffic(minutes: float = 12, idle: str | None = IDLE, rate: float = 40.0, start: datetime = T0) -> list[dict]:
    """Clean shop events; ``idle`` spends with no conversion for the whole span."""
    until = start + timedelta(minutes=minutes)
    incident = (idle, start, until) if idle else None
    return list(Shop(ShopConfig(seed=11, events_per_second=rate, idle_campaign=incident), start).events(until))


def frames_of(events: list[dict]) -> dict[str, pd.DataFrame]:
    """Silver-shaped frames (envelope + payload) of clean events, by domain of interest."""
    rows = [{"event_type": e["event_type"], "event_time": pd.Timestamp(e["event_time"]), **e["payload"]} for e in events]
    frame = pd.DataFrame(rows)
    ads = frame[frame["event_type"].isin(["ad_click", "ad_cost"])]
    orders = frame[frame["event_type"] == "order_placed"]
    inventory = frame[frame["event_type"] == "inventory_adjusted"]
    return {
        "ad_events": ads[["event_type", "event_time", "campaign_id", "channel", "amount"]],
        "orders": orders[["event_type", "event_time", "order_id", "campaign_id"]],
        "inventory": inventory[["event_time", "sku", "warehouse", "delta", "stock_after", "reason"]],
    }


def evidence_of(events: list[dict], **frames: pd.DataFrame) -> Evidence:
    now = max(pd.Timestamp(e["event_time"]) for e in events).to_pydatetime()
    return Evidence(now=now, **{**frames_of(events), **frames})


def scores(*rows: tuple[str, float], at: datetime = T0, reason: str = "customer_history") -> pd.DataFrame:
    return pd.DataFrame([{"order_id": o, "event_time": at, "refund_risk": r, "model_version": "3", "reason": reason} for o, r in rows])


def idle_evidence(campaign: str = IDLE, spend: float = 30.0, at: datetime = T0) -> Evidence:
    """One campaign that spent ``spend`` in the last minutes with no conversion; another that converted."""
    ads = pd.DataFrame([
        {"event_type": "ad_cost", "event_time": at - timedelta(minutes=2), "campaign_id": campaign, "channel": "social", "amount": spend},
        {"event_type": "ad_cost", "event_time": at - timedelta(minutes=2), "campaign_id": "cmp-00", "channel": "search", "amount": spend},
    ])  # fmt: skip
    orders = pd.DataFrame([{"event_type": "order_placed", "event_time": at - timedelta(minutes=1), "order_id": "o-1", "campaign_id": "cmp-00"}])
    return Evidence(now=at, ad_events=ads, orders=orders)

"""Acknowledgement from Slack's button and from a PagerDuty v3 webhook, through the real HTTP
endpoint, signatures checked; the router then stops escalating and does not echo the ack back."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from urllib.parse import urlencode

import httpx
import pytest

from lakehouse.alerts.cli import start_callbacks
from lakehouse.alerts.router import AlertRouter
from lakehouse.alerts.store import CommandLog
from lakehouse.config import Settings
from lakehouse.runtime.processes import free_port
from tests.alerts.conftest import PD_KEY, config_of, live_clock, make_alert, write_alerts

pytestmark = pytest.mark.integration

SLACK_SIGNING = "slack-signing-3c4d"  # noqa: S105 - test secrets
PD_WEBHOOK_SECRET = "pd-webhook-8e9f"


def callback_config(port: int) -> str:
    return f"""
receivers:
  slack: {{type: slack, url_env: T_SLACK_URL}}
  pager: {{type: pagerduty, url_env: T_PD_URL, routing_key_env: T_PD_KEY}}
  hook: {{type: webhook, url_env: T_HOOK_URL, secret_env: T_HOOK_SECRET, send_acknowledged: true}}
route:
  receivers: [slack, pager, hook]
  group_by: [kpi]
  group_wait: 0s
  group_interval: 0s
callbacks:
  port: {port}
  host: 127.0.0.1
  slack_signing_secret_env: T_SLACK_SIGNING
  pagerduty_signing_secret_env: T_PD_WEBHOOK
"""


def slack_request(url: str, alert_id: str, secret: str, stamp: int | None = None) -> httpx.Response:
    payload = {"type": "block_actions", "user": {"id": "U042", "username": "alice"},
               "actions": [{"action_id": f"trivas_ack-{alert_id}", "value": alert_id, "type": "button"}]}  # fmt: skip
    body = urlencode({"payload": json.dumps(payload)}).encode()
    stamp = stamp or int(time.time())
    signature = "v0=" + hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    headers = {"X-Slack-Request-Timestamp": str(stamp), "X-Slack-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"}
    return httpx.post(url, content=body, headers=headers)


def pagerduty_request(url: str, alert_id: str, secret: str) -> httpx.Response:
    body = json.dumps({"event": {"id": "01ABC", "event_type": "incident.acknowledged", "resource_type": "incident",
                                 "agent": {"summary": "Bob Schulz", "type": "user_reference"},
                                 "data": {"id": "PGR0VU2", "type": "incident", "status": "acknowledged", "incident_key": alert_id}}}).encode()  # fmt: skip
    signature = "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return httpx.post(url, content=body, headers={"X-PagerDuty-Signature": f"v1=00ff, {signature}", "Content-Type": "application/json"})


def test_slack_and_pagerduty_acknowledge_through_signed_callbacks(lake: Settings, endpoints, kpi_contracts, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_SLACK_SIGNING", SLACK_SIGNING)
    monkeypatch.setenv("T_PD_WEBHOOK", PD_WEBHOOK_SECRET)
    clock = live_clock()
    orders, revenue = make_alert(first_seen_at=clock()), make_alert(kpi="revenue", first_seen_at=clock())
    write_alerts(lake, [orders, revenue])
    router = AlertRouter(lake, kpi_contracts, config_of(callback_config(free_port())), clock=clock)
    server = start_callbacks(router)
    base = f"http://127.0.0.1:{server.port}"
    try:
        router.tick()
        assert router.wait_idle()
        message = next(body for _, body in endpoints["slack"].received if body["blocks"][0]["text"]["text"].startswith("[FIRING:1] orders"))
        button = next(e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"] if e["text"]["text"] == "Acknowledge")
        acked_in_slack = button["value"]
        assert acked_in_slack == orders.alert_id and button["action_id"] == f"trivas_ack-{orders.alert_id}"
        # Forged or stale requests change nothing.
        assert slack_request(f"{base}/callbacks/slack", acked_in_slack, "not the secret").status_code == 401
        assert slack_request(f"{base}/callbacks/slack", acked_in_slack, SLACK_SIGNING, stamp=int(time.time()) - 3600).status_code == 401
        assert pagerduty_request(f"{base}/callbacks/pagerduty", revenue.alert_id, "not the secret").status_code == 401
        assert CommandLog(lake).acks() == {}
        assert slack_request(f"{base}/callbacks/slack", acked_in_slack, SLACK_SIGNING).status_code == 200
        assert pagerduty_request(f"{base}/callbacks/pagerduty", revenue.alert_id, PD_WEBHOOK_SECRET).status_code == 200
        acks = CommandLog(lake).acks()
        assert {a: (k.author, k.source) for a, k in acks.items()} == {
            acked_in_slack: ("alice (slack)", "slack"), revenue.alert_id: ("Bob Schulz (pagerduty)", "pagerduty"),
        }  # fmt: skip
        clock.advance(seconds=1)
        sent = router.tick()
        assert router.wait_idle()
    finally:
        server.stop()
        router.close()
    # PagerDuty hears about the Slack ack, not about its own; the webhook about both.
    assert sorted((n.receiver, n.items[0].alert_id) for n in sent if n.receiver == "pager") == [("pager", acked_in_slack)]
    assert endpoints["pager"].received[-1][1] == {"routing_key": PD_KEY, "event_action": "acknowledge", "dedup_key": acked_in_slack}
    hook_events = [a["event"] for _, body in endpoints["hook"].received for a in body["alerts"]]
    assert hook_events.count("acknowledged") == 2

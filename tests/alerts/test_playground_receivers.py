"""The playground's path: the shipped ``conf/alerts.yaml`` and the local receivers (a real SMTP
server and the webhook inbox) get one grouped notification per channel, with the runbook link,
then the resolve message; ``trivas alerts inbox`` shows them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from rich.console import Console
from typer.testing import CliRunner

from lakehouse.alerts.config import load_alerts_config
from lakehouse.alerts.local_receivers import start_local_receivers
from lakehouse.alerts.router import AlertRouter
from lakehouse.config import Settings
from tests.alerts.conftest import live_clock, make_alert, resolved, write_alerts

pytestmark = pytest.mark.integration


def test_shipped_routes_to_local_receivers_grouped_then_resolved(lake: Settings, kpi_contracts, monkeypatch: pytest.MonkeyPatch) -> None:
    receivers = start_local_receivers(lake.path(lake.paths.var) / "alerts" / "inbox.jsonl")
    for key, value in receivers.environment().items():
        monkeypatch.setenv(key, value)
    clock = live_clock()
    de, fr = make_alert(first_seen_at=clock()), make_alert(dimension="country=FR", first_seen_at=clock.advance(seconds=3))
    write_alerts(lake, [de, fr])
    router = AlertRouter(lake, kpi_contracts, load_alerts_config(), clock=clock)
    try:
        router.tick()  # the audit route (group_wait 0) goes at once; commerce-critical waits 15 s
        clock.advance(seconds=15)
        router.tick()
        router.wait_idle()
        clock.advance(minutes=6)
        write_alerts(lake, [resolved(de, clock()), resolved(fr, clock())])
        router.tick()
        router.wait_idle()
    finally:
        router.close()
        receivers.stop()
    inbox = receivers.inbox
    firing_mail = [m for m in inbox.entries("email") if m["subject"].startswith("[FIRING")]
    # One grouped e-mail for the group (kpi, rule), to the configured address; a page per alert.
    assert [(m["subject"], m["rcpt_to"]) for m in firing_mail] == [
        ("[FIRING:2] orders anomaly_model (country=DE) +1 more", ["analytics@trivas.example"])
    ]
    assert "Runbook: docs/runbooks.md#kpi-out-of-band" in firing_mail[0]["text"]
    pages = sorted(m["rcpt_to"][0] for m in inbox.entries("email") if m["subject"].startswith("[PAGE L1"))
    assert len(pages) == 2 and set(pages) <= {"alice@trivas.example", "bob@trivas.example", "carol@trivas.example", "dave@trivas.example"}
    slack = [e["body"]["blocks"][0]["text"]["text"] for e in inbox.entries("slack")]
    assert slack == ["[FIRING:2] orders anomaly_model (country=DE) +1 more", "[RESOLVED:2] orders anomaly_model (country=DE) +1 more"]
    pagerduty = [(e["body"]["event_action"], e["body"]["dedup_key"], e["body"]["routing_key"]) for e in inbox.entries("pagerduty")]
    assert sorted(pagerduty) == sorted([("trigger", de.alert_id, "***"), ("trigger", fr.alert_id, "***"),
                                        ("resolve", de.alert_id, "***"), ("resolve", fr.alert_id, "***")])  # fmt: skip
    webhook = inbox.entries("webhook")
    assert all(e["signature_valid"] for e in webhook) and [e["body"]["event"] for e in webhook] == ["firing", "resolved"]
    resolved_mail = [m for m in inbox.entries("email") if m["subject"].startswith("[RESOLVED")]
    assert len(resolved_mail) == 1 and "back in its band since" in resolved_mail[0]["text"]

    from lakehouse.cli import app

    monkeypatch.setattr("lakehouse.alerts.cli.console", Console(width=200))
    for key, value in {"TRIVAS_ENV": "test", "TRIVAS_PATHS__VAR": lake.paths.var}.items():
        monkeypatch.setenv(key, value)
    shown = CliRunner().invoke(app, ["alerts", "inbox", "--channel", "email", "--last", "1"])
    assert shown.exit_code == 0 and "Subject: [RESOLVED:2] orders anomaly_model (country=DE) +1 more" in shown.output
    assert timedelta(minutes=6) < clock() - de.first_seen_at

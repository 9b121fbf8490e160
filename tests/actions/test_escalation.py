"""Escalation goes through the alert routing's PagerDuty receiver (Events API v2) with the evidence."""

from __future__ import annotations

import pandas as pd

from lakehouse.actions.approvals import command
from lakehouse.actions.engine import ProposalBook
from lakehouse.actions.store import APPROVE, ROLLBACK, audit_log
from lakehouse.actions.triggers import Evidence
from tests.actions.conftest import T0

ROUTING_KEY = "PD-ROUTING-KEY-actions-42"  # noqa: S105 - a test secret, asserted never to leak


def test_an_approved_escalation_pages_with_the_evidence_and_rollback_resolves(lake, config, worker, sandbox, platform, monkeypatch):
    monkeypatch.setenv("TRIVAS_ALERTS_PAGERDUTY_URL", f"{sandbox.url}/v2/enqueue")
    monkeypatch.setenv("TRIVAS_ALERTS_PAGERDUTY_ROUTING_KEY", ROUTING_KEY)
    alert = {"alert_id": "9f" * 16, "kpi": "payment_failure_rate", "rule": "threshold_max", "state": "firing",
             "dimension": "method=card", "window_start": T0, "confidence": None, "observed": 0.61, "expected": 0.12}  # fmt: skip
    rows = ProposalBook(lake).evaluate(config, Evidence(now=T0, alerts=pd.DataFrame([alert]))).rows
    (request,) = [r for r in rows if r.policy == "escalate-payment-failures"]
    worker.tick()
    assert platform.get(f"/incidents/{request.request_id}").json()["status"] == "none"  # waits for approval
    command(lake, config, APPROVE, "april", request.request_id, "page them")
    worker.tick()
    incident = platform.get(f"/incidents/{request.request_id}").json()
    assert incident["status"] == "triggered"
    assert incident["summary"].startswith("[trivas] payment_failure_rate threshold_max on method=card")
    assert incident["custom_details"]["observed"] == 0.61 and incident["custom_details"]["alert_id"] == alert["alert_id"]
    command(lake, config, ROLLBACK, "april", request.request_id, "provider recovered")
    worker.tick()
    assert platform.get(f"/incidents/{request.request_id}").json()["status"] == "resolved"
    audit = audit_log(lake).read()
    assert audit["event"].tolist().count("executed") == 1
    assert not audit.astype(str).apply(lambda c: c.str.contains(ROUTING_KEY)).any().any()

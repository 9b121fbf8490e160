"""The worker against the real sandbox platform: every bad input and fault has a defined fate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from lakehouse.actions.approvals import UnknownRequest, command
from lakehouse.actions.engine import ProposalBook
from lakehouse.actions.roles import NotAllowed
from lakehouse.actions.store import (
    APPROVE,
    KILL_OFF,
    KILL_ON,
    ROLLBACK,
    CommandLog,
    audit_log,
    requests_log,
)
from lakehouse.actions.worker import ActionWorker
from tests.actions.conftest import IDLE, T0, actions_config, idle_evidence, scores


def events_of(settings, request_id: str | None = None) -> list[str]:  # noqa: ANN001
    frame = audit_log(settings).read().sort_values("recorded_at", kind="stable")
    return frame["event"].tolist() if request_id is None else frame.loc[frame["request_id"] == request_id, "event"].tolist()


def pending_pause(settings, config, now: datetime | None = None) -> str:  # noqa: ANN001
    """Propose pausing the idle campaign; returns the request id (the idempotency key)."""
    rows = ProposalBook(settings).evaluate(config, idle_evidence(), now).rows
    (row,) = [r for r in rows if r.policy == "pause-idle-campaign"]
    return row.request_id


def test_a_retried_http_call_and_a_replayed_batch_do_not_act_twice(lake, accounts, sandbox, platform):
    config = actions_config(accounts=accounts, platform={"timeout": "300ms", "attempts": 3, "backoff": "10ms"})
    worker = ActionWorker(lake, config, platform_url=sandbox.url)
    key = pending_pause(lake, config)
    command(lake, config, APPROVE, "april", key, "ok")
    platform.post("/_sandbox/faults", json={"delay": 1, "delay_s": 0.8})  # done, but answered too late
    worker.tick()
    assert ProposalBook(lake).evaluate(config, idle_evidence()).rows == []  # the same batch again
    worker.tick()
    calls = platform.get("/_sandbox/calls").json()
    assert calls["calls"][key] == 2 and calls["applied"] == {key: 1}
    assert platform.get(f"/campaigns/{IDLE}").json()["status"] == "paused"
    assert events_of(lake, key) == ["proposed", "approved", "executing", "executed"]
    executed = audit_log(lake).read().query("event == 'executed'").iloc[0]
    assert executed["detail"].startswith("2 attempt(s)") and executed["idempotency_key"] == key
    worker.close()


def test_a_failing_platform_is_retried_then_recorded_as_failed(lake, config, worker, platform):
    key = pending_pause(lake, config)
    command(lake, config, APPROVE, "april", key, "ok")
    platform.post("/_sandbox/faults", json={"fail": 3, "status": 503})
    worker.tick()
    worker.tick()  # a failure is final: no further call
    assert platform.get("/_sandbox/calls").json() == {"calls": {key: 3}, "applied": {}}
    assert platform.get(f"/campaigns/{IDLE}").json()["status"] == "active"
    assert events_of(lake, key) == ["proposed", "approved", "executing", "failed"]
    failed = audit_log(lake).read().query("event == 'failed'").iloc[0]
    assert (failed["response_code"], failed["detail"]) == (503, "3 attempt(s): HTTP 503 after 3 attempts")
    assert failed["previous_state"] == '{"status": "active"}'
    # A failed action cannot be rolled back: the rollback is refused and audited.
    command(lake, config, ROLLBACK, "april", key, "undo")
    worker.tick()
    assert events_of(lake, key)[-1] == "refused"


def test_a_worker_that_died_mid_call_calls_again_with_the_same_key(lake, config, worker, platform):
    key = pending_pause(lake, config)
    command(lake, config, APPROVE, "april", key, "ok")
    platform.post("/_sandbox/faults", json={"fail": 3, "status": 503})
    worker.tick()  # the state is read and `executing` recorded, then every attempt fails …
    frame = audit_log(lake).read()
    assert frame.query("event == 'executing'").shape[0] == 1
    # … a worker that had died right after `executing` finds the request in doubt:
    from lakehouse.actions.worker import Trail, trails

    trail = trails(frame)[key]
    del trail.events["failed"]
    request = requests_log(lake).read().iloc[0].to_dict()
    worker._execute(request, trail, {})
    assert platform.get(f"/campaigns/{IDLE}").json()["status"] == "paused"
    assert isinstance(trail, Trail)


def test_a_viewer_cannot_approve_and_a_forged_approval_is_refused(lake, config, worker, platform):
    key = pending_pause(lake, config)
    with pytest.raises(NotAllowed, match="viola \\(viewer\\) may not approve"):
        command(lake, config, APPROVE, "viola", key, "me too")
    CommandLog(lake).add(APPROVE, "viola", "approver", key, "forged role")  # written around the CLI
    worker.tick()
    assert events_of(lake, key) == ["proposed", "refused"]
    assert platform.get("/_sandbox/calls").json()["calls"] == {}


def test_an_unknown_request_is_refused(lake, config, worker):
    pending_pause(lake, config)
    with pytest.raises(UnknownRequest):
        command(lake, config, APPROVE, "april", "act-doesnotexist", "ok")
    CommandLog(lake).add(APPROVE, "april", "approver", "act-forged", "forged")
    worker.tick()
    refused = audit_log(lake).read().query("event == 'refused'")
    assert refused["detail"].tolist() == ["approve of unknown request 'act-forged'"]


def test_an_unknown_policy_is_refused_never_executed(lake, config, worker, platform):
    key = pending_pause(lake, config)
    worker.config = actions_config(accounts=config.accounts_path(), policies=[])  # the policy was removed
    command(lake, config, APPROVE, "april", key, "ok")
    worker.tick()
    assert events_of(lake, key) == ["proposed", "refused", "rejected"]
    assert platform.get(f"/campaigns/{IDLE}").json()["status"] == "active"


def test_a_request_with_a_forged_key_is_refused(lake, config, worker, platform):
    from dataclasses import replace

    from lakehouse.actions.engine import propose

    (row,) = [r for r in propose(config, idle_evidence(), {}, datetime.now(UTC)).rows if r.policy == "pause-idle-campaign"]
    forged = replace(row, request_id="act-" + "0" * 32, needs_approval=False)  # written around the act job
    ProposalBook(lake).write([forged])
    worker.tick()
    assert events_of(lake, forged.request_id) == ["proposed", "refused", "rejected"]
    assert "forged idempotency key" in audit_log(lake).read().query("event == 'refused'").iloc[0]["detail"]
    assert platform.get("/_sandbox/calls").json()["calls"] == {}


def test_the_platform_refuses_a_key_reused_with_other_parameters(platform):
    first = platform.post("/campaigns/cmp-01/bid", json={"bid": 1.2}, headers={"Idempotency-Key": "k-1"})
    again = platform.post("/campaigns/cmp-01/bid", json={"bid": 1.2}, headers={"Idempotency-Key": "k-1"})
    other = platform.post("/campaigns/cmp-01/bid", json={"bid": 9.0}, headers={"Idempotency-Key": "k-1"})
    missing = platform.post("/campaigns/cmp-01/bid", json={"bid": 9.0})
    assert (first.status_code, again.status_code, other.status_code, missing.status_code) == (200, 200, 422, 400)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert platform.get("/campaigns/cmp-01").json()["bid"] == 1.2
    assert platform.get("/_sandbox/calls").json() == {"calls": {"k-1": 3}, "applied": {"k-1": 1}}


def test_an_approval_after_expiry_never_executes(lake, config, worker, platform):
    key = pending_pause(lake, config, now=datetime.now(UTC) - timedelta(hours=1))  # expired 30 min ago
    CommandLog(lake).add(APPROVE, "april", "approver", key, "too late")
    worker.tick()
    worker.tick()
    assert events_of(lake, key) == ["proposed", "expired"]
    assert "came after it" in audit_log(lake).read().query("event == 'expired'").iloc[0]["detail"]
    assert platform.get("/_sandbox/calls").json()["calls"] == {}


def test_a_pending_request_expires_without_approval(lake, config, worker):
    key = pending_pause(lake, config)
    worker.tick(now=datetime.now(UTC) + timedelta(minutes=31))
    assert events_of(lake, key) == ["proposed", "expired"]


def test_the_kill_switch_stops_execution_within_one_poll(lake, config, worker, platform):
    with pytest.raises(NotAllowed):
        command(lake, config, KILL_ON, "april")
    command(lake, config, KILL_ON, "adam", reason="runaway bot drill")
    ProposalBook(lake).evaluate(config, idle_evidence().__class__(now=T0, scores=scores(("o-1", 0.9))))
    worker.tick()
    assert platform.get("/review-queue").json() == []  # approved by its policy, but held
    assert events_of(lake) == ["proposed", "approved"]
    CommandLog(lake).add(KILL_OFF, "april", "admin", reason="forged")  # not an admin: ignored
    worker.tick()
    assert platform.get("/review-queue").json() == []
    command(lake, config, KILL_OFF, "adam", reason="drill over")
    worker.tick()
    assert platform.get("/review-queue").json() == [{"order_id": "o-1", "reason": "customer_history"}]


def test_the_kill_switch_of_the_environment(lake, config, worker, platform, monkeypatch):
    monkeypatch.setenv("TRIVAS_ACTIONS_KILL_SWITCH", "1")
    ProposalBook(lake).evaluate(config, idle_evidence().__class__(now=T0, scores=scores(("o-1", 0.9))))
    worker.tick()
    assert platform.get("/review-queue").json() == []


def test_dry_run_says_what_it_would_do_and_calls_nothing(lake, accounts, sandbox, platform):
    config = actions_config(accounts=accounts, dry_run=True)
    worker = ActionWorker(lake, config, platform_url=sandbox.url)
    key = pending_pause(lake, config)
    command(lake, config, APPROVE, "april", key, "ok")
    worker.tick()
    row = audit_log(lake).read().query("event == 'dry_run'").iloc[0]
    assert row["detail"] == f"would POST /campaigns/{IDLE}/status {{'status': 'paused'}} (now {{'status': 'active'}})"
    assert platform.get("/_sandbox/calls").json()["calls"] == {}
    worker.close()


def test_a_bid_moves_one_bounded_step_and_rolls_back(lake, config, worker, platform):
    alerts = pd.DataFrame([{"alert_id": "a1", "kpi": "roas", "rule": "threshold_min", "state": "firing", "dimension": "all",
                            "window_start": T0, "confidence": 0.95, "observed": 0.4, "expected": 2.0}])  # fmt: skip
    evidence = idle_evidence()
    evidence.alerts = alerts
    rows = [r for r in ProposalBook(lake).evaluate(config, evidence).rows if r.policy == "bid-down-on-roas-drop"]
    assert sorted(r.target for r in rows) == ["cmp-00", IDLE]
    worker.tick()
    assert platform.get(f"/campaigns/{IDLE}").json()["bid"] == 0.9  # 1.0 - 10 %
    target = next(r for r in rows if r.target == IDLE)
    command(lake, config, ROLLBACK, "adam", target.request_id, "undo")
    worker.tick()
    assert platform.get(f"/campaigns/{IDLE}").json()["bid"] == 1.0
    assert platform.get("/campaigns/cmp-00").json()["bid"] == 0.9


def test_next_bid_stays_within_its_bounds():
    from lakehouse.actions.executors import next_bid

    assert [next_bid(1.0, -10, 0.5, 3.0), next_bid(0.52, -10, 0.5, 3.0), next_bid(2.9, 10, 0.5, 3.0)] == [0.9, 0.5, 3.0]


def test_low_risk_orders_are_not_queued_and_risky_ones_are_with_their_reason(lake, config, worker, platform):
    evidence = idle_evidence().__class__(now=T0, scores=scores(("o-low", 0.2), ("o-high", 0.91), reason="amount_anomaly"))
    ProposalBook(lake).evaluate(config, evidence)
    worker.tick()
    assert platform.get("/review-queue").json() == [{"order_id": "o-high", "reason": "amount_anomaly"}]

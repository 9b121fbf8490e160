"""End to end without Spark: generated traffic with an idle campaign → a pending proposal →
approval by an approver → execution on the sandbox platform → audit → rollback."""

from __future__ import annotations

import pytest

from lakehouse.actions.approvals import command
from lakehouse.actions.engine import ProposalBook
from lakehouse.actions.roles import NotAllowed
from lakehouse.actions.store import APPROVE, ROLLBACK, audit_log, requests_log
from tests.actions.conftest import IDLE, evidence_of, generated_traffic


@pytest.fixture(scope="module")
def idle_traffic() -> list[dict]:
    return generated_traffic(minutes=12)


def audit_events(settings, request_id: str) -> list[tuple[str, str]]:  # noqa: ANN001
    frame = audit_log(settings).read()
    rows = frame[frame["request_id"] == request_id].sort_values("recorded_at", kind="stable")
    return list(zip(rows["event"], rows["actor"], strict=True))


def test_idle_campaign_is_paused_after_approval_and_restored_by_rollback(lake, config, worker, platform, idle_traffic):
    evidence = evidence_of(idle_traffic)
    book = ProposalBook(lake)
    evaluation = book.evaluate(config, evidence)
    pauses = [p for p in evaluation.rows if p.policy == "pause-idle-campaign"]
    assert [(p.target, p.status) for p in pauses] == [(IDLE, "proposed")]
    assert pauses[0].evidence["conversions"] == 0 and pauses[0].evidence["spend"] >= 5
    key = pauses[0].request_id

    worker.tick()  # pending: nothing happens on the platform
    assert platform.get(f"/campaigns/{IDLE}").json()["status"] == "active"
    assert audit_events(lake, key) == [("proposed", "policy:pause-idle-campaign")]

    with pytest.raises(NotAllowed):
        command(lake, config, APPROVE, "viola", key[:12], "looks bad")
    assert command(lake, config, APPROVE, "april", key[:12], "no conversions since 10:00") == key
    worker.tick()
    assert platform.get(f"/campaigns/{IDLE}").json()["status"] == "paused"
    assert platform.get("/_sandbox/calls").json()["applied"] == {key: 1}

    command(lake, config, ROLLBACK, "april", key, "false alarm: tracking pixel broken")
    worker.tick()
    worker.tick()  # a second poll changes nothing
    assert platform.get(f"/campaigns/{IDLE}").json()["status"] == "active"
    assert audit_events(lake, key) == [
        ("proposed", "policy:pause-idle-campaign"), ("approved", "april"), ("executing", "worker"),
        ("executed", "worker"), ("rolled_back", "april"),
    ]  # fmt: skip
    audit = audit_log(lake).read().set_index("event")
    assert audit.loc["executing", "previous_state"] == '{"status": "active"}'
    assert audit.loc["executed", "response_code"] == 200

    # A replayed evaluation (the same batch again) proposes nothing new and acts on nothing.
    assert book.evaluate(config, evidence).rows == []
    assert len(requests_log(lake).read().query("policy == 'pause-idle-campaign'")) == 1

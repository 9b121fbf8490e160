"""Routing, grouping, repeats, inhibition, silences, escalation and acknowledgement, on a
controllable clock (pure: no I/O)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from lakehouse.alerts.config import load_alerts_config, parse_matcher
from lakehouse.alerts.content import pagerduty_event, text_body
from lakehouse.alerts.dispatch import Ack, Delivered, Dispatcher
from lakehouse.alerts.routing import (
    RULE_JOB_STOPPED,
    Silence,
    SourceAlert,
    alert_labels,
    inhibitions,
    match_routes,
)
from tests.alerts.conftest import T0, Clock, config_of, context_of, make_alert, resolved

pytestmark = pytest.mark.unit

CONFIG = """
receivers:
  team-email: {type: email, to: [team@example.com]}
  team-slack: {type: slack, url_env: TEST_SLACK_URL}
  pager: {type: pagerduty, routing_key_env: TEST_PD_KEY}
route:
  name: root
  receiver: team-email
  group_by: [kpi]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
  routes:
    - name: critical-pager
      matchers: ['severity="critical"']
      receiver: pager
      continue: true
    - name: commerce
      matchers: ['route="commerce-oncall"']
      receiver: team-slack
      escalation: commerce
inhibit_rules:
  - name: stale-kpi
    source: ['rule="freshness_sla"']
    target: ['rule=~"anomaly_model|threshold_min|threshold_max"']
    equal: [kpi]
  - name: pipeline-down
    source: ['rule=~"pipeline_job_failed|pipeline_job_stopped"']
    target: ['kpi!="pipeline"']
    equal: [job]
oncall:
  users:
    alice: {name: Alice, email: alice@example.com}
    bob: {name: Bob, email: bob@example.com}
    carol: {name: Carol, email: carol@example.com}
  schedules:
    primary:
      time_zone: Europe/Berlin
      layers: [{name: weekly, users: [alice, bob], start: "2026-11-02T09:00", length: 7d}]
    secondary:
      time_zone: Europe/Berlin
      layers: [{name: weekly, users: [carol], start: "2026-11-02T09:00", length: 7d}]
  escalation_policies:
    commerce:
      levels:
        - {after: 0m, schedule: primary, receiver: team-email}
        - {after: 15m, schedule: secondary, receiver: team-email}
"""


@pytest.fixture()
def config():  # noqa: ANN201
    return config_of(CONFIG)


def contexts(alerts, config, kpis):  # noqa: ANN001, ANN201
    return [context_of(a, config, kpis) for a in alerts]


def by_receiver(notifications):  # noqa: ANN001, ANN201
    out: dict[str, list] = {}
    for n in notifications:
        out.setdefault(n.receiver, []).append(n)
    return out


def test_routing_tree_first_match_wins_and_continue_fans_out(config, kpi_contracts) -> None:
    anomaly = alert_labels(make_alert(), kpi_contracts, config.severities)
    stale = alert_labels(make_alert(rule="freshness_sla", dimension="all"), kpi_contracts, config.severities)
    job = alert_labels(make_alert(kpi="pipeline", grain="job", dimension="gold", rule="pipeline_job_failed"), kpi_contracts, {})
    assert anomaly["country"] == "DE" and anomaly["route"] == "commerce-oncall" and anomaly["domain"] == "orders"
    assert [r.name for r in match_routes(config.route, anomaly)] == ["commerce"]
    assert [r.name for r in match_routes(config.route, stale)] == ["critical-pager", "commerce"]
    # A critical pipeline alert: the pager (continue), no other child matches; as in Alertmanager
    # a matching child (continue or not) means the parent does not take the alert itself.
    assert job["job"] == "gold" and job["severity"] == "critical"
    assert [r.name for r in match_routes(config.route, job)] == ["critical-pager"]
    revenue_job = alert_labels(make_alert(kpi="pipeline", grain="job", dimension="gold", rule="pipeline_job_failed"), kpi_contracts, {"pipeline_job_failed": "warning"})
    assert [r.name for r in match_routes(config.route, revenue_job)] == ["root"]


def test_shipped_configuration_routes_every_alert_kind(kpi_contracts) -> None:
    shipped = load_alerts_config()
    routes = {
        rule: [r.name for r in match_routes(shipped.route, alert_labels(make_alert(rule=rule), kpi_contracts, shipped.severities))]
        for rule in ("anomaly_model", "anomaly_model_open", "freshness_sla")
    }
    assert routes == {
        "anomaly_model": ["audit", "commerce-critical"],
        "anomaly_model_open": ["audit", "commerce-oncall"],
        "freshness_sla": ["audit", "commerce-critical"],
    }
    job = make_alert(kpi="pipeline", grain="job", dimension="detect", rule="pipeline_job_failed")
    assert [r.name for r in match_routes(shipped.route, alert_labels(job, kpi_contracts, shipped.severities))] == ["audit", "pipeline"]


def test_group_wait_collects_alerts_into_one_message_then_group_interval(config, kpi_contracts) -> None:
    clock = Clock()
    dispatcher = Dispatcher(config)
    de = make_alert(first_seen_at=clock())
    assert dispatcher.due(contexts([de], config, kpi_contracts), clock())[0] == []
    fr = make_alert(dimension="country=FR", first_seen_at=clock.advance(seconds=10))
    assert dispatcher.due(contexts([de, fr], config, kpi_contracts), clock())[0] == []
    sent, _ = dispatcher.due(contexts([de, fr], config, kpi_contracts), clock.advance(seconds=20))
    assert [(n.receiver, n.event, sorted(i.context.alert.dimension for i in n.items)) for n in sent] == [
        ("team-slack", "firing", ["country=DE", "country=FR"])
    ]
    # A third alert of the group waits group_interval after the last message.
    us = make_alert(dimension="country=US", first_seen_at=clock.advance(seconds=10))
    alerts = [de, fr, us]
    assert "team-slack" not in by_receiver(dispatcher.due(contexts(alerts, config, kpi_contracts), clock.advance(minutes=4))[0])
    clock.now = T0 + timedelta(seconds=30) + timedelta(minutes=5) - timedelta(seconds=1)
    assert [n for n in dispatcher.due(contexts(alerts, config, kpi_contracts), clock())[0] if n.receiver == "team-slack"] == []
    sent, _ = dispatcher.due(contexts(alerts, config, kpi_contracts), clock.advance(seconds=1))
    slack = by_receiver(sent)["team-slack"]
    assert [[i.context.alert.dimension for i in n.items] for n in slack] == [["country=US"]]
    assert sorted(slack[0].still_firing) == sorted([de.alert_id, fr.alert_id])


def test_repeat_interval_resends_a_group_still_firing_and_nothing_twice(config, kpi_contracts) -> None:
    clock = Clock()
    dispatcher = Dispatcher(config)
    alert = make_alert(first_seen_at=clock())
    view = contexts([alert], config, kpi_contracts)
    dispatcher.due(view, clock.advance(seconds=30))
    for _ in range(5):  # the same rows read again and again (a replayed batch): nothing new
        assert [n for n in dispatcher.due(view, clock.advance(minutes=10))[0] if n.receiver == "team-slack"] == []
    clock.now = T0 + timedelta(seconds=30) + timedelta(hours=4)
    sent = by_receiver(dispatcher.due(view, clock())[0])["team-slack"]
    assert [(n.event, [i.event for i in n.items]) for n in sent] == [("repeat:1", ["repeat:1"])]
    assert "team-slack" not in by_receiver(dispatcher.due(view, clock.advance(minutes=1))[0])


def test_resolve_message_only_to_receivers_that_were_told(config, kpi_contracts) -> None:
    clock = Clock()
    dispatcher = Dispatcher(config)
    told = make_alert(first_seen_at=clock())
    dispatcher.due(contexts([told], config, kpi_contracts), clock.advance(seconds=30))
    # An alert that fires and resolves inside group_wait was never sent: no resolve message either.
    blip = make_alert(dimension="country=FR", first_seen_at=clock.advance(seconds=1))
    dispatcher.due(contexts([told, blip], config, kpi_contracts), clock())
    done = [resolved(told, clock.advance(minutes=6)), resolved(blip, clock())]
    sent = by_receiver(dispatcher.due(contexts(done, config, kpi_contracts), clock())[0])["team-slack"]
    assert [(n.event, [i.alert_id for i in n.items]) for n in sent] == [("resolved", [told.alert_id])]
    text = text_body(sent[0], config)
    assert "RESOLVED orders (country=DE) anomaly_model: back in its band since 2026-11-30 10:06:31 UTC" in text
    assert dispatcher.due(contexts(done, config, kpi_contracts), clock.advance(hours=5))[0] == []


def test_a_restarted_dispatcher_sends_nothing_already_sent(config, kpi_contracts) -> None:
    clock = Clock()
    first = Dispatcher(config)
    alert = make_alert(first_seen_at=clock())
    first.due(contexts([alert], config, kpi_contracts), clock.advance(seconds=30))
    restarted = Dispatcher(config, delivered=Delivered(set(first.delivered.keys), dict(first.delivered.first_firing), dict(first.delivered.last_sent)))
    sent, _ = restarted.due(contexts([alert], config, kpi_contracts), clock.advance(seconds=40))
    assert [n for n in sent if not n.event.startswith("page:")] == []


def test_stale_kpi_inhibits_its_anomaly_alerts_and_says_so(config, kpi_contracts) -> None:
    clock = Clock()
    stale = make_alert(rule="freshness_sla", dimension="all", observed=240.0, upper=60.0, first_seen_at=clock())
    anomaly = make_alert(first_seen_at=clock())
    other_kpi = make_alert(kpi="revenue", first_seen_at=clock())
    view = contexts([stale, anomaly, other_kpi], config, kpi_contracts)
    firing = {c.alert.alert_id: c.labels for c in view}
    muted_by = inhibitions(firing, [SourceAlert(c.alert.alert_id, c.labels, c.alert.rule) for c in view], config.inhibit_rules)
    assert set(muted_by) == {anomaly.alert_id}
    dispatcher = Dispatcher(config)
    sent, muted = dispatcher.due(view, clock.advance(seconds=30), inhibited=muted_by)
    assert {(m.alert_id, m.receiver, m.status) for m in muted} == {(anomaly.alert_id, "team-slack", "inhibited")}
    assert muted[0].reason.startswith(f"inhibited by stale-kpi: freshness_sla ({stale.alert_id})")
    sent_ids = {i.alert_id for n in sent for i in n.items}
    assert anomaly.alert_id not in sent_ids and {stale.alert_id, other_kpi.alert_id} <= sent_ids
    stale_item = next(i for n in sent if n.receiver == "team-slack" for i in n.items if i.alert_id == stale.alert_id)
    assert stale_item.inhibits == ["orders (country=DE, 1m) anomaly_model"]
    assert "Suppressing: 1 alert(s) it causes: orders (country=DE, 1m) anomaly_model" in text_body(
        next(n for n in sent if n.receiver == "team-slack" and stale_item in n.items), config
    )
    # Reported once, not on every tick.
    assert dispatcher.due(view, clock.advance(seconds=1), inhibited=muted_by)[1] == []


def test_a_stopped_pipeline_job_inhibits_the_kpi_alerts_it_causes(config, kpi_contracts) -> None:
    view = contexts([make_alert(), make_alert(rule="freshness_sla", dimension="all")], config, kpi_contracts)
    stopped = SourceAlert("job:silver_gold", {"kpi": "pipeline", "rule": RULE_JOB_STOPPED, "job": "silver_gold"}, "pipeline job silver_gold is stopped")
    unrelated = SourceAlert("job:refund_risk", {"kpi": "pipeline", "rule": RULE_JOB_STOPPED, "job": "refund_risk"}, "refund_risk stopped")
    firing = {c.alert.alert_id: c.labels for c in view}
    assert inhibitions(firing, [unrelated], config.inhibit_rules) == {}
    muted = inhibitions(firing, [stopped], config.inhibit_rules)
    assert set(muted) == set(firing)
    assert {m.explain() for m in muted.values()} == {"inhibited by pipeline-down: pipeline job silver_gold is stopped (job:silver_gold)"}


def test_silence_mutes_matching_alerts_until_it_expires(config, kpi_contracts) -> None:
    clock = Clock()
    silence = Silence("s-1", (parse_matcher('country="DE"'), parse_matcher("kpi=~orders|revenue")), "ops@x", "shop maintenance",
                      clock(), clock() + timedelta(hours=1))  # fmt: skip
    de, fr = make_alert(first_seen_at=clock()), make_alert(dimension="country=FR", first_seen_at=clock())
    dispatcher = Dispatcher(config)
    sent, muted = dispatcher.due(contexts([de, fr], config, kpi_contracts), clock.advance(seconds=30), silences=[silence])
    assert {i.alert_id for n in sent for i in n.items} == {fr.alert_id}
    assert [(m.alert_id, m.status) for m in muted] == [(de.alert_id, "silenced")]
    assert muted[0].reason == "silenced by s-1 (ops@x: shop maintenance) until 2026-11-30T11:00:00+00:00"
    # Expired: the still-firing alert goes out (after group_interval, as any change of the group).
    clock.now = T0 + timedelta(hours=1, seconds=1)
    sent, _ = dispatcher.due(contexts([de, fr], config, kpi_contracts), clock(), silences=[silence])
    assert {i.alert_id for n in sent if n.receiver == "team-slack" for i in n.items} == {de.alert_id}


def test_escalation_pages_level_two_only_if_not_acknowledged(config, kpi_contracts) -> None:
    clock = Clock()
    alert = make_alert(first_seen_at=clock())
    other = make_alert(kpi="revenue", first_seen_at=clock())
    dispatcher = Dispatcher(config)
    view = contexts([alert, other], config, kpi_contracts)
    dispatcher.due(view, clock.advance(seconds=30))
    pages = [n for n in dispatcher.due(view, clock.advance(seconds=1))[0] if n.event.startswith("page:")]
    # 2026-11-30 10:00 UTC: the fifth weekly shift since 2026-11-02 09:00 Berlin (alice, bob, alice, bob, alice).
    assert sorted((n.event, n.receiver, tuple(n.recipients), n.items[0].context.alert.kpi) for n in pages) == [
        ("page:1", "team-email", ("alice",), "orders"), ("page:1", "team-email", ("alice",), "revenue"),
    ]  # fmt: skip
    assert "Paging escalation level 1: Alice (on call now)" in text_body(pages[0], config)
    acks = {alert.alert_id: Ack(alert.alert_id, "alice", clock.advance(minutes=5))}
    assert [n for n in dispatcher.due(view, clock.advance(minutes=9), acks)[0] if n.event.startswith("page:")] == []
    # Level 2: 15 minutes after the first notification (10:00:30), for the alert nobody acknowledged.
    pages = [n for n in dispatcher.due(view, clock.advance(minutes=1), acks)[0] if n.event.startswith("page:")]
    assert [(n.event, n.recipients, n.items[0].alert_id) for n in pages] == [("page:2", ["carol"], other.alert_id)]


def test_acknowledgement_reaches_pagerduty_and_stops_repeats(config, kpi_contracts) -> None:
    clock = Clock()
    stale = make_alert(rule="freshness_sla", dimension="all", first_seen_at=clock())
    dispatcher = Dispatcher(config)
    view = contexts([stale], config, kpi_contracts)
    sent = by_receiver(dispatcher.due(view, clock.advance(seconds=30))[0])
    trigger = pagerduty_event(sent["pager"][0].items[0], sent["pager"][0], config, "KEY")
    acks = {stale.alert_id: Ack(stale.alert_id, "alice", clock.advance(minutes=2), "cli")}
    sent = by_receiver(dispatcher.due(view, clock.advance(minutes=5), acks)[0])
    assert list(sent) == ["pager"]  # Slack and e-mail have send_acknowledged off
    ack_event = pagerduty_event(sent["pager"][0].items[0], sent["pager"][0], config, "KEY")
    assert ack_event == {"routing_key": "KEY", "event_action": "acknowledge", "dedup_key": trigger["dedup_key"]}
    assert trigger["dedup_key"] == stale.alert_id
    assert dispatcher.due(view, clock.advance(hours=5), acks)[0] == []

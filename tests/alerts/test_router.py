"""The router over real Delta tables (delta-rs) and real local HTTP receivers: delivery and its
audit trail, retries that never delay the other receivers, at most once across restarts and
replayed batches, acknowledgement and silences from the CLI, no secret in logs or tables."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from lakehouse.alerts.router import AlertRouter
from lakehouse.alerts.store import NotificationLog
from lakehouse.config import Settings
from tests.alerts.conftest import (
    HOOK_SECRET,
    PD_KEY,
    SLACK_TOKEN,
    Clock,
    config_of,
    live_clock,
    make_alert,
    resolved,
    values,
    write_alerts,
)

pytestmark = pytest.mark.integration


ROUTER_CONFIG = """
receivers:
  slack: {type: slack, url_env: T_SLACK_URL, backoff: 0.2s, max_attempts: 4, timeout: 1s}
  pager: {type: pagerduty, url_env: T_PD_URL, routing_key_env: T_PD_KEY, backoff: 0.2s, max_attempts: 4, timeout: 1s}
  hook: {type: webhook, url_env: T_HOOK_URL, secret_env: T_HOOK_SECRET, backoff: 0.2s, max_attempts: 2, timeout: 1s}
route:
  name: root
  receivers: [slack, pager]
  group_by: [kpi]
  group_wait: 0s
  group_interval: 1m
  repeat_interval: 4h
  routes:
    - name: audit
      receiver: hook
      continue: true
    - name: commerce
      matchers: ['route="commerce-oncall"']
      receivers: [slack, pager]
"""


def router_of(lake: Settings, kpi_contracts, clock: Clock) -> AlertRouter:  # noqa: ANN001
    return AlertRouter(lake, kpi_contracts, config_of(ROUTER_CONFIG), clock=clock)


def audit(lake: Settings):  # noqa: ANN201
    return NotificationLog(lake).read().sort_values("recorded_at", kind="stable")


def settle(router: AlertRouter) -> None:
    assert router.wait_idle(timeout_s=30)
    router.recorder.flush()


def route_once(lake: Settings, kpi_contracts, clock: Clock) -> None:  # noqa: ANN001
    """One router, one tick, every delivery it started finished and recorded, then stopped."""
    router = router_of(lake, kpi_contracts, clock)
    try:
        router.tick()
        settle(router)
    finally:
        router.close()


def test_alert_to_every_receiver_with_its_audit_trail_and_resolution(lake: Settings, endpoints, kpi_contracts) -> None:
    clock = live_clock()
    alert = make_alert(first_seen_at=clock())
    write_alerts(lake, [alert])
    router = router_of(lake, kpi_contracts, clock)
    try:
        sent = router.tick()
        settle(router)
        assert sorted(n.receiver for n in sent) == ["hook", "pager", "slack"]
        [(_, event)] = endpoints["pager"].received
        assert (event["event_action"], event["dedup_key"]) == ("trigger", alert.alert_id)
        write_alerts(lake, [resolved(alert, clock.advance(seconds=30))])
        assert router.tick() == []  # group_interval (1m) after the last message
        clock.advance(seconds=30)
        assert sorted((n.receiver, n.event) for n in router.tick()) == [("hook", "resolved"), ("pager", "resolved"), ("slack", "resolved")]
        settle(router)
    finally:
        router.close()
    assert endpoints["pager"].received[1][1] == {"routing_key": PD_KEY, "event_action": "resolve", "dedup_key": alert.alert_id}
    assert endpoints["slack"].received[1][1]["blocks"][1]["text"]["text"].startswith("*RESOLVED orders (country=DE) anomaly_model: back in its band")
    rows = audit(lake)
    lifecycle = rows[rows["receiver"] == "*"]
    assert list(lifecycle["status"]) == ["firing", "resolved"]
    assert values(rows[rows["receiver"] == "pager"], ["event", "status", "response_code", "attempt", "retry_count"]) == [
        ["firing", "sending", None, 0, 0], ["firing", "delivered", 200, 1, 0],
        ["resolved", "sending", None, 0, 0], ["resolved", "delivered", 200, 1, 0],
    ]  # fmt: skip


def test_a_failing_receiver_is_retried_and_delays_nobody(lake: Settings, endpoints, kpi_contracts) -> None:
    slack = endpoints["slack"]
    released_by_slack: list[bool] = []

    def hang() -> None:  # the hook hangs beyond its 1 s timeout; Slack must get through meanwhile
        released_by_slack.append(slack.got.wait(10))
        time.sleep(1.1)

    # PagerDuty is down, and accepts its third attempt only if Slack has its message by then.
    endpoints["pager"].script = [500, 503, lambda: 202 if slack.got.is_set() else 500]
    endpoints["hook"].script = [hang]
    clock = live_clock()
    write_alerts(lake, [make_alert(first_seen_at=clock())])
    route_once(lake, kpi_contracts, clock)
    assert released_by_slack == [True] and len(slack.received) == 1
    assert len(endpoints["pager"].received) == 1 and len(endpoints["hook"].received) == 1  # both on a retry
    rows = audit(lake)
    pager = rows[(rows["receiver"] == "pager") & (rows["status"] != "sending")]
    assert values(pager, ["status", "response_code", "attempt", "retry_count"]) == [
        ["retrying", 500, 1, 0], ["retrying", 503, 2, 1], ["delivered", 202, 3, 2],
    ]  # fmt: skip
    hook = rows[(rows["receiver"] == "hook") & (rows["status"] != "sending")]
    assert values(hook, ["status", "response_code", "attempt"]) == [["retrying", None, 1], ["delivered", 200, 2]]
    assert hook["detail"].iloc[0] == "timeout: ReadTimeout"


def test_restart_and_replayed_batches_send_nothing_twice(lake: Settings, endpoints, kpi_contracts) -> None:
    clock = live_clock()
    alerts = [make_alert(first_seen_at=clock()), make_alert(kpi="revenue", first_seen_at=clock())]
    write_alerts(lake, alerts)
    route_once(lake, kpi_contracts, clock)
    counts = {name: len(e.received) for name, e in endpoints.items()}
    assert counts == {"slack": 2, "pager": 2, "hook": 2}  # group_by kpi: one message per KPI
    # The router restarts; detect replays its batch (the same rows MERGEd again: a new version).
    write_alerts(lake, [replace(a, updated_at=clock.advance(seconds=5)) for a in alerts])
    restarted = router_of(lake, kpi_contracts, clock)
    try:
        for _ in range(3):
            assert restarted.tick() == []
            clock.advance(minutes=2)
        settle(restarted)
    finally:
        restarted.close()
    assert {name: len(e.received) for name, e in endpoints.items()} == counts


def test_cli_ack_and_silence_reach_the_router(lake: Settings, endpoints, kpi_contracts, monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from lakehouse.cli import app

    monkeypatch.setattr("lakehouse.alerts.cli.console", Console(width=250))
    for key, value in {"TRIVAS_ENV": "test", "TRIVAS_PATHS__VAR": lake.paths.var, "TRIVAS_TABLES__ROOT": lake.tables.root,
                       "TRIVAS_TABLES__CHECKPOINTS": lake.tables.checkpoints}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    clock = live_clock()
    de, fr = make_alert(first_seen_at=clock()), make_alert(kpi="revenue", dimension="country=FR", first_seen_at=clock())
    write_alerts(lake, [de])
    router = router_of(lake, kpi_contracts, clock)
    runner = CliRunner()
    try:
        router.tick()
        settle(router)
        result = runner.invoke(app, ["alerts", "ack", de.alert_id, "--author", "alice"])
        assert result.exit_code == 0, result.output
        silenced = runner.invoke(app, ["alerts", "silence", "kpi=revenue", 'country=~"FR|BE"', "--for", "1h", "--reason", "FR shop migration", "--author", "bob"])
        assert silenced.exit_code == 0, silenced.output
        listed = runner.invoke(app, ["alerts", "silences"])
        assert "FR shop migration" in listed.output
        write_alerts(lake, [de, fr])
        clock.advance(minutes=2)
        sent = router.tick()
        settle(router)
        assert [(n.receiver, n.event) for n in sent] == [("pager", "acknowledged")]  # only PagerDuty wants acks
        assert endpoints["pager"].received[-1][1] == {"routing_key": PD_KEY, "event_action": "acknowledge", "dedup_key": de.alert_id}
        silence_id = silenced.output.split()[1].rstrip(":")
        assert runner.invoke(app, ["alerts", "unsilence", silence_id, "--author", "bob"]).exit_code == 0
        clock.advance(minutes=2)
        assert sorted(n.receiver for n in router.tick()) == ["hook", "pager", "slack"]  # fr, no longer silenced
        settle(router)
        listing = runner.invoke(app, ["alerts", "list"], env={"COLUMNS": "250"})
    finally:
        router.close()
    rows = audit(lake)
    muted = rows[rows["status"] == "silenced"]
    assert set(muted["receiver"]) == {"slack", "pager", "hook"} and set(muted["alert_id"]) == {fr.alert_id}
    assert muted["detail"].str.contains("(bob: FR shop migration)", regex=False).all()
    assert list(rows.loc[(rows["receiver"] == "*") & (rows["alert_id"] == de.alert_id), "status"]) == ["firing", "acknowledged"]
    assert de.alert_id in listing.output and "acknowledged" in listing.output and "notified" in listing.output


def test_secrets_never_reach_logs_or_the_audit_table(
    lake: Settings, endpoints, kpi_contracts, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The Slack URL points at a closed port: its token is in the URL, and the errors must not carry it.
    from lakehouse.runtime.processes import free_port

    monkeypatch.setenv("T_SLACK_URL", f"http://127.0.0.1:{free_port()}/services/{SLACK_TOKEN}")
    endpoints["pager"].script = [400]  # refused for good: no retry
    caplog.set_level(logging.DEBUG)
    clock = live_clock()
    write_alerts(lake, [make_alert(first_seen_at=clock())])
    route_once(lake, kpi_contracts, clock)
    rows = audit(lake)
    slack = rows[(rows["receiver"] == "slack") & (rows["status"] != "sending")]
    assert list(slack["status"]) == ["retrying", "retrying", "retrying", "failed"]
    assert slack["detail"].str.startswith("ConnectError").all()
    assert values(rows[(rows["receiver"] == "pager") & (rows["status"] != "sending")], ["status", "response_code"]) == [["failed", 400]]
    table_text = rows.astype(str).to_string()
    for secret in (SLACK_TOKEN, PD_KEY, HOOK_SECRET):
        assert secret not in caplog.text and secret not in table_text
    assert "notification" in caplog.text  # the log did speak about the failures


def test_alerts_test_route_goes_through_the_real_senders(lake: Settings, endpoints, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from rich.console import Console

    from lakehouse.cli import app

    monkeypatch.setattr("lakehouse.alerts.cli.console", Console(width=250))
    config_file = tmp_path / "alerts.yaml"
    config_file.write_text(ROUTER_CONFIG)
    for key, value in {"TRIVAS_ENV": "test", "TRIVAS_PATHS__VAR": lake.paths.var, "TRIVAS_TABLES__ROOT": lake.tables.root,
                       "TRIVAS_TABLES__CHECKPOINTS": lake.tables.checkpoints, "TRIVAS_ALERTS__FILE": str(config_file)}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(app, ["alerts", "test", "commerce"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert result.output.count("delivered") == 2
    [(_, slack)] = endpoints["slack"].received
    assert slack["blocks"][0]["text"]["text"] == "[TEST:1] test test (commerce)"
    [(_, pager)] = endpoints["pager"].received
    assert pager["payload"]["summary"] == "test notification through route commerce" and pager["payload"]["severity"] == "info"
    assert endpoints["hook"].received == []  # not a receiver of the commerce route


def test_ignores_alerts_older_than_the_horizon(lake: Settings, endpoints, kpi_contracts) -> None:
    clock = live_clock()
    write_alerts(lake, [make_alert(first_seen_at=clock() - timedelta(days=2))])
    router = router_of(lake, kpi_contracts, clock)
    try:
        assert router.tick() == []
    finally:
        router.close()


def test_a_restart_resends_only_what_was_refused(lake: Settings, kpi_contracts) -> None:
    from lakehouse.alerts.dispatch import delivery_key
    from lakehouse.alerts.store import NotificationRow

    log = NotificationLog(lake)
    log.record(
        [
            NotificationRow("n1", "a1", "slack", "root", "firing", "sending", None, 0),
            NotificationRow("n1", "a1", "slack", "root", "firing", "delivered", 200, 1),
            NotificationRow("n2", "a2", "pager", "root", "firing", "sending", None, 0),
            NotificationRow("n2", "a2", "pager", "root", "firing", "retrying", 503, 1),  # refused: resend
            NotificationRow("n3", "a3", "hook", "root", "firing", "sending", None, 0),  # died mid-send: unknown
            NotificationRow("n4", "a4", "hook", "root", "firing", "retrying", None, 1, "timeout: ReadTimeout"),
            NotificationRow("m", "a5", "slack", "root", "firing", "silenced", None, 0, "silenced by s-1"),
        ]
    )
    sent = log.delivered()
    assert sent.keys == {delivery_key("a1", "slack", "firing"), delivery_key("a3", "hook", "firing"), delivery_key("a4", "hook", "firing")}


def test_notification_carries_the_kpi_rows_watermark_finality_and_lineage(lake: Settings, endpoints, kpi_contracts) -> None:
    import pyarrow as pa
    from deltalake import write_deltalake

    from lakehouse.tables import table_location

    clock = live_clock()
    alert = make_alert(first_seen_at=clock())
    start = alert.window_start
    kpi_rows = [  # the alert's window as first written (open), then final; another dimension
        {"kpi": "orders", "grain": "1m", "window_start": start, "window_end": start + timedelta(minutes=1), "dimension": "country=DE",
         "value": 3.0, "numerator": None, "denominator": None, "events": 3, "unit": "orders", "watermark": start,
         "computed_at": start + timedelta(seconds=30), "source_versions": [("silver.events", 41)], "is_final": False},
        {"kpi": "orders", "grain": "1m", "window_start": start, "window_end": start + timedelta(minutes=1), "dimension": "country=DE",
         "value": 3.0, "numerator": None, "denominator": None, "events": 3, "unit": "orders", "watermark": start + timedelta(minutes=6),
         "computed_at": start + timedelta(minutes=6), "source_versions": [("silver.events", 57)], "is_final": True},
        {"kpi": "orders", "grain": "1m", "window_start": start, "window_end": start + timedelta(minutes=1), "dimension": "country=FR",
         "value": 40.0, "numerator": None, "denominator": None, "events": 40, "unit": "orders", "watermark": start,
         "computed_at": start + timedelta(minutes=7), "source_versions": [("silver.events", 60)], "is_final": True},
    ]  # fmt: skip
    stamp = pa.timestamp("us", tz="UTC")
    schema = pa.schema([("kpi", pa.string()), ("grain", pa.string()), ("window_start", stamp), ("window_end", stamp), ("dimension", pa.string()),
                        ("value", pa.float64()), ("numerator", pa.float64()), ("denominator", pa.float64()), ("events", pa.int64()),
                        ("unit", pa.string()), ("watermark", stamp), ("computed_at", stamp),
                        ("source_versions", pa.map_(pa.string(), pa.int64())), ("is_final", pa.bool_())])  # fmt: skip
    write_deltalake(table_location(lake, "gold.kpi"), pa.Table.from_pylist(kpi_rows, schema=schema))
    write_alerts(lake, [alert])
    route_once(lake, kpi_contracts, clock)
    [(_, hook)] = endpoints["hook"].received
    facts = hook["alerts"][0]["facts"]
    watermark = (start + timedelta(minutes=6)).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert (facts["Watermark"], facts["Window final"], facts["Lineage"]) == (watermark, "yes", "gold.kpi@v0 ← silver.events@v57")

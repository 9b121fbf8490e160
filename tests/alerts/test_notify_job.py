"""The ``notify`` pipeline job: alerts MERGEd by Spark (detect's sink, the health reporter) are
routed by the router inside the pipeline, into tables Spark created from the registry."""

from __future__ import annotations

import pytest

from lakehouse.alerts.lifecycle import ALERTS_SCHEMA, ALERTS_TABLE
from lakehouse.config import Settings
from lakehouse.tables import ensure_table, read_table
from tests.alerts.conftest import live_clock, make_alert

pytestmark = [pytest.mark.spark, pytest.mark.integration]

NOTIFY_CONFIG = """
receivers:
  slack: {type: slack, url_env: T_SLACK_URL}
  pager: {type: pagerduty, url_env: T_PD_URL, routing_key_env: T_PD_KEY}
route:
  receiver: slack
  group_by: [kpi]
  group_wait: 0s
  routes:
    - name: pipeline
      matchers: ['kpi="pipeline"']
      receivers: [slack, pager]
inhibit_rules:
  - name: pipeline-down
    source: ['rule=~"pipeline_job_failed|pipeline_job_stopped"']
    target: ['kpi!="pipeline"']
    equal: [job]
"""


def test_drained_notify_job_delivers_spark_written_alerts(
    spark, lake: Settings, endpoints, catalog, kpi_contracts, tmp_path
) -> None:
    from lakehouse.alerts.sink import AlertSink
    from spark_jobs import pipeline
    from spark_jobs.health import FAILED, JobHealth

    config_file = tmp_path / "alerts.yaml"
    config_file.write_text(NOTIFY_CONFIG)
    lake = lake.model_copy(update={"alerts": lake.alerts.model_copy(update={"file": str(config_file)})})  # alerts.file
    clock = live_clock()
    anomaly = make_alert(first_seen_at=clock())
    ensure_table(spark, lake, ALERTS_TABLE, ALERTS_SCHEMA)
    AlertSink(lake).write(spark, [anomaly], "detect_kpi", 0)  # detect's MERGE
    JobHealth(spark, lake, ["refund_risk"]).report("refund_risk", FAILED, 1, RuntimeError("model registry unreachable"))

    pipeline.drain(spark, lake, catalog, kpi_contracts, ["notify"])

    slack = [body for _, body in endpoints["slack"].received]
    assert sorted(b["blocks"][0]["text"]["text"] for b in slack) == [
        "[FIRING:1] orders anomaly_model (country=DE)",
        "[FIRING:1] pipeline pipeline_job_failed (refund_risk)",
    ]
    [(_, page)] = endpoints["pager"].received
    assert page["payload"]["summary"] == "pipeline job refund_risk failed (1 time(s) in a row)"
    assert page["payload"]["severity"] == "critical"
    assert page["payload"]["custom_details"]["Error"] == "model registry unreachable"
    # The runbook is a repository path here (no docs_url): only the dashboard is a link.
    assert page["links"] == [{"href": "http://localhost:8501/", "text": "Dashboard"}] and page["payload"]["custom_details"]["Alert id"] == page["dedup_key"]
    assert page["payload"]["custom_details"]["Runbook"] == "docs/runbooks.md#pipeline-job-failed"  # a repository path: in the details
    # ops.notifications was created by Spark from the registry and appended to by the router.
    delivered = read_table(spark, lake, "ops.notifications").where("status = 'delivered'").select("receiver", "response_code").collect()
    assert sorted((r["receiver"], r["response_code"]) for r in delivered) == [("pager", 200), ("slack", 200), ("slack", 200)]


def test_continuous_notify_query_routes_new_alerts(spark, lake: Settings, endpoints, catalog, kpi_contracts, tmp_path) -> None:
    import time

    from lakehouse.alerts.sink import AlertSink
    from spark_jobs import pipeline

    config_file = tmp_path / "alerts.yaml"
    config_file.write_text(NOTIFY_CONFIG)
    lake = lake.model_copy(update={"alerts": lake.alerts.model_copy(update={"file": str(config_file)})})  # alerts.file
    ensure_table(spark, lake, ALERTS_TABLE, ALERTS_SCHEMA)
    queries = pipeline.start(spark, lake, catalog, kpi_contracts, ["notify"])
    try:
        assert [q.name for q in queries] == ["notify_alerts"]
        alert = make_alert(kpi="revenue", first_seen_at=live_clock()())
        AlertSink(lake).write(spark, [alert], "detect_kpi", 0)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not endpoints["slack"].received:
            assert all(q.isActive for q in queries)
            time.sleep(0.5)
    finally:
        for query in queries:
            query.stop()
    [(_, message)] = endpoints["slack"].received
    assert message["blocks"][0]["text"]["text"] == "[FIRING:1] revenue anomaly_model (country=DE)"


def test_tables_created_by_the_cli_are_accepted_by_the_pipeline(spark, lake: Settings, catalog) -> None:
    """An ack from the CLI before the pipeline ever ran creates ops.alert_commands with delta-rs;
    the pipeline's table preparation (Spark, from the registry) must accept it as declared."""
    from lakehouse.alerts.store import CommandLog
    from spark_jobs import pipeline

    CommandLog(lake).ack("a1", "alice")
    pipeline.prepare_tables(spark, lake, catalog)
    CommandLog(lake).ack("a2", "bob")
    rows = read_table(spark, lake, "ops.alert_commands").select("alert_id", "author", "kind").orderBy("alert_id").collect()
    assert [tuple(r) for r in rows] == [("a1", "alice", "ack"), ("a2", "bob", "ack")]

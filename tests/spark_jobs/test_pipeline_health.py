"""A side job that fails is restarted, reported on ``ops.pipeline_health`` and as an alert,
and never stops the KPI path (real broker, real Spark and Delta, real MLflow registry)."""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
import pytest

from lakehouse.catalog import Catalog
from lakehouse.config import Settings, load_settings
from lakehouse.contracts import contracts
from lakehouse.registry import JOB_STATUS, PIPELINE_HEALTH
from lakehouse.runtime import kafka
from lakehouse.runtime.processes import wait_until
from lakehouse.tables import has_commits, table_location
from models import refund_risk as rr
from spark_jobs.health import RULE_JOB_FAILED
from spark_jobs.pipeline import run_until_stopped
from spark_jobs.refund_risk import REFUND_RISK_TABLE
from tests.spark_jobs.stream_fixtures import produce, seeded_stream

pytestmark = [pytest.mark.spark, pytest.mark.integration, pytest.mark.slow]
JOBS = ("bronze", "silver_gold", "refund_risk")


def health(settings: Settings, table_reader) -> dict[str, dict]:  # noqa: ANN001
    if not has_commits(table_location(settings, JOB_STATUS)):
        return {}  # the runner has not created it yet (its first commit is still being written)
    frame = table_reader(settings, PIPELINE_HEALTH)
    return {row["job"]: row for row in frame.to_dict("records")}


def job_alerts(settings: Settings, table_reader) -> pd.DataFrame:  # noqa: ANN001
    alerts = table_reader(settings, "gold.alerts")
    return alerts[alerts["rule"] == RULE_JOB_FAILED]


def test_a_failing_side_job_is_reported_and_the_kpi_path_goes_on(
    deployment_env: dict[str, str],
    spark,
    catalog: Catalog,
    table_reader,
    tmp_path: Path,  # noqa: ANN001
) -> None:
    env = {**deployment_env, "TRIVAS_MLFLOW__TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    settings = load_settings("test", environ=env)
    kafka.ensure_topics(settings, catalog)
    produce(settings, seeded_stream(catalog, settings, seed=5, minutes=3, rate=20))
    # The champion the refund-risk job needs is trained now and registered only later.
    history = rr.generated_orders(days=7)
    training = rr.train_refund_model(history, **rr.generated_split(history))

    stop, failure = threading.Event(), []

    def run() -> None:
        try:
            run_until_stopped(spark, settings, catalog, contracts(), JOBS, stop=stop)
        except Exception as error:  # noqa: BLE001 - the test asserts there is none
            failure.append(error)

    runner = threading.Thread(target=run, name="pipeline-under-test", daemon=True)
    runner.start()
    try:
        # 1. No refund-risk champion: the job fails at start, is reported, and is retried.
        wait_until(
            lambda: health(settings, table_reader).get("refund_risk", {}).get("state") == "failed",
            240,
            "refund_risk reported as failed",
        )
        failed = health(settings, table_reader)["refund_risk"]
        assert "trivas model bootstrap" in failed["error"] and failed["failures"] >= 1
        assert failed["restart_at"] is not None and not pd.isna(failed["restart_at"])
        firing = job_alerts(settings, table_reader)
        assert firing[["kpi", "dimension", "state"]].values.tolist() == [
            ["pipeline", "refund_risk", "firing"]
        ]

        # The KPI path is untouched: it runs and gold fills.
        wait_until(
            lambda: health(settings, table_reader).get("silver_gold", {}).get("state") == "running",
            240,
            "silver_gold running",
        )
        wait_until(lambda: len(table_reader(settings, "gold.kpi")) > 0, 240, "gold.kpi rows")
        assert not failure and runner.is_alive()

        # 2. The champion appears: the next restart runs, the alert resolves, orders are scored.
        rr.register_refund_model(
            training,
            tracking_uri=settings.mlflow.tracking_uri,
            model_name=settings.mlflow.refund_model,
            training_data="generated",
        )
        wait_until(
            lambda: health(settings, table_reader)["refund_risk"]["state"] == "running",
            300,
            "refund_risk running again",
        )
        resolved = job_alerts(settings, table_reader)
        assert resolved[["dimension", "state"]].values.tolist() == [["refund_risk", "resolved"]]

        def every_placed_order_scored() -> bool:
            orders = table_reader(settings, "silver.orders")
            placed = set(orders.loc[orders["event_type"] == "order_placed", "order_id"])
            return (
                bool(placed)
                and set(table_reader(settings, REFUND_RISK_TABLE)["order_id"]) == placed
            )

        wait_until(every_placed_order_scored, 240, "every placed order scored")
    finally:
        stop.set()
        runner.join(180)
    assert not failure, failure
    assert {
        job: row["state"] for job, row in health(settings, table_reader).items()
    } == dict.fromkeys(JOBS, "stopped")

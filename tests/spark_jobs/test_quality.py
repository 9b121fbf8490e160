"""Validation suites on real Delta tables: planted violations are caught, clean data passes,
outcomes land in ``ops.validations`` and a failure reaches on-call through the alert router.

Silver rows are clean playground events read by the contract's own reader and written with
delta-rs as the hot path writes them (:mod:`lakehouse.generator.silver_rows`) into tables
Spark created from the registry; the violations are planted into those rows.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from pyspark.sql.pandas.types import to_arrow_schema

from lakehouse.alerts.lifecycle import (
    ALERTS_SCHEMA,
    ALERTS_TABLE,
    FIRING,
    RESOLVED,
    RULE_DATA_QUALITY,
)
from lakehouse.config import Settings
from lakehouse.generator.shop import Shop, ShopConfig
from lakehouse.generator.silver_rows import silver_rows, silver_table
from lakehouse.registry import KPI, KPI_SCHEMA, SILVER_EVENTS
from lakehouse.suites import load_suites
from lakehouse.tables import ensure_declared, ensure_table, read_pandas, table_location
from lakehouse.validations import VALIDATIONS, QualityCheck, Window
from tests.alerts.conftest import endpoints  # noqa: F401 - the local PagerDuty endpoint fixture

pytestmark = [pytest.mark.spark]

START = datetime(2026, 11, 27, 20, 0, tzinfo=UTC)
WINDOW = Window(START, START + timedelta(minutes=8))  # long enough for support tickets
INGESTED = START + timedelta(minutes=8, seconds=30)
NOW = INGESTED + timedelta(seconds=10)  # within every freshness SLA of the contracts
SILVER_TABLES = ["silver.web_events", "silver.orders", "silver.payments", "silver.ad_events", "silver.support_tickets", "silver.inventory_movements"]
WEEK = timedelta(days=7)


@pytest.fixture(scope="module")
def clean_rows(catalog) -> list[dict]:  # noqa: ANN001
    """Eight minutes of the playground shop as silver rows (every domain has some)."""
    events = Shop(ShopConfig(seed=3, events_per_second=5), START).events(WINDOW.until)
    return silver_rows(events, catalog, INGESTED, b"quality-tests-key-0123456789abcd")


@pytest.fixture(scope="module")
def check(tmp_path_factory) -> QualityCheck:  # noqa: ANN001
    """One suite runner for the module (building GX's context takes seconds); each test
    points it at its own lake."""
    from lakehouse.config import load_settings

    var = tmp_path_factory.mktemp("quality")
    return QualityCheck(load_settings("test", environ={"TRIVAS_PATHS__VAR": str(var), "TRIVAS_TABLES__ROOT": str(var / "lake")}))


def use_lake(check: QualityCheck, lake: Settings, alerts=None) -> QualityCheck:  # noqa: ANN001
    from lakehouse.alerts.store import DeltaLog
    from lakehouse.validations import VALIDATIONS_SCHEMA

    check.settings, check.alerts = lake, alerts
    check.log = DeltaLog(lake, VALIDATIONS, VALIDATIONS_SCHEMA)
    return check


def write_silver(spark, lake: Settings, rows: list[dict]) -> None:  # noqa: ANN001
    from deltalake import write_deltalake

    ensure_declared(spark, lake, SILVER_EVENTS)
    write_deltalake(table_location(lake, SILVER_EVENTS), silver_table(rows), mode="append")


def write_kpi_history(spark, lake: Settings, kpi: str, per_minute: dict[datetime, float]) -> None:  # noqa: ANN001
    """Current gold.kpi rows of ``kpi``'s total, one per minute (as the hot path appends them)."""
    from deltalake import write_deltalake

    ensure_declared(spark, lake, KPI)
    rows = [
        {"kpi": kpi, "grain": "1m", "window_start": start, "window_end": start + timedelta(minutes=1), "dimension": "all",
         "value": value, "numerator": None, "denominator": None, "events": int(value), "unit": "orders",
         "watermark": None, "computed_at": start + timedelta(minutes=2), "source_versions": None, "is_final": True}
        for start, value in per_minute.items()
    ]  # fmt: skip
    write_deltalake(table_location(lake, KPI), pa.Table.from_pylist(rows, schema=to_arrow_schema(KPI_SCHEMA)), mode="append")


def orders_per_minute(rows: list[dict], shift: timedelta = timedelta(0), scale: float = 1.0) -> dict[datetime, float]:
    """The count of order_placed per minute of the rows (independently of the suites)."""
    counts = Counter(r["event_time"].replace(second=0, microsecond=0) for r in rows if r["event_type"] == "order_placed")
    return {minute - shift: n * scale for minute, n in counts.items()}


def failures(run) -> dict[str, set[str]]:  # noqa: ANN001
    return {t.table: {o.expectation for o in t.failed} for t in run.tables if t.failed}


def outcome(run, table: str, label: str):  # noqa: ANN001, ANN201
    [found] = [o for t in run.tables if t.table == table for o in t.outcomes if o.expectation == label]
    return found


def test_clean_silver_passes_every_expectation_and_is_recorded(spark, lake: Settings, clean_rows, check) -> None:  # noqa: ANN001
    write_silver(spark, lake, clean_rows)
    write_kpi_history(spark, lake, "orders", orders_per_minute(clean_rows, shift=WEEK))

    run = use_lake(check, lake).run(WINDOW, SILVER_TABLES, now=NOW)

    assert failures(run) == {}
    suites = load_suites()
    recorded = read_pandas(lake, VALIDATIONS)
    assert len(recorded) == sum(len(suites[t]["expectations"]) for t in SILVER_TABLES)
    assert recorded["success"].all() and set(recorded["run_id"]) == {run.run_id}
    rows_per_table = Counter(r["domain"] for r in clean_rows)
    assert {t: int(recorded[recorded.table == t]["rows"].iloc[0]) for t in SILVER_TABLES} == {
        f"silver.{spec.table}": rows_per_table[d] for d, spec in load_catalog_domains().items()
    }
    # The volume band comes from last week's orders in gold.kpi: the same count here.
    volume = outcome(run, "silver.orders", "expect_table_row_count_to_be_between() where event_type in ['order_placed']")
    placed = sum(1 for r in clean_rows if r["event_type"] == "order_placed")
    assert volume.observed_value["rows"] == placed and volume.observed_value["expected"] == placed


def load_catalog_domains():  # noqa: ANN201
    from lakehouse.catalog import catalog

    return catalog().domains


def plant_null_customer(rows: list[dict]) -> tuple[list[dict], str]:
    victim = next(r for r in rows if r["event_type"] == "order_placed")
    return [dict(r, customer_id=None) if r is victim else r for r in rows], victim["event_id"]


def plant_currency(rows: list[dict]) -> tuple[list[dict], str]:
    victim = next(r for r in rows if r["event_type"] == "order_placed")
    return [dict(r, currency="USD") if r is victim else r for r in rows], victim["event_id"]


def plant_negative_amount(rows: list[dict]) -> tuple[list[dict], str]:
    victim = next(r for r in rows if r["event_type"] == "order_placed")
    return [dict(r, amount=-5.0) if r is victim else r for r in rows], victim["event_id"]


def plant_duplicate(rows: list[dict]) -> tuple[list[dict], str]:
    placed = [r for r in rows if r["event_type"] == "order_placed"]
    first, second = placed[0], placed[1]
    return [dict(r, event_id=first["event_id"]) if r is second else r for r in rows], first["event_id"]


@pytest.mark.parametrize(
    ("plant", "expectation", "failing_keys"),
    [
        (plant_null_customer, "expect_column_values_to_not_be_null(customer_id)", lambda key: [{"event_id": key, "customer_id": "[tokenize]"}]),
        (plant_currency, "expect_column_values_to_be_in_set(currency)", lambda key: [{"event_id": key, "currency": "USD"}]),
        (plant_negative_amount, "expect_column_values_to_be_between(amount)", lambda key: [{"event_id": key, "amount": -5.0}]),
        (plant_duplicate, "expect_column_values_to_be_unique(event_id)", lambda key: [{"event_id": key}, {"event_id": key}]),
    ],
    ids=["null-required-field", "value-not-allowed", "amount-out-of-range", "duplicate-key"],
)
def test_a_planted_violation_fails_exactly_its_expectation(spark, lake: Settings, clean_rows, check, plant, expectation, failing_keys) -> None:  # noqa: ANN001
    rows, key = plant(clean_rows)
    write_silver(spark, lake, rows)

    run = use_lake(check, lake).run(WINDOW, ["silver.orders"], now=NOW)

    assert failures(run) == {"silver.orders": {expectation}}
    failed = outcome(run, "silver.orders", expectation)
    assert failed.unexpected_count == len(failing_keys(key))
    assert failed.failing_keys == failing_keys(key)
    recorded = read_pandas(lake, VALIDATIONS)
    bad = recorded[~recorded["success"]]
    assert bad[["table", "expectation", "unexpected_count"]].values.tolist() == [["silver.orders", expectation, len(failing_keys(key))]]
    assert json.loads(bad["failing_keys"].iloc[0]) == failing_keys(key)
    assert recorded["success"].sum() == len(load_suites()["silver.orders"]["expectations"]) - 1


def test_a_stale_table_fails_its_freshness(spark, lake: Settings, clean_rows, check) -> None:  # noqa: ANN001
    write_silver(spark, lake, clean_rows)
    an_hour_later = NOW + timedelta(hours=1)

    run = use_lake(check, lake).run(WINDOW, ["silver.orders", "silver.support_tickets"], now=an_hour_later)

    assert failures(run) == {t: {"expect_column_max_to_be_between(ingested_at)"} for t in ("silver.orders", "silver.support_tickets")}
    assert outcome(run, "silver.orders", "expect_column_max_to_be_between(ingested_at)").observed_value == INGESTED.isoformat()


def test_a_row_count_far_outside_the_seasonal_band_fails(spark, lake: Settings, clean_rows, check) -> None:  # noqa: ANN001
    write_silver(spark, lake, clean_rows)
    write_kpi_history(spark, lake, "orders", orders_per_minute(clean_rows, shift=WEEK, scale=10))
    placed = sum(1 for r in clean_rows if r["event_type"] == "order_placed")

    run = use_lake(check, lake).run(WINDOW, ["silver.orders"], now=NOW)

    label = "expect_table_row_count_to_be_between() where event_type in ['order_placed']"
    assert failures(run) == {"silver.orders": {label}}
    seasonal = outcome(run, "silver.orders", label).observed_value
    expected = 10 * placed
    assert seasonal["rows"] == placed and seasonal["expected"] == expected
    assert seasonal["band"] == [int(expected * 0.5), int(expected * 1.5)]


def test_gold_kpi_suite_catches_a_negative_revenue_and_a_duplicate_row(spark, lake: Settings, check) -> None:  # noqa: ANN001
    from deltalake import write_deltalake

    ensure_declared(spark, lake, KPI)
    computed = NOW - timedelta(seconds=5)
    base = {"grain": "1m", "window_start": START, "window_end": START + timedelta(minutes=1), "dimension": "all", "numerator": None,
            "denominator": None, "events": 3, "watermark": None, "computed_at": computed, "source_versions": None, "is_final": False}  # fmt: skip
    rows = [dict(base, kpi="orders", value=3.0, unit="orders"), dict(base, kpi="revenue", value=-12.5, unit="EUR"), dict(base, kpi="orders", value=3.0, unit="orders")]
    write_deltalake(table_location(lake, KPI), pa.Table.from_pylist(rows, schema=to_arrow_schema(KPI_SCHEMA)), mode="append")

    run = use_lake(check, lake).run(WINDOW, ["gold.kpi"], now=NOW)

    [gold] = run.tables
    failed = {o.expectation: o for o in gold.failed}
    assert set(failed) == {
        "expect_compound_columns_to_be_unique(kpi, grain, window_start, dimension, computed_at)",
        next(label for label in (o.expectation for o in gold.outcomes) if label.startswith("expect_column_values_to_be_between(value)")),
    }
    negative = next(o for label, o in failed.items() if label.startswith("expect_column_values_to_be_between(value)"))
    assert negative.unexpected_count == 1 and negative.failing_keys[0]["kpi"] == "revenue" and negative.failing_keys[0]["value"] == -12.5


@pytest.mark.integration
def test_the_data_quality_page_shows_the_latest_results_and_links_the_data_docs(spark, lake: Settings, clean_rows, check, monkeypatch) -> None:  # noqa: ANN001
    from streamlit.testing.v1 import AppTest

    from tests.app.conftest import HOME, app_process

    write_silver(spark, lake, clean_rows)
    use_lake(check, lake).run(WINDOW, ["silver.orders"], now=NOW)  # passes
    rows, key = plant_currency(clean_rows)
    write_silver(spark, lake, [dict(r, event_id=f"late-{r['event_id']}") for r in rows if r["event_id"] == key])
    use_lake(check, lake).run(WINDOW, ["silver.orders"], now=NOW + timedelta(seconds=1))  # the newest: fails
    docs = check.runner.docs_dir
    environ = {"TRIVAS_ENV": "test", "TRIVAS_TABLES__ROOT": lake.tables.root, "TRIVAS_PATHS__VAR": str(docs.parent.parent),
               "TRIVAS_PATHS__LOGS": str(lake.path(lake.paths.var) / "logs")}  # fmt: skip

    with app_process(environ, monkeypatch):
        app = AppTest.from_file(HOME, default_timeout=60)
        app.run()
        app.switch_page("views/quality.py").run()

    assert not app.exception
    assert "Validation suites: 1 tables, 1 failing expectations" in [h.value for h in app.subheader]
    summary, failing = app.table[0].value, app.table[1].value
    assert summary.loc["silver.orders", "failed"] == 1 and summary.loc["silver.orders", "rows"] == sum(r["domain"] == "orders" for r in clean_rows) + 1
    assert failing["expectation"].tolist() == ["expect_column_values_to_be_in_set(currency)"]
    assert json.loads(failing["failing_keys"].iloc[0]) == [{"event_id": f"late-{key}", "currency": "USD"}]
    assert any((docs / "index.html").as_uri() in m.value for m in app.markdown)
    assert "silver.orders" in (docs / "index.html").read_text()


NOTIFY_CONFIG = """
receivers:
  pager: {type: pagerduty, url_env: T_PD_URL, routing_key_env: T_PD_KEY}
route:
  receiver: pager
  group_by: [kpi]
  group_wait: 0s
"""


@pytest.mark.integration
def test_a_failing_expectation_reaches_on_call_and_resolves(spark, lake: Settings, clean_rows, check, catalog, endpoints, tmp_path) -> None:  # noqa: ANN001, F811
    from lakehouse.contracts import contracts
    from spark_jobs import pipeline
    from spark_jobs.quality import QualityAlerts

    config_file = tmp_path / "alerts.yaml"
    config_file.write_text(NOTIFY_CONFIG)
    lake = lake.model_copy(update={"alerts": lake.alerts.model_copy(update={"file": str(config_file)})})  # alerts.file
    rows, _ = plant_currency(clean_rows)
    write_silver(spark, lake, rows)
    ensure_table(spark, lake, ALERTS_TABLE, ALERTS_SCHEMA)
    now = datetime.now(UTC)  # the router ignores alerts older than a day
    window = Window(WINDOW.since, WINDOW.until)

    use_lake(check, lake, QualityAlerts(spark, lake)).run(window, ["silver.orders"], now=now)
    pipeline.drain(spark, lake, catalog, contracts(), ["notify"])

    [(_, page)] = endpoints["pager"].received
    assert page["payload"]["summary"] == "data quality of silver.orders: 2 expectation(s) failed"
    details = page["payload"]["custom_details"]
    assert details["Runbook"] == "docs/runbooks.md#data-quality"
    assert "expect_column_values_to_be_in_set(currency)" in details["Error"]
    assert "expect_column_max_to_be_between(ingested_at)" in details["Error"]  # stale as of now too
    alerts = read_pandas(lake, ALERTS_TABLE)
    assert alerts[["kpi", "dimension", "rule", "state"]].values.tolist() == [["data_quality", "silver.orders", RULE_DATA_QUALITY, FIRING]]

    # A clean, fresh run resolves it (a new process picks the open alert up from gold.alerts).
    write_silver(spark, lake, [dict(r, event_id=f"fresh-{i}", ingested_at=now, event_time=now - timedelta(minutes=1))
                               for i, r in enumerate(clean_rows) if r["event_type"] == "order_placed"])  # fmt: skip
    use_lake(check, lake, QualityAlerts(spark, lake)).run(Window(now - timedelta(minutes=3), now), ["silver.orders"], now=now + timedelta(seconds=5))
    alerts = read_pandas(lake, ALERTS_TABLE)
    assert alerts[["dimension", "state"]].values.tolist() == [["silver.orders", RESOLVED]]


def test_cli_quality_run_prints_every_expectation_and_fails_on_a_violation(spark, lake: Settings, clean_rows, monkeypatch) -> None:  # noqa: ANN001
    from typer.testing import CliRunner

    from lakehouse.cli import app

    rows, key = plant_currency(clean_rows)
    write_silver(spark, lake, rows)
    for name, value in {"TRIVAS_ENV": "test", "TRIVAS_PATHS__VAR": str(lake.path(lake.paths.var)), "TRIVAS_TABLES__ROOT": lake.tables.root}.items():
        monkeypatch.setenv(name, value)

    result = CliRunner().invoke(app, ["quality", "run", "silver.orders", "--until", WINDOW.until.strftime("%Y-%m-%dT%H:%M:%S"), "--minutes", "8", "--no-record"])

    assert result.exit_code == 1, result.output
    lines = [line.strip() for line in result.output.splitlines()]
    failed = [line for line in lines if line.startswith("FAIL")]
    assert len(failed) == 2  # the planted currency, and freshness (the rows are old by now)
    assert any(line.startswith("FAIL expect_column_values_to_be_in_set(currency)") and key in line for line in failed)
    assert sum(line.startswith("pass") for line in lines) == len(load_suites()["silver.orders"]["expectations"]) - 2
    assert not Path(table_location(lake, VALIDATIONS)).exists()  # --no-record: nothing written


def test_cli_quality_run_names_the_suites_of_an_unknown_table(lake: Settings, monkeypatch) -> None:  # noqa: ANN001
    from typer.testing import CliRunner

    from lakehouse.cli import app

    monkeypatch.setenv("TRIVAS_ENV", "test")
    monkeypatch.setenv("TRIVAS_TABLES__ROOT", lake.tables.root)
    result = CliRunner().invoke(app, ["quality", "run", "silver.nope", "--no-record"])
    assert result.exit_code == 2 and "silver.orders" in result.output


@pytest.mark.integration
def test_data_written_by_the_real_pipeline_passes_every_suite(spark, deployment: Settings, catalog, check) -> None:  # noqa: ANN001
    """A seeded stream with duplicates, late, out-of-order and malformed records through a real
    broker and the KPI path: silver and gold.kpi pass every expectation of their suites."""
    from lakehouse.contracts import contracts
    from spark_jobs import pipeline
    from tests.spark_jobs.stream_fixtures import START as STREAM_START
    from tests.spark_jobs.stream_fixtures import produce, seeded_stream

    # The stream's records reached Kafka at their simulated arrival times (silver's
    # ingested_at): freshness is judged on the stream's clock, as of the end of its traffic
    # (regular records arrive within seconds of their event; delayed faults later).
    minutes = 8
    stream = seeded_stream(catalog, deployment, seed=5, minutes=minutes, rate=5)
    produce(deployment, stream)
    finished = pipeline.drain(spark, deployment, catalog, contracts(), ["bronze", "silver_gold"])
    assert all(q.exception() is None for q in finished.values())

    window = Window(STREAM_START - timedelta(hours=1), STREAM_START + timedelta(hours=1))
    run = use_lake(check, deployment).run(window, now=STREAM_START + timedelta(minutes=minutes, seconds=5))

    assert failures(run) == {}
    assert {t.table for t in run.tables} == set(load_suites())
    assert all(t.outcomes[0].rows > 0 for t in run.tables)
    recorded = read_pandas(deployment, VALIDATIONS)
    assert len(recorded) == sum(len(s["expectations"]) for s in load_suites().values()) and recorded["success"].all()


def test_the_pipelines_quality_schedule_validates_the_recent_window_of_every_table(spark, lake: Settings, clean_rows) -> None:  # noqa: ANN001
    from spark_jobs.quality import QualitySchedule

    write_silver(spark, lake, clean_rows)
    schedule = QualitySchedule(spark, lake)

    run = schedule.run_once(now=NOW)  # the window: the last quality.window_minutes before NOW

    assert run is not None and run.window == Window(NOW - timedelta(minutes=lake.quality.window_minutes), NOW)
    # Silver is clean and fresh; gold.kpi has no row yet: stale, and only that fails.
    assert failures(run) == {"gold.kpi": {"expect_column_max_to_be_between(computed_at)"}}
    recorded = read_pandas(lake, VALIDATIONS)
    assert len(recorded) == sum(len(s["expectations"]) for s in load_suites().values())
    alerts = read_pandas(lake, ALERTS_TABLE)
    assert alerts[["kpi", "grain", "dimension", "rule", "state", "observed"]].values.tolist() == [
        ["data_quality", "suite", "gold.kpi", RULE_DATA_QUALITY, FIRING, 1.0]
    ]


def test_a_failing_quality_run_is_logged_and_never_stops_the_pipeline(spark, lake: Settings, clean_rows, caplog) -> None:  # noqa: ANN001
    from spark_jobs.quality import QualitySchedule

    write_silver(spark, lake, clean_rows)
    schedule = QualitySchedule(spark, lake)
    assert schedule.run_once(now=NOW) is not None
    broken = Path(table_location(lake, SILVER_EVENTS))
    shutil.rmtree(broken / "_delta_log")
    (broken / "_delta_log").write_text("not a Delta log")  # a corrupt table: reading it raises

    assert schedule.run_once(now=NOW) is None
    assert "quality run failed; will retry" in caplog.text
    assert len(schedule.runs) == 1  # the good run is kept; the next period tries again

"""The Streamlit app: tile arithmetic, its reads, every page under AppTest, and the real app
in a real browser (one session visiting every page) against ground truth from the tables."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from app import data
from app.data import format_value, kpi_tiles
from lakehouse.alerts.lifecycle import ALERTS_SCHEMA, ALERTS_TABLE
from lakehouse.config import Settings, load_settings
from lakehouse.contracts import contracts
from lakehouse.freshness import FRESHNESS_SCHEMA
from lakehouse.registry import (
    FRESHNESS,
    JOB_STATUS,
    JOB_STATUS_SCHEMA,
    QUARANTINE,
    QUARANTINE_SCHEMA,
)
from lakehouse.rollup import roll_up
from lakehouse.tables import table_location
from tests.app.conftest import HOME, app_process, signed_in
from tests.kpi_rows import kpi_row, write_kpi_rows, write_table

EMAIL = "jane.doe@example.com"


def kpi_frame(now: datetime) -> pd.DataFrame:
    """Two windows of ``orders`` and ``conversion_rate`` as gold.kpi holds them."""
    open_start = now.replace(second=0, microsecond=0)
    closed_start = open_start - timedelta(minutes=1)
    rows = []
    for kpi, closed, partial, unit in (("orders", 41.0, 17.0, "orders"), ("conversion_rate", 0.031, 0.027, "ratio")):
        for start, value, final in ((closed_start, closed, True), (open_start, partial, False)):
            ratio = {"numerator": value * 1000, "denominator": 1000.0} if unit == "ratio" else {}
            row = kpi_row(kpi, start, value, unit=unit, computed_at=now - timedelta(seconds=3), is_final=final, **ratio)
            rows.append(row | {"watermark": closed_start + timedelta(minutes=1)})
    return pd.DataFrame(rows)


@pytest.mark.unit
def test_tiles_show_the_open_window_with_freshness_and_lineage() -> None:
    now = datetime(2026, 11, 28, 12, 30, 20, tzinfo=UTC)
    frame = kpi_frame(now)
    frame["source_versions"] = [dict(v) for v in frame["source_versions"]]
    tiles = {t.kpi: t for t in kpi_tiles(frame, contracts(), now)}
    orders = tiles["orders"]
    assert (orders.value, orders.previous, orders.is_final) == (17.0, 41.0, False)
    assert orders.lag_seconds == pytest.approx(3.0) and orders.within_sla
    assert orders.lineage == "gold.kpi ← silver.orders (read up to silver.events@v12)"
    assert tiles["conversion_rate"].lineage.startswith("gold.kpi ← gold.kpi[orders], gold.kpi[sessions]")
    # The pipeline stops: the same rows five minutes later are stale.
    stale = {t.kpi: t for t in kpi_tiles(frame, contracts(), now + timedelta(minutes=5))}["orders"]
    assert not stale.within_sla
    assert data.Freshness(stale.computed_at, None, stale.lag_seconds, stale.freshness_sla_seconds).status == "stale"
    assert tiles["revenue"].value is None
    assert format_value(0.031, "ratio") == "3.1%" and format_value(1234.5, "EUR") == "€1,234.50"


@pytest.mark.unit
def test_restated_windows_are_the_finals_that_changed() -> None:
    start = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    log = pd.DataFrame([
        kpi_row("orders", start, 3, is_final=False, computed_at=start + timedelta(seconds=30)),
        kpi_row("orders", start, 5, computed_at=start + timedelta(minutes=2)),  # first shown final: 5
        kpi_row("orders", start, 6, computed_at=start + timedelta(minutes=9)),  # a late event: 6
        kpi_row("orders", start + timedelta(minutes=1), 4, computed_at=start + timedelta(minutes=3)),
    ])  # fmt: skip
    restated = data.restated_windows(log)
    assert restated[["window_start", "first_value", "value"]].to_dict("records") == [
        {"window_start": start, "first_value": 5.0, "value": 6.0}
    ]


@pytest.mark.unit
def test_backfilled_windows_are_marked_restated_with_their_run() -> None:
    start = datetime(2011, 1, 3, 9, 0, tzinfo=UTC)
    backfilled = kpi_row("orders", start, 7, computed_at=start + timedelta(days=700))  # written first by a backfill
    backfilled["source_versions"] = [("silver.events", 40), ("backfill:1f2e3d", 2)]
    rewritten = kpi_row("orders", start + timedelta(minutes=1), 4, computed_at=start + timedelta(days=700))
    rewritten["source_versions"] = [("silver.events", 40), ("backfill:1f2e3d", 2)]  # same value again: still marked
    log = pd.DataFrame([
        backfilled,
        kpi_row("orders", start + timedelta(minutes=1), 4, computed_at=start + timedelta(minutes=2)),
        rewritten,
        kpi_row("orders", start + timedelta(minutes=2), 3, computed_at=start + timedelta(minutes=3)),  # live only
    ])  # fmt: skip
    restated = data.restated_windows(log)
    assert restated[["window_start", "value", "backfill"]].to_dict("records") == [
        {"window_start": start, "value": 7.0, "backfill": "1f2e3d"},
        {"window_start": start + timedelta(minutes=1), "value": 4.0, "backfill": "1f2e3d"},
    ]
    assert restated["first_value"].tolist() == [7.0, 4.0]  # the first final value shown
    assert data.backfill_run([("silver.events", 3)]) is None


@pytest.mark.unit
def test_kafka_lag_is_latest_minus_end_offsets_per_topic(tmp_path: Path) -> None:
    document = {
        "name": "silver_gold", "timestamp": "2026-11-28T12:00:00.000Z",
        "sources": [{"description": "KafkaV2[Subscribe[raw.orders, raw.web]]",
                     "endOffset": {"raw.orders": {"0": 90, "1": 100}, "raw.web": {"0": 7}},
                     "latestOffset": {"raw.orders": {"0": 100, "1": 100}, "raw.web": {"0": 7}}}],
    }  # fmt: skip
    log = tmp_path / "progress.jsonl"
    log.write_text("not json\n" + json.dumps(document) + "\n")
    lag = data.kafka_lag(log).set_index("topic")["lag"].to_dict()
    assert lag == {"raw.orders": 10, "raw.web": 0}


@pytest.mark.unit
def test_sample_records_are_pii_scrubbed() -> None:
    raw = {"event_type": "order_placed", "event_id": "x", "payload": {"email": EMAIL, "phone": "+49 170 1234567", "amount": "a lot"}}
    frame = pd.DataFrame([{"reason": "schema_violation", "event_type": "order_placed", "raw_value": json.dumps(raw),
                           "quarantined_at": datetime.now(UTC)}])  # fmt: skip
    record = data.scrubbed_samples(frame)["record"].iloc[0]
    assert EMAIL not in record and "1234567" not in record and "a lot" in record


def test_quarantine_counts_per_source_and_five_minutes() -> None:
    t0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    frame = pd.DataFrame({
        "quarantined_at": [t0, t0 + timedelta(minutes=1), t0 + timedelta(minutes=4, seconds=59), t0 + timedelta(minutes=5), t0],
        "source": ["sdk:web", "sdk:web", "webhook:stripe", "sdk:web", None],
    })  # fmt: skip
    counts = data.counts_over_time(frame, "quarantined_at", ["source"])
    got = {(int((b - pd.Timestamp(t0)) / pd.Timedelta(minutes=5)), s): n for b, s, n in counts.itertuples(index=False)}
    assert got == {(0, "sdk:web"): 2, (0, "webhook:stripe"): 1, (0, "?"): 1, (1, "sdk:web"): 1}


# -- a deployment's tables, and ground truth from them -----------------------------------------


def seed(settings: Settings, now: datetime) -> dict[str, str]:
    """Tables as the pipeline leaves them (Spark's schemas, written with delta-rs): today's and
    last week's orders (hours before this one rolled up, this hour's minutes not yet), a
    restated window, revenue by country, a stale ticket volume, a firing alert, quarantined
    records with PII, the job status and the hot path's last batch. Returns what the pages
    must show, computed here from the rows written (not through the app's code)."""
    minute = now.replace(second=0, microsecond=0)
    hour = minute.replace(minute=0)
    older = [minute - timedelta(hours=2), minute - timedelta(hours=1)]  # before this hour (maybe yesterday)
    rows = []
    for start, value in zip(older, (5.0, 7.0), strict=True):
        rows += [kpi_row("orders", start, value), kpi_row("orders", start - timedelta(days=7), value + 1)]
        rows += [kpi_row("revenue", start, 100 * value, unit="EUR", dimension=d) for d in ("country=DE", "country=FR")]
    write_kpi_rows(settings, [r for r in rows if r["window_start"] < hour])
    roll_up(settings, contracts())  # the scheduled job ran before this hour's rows arrived
    rows = [r for r in rows if r["window_start"] >= hour]
    closed, fresh = minute - timedelta(minutes=1), now - timedelta(seconds=2)
    rows += [
        kpi_row("orders", closed, 40, computed_at=fresh - timedelta(seconds=40)),  # first shown final: 40
        kpi_row("orders", closed, 41, computed_at=fresh),  # restated by a late order: 41
        kpi_row("orders", minute, 9, is_final=False, computed_at=fresh - timedelta(seconds=20)),
        kpi_row("orders", minute, 17, is_final=False, computed_at=fresh),
        kpi_row("orders", closed - timedelta(days=7), 30), kpi_row("orders", minute - timedelta(days=7), 10),
        kpi_row("ticket_volume", closed, 3, unit="tickets", computed_at=now - timedelta(minutes=10)),
    ]  # fmt: skip
    write_kpi_rows(settings, rows)
    write_table(settings, ALERTS_TABLE, ALERTS_SCHEMA, [{
        "alert_id": "a1", "kpi": "orders", "grain": "1m", "window_start": closed, "window_end": minute, "dimension": "all",
        "observed": 41.0, "expected": 20.0, "lower": 12.0, "upper": 28.0, "score": 4.0, "confidence": 0.9,
        "model_version": "1", "rule": "anomaly_model", "state": "firing", "first_seen_at": now, "updated_at": now,
    }])  # fmt: skip
    quarantined = {"event_type": "order_placed", "event_id": "e1", "payload": {"email": EMAIL, "amount": -3}}
    write_table(settings, QUARANTINE, QUARANTINE_SCHEMA, [{
        "quarantine_id": f"q{i}", "reason": reason, "event_type": "order_placed", "event_id": f"e{i}", "contract_version": 1,
        "source": "sdk:web", "raw_value": json.dumps(quarantined), "kafka_topic": "raw.orders", "kafka_partition": 0,
        "kafka_offset": i, "kafka_timestamp": now, "quarantined_at": now,
    } for i, reason in enumerate(["schema_violation", "schema_violation", "unknown_event_type"])])  # fmt: skip
    write_table(settings, JOB_STATUS, JOB_STATUS_SCHEMA, [
        {"job": "silver_gold", "state": "running", "failures": 0, "error": None, "restart_at": None, "recorded_at": now},
    ])  # fmt: skip
    write_table(settings, FRESHNESS, FRESHNESS_SCHEMA, [{
        "query": "silver_gold", "batch_id": 41, "watermark": closed, "max_event_time": now, "input_rows": 10,
        "input_rows_per_second": 20.0, "processed_rows_per_second": 25.0, "batch_duration_ms": 400, "state_rows": 5,
        "source_versions": {}, "recorded_at": now,
    }])  # fmt: skip
    return ground_truth(settings, now)


def ground_truth(settings: Settings, now: datetime) -> dict[str, str]:
    """Today's and last week's orders from gold.kpi's rows: latest update per window, summed."""
    from lakehouse.tables import read_pandas

    log = read_pandas(settings, "gold.kpi")
    current = log.sort_values("computed_at").drop_duplicates(["kpi", "grain", "window_start", "dimension"], keep="last")
    midnight = pd.Timestamp(now).floor("1D")
    today = current[(current.kpi == "orders") & (current.dimension == "all") & (current.window_start >= midnight)]
    week = current[(current.kpi == "orders") & (current.window_start >= midnight - pd.Timedelta(days=7)) & (current.window_start < pd.Timestamp(now) - pd.Timedelta(days=7))]
    revenue = current[(current.kpi == "revenue") & (current.window_start >= midnight)].groupby("dimension")["value"].sum()
    return {
        "orders_today": format_value(today["value"].sum(), "orders"),
        "orders_change": f"{(today['value'].sum() - week['value'].sum()) / week['value'].sum():+.1%} vs last week",
        "revenue_by_country": {d.split("=")[1]: v for d, v in revenue.items()},
    }


def outside_midnight(now: datetime) -> datetime:
    """Seed and read on the same UTC day: wait out the two minutes around midnight."""
    seconds_left = (pd.Timestamp(now).ceil("1D") - pd.Timestamp(now)).total_seconds()
    if 0 < seconds_left < 120:
        time.sleep(seconds_left + 1)
    return datetime.now(UTC)


@pytest.fixture()
def app_env(tmp_path: Path) -> dict[str, str]:
    return {
        "TRIVAS_ENV": "test", "TRIVAS_TABLES__ROOT": str(tmp_path / "lake"), "TRIVAS_PATHS__VAR": str(tmp_path / "var"),
        "TRIVAS_PATHS__LOGS": str(tmp_path / "logs"), "TRIVAS_MLFLOW__TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }  # fmt: skip


PAGES = ["overview", "explorer", "alerts", "quality", "lineage", "health", "models"]


@pytest.mark.integration
def test_every_page_runs_under_apptest(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    with app_process(app_env, monkeypatch):
        settings = load_settings("test", environ=app_env)
        now = outside_midnight(datetime.now(UTC))
        truth = seed(settings, now)
        app = AppTest.from_file(HOME, default_timeout=60)
        app.run()
        assert not app.exception
        assert tile_values(app)["orders"] == truth["orders_today"]
        # The refresh clock can sit on the very start of a minute: that minute still counts.
        at_minute_start, _ = data.period_comparison(settings, contracts(), ["orders"], now.replace(second=0, microsecond=0))
        assert format_value(at_minute_start["today"].iloc[0], "orders") == truth["orders_today"]
        by_country = data.breakdown(settings, contracts(), "revenue", "country", now).frame  # the chart's rows
        assert by_country.set_index("country")["value"].to_dict() == truth["revenue_by_country"]
        for page in PAGES[1:]:
            app.switch_page(f"views/{page}.py").run()
            assert not app.exception, (page, app.exception)
            assert app.title[0].value, page
        app.switch_page("views/health.py").run()  # the Kafka lag chart carries freshness and lineage too
        assert any("● no data" in c.value and "lineage: progress.jsonl" in c.value for c in app.caption)
        app.switch_page("views/alerts.py").run()
        assert {m.label: m.value for m in app.metric}["firing now"] == "1"
        # Read-only: no page offers a control that writes (no buttons at all).
        assert not app.button


def tile_values(app: AppTest) -> dict[str, str]:
    """KPI → the value its headline tile shows (the tiles are one HTML grid)."""
    return tile_values_in("".join(element.value for element in app.html))


def tile_values_in(grid: str) -> dict[str, str]:
    return dict(re.findall(r'data-kpi="([^"]+)".*?<div data-value[^>]*>([^<]*)</div>', grid, flags=re.DOTALL))


def artifacts(tmp_path: Path) -> Path:
    """Where screenshots go: ``$TRIVAS_TEST_ARTIFACTS/app`` (CI uploads it), else ``tmp_path``."""
    folder = Path(os.environ.get("TRIVAS_TEST_ARTIFACTS", tmp_path)) / "app"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.integration
def test_every_page_in_a_browser(app_env: dict[str, str], tmp_path: Path) -> None:
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.fail("chromium/chromedriver missing: `make test` installs them (scripts/install_browser.sh)")
    from tests.app.browser import chrome, holds, page_text_when, serve_app

    settings = load_settings("test", environ=app_env)
    now = outside_midnight(datetime.now(UTC))
    truth = seed(settings, now)
    expected = {
        "overview": (f"orders · today\n{truth['orders_today']}", truth["orders_change"], "now 17 in", "(open, partial)",
                     "● fresh", "● stale", "gold.kpi ← silver.orders (read up to silver.events@v12)",
                     "Revenue by country today", "lineage: gold.kpi_rollup"),
        "explorer": ("contract · orders", "Orders placed.", "analytics@trivas.example", "1 alerts", "1 restated windows",
                     "batch #41"),
        "alerts": ("firing now\n1", "docs/runbooks.md#kpi-out-of-band", "band [12.0, 28.0]"),
        "quality": ("Quarantined: 3 records", "schema_violation", "unknown_event_type", "Contract versions in use"),
        "lineage": ("freshness: a table's last commit",),
        "health": ("silver_gold", "running", "Kafka consumer lag per topic"),
        "models": ("trivas-kpi-anomaly", "no version registered yet"),
    }  # fmt: skip
    server, port = serve_app(app_env, tmp_path / "app.log")
    browser = None
    shots = artifacts(tmp_path)
    try:
        browser = chrome()
        texts = {}
        for page in PAGES:
            browser.get(f"http://127.0.0.1:{port}/{'' if page == 'overview' else page}")
            texts[page] = page_text_when(browser, holds(*expected[page]), timeout=90)
            browser.save_screenshot(str(shots / f"{page}.png"))
        for page, wanted in expected.items():
            missing = [w for w in wanted if w not in texts[page]]
            assert not missing, f"{page} lacks {missing}; it shows:\n{texts[page][:3000]}"
        assert EMAIL not in texts["quality"]  # sample records are PII-scrubbed
    finally:
        if browser is not None:
            browser.quit()
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.integration
def test_a_viewer_sees_no_approve_or_admin_controls(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from lakehouse.accounts import ADMIN, APPROVER, VIEWER, accounts_path, save_account
    from lakehouse.tables import read_pandas

    with app_process(app_env, monkeypatch):
        settings = load_settings("test", environ=app_env)
        accounts = accounts_path(settings)
        for role in (VIEWER, APPROVER, ADMIN):
            save_account(accounts, f"{role}-1", role, f"pw-{role}")
        seed(settings, outside_midnight(datetime.now(UTC)))

        def as_role(role: str, password: str | None = None) -> AppTest:
            return signed_in(f"{role}-1", password or f"pw-{role}")

        assert as_role(VIEWER, "wrong").error[0].value == "unknown account or wrong password"
        viewer = as_role(VIEWER)
        viewer.switch_page("views/alerts.py").run()
        assert not viewer.exception and not [b for b in viewer.button if b.label in ("Acknowledge",)]
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            viewer.switch_page("views/accounts.py")  # not in a viewer's navigation at all
        approver = as_role(APPROVER)
        approver.switch_page("views/alerts.py").run()
        acknowledge = [b for b in approver.button if b.label == "Acknowledge"]
        assert len(acknowledge) == 1
        acknowledge[0].click().run()
        commands = read_pandas(settings, "ops.alert_commands")
        assert commands[["alert_id", "author", "source"]].to_dict("records") == [{"alert_id": "a1", "author": "approver-1", "source": "app"}]
        admin = as_role(ADMIN)
        admin.switch_page("views/accounts.py").run()
        assert not admin.exception and admin.title[0].value == "Accounts"


@pytest.mark.unit
def test_bands_are_scored_before_each_window_is_learnt() -> None:
    from app.bands import Bands, latest_band, score_history
    from models.scorer import BASELINE, KpiScorer

    start = datetime(2026, 11, 28, 0, 0, tzinfo=UTC)
    values = [10.0 + (i % 3) for i in range(240)] + [60.0]  # four steady hours, then a spike
    history = pd.DataFrame([kpi_row("orders", start + timedelta(minutes=i), v) for i, v in enumerate(values)])
    history = pd.concat([history, pd.DataFrame([kpi_row("orders", start + timedelta(minutes=241), 99.0, is_final=False)])])
    bands = score_history(KpiScorer.new(BASELINE), history)
    assert len(bands) == 241  # final windows only: an open window has no band
    spike = bands.iloc[-1]
    assert not spike["lower"] <= 60.0 <= spike["upper"]  # its band came before it was learnt
    assert spike["upper"] < 60.0
    newest = latest_band(Bands(bands, "3", datetime.now(UTC)), "orders")
    assert newest is not None and newest["window_start"] == start + timedelta(minutes=240)
    assert latest_band(None, "orders") is None


@pytest.mark.unit
def test_uris_on_screen_hide_credentials() -> None:
    assert data.shown_uri("https://user:s3cret@mlflow.example/api") == "https://***@mlflow.example/api"
    assert data.shown_uri("sqlite:///var/mlflow/mlflow.db") == "sqlite:///var/mlflow/mlflow.db"


@pytest.mark.unit
def test_tile_sparklines_are_inline_svg() -> None:
    import base64

    from app.ui import sparkline

    def svg(markup: str) -> str:
        assert markup.startswith('<img src="data:image/svg+xml;base64,')
        return base64.b64decode(markup.split("base64,")[1].split('"')[0]).decode()

    line = svg(sparkline([1.0, 3.0, float("nan"), 2.0], width=100, height=20))
    points = [tuple(map(float, p.split(","))) for p in line.split('points="')[1].split('"')[0].split()]
    assert len(points) == 4 and points[0][0] == 1.0 and points[-1][0] == 99.0
    assert points[1][1] < points[3][1] < points[0][1] == points[2][1]  # higher value, higher point; a gap at the minimum
    assert "<polyline" not in svg(sparkline([])) and "<polyline" not in svg(sparkline([float("nan")] * 3))


@pytest.mark.unit
def test_breakdown_bars_are_proportional_and_labelled() -> None:
    import re

    from app.ui import bars_html

    markup = bars_html(["DE", "FR", "NL"], [200.0, 50.0, float("nan")], "EUR", "revenue today, EUR")
    widths = [float(w) for w in re.findall(r"width:([0-9.]+)%;background", markup)]
    assert widths == [85.0, 21.2, 0.0]  # the largest bar 85 % of the row, the others in proportion, no value none
    assert ">DE<" in markup and "€200.00" in markup and "€50.00" in markup and ">–<" in markup
    assert "no data yet" in bars_html([], [], "count", "stock-outs today")


@pytest.mark.unit
def test_lineage_graph_is_drawn_by_dot_on_the_server() -> None:
    import base64
    import shutil

    from app.ui import graph_html
    from lakehouse.lineage import dot, graph

    if shutil.which("dot") is None:
        pytest.fail("Graphviz's dot missing: `make` installs it (scripts/install_debian_packages.sh)")
    markup = graph_html(dot(graph(), {"gold.kpi": "v7 · silver_gold"}))
    assert markup is not None and markup.startswith('<img src="data:image/svg+xml;base64,')
    svg = base64.b64decode(markup.split("base64,")[1].split('"')[0]).decode()
    assert "<svg" in svg and "gold.kpi" in svg and "v7 · silver_gold" in svg


@pytest.mark.integration
def test_table_handles_replay_the_log_once_per_max_age(app_env: dict[str, str]) -> None:
    settings = load_settings("test", environ=app_env)
    start = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    write_kpi_rows(settings, [kpi_row("orders", start, 1.0)])
    location = str(table_location(settings, "gold.kpi"))
    handles = data.TableHandles(max_age=3600)
    first = handles.use(location, lambda h: (h.version, h.dataset))
    write_kpi_rows(settings, [kpi_row("orders", start + timedelta(minutes=1), 2.0)])
    second = handles.use(location, lambda h: (h.version, h.dataset))
    assert second == first and (handles.opened, handles.updated) == (1, 0)  # within max_age: the same snapshot
    handles.max_age = 0
    version, dataset = handles.use(location, lambda h: (h.version, h.dataset))
    assert version == first[0] + 1 and dataset.count_rows() == 2 and (handles.opened, handles.updated) == (1, 1)
    assert handles.use(location, lambda h: h.dataset) is dataset and handles.updated == 2  # unchanged version: dataset kept


@pytest.mark.integration
def test_last_week_counts_only_the_minutes_before_now(app_env: dict[str, str]) -> None:
    settings = load_settings("test", environ=app_env)
    now = datetime(2026, 11, 20, 12, 30, 20, tzinfo=UTC)
    hour, week = now.replace(minute=0, second=0), timedelta(days=7)
    rows = [kpi_row("orders", hour - timedelta(hours=1), 7.0), kpi_row("orders", hour - week - timedelta(hours=1), 5.0)]
    rows += [kpi_row("orders", hour + timedelta(minutes=m), 2.0) for m in range(31)]  # today up to this minute
    rows += [kpi_row("orders", hour - week + timedelta(minutes=m), 1.0) for m in range(60)]  # last week: the whole hour
    write_kpi_rows(settings, rows)
    roll_up(settings, contracts())  # last week's 12:00 hour is one rollup row of 60 minutes
    periods, _ = data.period_comparison(settings, contracts(), ["orders"], now)
    assert periods.set_index("kpi").loc["orders"].to_dict() == {"today": 7.0 + 31 * 2.0, "last_week": 5.0 + 31 * 1.0}


@pytest.mark.unit
def test_headline_tiles_are_one_grid_that_escapes_and_colours_the_change() -> None:
    from app.ui import TileView, tiles_html

    fresh = data.Freshness(None, None, None, 120.0)
    up = TileView("orders", "Orders", "1,204", "+12.5% vs last week", "Orders placed.", [1.0, 2.0], ["now 17"], fresh, "gold.kpi")
    down = TileView("aov", "AOV <EUR>", "€ 41.10", "-3.0% vs last week", "Average order value.", [], [], fresh, "gold.kpi")
    none = TileView("refund_rate", "Refund rate", "n/a", None, "Refunds.", [], [], fresh, "gold.kpi")
    grid = tiles_html([up, down, none])
    assert grid.count("data-kpi=") == 3 and grid.startswith('<div style="display:grid')
    assert "↑ +12.5% vs last week" in grid and "↓ -3.0% vs last week" in grid and grid.count("vs last week") == 2
    assert "AOV &lt;EUR&gt; · today" in grid and "<EUR>" not in grid
    assert tile_values_in(grid) == {"orders": "1,204", "aov": "€ 41.10", "refund_rate": "n/a"}

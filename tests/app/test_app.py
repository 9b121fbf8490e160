"""The Streamlit app: tile arithmetic, and the real app in a real browser."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from app.data import format_value, kpi_tiles
from lakehouse import REPO_ROOT
from lakehouse.config import load_settings
from lakehouse.contracts import contracts
from lakehouse.runtime.processes import free_port, port_open, wait_until
from lakehouse.tables import table_location


def kpi_frame(now: datetime) -> pd.DataFrame:
    """Two windows of ``orders`` and ``conversion_rate`` as gold.kpi holds them."""
    open_start = now.replace(second=0, microsecond=0)
    closed_start = open_start - timedelta(minutes=1)
    rows = []
    for kpi, closed, partial, unit in (("orders", 41.0, 17.0, "orders"), ("conversion_rate", 0.031, 0.027, "ratio")):
        for start, value, final in ((closed_start, closed, True), (open_start, partial, False)):
            rows.append(
                {
                    "kpi": kpi, "grain": "1m", "window_start": start, "window_end": start + timedelta(minutes=1),
                    "dimension": "all", "value": value, "numerator": None, "denominator": None, "events": 5,
                    "unit": unit, "watermark": closed_start + timedelta(minutes=1), "computed_at": now - timedelta(seconds=3),
                    "source_versions": [("silver.events", 12)], "is_final": final,
                }
            )  # fmt: skip
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
    stale = {t.kpi: t for t in kpi_tiles(frame, contracts(), now + timedelta(minutes=5))}["orders"]
    assert not stale.within_sla
    assert tiles["revenue"].value is None
    assert format_value(0.031, "ratio") == "3.1%" and format_value(1234.5, "EUR") == "€1,234.50"


def chrome():  # noqa: ANN201
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--window-size=1400,2000",
    ):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)


_EXPECTED_ON_PAGE = ("trivas · live KPIs", "fresh updated", "SLA 60s", "gold.kpi ← silver.orders (read up to silver.events@v12)", "2.7%")


def orders_tile(page_text: str) -> str:
    start = page_text.find("orders")
    return page_text[start : start + 400] if start >= 0 else ""


@pytest.mark.integration
def test_the_app_shows_live_tiles_in_a_browser(tmp_path: Path) -> None:
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.fail("chromium/chromedriver missing: `make test` installs them (scripts/install_browser.sh)")
    env = {"TRIVAS_ENV": "test", "TRIVAS_TABLES__ROOT": str(tmp_path / "lake"), "TRIVAS_PATHS__VAR": str(tmp_path / "var")}
    settings = load_settings("test", environ=env)
    frame = kpi_frame(datetime.now(UTC))
    # gold.kpi is a log of updates: an older update of the open window must not be shown.
    superseded = frame[(frame.kpi == "orders") & ~frame.is_final].assign(value=9.0, computed_at=lambda f: f.computed_at - timedelta(seconds=30))
    frame = pd.concat([superseded, frame], ignore_index=True)
    schema = pa.schema(
        [
            ("kpi", pa.string()), ("grain", pa.string()), ("window_start", pa.timestamp("us", "UTC")),
            ("window_end", pa.timestamp("us", "UTC")), ("dimension", pa.string()), ("value", pa.float64()),
            ("numerator", pa.float64()), ("denominator", pa.float64()), ("events", pa.int64()), ("unit", pa.string()),
            ("watermark", pa.timestamp("us", "UTC")), ("computed_at", pa.timestamp("us", "UTC")),
            ("source_versions", pa.map_(pa.string(), pa.int64())), ("is_final", pa.bool_()),
        ]
    )  # the schema gold.kpi has when Spark writes it
    write_deltalake(table_location(settings, "gold.kpi"), pa.Table.from_pandas(frame, schema=schema, preserve_index=False))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO_ROOT / "app" / "Home.py"), "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        env={**os.environ, **env}, stdout=(tmp_path / "app.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    browser = None
    try:
        wait_until(lambda: port_open("127.0.0.1", port), 60, "streamlit to listen", tmp_path / "app.log")
        browser = chrome()
        browser.get(f"http://127.0.0.1:{port}")
        # A fragment rerun removes and redraws elements, so one read can catch a tile half drawn:
        # poll until the page holds everything the test expects, then assert on that read.
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline:
            text = browser.find_element("tag name", "body").text
            if all(expected in text for expected in _EXPECTED_ON_PAGE) and "(open, partial)" in orders_tile(text):
                break
            time.sleep(1)
        browser.save_screenshot(str(tmp_path / "app.png"))
        assert "trivas · live KPIs" in text
        assert "17" in orders_tile(text) and "(open, partial)" in orders_tile(text)
        assert "fresh updated" in text and "SLA 60s" in text
        assert "gold.kpi ← silver.orders (read up to silver.events@v12)" in text
        assert "2.7%" in text  # the open window's conversion rate
    finally:
        if browser is not None:
            browser.quit()
        server.terminate()
        server.wait(timeout=30)

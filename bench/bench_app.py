"""First render of every page of the app on a month of minute-level KPIs, in a real browser.

    nice -n 19 .venv/bin/python bench/bench_app.py [--days 30] [--loads 10]

Generates ``--days`` of 1-minute ``gold.kpi`` rows for every KPI of ``conf/kpis.yaml``, in
total and per dimension value (as the hot path writes them: the last two hours with earlier
partial updates of each window beside the final ones), into a fresh deployment in a temporary
folder; runs the rollup job once over it (``trivas rollup``); serves the app and loads each
page ``--loads`` times in headless chromium, each load after the app's read cache expired
(so every load reads the tables). A load's time runs from the navigation to the moment the
page shows the marker texts of its last charts. Prints the figures and writes
``bench/results/app.json`` (key ``app_render_ms``: p50/p95 per page).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.app.browser serves the app

from lakehouse.config import load_settings
from lakehouse.contracts import TOTAL, KpiContracts, contracts
from lakehouse.rollup import roll_up
from lakehouse.tables import table_location

VALUES = {
    "country": ["DE", "FR", "NL", "ES", "IT"], "method": ["card", "paypal", "klarna", "apple_pay"],
    "channel": ["google", "meta", "tiktok"], "warehouse": ["ber", "ams", "mad"], "topic": ["delivery", "returns", "payment"],
}  # fmt: skip
PER_MINUTE = {  # a mid-sized shop's daily mean per minute
    "sessions": 30, "checkouts_started": 6, "orders": 2, "revenue": 130, "payment_attempts": 2.3, "payments_failed": 0.25,
    "refunds": 0.1, "refund_amount": 6, "ad_spend": 3, "ad_clicks": 20, "stockouts": 0.05, "ticket_volume": 0.3,
}  # fmt: skip
# Marker texts of each page's last charts: the page counts as rendered when all are shown.
PAGES = {
    "overview": ("", ("ticket volume · today", "Stock-outs by warehouse today", "lineage: gold.kpi_rollup")),
    "explorer": ("explorer", ("contract · orders", "rows · grain", "lineage: gold.kpi@")),
    "alerts": ("alerts", ("firing now", "lineage: gold.alerts")),
    "quality": ("quality", ("Contract versions in use", "Quarantined:", "lineage: silver.late")),
    "lineage": ("lineage", ("freshness: a table's last commit", "written by")),
    "health": ("health", ("Kafka consumer lag per topic", "lag: the brokers", "lineage: ops.pipeline_health")),
    "models": ("models", ("trivas-refund-risk",)),
}


def measures(minutes: pd.DatetimeIndex, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Poisson counts (and amounts) per minute with a daily cycle."""
    hour = minutes.hour.to_numpy() + minutes.minute.to_numpy() / 60
    cycle = 1 + 0.6 * np.sin((hour - 14) / 24 * 2 * np.pi)
    return {k: rng.poisson(v * cycle).astype(float) if v >= 1 or k in ("refunds", "stockouts", "ticket_volume", "payments_failed") else v * cycle for k, v in PER_MINUTE.items()}


def series(contracts: KpiContracts, minutes: pd.DatetimeIndex, rng: np.random.Generator) -> list[tuple[str, str, np.ndarray, np.ndarray | None, np.ndarray | None]]:
    """(kpi, dimension, value, numerator, denominator) per KPI × dimension value."""
    total = measures(minutes, rng)
    out = []
    for dimension in [TOTAL, *[f"{d}={v}" for d, vs in VALUES.items() for v in vs]]:
        if dimension == TOTAL:
            base = total
        else:
            name, _, _ = dimension.partition("=")
            share = 1 / len(VALUES[name])
            base = {k: np.round(v * share * rng.uniform(0.7, 1.3)) for k, v in total.items()}
        for contract in contracts.kpis.values():
            if dimension != TOTAL and dimension.split("=")[0] not in contract.dimensions:
                continue
            if contract.kind == "measure":
                out.append((contract.name, dimension, base[contract.name], None, None))
            elif contract.kind == "ratio":
                names = {"greatest(checkouts_started - orders, 0)": None}
                num = np.maximum(base["checkouts_started"] - base["orders"], 0) if contract.numerator in names else base[contract.numerator]
                den = base[contract.denominator]
                with np.errstate(divide="ignore", invalid="ignore"):
                    out.append((contract.name, dimension, np.where(den > 0, num / den, np.nan), num, den))
            else:
                window = int(contract.window.total_seconds() // 60)
                out.append((contract.name, dimension, np.convolve(base[contract.of], np.ones(window))[: len(minutes)], None, None))
    return out


def month_of_kpis(contracts: KpiContracts, now: datetime, days: int, seed: int = 7) -> pa.Table:
    """``days`` of gold.kpi rows ending at ``now`` (schema as Spark writes the table)."""
    from tests.kpi_rows import KPI_ARROW_SCHEMA

    rng = np.random.default_rng(seed)
    end = pd.Timestamp(now).floor("1min")
    minutes = pd.date_range(end - pd.Timedelta(days=days), end, freq="1min", inclusive="left")
    open_from = end - pd.Timedelta(minutes=6)
    frames = []
    for kpi, dimension, value, num, den in series(contracts, minutes, rng):
        contract = contracts[kpi]
        frame = pd.DataFrame({
            "kpi": kpi, "grain": contract.window_label, "window_start": minutes, "window_end": minutes + pd.Timedelta(minutes=1),
            "dimension": dimension, "value": value, "numerator": num, "denominator": den, "events": 10, "unit": contract.unit,
            "watermark": minutes + pd.Timedelta(minutes=1), "computed_at": minutes + pd.Timedelta(minutes=1, seconds=2),
            "is_final": minutes < open_from,
        })  # fmt: skip
        recent = frame[frame["window_start"] >= end - pd.Timedelta(hours=2)]
        partial = recent.assign(value=recent["value"] * 0.5, computed_at=recent["window_start"] + pd.Timedelta(seconds=30), is_final=False)
        frames += [frame, partial]
    rows = pd.concat(frames, ignore_index=True).sort_values("window_start", kind="stable")
    rows.loc[rows["window_start"] >= open_from, "computed_at"] = pd.Timestamp(now)
    table = pa.Table.from_pandas(rows, schema=KPI_ARROW_SCHEMA.remove(KPI_ARROW_SCHEMA.get_field_index("source_versions")), preserve_index=False)
    offsets = pa.array(np.arange(len(rows) + 1, dtype=np.int32))
    versions = pa.MapArray.from_arrays(offsets, pa.array(["silver.events"] * len(rows)), pa.array(np.full(len(rows), 12, dtype=np.int64)))
    return table.add_column(KPI_ARROW_SCHEMA.get_field_index("source_versions"), KPI_ARROW_SCHEMA.field("source_versions"), versions)


def write_month(settings, table: pa.Table) -> None:  # noqa: ANN001
    """One commit per day, as compaction leaves a long-running table."""
    location = table_location(settings, "gold.kpi")
    days = pc_days(table)
    for day in sorted(set(days)):
        write_deltalake(location, table.filter(pa.array(days == day)), mode="append")


def pc_days(table: pa.Table) -> np.ndarray:
    return table["window_start"].to_numpy().astype("datetime64[D]")


def load_times(port: int, loads: int, pause: float, shots: Path) -> dict[str, list[float]]:
    from tests.app.browser import chrome, holds, page_text_when

    browser = chrome()
    times: dict[str, list[float]] = {name: [] for name in PAGES}
    try:
        for attempt in range(loads + 1):  # the first round warms the server's imports: not counted
            for name, (path, markers) in PAGES.items():
                time.sleep(pause)  # let the app's 2 s read cache expire: every load reads the tables
                browser.get("about:blank")
                started = time.perf_counter()
                browser.get(f"http://127.0.0.1:{port}/{path}")
                text = page_text_when(browser, holds(*markers), timeout=120)
                drawn(browser, timeout=120)  # and no element still a placeholder (its component's bundle not loaded)
                elapsed = (time.perf_counter() - started) * 1000
                if not all(m in text for m in markers):
                    raise RuntimeError(f"page {name} never showed {markers}: {text[:500]}")
                if attempt:
                    times[name].append(elapsed)
                else:
                    browser.save_screenshot(str(shots / f"{name}.png"))
    finally:
        browser.quit()
    return times


SKELETONS = "return document.querySelectorAll('.stSkeleton, [data-testid=stSkeleton], [data-testid=stAppSkeleton]').length"


def drawn(browser, timeout: float, interval: float = 0.1) -> None:  # noqa: ANN001
    """Wait until no element of the page is a placeholder: Streamlit draws a grey skeleton while
    an element's component (Vega, Graphviz, tables, …) is still loading, whose text markers alone
    do not show."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and browser.execute_script(SKELETONS):
        time.sleep(interval)


def apptest_times(env: dict[str, str], loads: int) -> dict[str, list[float]]:
    """Server-side first render of each page (the whole script, every read) under AppTest,
    with the app's read cache cleared before every load."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from app import data
    from lakehouse import REPO_ROOT

    os.environ.update(env)
    times: dict[str, list[float]] = {name: [] for name in PAGES}
    components = None  # Streamlit's component registry: a server scans installed packages once, at startup
    for attempt in range(loads + 1):  # the first round imports the app's modules: not counted
        for name in PAGES:
            app = AppTest.from_file(str(REPO_ROOT / "app" / "Home.py"), default_timeout=120)
            if components is not None:  # else every new AppTest rescans ~700 package manifests (~0.7 s) inside run()
                app._bidi_component_manager = components  # noqa: SLF001 - the harness's own cost, not the page's
            if name != "overview":
                app.switch_page(f"views/{name}.py")
            st.cache_data.clear()
            data.HANDLES.clear()  # and the table handles: every load opens (replays the log of) every table it reads
            started = time.perf_counter()
            app.run()
            elapsed = (time.perf_counter() - started) * 1000
            if app.exception:
                raise RuntimeError(f"page {name} failed: {app.exception}")
            components = app._bidi_component_manager  # noqa: SLF001
            if attempt:
                times[name].append(elapsed)
    return times


def summary(times: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    return {name: {"p50": round(percentile(v, 50)), "p95": round(percentile(v, 95)), "loads": len(v)} for name, v in times.items()}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--loads", type=int, default=10)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "app.json"))
    parser.add_argument("--mode", choices=["browser", "apptest", "both"], default="both")
    parser.add_argument("--lake", help="reuse a deployment folder a previous run generated (kept with --keep)")
    parser.add_argument("--keep", help="generate into this folder and keep it (for --lake)")
    parser.add_argument("--screenshots", default=str(Path(__file__).parent / "results" / "app"))
    args = parser.parse_args()
    from tests.app.browser import serve_app

    with open("/proc/loadavg") as load:
        load_at_start = load.read().split()[:3]
    shots = Path(args.screenshots)
    shots.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.lake or args.keep or scratch
        env = {"TRIVAS_ENV": "test", "TRIVAS_TABLES__ROOT": f"{folder}/lake", "TRIVAS_PATHS__VAR": f"{folder}/var",
               "TRIVAS_PATHS__LOGS": f"{folder}/logs", "TRIVAS_MLFLOW__TRACKING_URI": f"sqlite:///{folder}/mlflow.db"}  # fmt: skip
        settings = load_settings("test", environ=env)
        now = datetime.now(UTC)
        if args.lake:  # generated earlier: the month ends when that run was
            rows, run = DeltaTable(table_location(settings, "gold.kpi")).count(), None
        else:
            started = time.perf_counter()
            table = month_of_kpis(contracts(), now, args.days)
            write_month(settings, table)
            generated, rows = time.perf_counter() - started, table.num_rows
            run = roll_up(settings, contracts())
            print(f"{rows:,} gold.kpi rows ({args.days} days) written in {generated:.1f}s; rollup: {run.hours:,} hourly + {run.days:,} daily rows in {run.seconds:.1f}s")
        browser_times, server_times = {}, {}
        if args.mode in ("apptest", "both"):
            server_times = apptest_times(env, args.loads)
        if args.mode in ("browser", "both"):
            server, port = serve_app(env, Path(folder) / "app.log")
            try:
                browser_times = load_times(port, args.loads, pause=2.5, shots=shots)
            finally:
                server.terminate()
                server.wait(timeout=30)
    with open("/proc/loadavg") as load:
        load_average = load.read().split()[:3]
    result = {
        "app_render_ms": summary(browser_times) if browser_times else summary(server_times),
        "app_render_ms_browser": summary(browser_times),
        "app_render_ms_server_apptest": summary(server_times),
        "load_average_at_start": load_at_start,
        "load_average_at_end": load_average,
        "command": "nice -n " + str(os.nice(0)) + " python bench/bench_app.py " + " ".join(sys.argv[1:]),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent).stdout.strip(),
        "target_ms": 1500,
        "gold_kpi_rows": rows,
        "days": args.days,
        "rollup_first_run_s": round(run.seconds, 1) if run else None,
        "measured_at": now.isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "nice": os.nice(0)},
        "method": "browser: headless Debian chromium (selenium), navigation → the page's last chart markers shown and no element skeleton left, app read cache "
                  "expired before every load; apptest: the page's whole script under streamlit AppTest, read cache cleared before every load",
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""KPI explorer: any KPI by grain, dimension and time range, with its band, alerts and
restated windows marked, and its metric contract beside the chart."""

from __future__ import annotations

from datetime import timedelta

import altair as alt
import pandas as pd
import streamlit as st

from app import data, ui

settings, contracts = ui.settings(), ui.contracts()
RANGES = {"last 90 minutes": timedelta(minutes=90), "last 6 hours": timedelta(hours=6), "last 24 hours": timedelta(days=1),
          "last 7 days": timedelta(days=7), "last 30 days": timedelta(days=30)}  # fmt: skip
GRAINS = ["1m", "5m", "1h", "1d"]

ui.title("KPI explorer")
chart_column, contract_column = st.columns([3, 1])
with chart_column:
    picks = st.columns(4)
    kpi = picks[0].selectbox("KPI", list(contracts.kpis), index=list(contracts.kpis).index("orders"))
    contract = contracts[kpi]
    span = RANGES[picks[1].selectbox("range", list(RANGES), index=1)]
    allowed = [g for g in GRAINS if g in ("1h", "1d") or span <= data.MINUTE_RANGE_LIMIT]
    if contract.kind == "rollup":
        allowed = ["1m"] if span <= data.MINUTE_RANGE_LIMIT else []
    grain = picks[2].radio("grain", allowed or ["1m"], horizontal=True, help="ranges over 2 days read the hourly/daily rollup")
    dimensions = [data.TOTAL] + [f"{d}=" for d in contract.dimensions]
    dimension = picks[3].selectbox("dimension", dimensions, format_func=lambda d: "total" if d == data.TOTAL else f"by {d[:-1]}")

with contract_column.container(border=True):
    st.subheader(f"contract · {kpi}")
    st.markdown(
        f"**definition** {contract.description}  \n**kind** {contract.kind} · **unit** {contract.unit} · **grain** {contract.window_label}  \n"
        f"**owner** {contract.owner}  \n**freshness SLA** {contract.freshness_sla.total_seconds():.0f}s  \n"
        f"**thresholds** {contract.thresholds}  \n**alert route** {contract.alert_route}  \n**runbook** [{contract.runbook}]({contract.runbook})"
    )


def model_band(frame: pd.DataFrame) -> pd.DataFrame:
    """The champion's expected band of the shown windows (1-minute total series), else the
    band detect recorded at each alerting window."""
    bands = ui.band_cache().get(settings)
    if grain == "1m" and dimension == data.TOTAL and bands is not None and len(bands.frame):
        mine = bands.frame[(bands.frame["kpi"] == kpi)].dropna(subset=["lower", "upper"])
        shown = mine[pd.to_datetime(mine["window_start"], utc=True) >= pd.to_datetime(frame["window_start"], utc=True).min()]
        if len(shown):
            return shown[["window_start", "lower", "upper"]]
    alerts = data.cached.alerts_since(settings, data.clock(ui.now(), 5) - span).frame
    at_alerts = alerts[alerts["kpi"] == kpi].dropna(subset=["lower", "upper"]) if len(alerts) else alerts
    return at_alerts[["window_start", "lower", "upper"]] if len(at_alerts) else pd.DataFrame()


@st.fragment(run_every=max(settings.app.refresh_seconds, 5))
def chart() -> None:
    now = ui.now()
    key = data.clock(now, 5)
    since = key - span
    if not allowed:
        st.warning(f"{kpi} is a sliding window: it has no hourly or daily rollup; pick a range of 2 days or less")
        return
    until = key + timedelta(minutes=1)
    read = data.cached.kpi_over_range(settings, contracts, [kpi], grain, since, until, dimension)
    frame = read.frame
    alerts = data.cached.alerts_since(settings, since).frame
    alerts = alerts[(alerts["kpi"] == kpi)] if len(alerts) else alerts
    restated = pd.DataFrame()
    if grain == "1m":
        _, log = data.cached.kpi_minutes(settings, since, until, [kpi], dimension)  # the chart's own read (one scan)
        restated = data.restated_windows(log)
    if not len(frame):
        st.info("no data in this range yet")
    else:
        layers = [alt.Chart(frame[["window_start", "dimension", "value"]]).mark_line(point=grain in ("1h", "1d")).encode(
            x=alt.X("window_start:T", title="window (UTC)"), y=alt.Y("value:Q", title=f"{kpi} ({contract.unit})"),
            color=alt.Color("dimension:N", legend=alt.Legend(orient="bottom")), tooltip=["window_start:T", "dimension:N", "value:Q"])]  # fmt: skip
        band = model_band(frame)
        if len(band):
            layers.insert(0, alt.Chart(band).mark_area(opacity=0.2, color="orange").encode(x="window_start:T", y="lower:Q", y2="upper:Q"))
        if len(alerts):
            layers.append(alt.Chart(alerts[["window_start", "rule", "state", "observed", "expected"]]).mark_rule(color="red", strokeDash=[4, 2]).encode(x="window_start:T", tooltip=["rule:N", "state:N", "observed:Q", "expected:Q"]))
        if len(restated):
            layers.append(alt.Chart(restated).mark_point(shape="diamond", size=90, color="purple", filled=True).encode(
                x="window_start:T", y="value:Q", tooltip=["window_start:T", "first_value:Q", "value:Q", "backfill:N"]))  # fmt: skip
        st.altair_chart(alt.layer(*layers), width="stretch")
    st.caption(
        f"{len(frame)} rows · grain {grain} · {len(alerts)} alerts (red rules) · orange: the champion model's expected band "
        f"(1-minute totals; else the band detect recorded at alerting windows) · "
        f"{len(restated)} restated windows (purple: value changed after it was first shown as final, or written by a "
        f"backfill: {restated['backfill'].notna().sum() if len(restated) else 0} of them)"
    )
    ui.footer(read, data.freshness_of(frame, contract.freshness_sla.total_seconds(), now), ui.kpi_sources(kpi), key="explorer")


chart()

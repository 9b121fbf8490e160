"""Overview: today so far vs the same period last week per headline KPI (with its live
window, freshness and lineage), the funnel, revenue by country, ad spend and ROAS, stock-outs."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import streamlit as st

from app import data, ui

settings, contracts = ui.settings(), ui.contracts()
HEADLINE = [k for k in data.TILE_ORDER if k in contracts.kpis and contracts[k].kind != "rollup"]

ui.title("trivas · overview")


def change(today: float | None, last_week: float | None) -> str | None:
    """``+12.5% vs last week``; None (no arrow) when either side has no value (None or NaN)."""
    if today is None or last_week is None or pd.isna(today) or pd.isna(last_week) or not last_week:
        return None
    return f"{(today - last_week) / abs(last_week):+.1%} vs last week"


# Tiles refresh every 5 s at the most often: a 1-minute KPI changes little faster, and every
# rerun resends thirteen tiles to the browser (at 2 s the first rerun landed inside the first render).
TILES_EVERY = max(settings.app.refresh_seconds, 5)


@st.fragment(run_every=TILES_EVERY)
def headline() -> None:
    now = ui.now()
    key = data.clock(now, TILES_EVERY)
    recent, _ = data.cached.kpi_minutes(settings, key - timedelta(minutes=90), None, None, data.TOTAL)
    tiles = {t.kpi: t for t in data.kpi_tiles(recent.frame, contracts, now)}
    periods, period_read = data.cached.period_comparison(settings, contracts, HEADLINE, key)
    periods = periods.set_index("kpi")
    if not len(recent.frame):
        st.info("No KPI rows in the last 90 minutes: is the pipeline running? (`trivas pipeline run`)")
    with st.popover("query behind the tiles", key="tiles-query"):  # one read serves every tile
        st.code(f"-- the live windows and sparklines\n{recent.query}\n{period_read.query}", language="sql")
    views = []
    for kpi in HEADLINE:
        tile, contract = tiles[kpi], contracts[kpi]
        today, last_week = periods.loc[kpi, "today"], periods.loc[kpi, "last_week"]
        spark = data.kpi_series(recent.frame, kpi)
        state = "final" if tile.is_final else "open, partial"
        window = (
            f"now {data.format_value(tile.value, contract.unit)} in {tile.window_start:%H:%M}–{tile.window_end:%H:%M} ({state})"
            if tile.window_start else "no data yet"
        )  # fmt: skip
        views.append(
            ui.TileView(
                kpi=kpi, label=tile.label, value=data.format_value(today, contract.unit), change=change(today, last_week),
                help=f"{contract.description} Last week, same period: {data.format_value(last_week, contract.unit)}.",
                spark=list(spark["value"].tail(60)) if len(spark) else [],
                lines=[window, ui.band_line(kpi, contract.unit)],
                fresh=data.Freshness(tile.computed_at, tile.watermark, tile.lag_seconds, tile.freshness_sla_seconds),
                lineage=tile.lineage,
            )
        )  # fmt: skip
    st.html(ui.tiles_html(views))


headline()


@st.fragment(run_every=max(settings.app.refresh_seconds, 10))
def breakdowns() -> None:
    now = ui.now()
    key = data.clock(now, TILES_EVERY)  # the tiles' key: their minute read is shared
    midnight = key.replace(hour=0, minute=0, second=0, microsecond=0)
    left, right = st.columns(2)
    with left:
        st.subheader("Funnel today")
        funnel = data.cached.session_funnel(settings, midnight)
        periods, _ = data.cached.period_comparison(settings, contracts, HEADLINE, key)  # the tiles' read (cached)
        periods = periods.set_index("kpi")
        steps = pd.concat([funnel.frame, pd.DataFrame([{"step": "ordered", "sessions": periods.loc["orders", "today"] or 0}])], ignore_index=True)
        st.html(ui.bars_html(list(steps["step"]), list(steps["sessions"]), "count", "sessions (orders for the last step)"))
        state = funnel.tables[0]
        ui.footer(funnel, data.table_freshness(state, 3600, now), "silver.web_events (closed sessions); orders from gold.kpi", key="funnel")
    with right:
        st.subheader("Revenue by country today")
        by_country = data.cached.breakdown(settings, contracts, "revenue", "country", key)
        st.html(ui.bars_html(list(by_country.frame["country"]), list(by_country.frame["value"]), "EUR", "revenue today, EUR"))
        ui.footer(by_country, data.freshness_of(by_country.frame, contracts["revenue"].freshness_sla.total_seconds(), now), ui.kpi_sources("revenue"), key="country")
    left, right = st.columns(2)
    with left:
        st.subheader("Ad spend by channel and ROAS today")
        spend = data.cached.breakdown(settings, contracts, "ad_spend", "channel", key)
        st.html(ui.bars_html(list(spend.frame["channel"]), list(spend.frame["value"]), "EUR", "ad spend today, EUR"))
        st.caption(f"ROAS today (blended over channels): **{data.format_value(periods.loc['roas', 'today'], 'ratio')}**")
        ui.footer(spend, data.freshness_of(spend.frame, contracts["ad_spend"].freshness_sla.total_seconds(), now), ui.kpi_sources("ad_spend"), key="ads")
    with right:
        st.subheader("Stock-outs by warehouse today")
        stockouts = data.cached.breakdown(settings, contracts, "stockouts", "warehouse", key)
        st.html(ui.bars_html(list(stockouts.frame["warehouse"]), list(stockouts.frame["value"]), "count", "stock-outs today"))
        ui.footer(stockouts, data.freshness_of(stockouts.frame, contracts["stockouts"].freshness_sla.total_seconds(), now), ui.kpi_sources("stockouts"), key="stockouts")


breakdowns()

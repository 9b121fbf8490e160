"""trivas — live KPIs. Each tile shows its value, freshness against its SLA, watermark and
lineage; the page refreshes itself every few seconds."""

from __future__ import annotations

from datetime import UTC, datetime

import altair as alt
import streamlit as st

from app.data import format_value, kpi_series, kpi_tiles, read_kpis, recent
from lakehouse.config import settings as load_settings
from lakehouse.contracts import contracts as load_contracts

st.set_page_config(page_title="trivas · live KPIs", layout="wide")
settings = load_settings()
contracts = load_contracts()


@st.cache_data(ttl=1.0, show_spinner=False)
def kpis_since(minutes: int):  # noqa: ANN201
    return read_kpis(settings, recent(datetime.now(UTC), minutes))


@st.fragment(run_every=settings.app.refresh_seconds)
def live_tiles() -> None:
    now = datetime.now(UTC)
    frame = kpis_since(90)
    tiles = kpi_tiles(frame, contracts, now)
    if not len(frame):
        st.info("No KPI rows yet: is the pipeline running? (`trivas pipeline run`)")
    columns = st.columns(4)
    for index, tile in enumerate(tiles):
        with columns[index % 4].container(border=True):
            delta = None
            if tile.value is not None and tile.previous is not None:
                delta = format_value(tile.value - tile.previous, tile.unit)
            st.metric(tile.label, format_value(tile.value, tile.unit), delta, help=tile.definition)
            state = "final" if tile.is_final else "open, partial"
            window = f"{tile.window_start:%H:%M}–{tile.window_end:%H:%M} UTC ({state})" if tile.window_start else "no data yet"
            fresh = ":green[● fresh]" if tile.within_sla else ":red[● stale]"
            lag = f"{tile.lag_seconds:.0f}s" if tile.lag_seconds is not None else "–"
            watermark = f"{tile.watermark:%H:%M:%S}" if tile.watermark else "–"
            st.caption(
                f"{window}  \n{fresh} updated {lag} ago · SLA {tile.freshness_sla_seconds:.0f}s  \n"
                f"watermark {watermark}  \n{tile.lineage}"
            )


st.title("trivas · live KPIs")
st.caption(f"environment `{settings.env}` · tables `{settings.tables.root}` · refresh every {settings.app.refresh_seconds:g}s")
live_tiles()


@st.fragment(run_every=max(settings.app.refresh_seconds, 5))
def trend() -> None:
    choice = st.selectbox("KPI", [k for k in contracts.kpis], index=list(contracts.kpis).index("orders"))
    frame = kpi_series(kpis_since(90), choice)
    if not len(frame):
        st.caption("no data yet")
        return
    chart = (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(x=alt.X("window_start:T", title="window (UTC)"), y=alt.Y("value:Q", title=choice), color="is_final:N")
    )
    st.altair_chart(chart, use_container_width=True)
    watermark = frame["watermark"].dropna().max()
    st.caption(
        f"freshness: last computed {frame['computed_at'].max():%H:%M:%S} UTC · watermark "
        f"{watermark if watermark == watermark else '–'} · lineage: gold.kpi[{choice}] ← "
        f"{contracts[choice].source or ', '.join(contracts[choice].inputs)}"
    )


trend()

"""Data quality: quarantine by reason and source over time with PII-scrubbed samples, late
events by type, duplicates dropped and the contract versions in use."""

from __future__ import annotations

from datetime import timedelta

import altair as alt
import streamlit as st

from app import data, ui

settings = ui.settings()
ui.title("Data quality")
HOURS = st.select_slider("hours", [1, 6, 24, 72], value=24)


@st.fragment(run_every=max(settings.app.refresh_seconds, 10))
def quality() -> None:
    now = ui.now()
    since = data.clock(now, 10) - timedelta(hours=HOURS)
    quarantine = data.cached.quarantine_since(settings, since)
    late = data.cached.late_since(settings, since)
    q = quarantine.frame
    left, right = st.columns(2)
    with left:
        st.subheader(f"Quarantined: {len(q)} records")
        by_reason = data.counts_over_time(q, "quarantined_at", ["reason"])
        st.altair_chart(alt.Chart(by_reason).mark_bar().encode(x=alt.X("bucket:T", title="5 min (UTC)"), y="rows:Q", color="reason:N"), width="stretch")
        by_source = q.groupby(q["source"].fillna("?")).size().rename("rows").reset_index() if len(q) else by_reason.head(0)
        st.table(by_source.set_index(by_source.columns[0]))  # static HTML tables: no data-grid bundle to load
        ui.footer(quarantine, data.table_freshness(quarantine.tables[0], 3600, now), "raw topics (silver_gold)", key="quarantine")
    with right:
        st.subheader(f"Late (beyond allowed lateness): {len(late.frame)} events")
        by_type = data.counts_over_time(late.frame, "recorded_at", ["event_type"])
        st.altair_chart(alt.Chart(by_type).mark_bar().encode(x=alt.X("bucket:T", title="5 min (UTC)"), y="rows:Q", color="event_type:N"), width="stretch")
        ui.footer(late, data.table_freshness(late.tables[0], 3600, now), "raw topics (silver_gold)", key="late")
    st.subheader("Sample records (PII-scrubbed)")
    st.table(data.scrubbed_samples(q).set_index("reason"))
    left, right = st.columns(2)
    with left:
        st.subheader("Duplicates dropped")
        counts = data.cached.record_counts(settings, [data.BRONZE_EVENTS, data.SILVER_EVENTS, data.QUARANTINE, data.LATE])
        st.metric("records received − accepted − quarantined − late (all time)", data.duplicates_dropped(counts))
        st.caption(" · ".join(f"{t}: {n:,}" for t, n in counts.items()) + " (row counts from the Delta logs)")
    with right:
        st.subheader("Contract versions in use")
        st.table(data.contract_versions(q).set_index("event_type"))


quality()

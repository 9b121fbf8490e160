"""Data quality: the latest validation results per table (suites generated from the contracts,
with a link to the Data Docs), quarantine by reason and source over time with PII-scrubbed
samples, late events by type, duplicates dropped and the contract versions in use."""

from __future__ import annotations

from datetime import timedelta

import altair as alt
import pandas as pd
import streamlit as st

from app import data, ui

settings = ui.settings()
ui.title("Data quality")
HOURS = st.select_slider("hours", [1, 6, 24, 72], value=24)


def counts_chart(counts: pd.DataFrame, colour: str, what: str) -> None:
    """Bars of 5-minute counts coloured by ``colour``; a line of text when there are none (an
    empty chart still loads and starts Vega, the page's largest cost in the browser)."""
    if not len(counts):
        st.caption(f"No {what} in the last {HOURS} h.")
        return
    bars = alt.Chart(counts).mark_bar().encode(x=alt.X("bucket:T", title="5 min (UTC)"), y="rows:Q", color=f"{colour}:N")
    st.altair_chart(bars, width="stretch")


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
        counts_chart(data.counts_over_time(q, "quarantined_at", ["reason"]), "reason", "quarantined records")
        counts_chart(data.counts_over_time(q, "quarantined_at", ["source"]), "source", "quarantined records")
        ui.footer(quarantine, data.table_freshness(quarantine.tables[0], 3600, now), "raw topics (silver_gold)", key="quarantine")
    with right:
        st.subheader(f"Late (beyond allowed lateness): {len(late.frame)} events")
        counts_chart(data.counts_over_time(late.frame, "recorded_at", ["event_type"]), "event_type", "late events")
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


@st.fragment(run_every=max(settings.app.refresh_seconds, 10))
def validations() -> None:
    now = ui.now()
    read = data.cached.validations_since(settings, data.clock(now, 10) - timedelta(days=1))
    latest = data.latest_validations(read.frame)
    summary = data.validation_summary(latest)
    failing = int(summary["failed"].sum()) if len(summary) else 0
    st.subheader(f"Validation suites: {len(summary)} tables, {failing} failing expectations" if len(summary) else "Validation suites: no run yet")
    if len(summary):
        st.table(summary.set_index("table"))
        failed = latest[~latest["success"].astype(bool)]
        if len(failed):
            st.caption("Failing expectations (failing keys PII-scrubbed)")
            st.table(failed[["table", "expectation", "observed_value", "unexpected_count", "failing_keys"]].set_index("table"))
    docs = data.data_docs_index(settings)
    if docs is not None:
        st.markdown(f"[Data Docs (every expectation, per run)]({docs.as_uri()}) · `{docs}`")
    st.caption("Suites: gx/expectations/*.json (`trivas quality suites`); runs: the pipeline every "
               f"{settings.quality.check_every_seconds:.0f}s over the last {settings.quality.window_minutes:.0f} min, or `trivas quality run`.")
    ui.footer(read, data.table_freshness(read.tables[0], 2 * settings.quality.check_every_seconds, now), "gx/expectations suites (quality)", key="validations")


validations()
quality()

"""Pipeline health: each job's state, and per query its input and processing rates, batch
duration, watermark lag (``ops.freshness``) and the Kafka consumer lag per topic."""

from __future__ import annotations

from datetime import timedelta

import altair as alt
import streamlit as st

from app import data, ui

settings = ui.settings()
ui.title("Pipeline health")
MINUTES = st.select_slider("minutes", [15, 60, 180, 720], value=60)
METRICS = {"input_rows_per_second": "input rows/s", "processed_rows_per_second": "processed rows/s",
           "batch_duration_ms": "batch duration ms", "watermark_lag_s": "watermark lag s"}  # fmt: skip


@st.fragment(run_every=max(settings.app.refresh_seconds, 5))
def health() -> None:
    now = ui.now()
    key = data.clock(now, 5)
    jobs = data.cached.job_states(settings)
    st.subheader("Jobs")
    st.table(jobs.frame.set_index("job") if len(jobs.frame) else jobs.frame)
    ui.footer(jobs, data.table_freshness(jobs.tables[0], 3600, now), key="jobs")
    progress = data.cached.query_progress(settings, key - timedelta(minutes=MINUTES))
    frame = progress.frame
    columns = st.columns(2)
    for index, (metric, label) in enumerate(METRICS.items()):
        with columns[index % 2]:
            st.subheader(label)
            if len(frame):
                st.altair_chart(alt.Chart(frame[["recorded_at", "query", metric]]).mark_line().encode(x=alt.X("recorded_at:T", title="UTC"), y=alt.Y(f"{metric}:Q", title=label), color="query:N"), width="stretch")
            ui.footer(progress, data.table_freshness(progress.tables[0], 60, now), key=f"progress-{metric}")
    st.subheader("Kafka consumer lag per topic")
    log = settings.path(settings.paths.logs) / "progress.jsonl"
    lag = data.cached.kafka_lag(log)
    if len(lag):
        st.altair_chart(alt.Chart(lag).mark_line().encode(x=alt.X("recorded_at:T", title="UTC"), y=alt.Y("lag:Q", title="records behind"), color="topic:N", strokeDash="query:N"), width="stretch")
    st.caption("lag: the brokers' latest offsets minus each query's end offsets, per micro-batch (from the pipeline's progress log)")
    # Its freshness and lineage: the newest progress document read (not a Delta table).
    newest = data.newest_time(lag, "recorded_at")
    fresh = data.Freshness(newest, None, (now - newest).total_seconds() if newest else None, 60)
    left, right = st.columns([6, 1])
    left.caption(f"{ui.badge(fresh)}  \nlineage: {log.name} (the pipeline's progress log: latestOffset and endOffset of each query's Kafka source) ← Kafka topics")
    with right.popover("query", key="query-kafka-lag"):
        st.code(f"-- the last 4 MB of {log}: per progress document and Kafka source, per topic\n"
                "SELECT timestamp, name, topic, sum(greatest(latestOffset[topic][p] - endOffset[topic][p], 0)) AS lag", language="sql")


health()

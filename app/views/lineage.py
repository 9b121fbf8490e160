"""Lineage: sources → Kafka topics → bronze/silver → gold tables → KPIs, with each table's
version, the job that writes it, its last batch and its freshness (the graph every chart's
lineage overlay is a path of)."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import streamlit as st

from app import data, ui
from lakehouse.lineage import TABLE, graph
from lakehouse.lineage import dot as to_dot

settings = ui.settings()
ui.title("Lineage")
nodes = graph(settings.kafka.topic_prefix)


@st.fragment(run_every=max(settings.app.refresh_seconds, 10))
def lineage() -> None:
    now = ui.now()
    key = data.clock(now, 10)
    tables = [n for n in nodes.values() if n.kind == TABLE]
    states = {s.logical: s for s in data.cached.table_states(settings, [n.name for n in tables])}
    batches = data.cached.last_batches(settings, key - timedelta(hours=1))
    rows, labels = [], {}
    for node in tables:
        state = states[node.name]
        batch = batches.loc[node.writer] if node.writer in batches.index else None
        fresh = data.table_freshness(state, 300, now)
        labels[node.name] = f"v{state.version} · {node.writer}" if state.version is not None else f"not created · {node.writer}"
        rows.append({
            "table": node.name, "version": state.version, "written by": node.writer,
            "last commit": state.committed_at, "last batch": int(batch["batch_id"]) if batch is not None else None,
            "batch at": batch["recorded_at"] if batch is not None else None, "freshness": fresh.status,
            "age s": round(fresh.age_seconds) if fresh.age_seconds is not None else None,
            "inputs": ", ".join(node.inputs),
        })  # fmt: skip
    source = to_dot(nodes, labels)
    drawn = ui.graph_html(source)
    if drawn is not None:
        st.html(drawn)
    else:  # no Graphviz on this machine: the browser lays the graph out
        st.graphviz_chart(source, width="stretch")
    st.table(pd.DataFrame(rows).set_index("table"))  # static HTML: no data-grid bundle to load
    st.caption("freshness: a table's last commit against 5 minutes; KPI SLAs are on the Overview and KPI explorer")


lineage()

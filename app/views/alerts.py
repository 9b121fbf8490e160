"""Alerts: firing and recent alerts, each with its chart and band, lineage and runbook."""

from __future__ import annotations

from datetime import timedelta

import altair as alt
import pandas as pd
import streamlit as st

from app import auth, commands, data, ui
from lakehouse.alerts.content import runbook_path
from lakehouse.alerts.lifecycle import FIRING
from lakehouse.alerts.store import alert_from_row

settings, contracts = ui.settings(), ui.contracts()
ui.title("Alerts")


def describe(row: pd.Series) -> str:
    return f"{row['state']} · {row['rule']} · {row['kpi']} [{row['dimension']}] since {pd.Timestamp(row['first_seen_at']):%m-%d %H:%M}"


@st.fragment(run_every=max(settings.app.refresh_seconds, 5))
def alert_list() -> None:
    now = ui.now()
    read = data.cached.alerts_since(settings, data.clock(now, 5) - timedelta(days=1))
    frame = read.frame
    firing = frame[frame["state"] == FIRING] if len(frame) else frame
    st.metric("firing now", len(firing))
    columns = ["state", "rule", "kpi", "dimension", "observed", "expected", "lower", "upper", "first_seen_at", "updated_at"]
    st.table((frame[columns] if len(frame) else pd.DataFrame(columns=columns)).set_index("state"))  # static HTML: no data-grid bundle
    ui.footer(read, data.table_freshness(read.tables[0], 300, now), "gold.kpi (detect_kpi), ops.job_status (pipeline)", key="alerts")


alert_list()

recent = data.cached.alerts_since(settings, data.clock(ui.now(), 5) - timedelta(days=1)).frame
if len(recent):
    choice = st.selectbox("alert", range(len(recent)), format_func=lambda i: describe(recent.iloc[i]))
    row = recent.iloc[choice]
    alert = alert_from_row(row.to_dict())
    if auth.can(auth.APPROVER) and alert.state == FIRING and st.button("Acknowledge", key=f"ack-{alert.alert_id}"):
        command = commands.acknowledge(settings, alert.alert_id)
        st.success(f"acknowledged as {auth.current().name} (command {command[:8]}); the router records it in ops.notifications")
    contract = contracts.kpis.get(alert.kpi)
    st.markdown(f"**runbook** [{runbook_path(alert, contract.runbook if contract else None)}]({runbook_path(alert, contract.runbook if contract else None)})")
    if contract is not None:
        around = (alert.window_start - timedelta(hours=1), alert.window_end + timedelta(minutes=30))
        read, _ = data.cached.kpi_minutes(settings, *around, [alert.kpi], alert.dimension)
        frame = read.frame
        if len(frame):
            line = alt.Chart(frame[["window_start", "value"]]).mark_line().encode(x=alt.X("window_start:T", title="window (UTC)"), y=alt.Y("value:Q", title=alert.kpi))
            band = pd.DataFrame([{"window_start": alert.window_start, "lower": alert.lower, "upper": alert.upper, "observed": alert.observed}])
            marks = [line, alt.Chart(band).mark_rule(color="red").encode(x="window_start:T")]
            if alert.lower is not None and alert.upper is not None:
                marks.insert(0, alt.Chart(band).mark_errorbar(color="orange", thickness=6).encode(x="window_start:T", y="lower:Q", y2="upper:Q"))
            st.altair_chart(alt.layer(*marks), width="stretch")
        st.caption(f"observed {alert.observed} · expected {alert.expected} · band [{alert.lower}, {alert.upper}] · model {alert.model_version or '–'}")
        ui.footer(read, data.freshness_of(frame, contract.freshness_sla.total_seconds(), ui.now()), ui.kpi_sources(alert.kpi), key="alert-chart")
    else:
        st.caption(f"a pipeline alert: job `{alert.dimension}` (see Pipeline health) · lineage: ops.job_status")
else:
    st.caption("no alert in the last 24 hours")

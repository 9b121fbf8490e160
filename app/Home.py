"""trivas — the executive app: one Streamlit multipage product (``trivas app``).

Every page reads through :mod:`app.data` (delta-rs, read-only, cached) and draws each chart
with its freshness badge, lineage overlay and query popover (:mod:`app.ui`); live parts
refresh in fragments, without full reruns.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

VIEWS = Path(__file__).parent / "views"
PAGES = [
    st.Page(VIEWS / "overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page(VIEWS / "explorer.py", title="KPI explorer", icon=":material/query_stats:", url_path="explorer"),
    st.Page(VIEWS / "alerts.py", title="Alerts", icon=":material/notifications:", url_path="alerts"),
    st.Page(VIEWS / "quality.py", title="Data quality", icon=":material/rule:", url_path="quality"),
    st.Page(VIEWS / "lineage.py", title="Lineage", icon=":material/account_tree:", url_path="lineage"),
    st.Page(VIEWS / "health.py", title="Pipeline health", icon=":material/monitor_heart:", url_path="health"),
    st.Page(VIEWS / "models.py", title="Models", icon=":material/model_training:", url_path="models"),
]

st.set_page_config(page_title="trivas", layout="wide")
st.navigation(PAGES, position="top").run()

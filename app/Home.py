"""trivas — the executive app: one Streamlit multipage product (``trivas app``).

Every page reads through :mod:`app.data` (delta-rs, read-only, cached) and draws each chart
with its freshness badge, lineage overlay and query popover (:mod:`app.ui`); live parts
refresh in fragments, without full reruns.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import auth, ui

VIEWS = Path(__file__).parent / "views"
PAGES = [
    st.Page(VIEWS / "overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page(VIEWS / "explorer.py", title="KPI explorer", icon=":material/query_stats:", url_path="explorer"),
    st.Page(VIEWS / "alerts.py", title="Alerts", icon=":material/notifications:", url_path="alerts"),
    st.Page(VIEWS / "quality.py", title="Data quality", icon=":material/rule:", url_path="quality"),
    st.Page(VIEWS / "lineage.py", title="Lineage", icon=":material/account_tree:", url_path="lineage"),
    st.Page(VIEWS / "health.py", title="Pipeline health", icon=":material/monitor_heart:", url_path="health"),
    st.Page(VIEWS / "models.py", title="Models", icon=":material/model_training:", url_path="models"),
    st.Page(VIEWS / "actions.py", title="Actions", icon=":material/bolt:", url_path="actions"),
]

ADMIN_PAGES = [st.Page(VIEWS / "accounts.py", title="Accounts", icon=":material/group:", url_path="accounts")]

st.set_page_config(page_title="trivas", layout="wide")
user = auth.sign_in(ui.settings())
if user is None:
    st.stop()
st.session_state[auth.SESSION_KEY] = user
with st.sidebar:
    st.caption(f"signed in as **{user.name}** ({user.role})")
    if user.via != "anonymous":
        st.button("Sign out", on_click=auth.sign_out)
st.navigation(PAGES + (ADMIN_PAGES if auth.can(auth.ADMIN) else []), position="top").run()

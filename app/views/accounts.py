"""Accounts (admins only): who may sign in and with which role. Passwords are never shown;
accounts are added with `trivas accounts add`."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import auth, ui
from lakehouse.accounts import accounts_path, load_accounts

if not auth.can(auth.ADMIN):
    st.error("admins only")
    st.stop()
settings = ui.settings()
ui.title("Accounts")
accounts = load_accounts(accounts_path(settings))
st.table(pd.DataFrame([{"account": a.name, "role": a.role, "password": "set" if a.password_hash else "OIDC"} for a in accounts.values()]))
st.caption(f"`{settings.app.accounts_file}` · add or change: `trivas accounts add NAME --role viewer|approver|admin`")

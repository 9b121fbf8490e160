"""Who is looking: OIDC through ``st.login`` when configured, else a local account, else an
anonymous viewer. Pages ask :func:`can` before drawing any control that changes something;
a viewer's pages hold none."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from lakehouse.accounts import (
    ADMIN,
    APPROVER,
    VIEWER,
    accounts_path,
    allows,
    authenticate,
    load_accounts,
    role_of,
)
from lakehouse.config import Settings

SESSION_KEY = "trivas_user"


@dataclass(frozen=True)
class User:
    name: str
    role: str
    via: str  # oidc | account | anonymous


def oidc_configured() -> bool:
    """Whether ``.streamlit/secrets.toml`` configures an OIDC provider (``[auth]``)."""
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001 - no secrets file
        return False


def sign_in(settings: Settings) -> User | None:
    """The signed-in user; draws the sign-in form (and returns None) while there is none."""
    accounts = load_accounts(accounts_path(settings))
    if oidc_configured():
        if not st.user.is_logged_in:
            st.button("Log in", on_click=st.login, type="primary")
            return None
        email = str(st.user.get("email") or "")
        return User(email, role_of(accounts, email), "oidc")
    if not accounts:
        return User("anonymous", VIEWER, "anonymous")
    signed_in = st.session_state.get(SESSION_KEY)
    if signed_in is not None and signed_in.via == "account" and signed_in.name in accounts:
        return User(signed_in.name, accounts[signed_in.name].role, "account")  # the file's role now
    with st.form("sign-in"):
        st.subheader("Sign in to trivas")
        name = st.text_input("account")
        password = st.text_input("password", type="password")
        if st.form_submit_button("Sign in"):
            account = authenticate(accounts, name, password)
            if account is None:
                st.error("unknown account or wrong password")
            else:
                st.session_state[SESSION_KEY] = User(account.name, account.role, "account")
                st.rerun()
    return None


def sign_out() -> None:
    if oidc_configured():
        st.logout()
    st.session_state.pop(SESSION_KEY, None)


def current() -> User:
    """The user of this session (set by the entry page before any page runs)."""
    return st.session_state.get(SESSION_KEY) or User("anonymous", VIEWER, "anonymous")


def can(needed: str) -> bool:
    """Whether the current user's role includes ``needed`` (approver, admin)."""
    return allows(current().role, needed)


__all__ = ["ADMIN", "APPROVER", "VIEWER", "User", "can", "current", "sign_in", "sign_out"]

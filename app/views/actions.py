"""Actions: the pending queue with its evidence, approve/reject with a reason, the audit trail,
rollback and the kill switch. What the signed-in user may do follows their role (viewer,
approver, admin — :mod:`app.auth`); the action worker checks the same role again before it
obeys a command."""

from __future__ import annotations

import json

import altair as alt
import streamlit as st

from app import auth, ui
from app.data import action_overview, action_trail, audit_trail, evidence_series
from lakehouse.actions.approvals import PENDING, command
from lakehouse.actions.config import load_actions_config
from lakehouse.actions.roles import APPROVE, KILL_SWITCH, NotAllowed, allows, load_accounts
from lakehouse.actions.store import APPROVE as APPROVE_COMMAND
from lakehouse.actions.store import KILL_OFF, KILL_ON, REJECT, ROLLBACK, CommandLog
from lakehouse.actions.worker import kill_switch_on

settings = ui.settings()
config = load_actions_config()
accounts = load_accounts(config.accounts_path())
signed_in = auth.current()
user, role = (None if signed_in.via == "anonymous" else signed_in.name), signed_in.role


def act(kind: str, request_id: str | None, reason: str | None) -> None:
    try:
        command(settings, config, kind, user or "anonymous", request_id, reason or None, source="app")
        st.toast(f"{kind.replace('_', ' ')} recorded; the action worker carries it out within one poll")
    except (NotAllowed, ValueError, LookupError) as error:
        st.error(str(error))


st.title("Actions")
killed = config.killed() or kill_switch_on(CommandLog(settings).commands(), accounts)
with st.container(border=True):
    st.markdown(f"**Kill switch:** {':red[ON — nothing executes]' if killed else ':green[off]'}")
    if allows(role, KILL_SWITCH):
        why = st.text_input("reason", key="kill_reason")
        st.button("Turn kill switch off" if killed else "Turn kill switch on", key="kill",
                  on_click=act, args=(KILL_OFF if killed else KILL_ON, None, why))  # fmt: skip

frame = action_overview(settings)
pending = frame[frame["state"] == PENDING]
st.subheader(f"Pending approval ({len(pending)})")
if not len(pending):
    st.caption("nothing waits for an approver")
may_approve = allows(role, APPROVE)
for request in pending.to_dict("records"):
    key = request["request_id"]
    with st.container(border=True):
        st.markdown(f"**{request['policy']}** → `{request['action']}` **{request['target']}** · confidence {request['confidence']:.2f}"
                    f" · expires {request['expires_at']:%H:%M:%S} UTC{' · dry run' if request['dry_run'] else ''}")  # fmt: skip
        st.caption(request["reason"])
        evidence = json.loads(request["evidence"])
        series = evidence_series(evidence)
        if len(series):
            st.altair_chart(alt.Chart(series).mark_bar().encode(x=alt.X("value:Q"), y=alt.Y("fact:N", title=None)),
                            use_container_width=True)  # fmt: skip
        st.json(evidence, expanded=False)
        reason = st.text_input("reason", key=f"reason-{key}")
        left, right = st.columns(2)
        left.button("Approve", key=f"approve-{key}", disabled=not may_approve, on_click=act, args=(APPROVE_COMMAND, key, reason))
        right.button("Reject", key=f"reject-{key}", disabled=not may_approve, on_click=act, args=(REJECT, key, reason))
        if not may_approve:
            st.caption("approving needs the approver role")

executed = frame[frame["state"] == "executed"]
st.subheader(f"Executed ({len(executed)})")
for request in executed.to_dict("records"):
    key = request["request_id"]
    with st.expander(f"{request['policy']} → {request['action']} {request['target']} ({key[:12]})"):
        trail = action_trail(settings, key)
        st.dataframe(trail[["recorded_at", "event", "actor", "detail", "previous_state", "response_code"]], hide_index=True)
        reason = st.text_input("reason", key=f"rb-reason-{key}")
        st.button("Roll back", key=f"rollback-{key}", disabled=not may_approve, on_click=act, args=(ROLLBACK, key, reason))

st.subheader("All actions")
st.dataframe(frame[["proposed_at", "policy", "action", "target", "state", "confidence", "reason", "request_id"]] if len(frame) else frame,
             hide_index=True)  # fmt: skip
st.subheader("Audit trail")
st.dataframe(audit_trail(settings)[["recorded_at", "event", "actor", "policy", "target", "detail", "response_code", "request_id"]],
             hide_index=True)  # fmt: skip

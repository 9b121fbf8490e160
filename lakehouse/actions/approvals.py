"""What approvers do — approve, reject, roll back, the kill switch — checked against their role.

The CLI (``trivas actions …``) and the app's Actions page call these; each writes one row to
``ops.action_commands`` and the worker carries it out within one poll (and checks the role
again: the command table is not trusted on its own).
"""

from __future__ import annotations

import pandas as pd

from lakehouse.actions.config import ActionsConfig
from lakehouse.actions.roles import APPROVE as MAY_APPROVE
from lakehouse.actions.roles import KILL_SWITCH, load_accounts, require, role_of
from lakehouse.actions.roles import ROLLBACK as MAY_ROLL_BACK
from lakehouse.actions.store import (
    APPROVE,
    KILL_OFF,
    KILL_ON,
    REJECT,
    ROLLBACK,
    CommandLog,
    requests_log,
)
from lakehouse.config import Settings

PERMISSION = {APPROVE: MAY_APPROVE, REJECT: MAY_APPROVE, ROLLBACK: MAY_ROLL_BACK, KILL_ON: KILL_SWITCH, KILL_OFF: KILL_SWITCH}


class UnknownRequest(LookupError):
    """No proposal has this id."""


def find_request(settings: Settings, request_id: str) -> dict:
    """A proposal by id or by an unambiguous prefix of it."""
    frame = requests_log(settings).read()
    found = frame[frame["request_id"].astype(str).str.startswith(request_id)] if request_id else frame.iloc[0:0]
    if len(found) != 1:
        raise UnknownRequest(f"no single request matches {request_id!r} ({len(found)} found)")
    return found.iloc[0].to_dict()


def command(settings: Settings, config: ActionsConfig, kind: str, user: str, request_id: str | None = None,
            reason: str | None = None, source: str = "cli") -> str:  # fmt: skip
    """Record a command after checking the user's role (``NotAllowed``) and the request
    (``UnknownRequest``); returns the full request id (or the command id for the kill switch)."""
    role = role_of(load_accounts(config.accounts_path()), user)
    require(role, PERMISSION[kind], user)
    if request_id is not None:
        request_id = find_request(settings, request_id)["request_id"]
    if kind in (REJECT, ROLLBACK) and not (reason or "").strip():
        raise ValueError(f"{kind} needs a reason")
    command_id = CommandLog(settings).add(kind, user, role, request_id, reason, source)
    return request_id or command_id


def latest_per_request(audit: pd.DataFrame) -> pd.DataFrame:
    """The latest audit row of each request (pure)."""
    rows = audit[audit["request_id"].notna()].sort_values("recorded_at", kind="stable")
    return rows.drop_duplicates("request_id", keep="last")


PENDING = "pending"


def status_of(request: dict, events: set[str]) -> str:
    """What a request is waiting for or what became of it (pure): the furthest step recorded;
    ``pending`` while an approver has to decide."""
    for event in ("rolled_back", "executed", "failed", "dry_run", "executing", "rejected", "expired", "approved"):
        if event in events:
            return event
    if request["status"] == "suppressed":
        return "suppressed"
    return PENDING if request["needs_approval"] else "proposed"


def overview(settings: Settings) -> pd.DataFrame:
    """Every request with its status and last change, newest first (CLI and app)."""
    from lakehouse.actions.store import audit_log

    requests = requests_log(settings).read().copy()
    audit = audit_log(settings).read()
    events = audit.groupby("request_id")["event"].agg(set).to_dict() if len(audit) else {}
    updated = audit.groupby("request_id")["recorded_at"].max().to_dict() if len(audit) else {}
    requests["state"] = [status_of(r, events.get(r["request_id"], set())) for r in requests.to_dict("records")]
    requests["updated_at"] = [updated.get(k, p) for k, p in zip(requests["request_id"], requests["proposed_at"], strict=True)]
    return requests.sort_values("proposed_at", ascending=False, kind="stable").reset_index(drop=True)


def trail_of(settings: Settings, request_id: str) -> pd.DataFrame:
    """The audit trail of one request, oldest first."""
    from lakehouse.actions.store import audit_log

    audit = audit_log(settings).read()
    return audit[audit["request_id"] == request_id].sort_values("recorded_at", kind="stable").reset_index(drop=True)

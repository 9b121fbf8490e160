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

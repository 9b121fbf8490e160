"""Who may do what: roles ``viewer`` < ``approver`` < ``admin`` from an account file.

The accounts are the app's account file (:mod:`lakehouse.accounts`, ``trivas accounts add``;
``accounts_file`` in ``conf/actions.yaml`` or ``TRIVAS_ACTIONS_ACCOUNTS_FILE`` to point
elsewhere): the person who approves in the app is the one the worker checks. With OIDC
(``st.login``) an account is named by the e-mail; anyone not in the file is a viewer. The worker checks every
command's actor here again before obeying it, so a command row written by a viewer (or by hand)
is refused and audited, never executed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

VIEWER, APPROVER, ADMIN = "viewer", "approver", "admin"
ROLES = (VIEWER, APPROVER, ADMIN)
APPROVE, ROLLBACK, KILL_SWITCH = "approve", "rollback", "kill_switch"
# The least role each permission needs.
PERMISSIONS = {APPROVE: APPROVER, ROLLBACK: APPROVER, KILL_SWITCH: ADMIN}


class NotAllowed(PermissionError):
    """The user's role does not allow the command."""


@dataclass(frozen=True)
class Account:
    name: str
    role: str
    email: str | None = None


def load_accounts(path: Path) -> dict[str, Account]:
    """The accounts of a file (``accounts: {name: {role, email}}``; none when it does not exist);
    unknown roles are refused."""
    if not path.exists():
        return {}
    raw = yaml.safe_load(path.read_text()) or {}
    accounts = {}
    for name, spec in (raw.get("accounts") or {}).items():
        role = (spec or {}).get("role", VIEWER)
        if role not in ROLES:
            raise ValueError(f"account {name}: unknown role {role!r} (roles: {ROLES})")
        accounts[name] = Account(name, role, (spec or {}).get("email"))
    return accounts


def role_of(accounts: dict[str, Account], user: str | None) -> str:
    """A user's role by account name or e-mail; unknown users are viewers."""
    if user is None:
        return VIEWER
    for account in accounts.values():
        if user in (account.name, account.email):
            return account.role
    return VIEWER


def allows(role: str, permission: str) -> bool:
    """Whether ``role`` has ``permission``."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(PERMISSIONS[permission])


def require(role: str, permission: str, user: str | None) -> None:
    """Raise :class:`NotAllowed` unless ``role`` has ``permission``."""
    if not allows(role, permission):
        raise NotAllowed(f"{user or 'anonymous'} ({role}) may not {permission.replace('_', ' ')}: needs {PERMISSIONS[permission]}")

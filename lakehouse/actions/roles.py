"""Who may do what: roles ``viewer`` < ``approver`` < ``admin`` from an account file.

The accounts are the app's account file (:mod:`lakehouse.accounts`, ``trivas accounts add``;
``accounts_file`` in ``conf/actions.yaml`` or ``TRIVAS_ACTIONS_ACCOUNTS_FILE`` to point
elsewhere): the person who approves in the app is the one the worker checks. With OIDC
(``st.login``) an account is named by the e-mail; anyone not in the file is a viewer. The worker checks every
command's actor here again before obeying it, so a command row written by a viewer (or by hand)
is refused and audited, never executed.
"""

from __future__ import annotations

from lakehouse.accounts import ADMIN, APPROVER, ROLES, VIEWER, Account, load_accounts, role_of
from lakehouse.accounts import allows as role_includes

APPROVE, ROLLBACK, KILL_SWITCH = "approve", "rollback", "kill_switch"
# The least role each permission needs.
PERMISSIONS = {APPROVE: APPROVER, ROLLBACK: APPROVER, KILL_SWITCH: ADMIN}
__all__ = ["ADMIN", "APPROVER", "ROLES", "VIEWER", "Account", "NotAllowed", "allows", "load_accounts", "require", "role_of"]


class NotAllowed(PermissionError):
    """The user's role does not allow the command."""


def allows(role: str, permission: str) -> bool:
    """Whether ``role`` has ``permission``."""
    return role_includes(role, PERMISSIONS[permission])


def require(role: str, permission: str, user: str | None) -> None:
    """Raise :class:`NotAllowed` unless ``role`` has ``permission``."""
    if not allows(role, permission):
        raise NotAllowed(f"{user or 'anonymous'} ({role}) may not {permission.replace('_', ' ')}: needs {PERMISSIONS[permission]}")

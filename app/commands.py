"""The app's only writes: what an approver decides, through the stores that own those tables
(``ops.alert_commands`` for acknowledgements). Every call re-checks the role."""

from __future__ import annotations

from app import auth
from lakehouse.config import Settings


def acknowledge(settings: Settings, alert_id: str) -> str:
    """Acknowledge an alert as the signed-in approver; returns the command id."""
    from lakehouse.alerts.store import CommandLog

    user = auth.current()
    if not auth.can(auth.APPROVER):
        raise PermissionError(f"{user.name} ({user.role}) may not acknowledge alerts")
    return CommandLog(settings).ack(alert_id, author=user.name, source="app")

"""Who is on call: rotations with hand-offs in a time zone, layers, overrides (pure).

Shifts are counted in the schedule's wall-clock time, as PagerDuty does: a daily rotation
handing off at 09:00 Europe/Berlin hands off at 09:00 local on both sides of a DST change
(07:00 UTC in summer, 08:00 UTC in winter), so the shift that spans the change lasts 23 or 25
hours instead of drifting by one hour. Later layers take precedence over earlier ones where
they have someone on call (a weekend layer over the weekly one); an override beats all layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from lakehouse.alerts.config import AlertsConfig, EscalationLevel, Layer, Schedule


@dataclass(frozen=True)
class Shift:
    """Someone on call: the user, the layer (or ``override``) and the shift's bounds (UTC)."""

    user: str
    layer: str
    starts_at: datetime
    ends_at: datetime


def _local(moment: datetime, zone: ZoneInfo) -> datetime:
    """Naive wall-clock time in ``zone`` (the axis shifts are counted on)."""
    return moment.astimezone(zone).replace(tzinfo=None)


def _utc(wall: datetime, zone: ZoneInfo) -> datetime:
    return wall.replace(tzinfo=zone).astimezone(UTC)


def layer_shift(layer: Layer, at: datetime, zone: ZoneInfo) -> Shift | None:
    """The layer's shift at ``at`` (None before its start or outside its days/hours)."""
    local = _local(at, zone)
    if local < layer.start or not layer.users:
        return None
    if layer.days and local.weekday() not in layer.days:
        return None
    if layer.hours and not layer.hours[0] <= local.hour < layer.hours[1]:
        return None
    index = int((local - layer.start) / layer.length)
    begins = layer.start + index * layer.length
    ends = begins + layer.length
    if layer.hours:  # on call until the end of today's window, not the end of the turn
        ends = min(ends, local.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(hours=layer.hours[1]))
    return Shift(layer.users[index % len(layer.users)], layer.name, _utc(begins, zone), _utc(ends, zone))


def on_call(schedule: Schedule, at: datetime) -> Shift | None:
    """Who is on call in ``schedule`` at ``at`` (an aware datetime)."""
    if at.tzinfo is None:
        raise ValueError("on_call needs an aware datetime")
    zone = ZoneInfo(schedule.time_zone)
    local = _local(at, zone)
    for override in schedule.overrides:
        if override.start <= local < override.end:
            return Shift(override.user, "override", _utc(override.start, zone), _utc(override.end, zone))
    for layer in reversed(schedule.layers):
        shift = layer_shift(layer, at, zone)
        if shift is not None:
            return shift
    return None


def level_recipients(config: AlertsConfig, level: EscalationLevel, at: datetime) -> list[str]:
    """User ids an escalation level pages at ``at``: its schedule's on-call, then its users."""
    users: list[str] = []
    if level.schedule:
        shift = on_call(config.schedules[level.schedule], at)
        if shift is not None:
            users.append(shift.user)
    users.extend(u for u in level.users if u not in users)
    return users

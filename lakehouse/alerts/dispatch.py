"""From the current alerts to the notifications due now: grouping, repeats, escalation (pure).

The dispatcher is a state machine driven by the clock it is given (tests pass any ``now``).
Each call of :meth:`Dispatcher.due` looks at every alert of ``gold.alerts`` with its labels,
its acknowledgement, silences and inhibitions, and returns what must be sent now:

- Grouping (Alertmanager's timers): alerts of a route and receiver with the same ``group_by``
  labels share one message. A new group waits ``group_wait`` to collect its first alerts; later
  changes (new alerts, resolutions) wait ``group_interval`` after the group's last message; a
  group still firing with nothing new is re-sent after ``repeat_interval``.
- Events: each alert appears in a message for one event — ``firing``, ``resolved`` (only to a
  receiver it fired to), ``acknowledged`` (to receivers with ``send_acknowledged``),
  ``repeat:N`` or ``page:L`` (escalation level L) — and a (alert, receiver, event) is sent at
  most once: :class:`Delivered` holds what was sent, seeded from ``ops.notifications`` after a
  restart, so a replayed or re-read alert row sends nothing twice.
- Silences and inhibition mute firing alerts (not their resolution); each muted alert is
  reported once per reason so ``ops.notifications`` says why it was not sent.
- Escalation: a firing, unacknowledged alert of a route with an escalation policy pages level
  L's on-call through its receiver once it has been notified for ``after``.
- PagerDuty gets one event per alert (its ``dedup_key`` is the alert id); the others one
  message per group.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lakehouse.alerts.config import AlertsConfig, Route
from lakehouse.alerts.lifecycle import FIRING, RESOLVED, Alert
from lakehouse.alerts.oncall import level_recipients
from lakehouse.alerts.routing import Inhibition, Silence, match_routes, silenced_by

EVENT_FIRING, EVENT_RESOLVED, EVENT_ACKNOWLEDGED, EVENT_TEST = "firing", "resolved", "acknowledged", "test"
PER_ALERT_RECEIVERS = ("pagerduty",)


def delivery_key(alert_id: str, receiver: str, event: str) -> str:
    """The at-most-once key of one alert's event on one receiver."""
    return hashlib.sha256(f"{alert_id}|{receiver}|{event}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Ack:
    """An acknowledgement of an alert (CLI or a receiver's callback)."""

    alert_id: str
    author: str
    at: datetime
    source: str = "cli"


@dataclass
class AlertContext:
    """An alert with what routing and the message need."""

    alert: Alert
    labels: dict[str, str]
    details: dict[str, Any] = field(default_factory=dict)  # enrichment: watermark, is_final, lineage, links


@dataclass
class Item:
    """One alert in a notification, with the event it is sent for."""

    context: AlertContext
    event: str
    inhibits: list[str] = field(default_factory=list)  # summaries of the alerts it mutes

    @property
    def alert_id(self) -> str:
        return self.context.alert.alert_id


@dataclass
class Notification:
    """A message to one receiver: one or more alerts, each for one event."""

    id: str
    receiver: str
    route: str
    group_key: str
    event: str  # the message's main event (firing, resolved, repeat:N, page:L, acknowledged, test)
    items: list[Item]
    still_firing: list[str] = field(default_factory=list)  # ids of the group's alerts notified before
    recipients: list[str] = field(default_factory=list)  # user ids paged (escalation)
    created_at: datetime | None = None


@dataclass(frozen=True)
class Muted:
    """A firing alert not sent to a receiver, and why."""

    alert_id: str
    receiver: str
    route: str
    status: str  # silenced | inhibited
    reason: str


@dataclass
class Delivered:
    """What was sent (or is being sent) per (alert, receiver, event), and when."""

    keys: set[str] = field(default_factory=set)
    first_firing: dict[tuple[str, str], datetime] = field(default_factory=dict)  # (alert, receiver) → first firing sent
    last_sent: dict[tuple[str, str], datetime] = field(default_factory=dict)

    def has(self, alert_id: str, receiver: str, event: str) -> bool:
        return delivery_key(alert_id, receiver, event) in self.keys

    def add(self, alert_id: str, receiver: str, event: str, at: datetime) -> None:
        self.keys.add(delivery_key(alert_id, receiver, event))
        if event == EVENT_FIRING:
            self.first_firing.setdefault((alert_id, receiver), at)
        previous = self.last_sent.get((alert_id, receiver))
        self.last_sent[(alert_id, receiver)] = at if previous is None else max(previous, at)

    def first_notified(self, alert_id: str) -> datetime | None:
        times = [t for (a, _), t in self.first_firing.items() if a == alert_id]
        return min(times) if times else None


@dataclass
class GroupState:
    created_at: datetime
    last_sent: datetime | None = None


def group_key(route: Route, receiver: str, labels: dict[str, str]) -> str:
    parts = ",".join(f"{g}={labels.get(g, '')}" for g in route.timing.group_by)
    return f"{route.name}|{receiver}|{parts}"


def notification_id(receiver: str, key: str, event: str, alert_ids: list[str]) -> str:
    """Same content → same id (a replayed dispatch names its message the same)."""
    payload = "|".join([receiver, key, event, *sorted(alert_ids)])
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


@dataclass
class Dispatcher:
    """Grouping, repeats and escalation over the alerts of each tick (see the module doc)."""

    config: AlertsConfig
    delivered: Delivered = field(default_factory=Delivered)
    groups: dict[str, GroupState] = field(default_factory=dict)
    reported_mutes: set[tuple[str, str, str]] = field(default_factory=set)

    def _receiver_type(self, name: str) -> str:
        return self.config.receivers[name].type

    def due(
        self,
        alerts: list[AlertContext],
        now: datetime,
        acks: dict[str, Ack] | None = None,
        silences: list[Silence] | None = None,
        inhibited: dict[str, Inhibition] | None = None,
    ) -> tuple[list[Notification], list[Muted]]:
        """Notifications due at ``now`` (marked as delivered: the caller sends them) and the
        alerts newly muted."""
        acks, silences, inhibited = acks or {}, silences or [], inhibited or {}
        mutes_by_source: dict[str, list[str]] = {}
        for target, why in inhibited.items():
            mutes_by_source.setdefault(why.source_id, []).append(target)
        summaries = {c.alert.alert_id: summary(c.alert) for c in alerts}
        pending: dict[str, list[Item]] = {}
        firing_members: dict[str, list[str]] = {}
        routes_of: dict[str, Route] = {}
        muted: list[Muted] = []
        pages: list[Notification] = []
        for context in alerts:
            alert = context.alert
            aid = alert.alert_id
            for route in match_routes(self.config.route, context.labels):
                for receiver in route.receivers:
                    key = group_key(route, receiver, context.labels)
                    routes_of[key] = route
                    event = self._event(context, receiver, acks, now)
                    mute = self._mute(context, silences, inhibited, now) if alert.state == FIRING else None
                    if mute is not None and event in (EVENT_FIRING, None):
                        if (aid, receiver, mute[1]) not in self.reported_mutes:
                            self.reported_mutes.add((aid, receiver, mute[1]))
                            muted.append(Muted(aid, receiver, route.name, mute[0], mute[1]))
                        continue
                    if alert.state == FIRING and aid not in acks and self.delivered.has(aid, receiver, EVENT_FIRING):
                        firing_members.setdefault(key, []).append(aid)
                    if event is not None:
                        inhibits = [summaries.get(t, t) for t in mutes_by_source.get(aid, [])]
                        pending.setdefault(key, []).append(Item(context, event, inhibits))
                escalates = alert.state == FIRING and aid not in acks and route.escalation
                if escalates and self._mute(context, silences, inhibited, now) is None:
                    pages.extend(self._pages(context, route, now))
        out: list[Notification] = []
        for key in sorted(set(pending) | set(firing_members)):
            route, receiver = routes_of[key], key.split("|")[1]
            state = self.groups.get(key)
            if state is None:
                # A group the router restarted with: its last message from the delivery history.
                known = [self.delivered.last_sent.get((a, receiver)) for a in firing_members.get(key, [])]
                known = [t for t in known if t is not None]
                # group_wait counts from the first alert's creation, not from when the router saw it.
                born = [i.context.alert.first_seen_at for i in pending.get(key, [])]
                state = self.groups[key] = GroupState(created_at=min([now, *born]), last_sent=max(known) if known else None)
            items = pending.get(key, [])
            if items:
                wait = route.timing.group_wait if state.last_sent is None else route.timing.group_interval
                since = state.created_at if state.last_sent is None else state.last_sent
                if now < since + wait:
                    continue
            elif state.last_sent is not None and now >= state.last_sent + route.timing.repeat_interval:
                items = self._repeats(key, receiver, route, firing_members[key], alerts, now)
            if not items:
                continue
            out.extend(self._messages(key, receiver, route, items, firing_members.get(key, []), now))
            state.last_sent = now
        for key in [k for k in self.groups if k not in pending and k not in firing_members]:
            del self.groups[key]  # everything resolved and said: the next alert starts afresh
        return out + pages, muted

    def _event(self, context: AlertContext, receiver: str, acks: dict[str, Ack], now: datetime) -> str | None:
        alert, spec = context.alert, self.config.receivers[receiver]
        aid = alert.alert_id
        fired = self.delivered.has(aid, receiver, EVENT_FIRING)
        if alert.state == RESOLVED:
            if fired and spec.send_resolved and not self.delivered.has(aid, receiver, EVENT_RESOLVED):
                return EVENT_RESOLVED
            return None
        if aid in acks:
            if acks[aid].source == spec.type:
                return None  # acknowledged there (a PagerDuty webhook): do not echo it back
            if fired and spec.send_acknowledged and not self.delivered.has(aid, receiver, EVENT_ACKNOWLEDGED):
                return EVENT_ACKNOWLEDGED
            return None
        if fired:
            return None
        if alert.first_seen_at < now - self.config.ignore_older_than:
            return None  # a router started long after the fact does not page for old news
        return EVENT_FIRING

    def _mute(
        self, context: AlertContext, silences: list[Silence], inhibited: dict[str, Inhibition], now: datetime
    ) -> tuple[str, str] | None:
        silence = silenced_by(context.labels, silences, now)
        if silence is not None:
            return "silenced", f"silenced by {silence.id} ({silence.author}: {silence.reason}) until {silence.ends_at.isoformat()}"
        why = inhibited.get(context.alert.alert_id)
        if why is not None:
            return "inhibited", why.explain()
        return None

    def _repeats(
        self, key: str, receiver: str, route: Route, members: list[str], alerts: list[AlertContext], now: datetime
    ) -> list[Item]:
        by_id = {c.alert.alert_id: c for c in alerts}
        items = []
        for aid in members:
            first = self.delivered.first_firing.get((aid, receiver))
            if first is None or aid not in by_id:
                continue
            n = int((now - first) / route.timing.repeat_interval)
            event = f"repeat:{n}"
            if n >= 1 and not self.delivered.has(aid, receiver, event):
                items.append(Item(by_id[aid], event))
        return items

    def _pages(self, context: AlertContext, route: Route, now: datetime) -> list[Notification]:
        aid = context.alert.alert_id
        base = self.delivered.first_notified(aid)
        if base is None:
            return []
        policy = self.config.escalation_policies[route.escalation or ""]
        out = []
        for number, level in enumerate(policy.levels, start=1):
            event = f"page:{number}"
            if now < base + level.after or self.delivered.has(aid, level.receiver, event):
                continue
            recipients = level_recipients(self.config, level, now)
            key = f"{route.name}|{level.receiver}|page={aid}"
            self.delivered.add(aid, level.receiver, event, now)
            out.append(
                Notification(
                    notification_id(level.receiver, key, event, [aid]), level.receiver, route.name, key, event,
                    [Item(context, event)], recipients=recipients, created_at=now,
                )  # fmt: skip
            )
        return out

    def _messages(
        self, key: str, receiver: str, route: Route, items: list[Item], members: list[str], now: datetime
    ) -> list[Notification]:
        for item in items:
            self.delivered.add(item.alert_id, receiver, item.event, now)
        sent_now = {i.alert_id for i in items}
        still = [a for a in members if a not in sent_now]
        batches = [[i] for i in items] if self._receiver_type(receiver) in PER_ALERT_RECEIVERS else [items]
        out = []
        for batch in batches:
            events = {i.event for i in batch}
            event = next(iter(events)) if len(events) == 1 else EVENT_FIRING
            nid = notification_id(receiver, key, event, [f"{i.alert_id}:{i.event}" for i in batch])
            out.append(Notification(nid, receiver, route.name, key, event, batch, still, created_at=now))
        return out


def summary(alert: Alert) -> str:
    """One line naming an alert: ``orders (country=DE, 1m) anomaly_model``."""
    return f"{alert.kpi} ({alert.dimension}, {alert.grain}) {alert.rule}"

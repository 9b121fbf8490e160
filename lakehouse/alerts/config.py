"""``conf/alerts.yaml``: receivers, the routing tree, inhibition, on-call schedules, escalation.

The file is data, parsed once into frozen objects. Secrets (SMTP credentials, webhook URLs that
carry a token, the PagerDuty routing key, the webhook signing secret) are never literals in it:
a secret field ``x`` is given as ``x_env`` (an environment variable) or ``x_file`` (a file), and
is resolved when a receiver is built, into a :class:`pydantic.SecretStr` that prints masked.
A receiver whose secret is not set is disabled with a warning instead of failing the router.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr

from lakehouse import home

RECEIVER_TYPES = ("email", "slack", "pagerduty", "webhook")
# Fields that may only come from the environment or a file.
SECRET_FIELDS = {
    "email": ("username", "password"),
    "slack": ("url",),
    "pagerduty": ("routing_key",),
    "webhook": ("url", "secret"),
}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str | int | float) -> timedelta:
    """``"30s"``, ``"5m"``, ``"4h"``, ``"7d"``, ``"1w"`` (a bare number is seconds)."""
    if isinstance(text, int | float):
        return timedelta(seconds=float(text))
    found = _DURATION.match(str(text).strip())
    if not found:
        raise ValueError(f"invalid duration {text!r}: use e.g. 30s, 5m, 4h, 7d")
    return timedelta(seconds=float(found.group(1)) * _UNITS[found.group(2)])


class MissingSecret(LookupError):
    """A receiver's secret is neither in its environment variable nor in its file."""


def resolve_secret(raw: dict[str, Any], name: str, environ: dict[str, str] | None = None) -> SecretStr | None:
    """The secret ``name`` of a receiver from ``name_env`` or ``name_file`` (None if neither is
    configured; :class:`MissingSecret` if configured but not set)."""
    environ = os.environ if environ is None else environ
    if f"{name}_env" in raw:
        value = environ.get(raw[f"{name}_env"], "")
        if not value:
            raise MissingSecret(f"environment variable {raw[f'{name}_env']} is not set")
        return SecretStr(value)
    if f"{name}_file" in raw:
        path = Path(raw[f"{name}_file"])
        path = path if path.is_absolute() else home() / path
        if not path.exists():
            raise MissingSecret(f"secret file {path} does not exist")
        return SecretStr(path.read_text().strip())
    return None


@dataclass(frozen=True)
class ReceiverConfig:
    """One receiver as configured (secrets unresolved: see :func:`resolve_secret`)."""

    name: str
    type: str
    options: dict[str, Any]
    send_resolved: bool = True
    send_acknowledged: bool = False
    timeout_s: float = 10.0
    max_attempts: int = 6
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0

    def option(self, key: str, default: Any = None, environ: dict[str, str] | None = None) -> Any:
        """A non-secret option; ``key_env`` (if set in the environment) wins over ``key``."""
        environ = os.environ if environ is None else environ
        env_name = self.options.get(f"{key}_env")
        if env_name and environ.get(env_name):
            return environ[env_name]
        return self.options.get(key, default)


@dataclass(frozen=True)
class Matcher:
    """``label op value`` with op in ``=``, ``!=``, ``=~`` (full regex match), ``!~``."""

    label: str
    op: str
    value: str

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.label, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = re.fullmatch(self.value, actual) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f'{self.label}{self.op}"{self.value}"'


_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*$')


def parse_matcher(text: str) -> Matcher:
    """``kpi="orders"``, ``severity=~"critical|error"``, ``rule!=freshness_sla``."""
    found = _MATCHER.match(text)
    if not found:
        raise ValueError(f"invalid matcher {text!r}: use label=value, label!=value, label=~regex or label!~regex")
    label, op, value = found.groups()
    if op in ("=~", "!~"):
        re.compile(value)
    return Matcher(label, op, value)


def parse_matchers(raw: Any) -> tuple[Matcher, ...]:
    """A list of matcher strings, or a mapping ``label: value`` (equality)."""
    if raw is None:
        return ()
    if isinstance(raw, dict):
        return tuple(Matcher(str(k), "=", str(v)) for k, v in raw.items())
    return tuple(parse_matcher(str(item)) for item in raw)


@dataclass(frozen=True)
class Timing:
    """Grouping and repeat timers of a route (inherited from the parent when not set)."""

    group_by: tuple[str, ...] = ("kpi", "rule")
    group_wait: timedelta = timedelta(seconds=30)
    group_interval: timedelta = timedelta(minutes=5)
    repeat_interval: timedelta = timedelta(hours=4)


@dataclass(frozen=True)
class Route:
    """A node of the routing tree (see :func:`lakehouse.alerts.routing.match_routes`)."""

    name: str
    receivers: tuple[str, ...]
    matchers: tuple[Matcher, ...]
    timing: Timing
    continue_: bool = False
    escalation: str | None = None
    routes: tuple[Route, ...] = ()


@dataclass(frozen=True)
class InhibitRule:
    """A firing alert matching ``source`` mutes the alerts matching ``target`` that share the
    ``equal`` labels with it."""

    name: str
    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...]


@dataclass(frozen=True)
class User:
    """A person on call (contact details are used to address pages, never logged)."""

    id: str
    name: str
    email: str | None = None
    slack: str | None = None


@dataclass(frozen=True)
class Layer:
    """A rotation: ``users`` take turns of ``length``, handing off at ``start``'s wall-clock
    time in the schedule's zone; ``days``/``hours`` restrict when the layer is on at all."""

    name: str
    users: tuple[str, ...]
    start: datetime  # naive wall-clock time in the schedule's zone
    length: timedelta
    days: tuple[int, ...] = ()  # 0 = Monday; empty = every day
    hours: tuple[int, int] | None = None  # [from, to) hours of the day, local


@dataclass(frozen=True)
class Override:
    """``user`` is on call instead of the layers from ``start`` to ``end`` (wall clock)."""

    user: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Schedule:
    """Layers (later ones win where they have someone on call) and overrides, in one zone."""

    name: str
    time_zone: str
    layers: tuple[Layer, ...]
    overrides: tuple[Override, ...] = ()


@dataclass(frozen=True)
class EscalationLevel:
    """Page the on-call of ``schedule`` (or ``users``) through ``receiver`` once an alert has
    been firing, unacknowledged, for ``after``."""

    after: timedelta
    receiver: str
    schedule: str | None = None
    users: tuple[str, ...] = ()


@dataclass(frozen=True)
class EscalationPolicy:
    name: str
    levels: tuple[EscalationLevel, ...]


@dataclass(frozen=True)
class AlertsConfig:
    """Everything in ``conf/alerts.yaml``."""

    receivers: dict[str, ReceiverConfig]
    route: Route
    inhibit_rules: tuple[InhibitRule, ...] = ()
    severities: dict[str, str] = field(default_factory=dict)
    dashboard_url: str = "http://localhost:8501/"
    docs_url: str = ""
    users: dict[str, User] = field(default_factory=dict)
    schedules: dict[str, Schedule] = field(default_factory=dict)
    escalation_policies: dict[str, EscalationPolicy] = field(default_factory=dict)
    ignore_older_than: timedelta = timedelta(days=1)
    poll_interval: timedelta = timedelta(seconds=1)
    callbacks: dict[str, Any] = field(default_factory=dict)  # acknowledgement endpoint (lakehouse.alerts.callbacks)

    def routes(self) -> list[Route]:
        """Every route of the tree, depth first."""
        out: list[Route] = []

        def walk(route: Route) -> None:
            out.append(route)
            for child in route.routes:
                walk(child)

        walk(self.route)
        return out

    def route_named(self, name: str) -> Route:
        for route in self.routes():
            if route.name == name:
                return route
        raise KeyError(f"no route named {name!r}; routes: {[r.name for r in self.routes()]}")


def _receiver(name: str, raw: dict[str, Any]) -> ReceiverConfig:
    kind = raw.get("type")
    if kind not in RECEIVER_TYPES:
        raise ValueError(f"receiver {name}: type must be one of {RECEIVER_TYPES}, got {kind!r}")
    for secret in SECRET_FIELDS[kind]:
        if secret in raw:
            raise ValueError(f"receiver {name}: {secret} is a secret: give {secret}_env or {secret}_file, never the value")
    known = {"type", "send_resolved", "send_acknowledged", "timeout", "max_attempts", "backoff", "max_backoff"}
    return ReceiverConfig(
        name=name,
        type=kind,
        options={k: v for k, v in raw.items() if k not in known},
        send_resolved=bool(raw.get("send_resolved", True)),
        send_acknowledged=bool(raw.get("send_acknowledged", kind == "pagerduty")),
        timeout_s=parse_duration(raw.get("timeout", "10s")).total_seconds(),
        max_attempts=int(raw.get("max_attempts", 6)),
        backoff_s=parse_duration(raw.get("backoff", "1s")).total_seconds(),
        max_backoff_s=parse_duration(raw.get("max_backoff", "60s")).total_seconds(),
    )


def _timing(raw: dict[str, Any], parent: Timing) -> Timing:
    return Timing(
        group_by=tuple(raw.get("group_by", parent.group_by)),
        group_wait=parse_duration(raw["group_wait"]) if "group_wait" in raw else parent.group_wait,
        group_interval=parse_duration(raw["group_interval"]) if "group_interval" in raw else parent.group_interval,
        repeat_interval=parse_duration(raw["repeat_interval"]) if "repeat_interval" in raw else parent.repeat_interval,
    )


def _route(raw: dict[str, Any], parent: Route | None, path: str) -> Route:
    timing = _timing(raw, parent.timing if parent else Timing())
    receivers = raw.get("receivers", raw.get("receiver"))
    if receivers is None:
        receivers = parent.receivers if parent else ()
    receivers = (receivers,) if isinstance(receivers, str) else tuple(receivers)
    name = str(raw.get("name", path))
    node = Route(
        name=name,
        receivers=receivers,
        matchers=parse_matchers(raw.get("matchers", raw.get("match"))),
        timing=timing,
        continue_=bool(raw.get("continue", False)),
        escalation=raw.get("escalation", parent.escalation if parent else None),
    )
    children = tuple(_route(child, node, f"{name}/{i}") for i, child in enumerate(raw.get("routes", [])))
    return Route(node.name, node.receivers, node.matchers, node.timing, node.continue_, node.escalation, children)


def _wall_clock(text: Any) -> datetime:
    moment = text if isinstance(text, datetime) else datetime.fromisoformat(str(text))
    if moment.tzinfo is not None:
        raise ValueError(f"{text!r}: give on-call times as wall-clock times of the schedule's time_zone, without an offset")
    return moment


def _schedule(name: str, raw: dict[str, Any]) -> Schedule:
    from zoneinfo import ZoneInfo

    ZoneInfo(raw["time_zone"])  # fail early on an unknown zone
    days = {d: i for i, d in enumerate(("mon", "tue", "wed", "thu", "fri", "sat", "sun"))}
    layers = []
    for i, layer in enumerate(raw.get("layers", [])):
        hours = layer.get("hours")
        layers.append(
            Layer(
                name=str(layer.get("name", f"layer{i + 1}")),
                users=tuple(layer["users"]),
                start=_wall_clock(layer["start"]),
                length=parse_duration(layer.get("length", "7d")),
                days=tuple(days[str(d).lower()[:3]] for d in layer.get("days", [])),
                hours=(int(hours[0]), int(hours[1])) if hours else None,
            )
        )
    overrides = tuple(
        Override(str(o["user"]), _wall_clock(o["start"]), _wall_clock(o["end"])) for o in raw.get("overrides", [])
    )
    return Schedule(name, raw["time_zone"], tuple(layers), overrides)


def parse_config(raw: dict[str, Any]) -> AlertsConfig:
    """Validate and freeze the content of an alerts file."""
    receivers = {name: _receiver(name, spec) for name, spec in (raw.get("receivers") or {}).items()}
    route = _route(raw["route"], None, raw["route"].get("name", "root"))
    for node in [route, *_descendants(route)]:
        unknown = set(node.receivers) - set(receivers)
        if unknown:
            raise ValueError(f"route {node.name}: unknown receivers {sorted(unknown)}")
    inhibit = tuple(
        InhibitRule(
            str(rule.get("name", f"inhibit{i + 1}")),
            parse_matchers(rule.get("source")),
            parse_matchers(rule.get("target")),
            tuple(rule.get("equal", [])),
        )
        for i, rule in enumerate(raw.get("inhibit_rules", []))
    )
    oncall = raw.get("oncall") or {}
    users = {
        uid: User(uid, str(u.get("name", uid)), u.get("email"), u.get("slack")) for uid, u in (oncall.get("users") or {}).items()
    }
    schedules = {name: _schedule(name, s) for name, s in (oncall.get("schedules") or {}).items()}
    for schedule in schedules.values():
        named = {u for layer in schedule.layers for u in layer.users} | {o.user for o in schedule.overrides}
        if named - set(users):
            raise ValueError(f"schedule {schedule.name}: unknown users {sorted(named - set(users))}")
    policies = {}
    for name, policy in (oncall.get("escalation_policies") or {}).items():
        levels = tuple(
            EscalationLevel(
                parse_duration(level.get("after", 0)), str(level["receiver"]), level.get("schedule"), tuple(level.get("users", []))
            )
            for level in policy["levels"]
        )
        for level in levels:
            if level.receiver not in receivers:
                raise ValueError(f"escalation policy {name}: unknown receiver {level.receiver!r}")
            if level.schedule and level.schedule not in schedules:
                raise ValueError(f"escalation policy {name}: unknown schedule {level.schedule!r}")
        policies[name] = EscalationPolicy(name, levels)
    for node in [route, *_descendants(route)]:
        if node.escalation and node.escalation not in policies:
            raise ValueError(f"route {node.name}: unknown escalation policy {node.escalation!r}")
    return AlertsConfig(
        receivers=receivers,
        route=route,
        inhibit_rules=inhibit,
        severities={str(k): str(v) for k, v in (raw.get("severities") or {}).items()},
        dashboard_url=str(raw.get("dashboard_url", "http://localhost:8501/")),
        docs_url=str(raw.get("docs_url", "")),
        users=users,
        schedules=schedules,
        escalation_policies=policies,
        ignore_older_than=parse_duration(raw.get("ignore_older_than", "1d")),
        poll_interval=parse_duration(raw.get("poll_interval", "1s")),
        callbacks=_callbacks(raw.get("callbacks") or {}),
    )


def _callbacks(raw: dict[str, Any]) -> dict[str, Any]:
    for secret in ("slack_signing_secret", "pagerduty_signing_secret"):
        if secret in raw:
            raise ValueError(f"callbacks: {secret} is a secret: give {secret}_env or {secret}_file, never the value")
    return dict(raw)


def _descendants(route: Route) -> list[Route]:
    out = []
    for child in route.routes:
        out.append(child)
        out.extend(_descendants(child))
    return out


def load_alerts_config(path: Path | None = None, settings: Any = None) -> AlertsConfig:
    """Parse ``path``, else the settings' ``alerts.file`` (``conf/alerts.yaml`` by default;
    ``TRIVAS_ALERTS__FILE`` or ``conf/<env>.yaml`` name another)."""
    if path is None:
        from lakehouse.config import load_settings

        path = (settings or load_settings()).alerts_file()
    return parse_config(yaml.safe_load(Path(path).read_text()))

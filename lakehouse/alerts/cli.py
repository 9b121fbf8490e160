"""``trivas alerts …`` and ``trivas oncall …``."""

from __future__ import annotations

import getpass
import logging
import signal
import threading
from datetime import UTC, datetime

import typer
from rich.console import Console
from rich.table import Table

from lakehouse.config import Settings, load_settings

alerts_app = typer.Typer(help="Alert routing: run the router, test routes, list, ack, silence.", no_args_is_help=True)
oncall_app = typer.Typer(help="On-call schedules (conf/alerts.yaml).", no_args_is_help=True)
console = Console()


def _settings(env: str | None) -> Settings:
    return load_settings(env)


def _author(author: str | None) -> str:
    return author or getpass.getuser()


def parse_time(text: str | None) -> datetime:
    """``--at``: ISO-8601 with an offset (``2026-10-25T08:30+01:00``, ``…Z``); without one, UTC."""
    if not text:
        return datetime.now(UTC)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@alerts_app.command("run")
def run(
    local_receivers: bool = typer.Option(False, "--local-receivers", help="start a local SMTP server and webhook inbox and send there (playground)"),
    env: str = typer.Option(None),
) -> None:
    """Run the alert router until Ctrl-C (or SIGTERM)."""
    from lakehouse.alerts.router import AlertRouter
    from lakehouse.contracts import contracts

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = _settings(env)
    receivers = None
    if local_receivers:
        from lakehouse.alerts.local_receivers import apply_environment, start_local_receivers

        receivers = start_local_receivers(inbox_path(settings))
        apply_environment(receivers)
        logging.getLogger("trivas.alerts").info(
            "local receivers: SMTP 127.0.0.1:%d, webhook inbox 127.0.0.1:%d; inbox %s",
            receivers.smtp_port, receivers.http_port, receivers.inbox.path,
        )  # fmt: skip
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    router = AlertRouter(settings, contracts())
    callbacks = start_callbacks(router)
    try:
        router.run(stop, router.config.poll_interval.total_seconds())
    finally:
        router.close()
        if callbacks is not None:
            callbacks.stop()
        if receivers is not None:
            receivers.stop()


def start_callbacks(router):  # noqa: ANN001, ANN201 - AlertRouter → CallbackServer | None
    """The acknowledgement endpoint for Slack and PagerDuty, when ``callbacks:`` configures it."""
    from lakehouse.alerts.callbacks import CallbackServer
    from lakehouse.alerts.config import MissingSecret, resolve_secret

    options = router.config.callbacks
    if not options.get("port"):
        return None
    try:
        slack = resolve_secret(options, "slack_signing_secret")
        pagerduty = resolve_secret(options, "pagerduty_signing_secret")
    except MissingSecret as missing:
        logging.getLogger("trivas.alerts").warning("acknowledgement callbacks are off: %s", missing)
        return None
    server = CallbackServer(int(options["port"]), lambda aid, who, source: router.commands.ack(aid, who, source), slack, pagerduty,
                            host=str(options.get("host", "0.0.0.0")))  # noqa: S104  # fmt: skip
    logging.getLogger("trivas.alerts").info("acknowledgement callbacks on port %d", server.port)
    return server


def inbox_path(settings: Settings):  # noqa: ANN201 - Path
    return settings.path(settings.paths.var) / "alerts" / "inbox.jsonl"


@alerts_app.command("test")
def test(route: str = typer.Argument(..., help="route name in conf/alerts.yaml"), env: str = typer.Option(None)) -> None:
    """Send a test notification through ROUTE's receivers (the real senders) and show the outcome."""
    from lakehouse.alerts.router import AlertRouter
    from lakehouse.alerts.store import NotificationLog
    from lakehouse.contracts import contracts

    settings = _settings(env)
    router = AlertRouter(settings, contracts())
    try:
        sent = router.send_test(route)
        router.wait_idle(timeout_s=120)
    finally:
        router.close()
    ids = {n.id for n in sent}
    frame = NotificationLog(settings).read()
    frame = frame[frame["notification_id"].isin(ids)].sort_values("recorded_at", kind="stable")
    latest = frame.groupby("receiver").tail(1)
    table = Table("receiver", "status", "code", "attempt", "detail")
    failed = False
    for row in latest.itertuples(index=False):
        failed |= row.status != "delivered"
        code = "" if row.response_code != row.response_code or row.response_code is None else str(int(row.response_code))  # NaN: no answer
        table.add_row(row.receiver, row.status, code, str(row.attempt), row.detail or "")
    console.print(table)
    if failed or len(latest) < len(sent):
        raise typer.Exit(1)


@alerts_app.command("list")
def list_alerts(
    all_: bool = typer.Option(False, "--all", help="resolved alerts too"), env: str = typer.Option(None)
) -> None:
    """Alerts of gold.alerts with where they stand: firing, notified, acknowledged, resolved."""
    from lakehouse.alerts.store import AlertReader, CommandLog, NotificationLog

    settings = _settings(env)
    alerts = AlertReader(settings).alerts()
    acks = CommandLog(settings).acks()
    sent = NotificationLog(settings).read()
    delivered = sent[sent["status"] == "delivered"].groupby("alert_id")["receiver"].agg(lambda r: ", ".join(sorted(set(r))))
    table = Table("alert id", "kpi", "dimension", "rule", "state", "since", "notified", "acknowledged")
    for alert in sorted(alerts, key=lambda a: a.first_seen_at, reverse=True):
        if alert.state != "firing" and not all_:
            continue
        ack = acks.get(alert.alert_id)
        state = alert.state if alert.state == "resolved" else ("acknowledged" if ack else ("notified" if alert.alert_id in delivered else "firing"))
        table.add_row(alert.alert_id, alert.kpi, alert.dimension, alert.rule, state, alert.first_seen_at.strftime("%Y-%m-%d %H:%M:%S"),
                      delivered.get(alert.alert_id, ""), f"{ack.author} {ack.at:%H:%M:%S}" if ack else "")  # fmt: skip
    console.print(table)


@alerts_app.command("ack")
def ack(alert_id: str, author: str = typer.Option(None, help="who acknowledges (default: $USER)"), env: str = typer.Option(None)) -> None:
    """Acknowledge an alert: no more repeats or escalation; PagerDuty gets an acknowledge event."""
    from lakehouse.alerts.store import AlertReader, CommandLog

    settings = _settings(env)
    known = {a.alert_id for a in AlertReader(settings).alerts()}
    if alert_id not in known:
        console.print(f"[red]no alert {alert_id} in gold.alerts[/]")
        raise typer.Exit(1)
    CommandLog(settings).ack(alert_id, _author(author))
    console.print(f"acknowledged {alert_id}")


@alerts_app.command("silence")
def silence(
    matchers: list[str] = typer.Argument(..., help='label matchers, e.g. kpi=orders \'country=~"DE|FR"\''),
    duration: str = typer.Option("2h", "--for", help="how long (30m, 2h, 1d)"),
    reason: str = typer.Option(..., help="why (shown in ops.notifications and to whoever looks)"),
    author: str = typer.Option(None),
    env: str = typer.Option(None),
) -> None:
    """Mute the firing alerts that match every matcher, until the silence expires."""
    from lakehouse.alerts.config import parse_duration, parse_matcher
    from lakehouse.alerts.store import CommandLog

    settings = _settings(env)
    parsed = [parse_matcher(m) for m in matchers]
    ends = datetime.now(UTC) + parse_duration(duration)
    silence_id = CommandLog(settings).silence(parsed, _author(author), reason, ends)
    console.print(f"silence {silence_id}: {' '.join(str(m) for m in parsed)} until {ends:%Y-%m-%d %H:%M:%S} UTC")


@alerts_app.command("unsilence")
def unsilence(silence_id: str, author: str = typer.Option(None), env: str = typer.Option(None)) -> None:
    """Remove a silence before it expires."""
    from lakehouse.alerts.store import CommandLog

    try:
        CommandLog(_settings(env)).unsilence(silence_id, _author(author))
    except KeyError as error:
        console.print(f"[red]{error.args[0]}[/]")
        raise typer.Exit(1) from None
    console.print(f"removed silence {silence_id}")


@alerts_app.command("silences")
def silences(env: str = typer.Option(None)) -> None:
    """Active silences."""
    from lakehouse.alerts.store import CommandLog

    table = Table("id", "matchers", "author", "reason", "until (UTC)")
    for s in CommandLog(_settings(env)).silences():
        table.add_row(s.id, " ".join(str(m) for m in s.matchers), s.author, s.reason, f"{s.ends_at:%Y-%m-%d %H:%M:%S}")
    console.print(table)


@alerts_app.command("inbox")
def inbox(
    channel: str = typer.Option(None, help="email, slack, pagerduty or webhook"),
    last: int = typer.Option(10, help="how many"),
    env: str = typer.Option(None),
) -> None:
    """What the playground's local receivers got (``trivas demo``)."""
    from lakehouse.alerts.local_receivers import Inbox

    for entry in Inbox(inbox_path(_settings(env))).entries(channel)[-last:]:
        console.rule(f"{entry['channel']} · {entry['received_at']}")
        if entry["channel"] == "email":
            console.print(f"To: {', '.join(entry['rcpt_to'])}\nSubject: {entry['subject']}\n\n{entry['text']}", markup=False, soft_wrap=True)
        else:
            import json

            console.print_json(json.dumps(entry["body"]))


@oncall_app.command("who")
def who(
    route: str = typer.Argument(None, help="route name (its escalation policy); default: every schedule"),
    at: str = typer.Option(None, "--at", help="ISO-8601 time, e.g. 2026-10-25T08:30+01:00 (default: now; no offset = UTC)"),
) -> None:
    """Who is on call (now or at --at), per escalation level of ROUTE or per schedule."""
    from zoneinfo import ZoneInfo

    from lakehouse.alerts.config import load_alerts_config
    from lakehouse.alerts.oncall import level_recipients, on_call

    config = load_alerts_config()
    moment = parse_time(at)
    console.print(f"on call at {moment.isoformat()}:")

    def until(schedule: str, shift) -> str:  # noqa: ANN001
        zone = ZoneInfo(config.schedules[schedule].time_zone)
        return f" until {shift.ends_at.astimezone(zone):%Y-%m-%d %H:%M %Z} ({shift.layer})" if shift else ""

    if route:
        policy_name = config.route_named(route).escalation
        if not policy_name:
            console.print(f"route {route} has no escalation policy: it notifies {', '.join(config.route_named(route).receivers)}")
            return
        for number, level in enumerate(config.escalation_policies[policy_name].levels, start=1):
            names = ", ".join(config.users[u].name for u in level_recipients(config, level, moment)) or "nobody"
            shift = on_call(config.schedules[level.schedule], moment) if level.schedule else None
            where = f"schedule {level.schedule}" if level.schedule else "users"
            console.print(f"L{number} (after {level.after}, {where}, via {level.receiver}): {names}{until(level.schedule, shift) if level.schedule else ''}", markup=False, soft_wrap=True)
    else:
        for name, schedule in config.schedules.items():
            shift = on_call(schedule, moment)
            console.print(f"{name}: {config.users[shift.user].name if shift else 'nobody'}{until(name, shift)}", markup=False, soft_wrap=True)

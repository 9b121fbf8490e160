"""What a notification says, per channel (pure: data in, message out).

Every alert carries what an on-call person needs to act without opening five tools: the KPI
and dimension, observed value against the expected band, how unusual (score, confidence),
since when, the data's freshness watermark and whether the window is final, lineage (the
tables and versions the value came from), the dashboard and the runbook. A resolution says
that the KPI is back in its band and how long the episode lasted.

Formats: e-mail (plain text and HTML), Slack Block Kit (header, section fields, link buttons,
context), PagerDuty Events API v2 (``dedup_key`` = the alert id, so trigger, acknowledge and
resolve address one incident) and a generic JSON document for signed webhooks.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from lakehouse.alerts.config import AlertsConfig
from lakehouse.alerts.dispatch import (
    EVENT_ACKNOWLEDGED,
    EVENT_RESOLVED,
    EVENT_TEST,
    Item,
    Notification,
)
from lakehouse.alerts.lifecycle import (
    RULE_DATA_QUALITY,
    RULE_FRESHNESS,
    RULE_JOB_FAILED,
    RULE_MAX,
    RULE_MIN,
    RULE_MODEL_OPEN,
    Alert,
)

RUNBOOKS = "docs/runbooks.md"
RULE_RUNBOOKS = {
    RULE_MODEL_OPEN: f"{RUNBOOKS}#kpi-early-warning",
    RULE_MIN: f"{RUNBOOKS}#kpi-threshold",
    RULE_MAX: f"{RUNBOOKS}#kpi-threshold",
    RULE_FRESHNESS: f"{RUNBOOKS}#freshness-sla",
    RULE_JOB_FAILED: f"{RUNBOOKS}#pipeline-job-failed",
    RULE_DATA_QUALITY: f"{RUNBOOKS}#data-quality",
    "test": f"{RUNBOOKS}#alert-delivery",
}
PD_SEVERITIES = ("critical", "error", "warning", "info")
SUMMARY_LIMIT = 1024  # PagerDuty's payload.summary limit
SLACK_TEXT_LIMIT = 2900  # a section's text is limited to 3000 characters


def number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def stamp(moment: Any) -> str:
    if moment is None:
        return "n/a"
    if isinstance(moment, datetime):
        return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(moment)


def runbook_path(alert: Alert, contract_runbook: str | None) -> str:
    """The runbook of the alert's kind; a KPI anomaly uses its contract's runbook."""
    if alert.rule in RULE_RUNBOOKS:
        return RULE_RUNBOOKS[alert.rule]
    return contract_runbook or f"{RUNBOOKS}#kpi-out-of-band"


def link(config: AlertsConfig, path: str) -> str:
    """A docs path as a link (``docs_url`` + path, or the repository path when unset)."""
    return f"{config.docs_url.rstrip('/')}/{path}" if config.docs_url else path


def dashboard_link(config: AlertsConfig, alert: Alert) -> str:
    return config.dashboard_url.format(kpi=alert.kpi, dimension=alert.dimension, grain=alert.grain)


def headline(item: Item) -> str:
    """One line: what happened."""
    a = item.context.alert
    what = {
        RULE_FRESHNESS: f"{a.kpi} is stale: no update for {number(a.observed)} s (SLA {number(a.upper)} s)",
        RULE_JOB_FAILED: f"pipeline job {a.dimension} failed ({number(a.observed)} time(s) in a row)",
        RULE_DATA_QUALITY: f"data quality of {a.dimension}: {number(a.observed)} expectation(s) failed",
        RULE_MIN: f"{a.kpi} ({a.dimension}) below its minimum: {number(a.observed)} < {number(a.lower)}",
        RULE_MAX: f"{a.kpi} ({a.dimension}) above its maximum: {number(a.observed)} > {number(a.upper)}",
        "test": f"test notification through route {a.dimension}",
    }.get(a.rule, f"{a.kpi} ({a.dimension}) out of band: {number(a.observed)} outside [{number(a.lower)}, {number(a.upper)}]")
    if item.event == EVENT_RESOLVED:
        lasted = a.updated_at - a.first_seen_at
        return f"RESOLVED {a.kpi} ({a.dimension}) {a.rule}: back in its band since {stamp(a.updated_at)} (lasted {lasted})"
    if item.event == EVENT_ACKNOWLEDGED:
        return f"ACKNOWLEDGED {what}"
    return what


def facts(item: Item, config: AlertsConfig) -> list[tuple[str, str]]:
    """The ordered facts of one alert (the same in every channel)."""
    a, d = item.context.alert, item.context.details
    rows = [
        ("KPI", f"{a.kpi} ({a.grain})"),
        ("Dimension", a.dimension),
        ("Rule", a.rule),
        ("Severity", item.context.labels.get("severity", "warning")),
        ("Observed", number(a.observed)),
        ("Expected band", f"{number(a.expected)} in [{number(a.lower)}, {number(a.upper)}]"),
        ("Score / confidence", f"{number(a.score)} / {number(a.confidence)}"),
        ("Since", f"{stamp(a.first_seen_at)} (window {stamp(a.window_start)} – {stamp(a.window_end)})"),
        ("Watermark", stamp(d.get("watermark"))),
        ("Window final", {True: "yes", False: "no (partial, may be restated)"}.get(d.get("is_final"), "n/a")),
        ("Lineage", d.get("lineage") or "n/a"),
        ("Alert id", a.alert_id),
    ]
    if d.get("error"):
        rows.append(("Error", str(d["error"])[:500]))
    if item.inhibits:
        rows.append(("Suppressing", f"{len(item.inhibits)} alert(s) it causes: " + "; ".join(item.inhibits[:10])))
    if item.event == EVENT_RESOLVED:
        rows.append(("Resolved at", stamp(a.updated_at)))
    return rows


def links(item: Item, config: AlertsConfig) -> list[tuple[str, str]]:
    a = item.context.alert
    return [
        ("Dashboard", dashboard_link(config, a)),
        ("Runbook", link(config, runbook_path(a, item.context.details.get("runbook")))),
    ]


def title(notification: Notification) -> str:
    """``[FIRING:2] orders anomaly_model`` (the group's common labels)."""
    event = notification.event.split(":")[0].upper()
    if notification.event.startswith("page:"):
        event = f"PAGE L{notification.event.split(':')[1]}"
    first = notification.items[0].context.alert
    count = len(notification.items)
    extra = f" +{count - 1} more" if count > 1 else ""
    return f"[{event}:{count}] {first.kpi} {first.rule} ({first.dimension}){extra}"


def recipients_line(notification: Notification, config: AlertsConfig) -> str | None:
    if not notification.recipients:
        return None
    names = [config.users[u].name if u in config.users else u for u in notification.recipients]
    return f"Paging escalation level {notification.event.split(':')[1]}: {', '.join(names)} (on call now)"


def text_body(notification: Notification, config: AlertsConfig) -> str:
    """The plain-text message (e-mail body, Slack fallback text)."""
    lines = [title(notification), ""]
    page = recipients_line(notification, config)
    if page:
        lines += [page, ""]
    for item in notification.items:
        lines.append(headline(item))
        lines += [f"  {k}: {v}" for k, v in facts(item, config)]
        lines += [f"  {k}: {v}" for k, v in links(item, config)]
        lines.append("")
    if notification.still_firing:
        lines.append(f"Still firing in this group (notified before): {', '.join(notification.still_firing)}")
    lines.append(f"Acknowledge: trivas alerts ack {notification.items[0].alert_id}")
    return "\n".join(lines)


def html_body(notification: Notification, config: AlertsConfig) -> str:
    parts = [f"<h2>{html.escape(title(notification))}</h2>"]
    page = recipients_line(notification, config)
    if page:
        parts.append(f"<p><b>{html.escape(page)}</b></p>")
    for item in notification.items:
        parts.append(f"<h3>{html.escape(headline(item))}</h3><table>")
        parts += [f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts(item, config)]
        parts.append("</table><p>")
        parts.append(" · ".join(f"<a href='{html.escape(u)}'>{html.escape(k)}</a>" for k, u in links(item, config)))
        parts.append("</p>")
    parts.append(f"<p>Acknowledge: <code>trivas alerts ack {html.escape(notification.items[0].alert_id)}</code></p>")
    return "".join(parts)


def email_message(notification: Notification, config: AlertsConfig, sender: str, to: list[str]) -> EmailMessage:
    """A multipart (text + HTML) e-mail."""
    message = EmailMessage()
    message["Subject"] = title(notification)
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["X-Trivas-Notification"] = notification.id
    message.set_content(text_body(notification, config))
    message.add_alternative(html_body(notification, config), subtype="html")
    return message


def slack_blocks(notification: Notification, config: AlertsConfig) -> list[dict[str, Any]]:
    """Block Kit blocks: a header, per alert a headline, its facts as fields, link buttons."""
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": title(notification)[:150]}}]
    page = recipients_line(notification, config)
    if page:
        mentions = [f"<@{config.users[u].slack}>" for u in notification.recipients if u in config.users and config.users[u].slack]
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": " ".join([page, *mentions])}})
    for item in notification.items[:10]:  # Slack allows 50 blocks per message
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*{headline(item)}*"[:SLACK_TEXT_LIMIT]}})
        fields = [{"type": "mrkdwn", "text": f"*{k}*\n{v}"[:2000]} for k, v in facts(item, config)]
        for start in range(0, len(fields), 10):  # at most 10 fields per section
            blocks.append({"type": "section", "fields": fields[start : start + 10]})
        buttons = [
            {"type": "button", "text": {"type": "plain_text", "text": k}, "url": u, "action_id": f"{k.lower()}-{item.alert_id}"}
            for k, u in links(item, config)
            if u.startswith(("http://", "https://"))
        ]
        if config.callbacks and item.event not in (EVENT_RESOLVED, EVENT_ACKNOWLEDGED, EVENT_TEST):
            # Pressing it calls back trivas (lakehouse.alerts.callbacks), which records the ack.
            buttons.append({"type": "button", "text": {"type": "plain_text", "text": "Acknowledge"}, "style": "primary",
                            "action_id": f"trivas_ack-{item.alert_id}", "value": item.alert_id})  # fmt: skip
        if buttons:
            blocks.append({"type": "actions", "elements": buttons})
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"Runbook: {link(config, runbook_path(item.context.alert, item.context.details.get('runbook')))}"}]})
    footer = f"Acknowledge: `trivas alerts ack {notification.items[0].alert_id}`"
    if notification.still_firing:
        footer += f" · still firing (notified before): {', '.join(notification.still_firing)}"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": footer[:SLACK_TEXT_LIMIT]}]})
    return blocks


def pagerduty_event(item: Item, notification: Notification, config: AlertsConfig, routing_key: str) -> dict[str, Any]:
    """An Events API v2 event: trigger (firing, repeat, page), acknowledge or resolve."""
    a = item.context.alert
    action = {EVENT_RESOLVED: "resolve", EVENT_ACKNOWLEDGED: "acknowledge"}.get(item.event, "trigger")
    event: dict[str, Any] = {"routing_key": routing_key, "event_action": action, "dedup_key": a.alert_id}
    if action != "trigger":
        return event
    severity = item.context.labels.get("severity", "warning")
    event["payload"] = {
        "summary": headline(item)[:SUMMARY_LIMIT],
        "source": f"trivas/{item.context.labels.get('job', 'detect')}",
        "severity": severity if severity in PD_SEVERITIES else "warning",
        "timestamp": a.first_seen_at.astimezone(UTC).isoformat(),
        "component": a.kpi,
        "group": item.context.labels.get("domain", ""),
        "class": a.rule,
        # Every link is in the details too: PagerDuty's links take absolute URLs only, and the
        # runbook is a repository path unless runbook_base is set.
        "custom_details": {k: v for k, v in facts(item, config)} | dict(links(item, config)) | {"event": item.event},
    }
    event["links"] = [{"href": u, "text": k} for k, u in links(item, config) if u.startswith(("http://", "https://"))]
    event["client"] = "trivas"
    event["client_url"] = dashboard_link(config, a)
    return event


def webhook_document(notification: Notification, config: AlertsConfig) -> dict[str, Any]:
    """The generic webhook's JSON body."""
    return {
        "version": "1",
        "notification_id": notification.id,
        "receiver": notification.receiver,
        "route": notification.route,
        "group_key": notification.group_key,
        "event": notification.event,
        "title": title(notification),
        "recipients": notification.recipients,
        "still_firing": notification.still_firing,
        "alerts": [
            {
                "alert_id": i.alert_id,
                "event": i.event,
                "state": i.context.alert.state,
                "headline": headline(i),
                "labels": i.context.labels,
                "facts": dict(facts(i, config)),
                "links": dict(links(i, config)),
            }
            for i in notification.items
        ],
        "test": notification.event == EVENT_TEST,
    }

"""The senders against real servers: aiosmtpd (STARTTLS + AUTH), local HTTP(S) servers standing
in for Slack, PagerDuty and a webhook consumer; payloads checked against the documented shapes."""

from __future__ import annotations

import json
import ssl
import time
from email import message_from_bytes, policy
from pathlib import Path

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from lakehouse.alerts.dispatch import Dispatcher
from lakehouse.alerts.receivers import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    EmailSender,
    PagerDutySender,
    SlackSender,
    WebhookSender,
    sign,
    verify_signature,
)
from lakehouse.runtime.processes import free_port
from tests.alerts.conftest import Clock, config_of, context_of, make_alert, resolved

pytestmark = pytest.mark.integration

SMTP_PASSWORD = "smtp-pw-7f3a9c"  # noqa: S105 - a test secret, asserted never to leak
ROUTING_KEY = "R0UT1NGKEY0000000000000000000042"


def receivers_yaml(extra: str = "") -> str:
    return f"""
dashboard_url: "http://localhost:8501/?kpi={{kpi}}"
docs_url: "https://github.com/trivas/trivas/blob/main"
receivers:
  mail:
    type: email
    smtp_host: 127.0.0.1
    smtp_port_env: TEST_SMTP_PORT
    starttls: true
    ca_file_env: TEST_CA_FILE
    username_env: TEST_SMTP_USER
    password_env: TEST_SMTP_PASSWORD
    from: alerts@trivas.example
    to: [oncall@trivas.example]
  slack: {{type: slack, url_env: TEST_SLACK_URL}}
  pager: {{type: pagerduty, url_env: TEST_PD_URL, ca_file_env: TEST_CA_FILE, routing_key_env: TEST_PD_KEY}}
  hook: {{type: webhook, url_env: TEST_HOOK_URL, secret_env: TEST_HOOK_SECRET}}
route:
  receivers: [mail, slack, pager, hook]
  group_by: [kpi]
  group_wait: 0s
  group_interval: 1m
{extra}"""


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture()
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


class Mailbox:
    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001, N802
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content, policy=policy.default), session.authenticated))
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:  # noqa: ANN001
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"alerts" and auth_data.password == SMTP_PASSWORD.encode()
    return AuthResult(success=ok)


def notification_for(config, kpi_contracts, alert):  # noqa: ANN001, ANN201
    sent, _ = Dispatcher(config).due([context_of(alert, config, kpi_contracts)], Clock()())
    return {n.receiver: n for n in sent}


def test_email_over_starttls_with_login_carries_what_on_call_needs(
    ca: trustme.CA, ca_file: str, monkeypatch: pytest.MonkeyPatch, kpi_contracts, caplog: pytest.LogCaptureFixture
) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    mailbox, port = Mailbox(), free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, tls_context=server_context, require_starttls=True,
                            authenticator=authenticator, auth_required=True)  # fmt: skip
    controller.start()
    try:
        for name, value in {"TEST_SMTP_PORT": str(port), "TEST_CA_FILE": ca_file, "TEST_SMTP_USER": "alerts", "TEST_SMTP_PASSWORD": SMTP_PASSWORD}.items():
            monkeypatch.setenv(name, value)
        config = config_of(receivers_yaml())
        alert = make_alert()
        outcome = EmailSender(config.receivers["mail"], config).attempt(notification_for(config, kpi_contracts, alert)["mail"])
    finally:
        controller.stop()
    assert (outcome.delivered, outcome.code) == (True, 250)
    [(to, message, authenticated)] = mailbox.messages
    assert to == ["oncall@trivas.example"] and authenticated
    assert message["Subject"] == "[FIRING:1] orders anomaly_model (country=DE)"
    text = message.get_body(preferencelist=("plain",)).get_content()
    for expected in (
        "orders (country=DE) out of band: 3 outside [30.2, 52.8]",
        "KPI: orders (1m)", "Dimension: country=DE", "Observed: 3", "Expected band: 41.5 in [30.2, 52.8]",
        "Score / confidence: 7.9 / 0.97", "Since: 2026-11-30 10:00:00 UTC (window 2026-11-30 09:53:00 UTC",
        "Watermark: 2026-11-30 10:00:00 UTC", "Window final: yes", "Lineage: gold.kpi@v7 ← silver.events@v12",
        "Dashboard: http://localhost:8501/?kpi=orders",
        "Runbook: https://github.com/trivas/trivas/blob/main/docs/runbooks.md#kpi-out-of-band",
        f"trivas alerts ack {alert.alert_id}",
    ):  # fmt: skip
        assert expected in text
    assert "<a href='https://github.com/trivas/trivas/blob/main/docs/runbooks.md#kpi-out-of-band'>Runbook</a>" in message.get_body(
        preferencelist=("html",)
    ).get_content()
    assert SMTP_PASSWORD not in caplog.text


def test_slack_block_kit_message(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch, kpi_contracts) -> None:
    from slack_sdk.models.blocks import Block

    httpserver.expect_request("/services/T0/B0/tok", method="POST").respond_with_data("ok")
    monkeypatch.setenv("TEST_SLACK_URL", httpserver.url_for("/services/T0/B0/tok"))
    config = config_of(receivers_yaml())
    outcome = SlackSender(config.receivers["slack"], config).attempt(notification_for(config, kpi_contracts, make_alert())["slack"])
    assert (outcome.delivered, outcome.code) == (True, 200)
    [(request, _)] = httpserver.log
    body = request.get_json()
    assert body["text"].startswith("[FIRING:1] orders anomaly_model (country=DE)")
    blocks = body["blocks"]
    # Every block parses as a Block Kit block of the documented type (slack_sdk's models).
    assert [type(Block.parse(b)).__name__ for b in blocks] == [
        "HeaderBlock", "SectionBlock", "SectionBlock", "SectionBlock", "ActionsBlock", "ContextBlock", "ContextBlock",
    ]  # fmt: skip
    assert blocks[0] == {"type": "header", "text": {"type": "plain_text", "text": "[FIRING:1] orders anomaly_model (country=DE)"}}
    fields = [f["text"] for f in blocks[2]["fields"]] + [f["text"] for f in blocks[3]["fields"]]
    assert len(blocks[2]["fields"]) <= 10 and "*Expected band*\n41.5 in [30.2, 52.8]" in fields and "*Window final*\nyes" in fields
    assert [(e["text"]["text"], e["url"]) for e in blocks[4]["elements"]] == [
        ("Dashboard", "http://localhost:8501/?kpi=orders"),
        ("Runbook", "https://github.com/trivas/trivas/blob/main/docs/runbooks.md#kpi-out-of-band"),
    ]


@pytest.fixture()
def tls_server(ca: trustme.CA):  # noqa: ANN201
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server = HTTPServer(host="127.0.0.1", port=free_port(), ssl_context=context)
    server.start()
    yield server
    server.clear()
    server.stop()


def test_pagerduty_events_v2_trigger_and_resolve_share_the_dedup_key(
    tls_server: HTTPServer, ca_file: str, monkeypatch: pytest.MonkeyPatch, kpi_contracts
) -> None:
    tls_server.expect_request("/v2/enqueue", method="POST").respond_with_json({"status": "success", "message": "Event processed"}, status=202)
    monkeypatch.setenv("TEST_PD_URL", tls_server.url_for("/v2/enqueue"))
    monkeypatch.setenv("TEST_CA_FILE", ca_file)
    monkeypatch.setenv("TEST_PD_KEY", ROUTING_KEY)
    config = config_of(receivers_yaml())
    sender = PagerDutySender(config.receivers["pager"], config)
    alert = make_alert(rule="freshness_sla", dimension="all", observed=240.0, upper=60.0, expected=None, lower=None)
    dispatcher, clock = Dispatcher(config), Clock()
    [trigger] = [n for n in dispatcher.due([context_of(alert, config, kpi_contracts)], clock())[0] if n.receiver == "pager"]
    assert sender.attempt(trigger).code == 202
    [resolve] = [n for n in dispatcher.due([context_of(resolved(alert, clock.advance(minutes=3)), config, kpi_contracts)], clock())[0] if n.receiver == "pager"]
    assert sender.attempt(resolve).code == 202
    first, second = (r.get_json() for r, _ in tls_server.log)
    assert first["routing_key"] == ROUTING_KEY and first["event_action"] == "trigger"
    assert first["dedup_key"] == second["dedup_key"] == alert.alert_id and len(first["dedup_key"]) <= 255
    payload = first["payload"]
    assert {"summary", "source", "severity"} <= set(payload) and payload["severity"] in ("critical", "error", "warning", "info")
    assert payload["summary"] == "orders is stale: no update for 240 s (SLA 60 s)" and payload["severity"] == "critical"
    assert payload["custom_details"]["Lineage"] == "gold.kpi@v7 ← silver.events@v12"
    assert {"href": "https://github.com/trivas/trivas/blob/main/docs/runbooks.md#freshness-sla", "text": "Runbook"} in first["links"]
    assert payload["custom_details"]["Runbook"].endswith("docs/runbooks.md#freshness-sla")
    assert second == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": alert.alert_id}


def test_signed_webhook_verifies_and_refuses_tampering(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch, kpi_contracts) -> None:
    secret = "whsec-test-0a1b2c"
    seen: list[bool] = []

    def consumer(request: Request) -> Response:
        body = request.get_data()
        seen.append(verify_signature(secret.encode(), request.headers.get(TIMESTAMP_HEADER), body, request.headers.get(SIGNATURE_HEADER)))
        return Response("{}", status=200 if seen[-1] else 401)

    httpserver.expect_request("/hook", method="POST").respond_with_handler(consumer)
    monkeypatch.setenv("TEST_HOOK_URL", httpserver.url_for("/hook"))
    monkeypatch.setenv("TEST_HOOK_SECRET", secret)
    config = config_of(receivers_yaml())
    alert = make_alert()
    assert WebhookSender(config.receivers["hook"], config).attempt(notification_for(config, kpi_contracts, alert)["hook"]).code == 200
    [(request, _)] = httpserver.log
    document = json.loads(request.get_data())
    assert seen == [True] and document["alerts"][0]["alert_id"] == alert.alert_id and document["event"] == "firing"
    assert document["alerts"][0]["labels"]["country"] == "DE" and request.headers["Idempotency-Key"] == document["notification_id"]
    stamp, body = request.headers[TIMESTAMP_HEADER], request.get_data()
    signature = request.headers[SIGNATURE_HEADER]
    assert not verify_signature(secret.encode(), stamp, body.replace(b"firing", b"resolve"), signature)
    assert not verify_signature(b"another secret", stamp, body, signature)
    old = int(time.time()) - 3600  # a replayed request an hour later
    assert not verify_signature(secret.encode(), str(old), body, sign(secret.encode(), old, body))

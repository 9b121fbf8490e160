"""Local receivers for the playground: a real SMTP server and a webhook inbox.

``trivas demo`` (through ``trivas alerts run --local-receivers``) starts both and points the
receivers of ``conf/alerts.yaml`` at them by setting their environment variables (the Slack
webhook URL, the PagerDuty events URL and routing key, the signed webhook's URL and secret,
the SMTP host and port). Everything they receive is appended to an inbox file (JSON lines):
``trivas alerts inbox`` shows it. The webhook inbox checks the trivas signature of what it
receives on ``/webhook``, and answers as the real services do (Slack ``200 ok``, PagerDuty
``202`` with the ``dedup_key``).
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from lakehouse.alerts.receivers import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature

SLACK_PATH, PAGERDUTY_PATH, WEBHOOK_PATH = "/slack", "/pagerduty/v2/enqueue", "/webhook"


class Inbox:
    """What the local receivers got, as JSON lines in a file (thread-safe appends)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, channel: str, **entry: Any) -> None:
        line = json.dumps({"channel": channel, "received_at": datetime.now(UTC).isoformat(), **entry}, default=str)
        with self.lock, self.path.open("a") as out:
            out.write(line + "\n")

    def entries(self, channel: str | None = None) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        rows = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        return [r for r in rows if channel is None or r["channel"] == channel]


class _MailHandler:
    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        message = message_from_bytes(envelope.content, policy=policy.default)
        body = message.get_body(preferencelist=("plain",))
        self.inbox.add(
            "email", mail_from=envelope.mail_from, rcpt_to=list(envelope.rcpt_tos), subject=str(message["Subject"]),
            text=body.get_content() if body is not None else "",
        )  # fmt: skip
        return "250 Message accepted for delivery"


def _free_port() -> int:
    from lakehouse.runtime.processes import free_port

    return free_port()


@dataclass
class LocalReceivers:
    """A running local SMTP server and webhook inbox."""

    inbox: Inbox
    smtp_port: int
    http_port: int
    webhook_secret: str
    routing_key: str
    _smtp: Any = None
    _http: ThreadingHTTPServer | None = None

    def environment(self) -> dict[str, str]:
        """The variables that point ``conf/alerts.yaml``'s receivers here."""
        base = f"http://127.0.0.1:{self.http_port}"
        return {
            "TRIVAS_ALERTS_SMTP_HOST": "127.0.0.1",
            "TRIVAS_ALERTS_SMTP_PORT": str(self.smtp_port),
            "TRIVAS_ALERTS_SLACK_URL": base + SLACK_PATH,
            "TRIVAS_ALERTS_PAGERDUTY_URL": base + PAGERDUTY_PATH,
            "TRIVAS_ALERTS_PAGERDUTY_ROUTING_KEY": self.routing_key,
            "TRIVAS_ALERTS_WEBHOOK_URL": base + WEBHOOK_PATH,
            "TRIVAS_ALERTS_WEBHOOK_SECRET": self.webhook_secret,
        }

    def stop(self) -> None:
        if self._smtp is not None:
            self._smtp.stop()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()


def start_local_receivers(inbox_path: Path) -> LocalReceivers:
    """Start the SMTP server (aiosmtpd) and the webhook inbox on free local ports."""
    from aiosmtpd.controller import Controller

    inbox = Inbox(inbox_path)
    secret = secrets.token_hex(16)
    smtp_port = _free_port()
    smtp = Controller(_MailHandler(inbox), hostname="127.0.0.1", port=smtp_port)
    smtp.start()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's hook name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            document = json.loads(body or b"null")
            if self.path == WEBHOOK_PATH:
                ok = verify_signature(secret.encode(), self.headers.get(TIMESTAMP_HEADER), body, self.headers.get(SIGNATURE_HEADER))
                inbox.add("webhook", signature_valid=ok, body=document)
                self._answer(200 if ok else 401, {"ok": ok})
            elif self.path == PAGERDUTY_PATH:
                inbox.add("pagerduty", body=_without_key(document))
                self._answer(202, {"status": "success", "message": "Event processed", "dedup_key": document.get("dedup_key")})
            elif self.path == SLACK_PATH:
                inbox.add("slack", body=document)
                self._answer(200, "ok")
            else:
                self._answer(404, {"error": "unknown path"})

        def _answer(self, code: int, payload: Any) -> None:
            data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:  # quiet
            return

    http = ThreadingHTTPServer(("127.0.0.1", _free_port()), Handler)
    threading.Thread(target=http.serve_forever, name="alerts-inbox", daemon=True).start()
    return LocalReceivers(inbox, smtp_port, http.server_address[1], secret, secrets.token_hex(16), smtp, http)


def _without_key(event: dict[str, Any]) -> dict[str, Any]:
    """The inbox keeps no routing key (it is a secret)."""
    return {k: ("***" if k == "routing_key" else v) for k, v in event.items()}


def apply_environment(receivers: LocalReceivers) -> None:
    os.environ.update(receivers.environment())

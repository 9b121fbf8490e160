"""Acknowledgements from the receivers: Slack's Acknowledge button and PagerDuty's webhooks.

An HTTP endpoint in the router's process (``callbacks:`` in ``conf/alerts.yaml``):

- ``POST /callbacks/slack``: Slack's interactivity request when someone presses the
  *Acknowledge* button of a message (``application/x-www-form-urlencoded``, ``payload`` = a
  ``block_actions`` document). Signed by Slack: ``X-Slack-Signature: v0=<hex HMAC-SHA256 of
  "v0:<X-Slack-Request-Timestamp>:<body>">`` with the app's signing secret.
- ``POST /callbacks/pagerduty``: a PagerDuty v3 webhook; ``incident.acknowledged`` carries the
  incident's ``incident_key`` (the ``dedup_key`` trivas sent: the alert id). Signed by PagerDuty:
  ``X-PagerDuty-Signature: v1=<hex HMAC-SHA256 of the body>`` (several, comma-separated, while a
  secret is rotated).

A request whose signature does not verify (constant-time comparison; Slack's timestamp within 5
minutes) is refused with 401 and changes nothing. A verified acknowledgement is written to
``ops.alert_commands`` (source ``slack`` or ``pagerduty``), where the router picks it up like
``trivas alerts ack``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from pydantic import SecretStr

from lakehouse.alerts.receivers import recent_timestamp

log = logging.getLogger("trivas.alerts.callbacks")
SLACK_PATH, PAGERDUTY_PATH = "/callbacks/slack", "/callbacks/pagerduty"
ACK_ACTION = "trivas_ack"
MAX_BODY = 256 * 1024
SLACK_TOLERANCE_S = 300


def slack_signature_valid(secret: bytes, timestamp: str | None, body: bytes, signature: str | None, now: float | None = None) -> bool:
    """Slack's request signing (v0), in constant time, with a bounded clock skew."""
    if recent_timestamp(timestamp, now, SLACK_TOLERANCE_S) is None or not signature:
        return False
    expected = "v0=" + hmac.new(secret, b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.encode())


def pagerduty_signature_valid(secret: bytes, body: bytes, header: str | None) -> bool:
    """PagerDuty v3 webhook signatures: any ``v1=`` of the header matches (constant time)."""
    if not header:
        return False
    expected = ("v1=" + hmac.new(secret, body, hashlib.sha256).hexdigest()).encode()
    return any(hmac.compare_digest(expected, part.strip().encode()) for part in header.split(","))


def slack_acks(body: bytes) -> list[tuple[str, str]]:
    """(alert id, who) of the Acknowledge buttons pressed in a Slack interactivity request."""
    payload = json.loads(parse_qs(body.decode()).get("payload", ["{}"])[0])
    user = payload.get("user") or {}
    who = user.get("username") or user.get("name") or user.get("id") or "slack user"
    return [(a["value"], f"{who} (slack)") for a in payload.get("actions", []) if a.get("action_id", "").startswith(ACK_ACTION) and a.get("value")]


def pagerduty_acks(body: bytes) -> list[tuple[str, str]]:
    """(alert id, who) of a PagerDuty ``incident.acknowledged`` webhook."""
    event = json.loads(body).get("event") or {}
    if event.get("event_type") != "incident.acknowledged":
        return []
    key = (event.get("data") or {}).get("incident_key")
    who = (event.get("agent") or {}).get("summary") or "pagerduty"
    return [(key, f"{who} (pagerduty)")] if key else []


class CallbackServer:
    """The callback endpoint; ``acknowledge(alert_id, author, source)`` records an ack."""

    def __init__(
        self,
        port: int,
        acknowledge: Callable[[str, str, str], None],
        slack_secret: SecretStr | None,
        pagerduty_secret: SecretStr | None,
        host: str = "0.0.0.0",  # noqa: S104 - Slack and PagerDuty must reach it
    ) -> None:
        secrets = {SLACK_PATH: slack_secret, PAGERDUTY_PATH: pagerduty_secret}

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's hook name
                length = int(self.headers.get("Content-Length") or 0)
                secret = secrets.get(self.path)
                if secret is None:
                    return self._answer(404, "unknown callback")
                if length > MAX_BODY:
                    return self._answer(413, "too large")
                body = self.rfile.read(length)
                key = secret.get_secret_value().encode()
                if self.path == SLACK_PATH:
                    ok = slack_signature_valid(key, self.headers.get("X-Slack-Request-Timestamp"), body, self.headers.get("X-Slack-Signature"))
                    parse, source = slack_acks, "slack"
                else:
                    ok = pagerduty_signature_valid(key, body, self.headers.get("X-PagerDuty-Signature"))
                    parse, source = pagerduty_acks, "pagerduty"
                if not ok:
                    log.warning("refused a %s callback: bad signature", source)
                    return self._answer(401, "bad signature")
                try:
                    acks = parse(body)
                except (ValueError, KeyError, TypeError):
                    return self._answer(400, "unreadable payload")
                for alert_id, who in acks:
                    acknowledge(alert_id, who, source)
                    log.info("alert %s acknowledged by %s", alert_id, who)
                return self._answer(200, "")

            def _answer(self, code: int, text: str) -> None:
                data = text.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="alert-callbacks", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

"""The senders: SMTP e-mail, Slack incoming webhook, PagerDuty Events v2, signed webhook.

A sender makes one attempt and says how it went (:class:`Outcome`): delivered, worth a retry
(a connection error, a timeout, HTTP 429 or 5xx, an SMTP 4xx reply) or refused for good (any
other 4xx, SMTP 5xx). Retrying is the delivery worker's job (:mod:`lakehouse.alerts.delivery`).
Nothing a sender reports or logs contains a secret: errors are reduced to their type and a
message with every secret of the receiver blanked out.

Webhook signatures: ``X-Trivas-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`` with
``X-Trivas-Timestamp`` (Unix seconds), as Stripe and Slack sign theirs; a receiver checks it
with :func:`verify_signature` (constant-time comparison, bounded clock skew).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
import ssl
import time
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

from lakehouse.alerts.config import AlertsConfig, MissingSecret, ReceiverConfig, resolve_secret
from lakehouse.alerts.content import (
    email_message,
    pagerduty_event,
    slack_blocks,
    text_body,
    webhook_document,
)
from lakehouse.alerts.dispatch import Notification

log = logging.getLogger("trivas.alerts.receivers")
SIGNATURE_HEADER, TIMESTAMP_HEADER = "X-Trivas-Signature", "X-Trivas-Timestamp"
PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
SIGNATURE_TOLERANCE_S = 300


@dataclass(frozen=True)
class Outcome:
    """One attempt: ``delivered``, else ``retryable`` or not; ``code`` is the HTTP status or
    SMTP reply code (None when there was no answer)."""

    delivered: bool
    retryable: bool
    code: int | None
    detail: str = ""


def redact(text: str, secrets: list[SecretStr]) -> str:
    """``text`` with every secret value replaced by ``***``."""
    for secret in secrets:
        value = secret.get_secret_value()
        if value:
            text = text.replace(value, "***")
    return text


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """``v1=<hex HMAC-SHA256 over "<timestamp>.<body>">``."""
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def verify_signature(
    secret: bytes, timestamp: str | None, body: bytes, signature: str | None, now: float | None = None,
    tolerance_s: float = SIGNATURE_TOLERANCE_S,
) -> bool:  # fmt: skip
    """Whether a webhook's signature is the sender's (constant time) and recent enough."""
    sent = recent_timestamp(timestamp, now, tolerance_s)
    if sent is None or not signature:
        return False
    return hmac.compare_digest(sign(secret, sent, body).encode(), signature.encode())


def recent_timestamp(timestamp: str | None, now: float | None, tolerance_s: float) -> int | None:
    """A signed request's Unix timestamp when it is within ``tolerance_s`` of now (replayed
    or malformed ones are None): what every signature check tests before the digest."""
    try:
        sent = int(timestamp or "")
    except ValueError:
        return None
    return sent if abs((time.time() if now is None else now) - sent) <= tolerance_s else None


def http_outcome(response: httpx.Response) -> Outcome:
    code = response.status_code
    if 200 <= code < 300:
        return Outcome(True, False, code)
    return Outcome(False, code == 429 or code >= 500, code, f"HTTP {code}")


class Sender:
    """Base: a receiver's config, its resolved secrets and one attempt at a time."""

    def __init__(self, spec: ReceiverConfig, config: AlertsConfig) -> None:
        self.spec = spec
        self.config = config
        self.secrets: list[SecretStr] = []

    def secret(self, name: str) -> SecretStr | None:
        value = resolve_secret(self.spec.options, name)
        if value is not None:
            self.secrets.append(value)
        return value

    def required_secret(self, name: str) -> SecretStr:
        """A secret the receiver cannot work without (its absence disables the receiver)."""
        value = self.secret(name)
        if value is None:
            raise MissingSecret(f"a {self.spec.type} receiver needs {name}_env or {name}_file")
        return value

    def attempt(self, notification: Notification) -> Outcome:
        try:
            return self._send(notification)
        except (httpx.TimeoutException, TimeoutError) as error:
            return Outcome(False, True, None, f"timeout: {type(error).__name__}")
        except (httpx.TransportError, OSError) as error:
            return Outcome(False, True, None, redact(f"{type(error).__name__}: {error}", self.secrets)[:300])

    def _send(self, notification: Notification) -> Outcome:
        raise NotImplementedError


class EmailSender(Sender):
    """SMTP with STARTTLS and login when configured (``smtp_host``, ``smtp_port``, ``starttls``,
    ``from``, ``to``, ``username_env``/``password_env``, ``ca_file`` for a private CA)."""

    def __init__(self, spec: ReceiverConfig, config: AlertsConfig) -> None:
        super().__init__(spec, config)
        try:
            self.username, self.password = self.secret("username"), self.secret("password")
        except MissingSecret as missing:
            # Login is optional (a local relay); a server that requires it answers 530 (recorded).
            log.info("receiver %s sends without SMTP login: %s", spec.name, missing)
            self.username = self.password = None

    def _send(self, notification: Notification) -> Outcome:
        to = list(self.spec.option("to", []))
        if notification.recipients:  # a page goes to the people on call
            to = [self.config.users[u].email for u in notification.recipients if u in self.config.users and self.config.users[u].email] or to
        message = email_message(notification, self.config, str(self.spec.option("from", "trivas@localhost")), to)
        host, port = str(self.spec.option("smtp_host", "127.0.0.1")), int(self.spec.option("smtp_port", 25))
        try:
            with smtplib.SMTP(host, port, timeout=self.spec.timeout_s) as smtp:
                if self.spec.option("starttls", False):
                    context = ssl.create_default_context(cafile=self.spec.option("ca_file"))
                    smtp.starttls(context=context)
                if self.username is not None and self.password is not None:
                    smtp.login(self.username.get_secret_value(), self.password.get_secret_value())
                refused = smtp.send_message(message)
        except smtplib.SMTPResponseException as error:
            # 4xx replies are transient in SMTP, 5xx permanent.
            return Outcome(False, 400 <= error.smtp_code < 500, error.smtp_code, f"SMTP {error.smtp_code}")
        except smtplib.SMTPRecipientsRefused:
            return Outcome(False, False, 550, "all recipients refused")
        if refused:
            return Outcome(True, False, 250, f"{len(refused)} recipient(s) refused")
        return Outcome(True, False, 250)


class SlackSender(Sender):
    """Slack incoming webhook (``url_env``/``url_file``: the URL carries the token)."""

    def __init__(self, spec: ReceiverConfig, config: AlertsConfig) -> None:
        super().__init__(spec, config)
        self.url = self.required_secret("url")

    def _send(self, notification: Notification) -> Outcome:
        body = {"text": text_body(notification, self.config)[:3000], "blocks": slack_blocks(notification, self.config)}
        return http_outcome(httpx.post(self.url.get_secret_value(), json=body, timeout=self.spec.timeout_s))


class PagerDutySender(Sender):
    """PagerDuty Events API v2 (``routing_key_env``/``routing_key_file``; ``url`` or ``url_env``
    to point elsewhere, ``ca_file`` for a private CA)."""

    def __init__(self, spec: ReceiverConfig, config: AlertsConfig) -> None:
        super().__init__(spec, config)
        self.routing_key = self.required_secret("routing_key")

    def _send(self, notification: Notification) -> Outcome:
        url = str(self.spec.option("url", PAGERDUTY_URL))
        verify: Any = self.spec.option("ca_file") or True
        outcome = Outcome(True, False, None)
        for item in notification.items:  # one item per notification (see dispatch)
            event = pagerduty_event(item, notification, self.config, self.routing_key.get_secret_value())
            outcome = http_outcome(httpx.post(url, json=event, timeout=self.spec.timeout_s, verify=verify))
            if not outcome.delivered:
                return outcome
        return outcome


class WebhookSender(Sender):
    """A JSON POST signed with HMAC-SHA256 (``url_env``/``url_file``, ``secret_env``/``secret_file``)."""

    def __init__(self, spec: ReceiverConfig, config: AlertsConfig) -> None:
        super().__init__(spec, config)
        self.url, self.signing = self.required_secret("url"), self.required_secret("secret")

    def _send(self, notification: Notification) -> Outcome:
        body = json.dumps(webhook_document(notification, self.config), sort_keys=True, default=str).encode()
        now = int(time.time())
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(now),
            SIGNATURE_HEADER: sign(self.signing.get_secret_value().encode(), now, body),
            "Idempotency-Key": notification.id,
        }
        return http_outcome(httpx.post(self.url.get_secret_value(), content=body, headers=headers, timeout=self.spec.timeout_s))


SENDERS: dict[str, type[Sender]] = {"email": EmailSender, "slack": SlackSender, "pagerduty": PagerDutySender, "webhook": WebhookSender}


def build_senders(config: AlertsConfig, require_secrets: bool = False) -> dict[str, Sender]:
    """A sender per receiver whose secrets are set; the others are skipped with a warning, or,
    with ``require_secrets`` (every environment without development fallbacks), stop the
    process: a router that silently drops a receiver would page nobody."""
    senders = {}
    for name, spec in config.receivers.items():
        try:
            senders[name] = SENDERS[spec.type](spec, config)
        except MissingSecret as missing:
            if require_secrets:
                raise MissingSecret(f"receiver {name}: {missing}") from None
            log.warning("receiver %s is disabled: %s", name, missing)
    return senders

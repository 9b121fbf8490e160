"""``conf/alerts.yaml`` and the refusals of a bad configuration."""

from __future__ import annotations

import pytest

from lakehouse.alerts.config import load_alerts_config, parse_duration, parse_matcher
from tests.alerts.conftest import config_of

pytestmark = pytest.mark.unit


def test_shipped_file_loads_with_every_receiver_kind_and_escalation() -> None:
    config = load_alerts_config()
    assert {r.type for r in config.receivers.values()} == {"email", "slack", "pagerduty", "webhook"}
    assert config.route_named("commerce-oncall").escalation == "commerce"
    assert config.route_named("commerce-critical").timing.group_wait.total_seconds() == 15
    assert config.route_named("commerce-critical").timing.repeat_interval.total_seconds() == 4 * 3600  # inherited
    assert [level.after.total_seconds() for level in config.escalation_policies["commerce"].levels] == [0, 900]


@pytest.mark.parametrize(
    ("text", "labels", "hit"),
    [
        ('kpi="orders"', {"kpi": "orders"}, True),
        ("kpi!=orders", {"kpi": "orders"}, False),
        ('severity=~"critical|error"', {"severity": "error"}, True),
        ('severity=~"critical|error"', {"severity": "errors"}, False),  # a full match, as Alertmanager
        ('country!~"DE|FR"', {}, True),
    ],
)
def test_matchers(text: str, labels: dict[str, str], hit: bool) -> None:
    assert parse_matcher(text).matches(labels) is hit


def test_secrets_are_never_literals_and_references_are_checked() -> None:
    with pytest.raises(ValueError, match="routing_key is a secret"):
        config_of("receivers: {pd: {type: pagerduty, routing_key: abc}}\nroute: {receiver: pd}")
    with pytest.raises(ValueError, match="unknown receivers"):
        config_of("receivers: {}\nroute: {receiver: nowhere}")
    with pytest.raises(ValueError, match="unknown escalation policy"):
        config_of("receivers: {m: {type: email}}\nroute: {receiver: m, escalation: nope}")
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration("5 minutes")


@pytest.mark.parametrize(
    "command",
    [["alerts", c, "--help"] for c in ("run", "test", "list", "ack", "silence", "silences", "unsilence", "inbox")]
    + [["oncall", "who", "--help"], ["pipeline", "run", "--help"]],
)
def test_every_alerts_command_has_help(command: list[str]) -> None:
    from typer.testing import CliRunner

    from lakehouse.cli import app

    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0 and "Usage" in result.output, result.output


def test_a_receiver_without_its_secret_stops_the_router_outside_development(monkeypatch: pytest.MonkeyPatch) -> None:
    from lakehouse.alerts.config import MissingSecret
    from lakehouse.alerts.receivers import build_senders

    monkeypatch.delenv("T_MISSING_PD_KEY", raising=False)
    config = config_of("receivers: {pd: {type: pagerduty, routing_key_env: T_MISSING_PD_KEY}}\nroute: {receiver: pd}")
    assert build_senders(config) == {}  # development: disabled with a warning
    with pytest.raises(MissingSecret, match="receiver pd: environment variable T_MISSING_PD_KEY is not set"):
        build_senders(config, require_secrets=True)
    monkeypatch.setenv("T_MISSING_PD_KEY", "routing-key")
    assert set(build_senders(config, require_secrets=True)) == {"pd"}


def test_the_alerts_file_is_named_by_the_settings(tmp_path) -> None:  # noqa: ANN001
    from lakehouse.config import load_settings

    other = tmp_path / "alerts.yaml"
    other.write_text("receivers: {hook: {type: webhook, url_env: T_HOOK_URL}}\nroute: {receiver: hook}\n")
    settings = load_settings("test", environ={"TRIVAS_ALERTS__FILE": str(other)})
    assert set(load_alerts_config(settings=settings).receivers) == {"hook"}

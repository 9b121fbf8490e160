"""On-call: hand-offs in a time zone, layers, overrides, a DST change, ``trivas oncall who``."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from lakehouse.alerts.oncall import on_call
from tests.alerts.conftest import config_of

pytestmark = pytest.mark.unit

SCHEDULES = """
receivers: {mail: {type: email}}
route: {receiver: mail}
oncall:
  users:
    alice: {name: Alice}
    bob: {name: Bob}
    carol: {name: Carol}
    dave: {name: Dave}
  schedules:
    daily:
      time_zone: Europe/Berlin
      layers: [{name: daily, users: [alice, bob], start: "2026-10-20T09:00", length: 1d}]
    layered:
      time_zone: America/New_York
      layers:
        - {name: weekly, users: [alice, bob, carol], start: "2026-11-02T08:00", length: 7d}
        - {name: weekend, users: [dave], start: "2026-11-07T00:00", length: 1d, days: [sat, sun], hours: [9, 18]}
      overrides:
        - {user: carol, start: "2026-11-26T00:00", end: "2026-11-27T00:00"}
"""


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.fixture()
def config():  # noqa: ANN201
    return config_of(SCHEDULES)


def test_daily_rotation_hands_off_at_local_time_across_the_dst_change(config) -> None:
    daily = config.schedules["daily"]
    # Summer time (CEST, UTC+2): 09:00 local is 07:00 UTC.
    # Shifts from 2026-10-20: alice, bob, alice, bob, alice (Oct 24), bob (Oct 25).
    assert on_call(daily, at("2026-10-24T06:59:00+00:00")).user == "bob"  # shift of Oct 23
    assert on_call(daily, at("2026-10-24T07:00:00+00:00")).user == "alice"
    # Clocks go back on Sunday 2026-10-25 03:00 CEST → 02:00 CET: 09:00 local is now 08:00 UTC.
    # A rotation counted in UTC would hand off at 07:00 UTC; trivas keeps 09:00 local.
    assert on_call(daily, at("2026-10-25T07:30:00+00:00")).user == "alice"
    handed = on_call(daily, at("2026-10-25T08:00:00+00:00"))
    assert handed.user == "bob"
    assert (handed.starts_at, handed.ends_at) == (at("2026-10-25T08:00:00+00:00"), at("2026-10-26T08:00:00+00:00"))
    # The shift across the change lasted 25 hours.
    assert on_call(daily, at("2026-10-24T12:00:00+00:00")).ends_at - on_call(daily, at("2026-10-24T12:00:00+00:00")).starts_at == (
        at("2026-10-25T08:00:00+00:00") - at("2026-10-24T07:00:00+00:00")
    )


def test_layers_and_overrides(config) -> None:
    layered = config.schedules["layered"]
    assert on_call(layered, at("2026-11-01T12:00:00-05:00")) is None  # before the rotation starts
    assert on_call(layered, at("2026-11-02T08:00:00-05:00")).user == "alice"
    assert on_call(layered, at("2026-11-09T07:59:00-05:00")).user == "alice"
    assert on_call(layered, at("2026-11-09T08:00:00-05:00")).user == "bob"
    # Saturday within 09–18 local: the weekend layer (later layers win); outside it: the weekly one.
    saturday = on_call(layered, at("2026-11-14T10:00:00-05:00"))
    assert (saturday.user, saturday.layer) == ("dave", "weekend")
    assert on_call(layered, at("2026-11-14T19:00:00-05:00")).user == "bob"
    # Thanksgiving override beats both layers.
    override = on_call(layered, at("2026-11-26T12:00:00-05:00"))
    assert (override.user, override.layer) == ("carol", "override")
    assert on_call(layered, at("2026-11-27T00:00:00-05:00")).user == "alice"  # weekly again: fourth shift


def test_oncall_who_cli_at_a_time_and_for_a_route() -> None:
    from lakehouse.cli import app

    runner = CliRunner()
    before = runner.invoke(app, ["oncall", "who", "commerce-oncall", "--at", "2026-11-30T08:30:00+01:00"])
    assert before.exit_code == 0, before.output
    # 08:30 Berlin on Monday 2026-11-30 is before the 09:00 hand-off: the fourth weekly shift.
    assert "L1 (after 0:00:00, schedule commerce-primary, via oncall-email): Alice Martin until 2026-11-30 09:00 CET (weekly)" in before.output
    assert "L2 (after 0:15:00, schedule commerce-secondary, via oncall-email): Carol Diaz until 2026-11-30 09:00 CET" in before.output
    after = runner.invoke(app, ["oncall", "who", "commerce-oncall", "--at", "2026-11-30T08:00:00Z"])  # = 09:00 CET
    assert "commerce-primary, via oncall-email): Bob Schulz until 2026-12-07 09:00 CET" in after.output
    saturday = runner.invoke(app, ["oncall", "who", "--at", "2026-11-28T12:00:00+01:00"])
    assert "commerce-primary: Dave Okafor until 2026-11-28 18:00 CET (weekend-days)" in saturday.output

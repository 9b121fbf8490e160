"""``trivas alerts run --local-receivers`` as the playground runs it: a process of its own that
delivers to its local SMTP server and webhook inbox and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from lakehouse import REPO_ROOT
from lakehouse.alerts.local_receivers import Inbox
from lakehouse.config import Settings
from tests.alerts.conftest import live_clock, make_alert, write_alerts

pytestmark = pytest.mark.integration


def test_router_process_delivers_to_local_receivers_and_stops_on_sigterm(lake: Settings, tmp_path) -> None:
    clock = live_clock()
    alert = make_alert(first_seen_at=clock())
    write_alerts(lake, [alert])
    env = {**os.environ, "TRIVAS_ENV": "test", "TRIVAS_PATHS__VAR": lake.paths.var, "TRIVAS_TABLES__ROOT": lake.tables.root,
           "TRIVAS_TABLES__CHECKPOINTS": lake.tables.checkpoints, "PYTHONPATH": str(REPO_ROOT)}  # fmt: skip
    log_file = (tmp_path / "alerts.log").open("wb")
    child = subprocess.Popen([sys.executable, "-m", "lakehouse.cli", "alerts", "run", "--local-receivers"], env=env,
                             stdout=log_file, stderr=subprocess.STDOUT, cwd=REPO_ROOT)  # fmt: skip
    inbox = Inbox(lake.path(lake.paths.var) / "alerts" / "inbox.jsonl")
    try:
        deadline = time.monotonic() + 90  # commerce-critical waits group_wait 15 s
        while time.monotonic() < deadline and {e["channel"] for e in inbox.entries()} != {"email", "slack", "pagerduty", "webhook"}:
            assert child.poll() is None, (tmp_path / "alerts.log").read_text()
            time.sleep(0.5)
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=30) == 0
    finally:
        if child.poll() is None:
            child.kill()
    log = (tmp_path / "alerts.log").read_text()
    channels = {e["channel"] for e in inbox.entries()}
    assert channels == {"email", "slack", "pagerduty", "webhook"}, log
    [pagerduty] = inbox.entries("pagerduty")
    assert pagerduty["body"]["dedup_key"] == alert.alert_id and pagerduty["body"]["event_action"] == "trigger"
    assert all(e["signature_valid"] for e in inbox.entries("webhook"))
    assert "local receivers: SMTP 127.0.0.1:" in log and "alert router started" in log

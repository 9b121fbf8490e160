"""``trivas demo`` as a user runs it, on a machine without the shared data: every component
starts (the champions train on generated history), and SIGTERM or SIGHUP — once running, or
while it is still starting — stops everything it started: nothing is left behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from lakehouse import REPO_ROOT
from lakehouse.config import load_settings
from lakehouse.runtime.processes import free_port, port_open, wait_until
from lakehouse.tables import has_commits, read_pandas, table_location
from tests.conftest import TEST_HASH_KEY

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture()
def demo_env() -> Iterator[dict[str, str]]:
    # Not tmp_path: pytest's folder is 0700 root, and PostgreSQL runs as its own OS user.
    base = Path(tempfile.mkdtemp(prefix="trivas-demo-test-"))
    base.chmod(0o755)
    (base / "no-shared-data").mkdir()
    env = {
        "TRIVAS_ENV": "test",
        "TRIVAS_SHARED_DATA": str(base / "no-shared-data"),  # as on a user's machine
        "TRIVAS_PRIVACY__HASH_KEY": TEST_HASH_KEY,
        "TRIVAS_KAFKA__LOCAL_BROKER__PORT": str(free_port()),
        "TRIVAS_KAFKA__LOCAL_BROKER__CONTROLLER_PORT": str(free_port()),
        "TRIVAS_KAFKA__LOCAL_BROKER__DATA_DIR": str(base / "kafka"),
        "TRIVAS_CDC__PG_PORT": str(free_port()),
        "TRIVAS_CDC__CONNECT_PORT": str(free_port()),
        "TRIVAS_CDC__PG_DATA_DIR": str(base / "postgres"),
        "TRIVAS_CDC__CONNECT_DIR": str(base / "connect"),
        "TRIVAS_APP__PORT": str(free_port()),
        "TRIVAS_PATHS__LOGS": str(base / "logs"),
        "TRIVAS_PATHS__VAR": str(base / "var"),
        "TRIVAS_TABLES__ROOT": str(base / "lake"),
        "TRIVAS_TABLES__CHECKPOINTS": str(base / "checkpoints"),
        "TRIVAS_MLFLOW__TRACKING_URI": f"sqlite:///{base / 'mlflow' / 'mlflow.db'}",
        "TRIVAS_GENERATOR__EVENTS_PER_SECOND": "20",
        "TRIVAS_GENERATOR__HISTORY_HOURS": "0.05",  # three minutes of history (and last week's), sent first
    }
    try:
        yield env
    finally:
        if os.environ.get("TRIVAS_KEEP_TEST_DIRS") != "1":
            shutil.rmtree(base, ignore_errors=True)


class Demo:
    """``trivas demo`` in its own process, with every process it ever started remembered."""

    def __init__(self, env: dict[str, str]) -> None:
        self.output: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lakehouse.cli", "demo"], cwd=REPO_ROOT, env={**os.environ, **env},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.started: dict[tuple[int, float], str] = {}  # (pid, create time) → command
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._watch, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:  # type: ignore[union-attr]
            self.output.append(line)

    def _watch(self) -> None:
        demo = psutil.Process(self.process.pid)
        while self.process.poll() is None:
            try:
                for child in demo.children(recursive=True):
                    self.started.setdefault(
                        (child.pid, child.create_time()), " ".join(child.cmdline())
                    )
            except psutil.Error:
                pass  # a child ended while being listed
            time.sleep(0.2)

    def said(self, text: str) -> bool:
        return any(text in line for line in self.output)

    def left_behind(self) -> list[str]:
        alive = []
        for (pid, created), command in self.started.items():
            try:
                process = psutil.Process(pid)
                if process.create_time() == created and process.status() != psutil.STATUS_ZOMBIE:
                    alive.append(f"{pid}: {command[:160]}")
            except psutil.NoSuchProcess:
                continue
        return alive


def ports(env: dict[str, str]) -> list[int]:
    names = (
        "TRIVAS_KAFKA__LOCAL_BROKER__PORT",
        "TRIVAS_CDC__PG_PORT",
        "TRIVAS_CDC__CONNECT_PORT",
        "TRIVAS_APP__PORT",
    )
    return [int(env[n]) for n in names]


def stop_and_check(demo: Demo, signum: signal.Signals, env: dict[str, str]) -> None:
    demo.process.send_signal(signum)
    demo.process.wait(timeout=240)
    time.sleep(1)  # the broker's and PostgreSQL's own children go with their parents
    assert demo.said("stopped."), "".join(demo.output[-40:])
    assert demo.left_behind() == [], "".join(demo.output[-40:])
    assert [p for p in ports(env) if port_open("127.0.0.1", p)] == []


def test_sigterm_stops_a_running_demo_and_everything_it_started(demo_env: dict[str, str]) -> None:
    settings = load_settings("test", environ=demo_env)
    demo = Demo(demo_env)
    try:
        wait_until(
            lambda: demo.said("Ctrl-C stops everything."),
            600,
            "the demo to start",
            Path(demo_env["TRIVAS_PATHS__LOGS"]) / "pipeline.log",
        )
        # Without the shared data the refund-risk champion was trained on generated history,
        # and its side query scores the live orders.
        refund_risk = table_location(settings, "gold.refund_risk")
        wait_until(
            lambda: has_commits(refund_risk) and len(read_pandas(settings, "gold.refund_risk")) > 0,
            300,
            "scored orders",
            Path(demo_env["TRIVAS_PATHS__LOGS"]) / "pipeline.log",
        )
        assert demo.process.poll() is None, "".join(demo.output[-40:])
        assert demo.said("sending the last 0.05 h"), "".join(demo.output[-40:])  # history before live traffic
        commands = " ".join(demo.started.values())
        for component in (
            "kafka.Kafka",
            "postgres",
            "ConnectStandalone",
            "pipeline run",
            "generate --live",
            "rollup --every",
            "streamlit run",
            "actions sandbox",
            "actions work",
        ):
            assert component in commands, f"{component} never started"
        stop_and_check(demo, signal.SIGTERM, demo_env)
    finally:
        if demo.process.poll() is None:
            demo.process.kill()


def test_sighup_while_starting_stops_what_was_already_started(demo_env: dict[str, str]) -> None:
    demo = Demo(demo_env)
    try:
        # The broker and the shop database are up; the champions are being trained.
        wait_until(
            lambda: demo.said("registering the anomaly"), 600, "the demo to reach the models step"
        )
        assert demo.process.poll() is None, "".join(demo.output[-40:])
        assert any("postgres" in c for c in demo.started.values())
        stop_and_check(demo, signal.SIGHUP, demo_env)
    finally:
        if demo.process.poll() is None:
            demo.process.kill()

"""A headless Debian chromium driven by selenium, and a Streamlit server on a free port (the
app's browser tests and ``bench/bench_app.py`` share them)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from lakehouse.runtime.processes import free_port, port_open, wait_until


def chrome():  # noqa: ANN201
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--window-size=1400,2000",
    ):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)


def serve_app(env: dict[str, str], log: Path, nice: int = 0) -> tuple[subprocess.Popen[bytes], int]:
    """The app served as ``trivas app`` serves it (:func:`lakehouse.cli.app_command`) on a
    free port, listening when this returns."""
    from lakehouse.cli import app_command
    from lakehouse.config import load_settings

    port = free_port()
    command = app_command(load_settings(env.get("TRIVAS_ENV"), environ={**os.environ, **env}), port)
    server = subprocess.Popen(["nice", "-n", str(nice), *command] if nice else command,
                              env={**os.environ, **env}, stdout=log.open("wb"), stderr=subprocess.STDOUT)  # fmt: skip
    wait_until(lambda: port_open("127.0.0.1", port), 60, "streamlit to listen", log)
    return server, port


def page_text_when(browser, done: Callable[[str], bool], timeout: float = 90, interval: float = 0.1) -> str:  # noqa: ANN001
    """The page's text once ``done(text)`` holds (a fragment rerun removes and redraws
    elements, so one read can catch a chart half drawn: poll until everything is there)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        try:
            text = browser.find_element("tag name", "body").text
        except Exception:  # noqa: BLE001 - the DOM moved under the read: read again
            text = ""
        if done(text):
            return text
        time.sleep(interval)
    return text


def holds(*expected: str) -> Callable[[str], bool]:
    return lambda text: all(e in text for e in expected)

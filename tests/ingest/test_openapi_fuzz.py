"""Schemathesis against the collector's own OpenAPI spec: no input may cause a server error."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import API_KEY, CollectorProcess, Deployment

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_schemathesis_finds_no_server_error(deployment: Deployment, tmp_path: Path) -> None:
    collector = CollectorProcess(deployment, "fuzz", {}).start()
    binary = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    try:
        result = subprocess.run(
            [
                binary, "run", collector.url + "/openapi.json",
                "--checks", "not_a_server_error",
                "--max-examples", "100",
                "--seed", "7",
                "--header", f"Authorization: Bearer {API_KEY}",
                "--request-timeout", "20",
                "--phases", "examples,coverage,fuzzing",
                "--report-dir", str(tmp_path),
            ],  # fmt: skip
            capture_output=True,
            text=True,
            timeout=240,
            env={"SCHEMATHESIS_HOOKS": "", "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
                 "HOME": str(tmp_path), "NO_COLOR": "1"},  # fmt: skip
        )
        logs = collector.logs()
    finally:
        collector.stop()
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert '"level":"ERROR"' not in logs.replace(" ", "") or "produce failed" not in logs

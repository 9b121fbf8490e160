"""The Typer apps the main CLI mounts (``trivas collect …``, ``trivas quarantine …``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from lakehouse.ingest.cli import app, collect_app, quarantine_app

pytestmark = pytest.mark.unit


def test_commands_are_mounted_and_documented() -> None:
    runner = CliRunner()
    assert "keys" in runner.invoke(collect_app, ["--help"]).output
    for args in (["quarantine", "--help"], ["quarantine", "replay", "--help"], ["collect", "keys", "create", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    assert runner.invoke(quarantine_app, ["replay"]).exit_code == 2  # needs --fixes or --revalidate


def test_keys_create_prints_once_and_stores_the_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    overlay = tmp_path / "collector.yaml"
    overlay.write_text(f"collector:\n  api_keys_file: {tmp_path / 'keys.json'}\n")
    monkeypatch.setenv("TRIVAS_CONF_OVERLAY", str(overlay))
    result = CliRunner().invoke(collect_app, ["keys", "create", "shop-web"])
    assert result.exit_code == 0, result.output
    api_key = result.output.strip().splitlines()[-1]
    assert api_key.startswith("trk_shopweb_") and api_key not in (tmp_path / "keys.json").read_text()

"""``trivas replay …`` and ``trivas backfill …`` are mounted, documented and refuse bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from lakehouse.backfill_cli import backfill_app, replay_app
from lakehouse.ingest.cli import quarantine_app

pytestmark = pytest.mark.unit
app = typer.Typer()
app.add_typer(replay_app, name="replay")
app.add_typer(backfill_app, name="backfill")
app.add_typer(quarantine_app, name="quarantine")


def test_replay_and_backfill_commands_are_mounted_and_documented() -> None:
    runner = CliRunner()
    for args in (["replay", "--help"], ["replay", "bronze", "--help"], ["replay", "quarantine", "--help"],
                 ["backfill", "--help"], ["backfill", "online-retail", "--help"], ["quarantine", "replay", "--help"]):  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    assert "--events-per-second" in runner.invoke(app, ["backfill", "online-retail", "--help"]).output
    # ... and the trivas console script mounts them
    repo = Path(__file__).resolve().parents[2]
    mounted = subprocess.run([sys.executable, "-m", "lakehouse.cli", "--help"], cwd=repo, capture_output=True, text=True, check=True)
    assert "replay" in mounted.stdout and "backfill" in mounted.stdout


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["replay", "quarantine"], "give --fixes FILE and/or --revalidate"),  # the alias's own rule
        (["replay", "bronze"], "give a time range"),
        (["replay", "bronze", "--offsets", "raw.orders:0:9-3"], "offset range"),
        (["replay", "bronze", "--since", "yesterday"], "expected an ISO date"),
        (["backfill", "online-retail", "/no/such/file.csv.gz"], "does not exist"),
    ],
)
def test_bad_replay_requests_are_refused_before_any_work(args: list[str], why: str) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert why in " ".join(result.output.split()), result.output

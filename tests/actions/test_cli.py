"""``trivas actions …`` on a real deployment's tables, with the accounts of each role."""

from __future__ import annotations

import pytest
from rich.console import Console
from typer.testing import CliRunner

from lakehouse.actions.cli import actions_app
from lakehouse.actions.engine import ProposalBook
from tests.actions.conftest import IDLE, idle_evidence


@pytest.fixture()
def cli_env(lake, accounts, monkeypatch):  # noqa: ANN001, ANN201
    for key, value in {"TRIVAS_ENV": "test", "TRIVAS_PATHS__VAR": lake.paths.var, "TRIVAS_TABLES__ROOT": lake.tables.root,
                       "TRIVAS_TABLES__CHECKPOINTS": lake.tables.checkpoints, "TRIVAS_ACTIONS_ACCOUNTS_FILE": str(accounts)}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    monkeypatch.setattr("lakehouse.actions.cli.console", Console(width=250))
    return lake


def run(*args: str):  # noqa: ANN201
    return CliRunner().invoke(actions_app, list(args), catch_exceptions=False)


def test_approve_list_show_rollback_and_the_roles(cli_env, config, worker, platform):
    (request,) = [r for r in ProposalBook(cli_env).evaluate(config, idle_evidence()).rows if r.policy == "pause-idle-campaign"]
    key = request.request_id
    worker.tick()
    assert f"{key[:16]}" in run("list", "--state", "pending").output

    refused = run("approve", key[:12], "--user", "viola", "--reason", "me too")
    assert refused.exit_code == 2 and "viola (viewer) may not approve: needs approver" in refused.output
    assert run("approve", "act-nope", "--user", "april").exit_code == 2
    assert run("approve", key[:12], "--user", "april", "--reason", "spend without sales").exit_code == 0
    worker.tick()
    assert platform.get(f"/campaigns/{IDLE}").json()["status"] == "paused"
    shown = run("show", key[:12]).output
    assert "state: executed" in shown and "april" in shown and '{"status": "active"}' in shown

    assert run("kill-switch", "on", "--user", "april", "--reason", "x").exit_code == 2  # admins only
    assert run("rollback", key, "--user", "april", "--reason", "false alarm").exit_code == 0
    worker.tick()
    assert platform.get(f"/campaigns/{IDLE}").json()["status"] == "active"
    assert "rolled_back" in run("list").output


def test_every_command_has_help():
    for name in ("list", "show", "approve", "reject", "rollback", "kill-switch", "work", "sandbox"):
        assert run(name, "--help").exit_code == 0

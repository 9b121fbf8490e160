"""Every ``trivas`` command takes ``--env``; ``trivas config show`` tells where values came from."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from lakehouse.cli import command_tree
from lakehouse.config import CONF_DIR
from lakehouse.settings_cli import walk_commands

pytestmark = pytest.mark.unit

APP = command_tree()
TREE = typer.main.get_command(APP)
RUNNABLE = [
    (path, command)
    for path, command in walk_commands(TREE)
    if path and (not getattr(command, "commands", None) or getattr(command, "invoke_without_command", False))
]


@pytest.fixture(autouse=True)
def _own_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--env`` sets TRIVAS_ENV for the process: give it back after each test."""
    monkeypatch.delenv("TRIVAS_ENV", raising=False)


def invoke(args: list[str], **env: str):  # noqa: ANN201 - click's Result
    return CliRunner().invoke(APP, args, env={"TRIVAS_ENV": None, **env}, catch_exceptions=False)


def test_the_tree_has_the_components_commands() -> None:
    names = {" ".join(path) for path, _ in RUNNABLE}
    assert {"pipeline run", "config show", "model train", "collect keys create", "cdc sql", "alerts run", "actions work"} <= names


@pytest.mark.parametrize("path", [path for path, _ in RUNNABLE], ids=" ".join)
def test_every_command_accepts_env_and_documents_it(path: tuple[str, ...]) -> None:
    command = dict(RUNNABLE)[path]
    assert any("--env" in getattr(param, "opts", ()) for param in command.params), f"{' '.join(path)} has no --env"
    result = invoke([*path, "--env", "test", "--help"])
    assert result.exit_code == 0, result.output
    assert "--env" in result.output


def test_an_unknown_environment_is_refused_before_the_command_runs() -> None:
    result = CliRunner().invoke(APP, ["collect", "keys", "list", "--env", "nope"], env={"TRIVAS_ENV": None})
    assert result.exit_code == 2 and "unknown environment 'nope'" in result.output


def test_env_reaches_a_command_that_does_not_declare_it(tmp_path: Path) -> None:
    """``cdc sql`` has no env parameter of its own: the added option selects the environment
    for every settings read inside it."""
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    (conf / "staging.yaml").write_text("cdc: {replication_user: staging_cdc, publication: staging_pub}\n")
    staging = invoke(["cdc", "sql", "--env", "staging"], TRIVAS_CONF_DIR=str(conf))
    assert staging.exit_code == 0, staging.output
    assert "staging_cdc" in staging.output and "staging_pub" in staging.output
    local = invoke(["cdc", "sql", "--env", "local"], TRIVAS_CONF_DIR=str(conf))
    assert "staging_cdc" not in local.output and "trivas_cdc" in local.output


def test_config_show_masks_secrets_and_names_each_origin() -> None:
    result = invoke(
        ["config", "show", "--env", "databricks", "--json"],
        TRIVAS_PRIVACY__HASH_KEY="very-secret-key", TRIVAS_CDC__SHOP_PASSWORD="pw-123456", TRIVAS_KAFKA_BOOTSTRAP="k1:9092",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "very-secret-key" not in result.output and "pw-123456" not in result.output
    rows = {row["key"]: row for row in map(json.loads, result.output.splitlines())}
    assert rows["privacy.hash_key"]["value"] == "**********"
    assert rows["cdc.shop_password"] == {"key": "cdc.shop_password", "value": "**********", "origin": "environment variable TRIVAS_CDC__SHOP_PASSWORD"}
    assert rows["kafka.bootstrap"]["origin"] == "environment variable TRIVAS_KAFKA_BOOTSTRAP"
    assert (rows["tables.binding"]["value"], rows["tables.binding"]["origin"]) == ("catalog", "databricks.yaml")
    assert rows["kafka.topic_prefix"]["origin"] == "base.yaml"
    assert rows["secrets.development_fallbacks"]["value"] == "false"
    table = invoke(["config", "show", "--env", "local"])
    assert table.exit_code == 0 and "local.yaml" in table.output and "base.yaml" in table.output

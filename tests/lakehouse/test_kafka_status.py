"""``trivas kafka status`` against the session's real broker, and against an address where no
broker listens."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lakehouse.catalog import Catalog
from lakehouse.cli import command_tree
from lakehouse.config import Settings
from lakehouse.runtime import kafka
from lakehouse.runtime.processes import free_port

pytestmark = pytest.mark.integration


def kafka_status(env: dict[str, str]):  # noqa: ANN201 - click's Result
    return CliRunner().invoke(command_tree(), ["kafka", "status", "--env", "test"], env=env, catch_exceptions=False)


def test_status_lists_the_deployments_topics_on_a_reachable_broker(
    deployment: Settings, deployment_env: dict[str, str], catalog: Catalog
) -> None:
    result = kafka_status(deployment_env)
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert status["reachable"] is True and status["local"] is True and status["pid"]
    assert set(kafka.topics_for(deployment, catalog)) <= set(status["topics"])
    assert not any(t.startswith("__") for t in status["topics"])  # Kafka's internal topics left out


def test_status_of_a_broker_nobody_runs_is_unreachable_and_exits_1(deployment_env: dict[str, str]) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    result = kafka_status({**deployment_env, "TRIVAS_KAFKA__BOOTSTRAP": nowhere})
    assert result.exit_code == 1
    status = json.loads(result.output)
    assert status == {"bootstrap": nowhere, "local": False, "pid": None, "reachable": False, "topics": []}

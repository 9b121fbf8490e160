"""conf/cluster.yaml points at the topology `trivas cluster up` starts, and its brokers form
one replicated KRaft quorum (the running cluster is tested in tests/spark_jobs/test_cluster.py)."""

from __future__ import annotations

import pytest

from lakehouse.config import load_settings
from lakehouse.runtime import cluster

pytestmark = pytest.mark.unit


def test_the_cluster_environment_points_at_the_cluster() -> None:
    settings = load_settings("cluster", environ={})
    cluster.check_settings_point_here(settings)
    assert settings.kafka.bootstrap == "localhost:19192,localhost:19193,localhost:19194"
    assert settings.spark.master == "spark://127.0.0.1:7177"


def test_jobs_are_not_submitted_with_settings_of_elsewhere() -> None:
    with pytest.raises(ValueError, match="use --env cluster") as refused:
        cluster.check_settings_point_here(load_settings("local", environ={}))
    assert "kafka.bootstrap is ''" in str(refused.value)


def test_every_broker_votes_and_replicates_three_ways() -> None:
    settings = load_settings("cluster", environ={"TRIVAS_CLUSTER__KAFKA__FIRST_PORT": "30000", "TRIVAS_CLUSTER__KAFKA__FIRST_CONTROLLER_PORT": "30100"})
    nodes = cluster.kafka_nodes(settings)
    properties = [dict(line.split("=", 1) for line in cluster.node_properties(settings, node, nodes).splitlines() if line) for node in nodes]
    assert [p["node.id"] for p in properties] == ["1", "2", "3"]
    assert {p["controller.quorum.voters"] for p in properties} == {"1@localhost:30100,2@localhost:30101,3@localhost:30102"}
    assert [p["advertised.listeners"] for p in properties] == [f"PLAINTEXT://localhost:{30000 + i}" for i in range(3)]
    for p in properties:
        assert (p["default.replication.factor"], p["min.insync.replicas"], p["offsets.topic.replication.factor"]) == ("3", "2", "3")

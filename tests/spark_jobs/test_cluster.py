"""The pipeline on a real cluster: a Spark standalone master with two workers (executors are
other JVMs, their Python workers another interpreter that has trivas's dependencies but not
trivas: the code and conf/ reach them only in the shipped wheel) and a three-broker KRaft Kafka
(replication factor 3, min.insync.replicas 2), all started by ``lakehouse.runtime.cluster``.

The seeded stream is sent in two halves; a broker is SIGKILLed while the first ``spark-submit``
drains, the second half is sent to the two brokers left, and a second ``spark-submit`` drains
the rest. Every table then equals the ground truth and the local run of the same stream."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from lakehouse.config import Settings, load_settings
from lakehouse.contracts import contracts
from lakehouse.freshness import parse_spark_time
from lakehouse.privacy import derive_key, hmac_hex
from lakehouse.runtime import cluster
from lakehouse.runtime.processes import free_port_block, wait_until
from spark_jobs import pipeline
from tests.conftest import TEST_HASH_KEY
from tests.ground_truth import (
    counted_events,
    expected_kpis,
    expected_sessions,
    late_event_ids,
    quarantined,
)
from tests.spark_jobs.stream_fixtures import (
    assert_silver_holds_exactly,
    kpi_differences,
    kpi_rows,
    produce,
    seeded_stream,
)
from tests.venvs import dependencies_venv

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED, MINUTES, RATE = 11, 16, 8.0  # 16 min: sessions close (gap 120 s); every fault kind occurs
KILLED_BROKER = 2
# What the test environment sets for a local run (conf/test.yaml) and a cluster run must share
# to give the same tables: session gap, micro-batch size.
SAME_STREAMING = {"TRIVAS_STREAMING__SESSION_GAP_SECONDS": "120", "TRIVAS_STREAMING__MAX_OFFSETS_PER_TRIGGER": "2000"}


@pytest.fixture(scope="module")
def cluster_env(tmp_path_factory: pytest.TempPathFactory, catalog) -> dict[str, str]:  # noqa: ANN001
    """A running cluster on free ports for this module; the environment of ``--env cluster``."""
    root = tmp_path_factory.mktemp("cluster")
    ports = free_port_block(8)
    env = {
        "TRIVAS_ENV": "cluster",
        "TRIVAS_PRIVACY__HASH_KEY": TEST_HASH_KEY,
        "TRIVAS_PATHS__LOGS": str(root / "logs"),
        "TRIVAS_CLUSTER__DIR": str(root / "cluster"),
        "TRIVAS_CLUSTER__KAFKA__FIRST_PORT": str(ports),
        "TRIVAS_CLUSTER__KAFKA__FIRST_CONTROLLER_PORT": str(ports + 3),
        "TRIVAS_CLUSTER__SPARK__MASTER_PORT": str(ports + 6),
        "TRIVAS_CLUSTER__SPARK__MASTER_WEBUI_PORT": str(ports + 7),
        **SAME_STREAMING,
    }
    settings = load_settings("cluster", environ=env)
    env["TRIVAS_KAFKA__BOOTSTRAP"] = cluster.bootstrap(settings)
    env["TRIVAS_SPARK__MASTER"] = cluster.master_url(settings)
    settings = load_settings("cluster", environ=env)
    try:
        cluster.up(settings, catalog)
        yield env
    finally:
        cluster.down(settings)


def deployment_on(env: dict[str, str], root: Path) -> dict[str, str]:
    """An isolated deployment (own topics, lake, checkpoints) on the cluster of ``env``."""
    return {
        **env,
        "TRIVAS_KAFKA__TOPIC_PREFIX": f"t{uuid.uuid4().hex[:8]}",
        "TRIVAS_KAFKA__DLQ_TOPIC": f"dlq{uuid.uuid4().hex[:8]}",
        "TRIVAS_PATHS__VAR": str(root / "var"),
        "TRIVAS_PATHS__LOGS": str(root / "logs"),
        "TRIVAS_TABLES__ROOT": str(root / "lake"),
        "TRIVAS_TABLES__CHECKPOINTS": str(root / "checkpoints"),
    }


def drain(settings: Settings, wheel: Path, executor_python: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``spark-submit`` of ``trivas pipeline run --available-now`` to the cluster."""
    return cluster.start_submit(settings, wheel, ["pipeline", "run", "--available-now"], log, str(executor_python), env)


def bronze_rows(settings: Settings, table_reader) -> int:  # noqa: ANN001
    try:
        return len(table_reader(settings, "bronze.events"))
    except Exception:  # noqa: BLE001 - not created or not committed yet
        return 0


def session_events(sessions, tz) -> dict:  # noqa: ANN001
    """gold.sessions (pandas) → (visitor, session start) → events."""
    return {(r.anonymous_id, r.session_start.to_pydatetime().replace(tzinfo=tz)): r.events for r in sessions.itertuples()}


def test_status_reports_every_process_and_the_replicated_topics(cluster_env, catalog) -> None:  # noqa: ANN001
    from kafka import KafkaAdminClient

    settings = load_settings("cluster", environ=cluster_env)
    status = cluster.status(settings)
    assert [s.name for s in status.services] == ["kafka-1", "kafka-2", "kafka-3", "spark-master", "spark-worker-1", "spark-worker-2"]
    assert status.alive_workers == 2
    admin = KafkaAdminClient(bootstrap_servers=status.bootstrap)
    try:
        described = admin.describe_topics([status.topics[0]])[0]
    finally:
        admin.close()
    assert {len(p["replica_nodes"]) for p in described["partitions"]} == {3}


def test_cluster_run_with_a_broker_killed_equals_the_truth_and_the_local_run(
    cluster_env, deployment, spark, catalog, table_reader, tmp_path  # noqa: ANN001
) -> None:
    env = deployment_on(cluster_env, tmp_path / "on-cluster")
    on_cluster = load_settings("cluster", environ=env)
    from lakehouse.runtime import kafka

    kafka.ensure_topics(on_cluster, catalog)
    stream = seeded_stream(catalog, on_cluster, SEED, MINUTES, RATE)
    half = len(stream) // 2
    wheel = cluster.build_wheel(tmp_path / "dist")
    executor_python = dependencies_venv(tmp_path / "executor-venv")

    # The local run of the same stream (the session's broker and local Spark).
    local_stream = seeded_stream(catalog, deployment, SEED, MINUTES, RATE)
    produce(deployment, local_stream)
    local = pipeline.drain(spark, deployment, catalog, contracts())

    # The executors' Python cannot import trivas by itself; in tasks, they load its code and
    # conf/ from the wheel shipped with the job.
    bare = subprocess.run([executor_python, "-c", "import lakehouse"], cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert "No module named 'lakehouse'" in bare.stderr
    probe = cluster.start_submit(on_cluster, wheel, ["cluster", "probe"], tmp_path / "probe.log", str(executor_python), env)
    assert probe.wait(timeout=300) == 0, (tmp_path / "probe.log").read_text()[-3000:]
    views = [json.loads(line) for line in (tmp_path / "probe.log").read_text().splitlines() if line.startswith("{")]
    work = Path(env["TRIVAS_CLUSTER__DIR"])
    assert len(views) == 4 and len({v["pid"] for v in views}) == 2  # both executors
    for view in views:
        assert view["python"] == str(executor_python)
        package = Path(view["lakehouse"]).parent
        assert work in package.parents and package.parent.name == cluster.WHEEL_ARCHIVE  # the unpacked wheel
        assert view["conf_dir"] == str(package / "conf")
        assert view["event_types"] == sorted(catalog.event_types)

    produce(on_cluster, stream[:half])
    logs = tmp_path / "drivers"
    first = drain(on_cluster, wheel, executor_python, env, logs / "first.log")
    try:
        wait_until(lambda: bronze_rows(on_cluster, table_reader) > 0 or first.poll() is not None, 300, "the first bronze commit")
        assert first.poll() is None, (logs / "first.log").read_text()[-3000:]
        cluster.kill_broker(on_cluster, KILLED_BROKER)
        produce(on_cluster, stream[half:])  # to the two brokers left: acks=all needs both
        assert first.wait(timeout=600) == 0, (logs / "first.log").read_text()[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
    second = drain(on_cluster, wheel, executor_python, env, logs / "second.log")
    assert second.wait(timeout=600) == 0, (logs / "second.log").read_text()[-3000:]

    # Executors of both workers ran the pipeline's tasks.
    executor_logs = list(Path(env["TRIVAS_CLUSTER__DIR"]).glob("spark-worker-*/work/*/*/stderr"))
    ran = {log.parts[-5] for log in executor_logs if "Finished task" in log.read_text()}
    assert ran == {"spark-worker-1", "spark-worker-2"}

    # Nothing lost, nothing doubled: every delivery archived once despite the dead broker.
    bronze = table_reader(on_cluster, "bronze.events")
    assert len(bronze) == len(stream)
    counted = counted_events(stream, catalog)
    assert_silver_holds_exactly(counted, on_cluster, catalog, table_reader)
    quarantine = table_reader(on_cluster, "silver.quarantine")
    assert Counter(quarantine["reason"]) == Counter(d.expected_reason for d in quarantined(stream, catalog))
    assert sorted(table_reader(on_cluster, "silver.late")["event_id"]) == sorted(late_event_ids(stream, catalog))

    cluster_kpis = kpi_rows(table_reader(on_cluster, "gold.kpi_current"))
    differences = kpi_differences(cluster_kpis, expected_kpis(counted))
    assert not differences, "\n".join(differences[:40])
    local_kpis = kpi_rows(table_reader(deployment, "gold.kpi_current"))
    assert not kpi_differences(cluster_kpis, local_kpis)  # sums may differ in the last bits (other addition order)

    # Closed sessions: the local run's, which are the truth at its sessions query's final
    # watermark. (The cluster's second drain ends on a batch with rows, so its progress log
    # does not show the watermark that closed them.)
    watermark = parse_spark_time(local["gold_sessions"].lastProgress["eventTime"]["watermark"])
    gap = timedelta(seconds=on_cluster.streaming.session_gap_seconds)
    local_sessions = session_events(table_reader(deployment, "gold.sessions"), watermark.tzinfo)
    assert local_sessions == expected_sessions(counted, gap, watermark)
    assert session_events(table_reader(on_cluster, "gold.sessions"), watermark.tzinfo) == local_sessions
    assert local_sessions
    joined = table_reader(on_cluster, "gold.order_payments")
    local_joined = table_reader(deployment, "gold.order_payments")
    assert Counter(zip(joined["order_id"], joined["payment_id"], strict=True)) == Counter(zip(local_joined["order_id"], local_joined["payment_id"], strict=True))

    # Executors hashed PII with the deployment's key (not a per-process fallback).
    orders = table_reader(on_cluster, "silver.orders").set_index("event_id")
    key = derive_key(TEST_HASH_KEY.encode(), "hash")
    placed = [e for e in counted if e["event_type"] == "order_placed"][:20]
    assert placed
    for event in placed:
        assert orders.loc[event["event_id"], "email"] == f"k1:{hmac_hex(key, event['payload']['email'])}"

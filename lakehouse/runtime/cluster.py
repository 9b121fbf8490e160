"""A real multi-process topology on one machine: a Spark standalone master with its workers,
and a KRaft Kafka cluster of several brokers (``trivas cluster up|down|status|submit``).

Everything runs from what the project already installs: the master and workers are pyspark's
own ``bin/spark-class`` (pip's pyspark has no ``start-master.sh``), the brokers the Apache Kafka
jars of the local broker. Each is a :class:`~lakehouse.runtime.processes.Service` with a pid
file and a log under ``cluster.dir``. Jobs reach the cluster through ``spark-submit``: the
project's wheel is shipped to the executors as an archive (the Python code *and* its conf/),
the resolved jars with ``--jars``, so an executor needs only a Python with trivas's
dependencies, as the nodes of a real cluster do.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lakehouse import REPO_ROOT
from lakehouse.catalog import Catalog
from lakehouse.config import Settings
from lakehouse.runtime import kafka
from lakehouse.runtime.jars import spark_home
from lakehouse.runtime.processes import Service, log4j2_properties, port_open, tail, wait_until
from lakehouse.runtime.spark import spark_conf

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
# The wheel ships to executors under this name: Spark unpacks a .zip archive (not a .whl) into
# each executor's working directory, where PYTHONPATH finds the packages and their conf/.
WHEEL_ARCHIVE = "trivas"
# Sources a wheel is built from (a copy: the checkout gets no build/ folder).
WHEEL_SOURCES = ("setup.py", "setup.cfg", "pyproject.toml", "README.md", "MANIFEST.in")
WHEEL_PACKAGES = ("lakehouse", "spark_jobs", "models", "app", "conf")


@dataclass(frozen=True)
class KafkaNode:
    """One broker of the cluster; also a KRaft controller (combined mode)."""

    node_id: int
    port: int
    controller_port: int
    data_dir: Path

    @property
    def listener(self) -> str:
        return f"localhost:{self.port}"


@dataclass(frozen=True)
class ServiceState:
    name: str
    pid: int | None
    address: str


@dataclass(frozen=True)
class ClusterStatus:
    """What ``trivas cluster status`` reports."""

    master_url: str
    bootstrap: str
    services: tuple[ServiceState, ...]
    alive_workers: int | None  # as the master reports them; None when it does not answer
    topics: tuple[str, ...]


def cluster_dir(settings: Settings) -> Path:
    return settings.path(settings.cluster.dir)


def kafka_nodes(settings: Settings) -> list[KafkaNode]:
    spec = settings.cluster.kafka
    return [
        KafkaNode(
            node_id=i,
            port=spec.first_port + i - 1,
            controller_port=spec.first_controller_port + i - 1,
            data_dir=cluster_dir(settings) / f"kafka-{i}",
        )
        for i in range(1, spec.brokers + 1)
    ]


def bootstrap(settings: Settings) -> str:
    """Bootstrap servers of the cluster's brokers (``kafka.bootstrap`` of conf/cluster.yaml)."""
    return ",".join(node.listener for node in kafka_nodes(settings))


def master_url(settings: Settings) -> str:
    """The standalone master (``spark.master`` of conf/cluster.yaml)."""
    return f"spark://{settings.cluster.host}:{settings.cluster.spark.master_port}"


def check_settings_point_here(settings: Settings) -> None:
    """Jobs submitted with these settings must use this cluster's brokers and master."""
    wanted = {"kafka.bootstrap": bootstrap(settings), "spark.master": master_url(settings)}
    found = {"kafka.bootstrap": settings.kafka.bootstrap, "spark.master": settings.spark.master}
    wrong = [f"{key} is {found[key]!r}, the cluster's is {value!r}" for key, value in wanted.items() if found[key] != value]
    if wrong:
        raise ValueError(f"environment {settings.env!r} does not point at `trivas cluster`: " + "; ".join(wrong) + " (use --env cluster)")


# -- Kafka ---------------------------------------------------------------------------------------


def broker_service(node: KafkaNode) -> Service:
    return Service(f"kafka-{node.node_id}", node.data_dir, node.data_dir / "kafka.out")


def node_properties(settings: Settings, node: KafkaNode, nodes: Sequence[KafkaNode]) -> str:
    """``server.properties`` of one combined broker + controller of a static KRaft quorum."""
    replicas = min(settings.kafka.replication_factor, len(nodes))
    min_insync = min(settings.kafka.min_insync_replicas, replicas)
    voters = ",".join(f"{n.node_id}@localhost:{n.controller_port}" for n in nodes)
    return "\n".join(
        [
            "process.roles=broker,controller",
            f"node.id={node.node_id}",
            f"controller.quorum.voters={voters}",
            f"listeners=PLAINTEXT://{node.listener},CONTROLLER://localhost:{node.controller_port}",
            f"advertised.listeners=PLAINTEXT://{node.listener}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={node.data_dir / 'data'}",
            f"default.replication.factor={replicas}",
            f"min.insync.replicas={min_insync}",
            *kafka.internal_topic_replication(replicas, min_insync),
            # The log cleaner's 128 MiB default buffer does not fit a small broker heap.
            "log.cleaner.dedupe.buffer.size=16777216",
            *kafka.shared_broker_properties(settings),
            "",
        ]
    )


def start_kafka(settings: Settings, catalog: Catalog) -> list[int]:
    """Start (or reuse) every broker, wait until all answer, create the topics; their pids."""
    nodes = kafka_nodes(settings)
    cluster_id_file = cluster_dir(settings) / "kafka-cluster-id"
    cluster_dir(settings).mkdir(parents=True, exist_ok=True)
    if not cluster_id_file.exists():
        cluster_id_file.write_text(kafka.new_cluster_id())
    cluster_id = cluster_id_file.read_text().strip()
    pids = []
    for node in nodes:  # all start before any waits: a quorum needs a majority of them up
        node.data_dir.mkdir(parents=True, exist_ok=True)
        properties = node.data_dir / "server.properties"
        properties.write_text(node_properties(settings, node, nodes))
        log4j = node.data_dir / "log4j2.properties"
        log4j.write_text(log4j2_properties(node.data_dir / "kafka.log", kafka.LOGGER_LEVELS))
        java = kafka.broker_java(settings, settings.cluster.kafka.heap, log4j)
        service = broker_service(node)
        if service.pid() is None and not (node.data_dir / "data" / "meta.properties").exists():
            kafka.format_storage(java, properties, cluster_id, [])
        pids.append(service.start([*java, "kafka.Kafka", str(properties)], ready=lambda: True))
    for node in nodes:
        wait_until(lambda node=node: broker_answers(settings, node), 120, f"broker {node.node_id}", node.data_dir / "kafka.log")
    kafka.ensure_topics(settings, catalog)
    return pids


def broker_answers(settings: Settings, node: KafkaNode) -> bool:
    """True once the broker answers; an error with its log as soon as it has died (a port taken,
    a corrupt log dir) rather than a wait for the timeout."""
    if broker_service(node).pid() is None:
        raise RuntimeError(f"broker {node.node_id} exited; its log:\n{tail(node.data_dir / 'kafka.log')}\n{tail(node.data_dir / 'kafka.out')}")
    return port_open("localhost", node.port) and kafka.admin_answers(settings, node.listener)


def kill_broker(settings: Settings, node_id: int) -> int:
    """SIGKILL one broker (no clean shutdown: a crash); returns the pid it had."""
    node = next(n for n in kafka_nodes(settings) if n.node_id == node_id)
    service = broker_service(node)
    pid = service.pid()
    if pid is None:
        raise RuntimeError(f"broker {node_id} is not running")
    service.stop(grace_s=0, signum=9)
    return pid


# -- Spark standalone ----------------------------------------------------------------------------


def spark_env(settings: Settings) -> dict[str, str]:
    """Environment of the master and workers (and through them, of the executors)."""
    return {"SPARK_HOME": str(spark_home()), "SPARK_LOG_DIR": str(cluster_dir(settings) / "spark-logs")}


def master_service(settings: Settings) -> Service:
    run_dir = cluster_dir(settings) / "spark-master"
    return Service("spark-master", run_dir, run_dir / "master.out")


def worker_service(settings: Settings, index: int) -> Service:
    run_dir = cluster_dir(settings) / f"spark-worker-{index}"
    return Service(f"spark-worker-{index}", run_dir, run_dir / "worker.out")


def start_spark(settings: Settings) -> list[int]:
    """Start (or reuse) the master, then the workers; their pids once every worker registered."""
    spec = settings.cluster.spark
    spark_class = str(spark_home() / "bin" / "spark-class")
    host = settings.cluster.host
    env = spark_env(settings)
    pids = [
        master_service(settings).start(
            [spark_class, MASTER_CLASS, "--host", host, "--port", str(spec.master_port), "--webui-port", str(spec.master_webui_port)],
            ready=lambda: port_open(host, spec.master_port) and port_open(host, spec.master_webui_port),
            env=env, timeout_s=90,
        )
    ]  # fmt: skip
    for index in range(1, spec.workers + 1):
        service = worker_service(settings, index)
        command = [
            spark_class, WORKER_CLASS, "--host", host, "--cores", str(spec.worker_cores), "--memory", spec.worker_memory,
            "--work-dir", str(service.run_dir / "work"), "--webui-port", "0", master_url(settings),
        ]  # fmt: skip
        pids.append(service.start(command, ready=lambda: True, env=env, cwd=service.run_dir))
    wait_until(lambda: alive_workers(settings) == spec.workers, 90, f"{spec.workers} workers to register", master_service(settings).log_file)
    return pids


def alive_workers(settings: Settings) -> int | None:
    """Workers the master counts as alive (its JSON status page); None if it does not answer."""
    import json
    import urllib.request

    url = f"http://{settings.cluster.host}:{settings.cluster.spark.master_webui_port}/json/"
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            state = json.load(answer)
    except OSError:
        return None
    return sum(1 for worker in state.get("workers", []) if worker.get("state") == "ALIVE")


# -- the whole topology --------------------------------------------------------------------------


def services(settings: Settings) -> list[tuple[Service, str]]:
    """Every process of the cluster with its address, in start order."""
    listed = [(broker_service(n), n.listener) for n in kafka_nodes(settings)]
    listed.append((master_service(settings), master_url(settings)))
    listed += [(worker_service(settings, i), "worker") for i in range(1, settings.cluster.spark.workers + 1)]
    return listed


def up(settings: Settings, catalog: Catalog) -> ClusterStatus:
    """Start the brokers and the Spark master and workers (reusing what already runs)."""
    check_settings_point_here(settings)
    start_kafka(settings, catalog)
    start_spark(settings)
    return status(settings)


def down(settings: Settings) -> list[str]:
    """Stop everything, workers first; the names of what was running.

    The brokers are stopped together: one by one, the last would wait out its grace period
    for a controller quorum that the others already left."""
    from concurrent.futures import ThreadPoolExecutor

    stopped = []
    spark_services = [service for service, _ in reversed(services(settings)) if service.name.startswith("spark-")]
    for service in spark_services:
        if service.stop():
            stopped.append(service.name)
    brokers = [broker_service(node) for node in kafka_nodes(settings)]
    with ThreadPoolExecutor(len(brokers)) as pool:
        stopped += [b.name for b, done in zip(brokers, pool.map(lambda b: b.stop(), brokers), strict=True) if done]
    return stopped


def status(settings: Settings) -> ClusterStatus:
    states = tuple(ServiceState(service.name, service.pid(), address) for service, address in services(settings))
    any_broker = any(s.pid for s in states if s.name.startswith("kafka-"))
    topics = kafka.reachable_topics(settings, bootstrap(settings)) if any_broker else None
    return ClusterStatus(master_url(settings), bootstrap(settings), states, alive_workers(settings), topics or ())


# -- submitting jobs -----------------------------------------------------------------------------


def build_wheel(dest: Path, source_root: Path = REPO_ROOT) -> Path:
    """Build the project's wheel from a copy of the checkout's sources into ``dest``."""
    if not (source_root / "setup.py").exists():
        raise FileNotFoundError(f"no trivas sources at {source_root}: pass the wheel to ship (--wheel)")
    work = dest / "source"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for name in WHEEL_SOURCES:
        shutil.copy2(source_root / name, work / name)
    for name in WHEEL_PACKAGES:
        shutil.copytree(source_root / name, work / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.rmtree(work / "lakehouse" / "conf", ignore_errors=True)  # only the build puts it there
    for old in dest.glob("trivas-*.whl"):
        old.unlink()
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dest), str(work)],
        cwd=dest, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if built.returncode != 0:
        raise RuntimeError(f"building the wheel failed:\n{built.stdout[-2000:]}{built.stderr[-2000:]}")
    shutil.rmtree(work)
    (wheel,) = dest.glob("trivas-*.whl")
    return wheel


def launcher(settings: Settings) -> Path:
    """The script ``spark-submit`` runs on the driver: trivas's command line. (A module of the
    package cannot be the script: its folder would go first on sys.path and shadow the
    standard library with spark_jobs/io.py.)"""
    path = cluster_dir(settings) / "submit" / "trivas_main.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("from lakehouse.cli import main\n\nmain()\n")
    return path


def submit_command(
    settings: Settings, wheel: Path, args: Sequence[str], executor_python: str | None = None
) -> list[str]:
    """``spark-submit`` of ``trivas <args>`` to the standalone master.

    Every Spark setting of :func:`lakehouse.runtime.spark.spark_conf` goes on the command line
    (driver options only take effect there, before its JVM starts), plus the executors' size,
    the wheel as an archive and the resolved jars."""
    archive = cluster_dir(settings) / "submit" / f"{WHEEL_ARCHIVE}.zip"
    archive.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(wheel, archive)  # --archives unpacks .zip, .jar and .tar.gz, not a .whl by name
    conf = spark_conf(settings)
    jars = conf.pop("spark.jars")
    python = executor_python or sys.executable
    conf.update(
        {
            "spark.executor.memory": settings.cluster.spark.executor_memory,
            "spark.executor.cores": str(settings.cluster.spark.worker_cores),
            "spark.pyspark.python": python,
            "spark.pyspark.driver.python": sys.executable,
            "spark.executorEnv.PYTHONPATH": WHEEL_ARCHIVE,
        }
    )
    command = [
        str(spark_home() / "bin" / "spark-submit"),
        "--master", master_url(settings),
        "--deploy-mode", "client",
        "--jars", jars,
        "--archives", f"{archive}#{WHEEL_ARCHIVE}",
    ]  # fmt: skip
    for key, value in conf.items():
        command += ["--conf", f"{key}={value}"]
    return [*command, str(launcher(settings)), *args]


def start_submit(
    settings: Settings,
    wheel: Path,
    args: Sequence[str],
    log_file: Path,
    executor_python: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``trivas <args>`` on the cluster through ``spark-submit``; the driver's output goes
    to ``log_file``. The caller waits for it (or stops it with SIGTERM, as ``pipeline run`` expects)."""
    check_settings_point_here(settings)
    command = submit_command(settings, wheel, args, executor_python)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("wb") as log:
        return subprocess.Popen(
            command, env={**os.environ, **(env or {}), "SPARK_HOME": str(spark_home())},
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip


# -- what executors see --------------------------------------------------------------------------


def executor_view(_partition: Iterable[int]) -> Iterator[dict[str, object]]:
    """Runs in an executor's Python worker: where trivas and its conf/ come from there.
    (Pickled by reference, so the task fails unless the executor can import this module.)"""
    import lakehouse
    from lakehouse.catalog import catalog

    yield {
        "pid": os.getpid(),
        "python": sys.executable,
        "lakehouse": lakehouse.__file__,
        "conf_dir": str(lakehouse.conf_dir()),
        "event_types": sorted(catalog().event_types),
    }


def probe_executors(spark: SparkSession, tasks: int = 4) -> list[dict[str, object]]:
    """One :func:`executor_view` per task, spread over the executors."""
    return spark.sparkContext.parallelize(range(tasks), tasks).mapPartitions(executor_view).collect()

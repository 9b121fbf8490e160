"""The Kafka Connect standalone worker with the Debezium PostgreSQL connector: jars, properties, topics, supervision."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from lakehouse.config import Settings
from lakehouse.ingest.cdc.settings import CdcSettings, password
from lakehouse.kafka_security import connect_worker_properties, kafka_password, uses_sasl
from lakehouse.runtime.jars import java_executable, resolve_coordinates
from lakehouse.runtime.processes import Service, log4j2_properties, pid_alive

DEBEZIUM = "io.debezium:debezium-connector-postgres:3.6.1.Final"
CONNECT_BUNDLE: tuple[str, ...] = (
    "org.apache.kafka:connect-runtime:4.1.1",
    # Without an slf4j binding the worker logs nothing.
    "org.apache.logging.log4j:log4j-slf4j-impl:2.24.3",
)
# Debezium brings its own copies of what the worker already has; on the plugin path these would
# shadow the worker's (mixed Kafka/slf4j versions), so they are left out.
DEBEZIUM_EXCLUDES = (
    "connect-api",
    "kafka-clients",
    "slf4j-api",
    "lz4-java",
    "snappy-java",
    "zstd-jni",
)


def connect_jars(settings: Settings) -> list[Path]:
    """The Connect worker's classpath (connect-runtime with connect-json, log4j binding)."""
    return resolve_coordinates(
        "cdc-connect", CONNECT_BUNDLE, settings.path(settings.paths.jar_cache)
    )


def debezium_plugin_path(settings: Settings) -> Path:
    """A ``plugin.path`` folder holding the Debezium PostgreSQL connector as one plugin."""
    cache = settings.path(settings.paths.jar_cache)
    plugins = cache / "cdc-plugins"
    resolve_coordinates(
        "cdc-plugins/debezium-connector-postgres", (DEBEZIUM,), cache, exclude=DEBEZIUM_EXCLUDES
    )
    return plugins


CONNECT_LOGGER_LEVELS = {
    "org.apache.kafka": "WARN",
    "org.apache.kafka.connect.runtime.WorkerSourceTask": "INFO",
    "org.reflections": "ERROR",
    "org.eclipse.jetty": "WARN",
}


def connect_service(settings: Settings, cdc: CdcSettings) -> Service:
    """The supervised Kafka Connect standalone worker."""
    logs = settings.path(settings.paths.logs)
    return Service("cdc-connect", settings.path(cdc.connect_dir), logs / "cdc-connect.out")


def worker_properties(settings: Settings, cdc: CdcSettings, plugin_path: Path, secrets_file: Path) -> str:
    """The standalone worker: JSON without schemas, file offsets flushed every second; Kafka
    security (if any) for the worker and its clients, the password read from ``secrets_file``."""
    folder = settings.path(cdc.connect_dir)
    return "\n".join(
        [
            f"bootstrap.servers={settings.kafka_bootstrap()}",
            "key.converter=org.apache.kafka.connect.json.JsonConverter",
            "value.converter=org.apache.kafka.connect.json.JsonConverter",
            "key.converter.schemas.enable=false",
            "value.converter.schemas.enable=false",
            f"offset.storage.file.filename={folder / 'offsets.dat'}",
            f"offset.flush.interval.ms={cdc.offset_flush_interval_ms}",
            f"plugin.path={plugin_path}",
            "plugin.discovery=service_load",
            f"listeners=http://localhost:{cdc.connect_port}",
            # Secrets are read from a 0600 file at runtime, never written into this file.
            "config.providers=file",
            "config.providers.file.class=org.apache.kafka.common.config.provider.FileConfigProvider",
            # Idempotent producer: a retried send is not a second copy.
            "producer.enable.idempotence=true",
            "producer.acks=all",
            "producer.linger.ms=5",
            *connect_worker_properties(settings, f"${{file:{secrets_file}:kafka.password}}"),
            "",
        ]
    )


def connector_properties(settings: Settings, cdc: CdcSettings, secrets_file: Path) -> str:
    """The Debezium PostgreSQL connector (pgoutput, our publication, string decimals)."""
    return "\n".join(
        [
            f"name={cdc.connector_name}",
            "connector.class=io.debezium.connector.postgresql.PostgresConnector",
            "tasks.max=1",
            "plugin.name=pgoutput",
            f"database.hostname={cdc.pg_host}",
            f"database.port={cdc.pg_port}",
            f"database.user={cdc.replication_user}",
            f"database.password=${{file:{secrets_file}:password}}",
            f"database.dbname={cdc.pg_database}",
            f"topic.prefix={cdc.topic_prefix}",
            f"slot.name={cdc.slot_name}",
            f"publication.name={cdc.publication}",
            "publication.autocreate.mode=disabled",
            f"table.include.list={','.join(cdc.tables)}",
            f"snapshot.mode={cdc.snapshot_mode}",
            "tombstones.on.delete=true",
            "decimal.handling.mode=string",
            f"poll.interval.ms={cdc.poll_interval_ms}",
            "",
        ]
    )


def ensure_cdc_topics(settings: Settings, cdc: CdcSettings) -> list[str]:
    """Create the connector's topics (the broker does not auto-create); returns those created."""
    from lakehouse.runtime.kafka import create_missing_topics

    return create_missing_topics(settings, cdc.topics())


def connector_state(cdc: CdcSettings) -> dict[str, Any] | None:
    """The connector's status from the worker's REST API, or None if it does not answer."""
    url = f"http://localhost:{cdc.connect_port}/connectors/{cdc.connector_name}/status"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def connector_running(cdc: CdcSettings) -> bool:
    """True when the connector and its task are RUNNING (a FAILED task raises)."""
    state = connector_state(cdc)
    if state is None:
        return False
    tasks = state.get("tasks", [])
    for task in tasks:
        if task.get("state") == "FAILED":
            raise RuntimeError(f"CDC connector task failed:\n{task.get('trace', '')[:3000]}")
    return (
        state.get("connector", {}).get("state") == "RUNNING"
        and bool(tasks)
        and all(t.get("state") == "RUNNING" for t in tasks)
    )


def start_connect(settings: Settings, cdc: CdcSettings) -> int:
    """Start (or reuse) the Connect worker with the Debezium connector; returns its pid."""
    folder = settings.path(cdc.connect_dir)
    folder.mkdir(parents=True, exist_ok=True)
    plugin_path = debezium_plugin_path(settings)
    jars = connect_jars(settings)
    secrets_file = folder / "connector-secrets.properties"
    fd = os.open(secrets_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"password={password(settings, cdc, 'replication')}\n")
        if uses_sasl(settings.kafka.security):
            handle.write(f"kafka.password={kafka_password(settings)}\n")
    (folder / "worker.properties").write_text(worker_properties(settings, cdc, plugin_path, secrets_file))
    (folder / "connector.properties").write_text(connector_properties(settings, cdc, secrets_file))
    log4j = folder / "log4j2.properties"
    log4j.write_text(
        log4j2_properties(settings.path(settings.paths.logs) / "cdc-connect.log", CONNECT_LOGGER_LEVELS)
    )
    ensure_cdc_topics(settings, cdc)
    command = [
        java_executable(),
        f"-Xmx{cdc.connect_heap}",
        f"-Dlog4j2.configurationFile={log4j}",
        "-cp", ":".join(str(j) for j in jars),
        "org.apache.kafka.connect.cli.ConnectStandalone",
        str(folder / "worker.properties"),
        str(folder / "connector.properties"),
    ]  # fmt: skip
    return connect_service(settings, cdc).start(
        command, ready=lambda: connector_running(cdc), timeout_s=120
    )


def stop_connect(settings: Settings, cdc: CdcSettings) -> bool:
    """Graceful stop: the worker flushes its offsets (nothing is delivered twice)."""
    return connect_service(settings, cdc).stop()


def kill_connect(settings: Settings, cdc: CdcSettings) -> bool:
    """SIGKILL the worker (crash drill): changes since the last offset flush come again."""
    service = connect_service(settings, cdc)
    pid = service.pid()
    if pid is None:
        return False
    os.kill(pid, signal.SIGKILL)
    while pid_alive(pid):
        time.sleep(0.05)
    service.pid_file.unlink(missing_ok=True)
    return True

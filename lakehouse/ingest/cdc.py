"""Change-data-capture from the shop's PostgreSQL into Kafka: Debezium on Kafka Connect.

``up`` makes the whole path run: a private PostgreSQL cluster (demo; ``pg_managed: false``
points at a real shop database instead) with ``wal_level=logical``, the shop schema, a LOGIN
REPLICATION role and a publication; then a Kafka Connect standalone worker with the Debezium
PostgreSQL connector on its ``plugin.path`` (the exact recipe of STACK.md). Both are supervised
``Service``s with pid files and logs under ``paths.logs``. Jars come from Maven once into the jar
cache. Passwords come from the environment or generated secret files, and reach Connect through
its ``FileConfigProvider`` so that they are in no properties file, no log and no git.

``ShopDatabase`` is the playground shop's write API (orders and stock), and
``MIRRORED_TABLES`` declares the captured tables once for the SQL side and the silver mirrors.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, SecretStr

from lakehouse import REPO_ROOT
from lakehouse.catalog import Catalog
from lakehouse.config import Settings
from lakehouse.runtime.jars import java_executable, resolve_coordinates
from lakehouse.runtime.processes import Service, pid_alive, port_open

CDC_CONF = REPO_ROOT / "conf" / "cdc.yaml"
ENV_PREFIX = "TRIVAS_CDC_"
SQL_DIR = Path(__file__).parent / "cdc_sql"

DEBEZIUM = "io.debezium:debezium-connector-postgres:3.6.1.Final"
CONNECT_BUNDLE: tuple[str, ...] = (
    "org.apache.kafka:connect-runtime:4.1.1",
    # Without an slf4j binding the worker logs nothing.
    "org.apache.logging.log4j:log4j-slf4j-impl:2.24.3",
)
# Debezium brings its own copies of what the worker already has; on the plugin path these would
# shadow the worker's (mixed Kafka/slf4j versions), so they are left out (STACK.md).
DEBEZIUM_EXCLUDES = (
    "connect-api",
    "kafka-clients",
    "slf4j-api",
    "lz4-java",
    "snappy-java",
    "zstd-jni",
)


# --------------------------------------------------------------------------- configuration


class CdcSettings(BaseModel):
    """``conf/cdc.yaml`` with ``TRIVAS_CDC_<KEY>`` overrides (flat keys, no ``__``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pg_managed: bool
    pg_host: str
    pg_port: int
    pg_database: str
    pg_data_dir: str
    pg_os_user: str
    shop_user: str
    replication_user: str
    shop_password: SecretStr | None = None
    replication_password: SecretStr | None = None
    connect_port: int
    connect_heap: str
    connect_dir: str
    connector_name: str
    topic_prefix: str
    slot_name: str
    publication: str
    tables: tuple[str, ...]
    snapshot_mode: str
    poll_interval_ms: int
    offset_flush_interval_ms: int

    def topic(self, table: str) -> str:
        """Debezium's topic for ``schema.table``."""
        return f"{self.topic_prefix}.{table}"

    def topics(self) -> list[str]:
        """Every topic the connector writes to."""
        return [self.topic(t) for t in self.tables]


def load_cdc_settings(
    environ: Mapping[str, str] | None = None, conf_file: Path = CDC_CONF
) -> CdcSettings:
    """Load ``conf/cdc.yaml``; ``TRIVAS_CDC_<KEY>`` variables override single keys."""
    environ = os.environ if environ is None else environ
    data = yaml.safe_load(conf_file.read_text()) or {}
    for name, raw in environ.items():
        if name.startswith(ENV_PREFIX) and "__" not in name:
            key = name[len(ENV_PREFIX) :].lower()
            data[key] = yaml.safe_load(raw) if raw != "" and not key.endswith("password") else raw
    return CdcSettings.model_validate(data)


def password(settings: Settings, cdc: CdcSettings, role: str) -> str:
    """The password of ``role`` ("shop" or "replication"): from config/env, else a secret file.

    A missing secret file is generated (random, mode 0600) under ``<paths.var>/secrets``: only
    the private demo cluster may rely on that; a real shop database passes its passwords in.
    """
    configured: SecretStr | None = getattr(cdc, f"{role}_password")
    if configured is not None:
        return configured.get_secret_value()
    secret_file = secrets_dir(settings) / f"cdc_{role}_password"
    if not secret_file.exists():
        secret_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(24))
    return secret_file.read_text().strip()


def secrets_dir(settings: Settings) -> Path:
    """Where generated secrets live (never in git: ``var/`` is ignored)."""
    return settings.path(settings.paths.var) / "secrets"


# --------------------------------------------------------------------------- mirrored tables


@dataclass(frozen=True)
class MirroredColumn:
    """One captured column: its name and its type in Spark SQL DDL terms."""

    name: str
    spark_type: str


@dataclass(frozen=True)
class MirroredTable:
    """A captured source table and its silver mirror (declared once, used everywhere)."""

    source: str  # schema.table in PostgreSQL
    silver: str  # logical silver table
    keys: tuple[str, ...]
    columns: tuple[MirroredColumn, ...]
    # The catalog domain whose PII classes govern these columns (every path into silver goes
    # through the same policy: a mirrored customer_id is tokenized like silver.orders').
    domain: str

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def pii_classes(self, catalog: Catalog) -> dict[str, str]:
        """The catalog PII class of every protected column of this mirror."""
        classes = catalog.pii_classes(self.domain)
        protected = {name: classes[name] for name in self.column_names if name in classes}
        keyed = sorted(set(protected) & set(self.keys))
        if keyed:
            raise ValueError(f"{self.source}: key columns {keyed} are PII; a mirror cannot protect its key")
        return protected


MIRRORED_TABLES: dict[str, MirroredTable] = {
    "public.inventory": MirroredTable(
        source="public.inventory",
        silver="silver.shop_inventory",
        keys=("sku", "warehouse"),
        domain="inventory",
        columns=(
            MirroredColumn("sku", "string"),
            MirroredColumn("warehouse", "string"),
            MirroredColumn("quantity", "int"),
            MirroredColumn("updated_at", "timestamp"),
        ),
    ),
    "public.orders": MirroredTable(
        source="public.orders",
        silver="silver.shop_orders",
        keys=("order_id",),
        domain="orders",
        columns=(
            MirroredColumn("order_id", "string"),
            MirroredColumn("customer_id", "string"),
            MirroredColumn("status", "string"),
            MirroredColumn("amount", "decimal(12,2)"),
            MirroredColumn("currency", "string"),
            MirroredColumn("created_at", "timestamp"),
            MirroredColumn("updated_at", "timestamp"),
        ),
    ),
}


def mirrored_tables(cdc: CdcSettings) -> list[MirroredTable]:
    """The declared mirrors of the configured tables (an undeclared table is an error)."""
    unknown = [t for t in cdc.tables if t not in MIRRORED_TABLES]
    if unknown:
        raise ValueError(f"no mirror declared for {unknown}: add them to MIRRORED_TABLES")
    return [MIRRORED_TABLES[t] for t in cdc.tables]


# --------------------------------------------------------------------------- jars


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


# --------------------------------------------------------------------------- PostgreSQL


class PostgresMissingError(RuntimeError):
    """Raised when no PostgreSQL server binaries are installed."""


def postgres_bin_dir() -> Path:
    """Folder with ``initdb``/``postgres``/``pg_ctl`` (Debian: /usr/lib/postgresql/<v>/bin)."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "postgres").exists():
            return folder
    on_path = shutil.which("initdb")
    if on_path and Path(on_path).with_name("postgres").exists():
        return Path(on_path).parent
    raise PostgresMissingError(
        "PostgreSQL server not installed: run scripts/install_debian_packages.sh "
        "(Debian package 'postgresql')"
    )


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _as_cluster_owner(cdc: CdcSettings, command: Sequence[str]) -> list[str]:
    """PostgreSQL refuses to run as root: drop to the cluster owner (exec, no extra process)."""
    if not _running_as_root():
        return list(command)
    user = cdc.pg_os_user
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--", *command]


def _check_reachable_by(owner: str, folder: Path) -> None:
    """The cluster owner must be able to walk down to its data folder."""
    entry = pwd.getpwnam(owner)
    for parent in reversed(folder.parents):
        mode = parent.stat()
        can_enter = (
            mode.st_mode & 0o001
            or (mode.st_uid == entry.pw_uid and mode.st_mode & 0o100)
            or (mode.st_gid == entry.pw_gid and mode.st_mode & 0o010)
        )
        if not can_enter:
            raise PermissionError(
                f"PostgreSQL runs as {owner!r}, which cannot enter {parent}: "
                f"put pg_data_dir (TRIVAS_CDC_PG_DATA_DIR) somewhere {owner!r} can reach"
            )


def pg_data_dir(settings: Settings, cdc: CdcSettings) -> Path:
    return settings.path(cdc.pg_data_dir)


def postgres_service(settings: Settings, cdc: CdcSettings) -> Service:
    """The supervised private PostgreSQL cluster."""
    logs = settings.path(settings.paths.logs)
    return Service("cdc-postgres", settings.path(cdc.connect_dir), logs / "cdc-postgres.log")


def init_cluster(settings: Settings, cdc: CdcSettings) -> bool:
    """``initdb`` the private cluster once; False if it already exists."""
    data = pg_data_dir(settings, cdc)
    if (data / "PG_VERSION").exists():
        return False
    data.mkdir(parents=True, exist_ok=True)
    if _running_as_root():
        _check_reachable_by(cdc.pg_os_user, data)
        entry = pwd.getpwnam(cdc.pg_os_user)
        os.chown(data, entry.pw_uid, entry.pw_gid)
    data.chmod(0o700)
    command = _as_cluster_owner(
        cdc,
        [
            str(postgres_bin_dir() / "initdb"),
            "-D", str(data),
            "-U", "postgres",
            "--encoding=UTF8", "--locale=C",
            # Local socket (inside the 0700 data dir) for the admin; passwords over TCP.
            "--auth-local=trust", "--auth-host=scram-sha-256",
        ],
    )  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False, cwd="/")
    if result.returncode != 0:
        raise RuntimeError(f"initdb failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return True


def start_postgres(settings: Settings, cdc: CdcSettings) -> int:
    """Start (or reuse) the private cluster; returns its pid."""
    init_cluster(settings, cdc)
    data = pg_data_dir(settings, cdc)
    command = _as_cluster_owner(
        cdc,
        [
            str(postgres_bin_dir() / "postgres"),
            "-D", str(data),
            "-c", f"port={cdc.pg_port}",
            "-c", "listen_addresses=localhost",
            "-c", f"unix_socket_directories={data}",
            "-c", "wal_level=logical",
            "-c", "max_replication_slots=8",
            "-c", "max_wal_senders=8",
            "-c", "shared_buffers=64MB",
            # A slot left behind by a removed connector must not fill the disk with WAL.
            "-c", "max_slot_wal_keep_size=2GB",
        ],
    )  # fmt: skip
    service = postgres_service(settings, cdc)
    return service.start(
        command,
        ready=lambda: port_open("localhost", cdc.pg_port) and _admin_answers(settings, cdc),
        timeout_s=60,
        cwd=Path("/"),
    )


def stop_postgres(settings: Settings, cdc: CdcSettings, grace_s: float = 30.0) -> bool:
    """Fast shutdown (SIGINT: disconnect clients, checkpoint); False if it was not running."""
    service = postgres_service(settings, cdc)
    pid = service.pid()
    if pid is None:
        return False
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + grace_s
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    service.stop(grace_s=5)  # SIGKILL if it did not go; removes the pid file
    return True


def admin_connection(settings: Settings, cdc: CdcSettings, database: str = "postgres"):  # noqa: ANN201
    """A superuser connection to the private cluster over its unix socket."""
    import psycopg2

    return psycopg2.connect(
        host=str(pg_data_dir(settings, cdc)),
        port=cdc.pg_port,
        user="postgres",
        dbname=database,
        connect_timeout=3,
    )


def _admin_answers(settings: Settings, cdc: CdcSettings) -> bool:
    import psycopg2

    try:
        admin_connection(settings, cdc).close()
        return True
    except psycopg2.OperationalError:
        return False


_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
PASSWORD_PLACEHOLDER = "%(password)s"


def _ident(name: str) -> str:
    """A configured SQL name, checked to be a plain identifier (it is spliced into SQL)."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a plain lower-case SQL identifier")
    return name


def provisioning_statements(cdc: CdcSettings) -> list[str]:
    """What Debezium needs on the shop database, as SQL run by a superuser in the shop db.

    Used as is on the private cluster (the password is bound to ``%(password)s``);
    ``trivas cdc sql`` prints it for a real shop's DBA. Idempotent.
    """
    user = _ident(cdc.replication_user)
    tables = [".".join(_ident(part) for part in t.split(".")) for t in cdc.tables]
    schemas = sorted({t.split(".")[0] for t in tables})
    statements = [
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
        f"'{user}') THEN CREATE ROLE {user} LOGIN REPLICATION; END IF; END $$",
        f"ALTER ROLE {user} LOGIN REPLICATION PASSWORD {PASSWORD_PLACEHOLDER}",
        *(f"GRANT USAGE ON SCHEMA {schema} TO {user}" for schema in schemas),
    ]
    for table in tables:
        # Full before-images: an UPDATE or DELETE event carries the whole old row.
        statements.append(f"ALTER TABLE {table} REPLICA IDENTITY FULL")
        # The initial snapshot reads the rows with plain SELECTs.
        statements.append(f"GRANT SELECT ON {table} TO {user}")
    publication = _ident(cdc.publication)
    # Created here, never by the connector (publication.autocreate.mode=disabled).
    statements.append(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_publication WHERE pubname = "
        f"'{publication}') THEN CREATE PUBLICATION {publication} FOR TABLE "
        f"{', '.join(tables)}; END IF; END $$"
    )
    return statements


def provision(settings: Settings, cdc: CdcSettings) -> None:
    """Create the shop database, its schema, the roles and the publication (idempotent)."""
    from psycopg2 import sql

    shop_user = sql.Identifier(cdc.shop_user)
    admin = admin_connection(settings, cdc)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (cdc.shop_user,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(shop_user))
            cur.execute(
                sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(
                    shop_user, sql.Literal(password(settings, cdc, "shop"))
                )
            )
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (cdc.pg_database,))
            if cur.fetchone() is None:
                cur.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(cdc.pg_database), shop_user
                    )
                )
    finally:
        admin.close()
    shop = admin_connection(settings, cdc, cdc.pg_database)
    shop.autocommit = True
    try:
        with shop.cursor() as cur:
            cur.execute(sql.SQL("SET ROLE {}").format(shop_user))
            cur.execute((SQL_DIR / "shop_schema.sql").read_text())
            cur.execute("RESET ROLE")
            secret = {"password": password(settings, cdc, "replication")}
            for statement in provisioning_statements(cdc):
                cur.execute(statement, secret if PASSWORD_PLACEHOLDER in statement else None)
    finally:
        shop.close()


# --------------------------------------------------------------------------- Kafka Connect

CONNECT_LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = org.apache.kafka
logger.kafka.level = WARN
logger.runtime.name = org.apache.kafka.connect.runtime.WorkerSourceTask
logger.runtime.level = INFO
logger.reflections.name = org.reflections
logger.reflections.level = ERROR
logger.jetty.name = org.eclipse.jetty
logger.jetty.level = WARN
"""


def connect_service(settings: Settings, cdc: CdcSettings) -> Service:
    """The supervised Kafka Connect standalone worker."""
    logs = settings.path(settings.paths.logs)
    return Service("cdc-connect", settings.path(cdc.connect_dir), logs / "cdc-connect.out")


def worker_properties(settings: Settings, cdc: CdcSettings, plugin_path: Path) -> str:
    """The standalone worker: JSON without schemas, file offsets flushed every second."""
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
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap())
    try:
        existing = set(admin.list_topics())
        wanted = [t for t in cdc.topics() if t not in existing]
        if wanted:
            with suppress(TopicAlreadyExistsError):
                admin.create_topics(
                    [
                        NewTopic(
                            name,
                            num_partitions=settings.kafka.partitions,
                            replication_factor=1,
                            topic_configs={"retention.ms": str(settings.kafka.retention_ms)},
                        )
                        for name in wanted
                    ]
                )
        return wanted
    finally:
        admin.close()


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
    (folder / "worker.properties").write_text(worker_properties(settings, cdc, plugin_path))
    (folder / "connector.properties").write_text(connector_properties(settings, cdc, secrets_file))
    log4j = folder / "log4j2.properties"
    log4j.write_text(
        CONNECT_LOG4J2.format(log_file=settings.path(settings.paths.logs) / "cdc-connect.log")
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


# --------------------------------------------------------------------------- lifecycle


@dataclass(frozen=True)
class CdcStatus:
    """What ``trivas cdc status`` reports."""

    postgres: str  # host:port/db
    postgres_managed: bool
    postgres_pid: int | None
    postgres_reachable: bool
    connect_pid: int | None
    connector: str  # RUNNING, FAILED, … or "down"
    topics: tuple[str, ...]
    slot_lag_bytes: int | None


def up(settings: Settings, cdc: CdcSettings | None = None) -> CdcStatus:
    """Start the shop database (managed mode), provision it and start Connect + Debezium.

    The Kafka broker must be up (``trivas kafka up``; the CLI does both).
    """
    cdc = cdc or load_cdc_settings()
    if cdc.pg_managed:
        start_postgres(settings, cdc)
        provision(settings, cdc)
    start_connect(settings, cdc)
    return status(settings, cdc)


def down(settings: Settings, cdc: CdcSettings | None = None) -> bool:
    """Stop Connect (offsets flushed), then the private database; False if nothing ran."""
    cdc = cdc or load_cdc_settings()
    stopped = stop_connect(settings, cdc)
    if cdc.pg_managed:
        stopped = stop_postgres(settings, cdc) or stopped
    return stopped


def status(settings: Settings, cdc: CdcSettings | None = None) -> CdcStatus:
    """Processes, connector state and replication-slot lag."""
    cdc = cdc or load_cdc_settings()
    pg_pid = postgres_service(settings, cdc).pid() if cdc.pg_managed else None
    reachable = port_open(cdc.pg_host, cdc.pg_port)
    lag = None
    if reachable:
        lag = _slot_lag(settings, cdc)
    state = connector_state(cdc)
    connector = "down"
    if state is not None:
        connector = state.get("connector", {}).get("state", "UNKNOWN")
        task_states = {t.get("state") for t in state.get("tasks", [])}
        if "FAILED" in task_states:
            connector = "FAILED"
    return CdcStatus(
        postgres=f"{cdc.pg_host}:{cdc.pg_port}/{cdc.pg_database}",
        postgres_managed=cdc.pg_managed,
        postgres_pid=pg_pid,
        postgres_reachable=reachable,
        connect_pid=connect_service(settings, cdc).pid(),
        connector=connector,
        topics=tuple(cdc.topics()),
        slot_lag_bytes=lag,
    )


def _slot_lag(settings: Settings, cdc: CdcSettings) -> int | None:
    """WAL bytes the connector has not confirmed yet (None if unknown)."""
    import psycopg2

    try:
        with ShopDatabase.connect(settings, cdc) as shop, shop.connection.cursor() as cur:
            cur.execute(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint "
                "FROM pg_replication_slots WHERE slot_name = %s",
                (cdc.slot_name,),
            )
            row = cur.fetchone()
            return int(row[0]) if row and row[0] is not None else None
    except psycopg2.Error:
        return None


# --------------------------------------------------------------------------- the shop's writes


class ShopDatabase:
    """The playground shop's database writes (orders and stock), one transaction per call.

    Not thread-safe: give each writer thread its own instance. Timestamps are stamped by the
    database (``now()``) unless given, always zone-aware.
    """

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    @classmethod
    def connect(cls, settings: Settings, cdc: CdcSettings | None = None) -> ShopDatabase:
        """Connect as the shop's application user over TCP (password from env/secret file)."""
        import psycopg2

        cdc = cdc or load_cdc_settings()
        connection = psycopg2.connect(
            host=cdc.pg_host,
            port=cdc.pg_port,
            user=cdc.shop_user,
            password=password(settings, cdc, "shop"),
            dbname=cdc.pg_database,
            connect_timeout=5,
        )
        return cls(connection)

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> ShopDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A cursor inside one transaction (committed on success, rolled back on error)."""
        with self.connection, self.connection.cursor() as cursor:
            yield cursor

    def place_order(
        self,
        order_id: str,
        customer_id: str,
        amount: Decimal | float | str,
        currency: str,
        items: Mapping[str, int] | None = None,
        warehouse: str = "main",
        status: str = "placed",
        created_at: datetime | None = None,
    ) -> None:
        """Insert an order and take its items' quantities off stock, atomically.

        Args:
            order_id: the order's id (primary key).
            customer_id: who ordered.
            amount: order total (stored as numeric(12,2)).
            currency: ISO 4217 code.
            items: quantity per sku, decremented from ``warehouse`` stock (rows created if new).
            warehouse: where the items ship from.
            status: initial status.
            created_at: zone-aware creation time (default: the database's ``now()``).
        """
        with self.transaction() as cur:
            cur.execute(
                "INSERT INTO orders (order_id, customer_id, status, amount, currency, created_at,"
                " updated_at) VALUES (%s, %s, %s, %s, %s, coalesce(%s, now()),"
                " coalesce(%s, now()))",
                (order_id, customer_id, status, Decimal(str(amount)), currency, created_at,
                 created_at),
            )  # fmt: skip
            for sku, quantity in sorted((items or {}).items()):
                _adjust(cur, sku, warehouse, -int(quantity))

    def set_order_status(self, order_id: str, status: str) -> bool:
        """Change an order's status (paid, shipped, cancelled, …); False if no such order."""
        with self.transaction() as cur:
            cur.execute(
                "UPDATE orders SET status = %s, updated_at = now() WHERE order_id = %s",
                (status, order_id),
            )
            return cur.rowcount == 1

    def cancel_order(
        self, order_id: str, items: Mapping[str, int] | None = None, warehouse: str = "main"
    ) -> bool:
        """Mark an order cancelled and put its items back on stock, atomically."""
        with self.transaction() as cur:
            cur.execute(
                "UPDATE orders SET status = 'cancelled', updated_at = now() WHERE order_id = %s",
                (order_id,),
            )
            if cur.rowcount != 1:
                return False
            for sku, quantity in sorted((items or {}).items()):
                _adjust(cur, sku, warehouse, int(quantity))
            return True

    def delete_order(self, order_id: str) -> bool:
        """Delete an order (GDPR erasure, test data); False if no such order."""
        with self.transaction() as cur:
            cur.execute("DELETE FROM orders WHERE order_id = %s", (order_id,))
            return cur.rowcount == 1

    def adjust_stock(self, sku: str, warehouse: str, delta: int) -> int:
        """Add ``delta`` (negative: take off) to a stock level; returns the new quantity."""
        with self.transaction() as cur:
            return _adjust(cur, sku, warehouse, int(delta))

    def set_stock(self, sku: str, warehouse: str, quantity: int) -> None:
        """Set a stock level (a stock count), creating the row if needed."""
        with self.transaction() as cur:
            cur.execute(
                "INSERT INTO inventory (sku, warehouse, quantity) VALUES (%s, %s, %s) "
                "ON CONFLICT (sku, warehouse) DO UPDATE SET quantity = EXCLUDED.quantity, "
                "updated_at = now()",
                (sku, warehouse, int(quantity)),
            )

    def remove_stock_item(self, sku: str, warehouse: str) -> bool:
        """Delete a stock row (item delisted); False if it did not exist."""
        with self.transaction() as cur:
            cur.execute("DELETE FROM inventory WHERE sku = %s AND warehouse = %s", (sku, warehouse))
            return cur.rowcount == 1

    def apply_event(self, event: Mapping[str, Any]) -> bool:
        """Write a playground catalog event (envelope dict) as the shop's own database would.

        Idempotent, so a duplicated delivery is harmless: ``order_placed`` inserts the order
        (ignored if it exists), ``payment_authorized``/``order_cancelled``/``refund_issued`` set
        its status, ``inventory_adjusted`` sets the stock to ``stock_after``. Other event types
        are not the database's business; returns False for them.
        """
        payload = event.get("payload") or {}
        kind = event.get("event_type")
        at = _event_time(event)
        if kind == "order_placed":
            with self.transaction() as cur:
                cur.execute(
                    "INSERT INTO orders (order_id, customer_id, status, amount, currency,"
                    " created_at, updated_at) VALUES (%s, %s, 'placed', %s, %s,"
                    " coalesce(%s, now()), coalesce(%s, now())) ON CONFLICT (order_id) DO NOTHING",
                    (payload["order_id"], payload["customer_id"], Decimal(str(payload["amount"])),
                     payload["currency"], at, at),
                )  # fmt: skip
            return True
        status = ORDER_STATUS_BY_EVENT.get(str(kind))
        if status is not None:
            return self.set_order_status(payload["order_id"], status)
        if kind == "inventory_adjusted":
            self.set_stock(payload["sku"], payload["warehouse"], int(payload["stock_after"]))
            return True
        return False

    def current_lsn(self) -> int:
        """The database's current WAL position (every later change has a higher LSN)."""
        with self.transaction() as cur:
            cur.execute("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint")
            return int(cur.fetchone()[0])

    def rows(self, table: str) -> list[dict[str, Any]]:
        """Every row of a mirrored table (``public.orders``…), ordered by key."""
        from psycopg2 import sql

        spec = MIRRORED_TABLES[table]
        query = sql.SQL("SELECT {cols} FROM {table} ORDER BY {keys}").format(
            cols=sql.SQL(", ").join(sql.Identifier(c) for c in spec.column_names),
            table=sql.Identifier(*table.split(".")),
            keys=sql.SQL(", ").join(sql.Identifier(k) for k in spec.keys),
        )
        with self.transaction() as cur:
            cur.execute(query)
            return [dict(zip(spec.column_names, row, strict=True)) for row in cur.fetchall()]


def _adjust(cursor: Any, sku: str, warehouse: str, delta: int) -> int:
    cursor.execute(
        "INSERT INTO inventory (sku, warehouse, quantity) VALUES (%s, %s, %s) "
        "ON CONFLICT (sku, warehouse) DO UPDATE SET quantity = inventory.quantity + EXCLUDED.quantity, "
        "updated_at = now() RETURNING quantity",
        (sku, warehouse, delta),
    )
    return int(cursor.fetchone()[0])


ORDER_STATUS_BY_EVENT = {
    "payment_authorized": "paid",
    "order_cancelled": "cancelled",
    "refund_issued": "refunded",
}


def _event_time(event: Mapping[str, Any]) -> datetime | None:
    raw = event.get("event_time")
    if not raw:
        return None
    at = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    return at if at.tzinfo is not None else None

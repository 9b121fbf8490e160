"""Change-data-capture from the shop's PostgreSQL into Kafka: Debezium on Kafka Connect.

``up`` makes the whole path run: a private PostgreSQL cluster (demo; ``pg_managed: false``
points at a real shop database instead) with ``wal_level=logical``, the shop schema, a LOGIN
REPLICATION role and a publication; then a Kafka Connect standalone worker with the Debezium
PostgreSQL connector on its ``plugin.path``. Both are supervised
``Service``s with pid files and logs under ``paths.logs``. Jars come from Maven once into the jar
cache. Passwords come from the environment or generated secret files, and reach Connect through
its ``FileConfigProvider`` so that they are in no properties file, no log and no git.

``ShopDatabase`` is the playground shop's write API (orders and stock), and
``MIRRORED_TABLES`` declares the captured tables once for the SQL side and the silver mirrors.

Modules, one concern each: ``settings`` (conf/cdc.yaml, passwords), ``mirrors`` (the captured
tables), ``postgres`` (the demo cluster), ``provisioning`` (the DBA's SQL), ``connect`` (the
Connect worker and the Debezium connector), ``lifecycle`` (up/down/status), ``shop_database``
(the playground shop's writes). Everything public is importable from this package.
"""

from __future__ import annotations

from lakehouse.ingest.cdc.connect import (
    CONNECT_BUNDLE,
    CONNECT_LOGGER_LEVELS,
    DEBEZIUM,
    DEBEZIUM_EXCLUDES,
    connect_jars,
    connect_service,
    connector_properties,
    connector_running,
    connector_state,
    debezium_plugin_path,
    ensure_cdc_topics,
    kill_connect,
    start_connect,
    stop_connect,
    worker_properties,
)
from lakehouse.ingest.cdc.lifecycle import (
    CdcStatus,
    down,
    status,
    up,
)
from lakehouse.ingest.cdc.mirrors import (
    MIRRORED_TABLES,
    MirroredColumn,
    MirroredTable,
    mirrored_tables,
)
from lakehouse.ingest.cdc.postgres import (
    PostgresMissingError,
    admin_connection,
    init_cluster,
    pg_data_dir,
    postgres_bin_dir,
    postgres_service,
    start_postgres,
    stop_postgres,
)
from lakehouse.ingest.cdc.provisioning import (
    PASSWORD_PLACEHOLDER,
    SQL_DIR,
    provision,
    provisioning_statements,
)
from lakehouse.ingest.cdc.settings import (
    CDC_CONF,
    ENV_PREFIX,
    CdcSettings,
    load_cdc_settings,
    password,
    secrets_dir,
)
from lakehouse.ingest.cdc.shop_database import (
    ORDER_STATUS_BY_EVENT,
    ShopDatabase,
)

__all__ = [
    "CDC_CONF",
    "CONNECT_BUNDLE",
    "CONNECT_LOGGER_LEVELS",
    "CdcSettings",
    "CdcStatus",
    "DEBEZIUM",
    "DEBEZIUM_EXCLUDES",
    "ENV_PREFIX",
    "MIRRORED_TABLES",
    "MirroredColumn",
    "MirroredTable",
    "ORDER_STATUS_BY_EVENT",
    "PASSWORD_PLACEHOLDER",
    "PostgresMissingError",
    "SQL_DIR",
    "ShopDatabase",
    "admin_connection",
    "connect_jars",
    "connect_service",
    "connector_properties",
    "connector_running",
    "connector_state",
    "debezium_plugin_path",
    "down",
    "ensure_cdc_topics",
    "init_cluster",
    "kill_connect",
    "load_cdc_settings",
    "mirrored_tables",
    "password",
    "pg_data_dir",
    "postgres_bin_dir",
    "postgres_service",
    "provision",
    "provisioning_statements",
    "secrets_dir",
    "start_connect",
    "start_postgres",
    "status",
    "stop_connect",
    "stop_postgres",
    "up",
    "worker_properties",
]

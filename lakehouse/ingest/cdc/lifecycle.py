"""``trivas cdc up | down | status``: the whole CDC path started, stopped and inspected."""

from __future__ import annotations

from dataclasses import dataclass

from lakehouse.config import Settings
from lakehouse.ingest.cdc.connect import (
    connect_service,
    connector_state,
    start_connect,
    stop_connect,
)
from lakehouse.ingest.cdc.postgres import postgres_service, start_postgres, stop_postgres
from lakehouse.ingest.cdc.provisioning import provision
from lakehouse.ingest.cdc.settings import CdcSettings
from lakehouse.ingest.cdc.shop_database import ShopDatabase
from lakehouse.runtime.processes import port_open


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
    cdc = cdc or settings.cdc
    if cdc.pg_managed:
        start_postgres(settings, cdc)
        provision(settings, cdc)
    start_connect(settings, cdc)
    return status(settings, cdc)


def down(settings: Settings, cdc: CdcSettings | None = None) -> bool:
    """Stop Connect (offsets flushed), then the private database; False if nothing ran."""
    cdc = cdc or settings.cdc
    stopped = stop_connect(settings, cdc)
    if cdc.pg_managed:
        stopped = stop_postgres(settings, cdc) or stopped
    return stopped


def status(settings: Settings, cdc: CdcSettings | None = None) -> CdcStatus:
    """Processes, connector state and replication-slot lag."""
    cdc = cdc or settings.cdc
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

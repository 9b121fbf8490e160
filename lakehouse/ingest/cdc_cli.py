"""``trivas cdc up|down|status|sql``: the shop database's change-data-capture path.

The lead's CLI mounts ``app`` as ``trivas cdc``.
"""

from __future__ import annotations

import json

import typer
from rich.console import Console

from lakehouse.config import load_settings

app = typer.Typer(
    help="Change-data-capture: shop PostgreSQL → Debezium on Kafka Connect → Kafka.",
    no_args_is_help=True,
)
console = Console()
ENV_OPTION = typer.Option(None, help="environment (conf/<env>.yaml)")


@app.command("up")
def cdc_up(env: str = ENV_OPTION) -> None:
    """Start the broker if needed, the shop database (managed mode) and the Connect worker."""
    from lakehouse.catalog import catalog
    from lakehouse.ingest import cdc
    from lakehouse.runtime import kafka

    settings = load_settings(env)
    kafka.up(settings, catalog())
    status = cdc.up(settings)
    console.print(
        f"cdc: {status.postgres} → connector {status.connector} (worker pid {status.connect_pid})"
        f" → topics {', '.join(status.topics)}"
    )


@app.command("down")
def cdc_down(env: str = ENV_OPTION) -> None:
    """Stop the Connect worker (offsets flushed), then the private shop database."""
    from lakehouse.ingest import cdc

    stopped = cdc.down(load_settings(env))
    console.print("cdc stopped" if stopped else "cdc was not running")


@app.command("status")
def cdc_status(env: str = ENV_OPTION) -> None:
    """Processes, connector state and replication-slot lag (exit 1 unless RUNNING)."""
    from lakehouse.ingest import cdc

    status = cdc.status(load_settings(env))
    console.print_json(json.dumps(status.__dict__, default=list))
    if status.connector != "RUNNING":
        raise typer.Exit(1)


@app.command("sql")
def cdc_sql() -> None:
    """Print what a real shop's DBA runs so that Debezium can capture its tables."""
    from lakehouse.ingest import cdc

    config = cdc.load_cdc_settings()
    print("-- postgresql.conf: wal_level = logical (restart needed); run in the shop database")
    for statement in cdc.provisioning_statements(config):
        print(statement.replace(cdc.PASSWORD_PLACEHOLDER, "'<password from your vault>'") + ";")

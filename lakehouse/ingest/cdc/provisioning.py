"""The SQL a shop database needs for CDC: replication role, grants, replica identity, publication."""

from __future__ import annotations

import re
from pathlib import Path

from lakehouse.config import Settings
from lakehouse.ingest.cdc.postgres import admin_connection
from lakehouse.ingest.cdc.settings import CdcSettings, password

SQL_DIR = Path(__file__).parent / "sql"

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

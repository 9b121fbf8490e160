"""The playground shop's write API on its database (orders and stock), and the hook that writes catalog events as the shop would."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

from lakehouse.config import Settings
from lakehouse.ingest.cdc.mirrors import MIRRORED_TABLES
from lakehouse.ingest.cdc.settings import CdcSettings, password


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

        cdc = cdc or settings.cdc
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

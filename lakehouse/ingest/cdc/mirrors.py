"""The captured tables and their silver mirrors, declared once (SQL side, Spark job, tests)."""

from __future__ import annotations

from dataclasses import dataclass

from lakehouse.catalog import Catalog
from lakehouse.ingest.cdc.settings import CdcSettings


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

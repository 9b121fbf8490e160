"""Builders of ``gold.kpi`` rows as the hot path writes them (for the app's and the rollup's tests)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pyarrow as pa
from deltalake import write_deltalake

from lakehouse.config import Settings
from lakehouse.tables import table_location

# The schema gold.kpi has when Spark writes it.
KPI_ARROW_SCHEMA = pa.schema(
    [
        ("kpi", pa.string()), ("grain", pa.string()), ("window_start", pa.timestamp("us", "UTC")),
        ("window_end", pa.timestamp("us", "UTC")), ("dimension", pa.string()), ("value", pa.float64()),
        ("numerator", pa.float64()), ("denominator", pa.float64()), ("events", pa.int64()), ("unit", pa.string()),
        ("watermark", pa.timestamp("us", "UTC")), ("computed_at", pa.timestamp("us", "UTC")),
        ("source_versions", pa.map_(pa.string(), pa.int64())), ("is_final", pa.bool_()),
    ]
)  # fmt: skip


def kpi_row(kpi: str, start: datetime, value: float | None, *, unit: str = "orders", dimension: str = "all",
            numerator: float | None = None, denominator: float | None = None, computed_at: datetime | None = None,
            is_final: bool = True, version: int = 12) -> dict:  # fmt: skip
    """One ``gold.kpi`` row of a 1-minute window (keyword overrides for every column that matters)."""
    return {
        "kpi": kpi, "grain": "1m", "window_start": start, "window_end": start + timedelta(minutes=1),
        "dimension": dimension, "value": value, "numerator": numerator, "denominator": denominator, "events": 5,
        "unit": unit, "watermark": start + timedelta(minutes=1), "computed_at": computed_at or start + timedelta(minutes=1),
        "source_versions": [("silver.events", version)], "is_final": is_final,
    }  # fmt: skip


def write_kpi_rows(settings: Settings, rows: list[dict] | pd.DataFrame, mode: str = "append") -> None:
    """Append rows to ``gold.kpi`` with delta-rs, in the schema Spark gives the table."""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    write_deltalake(table_location(settings, "gold.kpi"), pa.Table.from_pandas(frame, schema=KPI_ARROW_SCHEMA, preserve_index=False), mode=mode)


def arrow_of(schema) -> pa.Schema:  # noqa: ANN001 - a Spark StructType
    """The Arrow schema Spark's Delta writer gives a declared table (maps included)."""
    from pyspark.sql import types as T

    from lakehouse.alerts.store import _ARROW

    def arrow_type(data_type: T.DataType) -> pa.DataType:
        if isinstance(data_type, T.MapType):
            return pa.map_(arrow_type(data_type.keyType), arrow_type(data_type.valueType))
        return _ARROW[type(data_type)]

    return pa.schema([pa.field(f.name, arrow_type(f.dataType), f.nullable) for f in schema.fields])


def write_table(settings: Settings, logical: str, schema, rows: list[dict]) -> None:  # noqa: ANN001
    """Append ``rows`` to a declared table with delta-rs, in the schema Spark gives it."""
    write_deltalake(table_location(settings, logical), pa.Table.from_pylist(rows, schema=arrow_of(schema)), mode="append")

"""The app's only data access: reads Delta tables with delta-rs (no JVM), never writes.

Page files hold layout; the queries and the tile arithmetic live here, as plain functions
that tests call without Streamlit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from lakehouse.config import Settings
from lakehouse.contracts import TOTAL, KpiContract, KpiContracts
from lakehouse.registry import KPI, KPI_CURRENT_VIEW, SILVER_EVENTS
from lakehouse.tables import table_location

TILE_ORDER = (
    "orders", "revenue", "average_order_value", "conversion_rate", "cart_abandonment_rate",
    "payment_failure_rate", "refund_rate", "ad_spend", "cost_per_click", "roas", "stockouts",
    "ticket_volume", "sessions", "revenue_5m",
)  # fmt: skip


@dataclass(frozen=True)
class Tile:
    """What one KPI tile shows."""

    kpi: str
    label: str
    value: float | None
    unit: str
    window_start: datetime | None
    window_end: datetime | None
    is_final: bool
    previous: float | None
    computed_at: datetime | None
    watermark: datetime | None
    lag_seconds: float | None
    freshness_sla_seconds: float
    within_sla: bool
    lineage: str
    definition: str


def _utc(value: object) -> datetime | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value):
        return None
    moment = pd.Timestamp(value).to_pydatetime()
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def read_kpis(settings: Settings, since: datetime) -> pd.DataFrame:
    """The current total-dimension ``gold.kpi`` rows (``gold.kpi_current``) of windows
    starting at or after ``since``: the window filter runs first, then latest per key."""
    location = table_location(settings, KPI)
    try:
        table = DeltaTable(location)
    except Exception:  # noqa: BLE001 - no table yet: the pipeline has not started
        return pd.DataFrame()
    dataset = table.to_pyarrow_dataset()
    # Delta "timestamp" columns are UTC instants: compare with a UTC scalar.
    since_utc = pa.scalar(since.astimezone(UTC), type=pa.timestamp("us", "UTC"))
    condition = (pc.field("dimension") == TOTAL) & (pc.field("window_start") >= since_utc)
    return KPI_CURRENT_VIEW.arrow(dataset.to_table(filter=condition)).to_pandas()


def format_value(value: float | None, unit: str) -> str:
    """A KPI value as a person reads it."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if unit == "ratio":
        return f"{value:.1%}"
    if unit == "EUR":
        return f"€{value:,.2f}"
    return f"{value:,.0f}"


def silver_sources(contract: KpiContract) -> set[str]:
    """The silver tables a KPI is computed from (through its inputs for derived KPIs)."""
    from lakehouse.catalog import catalog
    from lakehouse.contracts import contracts

    measures = [contract] if contract.kind == "measure" else [contracts()[n] for n in contract.inputs]
    return {f"silver.{catalog().domains[m.source].table}" for m in measures if m.source}


def lineage_text(row: pd.Series | None, contract: KpiContract) -> str:
    """``gold.kpi ← silver.orders (read up to silver.events@v12)`` from the row's recorded
    source versions (the silver domain tables are views of ``silver.events``)."""
    if contract.kind == "measure":
        from lakehouse.catalog import catalog

        sources = [f"silver.{catalog().domains[contract.source].table}"]
    else:
        sources = [f"gold.kpi[{name}]" for name in contract.inputs]
    versions = row["source_versions"] if row is not None else None
    if versions:
        pairs = dict(versions) if not isinstance(versions, dict) else versions
        own = silver_sources(contract) | {SILVER_EVENTS}
        recorded = ", ".join(f"{t}@v{v}" for t, v in sorted(pairs.items()) if t in own)
        return f"gold.kpi ← {', '.join(sources)} (read up to {recorded})"
    return f"gold.kpi ← {', '.join(sources)}"


def kpi_tiles(frame: pd.DataFrame, contracts: KpiContracts, now: datetime) -> list[Tile]:
    """One tile per KPI: the latest window's value (open windows are partial), the window
    before it, and how fresh the number is against the contract's SLA."""
    tiles = []
    for name in [n for n in TILE_ORDER if n in contracts.kpis]:
        contract = contracts[name]
        rows = frame[frame["kpi"] == name].sort_values("window_start") if len(frame) else frame
        latest = rows.iloc[-1] if len(rows) else None
        previous = rows.iloc[-2] if len(rows) > 1 else None
        computed_at = _utc(latest["computed_at"]) if latest is not None else None
        lag = (now - computed_at).total_seconds() if computed_at else None
        sla = contract.freshness_sla.total_seconds()
        tiles.append(
            Tile(
                kpi=name,
                label=name.replace("_", " "),
                value=None if latest is None or pd.isna(latest["value"]) else float(latest["value"]),
                unit=contract.unit,
                window_start=_utc(latest["window_start"]) if latest is not None else None,
                window_end=_utc(latest["window_end"]) if latest is not None else None,
                is_final=bool(latest["is_final"]) if latest is not None else False,
                previous=None if previous is None or pd.isna(previous["value"]) else float(previous["value"]),
                computed_at=computed_at,
                watermark=_utc(latest["watermark"]) if latest is not None else None,
                lag_seconds=lag,
                freshness_sla_seconds=sla,
                within_sla=lag is not None and lag <= sla,
                lineage=lineage_text(latest, contract),
                definition=contract.description,
            )
        )
    return tiles


def kpi_series(frame: pd.DataFrame, kpi: str) -> pd.DataFrame:
    """The 1-minute (or sliding) series of one KPI, oldest first, for charts."""
    if not len(frame):
        return frame
    rows = frame[frame["kpi"] == kpi].sort_values("window_start")
    return rows[["window_start", "value", "is_final", "computed_at", "watermark"]]


def recent(now: datetime, minutes: int) -> datetime:
    return now - timedelta(minutes=minutes)


# -- actions (``ops.action_requests``, ``ops.audit_log``; commands go through lakehouse.actions.approvals)


def action_overview(settings: Settings) -> pd.DataFrame:
    """Every proposed action with its state, newest first (empty before the first proposal)."""
    from lakehouse.actions.approvals import overview

    return overview(settings)


def action_trail(settings: Settings, request_id: str) -> pd.DataFrame:
    """The audit trail of one action, oldest first."""
    from lakehouse.actions.approvals import trail_of

    return trail_of(settings, request_id)


def audit_trail(settings: Settings, limit: int = 200) -> pd.DataFrame:
    """The newest rows of ``ops.audit_log``."""
    from lakehouse.actions.store import audit_log

    frame = audit_log(settings).read()
    return frame.sort_values("recorded_at", ascending=False, kind="stable").head(limit)


def evidence_series(evidence: dict) -> pd.DataFrame:
    """The numeric facts of a proposal's evidence, as ``fact, value`` rows for its chart."""
    rows = [(k, float(v)) for k, v in sorted(evidence.items()) if isinstance(v, int | float) and not isinstance(v, bool)]
    return pd.DataFrame(rows, columns=["fact", "value"])

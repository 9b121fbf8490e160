"""The app's only data access: reads Delta tables with delta-rs (no JVM), never writes.

Page files hold layout; the queries and the tile arithmetic live here, as plain functions
that tests call without Streamlit, and behind ``st.cache_data`` in :class:`cached` for the
pages. Each read returns its rows with the exact query behind them and the state of the
tables it read (version, last commit, writer): what every chart's query popover, freshness
badge and lineage overlay show. Ranges longer than :data:`MINUTE_RANGE_LIMIT` read the hourly
and daily ``gold.kpi_rollup`` (:mod:`lakehouse.rollup`), never the minute rows.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
from deltalake import DeltaTable

from lakehouse.config import Settings
from lakehouse.contracts import TOTAL, KpiContract, KpiContracts
from lakehouse.registry import (
    BRONZE_EVENTS,
    FRESHNESS,
    KPI,
    KPI_CURRENT,
    KPI_CURRENT_VIEW,
    KPI_SCHEMA,
    LATE,
    QUARANTINE,
    SESSIONS,
    SILVER_EVENTS,
)
from lakehouse.tables import table_path

T = TypeVar("T")

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
        run = backfill_run(pairs)
        restated = f", restated by backfill {run}" if run else ""
        return f"gold.kpi ← {', '.join(sources)} (read up to {recorded}{restated})"
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


# -- the multipage app's reads ---------------------------------------------------------------
# Every read returns a :class:`Read`: the rows, the exact query behind them (shown in each
# chart's "query" popover) and the state of the tables it read (version, last commit, writer:
# each chart's freshness badge and lineage overlay). Nothing here writes.

DAY = timedelta(days=1)
CACHE_SECONDS = 2.0  # how long a read (and a table handle) is reused
WEEK = timedelta(days=7)
MINUTE_RANGE_LIMIT = timedelta(days=2)  # longer ranges read gold.kpi_rollup, never minute rows
KPI_CURRENT_VIEW_COLUMNS = KPI_SCHEMA.fieldNames()


@dataclass(frozen=True)
class TableState:
    """A table as a reader saw it: version, last commit and the job that writes it."""

    logical: str
    version: int | None
    committed_at: datetime | None
    writer: str | None

    @property
    def label(self) -> str:
        return f"{self.logical}@v{self.version}" if self.version is not None else f"{self.logical} (not created yet)"


@dataclass(frozen=True)
class Read:
    """Rows, the query that produced them and the tables behind them."""

    frame: pd.DataFrame
    query: str
    tables: tuple[TableState, ...]


@dataclass(frozen=True)
class Freshness:
    """How fresh the data behind a chart is, against an SLA."""

    last_write: datetime | None
    watermark: datetime | None
    age_seconds: float | None
    sla_seconds: float

    @property
    def status(self) -> str:
        if self.age_seconds is None:
            return "no data"
        return "fresh" if self.age_seconds <= self.sla_seconds else "stale"


def writer_of(logical: str) -> str | None:
    from lakehouse.lineage import graph

    node = graph().get(logical)
    return node.writer if node else None


@dataclass
class _Handle:
    table: DeltaTable
    checked: float  # time.monotonic() of the last update
    version: int
    committed_at: datetime | None
    dataset: pads.Dataset


class TableHandles:
    """One open delta-rs handle per table location in the app process, brought up to date
    (``update_incremental``: only the commits since) at most every ``max_age`` seconds, with
    the pyarrow dataset of its version built once. Every read of a render (and of every
    session within ``max_age``) shares one log replay, one ``history`` call and one dataset
    instead of opening the table anew. Handles are used under a per-location lock."""

    def __init__(self, max_age: float) -> None:
        self.max_age = max_age
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._handles: dict[str, _Handle] = {}
        self.opened = 0  # full log replays (a DeltaTable opened)
        self.updated = 0  # incremental updates

    def clear(self) -> None:
        with self._lock:
            self._handles.clear()

    def holds(self, location: str) -> bool:
        """True once the table at ``location`` has been opened (it exists: no need to look)."""
        return location in self._handles

    def use(self, location: str, use: Callable[[_Handle], T]) -> T:
        """``use(handle)`` on the table's up-to-date handle, under its lock."""
        with self._lock:
            lock = self._locks.setdefault(location, threading.Lock())
        with lock:
            handle = self._handles.get(location)
            now = time.monotonic()
            if handle is None:
                handle = self._open(DeltaTable(location), now)
                self.opened += 1
            elif now - handle.checked >= self.max_age:
                try:
                    handle.table.update_incremental()
                except Exception:  # noqa: BLE001 - the table was replaced under its path: open it again
                    handle.table = DeltaTable(location)
                self.updated += 1
                if handle.table.version() != handle.version:
                    handle = self._open(handle.table, now)
                handle.checked = now
            self._handles[location] = handle
            return use(handle)

    @staticmethod
    def _open(table: DeltaTable, now: float) -> _Handle:
        last = table.history(1)
        committed = datetime.fromtimestamp(last[0]["timestamp"] / 1000, UTC) if last else None
        return _Handle(table, now, table.version(), committed, table.to_pyarrow_dataset())


def table_state(settings: Settings, logical: str) -> tuple[TableState, pads.Dataset | None]:
    """The table's state and the pyarrow dataset of that version (None while the table does
    not exist), from the process's shared handle (:data:`HANDLES`)."""
    state, dataset = table_use(settings, logical, lambda handle: handle.dataset)
    return state, dataset


def table_use(settings: Settings, logical: str, use: Callable[[_Handle], T]) -> tuple[TableState, T | None]:
    """The table's state and ``use(handle)`` of its shared up-to-date handle (None, without
    calling ``use``, while the table does not exist)."""
    from lakehouse.registry import view_of
    from lakehouse.tables import has_commits

    view = view_of(logical)
    location = table_path(settings, view.base if view else logical)
    writer = writer_of(view.base if view else logical)
    if not HANDLES.holds(location) and not has_commits(location):  # a listing per read, else (an object store's too)
        return TableState(logical, None, None, writer_of(logical)), None
    try:
        version, committed, out = HANDLES.use(str(location), lambda h: (h.version, h.committed_at, use(h)))
    except Exception:  # noqa: BLE001 - not created yet
        return TableState(logical, None, None, writer_of(logical)), None
    return TableState(logical, version, committed, writer), out


HANDLES = TableHandles(CACHE_SECONDS)


def _ts(moment: datetime) -> pa.Scalar:
    return pa.scalar(moment.astimezone(UTC), type=pa.timestamp("us", "UTC"))


def _sql_time(moment: datetime) -> str:
    return f"TIMESTAMP '{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S}'"


def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})


def read_range(settings: Settings, logical: str, time_column: str, since: datetime,
               until: datetime | None = None, columns: list[str] | None = None) -> Read:  # fmt: skip
    """Rows of a table whose ``time_column`` is in [since, until): one filtered delta-rs scan."""
    from lakehouse.registry import table_spec

    state, table = table_state(settings, logical)
    condition = pc.field(time_column) >= _ts(since)
    where = f"{time_column} >= {_sql_time(since)}"
    if until is not None:
        condition = condition & (pc.field(time_column) < _ts(until))
        where += f" AND {time_column} < {_sql_time(until)}"
    query = f"SELECT {', '.join(columns) if columns else '*'} FROM {logical} WHERE {where}"
    if table is None:
        try:
            names = table_spec(logical).schema.fieldNames()
        except KeyError:
            names = columns or []
        return Read(_empty(columns or names), query, (state,))
    frame = table.to_table(filter=condition, columns=columns).to_pandas()
    return Read(frame, query, (state,))


def minutes_query(since: datetime, until: datetime | None, kpis: list[str] | None, dimension: str | None) -> str:
    """The SQL over ``gold.kpi_current`` that :func:`kpi_minutes` answers."""
    where = [f"window_start >= {_sql_time(since)}"]
    if until is not None:
        where.append(f"window_start < {_sql_time(until)}")
    if kpis is not None:
        where.append("kpi IN (" + ", ".join(f"'{k}'" for k in kpis) + ")")
    if dimension is not None:
        where.append(f"dimension LIKE '{dimension}%'" if dimension.endswith("=") else f"dimension = '{dimension}'")
    return f"SELECT * FROM {KPI_CURRENT} WHERE " + " AND ".join(where)


def select(frame: pd.DataFrame, kpis: list[str] | None, dimension: str | None) -> pd.DataFrame:
    """The rows of some KPIs (None: all) and one dimension (a value, every value of a
    dimension as ``name=``, or None: all) of KPI rows."""
    if not len(frame):
        return frame
    keep = np.ones(len(frame), bool)
    if kpis is not None:
        keep &= frame["kpi"].isin(kpis).to_numpy()
    if dimension is not None:
        column = frame["dimension"].astype(str)
        keep &= (column.str.startswith(dimension) if dimension.endswith("=") else column == dimension).to_numpy()
    return frame[keep]


def kpi_minutes(settings: Settings, since: datetime, until: datetime | None = None,
                kpis: list[str] | None = None, dimension: str | None = TOTAL) -> tuple[Read, pd.DataFrame]:  # fmt: skip
    """Current 1-minute ``gold.kpi`` rows in [since, until) (``gold.kpi_current``) and the raw
    update log they come from (for restatements). ``dimension``: a value, ``name=`` for every
    value of a dimension, or None for all."""
    state, table = table_state(settings, KPI)
    query = minutes_query(since, until, kpis, dimension)
    if table is None:
        empty = _empty(KPI_CURRENT_VIEW_COLUMNS)
        return Read(empty, query, (state,)), empty
    condition = pc.field("window_start") >= _ts(since)
    if until is not None:
        condition &= pc.field("window_start") < _ts(until)
    if kpis is not None:
        condition &= pc.field("kpi").isin(kpis)
    if dimension is not None and not dimension.endswith("="):
        condition &= pc.field("dimension") == dimension
    log = table.to_table(filter=condition)
    if dimension is not None and dimension.endswith("="):
        log = log.filter(pc.starts_with(log["dimension"], dimension))
    current = KPI_CURRENT_VIEW.arrow(log).to_pandas()
    return Read(current, query, (state,)), log.to_pandas()


def kpi_rollup(settings: Settings, grain: str, since: datetime, until: datetime,
               kpis: list[str] | None = None, dimension: str | None = TOTAL) -> Read:  # fmt: skip
    """Hourly or daily rows of ``gold.kpi_rollup`` in [since, until)."""
    from lakehouse.registry import KPI_ROLLUP
    from lakehouse.rollup import read_rollup

    state, table = table_state(settings, KPI_ROLLUP)
    frame = read_rollup(settings, grain, since, until, kpis, dataset=table) if table is not None else read_rollup(settings, grain, since, until, kpis)
    where = [f"grain = '{grain}'", f"window_start >= {_sql_time(since)}", f"window_start < {_sql_time(until)}"]
    if kpis is not None:
        where.append("kpi IN (" + ", ".join(f"'{k}'" for k in kpis) + ")")
    if dimension is not None:
        if dimension.endswith("="):
            frame = frame[frame["dimension"].str.startswith(dimension)] if len(frame) else frame
            where.append(f"dimension LIKE '{dimension}%'")
        else:
            frame = frame[frame["dimension"] == dimension] if len(frame) else frame
            where.append(f"dimension = '{dimension}'")
    return Read(frame, f"SELECT * FROM {KPI_ROLLUP} WHERE " + " AND ".join(where), (state,))


def kpi_over_range(settings: Settings, contracts: KpiContracts, kpis: list[str], grain: str, since: datetime,
                   until: datetime, dimension: str | None = TOTAL) -> Read:  # fmt: skip
    """KPI rows at ``grain`` (1m, 5m, 1h, 1d) over [since, until): minute rows for short ranges
    and fine grains, ``gold.kpi_rollup`` for hours and days — plus the minutes after the
    rollup's last run (the current hour), so a long chart still ends now."""
    from lakehouse.rollup import aggregate

    if grain in ("1m", "5m"):
        if until - since > MINUTE_RANGE_LIMIT:
            raise ValueError(f"{grain} rows over more than {MINUTE_RANGE_LIMIT}: use 1h or 1d (gold.kpi_rollup)")
        minutes, _ = cached.kpi_minutes(settings, since, until, kpis, dimension)  # the explorer's restated windows share it
        frame = minutes.frame if grain == "1m" else aggregate(minutes.frame, contracts, grain)
        return Read(frame, minutes.query + (f"\n-- then summed per {grain} (ratios: sum(numerator) / sum(denominator))" if grain == "5m" else ""), minutes.tables)
    rolled = kpi_rollup(settings, grain, since, until, kpis, dimension)
    covered = rolled_through(rolled.frame, since)
    # A range ending inside an hour (a day) counts only that bucket's minutes before its end
    # (last week's "same period" ends at this minute a week ago, not at the end of its hour).
    boundary = grain_floor(until, grain)
    if covered >= until and boundary == until:
        return rolled
    # The rollup job runs every minute; what it has not seen yet comes from the minute rows.
    tail_start = max(min(grain_floor(covered, grain), boundary), since)
    # One read of every KPI's minutes since the tail's start, shared by every chart of a render.
    every, _ = cached.kpi_minutes(settings, tail_start, until, None, None)
    minutes = Read(select(every.frame, kpis, dimension), minutes_query(tail_start, until, kpis, dimension), every.tables)
    tail = aggregate(minutes.frame, contracts, grain)
    head = rolled.frame[pd.to_datetime(rolled.frame["window_start"], utc=True) < tail_start] if len(rolled.frame) else rolled.frame
    frame = pd.concat([f for f in (head, tail) if len(f)], ignore_index=True) if len(head) or len(tail) else tail
    query = f"{rolled.query} AND window_start < {_sql_time(tail_start)}\nUNION ALL -- the minutes the rollup has not taken in yet\n{minutes.query}  -- summed per {grain}"
    return Read(frame, query, rolled.tables + minutes.tables)


def grain_floor(moment: datetime, grain: str) -> datetime:
    """The start of the hour (``1h``) or UTC day (``1d``) ``moment`` falls in."""
    hour = moment.replace(minute=0, second=0, microsecond=0)
    return hour if grain == "1h" else hour.replace(hour=0)


def rolled_through(rollup: pd.DataFrame, since: datetime) -> datetime:
    """Where the rollup's complete rows end: the newest ``computed_at`` it took in."""
    if not len(rollup):
        return since
    newest = _utc(pd.to_datetime(rollup["computed_at"], utc=True).max())
    return max(newest or since, since)


def restated_windows(log: pd.DataFrame) -> pd.DataFrame:
    """Windows whose value changed after it was first shown as final (a late event), and
    windows whose current row a replay or backfill wrote (``backfill``: its run id, from the
    row's lineage): key, the first final value shown and the current one."""
    columns = ["kpi", "grain", "window_start", "dimension", "first_value", "value", "backfill"]
    if not len(log):
        return pd.DataFrame(columns=columns)
    final = log[log["is_final"]].sort_values("computed_at", kind="stable")
    key = ["kpi", "grain", "window_start", "dimension"]
    first = final.drop_duplicates(key, keep="first").set_index(key)["value"]
    latest = log.sort_values("computed_at", kind="stable").drop_duplicates(key, keep="last").set_index(key)
    both = pd.DataFrame({"value": latest["value"], "backfill": latest["source_versions"].map(backfill_run)})
    both = both.join(first.rename("first_value"), how="left")
    changed = both.index.isin(first.index) & ~np.isclose(both["first_value"].astype(float), both["value"].astype(float), equal_nan=True)
    return both[changed | both["backfill"].notna()].reset_index()[columns]


def backfill_run(source_versions: object) -> str | None:
    """The run id of the replay or backfill that wrote a ``gold.kpi`` row (lineage key
    ``backfill:<run id>``, spark_jobs.backfill), or None for the live path's rows."""
    pairs = source_versions.items() if isinstance(source_versions, dict) else (source_versions if source_versions is not None else ())
    return next((str(k).removeprefix("backfill:") for k, _ in pairs if str(k).startswith("backfill:")), None)


def newest_time(frame: pd.DataFrame, column: str) -> datetime | None:
    """The newest time of ``column`` (UTC), None for no rows."""
    return _utc(pd.to_datetime(frame[column], utc=True).max()) if len(frame) else None


def freshness_of(frame: pd.DataFrame, sla_seconds: float, now: datetime) -> Freshness:
    """Freshness of KPI rows: the newest write (``computed_at``) and watermark, against an SLA."""
    if not len(frame) or "computed_at" not in frame:
        return Freshness(None, None, None, sla_seconds)
    last = _utc(pd.to_datetime(frame["computed_at"], utc=True).max())
    watermark = _utc(pd.to_datetime(frame["watermark"], utc=True).max()) if "watermark" in frame else None
    return Freshness(last, watermark, (now - last).total_seconds() if last else None, sla_seconds)


def table_freshness(state: TableState, sla_seconds: float, now: datetime, watermark: datetime | None = None) -> Freshness:
    """Freshness of a table by its last commit."""
    last = state.committed_at
    return Freshness(last, watermark, (now - last).total_seconds() if last else None, sla_seconds)


def period_comparison(settings: Settings, contracts: KpiContracts, kpis: list[str], now: datetime) -> tuple[pd.DataFrame, Read]:
    """Today so far (UTC) vs the same period a week ago, per KPI: hours from the rollup, the
    current hour from minute rows (:func:`kpi_over_range`)."""
    from lakehouse.rollup import period_value

    midnight, until = now.replace(hour=0, minute=0, second=0, microsecond=0), end_of_minute(now)
    today = kpi_over_range(settings, contracts, kpis, "1h", midnight, until)
    last_week = kpi_over_range(settings, contracts, kpis, "1h", midnight - WEEK, until - WEEK)
    rows = [
        {"kpi": k, "today": period_value(today.frame, k, contracts), "last_week": period_value(last_week.frame, k, contracts)}
        for k in kpis
    ]
    query = f"-- today so far\n{today.query}\n-- the same period last week\n{last_week.query}"
    return pd.DataFrame(rows), Read(today.frame, query, today.tables)


def end_of_minute(now: datetime) -> datetime:
    """Where "so far" ends: the current minute's window counts, even while the refresh clock
    (``now`` floored to a few seconds) sits on its very start."""
    return now.replace(second=0, microsecond=0) + timedelta(minutes=1)


def breakdown(settings: Settings, contracts: KpiContracts, kpi: str, dimension: str, now: datetime) -> Read:
    """Today's value of a KPI per value of one dimension (``country``, ``channel``, …)."""
    from lakehouse.rollup import period_value

    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    rows = kpi_over_range(settings, contracts, [kpi], "1h", midnight, end_of_minute(now), dimension=f"{dimension}=")
    values = [
        {dimension: d.split("=", 1)[1], "value": period_value(part, kpi, contracts)}
        for d, part in rows.frame.groupby("dimension")
    ] if len(rows.frame) else []  # fmt: skip
    frame = pd.DataFrame(values, columns=[dimension, "value"]).sort_values("value", ascending=False)
    return Read(frame, rows.query + f"\n-- summed per {dimension}", rows.tables)


def session_funnel(settings: Settings, since: datetime) -> Read:
    """Sessions that reached each step of the funnel (closed sessions of ``gold.sessions``)."""
    columns = ["page_views", "product_views", "add_to_carts", "checkouts"]
    read = read_range(settings, SESSIONS, "session_start", since, columns=columns)
    frame = read.frame
    steps = pd.DataFrame(
        {
            "step": ["sessions", "viewed a product", "added to cart", "started checkout"],
            "sessions": [len(frame)] + [int((frame[c].astype(float) > 0).sum()) if len(frame) else 0 for c in columns[1:]],
        }
    )
    query = (
        f"SELECT count(*) AS sessions, count_if(product_views > 0), count_if(add_to_carts > 0), count_if(checkouts > 0) "
        f"FROM {SESSIONS} WHERE session_start >= {_sql_time(since)}"
    )
    return Read(steps, query, read.tables)


def alerts_since(settings: Settings, since: datetime) -> Read:
    """``gold.alerts`` rows updated since ``since`` (firing ones whatever their age)."""
    from lakehouse.alerts.lifecycle import ALERTS_TABLE, FIRING

    state, table = table_state(settings, ALERTS_TABLE)
    query = f"SELECT * FROM {ALERTS_TABLE} WHERE updated_at >= {_sql_time(since)} OR state = '{FIRING}' ORDER BY updated_at DESC"
    if table is None:
        from lakehouse.alerts.lifecycle import ALERTS_SCHEMA

        return Read(_empty(ALERTS_SCHEMA.fieldNames()), query, (state,))
    frame = table.to_table(filter=(pc.field("updated_at") >= _ts(since)) | (pc.field("state") == FIRING)).to_pandas()
    return Read(frame.sort_values("updated_at", ascending=False), query, (state,))


def quarantine_since(settings: Settings, since: datetime) -> Read:
    return read_range(settings, QUARANTINE, "quarantined_at", since,
                      columns=["reason", "event_type", "source", "contract_version", "raw_value", "kafka_topic", "quarantined_at"])  # fmt: skip


def late_since(settings: Settings, since: datetime) -> Read:
    return read_range(settings, LATE, "recorded_at", since, columns=["event_type", "domain", "lateness_seconds", "recorded_at"])


def validations_since(settings: Settings, since: datetime) -> Read:
    """``ops.validations`` rows of the runs since ``since`` (the quality schedule's results)."""
    from lakehouse.validations import VALIDATIONS

    return read_range(settings, VALIDATIONS, "run_at", since)


def latest_validations(frame: pd.DataFrame) -> pd.DataFrame:
    """The outcomes of each table's newest run, failures first."""
    if frame.empty:
        return frame
    newest = frame.groupby("table")["run_at"].transform("max")
    latest = frame[frame["run_at"] == newest]
    return latest.sort_values(["success", "table", "expectation"], kind="stable").reset_index(drop=True)


def validation_summary(latest: pd.DataFrame) -> pd.DataFrame:
    """Per table: its newest run, the window it validated, rows, expectations passed/failed."""
    columns = ["table", "run_at", "window_start", "window_end", "rows", "expectations", "failed"]
    if latest.empty:
        return pd.DataFrame(columns=columns)
    grouped = latest.groupby("table")
    summary = grouped.agg(run_at=("run_at", "max"), window_start=("window_start", "max"), window_end=("window_end", "max"),
                          rows=("rows", "max"), expectations=("expectation", "size"))  # fmt: skip
    summary["failed"] = grouped["success"].apply(lambda s: int((~s.astype(bool)).sum()))
    return summary.reset_index()[columns]


def data_docs_index(settings: Settings) -> Path | None:
    """The Data Docs' ``index.html`` (built by every validation run), None before the first."""
    from lakehouse.validations import data_docs_dir

    index = data_docs_dir(settings) / "index.html"
    return index if index.exists() else None


def counts_over_time(frame: pd.DataFrame, time_column: str, by: list[str], every: str = "5min") -> pd.DataFrame:
    """Row counts per ``every`` bucket and ``by`` columns (quarantine by reason, late by type)."""
    if not len(frame):
        return pd.DataFrame(columns=["bucket", *by, "rows"])
    buckets = pd.to_datetime(frame[time_column], utc=True).dt.floor(every).rename("bucket")
    return frame.groupby([buckets, *[frame[c].fillna("?") for c in by]]).size().rename("rows").reset_index()


def scrubbed_samples(frame: pd.DataFrame, per_reason: int = 3) -> pd.DataFrame:
    """A few quarantined records per reason with every PII field protected by its catalog
    class (hashes under a key born and dying with this process: not linkable to anything),
    and PII patterns masked in free text."""
    import json
    import os

    from lakehouse.catalog import catalog
    from lakehouse.ingest.scrub import RecordScrubber, mask_any

    if not len(frame):
        return pd.DataFrame(columns=["reason", "event_type", "record"])
    scrubber = RecordScrubber(catalog(), os.urandom(32), "app")
    samples = frame.sort_values("quarantined_at", ascending=False).groupby("reason").head(per_reason)
    records = []
    for row in samples.itertuples(index=False):
        try:
            record = scrubber.scrub_record(json.loads(row.raw_value))
        except (TypeError, ValueError):
            record = mask_any(str(row.raw_value))[:500]
        records.append({"reason": row.reason, "event_type": row.event_type, "record": json.dumps(record)[:500]})
    return pd.DataFrame(records)


def contract_versions(frame: pd.DataFrame) -> pd.DataFrame:
    """The event-contract versions quarantined records were checked against, and the
    catalog's current version of each event type."""
    from lakehouse.catalog import catalog

    current = pd.DataFrame([{"event_type": t, "catalog_version": e.version} for t, e in catalog().event_types.items()])
    if not len(frame):
        return current.assign(seen_versions="")
    seen = frame.dropna(subset=["event_type"]).groupby("event_type")["contract_version"].apply(
        lambda v: ", ".join(str(int(x)) for x in sorted(v.dropna().unique()))
    )
    return current.merge(seen.rename("seen_versions").reset_index(), on="event_type", how="left").fillna({"seen_versions": ""})


def query_progress(settings: Settings, since: datetime) -> Read:
    """``ops.freshness``: each query's progress over time (rates, batch duration, watermark lag)."""
    read = read_range(settings, FRESHNESS, "recorded_at", since)
    frame = read.frame.copy()
    if len(frame):
        recorded = pd.to_datetime(frame["recorded_at"], utc=True)
        frame["watermark_lag_s"] = (recorded - pd.to_datetime(frame["watermark"], utc=True)).dt.total_seconds()
    return Read(frame, read.query, read.tables)


def job_states(settings: Settings) -> Read:
    """``ops.pipeline_health``: every job's latest state."""
    from lakehouse.registry import JOB_STATUS_SCHEMA, PIPELINE_HEALTH, PIPELINE_HEALTH_VIEW

    state, table = table_state(settings, PIPELINE_HEALTH)
    query = f"SELECT * FROM {PIPELINE_HEALTH} ORDER BY job"
    if table is None:
        return Read(_empty(JOB_STATUS_SCHEMA.fieldNames()), query, (state,))
    frame = PIPELINE_HEALTH_VIEW.arrow(table.to_table()).to_pandas()
    return Read(frame.sort_values("job"), query, (state,))


def kafka_lag(progress_log: Path, tail_bytes: int = 4 * 1024 * 1024) -> pd.DataFrame:
    """Consumer lag per Kafka topic over time: the brokers' latest offsets minus what each
    query had read, from the Spark progress documents the pipeline logs (the last few MB)."""
    import json

    if not progress_log.exists():
        return pd.DataFrame(columns=["recorded_at", "query", "topic", "lag"])
    with progress_log.open("rb") as handle:
        size = handle.seek(0, 2)
        handle.seek(max(size - tail_bytes, 0))
        lines = handle.read().splitlines()[1:] if size > tail_bytes else handle.read().splitlines()
    rows = []
    for line in lines:
        try:
            document = json.loads(line)
        except ValueError:
            continue
        for source in document.get("sources") or []:
            if not str(source.get("description", "")).startswith("Kafka"):
                continue
            rows.extend(topic_lags(document, source))
    return pd.DataFrame(rows, columns=["recorded_at", "query", "topic", "lag"])


def topic_lags(document: dict, source: dict) -> list[dict]:
    """Per topic: sum over partitions of (latest offset on the broker - end offset read)."""
    import json

    def offsets(value: object) -> dict:
        return json.loads(value) if isinstance(value, str) else (value or {})

    latest, end = offsets(source.get("latestOffset")), offsets(source.get("endOffset"))
    moment = pd.Timestamp(document.get("timestamp"))
    return [
        {"recorded_at": moment, "query": document.get("name"), "topic": topic,
         "lag": sum(max(int(o) - int(end.get(topic, {}).get(p, o)), 0) for p, o in parts.items())}
        for topic, parts in latest.items()
    ]  # fmt: skip


def shown_uri(uri: str) -> str:
    """A URI fit for the screen: any user and password in it masked."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def registry_exists(tracking_uri: str) -> bool:
    """False for a local sqlite registry that was never created (without importing MLflow,
    and without letting MLflow create an empty one)."""
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri.removeprefix("sqlite:///")).exists()
    return True


def model_registry(tracking_uri: str, model_name: str) -> dict[str, pd.DataFrame]:
    """Registered versions with their aliases and metrics, and the promotion history (the
    versions' runs, oldest first), from the MLflow registry (read-only calls)."""
    if not registry_exists(tracking_uri):
        return {"versions": pd.DataFrame(columns=["version", "aliases", "created", "run_id", "status"]), "metrics": pd.DataFrame()}
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        model = client.get_registered_model(model_name)
        versions = client.search_model_versions(f"name = '{model_name}'")
    except Exception:  # noqa: BLE001 - no registry or no model yet
        return {"versions": pd.DataFrame(columns=["version", "aliases", "created", "run_id", "status"]), "metrics": pd.DataFrame()}
    aliases: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    rows, metrics = [], []
    for version in sorted(versions, key=lambda v: int(v.version)):
        rows.append({
            "version": int(version.version), "aliases": ", ".join(sorted(aliases.get(str(version.version), []))),
            "created": datetime.fromtimestamp(version.creation_timestamp / 1000, UTC), "run_id": version.run_id,
            "status": version.status,
        })  # fmt: skip
        if version.run_id:
            try:
                run = client.get_run(version.run_id)
            except Exception:  # noqa: BLE001 - run deleted
                continue
            metrics.append({"version": int(version.version), **{k: v for k, v in sorted(run.data.metrics.items())[:12]}})
    return {"versions": pd.DataFrame(rows), "metrics": pd.DataFrame(metrics)}


def record_counts(settings: Settings, tables: list[str]) -> dict[str, int]:
    """Rows of each table from its Delta log (file statistics: no data file is read)."""
    counts = {}
    for logical in tables:
        _, actions = table_use(settings, logical, lambda h: pa.table(h.table.get_add_actions(flatten=True)).to_pydict())
        counts[logical] = int(sum(n or 0 for n in (actions or {}).get("num_records", [])))
    return counts


def duplicates_dropped(counts: dict[str, int]) -> int:
    """Records bronze received that silver neither accepted, quarantined nor recorded late:
    the retried and duplicated deliveries the hot path deduplicated."""
    kept = counts.get(SILVER_EVENTS, 0) + counts.get(QUARANTINE, 0) + counts.get(LATE, 0)
    return max(counts.get(BRONZE_EVENTS, 0) - kept, 0)


def last_batches(settings: Settings, since: datetime) -> pd.DataFrame:
    """Each query's newest batch in ``ops.freshness`` (id, time, watermark), by query name."""
    frame = read_range(settings, FRESHNESS, "recorded_at", since, columns=["query", "batch_id", "watermark", "recorded_at"]).frame
    if not len(frame):
        return pd.DataFrame(columns=["query", "batch_id", "watermark", "recorded_at"]).set_index("query")
    return frame.sort_values("recorded_at").drop_duplicates("query", keep="last").set_index("query")


def clock(now: datetime, seconds: float) -> datetime:
    """``now`` floored to ``seconds``: the key cached reads share within one refresh."""
    step = max(int(seconds), 1)
    return now.replace(microsecond=0) - timedelta(seconds=now.second % step)


# -- cached reads (what the pages call) --------------------------------------------------------


def _cached(function):  # noqa: ANN001, ANN202
    import streamlit as st

    from lakehouse.config import Settings as _Settings

    hashes = {_Settings: lambda s: s.model_dump_json(), KpiContracts: lambda c: tuple(sorted(c.kpis))}
    return st.cache_data(ttl=CACHE_SECONDS, show_spinner=False, hash_funcs=hashes)(function)




class cached:  # noqa: N801 - a namespace of the cached readers
    """The readers above behind ``st.cache_data`` (a refresh re-reads at most every 2 s)."""

    kpi_minutes = staticmethod(_cached(kpi_minutes))
    kpi_over_range = staticmethod(_cached(kpi_over_range))
    period_comparison = staticmethod(_cached(period_comparison))
    breakdown = staticmethod(_cached(breakdown))
    session_funnel = staticmethod(_cached(session_funnel))
    alerts_since = staticmethod(_cached(alerts_since))
    quarantine_since = staticmethod(_cached(quarantine_since))
    late_since = staticmethod(_cached(late_since))
    query_progress = staticmethod(_cached(query_progress))
    job_states = staticmethod(_cached(job_states))
    kafka_lag = staticmethod(_cached(kafka_lag))
    last_batches = staticmethod(_cached(last_batches))
    table_states = staticmethod(_cached(lambda settings, names: [table_state(settings, n)[0] for n in names]))
    model_registry = staticmethod(_cached(model_registry))
    record_counts = staticmethod(_cached(record_counts))
    validations_since = staticmethod(_cached(validations_since))



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

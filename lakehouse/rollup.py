"""The KPI rollup: hourly and daily rows of every KPI, for charts over days and weeks.

``gold.kpi`` holds one row per KPI × 1-minute window × dimension (and every update of it); a
month of it is millions of rows. ``gold.kpi_rollup`` holds the same KPIs per hour and per day,
maintained by a small scheduled job (``trivas rollup --every 60``; the demo runs it), never by
the KPI hot path: each run reads the ``gold.kpi`` rows written since the previous run (by
``computed_at``), recomputes the hours they touched from the current 1-minute rows of those
hours, recomputes the days of those hours from their hourly rows, and replaces exactly those
rows (one delta-rs commit, a predicate overwrite). Both reads of a run come from one snapshot
of ``gold.kpi``, whose version each row records (``kpi_version``: the rollup's lineage).

Arithmetic (pure, shared with the app's fallback when no rollup exists yet): a measure is
summed; a ratio is recomputed from its summed numerator and denominator (an hour's
conversion rate is the hour's orders over its sessions, not a mean of minute rates). Sliding
rollups (``revenue_5m``) have no hourly meaning and are left out.

Assumes one writer of ``gold.kpi`` stamping ``computed_at`` in commit order (the hot path); a
backfill that appends rows with older ``computed_at`` is picked up by ``trivas rollup --full``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from lakehouse.config import Settings
from lakehouse.contracts import KpiContracts
from lakehouse.registry import KPI, KPI_CURRENT_VIEW, KPI_ROLLUP, KPI_ROLLUP_SCHEMA
from lakehouse.tables import has_commits, table_path

MINUTE_GRAIN = "1m"
GRAINS = {"5m": "5min", "1h": "1h", "1d": "1D"}  # grain label → pandas frequency
HOUR, DAY = "1h", "1d"
ROLLUP_COLUMNS = KPI_ROLLUP_SCHEMA.fieldNames()


def ratio_kpis(contracts: KpiContracts) -> set[str]:
    """The KPIs whose value is numerator / denominator."""
    return {c.name for c in contracts.of_kind("ratio")}


def rolled_kpis(contracts: KpiContracts) -> set[str]:
    """The KPIs that roll up (measures and ratios; sliding rollups do not)."""
    return {c.name for c in contracts.kpis.values() if c.kind in ("measure", "ratio")}


def aggregate(rows: pd.DataFrame, contracts: KpiContracts, grain: str) -> pd.DataFrame:
    """Current KPI rows of a finer grain → one row per (kpi, ``grain`` window, dimension).

    ``rows`` are 1-minute rows as ``gold.kpi_current`` holds them, or rows of this module's
    own output (hourly rows → daily rows: ``minutes``/``final_minutes`` carry over).
    """
    frequency = GRAINS[grain]
    if not len(rows):
        return pd.DataFrame(columns=[c for c in ROLLUP_COLUMNS if c not in ("kpi_version", "rolled_at")])
    frame = rows[rows["kpi"].isin(rolled_kpis(contracts))].copy()
    if "minutes" not in frame:
        frame["minutes"] = 1
        frame["final_minutes"] = frame["is_final"].astype(int)
    frame["window_start"] = pd.to_datetime(frame["window_start"], utc=True).dt.floor(frequency)
    sums = ["value", "numerator", "denominator"]
    frame[sums] = frame[sums].astype(float)
    groups = frame.groupby(["kpi", "window_start", "dimension"], sort=True)
    # Built-in aggregations only (a Python lambda per group cost the app ~50 ms per chart):
    # min_count=1 keeps a group with no value NaN instead of 0.
    grouped = groups[sums].sum(min_count=1).join(groups.agg(
        minutes=("minutes", "sum"), final_minutes=("final_minutes", "sum"), unit=("unit", "first"),
        watermark=("watermark", "max"), computed_at=("computed_at", "max"),
    ))  # fmt: skip
    out = grouped.reset_index()
    is_ratio = out["kpi"].isin(ratio_kpis(contracts))
    out["value"] = np.where(is_ratio, ratio(out["numerator"], out["denominator"]), out["value"])
    out.loc[~is_ratio, ["numerator", "denominator"]] = np.nan
    out["grain"] = grain
    out["window_end"] = out["window_start"] + pd.Timedelta(frequency)
    out["minutes"] = out["minutes"].astype("int64")
    out["final_minutes"] = out["final_minutes"].astype("int64")
    return out[[c for c in ROLLUP_COLUMNS if c in out]]


def ratio(numerator: pd.Series, denominator: pd.Series) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is 0 or missing."""
    den = denominator.to_numpy(dtype=float)
    num = numerator.to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, np.nan)


def period_value(rows: pd.DataFrame, kpi: str, contracts: KpiContracts) -> float | None:
    """One KPI's value over all ``rows`` (of any grain): summed, or a ratio of sums."""
    mine = rows[rows["kpi"] == kpi] if len(rows) else rows
    if not len(mine):
        return None
    if kpi in ratio_kpis(contracts):
        den = mine["denominator"].sum()
        return float(mine["numerator"].sum() / den) if den > 0 else None
    total = mine["value"].sum(min_count=1)
    return None if pd.isna(total) else float(total)


# -- the scheduled job ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RollupRun:
    """What one run replaced."""

    kpi_version: int | None
    hours: int
    days: int
    first_hour: datetime | None
    seconds: float


def _scalar(moment: datetime) -> pa.Scalar:
    return pa.scalar(moment.astimezone(UTC), type=pa.timestamp("us", "UTC"))


def _arrow_frame(frame: pd.DataFrame) -> pa.Table:
    from lakehouse.alerts.store import arrow_schema

    return pa.Table.from_pandas(frame[ROLLUP_COLUMNS], schema=arrow_schema(KPI_ROLLUP_SCHEMA), preserve_index=False)


def high_water(rollup_location: str) -> datetime | None:
    """The newest ``gold.kpi`` write the rollup has taken in (None: never ran)."""
    from deltalake import DeltaTable

    if not has_commits(rollup_location):
        return None
    column = DeltaTable(rollup_location).to_pyarrow_dataset().to_table(columns=["computed_at"])["computed_at"]
    newest = pc.max(column).as_py() if len(column) else None
    return newest.astimezone(UTC) if newest else None


def touched_hours(changed_starts: Iterable[datetime]) -> tuple[datetime, datetime] | None:
    """The first and last hour (floors) of the windows written since the last run."""
    starts = pd.to_datetime(pd.Series(list(changed_starts)), utc=True)
    if not len(starts):
        return None
    return starts.min().floor("1h").to_pydatetime(), starts.max().floor("1h").to_pydatetime()


def roll_up(settings: Settings, contracts: KpiContracts, full: bool = False) -> RollupRun:
    """One run of the job: replace the hourly and daily rows ``gold.kpi`` changed since the last."""
    from deltalake import DeltaTable, write_deltalake

    started = time.monotonic()
    kpi_location, rollup_location = table_path(settings, KPI), table_path(settings, KPI_ROLLUP)
    if not has_commits(kpi_location):
        return RollupRun(None, 0, 0, None, time.monotonic() - started)
    snapshot = DeltaTable(kpi_location)  # one version for both reads
    dataset = snapshot.to_pyarrow_dataset()
    since = None if full else high_water(rollup_location)
    minute = pc.field("grain") == MINUTE_GRAIN
    changed = minute if since is None else minute & (pc.field("computed_at") > _scalar(since))
    span = touched_hours(dataset.to_table(filter=changed, columns=["window_start"])["window_start"].to_pylist())
    if span is None:
        return RollupRun(snapshot.version(), 0, 0, None, time.monotonic() - started)
    first_hour, last_hour = span
    end_hour = last_hour + timedelta(hours=1)
    chunks = [hours_of(dataset, contracts, start, end) for start, end in day_chunks(first_hour, end_hour)]
    hourly = pd.concat([c for c in chunks if len(c)] or chunks[:1], ignore_index=True)
    first_day = pd.Timestamp(first_hour).floor("1D").to_pydatetime()
    end_day = pd.Timestamp(last_hour).floor("1D").to_pydatetime() + timedelta(days=1)
    kept_hours = read_rollup(settings, HOUR, first_day, end_day)
    kept_hours = kept_hours[(kept_hours["window_start"] < first_hour) | (kept_hours["window_start"] >= end_hour)] if len(kept_hours) else kept_hours
    daily = aggregate(pd.concat([kept_hours, hourly], ignore_index=True) if len(kept_hours) else hourly, contracts, DAY)
    now = datetime.now(UTC)
    rows = pd.concat([hourly, daily], ignore_index=True).assign(kpi_version=snapshot.version(), rolled_at=now)
    predicate = (
        f"(grain = '{HOUR}' AND window_start >= '{first_hour.isoformat()}' AND window_start < '{end_hour.isoformat()}') OR "
        f"(grain = '{DAY}' AND window_start >= '{first_day.isoformat()}' AND window_start < '{end_day.isoformat()}')"
    )
    if has_commits(rollup_location):
        write_deltalake(rollup_location, _arrow_frame(rows), mode="overwrite", predicate=predicate)
    else:
        write_deltalake(rollup_location, _arrow_frame(rows), mode="append")
    return RollupRun(snapshot.version(), len(hourly), len(daily), first_hour, time.monotonic() - started)


def day_chunks(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """[start, end) cut at midnights: a first run over a month reads one day at a time."""
    chunks, cursor = [], start
    while cursor < end:
        midnight = pd.Timestamp(cursor).floor("1D").to_pydatetime() + timedelta(days=1)
        chunks.append((cursor, min(midnight, end)))
        cursor = chunks[-1][1]
    return chunks


def hours_of(dataset: object, contracts: KpiContracts, start: datetime, end: datetime) -> pd.DataFrame:
    """Hourly rows of [start, end) from the current 1-minute rows of ``gold.kpi``."""
    in_hours = (pc.field("grain") == MINUTE_GRAIN) & (pc.field("window_start") >= _scalar(start)) & (pc.field("window_start") < _scalar(end))
    minutes = KPI_CURRENT_VIEW.arrow(dataset.to_table(filter=in_hours)).to_pandas()  # type: ignore[attr-defined]
    return aggregate(minutes, contracts, HOUR)


def read_rollup(settings: Settings, grain: str, since: datetime, until: datetime, kpis: Iterable[str] | None = None,
                dataset: ds.Dataset | None = None) -> pd.DataFrame:  # fmt: skip
    """Rollup rows of ``grain`` whose window starts in [since, until) (empty: no rollup yet);
    from ``dataset`` (a pyarrow dataset of the table a caller already opened) when given."""
    from deltalake import DeltaTable

    location = table_path(settings, KPI_ROLLUP)
    if dataset is None and not has_commits(location):
        return pd.DataFrame(columns=ROLLUP_COLUMNS)
    condition = (pc.field("grain") == grain) & (pc.field("window_start") >= _scalar(since)) & (pc.field("window_start") < _scalar(until))
    if kpis is not None:
        condition = condition & pc.field("kpi").isin(list(kpis))
    source = dataset if dataset is not None else DeltaTable(location).to_pyarrow_dataset()
    return source.to_table(filter=condition).to_pandas()

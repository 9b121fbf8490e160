"""Which ``gold.kpi`` windows detect scores when the table itself is silent.

``gold.kpi`` holds a row only for a window that saw an event, and updates it only when another
event arrives. Read as a stream of updates, that leaves two blind spots:

* a minute without a single order (a dead checkout) has no row at all, final or open, so
  neither the model nor a contract's ``min`` ever sees the zero;
* a window whose last event came before its end keeps the elapsed share of that last update:
  it is never seen complete until it is final, one watermark delay (minutes) later.

Both are read against gold's progress instead. Every row gold writes carries its watermark,
and gold's newest processed arrival is that watermark plus the finality delay (the
*frontier*). A window that started before the frontier has elapsed up to it whether or not a
row changed; a window of a tumbling count (a ``measure`` KPI: sessions, orders, revenue) that
ended before the watermark without a row is a final zero, and one between the watermark and
the frontier an open zero. Zeros are filled only for series the detector already follows
(after their cursor, the last final window scored), so a series is never invented, and at
most ``max_gap`` back, so a detector that was down for days does not flood the model.

Pure functions on pandas frames of ``POINT_COLUMNS`` (+ ``series_key``, ``t``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

BASE_GRAIN = "1m"
BASE_SECONDS = 60.0
MAX_GAP = timedelta(hours=6)


def newest_watermark(rows: pd.DataFrame) -> datetime | None:
    """Gold's newest watermark among a batch's rows (``None`` when no row carries one)."""
    if rows.empty or "watermark" not in rows:
        return None
    newest = pd.to_datetime(rows["watermark"], utc=True).max()
    return None if pd.isna(newest) else newest.to_pydatetime()


def series_parts(keys: pd.Series) -> pd.DataFrame:
    """``kpi|grain|dimension`` keys → their three parts (a dimension may hold ``|``)."""
    parts = keys.str.split("|", n=2, expand=True)
    return pd.DataFrame({"kpi": parts[0], "grain": parts[1], "dimension": parts[2]}, index=keys.index)


def followed_counts(cursor: dict[str, float], counts: set[str]) -> dict[str, float]:
    """The series of tumbling 1-minute counts the detector follows, with their cursor."""
    out = {}
    for key, t in cursor.items():
        kpi, grain, _ = key.split("|", 2)
        if kpi in counts and grain == BASE_GRAIN:
            out[key] = t
    return out


def empty_windows(
    follow: dict[str, float],
    end_before: float,
    start_before: float,
    seen: pd.DataFrame,
    max_gap: timedelta = MAX_GAP,
) -> pd.DataFrame:
    """Zero windows of followed count series: starts after each series' cursor whose window
    ends at or before ``end_before`` and starts before ``start_before``, that no row of
    ``seen`` (``series_key``, ``t``) covers.

    Args:
        follow: ``series_key`` → epoch seconds of the last window already accounted for.
        end_before: Windows must end at or before this (epoch seconds; ``inf`` for none).
        start_before: Windows must start before this (epoch seconds).
        seen: Windows that have a row.
        max_gap: How far back of the bound a series is filled at most.

    Returns:
        ``series_key, kpi, grain, dimension, t, window_start, window_end, value`` (0.0).
    """
    last = min(end_before - BASE_SECONDS, np.nextafter(start_before, -np.inf))
    floor = last - max_gap.total_seconds()
    keys, starts = [], []
    for key, cursor in follow.items():
        # the first minute after the cursor (or the floor), which need not be a window start
        first = np.floor(max(cursor, floor) / BASE_SECONDS) * BASE_SECONDS + BASE_SECONDS
        if first > last:
            continue
        grid = first + BASE_SECONDS * np.arange(int((last - first) // BASE_SECONDS) + 1)
        keys.append(np.full(len(grid), key, dtype=object))
        starts.append(grid)
    if not keys:
        return _empty_frame()
    out = pd.DataFrame({"series_key": np.concatenate(keys), "t": np.concatenate(starts)})
    if len(seen):
        covered = pd.MultiIndex.from_arrays([seen["series_key"].astype(str), seen["t"].astype(float)])
        out = out[~pd.MultiIndex.from_arrays([out["series_key"], out["t"]]).isin(covered)]
        if out.empty:
            return _empty_frame()
    out = pd.concat([out.reset_index(drop=True), series_parts(out["series_key"]).reset_index(drop=True)], axis=1)
    out["window_start"] = pd.to_datetime(out["t"], unit="s", utc=True)
    out["window_end"] = out["window_start"] + pd.Timedelta(seconds=BASE_SECONDS)
    out["value"] = 0.0
    return out


def _empty_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {"series_key": pd.Series(dtype=str), "kpi": pd.Series(dtype=str), "grain": pd.Series(dtype=str),
         "dimension": pd.Series(dtype=str), "t": pd.Series(dtype=float),
         "window_start": pd.Series(dtype="datetime64[ns, UTC]"), "window_end": pd.Series(dtype="datetime64[ns, UTC]"),
         "value": pd.Series(dtype=float)}
    )  # fmt: skip


def as_points(windows: pd.DataFrame, *, final: bool, computed_at: datetime) -> pd.DataFrame:
    """Zero windows in the shape of ``gold.kpi`` points (no counts: a ratio has no window),
    marked ``filled``."""
    return windows.assign(
        numerator=np.nan, denominator=np.nan, is_final=final, computed_at=pd.Timestamp(computed_at), watermark=pd.NaT, filled=True
    )


def with_empty_final_windows(
    points: pd.DataFrame, follow: dict[str, float], watermark: datetime | None, computed_at: datetime, views: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Final points plus the final zero windows of followed count series, in event-time
    order per series (the model learns them in that order). A window seen open (``views``)
    is not taken for empty: gold flips it final in the commit whose watermark passes it."""
    if watermark is None or not follow:
        return points
    seen = points[["series_key", "t"]]
    if views is not None and len(views):
        seen = pd.concat([seen, views[["series_key", "t"]]], ignore_index=True)
    zeros = empty_windows(follow, watermark.timestamp(), np.inf, seen)
    if zeros.empty:
        return points
    both = pd.concat([points, as_points(zeros, final=True, computed_at=computed_at)], ignore_index=True)
    return both.sort_values(["series_key", "t"], kind="stable").reset_index(drop=True)


def carry_open_views(views: pd.DataFrame, rows: pd.DataFrame, cursor: dict[str, float], watermark: datetime | None) -> pd.DataFrame:
    """The latest image of every window not final yet: last batch's views updated by this
    batch's rows, without the windows scored final (at or before their series' cursor) or
    that the watermark has passed (their final row comes)."""
    both = pd.concat([views, rows], ignore_index=True) if len(views) else rows
    if both.empty:
        return both
    both = both.sort_values("computed_at", kind="stable").drop_duplicates(["series_key", "t"], keep="last")
    both = both[~both["is_final"].astype(bool)]
    done = both["series_key"].map(cursor).astype(float).fillna(-np.inf).to_numpy()
    keep = both["t"].to_numpy(float) > done
    if watermark is not None:
        keep &= (pd.to_datetime(both["window_end"], utc=True) > pd.Timestamp(watermark)).to_numpy()
    return both[keep].sort_values(["series_key", "t"], kind="stable").reset_index(drop=True)


def with_empty_open_windows(
    views: pd.DataFrame, follow: dict[str, float], watermark: datetime | None, frontier: datetime | None, computed_at: datetime
) -> pd.DataFrame:
    """Open views plus the open zero windows of followed count series: windows the watermark
    has not passed that started before the frontier without a row."""
    if watermark is None or frontier is None or not follow:
        return views
    # an open window ends after the watermark: it starts after watermark - 1 minute
    after_final = {k: max(t, watermark.timestamp() - BASE_SECONDS) for k, t in follow.items()}
    zeros = empty_windows(after_final, np.inf, frontier.timestamp(), views[["series_key", "t"]] if len(views) else views)
    if zeros.empty:
        return views
    both = pd.concat([views, as_points(zeros, final=False, computed_at=computed_at)], ignore_index=True)
    return both.sort_values(["series_key", "t"], kind="stable").reset_index(drop=True)


def frontier_of(watermark: datetime | None, finality_delay: timedelta) -> datetime | None:
    """Gold's newest processed arrival: its watermark plus the finality delay."""
    return None if watermark is None else watermark + finality_delay


__all__ = [
    "as_points",
    "carry_open_views",
    "empty_windows",
    "followed_counts",
    "frontier_of",
    "newest_watermark",
    "series_parts",
    "with_empty_final_windows",
    "with_empty_open_windows",
]

"""Shared handling of KPI point series: column names, timestamps, sampling period."""

from __future__ import annotations

import numpy as np
import pandas as pd

TIMESTAMP = "timestamp"
VALUE = "value"
SERIES_KEY = "series_key"
NUMERATOR = "numerator"  # a ratio KPI's counts (gold.kpi carries them), optional
DENOMINATOR = "denominator"
EXPOSURE = "exposure"  # a count KPI's share of its window the value covers (extrapolated), optional
TEST_SCORE = "test_score"  # score of the count/ratio sequential tests alone (ensemble output)
DEFAULT_SERIES = "__default__"
OUTPUT_COLUMNS = ["expected", "lower", "upper", "anomaly_score", "is_anomaly", "confidence"]
SECONDS_PER_HOUR = 3600.0
SECONDS_PER_DAY = 86400.0


def epoch_seconds(timestamps: pd.Series) -> np.ndarray:
    """UTC epoch seconds of timestamps; naive timestamps are taken as UTC."""
    ts = pd.to_datetime(timestamps, utc=True)
    return (ts - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=float)


def normalise_points(
    frame: pd.DataFrame,
    timestamp_col: str = TIMESTAMP,
    value_col: str = VALUE,
    series_col: str = SERIES_KEY,
) -> pd.DataFrame:
    """Return ``timestamp, value, series_key`` with UTC timestamps, float values.

    Rows keep their original order; a missing series column means one series. A ratio
    KPI's ``numerator`` and ``denominator`` columns are kept when both are there, a count
    KPI's ``exposure`` when it is there.
    """
    missing = {timestamp_col, value_col} - set(frame.columns)
    if missing:
        raise ValueError(f"input lacks column(s) {sorted(missing)}; got {list(frame.columns)}")
    out = pd.DataFrame(
        {
            TIMESTAMP: pd.to_datetime(frame[timestamp_col], utc=True),
            VALUE: pd.to_numeric(frame[value_col], errors="coerce").astype(float),
        },
        index=frame.index,
    )
    if series_col in frame.columns:
        out[SERIES_KEY] = frame[series_col].astype(str).fillna(DEFAULT_SERIES)
    else:
        out[SERIES_KEY] = DEFAULT_SERIES
    if NUMERATOR in frame.columns and DENOMINATOR in frame.columns:
        for column in (NUMERATOR, DENOMINATOR):
            out[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    if EXPOSURE in frame.columns:
        out[EXPOSURE] = pd.to_numeric(frame[EXPOSURE], errors="coerce").astype(float)
    return out


def infer_period_seconds(seconds: np.ndarray) -> float:
    """Robust sampling period: median of the positive gaps between sorted timestamps.

    Gaps (missing hours) and duplicates do not move a median; returns 3600 when
    there are fewer than two distinct timestamps.
    """
    diffs = np.diff(np.sort(np.asarray(seconds, float)))
    diffs = diffs[diffs > 0]
    if len(diffs) == 0:
        return SECONDS_PER_HOUR
    return float(np.median(diffs))


def series_rounds(rows: np.ndarray, seconds: np.ndarray) -> list[np.ndarray]:
    """Positions of points grouped in rounds: round r holds the r-th point (in time) of every
    series, so one vectorised step per round advances many series causally.

    Args:
        rows: Series row of each point.
        seconds: Epoch seconds of each point.

    Returns:
        One array of positions (into ``rows``) per round, each with distinct series.
    """
    if len(rows) == 0:
        return []
    order = np.lexsort((np.arange(len(rows)), seconds, rows))
    sorted_rows = rows[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_rows)) + 1]
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    by_rank = np.argsort(rank, kind="stable")
    rank_sorted = rank[by_rank]
    bounds = np.r_[0, np.flatnonzero(np.diff(rank_sorted)) + 1, len(rank_sorted)]
    return [order[by_rank[lo:hi]] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]

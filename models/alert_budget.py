"""Paging thresholds set by an alert budget on each KPI's own history.

NAB's threshold sweep needs labels and optimises a benchmark's cost matrix; production needs
a promise to the on-call: at most ``N`` alerts per KPI per week on normal traffic. Replaying a
series' clean history through the scorer gives its anomaly scores; the paging threshold of
that series is the lowest one at which the alert episodes (runs of consecutive scores at or
above it) stay within the budget, never below a floor.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.series import SERIES_KEY, TIMESTAMP, VALUE, epoch_seconds

SECONDS_PER_WEEK = 7 * 86400.0
CANDIDATES = np.r_[np.linspace(0.5, 0.95, 10), 0.97, 0.98, 0.99, 0.995, 0.999, 0.9999]


def alert_episodes(scores: np.ndarray, threshold: float) -> int:
    """Number of alert episodes: runs of consecutive points scoring at or above ``threshold``."""
    hit = np.asarray(scores, float) >= threshold
    return int(np.sum(hit & ~np.r_[False, hit[:-1]]))


def budget_threshold(scores: np.ndarray, seconds: np.ndarray, alerts_per_week: float, floor: float = 0.5) -> float:
    """Lowest candidate threshold keeping a series within its weekly alert budget.

    Args:
        scores: The series' anomaly scores on its history, in time order.
        seconds: Their epoch seconds.
        alerts_per_week: The budget.
        floor: Never page below this score.

    Returns:
        The threshold (1.0 when even the strictest candidate breaks the budget).
    """
    seconds = np.asarray(seconds, float)
    step = float(np.median(np.diff(np.sort(seconds)))) if len(seconds) > 1 else 0.0
    weeks = max((seconds.max() - seconds.min() + step) / SECONDS_PER_WEEK, 1.0 / 7.0) if len(seconds) else 1.0
    allowed = alerts_per_week * weeks
    for threshold in CANDIDATES[floor <= CANDIDATES]:
        if alert_episodes(scores, threshold) <= allowed:
            return float(threshold)
    return 1.0


def budget_thresholds(points: pd.DataFrame, scored: pd.DataFrame, alerts_per_week: float, floor: float = 0.5) -> dict[str, float]:
    """Per-series paging thresholds from scored history (``points`` as normalised points,
    ``scored`` the scorer's output aligned with it)."""
    out = {}
    seconds = epoch_seconds(points[TIMESTAMP])
    for key, index in points.groupby(SERIES_KEY, sort=False).indices.items():
        order = index[np.argsort(seconds[index], kind="stable")]
        out[str(key)] = budget_threshold(scored["anomaly_score"].to_numpy()[order], seconds[order], alerts_per_week, floor)
    return out


def open_window_thresholds(
    points: pd.DataFrame, scored: pd.DataFrame, alerts_per_week: float, band_k: float, floor: float = 0.5
) -> dict[str, float]:
    """Per-series paging thresholds of *open* windows (:mod:`models.open_window`).

    An open window is scored on its distance from the model's band (no likelihood, no CUSUM),
    so its threshold is budgeted on that same score: each complete window of the clean
    history scored as an open window at ``fraction = 1`` against the band the model had
    before it (``scored``, the causal replay). A threshold set on the final score (whose
    likelihood saturates near 1 on long clean histories) would silence open windows.
    """
    from models.open_window import open_score

    values = points[VALUE].to_numpy(float)
    score = open_score(values, scored["expected"].to_numpy(float), scored["lower"].to_numpy(float), scored["upper"].to_numpy(float), band_k)
    warm = scored["confidence"].to_numpy(float) >= 0.5  # past the model's warm-up
    score = np.where(warm & np.isfinite(values) & np.isfinite(scored["expected"].to_numpy(float)), score, 0.0)
    return budget_thresholds(points, pd.DataFrame({"anomaly_score": score}, index=scored.index), alerts_per_week, floor)


__all__ = ["alert_episodes", "budget_threshold", "budget_thresholds", "open_window_thresholds"]

"""Scoring of open (still filling) KPI windows: an early warning before a window is final.

A window of an additive KPI (orders, sessions) that is a fraction ``f`` elapsed holds about
``f`` of its final value, so its value is extrapolated to the full window
(``value / f``) and compared with the model's expectation of the full window. The
extrapolation is noisy early on (a Poisson count seen for ``f`` of a window has a relative
error ``1 / sqrt(f)`` times the full window's), so the evidence in band units is shrunk by
``sqrt(f)``: a drop to zero orders is certain after a few seconds of a busy window, a 20 %
dip only near its end. Ratios (a failure rate) are not extrapolated; their noise shrinks the
same way, but a ratio pages only once its window is complete (``f = 1``, before it is
final). Confidence grows with ``f``. The model state is not touched (see
:meth:`models.scorer.KpiScorer.preview`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MIN_FRACTION = 0.05


def elapsed_fraction(window_start: pd.Series, window_end: pd.Series, as_of: pd.Series) -> np.ndarray:
    """Share of each window elapsed at ``as_of`` (its last update), in [0, 1]."""
    start = pd.to_datetime(window_start, utc=True)
    end = pd.to_datetime(window_end, utc=True)
    at = pd.to_datetime(as_of, utc=True)
    length = (end - start).dt.total_seconds().to_numpy()
    done = (at - start).dt.total_seconds().to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.clip(np.where(length > 0, done / length, 1.0), 0.0, 1.0)


def full_window_estimate(value: np.ndarray, fraction: np.ndarray, additive: np.ndarray) -> np.ndarray:
    """The value a window would reach at this pace (additive KPIs), or the value itself."""
    f = np.maximum(np.asarray(fraction, float), MIN_FRACTION)
    return np.where(additive, np.asarray(value, float) / f, value)


def band_units(value: np.ndarray, expected: np.ndarray, lower: np.ndarray, upper: np.ndarray, band_k: float) -> np.ndarray:
    """Distance of a value from the expectation in sigmas, read off the model's band.

    Non-negative KPIs are measured on ``log1p`` (the models' bands are symmetric in a log
    space, so a drop to zero is as far below as the band says, not capped by a band clipped
    at zero); a value inside the band stays below ``band_k``.
    """
    positive = (value >= 0) & (expected >= 0) & (lower >= 0)
    g = np.where(positive, np.log1p(np.maximum(value, 0.0)), value)
    ge = np.where(positive, np.log1p(np.maximum(expected, 0.0)), expected)
    gl = np.where(positive, np.log1p(np.maximum(lower, 0.0)), lower)
    gu = np.where(positive, np.log1p(np.maximum(upper, 0.0)), upper)
    half = np.where(g >= ge, gu - ge, ge - gl)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(half > 0, band_k * np.abs(g - ge) / half, 0.0)
    inside = (value >= lower) & (value <= upper)
    return np.nan_to_num(np.where(inside, np.minimum(z, band_k * (1.0 - 1e-9)), z))


def open_score(
    value: np.ndarray, expected: np.ndarray, lower: np.ndarray, upper: np.ndarray, band_k: float, fraction: np.ndarray | float = 1.0
) -> np.ndarray:
    """Open-window anomaly score: band distance shrunk by ``sqrt(fraction)``, squashed like the
    models' point score (0.5 at ``band_k`` sigmas). At ``fraction = 1`` it is the score of a
    complete window, which is what :func:`models.alert_budget.open_window_thresholds` replays
    over clean history to set the open-window paging threshold."""
    z = band_units(np.asarray(value, float), np.asarray(expected, float), np.asarray(lower, float), np.asarray(upper, float), band_k)
    evidence = np.nan_to_num(z * np.sqrt(np.clip(np.asarray(fraction, float), 0.0, 1.0)))
    return 1.0 - np.exp2(-((evidence / band_k) ** 2))


def open_window_scores(
    full: pd.DataFrame,
    value: np.ndarray,
    fraction: np.ndarray,
    band_k: float,
    threshold: np.ndarray | float,
    additive: np.ndarray | bool = True,
) -> pd.DataFrame:
    """Anomaly score of open windows from the model's view of the full windows.

    Args:
        full: Model outputs for the extrapolated full-window values (``expected``, ``lower``,
            ``upper``, ``confidence``), as :meth:`models.scorer.KpiScorer.preview` returns.
        value: The extrapolated values (:func:`full_window_estimate`).
        fraction: Elapsed share of each window.
        band_k: Band half-width of the model in sigmas.
        threshold: Paging threshold(s) of the open-window score (set by an alert budget on
            this same score over clean history, :func:`models.alert_budget.open_window_thresholds`;
            not the final windows' threshold: the final score adds a likelihood and CUSUMs).
        additive: Whether each KPI adds up over a window. A ratio of a partial window (two
            small counts) is far noisier than the band says, so it pages only once its window
            has ended (complete, not final yet).

    Returns:
        ``expected, lower, upper, anomaly_score, is_anomaly, confidence`` per open window.
    """
    expected = full["expected"].to_numpy(float)
    lower, upper = full["lower"].to_numpy(float), full["upper"].to_numpy(float)
    f = np.clip(np.asarray(fraction, float), 0.0, 1.0)
    score = open_score(value, expected, lower, upper, band_k, f)
    confidence = full["confidence"].to_numpy(float) * f
    out = pd.DataFrame(
        {"expected": expected, "lower": lower, "upper": upper,
         "anomaly_score": score, "confidence": confidence},
        index=full.index,
    )  # fmt: skip
    out["is_anomaly"] = (score >= threshold) & (f >= MIN_FRACTION) & (additive | (f >= 1.0))
    return out[["expected", "lower", "upper", "anomaly_score", "is_anomaly", "confidence"]]


__all__ = ["band_units", "elapsed_fraction", "full_window_estimate", "open_score", "open_window_scores"]

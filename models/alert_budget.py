"""Paging thresholds set by an alert budget on each KPI's own history.

NAB's threshold sweep needs labels and optimises a benchmark's cost matrix; production needs
a promise to the on-call: at most ``N`` alerts per KPI per week on normal traffic. Replaying a
series' clean history through the scorer gives its anomaly scores; the paging threshold of
that series is the lowest one at which the alert episodes (runs of consecutive scores at or
above it) stay within the budget, never below a floor.

The budget is a promise about days it has not seen. Counting episodes at each candidate and
taking the lowest that fits picks the threshold where a week of history happened to be
quiet: with a budget of two a week, the count at the chosen threshold is two or fewer by
construction, and new days page more (0.6 a day against 0.29 in the incident replay). So the
rate is also extrapolated from the tail of all episodes' peaks above the floor (peaks over
threshold: a generalised Pareto fit of their excess surprise ``-log(1 - score)``,
``scipy.stats.genpareto``), which uses every episode of the history instead of the two at the
edge; the threshold meets both.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import genpareto

from models.count_test import CountTestParams, replay_views
from models.series import EXPOSURE, SERIES_KEY, TIMESTAMP, VALUE, epoch_seconds

SECONDS_PER_WEEK = 7 * 86400.0
CANDIDATES = np.r_[np.linspace(0.5, 0.95, 10), 0.97, 0.98, 0.99, 0.995, 0.999, 0.9999]
MIN_TAIL_EPISODES = 8  # fewer episodes above the floor: too few to fit a tail, counting decides
MAX_SURPRISE = -np.log(1e-12)  # scores that saturate at 1 count as this surprising
# A series whose history breaks the budget even at a score of 1 (a likelihood that saturates
# on clean days) does not page on that score at all: a threshold above any score (scores are
# in [0, 1]; JSON-safe, unlike infinity).
NEVER_PAGES = 2.0


def alert_episodes(scores: np.ndarray, threshold: float) -> int:
    """Number of alert episodes: runs of consecutive points scoring at or above ``threshold``."""
    hit = np.asarray(scores, float) >= threshold
    return int(np.sum(hit & ~np.r_[False, hit[:-1]]))


def episode_peaks(scores: np.ndarray, level: float) -> np.ndarray:
    """Highest score of each alert episode at ``level`` (run of scores at or above it)."""
    s = np.asarray(scores, float)
    hit = s >= level
    if not hit.any():
        return np.zeros(0)
    starts = np.flatnonzero(hit & ~np.r_[False, hit[:-1]])
    ends = np.flatnonzero(hit & ~np.r_[hit[1:], False]) + 1
    return np.maximum.reduceat(np.where(hit, s, -np.inf), starts)[: len(ends)]


def surprise(score: np.ndarray | float) -> np.ndarray:
    """``-log(1 - score)``: the scale on which scores' tails are close to exponential (the
    point score is ``1 - 2 ** -(evidence / band_k) ** 2``)."""
    with np.errstate(divide="ignore"):
        return np.minimum(-np.log1p(-np.minimum(np.asarray(score, float), 1.0)), MAX_SURPRISE)


def tail_threshold(scores: np.ndarray, allowed: float, floor: float) -> float:
    """Score at which the episode count, extrapolated from the tail of the episodes above
    ``floor``, meets ``allowed`` (``floor`` when there are too few episodes to fit a tail;
    :data:`NEVER_PAGES` when the tail needs more than a saturated score of 1 can say)."""
    peaks = episode_peaks(scores, floor)
    if len(peaks) < MIN_TAIL_EPISODES or len(peaks) <= allowed:
        return floor
    excess = surprise(peaks) - surprise(floor)
    shape, _, scale = genpareto.fit(excess, floc=0.0)
    if not (np.isfinite(shape) and np.isfinite(scale) and abs(shape) <= 0.5 and scale > 0):
        shape, scale = 0.0, float(np.mean(excess))  # an exponential tail when the fit runs off
    level = surprise(floor) + genpareto.isf(max(allowed, 0.5) / len(peaks), shape, 0.0, scale)
    if level >= MAX_SURPRISE:  # beyond what a saturated score can tell apart: no score pages within budget
        return NEVER_PAGES
    return float(1.0 - np.exp(-level))


def budget_threshold(scores: np.ndarray, seconds: np.ndarray, alerts_per_week: float, floor: float = 0.5) -> float:
    """Lowest threshold keeping a series within its weekly alert budget on its history, and
    on days like it (the extrapolated tail of its episodes, :func:`tail_threshold`).

    Args:
        scores: The series' anomaly scores on its history, in time order.
        seconds: Their epoch seconds.
        alerts_per_week: The budget.
        floor: Never page below this score.

    Returns:
        The threshold (:data:`NEVER_PAGES` when even a score of 1 breaks the budget).
    """
    seconds = np.asarray(seconds, float)
    step = float(np.median(np.diff(np.sort(seconds)))) if len(seconds) > 1 else 0.0
    weeks = max((seconds.max() - seconds.min() + step) / SECONDS_PER_WEEK, 1.0 / 7.0) if len(seconds) else 1.0
    allowed = alerts_per_week * weeks
    # The last candidate is a score saturated at 1 (the likelihood's clip; a spike far out of
    # band): a series that breaks the budget even there does not page on this score at all.
    candidates = np.r_[CANDIDATES[floor <= CANDIDATES], 1.0]
    counted = next((float(t) for t in candidates if alert_episodes(scores, t) <= allowed), NEVER_PAGES)
    return max(counted, tail_threshold(scores, allowed, floor))


def budget_thresholds(points: pd.DataFrame, scored: pd.DataFrame, alerts_per_week: float, floor: float = 0.5) -> dict[str, float]:
    """Per-series paging thresholds from scored history (``points`` as normalised points,
    ``scored`` the scorer's output aligned with it)."""
    return _budget_over_replays(points, [scored["anomaly_score"].to_numpy()], alerts_per_week, floor)


OPEN_VIEWS = (0.5, 1.0)  # shares of a window at which it is scored open: 30 s and 60 s of a minute


def open_views(values: np.ndarray, is_count: np.ndarray, fractions: tuple[float, ...], rng: np.random.Generator) -> list[tuple[float, np.ndarray]]:
    """What the open windows of complete history windows looked like part-way through.

    A count seen ``f`` into its window is a binomial thinning of the final count (events
    arrive spread over the window); the views of one window are nested (what was seen at
    30 s is part of what was seen at 60 s). Other values cannot be thinned without their
    events, so they have only their complete view.

    Returns:
        ``(fraction, partial value)`` per view, largest fraction first (1.0 first).
    """
    seen = np.where(is_count, np.nan_to_num(values), 0.0).astype(np.int64)
    views, prev = [(1.0, np.asarray(values, float))], 1.0
    for f in sorted((f for f in fractions if 0.0 < f < 1.0), reverse=True):
        seen = rng.binomial(seen, f / prev)
        views.append((f, np.where(is_count, seen, np.nan)))
        prev = f
    return views


def open_window_thresholds(
    points: pd.DataFrame,
    scored: pd.DataFrame,
    alerts_per_week: float,
    band_k: float,
    floor: float = 0.5,
    fractions: tuple[float, ...] = OPEN_VIEWS,
    draws: int = 4,
    seed: int = 0,
    count_params: CountTestParams | None = None,
) -> dict[str, float]:
    """Per-series paging thresholds of *open* windows (:mod:`models.open_window`).

    An open window is scored on its distance from the model's band (no likelihood, no CUSUM),
    so its threshold is budgeted on that same score, and on the windows it pages on: each
    complete window of the clean history replayed as the open windows the detect job scores
    (``fractions`` of it elapsed: counts thinned binomially, extrapolated, evidence shrunk),
    against the band the model had before it (``scored``, the causal replay); a window's
    score is the highest of its views, since any of them pages. The history is replayed
    ``draws`` times with fresh thinnings, counted as that many weeks (a threshold that does
    not hang on one draw's luck). Budgeted on complete windows
    only, the threshold would never see the noise of a half-window's extrapolation (orders
    paged 1.2 times a day against a budget of 0.29). A threshold set on the final score
    (whose likelihood saturates near 1 on long clean histories) would silence open windows.

    A count series with an ``exposure`` column (the scorer runs the Poisson CUSUMs of
    :mod:`models.count_test` on it, given ``count_params``) pages its open windows on the
    larger of the band score and the tests' score, so both are replayed on the same views
    (:func:`models.count_test.replay_views`, the tests' state carried by the complete
    windows from the scorer's causal ``expected``) and one budget covers both.
    """
    from models.open_window import full_window_estimate, open_score

    values = points[VALUE].to_numpy(float)
    integral = np.isfinite(values) & (values >= 0) & (values == np.round(values))
    is_count = pd.Series(integral, index=points.index).groupby(points[SERIES_KEY]).transform("all").to_numpy(bool)
    band = [scored[c].to_numpy(float) for c in ("expected", "lower", "upper")]
    warm = scored["confidence"].to_numpy(float) >= 0.5  # past the model's warm-up
    scoreable = warm & np.isfinite(values) & np.isfinite(band[0])
    tested = np.zeros(len(points), bool)
    if count_params is not None and EXPOSURE in points:
        tested = is_count & np.isfinite(points[EXPOSURE].to_numpy(float))
    rows = pd.factorize(points[SERIES_KEY])[0][tested]
    seconds = epoch_seconds(points[TIMESTAMP])[tested]
    rng = np.random.default_rng(seed)
    replays = []
    for _ in range(max(draws, 1)):
        score = np.zeros(len(points))
        views = open_views(values, is_count, fractions, rng)
        for fraction, partial in views:
            estimate = full_window_estimate(partial, np.full(len(points), fraction), np.ones(len(points), bool))
            score = np.fmax(score, np.nan_to_num(open_score(estimate, *band, band_k, fraction)))
        if tested.any():
            evidence = replay_views(count_params, band_k, rows, seconds, [(f, v[tested]) for f, v in views], band[0][tested])
            score[tested] = np.fmax(score[tested], 1.0 - np.exp2(-((evidence / band_k) ** 2)))
        replays.append(np.where(scoreable, score, 0.0))
    return _budget_over_replays(points, replays, alerts_per_week, floor)


def _budget_over_replays(points: pd.DataFrame, replays: list[np.ndarray], alerts_per_week: float, floor: float) -> dict[str, float]:
    """Per-series thresholds of several replays of one history, laid end to end in time."""
    seconds = epoch_seconds(points[TIMESTAMP])
    out = {}
    for key, index in points.groupby(SERIES_KEY, sort=False).indices.items():
        order = index[np.argsort(seconds[index], kind="stable")]
        t = seconds[order]
        span = (t[-1] - t[0]) + (float(np.median(np.diff(t))) if len(t) > 1 else 0.0)
        times = np.concatenate([t + i * span for i in range(len(replays))])
        out[str(key)] = budget_threshold(np.concatenate([r[order] for r in replays]), times, alerts_per_week, floor)
    return out


__all__ = ["OPEN_VIEWS", "alert_episodes", "budget_threshold", "budget_thresholds", "episode_peaks", "open_views", "open_window_thresholds", "surprise", "tail_threshold"]

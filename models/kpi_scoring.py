"""The scoring step the detect job runs on ``gold.kpi`` updates (pure: pandas in, pandas out).

``gold.kpi`` is a stream of updates: a (kpi, grain, window_start, dimension) key appears many
times while its window fills and once more when it is final; the latest update of a key wins.
Per micro-batch the detect job hands this module:

* **final windows** not scored yet — scored causally and learnt (:func:`score_final`);
* **open windows** — the latest partial value of each, scored against the model's
  expectation of the full window without learning (:func:`score_open`, see
  :mod:`models.open_window`), so an outage pages within the window instead of a watermark
  delay after it.

A ratio KPI's rows may carry its ``numerator`` and ``denominator`` (``gold.kpi`` does): the
model then also runs a binomial CUSUM on them (:mod:`models.ratio_test`). An additive KPI's
rows (``additive``; ``tumbling`` False for a sliding rollup) are handed to the model with their
``exposure`` (the share of the window elapsed, 1 when final), and a count KPI is then also
judged by Poisson CUSUMs on its events (:mod:`models.count_test`), whose score pages open
windows beside the band's. A *complete* ratio
window (ended, not final yet) holds all its counts, so it is scored as the final window would
be — the sequential test included — one watermark delay early; the complete windows of a
series still waiting to be final are handed in with it, in time order, so the test has seen
them (the model learns only from final windows).

Both apply the campaign calendar: a rise of a KPI during one of its known promotions does not
page (a drop does). :mod:`bench.bench_models` replays generated KPI minute series with
injected incidents through these same functions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lakehouse.campaigns import CampaignCalendar
from models.open_window import MIN_FRACTION, full_window_estimate, open_window_scores
from models.scorer import KpiScorer
from models.series import DENOMINATOR, EXPOSURE, NUMERATOR, SERIES_KEY, TEST_SCORE

SCORE_COLUMNS = ["expected", "lower", "upper", "anomaly_score", "is_anomaly", "confidence"]
COUNTS = [NUMERATOR, DENOMINATOR]


def _model_columns(points: pd.DataFrame, value: np.ndarray | pd.Series) -> pd.DataFrame:
    """What the model reads of each point: time, value, series, a ratio's counts if any, and
    the exposure of an additive KPI's value (the share of its window elapsed; the model runs
    its count tests on the counts of count KPIs given it)."""
    out = pd.DataFrame({"timestamp": points["timestamp"], "value": value, SERIES_KEY: points[SERIES_KEY]}, index=points.index)
    if all(c in points for c in COUNTS):
        out[COUNTS] = points[COUNTS].astype(float)
    if "additive" in points:
        # Only tumbling windows: a sliding sum counts each event in several windows, and the
        # tests' log-likelihood ratios would not add up (``tumbling`` False: a rollup).
        fraction = points["fraction"].to_numpy(float) if "fraction" in points else np.ones(len(points))
        tumbling = points["tumbling"].to_numpy(bool) if "tumbling" in points else np.ones(len(points), bool)
        out[EXPOSURE] = np.where(points["additive"].to_numpy(bool) & tumbling, fraction, np.nan)
    return out


def in_campaign(kpis: pd.Series, timestamps: pd.Series, calendar: CampaignCalendar | None) -> np.ndarray:
    """Points of a KPI during one of its known promotions."""
    if calendar is None or not calendar.campaigns:
        return np.zeros(len(kpis), bool)
    out = np.zeros(len(kpis), bool)
    ts = pd.Series(pd.to_datetime(timestamps, utc=True).to_numpy())
    k = kpis.to_numpy()
    for kpi in pd.unique(k):
        mask = k == kpi
        out[mask] = calendar.expected_rise(str(kpi), ts[mask].reset_index(drop=True))
    return out


def expected_rises(kpis: pd.Series, timestamps: pd.Series, values: np.ndarray, expected: np.ndarray, calendar: CampaignCalendar | None) -> np.ndarray:
    """Points whose rise above expectation a promotion of the calendar explains."""
    return in_campaign(kpis, timestamps, calendar) & (np.asarray(values, float) > np.asarray(expected, float))


def campaign_tests(kpis: pd.Series, timestamps: pd.Series, values: np.ndarray, lower: np.ndarray, calendar: CampaignCalendar | None) -> np.ndarray:
    """Points whose sequential-test evidence a promotion explains: during a campaign of the
    KPI, unless the value is below the band (a drop still pages). The rise test accumulates
    over the promotion, and once the model has adopted the promotion's level half of its
    minutes sit below the expectation: the value-above-expectation rule would let it page."""
    return in_campaign(kpis, timestamps, calendar) & ~(np.asarray(values, float) < np.asarray(lower, float))


def score_final(scorer: KpiScorer, points: pd.DataFrame, calendar: CampaignCalendar | None = None) -> pd.DataFrame:
    """Score final windows causally and learn from them.

    Args:
        scorer: The live scorer (state advanced in place).
        points: ``series_key, kpi, timestamp, value`` (time order within a series), and
            ``numerator, denominator`` of ratio KPIs (NaN for others).
        calendar: Known promotions (their rises do not page).

    Returns:
        :data:`SCORE_COLUMNS` indexed like ``points``.
    """
    scored = scorer.score(_model_columns(points, points["value"]))
    threshold = scorer.paging_threshold(points[SERIES_KEY])
    value = points["value"].to_numpy(float)
    score = scored["anomaly_score"].to_numpy(float)
    if TEST_SCORE in scored:  # a promotion explains what the tests found, unless a drop
        explained = campaign_tests(points["kpi"], points["timestamp"], value, scored["lower"].to_numpy(float), calendar)
        tests = np.nan_to_num(scored[TEST_SCORE].to_numpy(float))
        score = np.where(explained & (tests >= score), 0.0, score)
        # The alarm's suppression zeroes the rest of an episode's scores, but a count's
        # Poisson tests are not restarted by alarms: while they stay over the threshold the
        # episode is ongoing (a dead checkout stays one firing alert instead of resolving a
        # minute after it paged). A ratio's test restarts at its alarm, so this is a no-op there.
        score = np.maximum(score, np.where(explained, 0.0, tests))
    flagged = (score >= threshold) & (score > 0)
    promo = expected_rises(points["kpi"], points["timestamp"], value, scored["expected"].to_numpy(), calendar)
    scored["is_anomaly"] = flagged & ~promo
    return scored[SCORE_COLUMNS]


def score_open(scorer: KpiScorer, points: pd.DataFrame, calendar: CampaignCalendar | None = None) -> pd.DataFrame:
    """Score open windows against the expectation of their full window, without learning.

    Args:
        scorer: The live scorer (not modified).
        points: ``series_key, kpi, timestamp, value, fraction, additive``: the latest partial
            value of each open window, the share of the window elapsed, and whether the KPI
            adds up over a window (a count) or not (a ratio); optionally ``numerator,
            denominator`` of ratio KPIs. A ratio series' complete windows not final yet come
            in time order (a ratio's earlier ones give its sequential test their counts).
        calendar: Known promotions.

    Returns:
        :data:`SCORE_COLUMNS` indexed like ``points``; ``expected/lower/upper`` are those of
        the full window, ``confidence`` grows with the elapsed share.
    """
    if points.empty:
        return pd.DataFrame(columns=SCORE_COLUMNS, index=points.index)
    estimate = full_window_estimate(points["value"].to_numpy(float), points["fraction"].to_numpy(float), points["additive"].to_numpy(bool))
    full = scorer.preview(_model_columns(points, estimate))
    band_k = float(getattr(scorer.params, "band_k", 4.0))
    fraction, additive = points["fraction"].to_numpy(float), points["additive"].to_numpy(bool)
    threshold = scorer.open_threshold(points[SERIES_KEY])
    out = open_window_scores(full, estimate, fraction, band_k, threshold, additive)
    if TEST_SCORE in full:
        # A count KPI's sequential tests as of now (the partial count against the elapsed share
        # of the expected rate) page its open windows too, at the same budgeted threshold.
        tests = np.where(additive, np.nan_to_num(full[TEST_SCORE].to_numpy(float)), 0.0)
        explained = campaign_tests(points["kpi"], points["timestamp"], estimate, out["lower"].to_numpy(float), calendar)
        tests = np.where(explained, 0.0, tests)
        score = np.maximum(out["anomaly_score"].to_numpy(float), tests)
        out["anomaly_score"] = score
        out["is_anomaly"] = out["is_anomaly"].to_numpy(bool) | ((tests >= threshold) & (tests > 0) & (fraction >= MIN_FRACTION))
    # A complete window of a ratio with its counts is scored now as it will be when final.
    as_final = complete_counted_ratios(points)
    if as_final.any():
        final = full["anomaly_score"].to_numpy(float)
        out["anomaly_score"] = np.where(as_final, final, out["anomaly_score"].to_numpy())
        pages = (final >= scorer.paging_threshold(points[SERIES_KEY])) & (final > 0)
        out["is_anomaly"] = np.where(as_final, pages, out["is_anomaly"].to_numpy())
    promo = expected_rises(points["kpi"], points["timestamp"], estimate, out["expected"].to_numpy(), calendar)
    out["is_anomaly"] = out["is_anomaly"].to_numpy() & ~promo
    return out


def complete_counted_ratios(points: pd.DataFrame) -> np.ndarray:
    """Open windows of ratio KPIs that have ended and carry binomial counts."""
    if not all(c in points for c in COUNTS):
        return np.zeros(len(points), bool)
    from models.ratio_test import binomial_counts

    counted = binomial_counts(points[NUMERATOR].to_numpy(float), points[DENOMINATOR].to_numpy(float))
    return counted & ~points["additive"].to_numpy(bool) & (points["fraction"].to_numpy(float) >= 1.0)


__all__ = ["SCORE_COLUMNS", "campaign_tests", "complete_counted_ratios", "expected_rises", "in_campaign", "score_final", "score_open"]

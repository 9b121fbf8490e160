"""The binomial CUSUM of ratio KPIs (models/ratio_test.py), its place in the champion's score,
and the alert budget that sees what pages (thinned open windows, the extrapolated tail)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from lakehouse.generator import incidents as inc
from models import kpi_scoring
from models.alert_budget import (
    alert_episodes,
    budget_threshold,
    budget_thresholds,
    open_views,
    open_window_thresholds,
    tail_threshold,
)
from models.ratio_test import RatioTestParams, binomial_counts, ratio_step
from models.scorer import ENSEMBLE, KpiScorer

pytestmark = pytest.mark.unit

BAND_K = 4.0
PAGE_EVIDENCE = BAND_K * 1.25  # about the paging threshold the budget sets (score 0.66)
START = inc.utc_minute(2026, 3, 12)


def stream(series: int, minutes: int, rate: float, rng: np.random.Generator, attempts: float = 24.0, clump: float = 0.0):
    """Per minute: (failures, attempts) of ``series`` payment streams; ``clump`` > 0 draws the
    failure share of each minute from a beta around ``rate`` (overdispersed failures)."""
    for _ in range(minutes):
        n = rng.poisson(attempts, series)
        share = rng.beta(rate * (1 - clump) / clump, (1 - rate) * (1 - clump) / clump, series) if clump else rate
        yield rng.binomial(n, share).astype(float), n.astype(float)


def run_test(params: RatioTestParams, minutes_clean: int, minutes_after: int, rate_after: float, series: int = 400, seed: int = 0, clump: float = 0.0):
    """Minutes from the change to the first evidence at PAGE_EVIDENCE, the alarms per series
    after the change (the CUSUM restarts at each), and the learnt dispersion."""
    rng = np.random.default_rng(seed)
    cusum, failures, attempts, dispersion = np.zeros(series), np.zeros(series), np.zeros(series), np.ones(series)
    first, alarms = np.full(series, np.inf), np.zeros(series)
    for minute, (k, n) in enumerate(stream(series, minutes_clean + minutes_after, 0.05, rng, clump=clump)):
        if minute >= minutes_clean and rate_after != 0.05:
            k = rng.binomial(n.astype(int), rate_after).astype(float)
        step = ratio_step(params, BAND_K, cusum, failures, attempts, dispersion, k, n)
        failures, attempts, dispersion = step.failures, step.attempts, step.dispersion
        alarm = step.evidence >= PAGE_EVIDENCE
        cusum = np.where(alarm, 0.0, step.cusum)
        if minute >= minutes_clean:
            first = np.where(alarm & ~np.isfinite(first), minute - minutes_clean + 1, first)
            alarms += alarm
    return first, alarms, dispersion


def test_a_tripled_failure_rate_at_24_attempts_a_minute_pages_within_six_minutes() -> None:
    first, _, _ = run_test(RatioTestParams(), minutes_clean=1440, minutes_after=30, rate_after=0.15)
    assert np.isfinite(first).mean() > 0.99
    assert np.median(first) <= 6 and np.percentile(first, 95) <= 11


def test_a_clean_stream_at_the_base_rate_stays_within_the_budget() -> None:
    week = 7 * 1440
    _, alarms, dispersion = run_test(RatioTestParams(), minutes_clean=1440, minutes_after=week, rate_after=0.05)
    assert alarms.mean() <= 2.0  # the budget: 2 alert episodes per series per week
    assert abs(float(np.median(dispersion)) - 1.0) < 0.15  # a binomial stream is not overdispersed


def test_overdispersed_failures_are_discounted_not_paged() -> None:
    week = 7 * 1440
    naive = RatioTestParams(dispersion_memory=0.0)  # dispersion stays 1: a plain binomial test
    _, alarms_naive, _ = run_test(naive, minutes_clean=1440, minutes_after=week, rate_after=0.05, clump=0.05, seed=1)
    _, alarms, dispersion = run_test(RatioTestParams(), minutes_clean=1440, minutes_after=week, rate_after=0.05, clump=0.05, seed=1)
    assert np.median(dispersion) > 1.5
    # Discounted, not calibrated: clumped failures still page more than a binomial stream
    # would, and the series' alert budget sets its threshold above that.
    assert alarms.mean() < 0.5 * alarms_naive.mean()


def test_only_binomial_counts_are_tested() -> None:
    k = np.array([1.0, 1.5, 5.0, 1.0, np.nan])
    n = np.array([24.0, 24.0, 4.0, 0.0, 24.0])
    assert binomial_counts(k, n).tolist() == [True, False, False, False, False]
    state = (np.zeros(5), np.full(5, 50.0), np.full(5, 1000.0), np.ones(5))
    step = ratio_step(RatioTestParams(), BAND_K, *state, k, n)
    assert step.attempts[1:].tolist() == [1000.0] * 4 and step.attempts[0] > 1000.0  # the others leave the state as it was


def _payments(frame: pd.DataFrame, counts: bool) -> pd.DataFrame:
    out = pd.DataFrame({"timestamp": frame["timestamp"], "value": frame["payment_failure_rate"], "series_key": "payment_failure_rate|1m|all",
                        "kpi": "payment_failure_rate"})  # fmt: skip
    if counts:
        out["numerator"], out["denominator"] = frame["payment_failures"], frame["payment_attempts"]
    return out


@pytest.mark.parametrize("counts", [True, False])
def test_the_champion_pages_a_tripled_failure_rate_only_given_its_counts(counts: bool) -> None:
    history = _payments(inc.kpi_minute_series(START - timedelta(days=7), 7 * 1440, seed=3), counts)
    scorer = KpiScorer.new(ENSEMBLE).fit(history)
    scorer.page_thresholds = budget_thresholds(history, scorer.replay(history), alerts_per_week=2)
    degraded_at = START + timedelta(hours=19)  # an evening at about 24 attempts a minute
    clean = inc.kpi_minute_series(START, 24 * 60, seed=4)
    live = inc.inject(clean, [inc.Incident("payment_degradation", degraded_at, 30, factor=3.0)], seed=5)
    scored = kpi_scoring.score_final(scorer, _payments(live, counts))
    paged = live["timestamp"][scored["is_anomaly"].to_numpy()]
    during = paged[(paged >= degraded_at) & (paged < degraded_at + timedelta(minutes=30))]
    if counts:
        assert len(during) and (during.min() - degraded_at) <= timedelta(minutes=8)
        assert len(paged) - len(during) <= 1  # the rest of the day (19 clean hours) stays quiet
    else:
        assert during.empty  # the Gaussian band alone misses it (the gap this test closes)


def test_the_tail_extrapolation_does_not_stop_at_a_quiet_week() -> None:
    # 60 episodes of exponential-tailed peaks in a week: counting alone picks the first
    # candidate with <= 2 episodes; the tail fit says where two a week are expected.
    rng = np.random.default_rng(0)
    scores = np.zeros(7 * 1440)
    scores[rng.choice(len(scores), 60, replace=False)] = 1.0 - 0.5 * np.exp(-rng.exponential(0.5, 60))
    event_times = np.arange(len(scores)) * 60.0  # one score a minute (epoch seconds of the history)
    tail = tail_threshold(scores, allowed=2.0, floor=0.5)
    expected = 1.0 - 0.5 * np.exp(-0.5 * np.log(60 / 2))  # the exponential's own quantile
    assert tail == pytest.approx(expected, abs=0.03)
    assert budget_threshold(scores, event_times, alerts_per_week=2) >= tail
    assert alert_episodes(scores, budget_threshold(scores, event_times, alerts_per_week=2)) <= 2


def test_open_views_are_nested_thinnings_of_counts_only() -> None:
    values = np.array([20.0, 0.0, 7.5])
    views = open_views(values, np.array([True, True, False]), (0.25, 0.5), np.random.default_rng(0))
    assert [f for f, _ in views] == [1.0, 0.5, 0.25]
    assert np.all(views[1][1][:2] <= values[:2]) and np.all(views[2][1][:2] <= views[1][1][:2]) and views[1][1][1] == 0
    assert np.isnan(views[1][1][2])  # a non-count has only its complete view


def test_open_budget_sees_half_windows_and_is_stricter_than_on_complete_ones() -> None:
    history = inc.kpi_minute_series(START - timedelta(days=7), 7 * 1440, seed=2)
    points = pd.DataFrame({"timestamp": history["timestamp"], "value": history["orders"], "series_key": "orders|1m|all"})
    scorer = KpiScorer.new(ENSEMBLE).fit(points)
    replayed = scorer.replay(points)
    complete_only = open_window_thresholds(points, replayed, 2.0, BAND_K, fractions=(1.0,))["orders|1m|all"]
    with_halves = open_window_thresholds(points, replayed, 2.0, BAND_K)["orders|1m|all"]
    assert with_halves > complete_only

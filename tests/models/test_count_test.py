"""The Poisson CUSUMs of count KPIs (models.count_test) and their path to a page."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models import kpi_scoring
from models.alert_budget import alert_episodes, budget_thresholds, open_window_thresholds
from models.count_test import STATE_DEFAULTS, CountTestParams, count_step, poisson_llr
from models.scorer import KpiScorer

pytestmark = pytest.mark.unit

P = CountTestParams()
BAND_K = 4.0


def _state(n: int) -> dict[str, np.ndarray]:
    return {name: np.full(n, value) for name, value in STATE_DEFAULTS.items()}


def _run(counts: np.ndarray, forecasts: np.ndarray, exposure: float = 1.0) -> tuple[np.ndarray, np.ndarray, dict]:
    """Step a (time x series) stream; returns the drop and rise CUSUMs after each window."""
    state = _state(counts.shape[1])
    down, up = np.zeros(counts.shape), np.zeros(counts.shape)
    for t in range(counts.shape[0]):
        state = count_step(P, BAND_K, state, counts[t], forecasts[t], np.full(counts.shape[1], exposure)).state
        down[t], up[t] = state["count_down"], state["count_up"]
    return down, up, state


def test_poisson_llr_of_a_zero_minute() -> None:
    # No event in a window expected to hold 6.6: (1 - 0.1) * 6.6 nats for the drop test.
    assert np.isclose(poisson_llr(np.array(0.0), np.array(6.6), 0.1), 0.9 * 6.6)
    assert np.isclose(poisson_llr(np.array(3.0), np.array(2.0), 2.0), 3 * np.log(2.0) - 2.0)


def test_zero_orders_are_decisive_within_two_minutes_even_when_the_forecast_adopts_them() -> None:
    rng = np.random.default_rng(0)
    clean = rng.poisson(6.6, (600, 1)).astype(float)
    # The ensemble's local level adopts an outage within minutes (6.6 → 5.2 → 3.6 → 1.1 ...):
    # the test holds its reference while it suspects a drop.
    adopting = np.array([6.6, 5.2, 3.6, 1.1, 0.3, 0.1, 0.1, 0.1])[:, None]
    counts = np.vstack([clean, np.zeros((8, 1))])
    forecasts = np.vstack([np.full((600, 1), 6.6), adopting])
    down, _, _ = _run(counts, forecasts)
    assert down[600, 0] > 5.0  # one minute of zeros
    assert down[601, 0] > 10.0  # two: beyond any threshold the budget sets (~8–9 nats)
    assert down[607, 0] >= down[601, 0]  # and it stays there while the outage lasts


def test_the_end_of_an_outage_is_not_a_burst() -> None:
    rng = np.random.default_rng(1)
    counts = np.vstack([rng.poisson(6.6, (600, 1)), np.zeros((20, 1)), rng.poisson(6.6, (30, 1))]).astype(float)
    # The forecaster adopted the outage (its forecast of the outage's first minute was made
    # before it: 6.6) and adopts the recovery again within minutes (the ensemble adopts a run
    # of four same-side exceedances as a shift).
    adopting = np.r_[6.6, 5.2, 3.6, 1.1, np.full(16, 0.1)][:, None]
    recovering = np.r_[0.1, 2.0, 3.5, 4.8, np.full(26, 6.6)][:, None]
    forecasts = np.vstack([np.full((600, 1), 6.6), adopting, recovering])
    down, up, _ = _run(counts, forecasts)
    assert up[620:].max() < P.limit / 2
    assert down[625:].max() < P.limit  # the drop test falls back within minutes of the end


def test_an_open_window_tests_its_partial_count_against_the_elapsed_share() -> None:
    state = _state(1)
    state["count_windows"][:] = P.min_windows
    state["count_events"][:], state["count_forecast"][:] = 6600.0, 6600.0
    half = count_step(P, BAND_K, state, np.zeros(1), np.full(1, 6.6), np.full(1, 0.5))
    assert np.isclose(half.state["count_down"][0], 0.9 * 0.5 * 6.6, rtol=1e-3)
    # a partial window is not learnt
    assert half.state["count_windows"][0] == P.min_windows
    assert half.state["count_events"][0] == state["count_events"][0]


def test_clean_counts_rarely_reach_the_paging_level() -> None:
    """Four weeks of clean Poisson minutes at 1–40 events a minute, forecast exactly, pages
    (CUSUM at 9 nats, about where the budget puts it) well within 2 episodes a week."""
    rng = np.random.default_rng(2)
    minutes = 4 * 7 * 1440
    rates = np.array([1.0, 3.0, 6.6, 12.0, 40.0])
    rhythm = 0.6 + 0.4 * np.sin(2 * np.pi * np.arange(minutes) / 1440)[:, None]
    lam = rates[None, :] * rhythm
    down, up, _ = _run(rng.poisson(lam).astype(float), lam)
    for s in range(len(rates)):
        assert alert_episodes(np.maximum(down[:, s], up[:, s]), 9.0) <= 2 * 4, rates[s]


def _orders(minutes: int, rate: float, seed: int, start: str = "2026-03-02") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range(start, periods=minutes, freq="min", tz="UTC")
    return pd.DataFrame({"timestamp": ts, "value": rng.poisson(rate, minutes).astype(float), "series_key": "orders|1m|all",
                         "kpi": "orders", "additive": True})  # fmt: skip


def test_a_zero_order_outage_at_seven_a_minute_pages_within_two_minutes_within_budget() -> None:
    """Through the detect job's scoring step: open windows at 30 s and 60 s, final ones after;
    thresholds from the alert budget on two clean days. A minute of zero orders at ~7 a minute
    is as likely as once in ~1,100 minutes, so the Gaussian band alone cannot page it within
    the budget; the drop test pages within two minutes."""
    history = _orders(2 * 1440, 7.0, seed=3, start="2026-02-28")
    history["exposure"] = 1.0
    scorer = KpiScorer.new()
    train = history[["timestamp", "value", "series_key", "exposure"]]
    scorer.fit(train)
    replayed = scorer.replay(train)
    scorer.page_thresholds = budget_thresholds(train, replayed, 2.0)
    scorer.open_thresholds = open_window_thresholds(train, replayed, 2.0, BAND_K, draws=2, count_params=scorer.count_params())
    live = _orders(180, 7.0, seed=4)
    live.loc[120:, "value"] = 0.0  # the outage starts at minute 120
    rng = np.random.default_rng(5)
    flagged_at = []
    for i in range(len(live)):
        row = live.iloc[[i]].reset_index(drop=True)
        half = row.assign(value=float(rng.binomial(int(row["value"][0]), 0.5)), fraction=0.5)
        for view, lag in ((half, 30), (row.assign(fraction=1.0), 60)):
            if kpi_scoring.score_open(scorer, view)["is_anomaly"].iloc[0]:
                flagged_at.append(i * 60 + lag)
        kpi_scoring.score_final(scorer, row)
    assert all(t >= 120 * 60 for t in flagged_at), flagged_at  # no page in the two clean hours
    assert flagged_at and flagged_at[0] - 120 * 60 <= 120, flagged_at


def test_a_budget_met_only_by_saturated_scores_never_pages() -> None:
    from models.alert_budget import NEVER_PAGES, budget_threshold

    event_times = np.arange(7 * 1440) * 60.0  # a week of minute windows (epoch seconds)
    scores = np.zeros(len(event_times))
    scores[::500] = 1.0  # twenty saturated episodes in a week: not even a score of 1 keeps 2 a week
    assert budget_threshold(scores, event_times, 2.0) == NEVER_PAGES
    scores[::500] = 0.7  # the same episodes below saturation: a threshold above them
    assert 0.7 < budget_threshold(scores, event_times, 2.0) <= 1.0

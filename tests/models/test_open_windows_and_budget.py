"""Open-window scoring, the alert budget, the promotion gate as data, and the scoring step of
the detect job on generated KPI minutes with injected incidents."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from lakehouse.campaigns import CampaignCalendar
from lakehouse.generator import incidents as inc
from models import kpi_scoring
from models.alert_budget import (
    NEVER_PAGES,
    alert_episodes,
    budget_threshold,
    budget_thresholds,
    open_window_thresholds,
)
from models.open_window import elapsed_fraction, full_window_estimate, open_score
from models.scorer import ENSEMBLE, KpiScorer
from models.validation import PromotionGate

pytestmark = pytest.mark.unit

START = inc.utc_minute(2026, 3, 12)  # a Thursday


def _long(frame: pd.DataFrame, kpis: dict[str, bool]) -> pd.DataFrame:
    return pd.concat(
        [pd.DataFrame({"timestamp": frame["timestamp"], "value": frame[k].astype(float), "kpi": k, "series_key": f"{k}|1m|all", "additive": a})
         for k, a in kpis.items()],
        ignore_index=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def orders_scorer() -> KpiScorer:
    history = inc.kpi_minute_series(START - timedelta(days=3), 3 * 1440, seed=1)
    points = _long(history, {"orders": True})[["timestamp", "value", "series_key"]]
    return KpiScorer.new(ENSEMBLE).fit(points)


def test_elapsed_fraction_and_extrapolation() -> None:
    start = pd.Series(pd.to_datetime(["2026-03-12 10:00", "2026-03-12 10:00", "2026-03-12 10:00"], utc=True))
    end = start + pd.Timedelta(minutes=1)
    at = start + pd.to_timedelta([15, 60, 300], unit="s")
    np.testing.assert_allclose(elapsed_fraction(start, end, at), [0.25, 1.0, 1.0])
    np.testing.assert_allclose(full_window_estimate(np.array([5.0, 0.3]), np.array([0.25, 0.5]), np.array([True, False])), [20.0, 0.3])


def test_drop_to_zero_pages_from_a_half_window_and_a_normal_pace_does_not(orders_scorer: KpiScorer) -> None:
    minute = START + timedelta(hours=13)  # a busy afternoon minute right after the history
    expected = orders_scorer.preview(pd.DataFrame({"timestamp": [minute], "value": [0.0], "series_key": ["orders|1m|all"]}))["expected"].iloc[0]
    probe = pd.DataFrame(
        {"timestamp": [minute] * 3, "value": [0.0, round(expected / 2), 0.0], "kpi": "orders", "series_key": "orders|1m|all",
         "fraction": [0.5, 0.5, 0.1], "additive": True}
    )  # fmt: skip
    out = pd.concat([kpi_scoring.score_open(orders_scorer, probe.iloc[[i]]) for i in range(3)])
    assert out["is_anomaly"].tolist() == [True, False, False]
    assert out["anomaly_score"].iloc[0] > out["anomaly_score"].iloc[2]  # more of the window seen, more evidence
    assert out["confidence"].iloc[0] > out["confidence"].iloc[2]


def test_alert_budget_picks_the_lowest_threshold_within_budget() -> None:
    scores = np.zeros(7 * 24 * 60)  # one week of minutes
    scores[[100, 101, 5000, 9000]] = [0.7, 0.7, 0.8, 0.96]
    assert alert_episodes(scores, 0.6) == 3
    seconds = np.arange(len(scores)) * 60.0
    assert budget_threshold(scores, seconds, alerts_per_week=3) == 0.5
    assert budget_threshold(scores, seconds, alerts_per_week=2) == pytest.approx(0.75)
    assert budget_threshold(scores, seconds, alerts_per_week=1) == pytest.approx(0.85)
    assert budget_threshold(scores, seconds, alerts_per_week=0) == pytest.approx(0.97)


def test_budget_thresholds_per_series_keep_clean_history_within_budget() -> None:
    history = inc.kpi_minute_series(START - timedelta(days=7), 7 * 1440, seed=2)
    points = _long(history, {"orders": True, "sessions": True})[["timestamp", "value", "series_key"]]
    scorer = KpiScorer.new(ENSEMBLE)
    scored = scorer.score(points)
    thresholds = budget_thresholds(points, scored, alerts_per_week=2)
    assert set(thresholds) == {"orders|1m|all", "sessions|1m|all"}
    for key, threshold in thresholds.items():
        mine = scored["anomaly_score"].to_numpy()[(points["series_key"] == key).to_numpy()]
        # NEVER_PAGES: even saturated scores (the likelihood's clip at 1) break the budget
        assert alert_episodes(mine, threshold) <= 2 and (0.5 <= threshold <= 1.0 or threshold == NEVER_PAGES)


def test_open_windows_page_at_their_own_budget_not_at_the_final_scores_threshold() -> None:
    # Final scores carry a likelihood that saturates near 1 on a week of clean minutes; the
    # open-window score (band distance only) is budgeted on itself, on the same history.
    history = inc.kpi_minute_series(START - timedelta(days=7), 7 * 1440, seed=2)
    points = _long(history, {"orders": True})[["timestamp", "value", "series_key"]]
    scorer = KpiScorer.new(ENSEMBLE)
    scored = scorer.score(points)
    scorer.page_thresholds = budget_thresholds(points, scored, alerts_per_week=2)
    scorer.open_thresholds = open_window_thresholds(points, scored, alerts_per_week=2, band_k=scorer.params.band_k)
    key = "orders|1m|all"
    replayed = open_score(points["value"].to_numpy(), scored["expected"].to_numpy(), scored["lower"].to_numpy(), scored["upper"].to_numpy(), scorer.params.band_k)
    warm = scored["confidence"].to_numpy() >= 0.5
    assert alert_episodes(np.where(warm, replayed, 0.0), scorer.open_thresholds[key]) <= 2  # clean history within budget
    assert 0.5 <= scorer.open_thresholds[key] < 1.0
    minute = START + timedelta(hours=13)
    expected = scorer.preview(pd.DataFrame({"timestamp": [minute], "value": [0.0], "series_key": [key]}))["expected"].iloc[0]
    probe = pd.DataFrame({"timestamp": [minute] * 2, "value": [0.0, round(expected / 2)], "kpi": "orders", "series_key": key,
                          "fraction": 0.5, "additive": True})  # fmt: skip
    out = pd.concat([kpi_scoring.score_open(scorer, probe.iloc[[i]]) for i in range(2)])
    assert out["is_anomaly"].tolist() == [True, False]  # a dead checkout half a minute in; a normal pace not
    # Restored from disk, the scorer keeps both thresholds.
    assert scorer.copy().open_thresholds == scorer.open_thresholds


def test_budget_replay_learns_history_with_the_fitted_transforms() -> None:
    # A failure rate whose first minute is 0 looks like a count to a cold scorer (transform
    # picked from the first value): its band would be far wider than the fitted scorer's, and
    # a budget set on it far too lax. The replay uses the transforms fit picks.
    history = inc.kpi_minute_series(START - timedelta(days=2), 2 * 1440, seed=5)
    history.loc[0, "payment_failure_rate"] = 0.0
    points = _long(history, {"payment_failure_rate": False})[["timestamp", "value", "series_key"]]
    scorer = KpiScorer.new(ENSEMBLE).fit(points)
    cold, replay = scorer.cold_copy().score(points), scorer.replay(points)
    width = lambda s: float(np.nanmedian((s["upper"] - s["lower"]).to_numpy()[1440:]))  # noqa: E731 - second day
    assert width(replay) < 0.5 * width(cold)
    live = scorer.preview(points.tail(1).assign(timestamp=points["timestamp"].iloc[-1] + pd.Timedelta(minutes=1)))
    assert float(live["upper"].iloc[0] - live["lower"].iloc[0]) < 0.5 * width(cold)  # the live band is the narrow one


def test_suppression_starts_at_the_series_paging_threshold(orders_scorer: KpiScorer) -> None:
    # A blip above the family threshold but below the series' paging threshold must not
    # silence the series: a real drop right after it still scores (and pages).
    key = "orders|1m|all"
    minute = START + timedelta(hours=13)
    expected = orders_scorer.preview(pd.DataFrame({"timestamp": [minute], "value": [0.0], "series_key": [key]}))["expected"].iloc[0]
    for factor in (1.5, 1.75, 2.0, 2.25, 2.5, 3.0):  # a blip scoring between the family threshold and 0.95
        blip_then_drop = pd.DataFrame({"timestamp": [minute, minute + timedelta(minutes=1)], "value": [round(expected * factor), 0.0], "series_key": key})
        default = orders_scorer.copy().score(blip_then_drop)["anomaly_score"].to_numpy()
        if orders_scorer.params.threshold <= default[0] < 0.95:
            break
    assert orders_scorer.params.threshold <= default[0] < 0.95 and default[1] == 0.0  # suppressed at the family threshold
    own = orders_scorer.copy()
    own.page_thresholds = {key: 0.95}
    scores = own.score(blip_then_drop)
    assert scores["anomaly_score"].iloc[1] >= own.page_thresholds[key] and scores["is_anomaly"].tolist() == [False, True]


def test_promotion_gate_is_data_and_judges_out_of_sample_only() -> None:
    gate = PromotionGate(min_improvement=1.0, floors={"nab_standard_oos_synthetic": 50.0})
    champion = {"nab_standard_oos_all": 60.0, "nab_standard_in_all": 90.0}
    assert gate.passes(champion, {"nab_standard_oos_all": 62.0, "nab_standard_oos_synthetic": 55.0})[0]
    assert not gate.passes(champion, {"nab_standard_oos_all": 60.5, "nab_standard_oos_synthetic": 55.0, "nab_standard_in_all": 99.0})[0]
    assert not gate.passes(champion, {"nab_standard_oos_all": 70.0, "nab_standard_oos_synthetic": 40.0})[0]
    assert gate.passes({}, {"nab_standard_oos_all": 1.0, "nab_standard_oos_synthetic": 50.0})[0]


def test_incidents_are_opt_in_and_labelled() -> None:
    clean = inc.kpi_minute_series(START, 1440, seed=3)
    pd.testing.assert_frame_equal(inc.inject(clean, []), clean)
    pd.testing.assert_frame_equal(inc.kpi_minute_series(START, 1440, seed=3), clean)  # same seed, same traffic
    outage = inc.Incident("checkout_outage", START + timedelta(hours=12), 20, factor=0.0)
    degraded = inc.Incident("payment_degradation", START + timedelta(hours=14), 60, factor=3.0)
    burst = inc.Incident("bot_burst", START + timedelta(hours=16), 30, factor=3.0)
    out = inc.inject(clean, [outage, degraded, burst], seed=3)
    during = lambda i: ((out["timestamp"] >= i.start) & (out["timestamp"] < i.end)).to_numpy()  # noqa: E731
    assert (out.loc[during(outage), "orders"] == 0).all() and clean.loc[during(outage), "orders"].sum() > 0
    share = out.loc[during(degraded), "payment_failures"].sum() / out.loc[during(degraded), "payment_attempts"].sum()
    assert 0.10 < share < 0.22  # 5 % tripled
    assert out.loc[during(burst), "sessions"].sum() > 2.5 * clean.loc[during(burst), "sessions"].sum()
    assert (out.loc[~(during(outage) | during(degraded) | during(burst)), "sessions"] == clean.loc[~(during(outage) | during(degraded) | during(burst)), "sessions"]).all()
    labels = inc.labels([outage, degraded, burst])
    assert labels[["kind", "kpi"]].values.tolist() == [["checkout_outage", "orders"], ["payment_degradation", "payment_failure_rate"], ["bot_burst", "sessions"]]


def test_calendar_promotions_are_expected_and_do_not_page(orders_scorer: KpiScorer) -> None:
    calendar = CampaignCalendar.load()
    friday_sale = pd.Series(pd.to_datetime(["2026-03-13 18:30", "2026-03-13 19:30", "2026-03-12 18:30"], utc=True))
    assert calendar.expected_rise("orders", friday_sale).tolist() == [True, False, False]
    assert not calendar.expected_rise("payment_failure_rate", friday_sale).any()
    scorer = orders_scorer.copy()
    history = inc.kpi_minute_series(START, 1440 + 18 * 60, seed=4)  # up to Friday 18:00
    scorer.score(_long(history, {"orders": True})[["timestamp", "value", "series_key"]])
    promo = pd.DataFrame({"timestamp": [pd.Timestamp("2026-03-13 18:00", tz="UTC")], "value": [150.0], "kpi": "orders", "series_key": "orders|1m|all"})
    assert kpi_scoring.score_final(scorer.copy(), promo)["is_anomaly"].iloc[0]  # without the calendar it pages
    assert not kpi_scoring.score_final(scorer.copy(), promo, calendar)["is_anomaly"].iloc[0]
    drop = promo.assign(value=0.0)
    assert kpi_scoring.score_final(scorer.copy(), drop, calendar)["is_anomaly"].iloc[0]  # a drop still pages


def test_suppression_is_one_sided_a_drop_after_a_spike_pages(orders_scorer: KpiScorer) -> None:
    key = "orders|1m|all"
    minute = START + timedelta(hours=13)
    expected = orders_scorer.preview(pd.DataFrame({"timestamp": [minute], "value": [0.0], "series_key": [key]}))["expected"].iloc[0]
    values = [round(expected * 4)] + [round(expected)] * 9 + [0.0]  # a spike, nine normal minutes, a dead checkout
    points = pd.DataFrame({"timestamp": [minute + timedelta(minutes=i) for i in range(len(values))], "value": values, "series_key": key})
    scores = orders_scorer.copy().score(points)["anomaly_score"].to_numpy()
    threshold = orders_scorer.params.threshold
    assert scores[0] >= threshold and scores[-1] >= threshold  # the drop is a new episode
    assert (scores[1:-1] == 0.0).all()  # the spike's own episode stays suppressed

"""The cold-start ensemble finds level shifts, spikes, dips, flat lines, variance changes and
broken daily patterns within a few days of a series' start, and stays quiet on clean series."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models import nab
from models.evaluation import SHARED_DATA, load_synthetic_corpus
from models.scorer import ENSEMBLE, KpiScorer, score_with_probation

pytestmark = pytest.mark.unit

PER_DAY = 288  # five-minute points
DAYS = 5
CHANGE = 3 * PER_DAY + 150  # day 4, in the afternoon: three days of history only


def daily_series(seed: int = 0, days: int = DAYS, noise: float = 2.0) -> pd.DataFrame:
    """Five-minute KPI with a daily plateau (busy 9:00-18:00) and Gaussian noise."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2024-03-04", periods=days * PER_DAY, freq="5min", tz="UTC")
    busy = ((ts.hour >= 9) & (ts.hour < 18)).astype(float)
    return pd.DataFrame({"timestamp": ts, "value": 20 + 60 * busy + rng.normal(0, noise, len(ts))})


def _scores(frame: pd.DataFrame) -> pd.DataFrame:
    return KpiScorer.new(ENSEMBLE).score(frame)


def _first_alarm(scores: pd.DataFrame, start: int, threshold: float = 0.5) -> int | None:
    hits = np.flatnonzero(scores["anomaly_score"].to_numpy()[start:] >= threshold)
    return int(hits[0]) if len(hits) else None


def _quiet_before(scores: pd.DataFrame, start: int, threshold: float = 0.5) -> float:
    """Share of points scoring at or above the threshold after the first day and before ``start``."""
    return float((scores["anomaly_score"].to_numpy()[PER_DAY + 12 : start] >= threshold).mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clean_daily_series_is_quiet_after_its_first_day(seed: int) -> None:
    scores = _scores(daily_series(seed))
    assert _quiet_before(scores, len(scores)) < 0.005


def test_level_shift_is_flagged_at_once() -> None:
    frame = daily_series(3)
    frame.loc[CHANGE:, "value"] += 40
    delay = _first_alarm(_scores(frame), CHANGE)
    assert delay is not None and delay <= 1


@pytest.mark.parametrize(("factor", "label"), [(3.0, "spike"), (0.2, "dip")])
def test_spike_and_dip_are_flagged(factor: float, label: str) -> None:
    frame = daily_series(4)
    frame.loc[CHANGE, "value"] *= factor
    scores = _scores(frame)
    assert scores["anomaly_score"].iloc[CHANGE] >= 0.5, label
    assert _quiet_before(scores, CHANGE) < 0.005


def test_flat_line_of_a_moving_series_is_flagged() -> None:
    frame = daily_series(5)
    frame.loc[CHANGE : CHANGE + 40, "value"] = frame.loc[CHANGE, "value"]  # a stuck sensor
    delay = _first_alarm(_scores(frame), CHANGE + 1)
    assert delay is not None and delay <= 16


def test_broken_daily_pattern_is_flagged() -> None:
    frame = daily_series(6)
    day4 = slice(3 * PER_DAY + 108, 3 * PER_DAY + 216)  # 9:00-18:00 of day 4 stays at night level
    frame.loc[frame.index[day4], "value"] -= 60
    delay = _first_alarm(_scores(frame), 3 * PER_DAY + 108)
    assert delay is not None and delay <= 2


def test_variance_change_is_flagged() -> None:
    frame = daily_series(7)
    rng = np.random.default_rng(7)
    frame.loc[CHANGE:, "value"] += rng.normal(0, 12, len(frame) - CHANGE)
    delay = _first_alarm(_scores(frame), CHANGE)
    assert delay is not None and delay <= 24  # two hours of five-minute points


def test_band_and_confidence_are_meaningful() -> None:
    scores = _scores(daily_series(8))
    assert scores["anomaly_score"].between(0, 1).all() and scores["confidence"].between(0, 1).all()
    assert (scores["lower"] <= scores["expected"]).all() and (scores["expected"] <= scores["upper"]).all()
    # Confidence grows with history: the first day's points are less backed than the last day's.
    assert scores["confidence"].iloc[: PER_DAY // 2].mean() < scores["confidence"].iloc[-PER_DAY:].mean() == pytest.approx(1.0)
    late = scores.iloc[-PER_DAY:]
    frame = daily_series(8).iloc[-PER_DAY:]
    inside = (frame["value"] >= late["lower"]) & (frame["value"] <= late["upper"])
    assert inside.mean() > 0.99


def test_many_series_together_equal_each_alone_and_state_round_trips(tmp_path) -> None:
    frames = [daily_series(10 + i, days=2).assign(series_key=f"k{i}") for i in range(3)]
    together = pd.concat(frames, ignore_index=True).sample(frac=1.0, random_state=0)
    scored = KpiScorer.new(ENSEMBLE).score(together).loc[together.index]
    for i, f in enumerate(frames):
        alone = KpiScorer.new(ENSEMBLE).score(f.drop(columns="series_key"))
        mine = scored[(together["series_key"] == f"k{i}").to_numpy()].sort_index()
        np.testing.assert_allclose(mine["anomaly_score"].to_numpy(), alone["anomaly_score"].to_numpy())
    scorer = KpiScorer.new(ENSEMBLE).fit(frames[0].iloc[:400])
    scorer.save(tmp_path / "m")
    again = KpiScorer.load(tmp_path / "m")
    pd.testing.assert_frame_equal(scorer.copy().score(frames[0].iloc[400:]), again.score(frames[0].iloc[400:]))


def test_preview_does_not_learn() -> None:
    frame = daily_series(12, days=2).assign(series_key="k")
    scorer = KpiScorer.new(ENSEMBLE).fit(frame.iloc[:-1])
    before = scorer.copy()
    probe = frame.iloc[[-1]].assign(value=0.0)
    first = scorer.preview(probe)
    assert first["anomaly_score"].iloc[0] > 0.9
    pd.testing.assert_frame_equal(scorer.preview(probe), first)
    pd.testing.assert_frame_equal(scorer.score(frame.iloc[[-1]]), before.score(frame.iloc[[-1]]))


def test_half_space_trees_challenger_finds_a_spike_causally(tmp_path) -> None:
    rng = np.random.default_rng(13)
    ts = pd.date_range("2024-03-04", periods=600, freq="5min", tz="UTC")
    frame = pd.DataFrame({"timestamp": ts, "value": 50 + rng.normal(0, 2, len(ts))})
    at = 450
    frame.loc[at, "value"] = 90.0
    scorer = KpiScorer.new("half_space_trees")
    scores = scorer.score(frame)
    assert scores["anomaly_score"].iloc[at] > scores["anomaly_score"].iloc[200:at].quantile(0.99)
    prefix = KpiScorer.new("half_space_trees").score(frame.iloc[:300])
    np.testing.assert_allclose(scores["anomaly_score"].iloc[:300], prefix["anomaly_score"])
    scorer.save(tmp_path / "hst")
    again = KpiScorer.load(tmp_path / "hst")
    tail = daily_series(14, days=1)
    tail["timestamp"] += pd.Timedelta(days=2)
    pd.testing.assert_frame_equal(scorer.copy().score(tail), again.score(tail))


@pytest.mark.skipif(not (SHARED_DATA / "nab").exists(), reason="needs the shared NAB data (../shared/data/nab)")
def test_rising_spike_density_is_flagged_by_the_likelihood_not_by_any_single_point() -> None:
    # NAB's art_increase_spike_density: routine spikes, then a stretch where they come densely.
    series = next(s for s in load_synthetic_corpus(SHARED_DATA / "nab") if s.name == "art_increase_spike_density.csv")
    points = series.points.reset_index(drop=True)
    (lo, hi), = nab.window_index_limits(points["timestamp"], series.windows)
    probation = nab.probation_length(len(points))
    with_likelihood = score_with_probation(KpiScorer.new(ENSEMBLE), points, probation)["anomaly_score"].to_numpy()
    points_only = score_with_probation(KpiScorer.new(ENSEMBLE, likelihood_min_points=10**9), points, probation)["anomaly_score"].to_numpy()
    alarms = np.flatnonzero(with_likelihood >= 0.6)
    assert len(alarms) and lo <= alarms[0] <= hi
    assert points_only.max() < 0.5


def test_one_episode_pages_once_then_stays_quiet_for_suppress_points() -> None:
    frame = daily_series(16)
    frame.loc[CHANGE : CHANGE + 30, "value"] = 0.0  # a dead checkout for two and a half hours
    scores = KpiScorer.new(ENSEMBLE).score(frame)["anomaly_score"].to_numpy()
    alarms = np.flatnonzero(scores[CHANGE : CHANGE + 24] >= 0.6)
    assert alarms.tolist() == [0]

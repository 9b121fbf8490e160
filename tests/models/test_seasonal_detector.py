"""The seasonal baseline finds injected anomalies and stays quiet on clean series."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.scorer import BASELINE, KpiScorer
from models.series import infer_period_seconds

pytestmark = pytest.mark.unit

WEEKS = 4
HOURS = WEEKS * 7 * 24


def seasonal_series(seed: int = 0, hours: int = HOURS, level: float = 100.0, noise: float = 0.05) -> pd.DataFrame:
    """Hourly KPI with daily and weekly multiplicative seasonality and log-normal noise."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2024-01-01", periods=hours, freq="h", tz="UTC")
    daily = 1.0 + 0.5 * np.sin(2 * np.pi * (ts.hour - 6) / 24)
    weekly = np.where(ts.weekday >= 5, 0.7, 1.0)
    value = level * daily * weekly * np.exp(rng.normal(0, noise, hours))
    return pd.DataFrame({"timestamp": ts, "value": value})


def _flags(frame: pd.DataFrame) -> np.ndarray:
    return KpiScorer.new(BASELINE).score(frame)["is_anomaly"].to_numpy()


def _first_alarm_after(flags: np.ndarray, start: int) -> int | None:
    hits = np.flatnonzero(flags[start:])
    return int(hits[0]) if len(hits) else None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clean_seasonal_series_raises_few_alarms(seed: int) -> None:
    flags = _flags(seasonal_series(seed))
    assert flags[72:].mean() < 0.005, f"{flags.sum()} alarms on a clean series"


@pytest.mark.parametrize("seed", [0, 1])
def test_spike_is_flagged_at_once(seed: int) -> None:
    frame = seasonal_series(seed)
    at = 3 * 7 * 24 + 5
    frame.loc[at, "value"] *= 3.0
    flags = _flags(frame)
    assert flags[at], "spike not flagged"
    assert flags[at + 3 :].sum() <= 2, "spike polluted the baseline"


def test_level_shift_is_flagged_early_then_adopted() -> None:
    frame = seasonal_series(3)
    at = 3 * 7 * 24 + 100  # three weeks of history: the daily profile has converged
    frame.loc[at:, "value"] *= 1.6
    flags = _flags(frame)
    delay = _first_alarm_after(flags, at)
    assert delay is not None and delay <= 2, f"shift found after {delay} points"
    assert flags[at + 48 :].mean() < 0.01, "the new level was never adopted"


def test_dip_is_flagged() -> None:
    frame = seasonal_series(4)
    at = 3 * 7 * 24 + 14  # afternoon: dips are visible against a high expectation
    frame.loc[at : at + 3, "value"] *= 0.3
    flags = _flags(frame)
    assert flags[at : at + 4].any()
    assert not flags[at - 48 : at].any()


def test_irregular_timestamps_keep_the_season() -> None:
    frame = seasonal_series(6)
    rng = np.random.default_rng(6)
    keep = rng.random(len(frame)) > 0.15
    keep[400:421] = False  # a 21-hour gap, as in NAB realAdExchange
    frame = frame[keep].reset_index(drop=True)
    frame["timestamp"] += pd.to_timedelta(rng.integers(0, 60, len(frame)), unit="s")
    assert infer_period_seconds(frame["timestamp"].astype("int64").to_numpy() / 1e9) == pytest.approx(3600, abs=60)
    flags = _flags(frame)
    assert flags[72:].mean() < 0.01


def test_sparse_counts_do_not_alarm_on_small_jumps() -> None:
    rng = np.random.default_rng(7)
    ts = pd.date_range("2024-01-01", periods=HOURS, freq="h", tz="UTC")
    frame = pd.DataFrame({"timestamp": ts, "value": rng.poisson(0.3, HOURS).astype(float)})
    flags = _flags(frame)
    assert flags.sum() <= 2


def test_outputs_are_in_range_and_band_contains_expected() -> None:
    out = KpiScorer.new(BASELINE).score(seasonal_series(8))
    assert out["anomaly_score"].between(0, 1).all()
    assert out["confidence"].between(0, 1).all()
    assert (out["lower"] <= out["expected"]).all() and (out["expected"] <= out["upper"]).all()
    assert out["confidence"].iloc[-1] == 1.0 and out["confidence"].iloc[0] == 0.0


def test_batch_of_many_series_equals_series_scored_alone() -> None:
    frames = []
    for i in range(3):
        f = seasonal_series(10 + i, hours=24 * 10)
        f["series_key"] = f"kpi-{i}"
        frames.append(f)
    together = pd.concat(frames, ignore_index=True).sample(frac=1.0, random_state=0)  # shuffled arrival
    scored = KpiScorer.new(BASELINE).score(together).loc[together.index]
    for i, f in enumerate(frames):
        alone = KpiScorer.new(BASELINE).score(f.drop(columns="series_key"))
        mine = scored[(together["series_key"] == f"kpi-{i}").to_numpy()].sort_index()
        np.testing.assert_allclose(mine["anomaly_score"].to_numpy(), alone["anomaly_score"].to_numpy())


def test_scoring_is_causal() -> None:
    frame = seasonal_series(11)
    full = KpiScorer.new(BASELINE).score(frame)
    prefix = KpiScorer.new(BASELINE).score(frame.iloc[:300])
    np.testing.assert_allclose(full["expected"].iloc[:300], prefix["expected"])


def test_fitted_state_survives_save_and_load(tmp_path) -> None:
    history = seasonal_series(12)
    scorer = KpiScorer.new(BASELINE).fit(history.iloc[:500])
    scorer.save(tmp_path / "m")
    again = KpiScorer.load(tmp_path / "m")
    a = scorer.copy().score(history.iloc[500:])
    b = again.score(history.iloc[500:])
    pd.testing.assert_frame_equal(a, b)


def test_msft_purchase_01_without_anomalies_stays_quiet(shared_data) -> None:
    raw = pd.read_csv(shared_data / "msft-purchase-rate" / "purchase-01.csv")
    out = KpiScorer.new(BASELINE).score(raw, timestamp_col="TimeStamp", value_col="Value")
    assert out["is_anomaly"].sum() <= 3


def test_ets_challenger_scores_causally_too() -> None:
    frame = seasonal_series(13)
    at = 3 * 7 * 24 + 5
    frame.loc[at, "value"] *= 3.0
    scorer = KpiScorer.new("ets").fit(frame.iloc[:300])
    out = scorer.score(frame.iloc[300:])
    assert out.loc[at, "is_anomaly"]
    assert out["is_anomaly"].mean() < 0.02

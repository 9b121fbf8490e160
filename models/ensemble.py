"""Cold-start ensemble detector: useful from a series' first hours, better as history grows.

Three forecasters run side by side on the same variance-stabilised series (the transform
of :mod:`models.seasonal_baseline`), each advanced in O(1) per point, vectorised over series:

* **local** — a fast robust level (winsorised exponential smoothing): a persistence-like
  forecast that is good from the tenth point on and on series without a daily rhythm;
* **daily profile** — one slot per sampling step of the day (at most 288 slots), learnt from
  the first day on (a slot's first visit sets it), plus a slow level correction: a smoothed
  seasonal-naive forecast that knows a daily pattern after one day;
* **seasonal baseline** — the existing champion family (damped level, hour-of-day and
  day-of-week offsets), whose band is tight once weeks of history are in.

Each forecaster keeps an exponentially weighted mean squared one-step error and a support in
[0, 1] (how much history backs it: points seen, visits of the current slot, the baseline's
confidence). The ensemble forecast weights forecaster i by ``support_i / mse_i ** power``, so a
series with a daily rhythm is forecast by the profile, an erratic one by the local level, and
nothing relies on a season it has not seen.

Evidence of an anomaly, in sigmas of the ensemble's robust residual scale, is the largest of:
the residual itself (spikes, dips, drops to zero), a CUSUM of clipped residuals (level shifts
and drifts), a CUSUM of squared residuals (variance changes), and a flat-line run (a stuck
sensor or a dead checkout: a series that normally moves repeats one value). A run of
``shift_run`` same-side exceedances is adopted as the new normal, so one shift pages once.
The point score is ``1 - 2 ** -((evidence / band_k) ** 2)`` (0.5 at ``band_k`` sigmas).
Given counts, sequential tests join beside it: the binomial CUSUM of a ratio KPI
(:mod:`models.ratio_test`) and the Poisson CUSUMs of a count KPI given its exposure
(:mod:`models.count_test`); their score alone is returned as ``test_score``.

Two NAB-style post-processing steps, O(1) per point, make one threshold fit every series:

* **anomaly likelihood** (Ahmad et al. 2017, NAB's post-processing of HTM): the short mean
  of the point scores is compared with its own long-run mean and variance; the Gaussian tail
  probability of that mean, log-scaled (0.5 at 1e-5, 1 at 1e-10), scores bursts that no single
  point reveals (rising spike density, a broken stretch of the daily pattern) relative to how
  noisy *this* series usually is;
* **alarm suppression**: ``anomaly_score = max(point score, likelihood)``; once it reaches
  the series' paging threshold (``alarm_at`` in the state, set from its alert budget by
  :class:`models.scorer.KpiScorer`; ``threshold`` without one) the next ``suppress_points``
  points score 0, so one episode pages once; a residual beyond the band on the other side
  of the alarm's (a drop right after a spike) ends the suppression.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy.special import log_ndtr

from models import count_test, ratio_test
from models import seasonal_baseline as sb
from models.series import (
    DEFAULT_SERIES,
    DENOMINATOR,
    EXPOSURE,
    NUMERATOR,
    OUTPUT_COLUMNS,
    SECONDS_PER_DAY,
    SERIES_KEY,
    TEST_SCORE,
    TIMESTAMP,
    VALUE,
    epoch_seconds,
    infer_period_seconds,
    series_rounds,
)

DAY_SLOTS = 288  # five-minute slots at most
MIN_SLOT_SECONDS = SECONDS_PER_DAY / DAY_SLOTS
COMPONENTS = ("local", "profile", "baseline")


@functools.lru_cache(maxsize=16)
def _tail_normal_quantile(quantile: float) -> float:
    """|z| a standard normal exceeds with probability ``1 - quantile``."""
    return sb._normal_quantile(0.5 + quantile / 2.0)


@dataclass(frozen=True)
class EnsembleParams:
    """Hyper-parameters shared by every series (general defaults, not per file).

    Attributes:
        local_alpha: Smoothing of the local level per point.
        local_warmup: Points before the local forecaster has full support.
        profile_gamma: Daily-profile slot smoothing per day.
        profile_level_alpha: Smoothing of the profile's level correction per point.
        mse_eta: Smoothing of each forecaster's mean squared error (its memory).
        power: Exponent of the inverse-MSE weights (higher: sharper selection).
        mse_clip: Errors are capped at this many ensemble sigmas in the MSEs (0 = off), so
            one broken day does not discredit a forecaster for days.
        scale_eta: Smoothing of the ensemble's robust residual scale.
        winsor_k: Residuals are clipped at this many sigmas before learning.
        band_k: Band half-width in sigmas; evidence band_k gives anomaly_score 0.5.
        shift_run: Consecutive same-side exceedances adopted as a level shift.
        cusum_drift: Allowance (sigmas) of the level CUSUM per point.
        cusum_limit: Level CUSUM counting as evidence band_k.
        cusum_clip: |z| cap of one point's CUSUM contribution.
        volatility_drift: Allowance of the variance CUSUM on z**2 - 1.
        volatility_limit: Variance CUSUM counting as evidence band_k.
        flat_limit: Repeats of one value counting as evidence band_k (series that move).
        flat_max_rate: A series repeating values more often than this is not watched for
            flat lines.
        refractory_decay: Per-point decay of the recent evidence peak.
        refractory_factor: Damping of evidence not above that peak (an ongoing episode).
        protect_profile: A trusted daily profile does not learn from the points it flags.
        tail_quantile: Quantile of |z| tracked online to calibrate heavy tails.
        tail_rate: Learning rate (log scale) of that quantile (0 = off).
        warmup_points: Points seen before alarms are allowed.
        threshold: anomaly_score at or above which a point is an anomaly (the paging
            threshold of a series without an alert-budget threshold).
        relative_floor: Sigma floor in log space for non-count measures.
        likelihood_short_rate: Smoothing of the short mean of point scores (the likelihood's
            recent evidence; 0.3 ~ the last three to five points).
        likelihood_rate: Smoothing of the long-run mean and variance of that short mean.
        likelihood_min_points: Warm points before the likelihood may speak.
        likelihood_mean_floor: Floor of the long-run mean (NAB's lower bound).
        likelihood_sd_floor: Floor of the long-run standard deviation (NAB's lower bound).
        suppress_points: Points after an alarm (score >= threshold) whose scores are zeroed:
            one episode pages once.
        ratio_rise, ratio_limit, ratio_memory: The binomial CUSUM of ratio KPIs given their
            counts (:class:`models.ratio_test.RatioTestParams`: the rate ratio it is tuned
            to, the nats counting as ``band_k`` sigmas, the base rate's forgetting per point).
        count_drop, count_rise, count_limit: The Poisson CUSUMs of count KPIs given their
            exposure (:class:`models.count_test.CountTestParams`: the rate ratios of the drop
            and the rise test, the nats counting as ``band_k`` sigmas).
    """

    local_alpha: float = 0.5
    local_warmup: int = 10
    profile_gamma: float = 0.3
    profile_level_alpha: float = 0.005
    mse_eta: float = 0.005
    power: float = 4.0
    mse_clip: float = 10.0
    scale_eta: float = 0.01
    winsor_k: float = 3.0
    band_k: float = 4.0
    shift_run: int = 4
    cusum_drift: float = 1.0
    cusum_limit: float = 8.0
    cusum_clip: float = 4.0
    volatility_drift: float = 1.0
    volatility_limit: float = 30.0
    flat_limit: float = 12.0
    flat_max_rate: float = 0.2
    refractory_decay: float = 0.97
    refractory_factor: float = 0.0
    protect_profile: bool = True
    tail_quantile: float = 0.98
    tail_rate: float = 0.003
    warmup_points: int = 24
    threshold: float = 0.6
    relative_floor: float = 0.002
    likelihood_short_rate: float = 0.3
    likelihood_rate: float = 0.001
    likelihood_min_points: int = 100
    likelihood_mean_floor: float = 0.03
    likelihood_sd_floor: float = 0.0173
    suppress_points: int = 24
    ratio_rise: float = 2.0
    ratio_limit: float = 6.0
    ratio_memory: float = 1.0 / 1440.0
    count_drop: float = 0.1
    count_rise: float = 2.0
    count_limit: float = 6.0

    def to_dict(self) -> dict:
        """Plain dict (for MLflow params and JSON)."""
        return asdict(self)

    def baseline_params(self) -> sb.BaselineParams:
        """Parameters of the embedded seasonal-baseline forecaster."""
        return sb.BaselineParams(relative_floor=self.relative_floor)

    def ratio_params(self) -> ratio_test.RatioTestParams:
        """Parameters of the count-aware test of ratio KPIs."""
        return ratio_test.RatioTestParams(rise=self.ratio_rise, limit=self.ratio_limit, memory=self.ratio_memory)

    def count_params(self) -> count_test.CountTestParams:
        """Parameters of the count-aware tests of count KPIs."""
        return count_test.CountTestParams(drop=self.count_drop, rise=self.count_rise, limit=self.count_limit)


_SCALARS = {
    "n": 0, "prev_y": np.nan, "local_level": 0.0, "profile_level": 0.0, "scale": 0.0,
    "mse_local": 0.0, "mse_profile": 0.0, "mse_baseline": 0.0,
    "cusum_pos": 0.0, "cusum_neg": 0.0, "cusum_var": 0.0, "peak": 0.0, "run": 0,
    "flat_run": 0.0, "flat_rate": 1.0, "streak": 0.0, "tail": 0.0, "profile_streak": 0.0,
    "lik_n": 0.0, "lik_short": 0.0, "lik_mean": 0.0, "lik_var": 0.0, "quiet": 0.0,
    "alarm_at": np.nan, "quiet_side": 0.0,
    "ratio_cusum": 0.0, "ratio_failures": 0.0, "ratio_attempts": 0.0, "ratio_dispersion": 1.0,
    **count_test.STATE_DEFAULTS,
}  # fmt: skip


@dataclass
class EnsembleState:
    """Online state of many series: the embedded baseline state plus one row per series."""

    baseline: sb.BaselineState = field(default_factory=sb.BaselineState)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.baseline)
        for name, default in _SCALARS.items():
            self.arrays.setdefault(name, np.full(n, default, dtype=float))
        self.arrays.setdefault("slot", np.zeros((n, DAY_SLOTS)))
        self.arrays.setdefault("slot_n", np.zeros((n, DAY_SLOTS)))

    @property
    def keys(self) -> list[str]:
        """Series keys in row order."""
        return self.baseline.keys

    def __len__(self) -> int:
        return len(self.baseline)

    def has(self, key: str) -> bool:
        """Whether the series is tracked."""
        return self.baseline.has(key)

    def index_of(self, keys: list[str]) -> np.ndarray:
        """Row of each key (must exist)."""
        return self.baseline.index_of(keys)

    @property
    def last_t(self) -> np.ndarray:
        """Epoch seconds of each series' last learnt point."""
        return self.baseline.last_t

    def add_series(self, key: str, transform: sb.SeriesTransform, period: float | None = None) -> int:
        """Track a new series with a fresh state; returns its row."""
        if self.has(key):
            return self.baseline.index_of([key])[0]
        row = self.baseline.add_series(key, transform, period)
        for name, default in _SCALARS.items():
            self.arrays[name] = np.append(self.arrays[name], default)
        for name in ("slot", "slot_n"):
            self.arrays[name] = np.vstack([self.arrays[name], np.zeros((1, DAY_SLOTS))])
        return row

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Serialisable form (``np.savez``)."""
        out = {f"baseline_{k}": v for k, v in self.baseline.to_arrays().items()}
        out.update({f"ensemble_{k}": v for k, v in self.arrays.items()})
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> EnsembleState:
        """Inverse of :meth:`to_arrays`."""
        base = sb.BaselineState.from_arrays({k.removeprefix("baseline_"): v for k, v in arrays.items() if k.startswith("baseline_")})
        own = {k.removeprefix("ensemble_"): np.array(v) for k, v in arrays.items() if k.startswith("ensemble_")}
        return cls(base, own)

    def copy(self) -> EnsembleState:
        """Deep copy (scoring mutates state)."""
        return EnsembleState.from_arrays({k: v.copy() for k, v in self.to_arrays().items()})


def _transform(x: np.ndarray, use_log: np.ndarray, offset: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(use_log, np.log(np.maximum(x + offset, 1e-300)), x)


def profile_slot(seconds: np.ndarray, period: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slot of the day of each point, points per slot per day, and whether a daily profile applies.

    Slots are one sampling step wide (at least five minutes); a profile applies to series
    sampled at least four times a day.
    """
    known = np.isfinite(period) & (period > 0)
    width = np.where(known, np.maximum(period, MIN_SLOT_SECONDS), MIN_SLOT_SECONDS)
    slot = np.floor(np.mod(seconds, SECONDS_PER_DAY) / width).astype(np.int64)
    slot = np.clip(np.where(np.isfinite(seconds), slot, 0), 0, DAY_SLOTS - 1)
    per_day = np.where(known, width / np.where(known, period, 1.0), 1.0)
    daily = known & (period <= SECONDS_PER_DAY / 4)
    return slot, np.maximum(per_day, 1.0), daily


def score_batch(
    state: EnsembleState,
    params: EnsembleParams,
    rows: np.ndarray,
    seconds: np.ndarray,
    values: np.ndarray,
    numerators: np.ndarray | None = None,
    denominators: np.ndarray | None = None,
    exposures: np.ndarray | None = None,
) -> sb.BatchScores:
    """Score one point for each of ``rows`` (distinct series), then learn from it.

    Causal: the point is scored against the state before it; the state is updated in place.
    Non-finite values are scored as non-anomalous and not learnt. A ratio KPI's point given
    its counts (``numerators``/``denominators``, NaN where there are none) is also judged by
    the binomial CUSUM of :mod:`models.ratio_test`; a count KPI's point given its exposure (the
    share of its window the value covers when it was extrapolated to the full window, 1 for a
    complete window, NaN where it is not a count) by the Poisson CUSUMs of
    :mod:`models.count_test`. ``test_score`` of the result is the score of those sequential
    tests alone (0 without them).
    """
    p = params
    a = state.arrays
    x = np.asarray(values, float)
    t = np.asarray(seconds, float)
    valid = np.isfinite(x) & np.isfinite(t)
    base = sb.score_batch(state.baseline, p.baseline_params(), rows, t, x)
    bst = state.baseline
    use_log, offset, is_count = bst.use_log[rows], bst.offset[rows], bst.is_count[rows]
    y = _transform(x, use_log, offset)
    n = a["n"][rows]
    first = n == 0

    # Forecasts and their support.
    local = np.where(first, y, a["local_level"][rows])
    slot, per_day, daily = profile_slot(t, bst.period[rows])
    slot_value, slot_n = a["slot"][rows, slot], a["slot_n"][rows, slot]
    profile = np.where(first, y, slot_value + a["profile_level"][rows])
    baseline = np.where(np.isfinite(base.center), base.center, local)
    support = {
        "local": np.minimum(n / p.local_warmup, 1.0),
        "profile": np.where(daily, np.minimum(slot_n / per_day, 1.0), 0.0),
        "baseline": np.where(n > 0, base.confidence, 0.0),
    }
    forecasts = {"local": local, "profile": profile, "baseline": baseline}
    tiny = 1e-12
    weights = {c: support[c] / np.maximum(a[f"mse_{c}"][rows], tiny) ** p.power for c in COMPONENTS}
    total = sum(weights.values())
    has_weight = total > 0
    y_hat = np.where(has_weight, sum(weights[c] * forecasts[c] for c in COMPONENTS) / np.where(has_weight, total, 1.0), local)
    residual = np.where(valid, y - y_hat, 0.0)

    with np.errstate(over="ignore"):
        poisson_floor = 1.0 / np.sqrt(np.exp(np.minimum(y_hat, 700.0)))
    floor = np.where(is_count, poisson_floor, bst.floor[rows])
    sigma = np.maximum(sb.MAD_TO_SIGMA * a["scale"][rows], floor)
    warm = n >= p.warmup_points
    raw_z = np.where(first | ~valid, 0.0, residual / sigma)
    # Heavy tails (a spiky series): widen sigma so the tracked |z| quantile sits where a
    # normal's would; a series whose spikes are routine stops paging on each one.
    normal_q = _tail_normal_quantile(p.tail_quantile)
    calibration = np.maximum(np.exp(a["tail"][rows]) / normal_q, 1.0) if p.tail_rate > 0 else np.ones_like(raw_z)
    sigma = sigma * calibration
    z = raw_z / calibration

    # Evidence: residual, level CUSUM, variance CUSUM, flat line.
    zc = np.clip(z, -p.cusum_clip, p.cusum_clip)
    cusum_pos = np.where(warm, np.maximum(0.0, a["cusum_pos"][rows] + zc - p.cusum_drift), 0.0)
    cusum_neg = np.where(warm, np.maximum(0.0, a["cusum_neg"][rows] - zc - p.cusum_drift), 0.0)
    cusum_evidence = p.band_k * np.maximum(cusum_pos, cusum_neg) / p.cusum_limit
    z2 = np.minimum(z * z, p.cusum_clip**2)
    cusum_var = np.where(warm, np.maximum(0.0, a["cusum_var"][rows] + z2 - 1.0 - p.volatility_drift), 0.0)
    volatility_evidence = p.band_k * cusum_var / p.volatility_limit
    prev_y = a["prev_y"][rows]
    repeated = valid & np.isfinite(prev_y) & (np.abs(y - prev_y) <= 1e-9 * np.maximum(np.abs(y), 1.0))
    flat_run = np.where(repeated, a["flat_run"][rows] + 1.0, 0.0)
    watches_flat = a["flat_rate"][rows] < p.flat_max_rate
    flat_evidence = np.where(watches_flat, p.band_k * flat_run / p.flat_limit, 0.0)
    gaussian = [np.abs(z), cusum_evidence, volatility_evidence]
    ratio = None
    if numerators is not None and denominators is not None:
        ratio = ratio_test.ratio_step(
            p.ratio_params(), p.band_k, a["ratio_cusum"][rows], a["ratio_failures"][rows], a["ratio_attempts"][rows],
            a["ratio_dispersion"][rows], np.where(valid, numerators, np.nan), np.where(valid, denominators, np.nan),
        )  # fmt: skip
        # A ratio tested on its counts: a rise is judged by the binomial test, not by the
        # Gaussian band of a coarse, skewed rate (its heavy upper tail would set the budget).
        gaussian = [np.where(ratio.tested, np.maximum(-z, 0.0), np.abs(z)),
                    np.where(ratio.tested, p.band_k * cusum_neg / p.cusum_limit, cusum_evidence),
                    np.where(ratio.tested, 0.0, volatility_evidence)]  # fmt: skip
        # A run of windows without a failure is what a binomial of few attempts draws (a night
        # of payments at 5 %): not a stuck sensor when the counts explain it.
        flat_evidence = np.where(ratio.tested & (x == 0), 0.0, flat_evidence)
    evidence = np.maximum.reduce([*gaussian, flat_evidence])
    peak = a["peak"][rows] * p.refractory_decay
    ongoing = (evidence <= peak) & (evidence > p.band_k * 0.5)
    peak = np.maximum(peak, np.where(evidence > p.band_k * 0.5, evidence, 0.0))
    evidence = np.where(ongoing, evidence * p.refractory_factor, evidence)
    point_score = np.where(valid & warm, 1.0 - np.exp2(-((evidence / p.band_k) ** 2)), 0.0)
    # A burst of moderate evidence (rising spike density, a noisier stretch) is improbable as a
    # whole though no point is: the likelihood scores the recent mean against its own history.
    likelihood, lik = anomaly_likelihood(a, rows, p, point_score, valid & warm)
    # The binomial CUSUM already accumulates evidence over windows: it joins the score beside
    # the likelihood, not inside it (its lasting moderate evidence would saturate the likelihood).
    ratio_score = np.where(valid & warm, 1.0 - np.exp2(-((ratio.evidence / p.band_k) ** 2)), 0.0) if ratio is not None else 0.0
    count = None
    if exposures is not None:
        # A count KPI (integer history) given its exposure: Poisson CUSUMs of its events against
        # the forecast of the window (the count seen is the extrapolated value times the exposure).
        f = np.where(valid & is_count, np.asarray(exposures, float), np.nan)
        columns = {name: a[name][rows] for name in count_test.STATE_DEFAULTS}
        forecast = sb._inverse(y_hat, use_log, offset)
        count = count_test.count_step(p.count_params(), p.band_k, columns, np.round(x * f), forecast, f)
    count_score = np.where(valid, 1.0 - np.exp2(-((count.evidence / p.band_k) ** 2)), 0.0) if count is not None else 0.0
    test_score = np.maximum(ratio_score, count_score) * np.ones(len(rows))
    anomaly_score = np.maximum.reduce(np.broadcast_arrays(point_score, likelihood, ratio_score, count_score))
    # After an alarm the rest of its episode does not page again. An alarm is a score at the
    # series' own paging threshold (``alarm_at``, set from its alert budget), else
    # ``threshold``: a blip that would not page must not silence the series.
    # Suppression is one-sided: a residual beyond the band on the other side of the alarm's
    # (a drop to zero minutes after a spike) is a new episode, not the rest of the old one.
    quiet = a["quiet"][rows]
    side_now = np.sign(z) * (np.abs(z) > p.band_k)
    quiet_side = a["quiet_side"][rows]
    quiet = np.where((quiet > 0) & (quiet_side != 0) & (side_now == -quiet_side), 0.0, quiet)
    alarm_at = a["alarm_at"][rows]
    alarm_at = np.where(np.isfinite(alarm_at), alarm_at, p.threshold)
    alarm = valid & (anomaly_score >= alarm_at) & (quiet <= 0)
    anomaly_score = np.where(quiet > 0, 0.0, anomaly_score)
    lik["quiet"] = np.where(alarm, float(p.suppress_points), np.maximum(quiet - 1.0, 0.0))
    lik["quiet_side"] = np.where(alarm, side_now, quiet_side)
    is_anomaly = warm & valid & (anomaly_score >= alarm_at)
    if ratio is not None:  # the sequential test restarts after an alarm (one crossing, one page)
        lik.update(ratio_cusum=np.where(alarm, 0.0, ratio.cusum), ratio_failures=ratio.failures,
                   ratio_attempts=ratio.attempts, ratio_dispersion=ratio.dispersion)  # fmt: skip
    if count is not None:  # not restarted by alarms: an ongoing outage is one firing episode
        lik.update(count.state)
    cusum_pos = np.where(cusum_evidence >= p.band_k, 0.0, cusum_pos)
    cusum_neg = np.where(cusum_evidence >= p.band_k, 0.0, cusum_neg)
    cusum_var = np.where(volatility_evidence >= p.band_k, 0.0, cusum_var)
    flat_run = np.where(flat_evidence >= p.band_k, 0.0, flat_run)

    # A run of same-side exceedances is the new normal.
    side = np.sign(z).astype(np.int64) * (np.abs(z) > p.band_k)
    prev_run = a["run"][rows].astype(np.int64)
    run = np.where(side == 0, 0, np.where(np.sign(prev_run) == side, prev_run + side, side))
    shifted = np.abs(run) >= p.shift_run

    # Anomalous points do not teach the profile nor the forecasters' errors (one broken day
    # must not discredit the profile for the next), for at most a day: a lasting change is learnt.
    anomalous = warm & (np.abs(z) > p.band_k)
    streak = np.where(anomalous, a["streak"][rows] + 1.0, 0.0)
    points_per_day = np.where(np.isfinite(bst.period[rows]) & (bst.period[rows] > 0), SECONDS_PER_DAY / bst.period[rows], 24.0)
    paused = anomalous & (streak <= points_per_day)
    # A trusted profile flagging a point learns neither its slot nor its error from it (for at
    # most a day): a broken day must neither be expected again tomorrow nor discredit the
    # profile; a change lasting longer than a day is learnt.
    trusted = np.where(has_weight, weights["profile"] / np.where(has_weight, total, 1.0), 0.0) > 0.5
    profile_sigma = np.maximum(np.sqrt(a["mse_profile"][rows]), floor)
    disagrees = warm & (slot_n > 0) & (np.abs(y - profile) > p.band_k * profile_sigma)
    profile_streak = np.where(disagrees, a["profile_streak"][rows] + 1.0, 0.0)
    was_trusted = trusted | (a["profile_streak"][rows] > 0)
    profile_flags = disagrees & was_trusted & (profile_streak <= points_per_day) & bool(p.protect_profile)
    profile_streak = np.where(disagrees & ~was_trusted, 0.0, profile_streak)

    # Learning (winsorised once warm; a shift is adopted at once).
    clip_at = np.where(warm, p.winsor_k, np.inf) * sigma
    local_res = np.clip(y - local, -clip_at, clip_at)
    local_new = np.where(first | shifted, y, local + p.local_alpha * local_res)
    # The profile never adopts a shift at once: a broken day must not rewrite the next one;
    # a lasting shift moves its level correction step by step (the local level covers meanwhile).
    profile_res = np.clip(y - profile, -clip_at, clip_at)
    gamma_point = 1.0 - (1.0 - p.profile_gamma) ** (1.0 / per_day)
    g = np.where(slot_n == 0, 1.0, np.maximum(gamma_point, 1.0 / (slot_n + 1.0)))
    level_new = np.where(
        first, y, a["profile_level"][rows] + p.profile_level_alpha * profile_res * (slot_n > 0) * ~profile_flags
    )
    slot_new = np.where(first, 0.0, np.where(slot_n == 0, y - level_new, slot_value + g * profile_res))
    eta_mse = np.maximum(p.mse_eta, 1.0 / (n + 1.0))
    mse_cap = np.where(warm & (p.mse_clip > 0), (p.mse_clip * sigma) ** 2, np.inf)
    mse_new = {
        c: a[f"mse_{c}"][rows] + eta_mse * (np.minimum((y - forecasts[c]) ** 2, mse_cap) - a[f"mse_{c}"][rows])
        for c in COMPONENTS
    }
    # A forecaster without support inherits the local error: it starts level and must prove itself.
    for c in ("profile", "baseline"):
        mse_new[c] = np.where(support[c] > 0, mse_new[c], mse_new["local"])
    # Errors are not learnt from points no supported forecaster explains.
    explained = np.zeros(len(rows), bool)
    for c in COMPONENTS:
        explained |= (support[c] > 0) & (np.abs(y - forecasts[c]) <= p.band_k * sigma)
    for c in COMPONENTS:
        mse_new[c] = np.where(paused & ~explained, a[f"mse_{c}"][rows], mse_new[c])
    mse_new["profile"] = np.where(profile_flags, a["mse_profile"][rows], mse_new["profile"])
    eta = np.maximum(p.scale_eta, 1.0 / np.maximum(n, 1.0))
    abs_res = np.minimum(np.abs(residual), np.where(warm, 3.5 * sigma, np.inf))
    scale_new = np.where(first, 0.0, a["scale"][rows] + eta * (abs_res - a["scale"][rows]))
    flat_rate_new = a["flat_rate"][rows] + np.where(first, 0.0, 0.01 * (repeated - a["flat_rate"][rows]))

    v = valid
    rv = rows[v]
    a["local_level"][rv] = local_new[v]
    a["profile_level"][rv] = level_new[v]
    daily_v = v & daily & ~profile_flags
    a["slot"][rows[daily_v], slot[daily_v]] = slot_new[daily_v]
    a["slot_n"][rows[daily_v], slot[daily_v]] += 1
    for c in COMPONENTS:
        a[f"mse_{c}"][rv] = np.where(first[v], 0.0, mse_new[c][v])
    a["scale"][rv] = scale_new[v]
    a["cusum_pos"][rv] = np.where(shifted[v], 0.0, cusum_pos[v])
    a["cusum_neg"][rv] = np.where(shifted[v], 0.0, cusum_neg[v])
    a["cusum_var"][rv] = cusum_var[v]
    a["peak"][rv] = peak[v]
    a["run"][rv] = np.where(shifted[v], 0, run[v])
    a["flat_run"][rv] = flat_run[v]
    a["flat_rate"][rv] = flat_rate_new[v]
    a["prev_y"][rv] = y[v]
    a["streak"][rv] = streak[v]
    a["profile_streak"][rv] = profile_streak[v]
    exceeded = (np.abs(raw_z) > np.exp(a["tail"][rows])).astype(float)
    tail_step = p.tail_rate * (exceeded - (1.0 - p.tail_quantile)) / (1.0 - p.tail_quantile)
    tail_new = np.where(n < 2, np.log(normal_q), a["tail"][rows] + np.where(warm, tail_step, 0.0))
    a["tail"][rv] = tail_new[v]
    a["n"][rv] += 1
    for name, value in lik.items():
        a[name][rv] = value[v]

    history_support = np.maximum(support["profile"], base.confidence)
    confidence = np.where(valid, np.minimum(n / p.warmup_points, 1.0) * (0.5 + 0.5 * history_support), 0.0)
    return sb.BatchScores(
        expected=np.where(valid, sb._inverse(y_hat, use_log, offset), np.nan),
        lower=np.where(valid, sb._inverse(y_hat - p.band_k * sigma, use_log, offset), np.nan),
        upper=np.where(valid, sb._inverse(y_hat + p.band_k * sigma, use_log, offset), np.nan),
        anomaly_score=anomaly_score,
        is_anomaly=is_anomaly,
        confidence=confidence,
        center=y_hat,
        sigma=sigma,
        test_score=test_score,
    )


LOG_TAIL_FLOOR = float(np.log(1e-10))


def anomaly_likelihood(
    a: dict[str, np.ndarray], rows: np.ndarray, p: EnsembleParams, point_score: np.ndarray, active: np.ndarray
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """NAB's anomaly likelihood, online: how improbable the recent mean of the point scores is
    under their own long-run distribution (a Gaussian of the short means).

    Returns the log-scaled likelihood score (0.5 at a tail probability of 1e-5, 1 at 1e-10)
    and the new state columns.
    """
    n = a["lik_n"][rows]
    short = a["lik_short"][rows] + p.likelihood_short_rate * (point_score - a["lik_short"][rows])
    mean, var = a["lik_mean"][rows], a["lik_var"][rows]
    sd = np.maximum(np.sqrt(var), p.likelihood_sd_floor)
    z = (short - np.maximum(mean, p.likelihood_mean_floor)) / sd
    log_tail = log_ndtr(-z)
    score = np.logaddexp(log_tail, LOG_TAIL_FLOOR) / LOG_TAIL_FLOOR
    score = np.where(active & (n >= p.likelihood_min_points), np.clip(score, 0.0, 1.0), 0.0)
    eta = np.maximum(1.0 / (n + 1.0), p.likelihood_rate)
    delta = short - mean
    mean_new = mean + eta * delta
    var_new = (1.0 - eta) * (var + eta * delta * delta)
    keep = ~active
    state = {
        "lik_n": np.where(keep, n, n + 1.0),
        "lik_short": np.where(keep, a["lik_short"][rows], short),
        "lik_mean": np.where(keep, mean, mean_new),
        "lik_var": np.where(keep, var, var_new),
    }
    return score, state


def score_points(state: EnsembleState, params: EnsembleParams, points: pd.DataFrame) -> pd.DataFrame:
    """Score a frame of points of many series causally, updating ``state``.

    Args:
        state: States, updated in place (unknown series start cold).
        params: Hyper-parameters.
        points: ``timestamp`` (UTC), ``value`` and ``series_key`` columns; a ratio KPI's
            ``numerator`` and ``denominator`` counts when it has them.

    Returns:
        The output columns, indexed like ``points``.
    """
    keys = points[SERIES_KEY].astype(str).to_numpy() if SERIES_KEY in points else np.full(len(points), DEFAULT_SERIES)
    seconds = epoch_seconds(points[TIMESTAMP])
    values = points[VALUE].to_numpy(dtype=float)
    counts = (points[NUMERATOR].to_numpy(float), points[DENOMINATOR].to_numpy(float)) if NUMERATOR in points and DENOMINATOR in points else None
    exposures = points[EXPOSURE].to_numpy(float) if EXPOSURE in points else None
    for key in pd.unique(keys):
        if not state.has(key):
            first_values = sb._earliest_value(keys == key, seconds, values)
            state.add_series(key, sb.choose_transform(first_values, params.relative_floor))
    rows = state.index_of(list(keys))
    out = {name: np.zeros(len(points)) for name in ("expected", "lower", "upper", "anomaly_score", "confidence", "test_score")}
    out["is_anomaly"] = np.zeros(len(points), bool)
    for pos in series_rounds(rows, seconds):
        res = score_batch(state, params, rows[pos], seconds[pos], values[pos], *((c[pos] for c in counts) if counts else (None, None)),
                          exposures=exposures[pos] if exposures is not None else None)  # fmt: skip
        for name in out:
            out[name][pos] = getattr(res, name)
    return pd.DataFrame(out, index=points.index)[[*OUTPUT_COLUMNS, TEST_SCORE]]


def fit_state(history: pd.DataFrame, params: EnsembleParams, state: EnsembleState | None = None) -> EnsembleState:
    """Warm a state on history: transform and period from the data, then replay it."""
    state = register_series(history, params, state)
    score_points(state, params, history)
    return state


def register_series(history: pd.DataFrame, params: EnsembleParams, state: EnsembleState | None = None) -> EnsembleState:
    """Track the series of ``history`` with the transform and period :func:`fit_state` picks
    from their whole history (a cold state that replays history as the fitted one learnt it)."""
    state = state if state is not None else EnsembleState()
    for key, part in history.groupby(SERIES_KEY, sort=False):
        if not state.has(str(key)):
            transform = sb.choose_transform(part[VALUE].to_numpy(float), params.relative_floor)
            state.add_series(str(key), transform, infer_period_seconds(epoch_seconds(part[TIMESTAMP])))
    return state


__all__ = ["EnsembleParams", "EnsembleState", "fit_state", "register_series", "profile_slot", "score_batch", "score_points"]

"""Seasonal dynamic-baseline detector for KPI series (the champion family).

Each series is tracked by a small online state, updated in O(1) per point:

* a variance-stabilising transform chosen from the data: ``log(x + 1)`` for
  counts, ``log(x + c)`` for non-negative measures (multiplicative seasonality,
  relative noise), identity otherwise;
* a damped-trend level plus hour-of-day and day-of-week seasonal offsets,
  indexed by the *timestamp* (not the row number), so gaps and irregular
  sampling do not shift the season;
* a robust scale: exponentially weighted mean absolute residual, fed with
  winsorised residuals, floored by the Poisson noise of the expected count for
  count series (a sparse series cannot alarm on 0 -> 2);
* robustness to past anomalies: level, season and scale learn from residuals
  clipped at ``winsor_k`` sigmas, so a spike does not become the new normal;
  a run of ``shift_run`` same-side exceedances is accepted as a level shift;
* evidence = max(|z|, CUSUM of clipped z) so slow drifts are caught early.

``score_batch`` advances many series by one point each with numpy arrays, so a
micro-batch of KPI x segment points costs a handful of vector operations.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from models.series import (
    DEFAULT_SERIES,
    SECONDS_PER_DAY,
    SECONDS_PER_HOUR,
    SERIES_KEY,
    TIMESTAMP,
    VALUE,
    epoch_seconds,
    infer_period_seconds,
)

HOURS_PER_DAY = 24
DAYS_PER_WEEK = 7
PERIOD_SAMPLES = 15  # gaps kept to infer the sampling period while cold
MAD_TO_SIGMA = math.sqrt(math.pi / 2)  # mean |N(0, s)| = s * sqrt(2/pi)
EPOCH_WEEKDAY_SHIFT = 3  # 1970-01-01 was a Thursday; Monday = 0


@dataclass(frozen=True)
class BaselineParams:
    """Hyper-parameters shared by every series (general defaults, not per file).

    Attributes:
        level_alpha: Level smoothing per point.
        trend_beta: Share of the level correction fed to the damped trend.
        trend_damping: Trend damping per period.
        hour_gamma: Hour-of-day slot smoothing per visit of the slot.
        weekday_gamma: Day-of-week slot smoothing per day.
        scale_eta: Scale smoothing per point.
        winsor_k: Residuals are clipped at this many sigmas before learning.
        band_k: Band half-width in sigmas; |z| = band_k gives anomaly_score 0.5.
        shift_run: Consecutive same-side exceedances accepted as a level shift.
        cusum_drift: CUSUM allowance (in sigmas) per point.
        cusum_limit: CUSUM value that counts as evidence band_k.
        cusum_clip: |z| cap of one point's CUSUM contribution.
        warmup_points: Points seen before alarms are allowed.
        threshold: anomaly_score at or above which a point is an anomaly.
        relative_floor: Sigma floor in log space for non-count measures.
        tail_quantile: Quantile of |z| tracked online to calibrate heavy tails.
        tail_rate: Learning rate (log scale) of that quantile.
        volatility_drift: Allowance of the variance CUSUM on z**2 - 1.
        volatility_limit: Variance CUSUM value counting as evidence band_k (0 = off).
        refractory_decay: Per-point decay of the recent evidence peak; evidence not
            above that peak is an ongoing episode and is damped (0 = off).
        refractory_factor: Damping of evidence inside an ongoing episode.
    """

    level_alpha: float = 0.15
    trend_beta: float = 0.05
    trend_damping: float = 0.95
    hour_gamma: float = 0.1
    weekday_gamma: float = 0.1
    scale_eta: float = 0.01
    winsor_k: float = 1.5
    band_k: float = 4.0
    shift_run: int = 4
    cusum_drift: float = 1.0
    cusum_limit: float = 5.0
    cusum_clip: float = 4.0
    warmup_points: int = 48
    threshold: float = 0.5
    relative_floor: float = 0.002
    tail_quantile: float = 0.95
    tail_rate: float = 0.0
    volatility_drift: float = 1.0
    volatility_limit: float = 0.0
    refractory_decay: float = 0.97
    refractory_factor: float = 0.3

    def to_dict(self) -> dict:
        """Plain dict (for MLflow params and JSON)."""
        return asdict(self)


@dataclass
class SeriesTransform:
    """Per-series transform: ``y = log(x + offset)`` when ``use_log`` else ``y = x``."""

    use_log: bool
    offset: float
    is_count: bool
    floor: float


def choose_transform(values: np.ndarray, relative_floor: float = 0.002) -> SeriesTransform:
    """Pick the variance-stabilising transform from a series' history.

    Counts (non-negative integers) get ``log(x + 1)`` with a Poisson floor;
    other non-negative measures ``log(x + c)`` with ``c`` = 5 % of the median
    positive value (keeps zeros finite); anything with negatives stays linear.
    """
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if len(v) == 0 or (v < 0).any():
        spread = float(np.median(np.abs(v - np.median(v)))) if len(v) else 1.0
        return SeriesTransform(False, 0.0, False, max(spread * 1e-3, 1e-9))
    if np.all(v == np.round(v)):
        return SeriesTransform(True, 1.0, True, 0.0)
    positive = v[v > 0]
    offset = 0.05 * float(np.median(positive)) if len(positive) else 1.0
    return SeriesTransform(True, max(offset, 1e-12), False, relative_floor)


@dataclass
class BaselineState:
    """Online state of many series, one row per series (numpy arrays)."""

    keys: list[str] = field(default_factory=list)
    use_log: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    offset: np.ndarray = field(default_factory=lambda: np.zeros(0))
    is_count: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    floor: np.ndarray = field(default_factory=lambda: np.zeros(0))
    n: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    last_t: np.ndarray = field(default_factory=lambda: np.zeros(0))
    period: np.ndarray = field(default_factory=lambda: np.zeros(0))
    gaps: np.ndarray = field(default_factory=lambda: np.zeros((0, PERIOD_SAMPLES)))
    n_gaps: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    level: np.ndarray = field(default_factory=lambda: np.zeros(0))
    trend: np.ndarray = field(default_factory=lambda: np.zeros(0))
    scale: np.ndarray = field(default_factory=lambda: np.zeros(0))
    hour: np.ndarray = field(default_factory=lambda: np.zeros((0, HOURS_PER_DAY)))
    hour_n: np.ndarray = field(default_factory=lambda: np.zeros((0, HOURS_PER_DAY)))
    weekday: np.ndarray = field(default_factory=lambda: np.zeros((0, DAYS_PER_WEEK)))
    weekday_n: np.ndarray = field(default_factory=lambda: np.zeros((0, DAYS_PER_WEEK)))
    cusum_pos: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cusum_neg: np.ndarray = field(default_factory=lambda: np.zeros(0))
    run: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    tail: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cusum_var: np.ndarray = field(default_factory=lambda: np.zeros(0))
    peak: np.ndarray = field(default_factory=lambda: np.zeros(0))

    ARRAYS = ["use_log", "offset", "is_count", "floor", "n", "last_t", "period", "gaps", "n_gaps", "level", "trend", "scale", "hour", "hour_n", "weekday", "weekday_n", "cusum_pos", "cusum_neg", "run", "tail", "cusum_var", "peak"]

    def __post_init__(self) -> None:
        self._index = {k: i for i, k in enumerate(self.keys)}

    def __len__(self) -> int:
        return len(self.keys)

    def index_of(self, keys: list[str]) -> np.ndarray:
        """Row of each key (must exist)."""
        return np.fromiter((self._index[k] for k in keys), np.int64, len(keys))

    def has(self, key: str) -> bool:
        """Whether the series is tracked."""
        return key in self._index

    def add_series(self, key: str, transform: SeriesTransform, period: float | None = None) -> int:
        """Track a new series with a fresh state; returns its row."""
        if key in self._index:
            return self._index[key]
        row = len(self.keys)
        self.keys.append(key)
        self._index[key] = row
        fresh = {
            "use_log": transform.use_log,
            "offset": transform.offset,
            "is_count": transform.is_count,
            "floor": transform.floor,
            "period": period if period else np.nan,
            "n_gaps": PERIOD_SAMPLES if period else 0,
            "last_t": np.nan,
            "gaps": np.full(PERIOD_SAMPLES, np.nan),
            "tail": 0.0,
        }
        for name in self.ARRAYS:
            arr = getattr(self, name)
            default = fresh.get(name, 0)
            row_value = np.zeros((1, *arr.shape[1:]), arr.dtype)
            row_value[...] = default
            setattr(self, name, np.concatenate([arr, row_value]))
        return row

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Serialisable form (``np.savez``)."""
        out = {name: getattr(self, name) for name in self.ARRAYS}
        out["keys"] = np.asarray(self.keys, dtype=str)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> BaselineState:
        """Inverse of :meth:`to_arrays`."""
        state = cls(keys=[str(k) for k in arrays["keys"]])
        for name in cls.ARRAYS:
            setattr(state, name, np.array(arrays[name]))
        return state

    def copy(self) -> BaselineState:
        """Deep copy (scoring mutates state)."""
        return BaselineState.from_arrays({k: v.copy() for k, v in self.to_arrays().items()})


@dataclass
class BatchScores:
    """Scores of one point per series (arrays aligned with the batch)."""

    expected: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    anomaly_score: np.ndarray
    is_anomaly: np.ndarray
    confidence: np.ndarray
    center: np.ndarray | None = None  # expectation in the transformed space
    sigma: np.ndarray | None = None  # one-step sigma in the transformed space
    test_score: np.ndarray | None = None  # score of a family's sequential count/ratio tests alone


def _normal_quantile(prob: float) -> float:
    """Standard normal quantile (Acklam-free: bisection on erf is plenty here)."""
    lo, hi = -10.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2.0
        if 0.5 * (1.0 + math.erf(mid / math.sqrt(2.0))) < prob:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def _inverse(y: np.ndarray, use_log: np.ndarray, offset: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        back = np.exp(np.minimum(y, 700.0)) - offset
    return np.where(use_log, np.maximum(back, 0.0), y)


def score_batch(
    state: BaselineState,
    params: BaselineParams,
    rows: np.ndarray,
    seconds: np.ndarray,
    values: np.ndarray,
) -> BatchScores:
    """Score one point for each of ``rows`` (distinct series), then learn from it.

    The point is scored against the state *before* it (causal), and the state is
    updated in place. Non-finite values are scored as non-anomalous and not learnt.

    Args:
        state: States of all series.
        params: Shared hyper-parameters.
        rows: Series rows in ``state`` (distinct within the call).
        seconds: UTC epoch seconds per point.
        values: Raw KPI values per point.

    Returns:
        Expected value, band, anomaly score in [0, 1], flag and confidence per point.
    """
    p = params
    st = state
    x = np.asarray(values, float)
    t = np.asarray(seconds, float)
    valid = np.isfinite(x) & np.isfinite(t)
    use_log, offset, is_count = st.use_log[rows], st.offset[rows], st.is_count[rows]
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.where(use_log, np.log(np.maximum(x + offset, 1e-300)), x)
    n = st.n[rows]
    first = n == 0
    dt = t - st.last_t[rows]

    # Sampling period: median of the first gaps seen (fixed once enough are seen).
    period = st.period[rows]
    learning_period = valid & ~first & (st.n_gaps[rows] < PERIOD_SAMPLES) & (dt > 0)
    if learning_period.any():
        lr = rows[learning_period]
        st.gaps[lr, st.n_gaps[lr]] = dt[learning_period]
        st.n_gaps[lr] += 1
        st.period[lr] = np.nanmedian(st.gaps[lr], axis=1)
        period = st.period[rows]
    known = np.isfinite(period) & (period > 0)
    steps = np.where(known & (dt > 0), dt / np.where(known, period, 1.0), 1.0)
    steps = np.clip(steps, 1.0, 10_000.0)
    use_hour = ~known | (period < 6 * SECONDS_PER_HOUR)
    use_weekday = ~known | (period < 2 * SECONDS_PER_DAY)

    hod = (np.floor(t / SECONDS_PER_HOUR) % HOURS_PER_DAY).astype(np.int64)
    dow = ((np.floor(t / SECONDS_PER_DAY) + EPOCH_WEEKDAY_SHIFT) % DAYS_PER_WEEK).astype(np.int64)
    hod = np.where(valid, hod, 0)
    dow = np.where(valid, dow, 0)
    s_hour = st.hour[rows, hod] * use_hour
    s_week = st.weekday[rows, dow] * use_weekday

    phi = p.trend_damping
    damp = phi * (1.0 - phi**steps) / (1.0 - phi) if phi < 1.0 else steps
    level_pred = st.level[rows] + st.trend[rows] * damp
    y_hat = np.where(first, y, level_pred + s_hour + s_week)
    residual = np.where(valid, y - y_hat, 0.0)

    with np.errstate(over="ignore"):
        poisson_floor = 1.0 / np.sqrt(np.exp(np.minimum(y_hat, 700.0)))  # 1/sqrt(mu + 1)
    floor = np.where(is_count, poisson_floor, st.floor[rows])
    raw_sigma = np.maximum(MAD_TO_SIGMA * st.scale[rows], floor)
    raw_z = np.where(first | ~valid, 0.0, residual / raw_sigma)
    # Heavy tails: widen sigma so the tracked |z| quantile sits where a normal's would.
    normal_q = _normal_quantile(0.5 + p.tail_quantile / 2.0)
    calibration = np.maximum(np.exp(st.tail[rows]) / normal_q, 1.0)
    sigma = raw_sigma * calibration
    z = raw_z / calibration

    warm = n >= p.warmup_points
    zc = np.clip(z, -p.cusum_clip, p.cusum_clip)
    cusum_pos = np.where(warm, np.maximum(0.0, st.cusum_pos[rows] + zc - p.cusum_drift), 0.0)
    cusum_neg = np.where(warm, np.maximum(0.0, st.cusum_neg[rows] - zc - p.cusum_drift), 0.0)
    cusum_evidence = p.band_k * np.maximum(cusum_pos, cusum_neg) / p.cusum_limit
    evidence = np.maximum(np.abs(z), cusum_evidence)
    if p.volatility_limit > 0:
        z2 = np.minimum(z * z, p.cusum_clip**2)
        cusum_var = np.where(warm, np.maximum(0.0, st.cusum_var[rows] + z2 - 1.0 - p.volatility_drift), 0.0)
        volatility_evidence = p.band_k * cusum_var / p.volatility_limit
        evidence = np.maximum(evidence, volatility_evidence)
        cusum_var = np.where(volatility_evidence >= p.band_k, 0.0, cusum_var)
    else:
        cusum_var = st.cusum_var[rows]
    peak = st.peak[rows] * p.refractory_decay
    ongoing = (evidence <= peak) & (evidence > p.band_k * 0.5)
    peak = np.maximum(peak, np.where(evidence > p.band_k * 0.5, evidence, 0.0))
    evidence = np.where(ongoing, evidence * p.refractory_factor, evidence)
    anomaly_score = np.where(valid, 1.0 - np.exp2(-((evidence / p.band_k) ** 2)), 0.0)
    is_anomaly = warm & valid & (anomaly_score >= p.threshold)
    drifted = cusum_evidence >= p.band_k
    cusum_pos = np.where(drifted, 0.0, cusum_pos)
    cusum_neg = np.where(drifted, 0.0, cusum_neg)

    # Level shift: several exceedances on the same side in a row.
    side = np.sign(z).astype(np.int64) * (np.abs(z) > p.band_k)
    prev_run = st.run[rows]
    run = np.where(side == 0, 0, np.where(np.sign(prev_run) == side, prev_run + side, side))
    shifted = np.abs(run) >= p.shift_run

    # Robust learning: winsorised residual, shares allotted in turn so the
    # components never over-correct together while the state is cold.
    clip_at = np.where(warm, p.winsor_k, np.inf) * sigma
    learn = np.where(shifted, residual, np.clip(residual, -clip_at, clip_at))
    alpha = np.where(shifted, 1.0, np.maximum(p.level_alpha, 1.0 / (n + 1.0)))
    level_new = level_pred + alpha * learn
    trend_new = phi * st.trend[rows] + alpha * p.trend_beta * learn * (~shifted)
    rest = (1.0 - alpha) * learn
    hour_n = st.hour_n[rows, hod]
    g_hour = np.maximum(p.hour_gamma, 1.0 / (hour_n + 1.0)) * use_hour
    hour_new = s_hour + g_hour * rest
    rest = (1.0 - g_hour) * rest
    weekday_n = st.weekday_n[rows, dow]
    per_day = np.where(known, np.minimum(period / SECONDS_PER_DAY, 1.0), 1.0 / HOURS_PER_DAY)
    g_week = np.maximum(p.weekday_gamma * per_day, 1.0 / (weekday_n + 1.0)) * use_weekday
    weekday_new = s_week + g_week * rest

    eta = np.maximum(p.scale_eta, 1.0 / np.maximum(n, 1.0))
    abs_res = np.minimum(np.abs(residual), np.where(warm, 3.5 * sigma, np.inf))
    scale_new = np.where(first, 0.0, st.scale[rows] + eta * (abs_res - st.scale[rows]))

    # Commit learning for valid points only.
    v = valid
    rv = rows[v]
    st.level[rv] = np.where(first[v], y[v], level_new[v])
    st.trend[rv] = np.where(first[v], 0.0, trend_new[v])
    st.hour[rv, hod[v]] = np.where(first[v], 0.0, hour_new[v])
    st.hour_n[rv, hod[v]] += 1
    st.weekday[rv, dow[v]] = np.where(first[v], 0.0, weekday_new[v])
    st.weekday_n[rv, dow[v]] += 1
    st.scale[rv] = np.where(first[v] & ~shifted[v], 0.0, scale_new[v])
    st.cusum_pos[rv] = np.where(shifted[v], 0.0, cusum_pos[v])
    st.cusum_neg[rv] = np.where(shifted[v], 0.0, cusum_neg[v])
    st.run[rv] = np.where(shifted[v], 0, run[v])
    st.cusum_var[rv] = cusum_var[v]
    st.peak[rv] = peak[v]
    exceeded = (np.abs(raw_z) > np.exp(st.tail[rows])).astype(float)
    tail_step = p.tail_rate * (exceeded - (1.0 - p.tail_quantile)) / (1.0 - p.tail_quantile)
    tail_new = np.where(n < 2, np.log(normal_q), st.tail[rows] + np.where(warm, tail_step, 0.0))
    st.tail[rv] = tail_new[v]
    st.n[rv] += 1
    st.last_t[rv] = t[v]

    expected = _inverse(y_hat, use_log, offset)
    lower = _inverse(y_hat - p.band_k * sigma, use_log, offset)
    upper = _inverse(y_hat + p.band_k * sigma, use_log, offset)
    coverage = np.where(use_hour, np.minimum(hour_n / 3.0, 1.0), 1.0)
    confidence = np.where(valid, np.minimum(n / p.warmup_points, 1.0) * coverage, 0.0)
    return BatchScores(
        expected=np.where(valid, expected, np.nan),
        lower=np.where(valid, lower, np.nan),
        upper=np.where(valid, upper, np.nan),
        anomaly_score=anomaly_score,
        is_anomaly=is_anomaly,
        confidence=confidence,
        center=y_hat,
        sigma=sigma,
    )


def score_points(
    state: BaselineState,
    params: BaselineParams,
    points: pd.DataFrame,
) -> pd.DataFrame:
    """Score a frame of points of many series causally, updating ``state``.

    Points are taken in time order within each series; round r advances every
    series by its r-th point in one vectorised :func:`score_batch` call. Unknown
    series start cold (transform chosen from their first value).

    Args:
        state: States, updated in place.
        params: Hyper-parameters.
        points: ``timestamp`` (UTC), ``value`` and ``series_key`` columns.

    Returns:
        The output columns, indexed like ``points``.
    """
    keys = points[SERIES_KEY].astype(str).to_numpy() if SERIES_KEY in points else None
    if keys is None:
        keys = np.full(len(points), DEFAULT_SERIES)
    seconds = epoch_seconds(points[TIMESTAMP])
    values = points[VALUE].to_numpy(dtype=float)
    for key in pd.unique(keys):
        if not state.has(key):
            first_values = _earliest_value(keys == key, seconds, values)
            state.add_series(key, choose_transform(first_values, params.relative_floor))
    rows = state.index_of(list(keys))
    order = np.lexsort((np.arange(len(points)), seconds, rows))
    sorted_rows = rows[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_rows)) + 1]
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    out = {name: np.zeros(len(points)) for name in ("expected", "lower", "upper", "anomaly_score", "confidence")}
    out["is_anomaly"] = np.zeros(len(points), bool)
    by_rank = np.argsort(rank, kind="stable")
    rank_sorted = rank[by_rank]
    bounds = np.r_[0, np.flatnonzero(np.diff(rank_sorted)) + 1, len(rank_sorted)]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        pos = order[by_rank[lo:hi]]
        res = score_batch(state, params, rows[pos], seconds[pos], values[pos])
        for name in out:
            out[name][pos] = getattr(res, name)
    return pd.DataFrame(out, index=points.index)[
        ["expected", "lower", "upper", "anomaly_score", "is_anomaly", "confidence"]
    ]


def fit_state(
    history: pd.DataFrame, params: BaselineParams, state: BaselineState | None = None
) -> BaselineState:
    """Warm a state on history: transform and period from the data, then replay it.

    Args:
        history: ``timestamp``, ``value``, ``series_key`` points.
        params: Hyper-parameters.
        state: Existing state to extend (a new one by default).

    Returns:
        The state after the last historical point of every series.
    """
    state = register_series(history, params, state)
    score_points(state, params, history)
    return state


def register_series(history: pd.DataFrame, params: BaselineParams, state: BaselineState | None = None) -> BaselineState:
    """Track the series of ``history`` with the transform and period :func:`fit_state` picks
    from their whole history (a cold state that replays history as the fitted one learnt it)."""
    state = state if state is not None else BaselineState()
    for key, part in history.groupby(SERIES_KEY, sort=False):
        seconds = epoch_seconds(part[TIMESTAMP])
        transform = choose_transform(part[VALUE].to_numpy(float), params.relative_floor)
        if not state.has(str(key)):
            state.add_series(str(key), transform, infer_period_seconds(seconds))
    return state


def _earliest_value(mask: np.ndarray, seconds: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The series' first finite value in time (the cold-start transform is chosen from it)."""
    ok = mask & np.isfinite(values)
    if not ok.any():
        return values[:0]
    idx = np.flatnonzero(ok)
    return values[idx[np.argmin(seconds[idx])]][None]

"""Challenger: additive ETS (Holt-Winters) with statsforecast-fitted smoothing.

A different family from the seasonal baseline: smoothing parameters are fitted
by maximum likelihood (``statsforecast.models.AutoETS``, additive error, trend
and season chosen by AICc) on a regular-grid copy of the history, residuals are
taken at face value (no winsorising, no CUSUM) and the band comes from the
Gaussian one-step variance, tracked online. Scoring is causal and O(1) per
point: the ETS recursions in error-correction form, with the seasonal slot read
from the timestamp's hour of day so gaps do not shift the season.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from models.seasonal_baseline import BatchScores, choose_transform
from models.series import (
    DEFAULT_SERIES,
    SECONDS_PER_HOUR,
    SERIES_KEY,
    TIMESTAMP,
    VALUE,
    epoch_seconds,
    infer_period_seconds,
)

SLOTS = 24


@dataclass(frozen=True)
class EtsParams:
    """Settings shared by all series; smoothing defaults for series never fitted.

    Attributes:
        alpha: Level smoothing (cold series).
        beta: Trend smoothing (cold series).
        gamma: Seasonal smoothing (cold series).
        phi: Trend damping (cold series).
        band_k: Band half-width in sigmas (anomaly_score 0.5 at the edge).
        variance_rate: Online update rate of the one-step variance.
        warmup_points: Points before alarms are allowed.
        threshold: anomaly_score at or above which a point is an anomaly.
        max_fit_points: History points used to fit (most recent).
    """

    alpha: float = 0.2
    beta: float = 0.01
    gamma: float = 0.1
    phi: float = 0.98
    band_k: float = 4.0
    variance_rate: float = 0.01
    warmup_points: int = 48
    threshold: float = 0.5
    max_fit_points: int = 2000

    def to_dict(self) -> dict:
        """Plain dict (for MLflow params)."""
        return asdict(self)


@dataclass
class EtsState:
    """Per-series ETS states (numpy rows)."""

    keys: list[str] = field(default_factory=list)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    SCALARS = ["use_log", "offset", "alpha", "beta", "gamma", "phi", "level", "trend", "variance", "n", "last_t", "seasonal"]

    def __post_init__(self) -> None:
        self._index = {k: i for i, k in enumerate(self.keys)}
        for name in self.SCALARS:
            self.arrays.setdefault(name, np.zeros(len(self.keys)))
        self.arrays.setdefault("season", np.zeros((len(self.keys), SLOTS)))

    def has(self, key: str) -> bool:
        """Whether the series is tracked."""
        return key in self._index

    def add_series(self, key: str, values: dict) -> int:
        """Track a series with the given initial scalars/season."""
        row = len(self.keys)
        self.keys.append(key)
        self._index[key] = row
        for name in self.SCALARS:
            self.arrays[name] = np.append(self.arrays[name], float(values.get(name, 0.0)))
        season = np.asarray(values.get("season", np.zeros(SLOTS)), float).reshape(1, SLOTS)
        self.arrays["season"] = np.concatenate([self.arrays["season"], season])
        return row

    def index_of(self, keys: list[str]) -> np.ndarray:
        """Rows of keys."""
        return np.fromiter((self._index[k] for k in keys), np.int64, len(keys))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Serialisable form."""
        return {**self.arrays, "keys": np.asarray(self.keys, dtype=str)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> EtsState:
        """Inverse of :meth:`to_arrays`."""
        keys = [str(k) for k in arrays["keys"]]
        return cls(keys, {k: np.array(v) for k, v in arrays.items() if k != "keys"})

    def copy(self) -> EtsState:
        """Deep copy."""
        return EtsState.from_arrays({k: np.array(v) for k, v in self.to_arrays().items()})


def _cold_values(params: EtsParams, first_values: np.ndarray) -> dict:
    tf = choose_transform(first_values)
    return {
        "use_log": float(tf.use_log),
        "offset": tf.offset,
        "alpha": params.alpha,
        "beta": params.beta,
        "gamma": params.gamma,
        "phi": params.phi,
        "seasonal": 1.0,
        "last_t": np.nan,
    }


def fit_series(seconds: np.ndarray, values: np.ndarray, params: EtsParams) -> dict:
    """Fit smoothing parameters of one series with statsforecast's AutoETS.

    The history is put on its own sampling grid (gaps linearly interpolated) in
    the transformed space; the season is daily when the period is at most one
    hour, and the fit falls back to defaults when history is too short.

    Returns:
        Initial values for :meth:`EtsState.add_series` (state is *not* advanced).
    """
    from statsforecast.models import AutoETS

    out = _cold_values(params, values)
    tf = choose_transform(values)
    period = infer_period_seconds(seconds)
    seasonal = period <= SECONDS_PER_HOUR
    y = np.log(np.maximum(values + tf.offset, 1e-300)) if tf.use_log else values.astype(float)
    grid = pd.Series(y, index=pd.to_datetime(seconds, unit="s")).groupby(level=0).mean()
    grid = grid.resample(pd.Timedelta(seconds=period)).mean().interpolate(limit_direction="both")
    grid = grid.iloc[-params.max_fit_points :]
    season_length = int(round(86400 / period)) if seasonal else 1
    if len(grid) < 2 * max(season_length, 24):
        return out
    model_code = "ZZA" if seasonal and season_length > 1 else "ZZN"
    try:
        fitted = AutoETS(season_length=season_length, model=model_code.replace("Z", "A", 1)).fit(grid.to_numpy())
    except Exception:  # noqa: BLE001 - any fit failure keeps the robust defaults
        return out
    par = fitted.model_["par"]
    components = fitted.model_["components"]
    alpha, beta, gamma, phi = (float(v) if np.isfinite(v) else 0.0 for v in par[:4])
    out.update(
        alpha=alpha,
        beta=beta if components[1] == "A" else 0.0,
        gamma=gamma if components[2] == "A" else 0.0,
        phi=phi if components[3] == "D" else 1.0,
        seasonal=float(components[2] == "A"),
        variance=float(fitted.model_["sigma2"]),
    )
    return out


def score_batch(state: EtsState, params: EtsParams, rows: np.ndarray, seconds: np.ndarray, values: np.ndarray) -> BatchScores:
    """Score one point per series (distinct rows), then update the ETS recursions."""
    a = state.arrays
    x = np.asarray(values, float)
    t = np.asarray(seconds, float)
    valid = np.isfinite(x) & np.isfinite(t)
    use_log = a["use_log"][rows] > 0
    offset = a["offset"][rows]
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.where(use_log, np.log(np.maximum(x + offset, 1e-300)), x)
    n = a["n"][rows]
    first = n == 0
    slot = np.where(valid, (np.floor(t / SECONDS_PER_HOUR) % SLOTS).astype(np.int64), 0)
    season = a["season"][rows, slot] * a["seasonal"][rows]
    phi = a["phi"][rows]
    level, trend = a["level"][rows], a["trend"][rows]
    y_hat = np.where(first, y, level + phi * trend + season)
    error = np.where(valid & ~first, y - y_hat, 0.0)
    variance = a["variance"][rows]
    sigma = np.sqrt(np.maximum(variance, 1e-18))
    z = np.where(variance > 0, error / sigma, 0.0)
    warm = n >= params.warmup_points
    score = np.where(valid, 1.0 - np.exp2(-((z / params.band_k) ** 2)), 0.0)
    is_anomaly = warm & valid & (score >= params.threshold)

    cold = np.maximum(1.0 / (n + 1.0), 0.0)
    alpha = np.maximum(a["alpha"][rows], cold)
    level_new = np.where(first, y, level + phi * trend + alpha * error)
    trend_new = np.where(first, 0.0, phi * trend + a["beta"][rows] * error)
    gamma = np.maximum(a["gamma"][rows], np.where(n < 2 * SLOTS, 1.0 / (n / SLOTS + 1.0), 0.0))
    season_new = season + gamma * (1.0 - alpha) * error
    rate = np.maximum(params.variance_rate, 1.0 / np.maximum(n, 1.0))
    variance_new = np.where(first, 0.0, variance + rate * (error**2 - variance))

    rv = rows[valid]
    v = valid
    a["level"][rv] = level_new[v]
    a["trend"][rv] = trend_new[v]
    a["season"][rv, slot[v]] = season_new[v]
    a["variance"][rv] = variance_new[v]
    a["n"][rv] += 1
    a["last_t"][rv] = t[v]

    def back(v_: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            return np.where(use_log, np.maximum(np.exp(np.minimum(v_, 700.0)) - offset, 0.0), v_)

    confidence = np.where(valid, np.minimum(n / params.warmup_points, 1.0), 0.0)
    return BatchScores(
        expected=np.where(valid, back(y_hat), np.nan),
        lower=np.where(valid, back(y_hat - params.band_k * sigma), np.nan),
        upper=np.where(valid, back(y_hat + params.band_k * sigma), np.nan),
        anomaly_score=score,
        is_anomaly=is_anomaly,
        confidence=confidence,
    )


def score_points(state: EtsState, params: EtsParams, points: pd.DataFrame) -> pd.DataFrame:
    """Causal scoring of many series (see :func:`models.seasonal_baseline.score_points`)."""
    keys = points[SERIES_KEY].astype(str).to_numpy() if SERIES_KEY in points else np.full(len(points), DEFAULT_SERIES)
    seconds = epoch_seconds(points[TIMESTAMP])
    values = points[VALUE].to_numpy(dtype=float)
    for key in pd.unique(keys):
        if not state.has(key):
            first = _earliest_value(keys == key, seconds, values)
            state.add_series(key, _cold_values(params, first))
    rows = state.index_of(list(keys))
    order = np.lexsort((np.arange(len(points)), seconds, rows))
    sorted_rows = rows[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_rows)) + 1]
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    names = ("expected", "lower", "upper", "anomaly_score", "is_anomaly", "confidence")
    out = {name: np.zeros(len(points), bool if name == "is_anomaly" else float) for name in names}
    by_rank = np.argsort(rank, kind="stable")
    bounds = np.r_[0, np.flatnonzero(np.diff(rank[by_rank])) + 1, len(order)]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        pos = order[by_rank[lo:hi]]
        res = score_batch(state, params, rows[pos], seconds[pos], values[pos])
        for name in names:
            out[name][pos] = getattr(res, name)
    return pd.DataFrame(out, index=points.index)[list(names)]


def fit_state(history: pd.DataFrame, params: EtsParams, state: EtsState | None = None) -> EtsState:
    """Fit each series' smoothing on its history, then replay the history online."""
    state = register_series(history, params, state)
    score_points(state, params, history)
    return state


def register_series(history: pd.DataFrame, params: EtsParams, state: EtsState | None = None) -> EtsState:
    """Track the series of ``history`` as :func:`fit_state` does, without learning from it."""
    state = state if state is not None else EtsState()
    for key, part in history.groupby(SERIES_KEY, sort=False):
        if not state.has(str(key)):
            state.add_series(
                str(key), fit_series(epoch_seconds(part[TIMESTAMP]), part[VALUE].to_numpy(float), params)
            )
    return state


def _earliest_value(mask: np.ndarray, seconds: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The series' first finite value in time (the cold-start transform is chosen from it)."""
    ok = mask & np.isfinite(values)
    if not ok.any():
        return values[:0]
    idx = np.flatnonzero(ok)
    return values[idx[np.argmin(seconds[idx])]][None]

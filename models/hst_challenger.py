"""Challenger of another family: streaming Half-Space Trees (river) on a shingle of the series.

Half-Space Trees (Tan, Ting & Liu 2011) is an isolation-forest-like detector built for
streams: random half-space splits of the feature box, node masses counted over a reference
window and swapped with the latest window every ``window_size`` points, anomaly score = how
little mass the point's leaves hold. It needs no seasonal history and works from a cold start,
which is why it contests the ensemble at the promotion gate. Here each series gets its own
forest (``river.anomaly.HalfSpaceTrees``) fed with a shingle of the last ``shingle`` values,
standardised by an exponentially weighted robust level and scale (variance-stabilised like the
other families) and squashed into [0, 1]. The band (``expected/lower/upper``) is that level ±
``band_k`` scales.

Scoring is causal and O(trees x height) per point, but per point in Python (one forest per
series): a few thousand points per second, fine for evaluation and a handful of KPIs, not for
the 200k points/s the champion must sustain.
"""

from __future__ import annotations

import pickle
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from river.anomaly import HalfSpaceTrees

from models import seasonal_baseline as sb
from models.series import (
    DEFAULT_SERIES,
    OUTPUT_COLUMNS,
    SERIES_KEY,
    TIMESTAMP,
    VALUE,
    epoch_seconds,
    series_rounds,
)


@dataclass(frozen=True)
class HstParams:
    """Settings shared by every series.

    Attributes:
        n_trees: Trees per forest.
        height: Tree height.
        window_size: Points per reference window.
        shingle: Consecutive standardised values in one feature vector.
        level_alpha: Smoothing of the level used to standardise.
        scale_eta: Smoothing of the robust scale.
        squash: Standardised values are mapped by ``1 / (1 + exp(-z / squash))``.
        band_k: Band half-width in scales.
        warmup_points: Points before alarms are allowed (a reference window).
        threshold: anomaly_score at or above which a point is an anomaly.
        seed: Random seed of the forests.
    """

    n_trees: int = 25
    height: int = 8
    window_size: int = 100
    shingle: int = 1
    level_alpha: float = 0.1
    scale_eta: float = 0.02
    squash: float = 3.0
    band_k: float = 4.0
    warmup_points: int = 100
    threshold: float = 0.8
    seed: int = 7

    def to_dict(self) -> dict:
        """Plain dict (for MLflow params and JSON)."""
        return asdict(self)


@dataclass
class HstState:
    """Per-series forests and standardisation state."""

    keys: list[str] = field(default_factory=list)
    series: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._index = {k: i for i, k in enumerate(self.keys)}

    def has(self, key: str) -> bool:
        """Whether the series is tracked."""
        return key in self._index

    def index_of(self, keys: list[str]) -> np.ndarray:
        """Row of each key (must exist)."""
        return np.fromiter((self._index[k] for k in keys), np.int64, len(keys))

    @property
    def last_t(self) -> np.ndarray:
        """Epoch seconds of each series' last learnt point."""
        return np.array([s["last_t"] for s in self.series], float)

    def add_series(self, key: str, transform: sb.SeriesTransform, params: HstParams) -> int:
        """Track a new series with a fresh forest."""
        if key in self._index:
            return self._index[key]
        self._index[key] = len(self.keys)
        self.keys.append(key)
        forest = HalfSpaceTrees(n_trees=params.n_trees, height=params.height, window_size=params.window_size, seed=params.seed)
        self.series.append({"transform": transform, "forest": forest, "n": 0, "level": 0.0, "scale": 0.0, "recent": [], "last_t": np.nan})
        return self._index[key]

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Serialisable form: keys and one pickled blob of the forests (own artifacts only)."""
        blob = np.frombuffer(pickle.dumps(self.series), np.uint8)
        return {"keys": np.asarray(self.keys, dtype=str), "blob": blob}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> HstState:
        """Inverse of :meth:`to_arrays`."""
        return cls([str(k) for k in arrays["keys"]], pickle.loads(np.asarray(arrays["blob"], np.uint8).tobytes()))  # noqa: S301 - our own artifact

    def subset(self, keys: list[str]) -> HstState:
        """A copy of some series only."""
        rows = self.index_of(list(keys))
        return HstState([self.keys[r] for r in rows], pickle.loads(pickle.dumps([self.series[r] for r in rows])))  # noqa: S301

    def copy(self) -> HstState:
        """Deep copy (scoring mutates state)."""
        return HstState.from_arrays(self.to_arrays())


def _step(s: dict, params: HstParams, t: float, x: float) -> tuple[float, float, float, float, float]:
    """Score one point of one series, then learn it: (expected, lower, upper, score, confidence)."""
    tr: sb.SeriesTransform = s["transform"]
    y = float(np.log(max(x + tr.offset, 1e-300))) if tr.use_log else x
    n = s["n"]
    if n == 0:
        s["level"], s["scale"] = y, 0.0
    sigma = max(sb.MAD_TO_SIGMA * s["scale"], tr.floor if not tr.is_count else 1.0 / np.sqrt(np.exp(min(s["level"], 700.0))), 1e-9)
    z = (y - s["level"]) / sigma
    recent = [*s["recent"], z][-params.shingle :]
    padded = [0.0] * (params.shingle - len(recent)) + recent
    features = {i: 1.0 / (1.0 + np.exp(-v / params.squash)) for i, v in enumerate(padded)}
    score = float(s["forest"].score_one(features)) if n >= params.warmup_points else 0.0
    s["forest"].learn_one(features)
    clipped = float(np.clip(y - s["level"], -4.0 * sigma, 4.0 * sigma)) if n > 10 else y - s["level"]
    s["level"] += max(params.level_alpha, 1.0 / (n + 1.0)) * clipped
    s["scale"] += max(params.scale_eta, 1.0 / max(n, 1.0)) * (min(abs(y - s["level"]), 4.0 * sigma) - s["scale"]) if n else 0.0
    s["recent"], s["n"], s["last_t"] = recent, n + 1, t
    centre = s["level"] - max(params.level_alpha, 1.0 / (n + 1.0)) * clipped  # the level the point was scored against
    bounds = [centre, centre - params.band_k * sigma, centre + params.band_k * sigma]
    values = [float(max(np.exp(min(b, 700.0)) - tr.offset, 0.0)) if tr.use_log else b for b in bounds]
    return values[0], values[1], values[2], score, min(n / params.warmup_points, 1.0)


def score_points(state: HstState, params: HstParams, points: pd.DataFrame) -> pd.DataFrame:
    """Score a frame of points of many series causally, updating ``state``."""
    keys = points[SERIES_KEY].astype(str).to_numpy() if SERIES_KEY in points else np.full(len(points), DEFAULT_SERIES)
    seconds = epoch_seconds(points[TIMESTAMP])
    values = points[VALUE].to_numpy(dtype=float)
    for key in pd.unique(keys):
        if not state.has(key):
            state.add_series(key, sb.choose_transform(sb._earliest_value(keys == key, seconds, values)), params)
    rows = state.index_of(list(keys))
    out = np.zeros((len(points), 5))
    for pos in series_rounds(rows, seconds):
        for i in pos:
            if np.isfinite(values[i]):
                out[i] = _step(state.series[rows[i]], params, seconds[i], values[i])
            else:
                out[i] = [np.nan, np.nan, np.nan, 0.0, 0.0]
    frame = pd.DataFrame(out, columns=["expected", "lower", "upper", "anomaly_score", "confidence"], index=points.index)
    frame["is_anomaly"] = frame["anomaly_score"] >= params.threshold
    return frame[OUTPUT_COLUMNS]


def fit_state(history: pd.DataFrame, params: HstParams, state: HstState | None = None) -> HstState:
    """Warm a state on history: transform from the data, then replay it."""
    state = register_series(history, params, state)
    score_points(state, params, history)
    return state


def register_series(history: pd.DataFrame, params: HstParams, state: HstState | None = None) -> HstState:
    """Track the series of ``history`` as :func:`fit_state` does, without learning from it."""
    state = state if state is not None else HstState()
    for key, part in history.groupby(SERIES_KEY, sort=False):
        if not state.has(str(key)):
            state.add_series(str(key), sb.choose_transform(part[VALUE].to_numpy(float)), params)
    return state


__all__ = ["HstParams", "HstState", "fit_state", "register_series", "score_points"]

"""One interface over both detector families: fit on history, score causally."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from models import ensemble, ets_challenger, hst_challenger, seasonal_baseline
from models.series import (
    DENOMINATOR,
    EXPOSURE,
    NUMERATOR,
    OUTPUT_COLUMNS,
    SERIES_KEY,
    TEST_SCORE,
    TIMESTAMP,
    VALUE,
    normalise_points,
)

BASELINE = "seasonal_baseline"
ETS = "ets"
ENSEMBLE = "cold_start_ensemble"
HST = "half_space_trees"
KINDS = (ENSEMBLE, BASELINE, ETS, HST)
# family -> (module, params class, state class)
FAMILIES = {
    ENSEMBLE: (ensemble, ensemble.EnsembleParams, ensemble.EnsembleState),
    BASELINE: (seasonal_baseline, seasonal_baseline.BaselineParams, seasonal_baseline.BaselineState),
    ETS: (ets_challenger, ets_challenger.EtsParams, ets_challenger.EtsState),
    HST: (hst_challenger, hst_challenger.HstParams, hst_challenger.HstState),
}


@dataclass
class KpiScorer:
    """Stateful anomaly scorer of many KPI series (one state per ``series_key``).

    ``score`` is causal: each point is scored against the state built from the
    points before it, then learnt. Keep one instance alive to score a stream
    micro-batch by micro-batch; call :meth:`copy` to score without side effects.

    Attributes:
        kind: ``"cold_start_ensemble"`` (champion family), ``"half_space_trees"`` (challenger),
            ``"seasonal_baseline"`` or ``"ets"``.
        params: Hyper-parameters of that family.
        state: Per-series online state.
        page_thresholds: Per-series paging threshold on ``anomaly_score`` set by an alert
            budget on the series' own history (:func:`models.alert_budget.budget_thresholds`);
            series without one page at ``params.threshold``.
        open_thresholds: Per-series paging threshold of open windows, budgeted on the
            open-window score (:func:`models.alert_budget.open_window_thresholds`); series
            without one fall back to their ``page_thresholds`` entry.
    """

    kind: str = BASELINE
    params: seasonal_baseline.BaselineParams | ets_challenger.EtsParams = field(
        default_factory=seasonal_baseline.BaselineParams
    )
    state: seasonal_baseline.BaselineState | ets_challenger.EtsState | ensemble.EnsembleState | None = None
    page_thresholds: dict[str, float] = field(default_factory=dict)
    open_thresholds: dict[str, float] = field(default_factory=dict)

    @classmethod
    def new(cls, kind: str = ENSEMBLE, **overrides: float) -> KpiScorer:
        """Fresh scorer of a family with optional hyper-parameter overrides."""
        if kind not in FAMILIES:
            raise ValueError(f"unknown model kind {kind!r}; expected one of {KINDS}")
        _, params, state = FAMILIES[kind]
        return cls(kind, params(**overrides), state())

    @property
    def _module(self):  # noqa: ANN202 - module dispatch
        return FAMILIES[self.kind][0]

    def fit(self, history: pd.DataFrame, **columns: str) -> KpiScorer:
        """Learn each series' state from its history (transform, period, season, scale).

        Args:
            history: Points with ``timestamp``, ``value`` and optional ``series_key``
                (other names via ``timestamp_col=``, ``value_col=``, ``series_col=``).

        Returns:
            ``self``.
        """
        points = normalise_points(history, **columns)
        self.state = self._module.fit_state(points, self.params, self.state)
        return self

    def score(self, frame: pd.DataFrame, **columns: str) -> pd.DataFrame:
        """Score points causally and learn from them.

        Args:
            frame: Points with ``timestamp``, ``value``, optional ``series_key``.

        Returns:
            ``expected, lower, upper, anomaly_score, is_anomaly, confidence`` indexed
            like ``frame``; with ``test_score`` (the sequential count/ratio tests' score alone)
            too when ``frame`` has counts (``numerator``/``denominator``, ``exposure``) and the
            family tests them.
        """
        points = normalise_points(frame, **columns)
        if self.state is None:
            self.state = FAMILIES[self.kind][2]()
        self._sync_alarm_levels(points[SERIES_KEY])
        scored = self._module.score_points(self.state, self.params, points)
        tests = TEST_SCORE in scored and (EXPOSURE in points or (NUMERATOR in points and DENOMINATOR in points))
        scored = scored[[*OUTPUT_COLUMNS, TEST_SCORE] if tests else OUTPUT_COLUMNS]
        if self.page_thresholds:
            keys = points[SERIES_KEY].map(self.page_thresholds).astype(float)
            threshold = keys.fillna(self.params.threshold).to_numpy()
            score = scored["anomaly_score"].to_numpy()
            scored["is_anomaly"] = (score >= threshold) & (score > 0)
        return scored

    def _sync_alarm_levels(self, keys: pd.Series) -> None:
        """Hand each tracked series' paging threshold to the ensemble state, whose alarm
        suppression starts at it (not at the family's default threshold)."""
        arrays = getattr(self.state, "arrays", None)
        if not self.page_thresholds or arrays is None or "alarm_at" not in arrays:
            return
        known = [k for k in pd.unique(keys.astype(str)) if k in self.page_thresholds and self.state.has(k)]
        if known:
            arrays["alarm_at"][self.state.index_of(known)] = [self.page_thresholds[k] for k in known]

    def replay(self, history: pd.DataFrame, **columns: str) -> pd.DataFrame:
        """Scores of ``history`` as this scorer's family learns it from a cold state, with the
        transforms and periods :meth:`fit` picks from the whole history (a plain cold copy picks
        a series' transform from its first value: a ratio starting at 0 would be read as a
        count and its band would be far wider than the fitted scorer's).

        The replay never alarms: no suppression after an alarm, no restart of a sequential
        test, so the budget sees every score a series reaches on its history — at whatever
        threshold it tries, not only up to the family's default, where an alarm would have
        restarted the test (live, alarms start at the budget's threshold). Alert budgets are
        set on these scores."""
        points = normalise_points(history, **columns)
        cold = self.cold_copy()
        cold.state = self._module.register_series(points, cold.params)
        cold.page_thresholds = {str(k): np.inf for k in pd.unique(points[SERIES_KEY])}
        scored = cold.score(points)
        scored["is_anomaly"] = scored["anomaly_score"].to_numpy() >= self.params.threshold
        return scored

    def preview(self, frame: pd.DataFrame, **columns: str) -> pd.DataFrame:
        """Score points without learning from them (an open window, a what-if).

        Only the series in ``frame`` are copied, so the cost does not grow with the number
        of series the scorer tracks.
        """
        points = normalise_points(frame, **columns)
        keys = [k for k in pd.unique(points[SERIES_KEY]) if self.state is not None and self.state.has(k)]
        probe = KpiScorer(self.kind, self.params, subset_state(self.state, keys) if keys else None, self.page_thresholds, self.open_thresholds)
        return probe.score(points)

    def paging_threshold(self, keys: pd.Series) -> np.ndarray:
        """Paging threshold of each series (alert budget, else the family's threshold)."""
        return keys.map(self.page_thresholds).astype(float).fillna(self.params.threshold).to_numpy()

    def open_threshold(self, keys: pd.Series) -> np.ndarray:
        """Paging threshold of each series' open windows (its open-window budget, else
        :meth:`paging_threshold`)."""
        return keys.map(self.open_thresholds).astype(float).fillna(pd.Series(self.paging_threshold(keys), index=keys.index)).to_numpy()

    def count_params(self):  # noqa: ANN201 - models.count_test.CountTestParams | None
        """Parameters of the family's count tests (:mod:`models.count_test`), if it runs them."""
        make = getattr(self.params, "count_params", None)
        return make() if make is not None else None

    def copy(self) -> KpiScorer:
        """Independent copy (state included)."""
        return KpiScorer(
            self.kind, self.params, self.state.copy() if self.state is not None else None, dict(self.page_thresholds), dict(self.open_thresholds)
        )

    def cold_copy(self) -> KpiScorer:
        """Same family and hyper-parameters, no series state."""
        return KpiScorer.new(self.kind, **self.params.to_dict())

    def save(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``state.npz`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"kind": self.kind, "params": self.params.to_dict(), "page_thresholds": self.page_thresholds, "open_thresholds": self.open_thresholds}
        (directory / "config.json").write_text(json.dumps(config, indent=2))
        arrays = self.state.to_arrays() if self.state is not None else {}
        np.savez_compressed(directory / "state.npz", **arrays)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> KpiScorer:
        """Inverse of :meth:`save`."""
        directory = Path(directory)
        config = json.loads((directory / "config.json").read_text())
        scorer = cls.new(config["kind"], **config["params"])
        scorer.page_thresholds = {str(k): float(v) for k, v in config.get("page_thresholds", {}).items()}
        scorer.open_thresholds = {str(k): float(v) for k, v in config.get("open_thresholds", {}).items()}
        with np.load(directory / "state.npz", allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        if arrays:
            scorer.state = FAMILIES[scorer.kind][2].from_arrays(arrays)
        return scorer


def subset_state(state, keys: list[str]):  # noqa: ANN001, ANN201 - any family's state
    """A copy of the state of some series only (arrays indexed by series are sliced)."""
    if hasattr(state, "subset"):
        return state.subset(keys)
    rows = state.index_of(list(keys))
    n = len(state.keys)
    arrays = {}
    for name, value in state.to_arrays().items():
        if value.ndim >= 1 and len(value) == n:
            arrays[name] = value[rows].copy()
        else:
            arrays[name] = value.copy()
    return type(state).from_arrays(arrays)


def score_with_probation(scorer: KpiScorer, points: pd.DataFrame, probation_rows: int) -> pd.DataFrame:
    """Benchmark protocol: learn on the first rows, then score the rest causally.

    A cold copy of ``scorer`` is fitted on ``points[:probation_rows]`` (NAB's
    probation period, never scored) and scores the remaining rows online; the
    probation rows get anomaly_score 0.
    """
    cold = scorer.cold_copy()
    head = points.iloc[:probation_rows]
    tail = points.iloc[probation_rows:]
    if len(head):
        cold.fit(head[[TIMESTAMP, VALUE]])
    scored = cold.score(tail[[TIMESTAMP, VALUE]])
    probation = pd.DataFrame(0.0, index=head.index, columns=OUTPUT_COLUMNS)
    probation["is_anomaly"] = False
    return pd.concat([probation, scored])[OUTPUT_COLUMNS]


__all__ = ["BASELINE", "ENSEMBLE", "ETS", "FAMILIES", "HST", "KINDS", "KpiScorer", "SERIES_KEY", "score_with_probation"]

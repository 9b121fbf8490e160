"""NAB scoring (Lavin & Ahmad 2015), re-implemented from the published method.

The Numenta Anomaly Benchmark scores a detector on labelled anomaly *windows*:

* the first detection inside a window earns a true-positive reward given by a
  scaled sigmoid of its relative position (earliest = ``tp_weight``, the right
  edge ~ 0); later detections in the same window earn nothing more;
* a window without detection costs ``fn_weight``;
* every detection outside windows costs ``fp_weight`` scaled by a sigmoid of its
  distance past the closest preceding window (full cost when there is none);
* the probation period (first 15 % of rows, at most 750) is not scored;
* one threshold is swept over the anomaly scores of the *whole corpus*, and the
  corpus total is normalised so that the null detector scores 0 and the perfect
  detector 100.

This follows NAB's ``sweeper.py`` (v1.1 scoring: TP rewards divided by the
sigmoid value at the left edge, so an earliest detection is worth exactly
``tp_weight``), ``runner.normalize`` and ``labeler.applyWindows``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

PROBATION_PERCENT = 0.15
WINDOW_SIZE_FRACTION = 0.10  # NAB labeler: total window length = 10 % of the file


@dataclass(frozen=True)
class CostProfile:
    """NAB application profile (cost matrix)."""

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float
    tn_weight: float = 1.0


STANDARD_PROFILES: dict[str, CostProfile] = {
    "standard": CostProfile("standard", 1.0, 0.11, 1.0),
    "reward_low_FP_rate": CostProfile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    "reward_low_FN_rate": CostProfile("reward_low_FN_rate", 1.0, 0.11, 2.0),
}


def load_profiles(path: str | Path) -> dict[str, CostProfile]:
    """Read NAB's ``profiles.json``.

    Args:
        path: Path of the JSON file (``{name: {"CostMatrix": {...}}}``).

    Returns:
        Profiles by name.
    """
    raw = json.loads(Path(path).read_text())
    return {
        name: CostProfile(
            name,
            float(body["CostMatrix"]["tpWeight"]),
            float(body["CostMatrix"]["fpWeight"]),
            float(body["CostMatrix"]["fnWeight"]),
            float(body["CostMatrix"].get("tnWeight", 1.0)),
        )
        for name, body in raw.items()
    }


def scaled_sigmoid(relative_position: float) -> float:
    """NAB's reward curve: ``2 / (1 + exp(5 x)) - 1``, and -1 from x >= 3 on.

    x = -1 is a window's left edge (0.9866), 0 its right edge (0), x > 0 lies past
    the window (negative, towards -1).
    """
    if relative_position >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * relative_position)) - 1.0


MAX_TP = scaled_sigmoid(-1.0)


def probation_length(n_rows: int, probation_percent: float = PROBATION_PERCENT) -> int:
    """Rows not scored at the start of a file: 15 % of the rows, at most 750."""
    return int(min(math.floor(probation_percent * n_rows), probation_percent * 5000))


def window_index_limits(
    timestamps: Sequence[pd.Timestamp] | pd.Series, windows: Sequence[tuple]
) -> list[tuple[int, int]]:
    """Map ``[start, end]`` timestamp windows to inclusive row-index limits.

    Args:
        timestamps: The file's timestamps, sorted ascending.
        windows: Window limits as timestamps (or parseable strings).

    Returns:
        ``(first_row, last_row)`` per non-empty window, in time order.
    """
    ts = _utc_nanos(pd.Series(timestamps))
    limits = []
    for start, end in sorted(windows, key=lambda w: _utc_nanos(pd.Series([w[0]]))[0]):
        lo = int(np.searchsorted(ts, _utc_nanos(pd.Series([start]))[0], side="left"))
        hi = int(np.searchsorted(ts, _utc_nanos(pd.Series([end]))[0], side="right")) - 1
        if hi >= lo:
            limits.append((lo, hi))
    return limits


def _utc_nanos(timestamps: pd.Series) -> np.ndarray:
    """Epoch nanoseconds; naive timestamps are read as UTC (NAB files are naive)."""
    return pd.to_datetime(timestamps, utc=True).astype("int64").to_numpy()


@dataclass
class ScoredPoints:
    """Per-row sweep weights of one file (NAB ``calcSweepScore``).

    Attributes:
        name: File name.
        anomaly_scores: Detector scores per row.
        weights: Reward (in a window) or cost (outside) if the row is detected.
        window_ids: Window id per row, -1 outside windows, -2 in probation.
        n_windows: Number of windows in the file.
    """

    name: str
    anomaly_scores: np.ndarray
    weights: np.ndarray
    window_ids: np.ndarray
    n_windows: int


def sweep_weights(
    name: str,
    anomaly_scores: np.ndarray,
    window_limits: Sequence[tuple[int, int]],
    profile: CostProfile,
    probation_percent: float = PROBATION_PERCENT,
) -> ScoredPoints:
    """Weight of each row if it were detected, as NAB's sweeper computes it.

    Inside a window of width w with right edge R, row i is worth
    ``tp_weight * sigmoid(-(R - i + 1) / w) / sigmoid(-1)``. Outside windows,
    a row is worth ``fp_weight * sigmoid(|R_prev - i| / (w_prev - 1))`` (-fp_weight
    when no window precedes it).
    """
    n = len(anomaly_scores)
    weights = np.zeros(n)
    window_ids = np.full(n, -1, dtype=int)
    probation = probation_length(n, probation_percent)
    limits = sorted(window_limits)
    prev_right, prev_width = None, None
    k = 0
    for i in range(n):
        while k < len(limits) and limits[k][1] < i:
            prev_right, prev_width = limits[k][1], float(limits[k][1] - limits[k][0] + 1)
            k += 1
        if k < len(limits) and limits[k][0] <= i <= limits[k][1]:
            left, right = limits[k]
            width = float(right - left + 1)
            weights[i] = scaled_sigmoid(-(right - i + 1) / width) * profile.tp_weight / MAX_TP
            window_ids[i] = k
        else:
            if prev_right is None:
                position = 3.0
            elif prev_width <= 1:
                position = 3.0  # NAB divides by zero here; a 1-row window has no tail
            else:
                position = abs(prev_right - i) / (prev_width - 1)
            weights[i] = scaled_sigmoid(position) * profile.fp_weight
        if i < probation:
            window_ids[i] = -2
    return ScoredPoints(name, np.asarray(anomaly_scores, float), weights, window_ids, len(limits))


@dataclass
class FileScore:
    """NAB score of one file at one threshold."""

    name: str
    score: float
    tp: int
    fp: int
    fn: int
    tn: int
    windows: int
    windows_detected: int
    alarms: int
    true_alarms: int

    @property
    def recall(self) -> float:
        """Share of windows detected (NAB counts one reward per window)."""
        return self.windows_detected / self.windows if self.windows else float("nan")

    @property
    def precision(self) -> float:
        """Share of alarm episodes (runs of consecutive detections) touching a window."""
        return self.true_alarms / self.alarms if self.alarms else float("nan")


def score_file(points: ScoredPoints, profile: CostProfile, threshold: float) -> FileScore:
    """Score one file with detections ``anomaly_score >= threshold``.

    Args:
        points: Output of :func:`sweep_weights` for the same profile.
        profile: Cost profile (for the FN weight).
        threshold: Detection threshold.

    Returns:
        Raw NAB score and counts (row counts as NAB reports them, plus alarm episodes).
    """
    scored = points.window_ids != -2
    detected = (points.anomaly_scores >= threshold) & scored
    in_window = points.window_ids >= 0
    score = float(points.weights[detected & ~in_window].sum())
    detected_windows = 0
    for w in range(points.n_windows):
        hits = detected & (points.window_ids == w)
        if hits.any():
            score += float(points.weights[hits].max())
            detected_windows += 1
        elif (points.window_ids == w).any():
            score -= profile.fn_weight
    # Windows entirely inside probation have no scored rows; NAB's labeler drops them.
    alarms, true_alarms = _alarm_episodes(detected, in_window)
    return FileScore(
        name=points.name,
        score=score,
        tp=int((detected & in_window).sum()),
        fp=int((detected & ~in_window).sum()),
        fn=int((~detected & in_window).sum()),
        tn=int((~detected & ~in_window & scored).sum()),
        windows=int(len(set(points.window_ids[in_window].tolist()))),
        windows_detected=detected_windows,
        alarms=alarms,
        true_alarms=true_alarms,
    )


def _alarm_episodes(detected: np.ndarray, in_window: np.ndarray) -> tuple[int, int]:
    starts = np.flatnonzero(detected & ~np.r_[False, detected[:-1]])
    ends = np.flatnonzero(detected & ~np.r_[detected[1:], False])
    true_alarms = sum(bool(in_window[s : e + 1].any()) for s, e in zip(starts, ends, strict=True))
    return len(starts), true_alarms


def score_curve(corpus: Sequence[ScoredPoints], profile: CostProfile) -> tuple[np.ndarray, np.ndarray]:
    """The corpus total at every distinct anomaly score taken as the threshold (NAB
    ``calcScoreByThreshold``).

    Rows of all files are sorted by anomaly score, descending; at each distinct score the
    total is ``sum(FP costs of rows above) + sum over windows of max(best reward above,
    -fn_weight)``.

    Returns:
        ``(thresholds, totals)``, thresholds descending from 1.1 ("never detect").
    """
    scores = np.concatenate([p.anomaly_scores for p in corpus])
    weights = np.concatenate([p.weights for p in corpus])
    wins = []
    offset = 0
    for p in corpus:
        ids = p.window_ids.copy()
        ids[ids >= 0] += offset
        offset += p.n_windows
        wins.append(ids)
    window_ids = np.concatenate(wins)
    keep = window_ids != -2
    scores, weights, window_ids = scores[keep], weights[keep], window_ids[keep]
    order = np.argsort(-scores, kind="stable")
    window_best = {int(w): -profile.fn_weight for w in np.unique(window_ids[window_ids >= 0])}
    fp_total = 0.0
    windows_total = sum(window_best.values())
    thresholds, totals = [1.1], [fp_total + windows_total]
    i = 0
    n = len(order)
    while i < n:
        current = scores[order[i]]
        while i < n and scores[order[i]] == current:
            row = order[i]
            w = int(window_ids[row])
            if w < 0:
                fp_total += weights[row]
            elif weights[row] > window_best[w]:
                windows_total += weights[row] - window_best[w]
                window_best[w] = weights[row]
            i += 1
        thresholds.append(float(current))
        totals.append(fp_total + windows_total)
    return np.asarray(thresholds), np.asarray(totals, float)


def sweep_corpus(corpus: Sequence[ScoredPoints], profile: CostProfile) -> tuple[float, float]:
    """Threshold maximising the corpus total (the highest one on ties).

    Returns:
        ``(best_threshold, best_raw_score)``; threshold 1.1 means "never detect".
    """
    thresholds, totals = score_curve(corpus, profile)
    best = int(np.argmax(totals))
    return float(thresholds[best]), float(totals[best])


def total_at(thresholds: np.ndarray, totals: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """A corpus' total at arbitrary thresholds, read off its :func:`score_curve`: detections
    are the rows scoring at or above the threshold."""
    ascending = thresholds[::-1]
    # the smallest curve threshold >= t holds exactly the rows scoring >= t
    j = np.searchsorted(ascending, np.asarray(threshold, float), side="left")
    return totals[::-1][np.minimum(j, len(ascending) - 1)]


def sweep_groups(groups: Sequence[Sequence[ScoredPoints]], profile: CostProfile) -> tuple[float, float]:
    """Threshold maximising the mean of the groups' normalised scores (each corpus counts
    once, whatever its number of rows: pooled, a group of many long files would pick the
    threshold for all).

    A group with no window to find after probation has no normalised score (its null and
    perfect detectors tie) and does not vote.

    Returns:
        ``(best_threshold, mean normalised score)`` (the highest threshold on ties; 1.1 and
        NaN when no group has a window).
    """
    curves = [score_curve(g, profile) for g in groups]
    candidates = np.unique(np.concatenate([t for t, _ in curves]))[::-1]
    mean, voters = np.zeros(len(candidates)), 0
    for group, (thresholds, totals) in zip(groups, curves, strict=True):
        null, perfect = null_and_perfect(group, profile)
        if perfect == null:
            continue
        mean += 100.0 * (total_at(thresholds, totals, candidates) - null) / (perfect - null)
        voters += 1
    if not voters:
        return 1.1, float("nan")
    mean /= voters
    best = int(np.argmax(mean))
    return float(candidates[best]), float(mean[best])


def null_and_perfect(corpus: Sequence[ScoredPoints], profile: CostProfile) -> tuple[float, float]:
    """Raw scores of NAB's null detector (constant score, best threshold) and a perfect one."""
    constant = [
        ScoredPoints(p.name, np.full_like(p.anomaly_scores, 0.5), p.weights, p.window_ids, p.n_windows)
        for p in corpus
    ]
    _, null_score = sweep_corpus(constant, profile)
    n_windows = sum(p.n_windows for p in corpus)
    return null_score, profile.tp_weight * n_windows


def normalised(raw: float, null: float, perfect: float) -> float:
    """NAB normalisation: null detector -> 0, perfect detector -> 100."""
    if perfect == null:
        return float("nan")
    return 100.0 * (raw - null) / (perfect - null)


@dataclass
class CorpusResult:
    """NAB result of one detector on one corpus for one profile."""

    profile: str
    threshold: float
    raw_score: float
    null_score: float
    perfect_score: float
    score: float
    files: list[FileScore] = field(default_factory=list)


def evaluate_corpus(
    corpus_scores: dict[str, tuple[pd.Series, np.ndarray, list[tuple]]],
    profiles: dict[str, CostProfile],
    threshold: float | None = None,
) -> dict[str, CorpusResult]:
    """Score a detector's output on a corpus for every profile.

    Args:
        corpus_scores: ``{file: (timestamps, anomaly_scores, windows)}`` with windows as
            ``[start, end]`` timestamps.
        profiles: Cost profiles by name.
        threshold: Fixed detection threshold; ``None`` sweeps it per profile as NAB does.

    Returns:
        Results by profile name.
    """
    results = {}
    for name, profile in profiles.items():
        corpus = [
            sweep_weights(f, np.asarray(s, float), window_index_limits(ts, w), profile)
            for f, (ts, s, w) in corpus_scores.items()
        ]
        if threshold is None:
            best_threshold, raw = sweep_corpus(corpus, profile)
        else:
            best_threshold = threshold
        files = [score_file(p, profile, best_threshold) for p in corpus]
        raw = sum(f.score for f in files)
        null, perfect = null_and_perfect(corpus, profile)
        results[name] = CorpusResult(
            name, best_threshold, raw, null, perfect, normalised(raw, null, perfect), files
        )
    return results


def windows_from_point_labels(
    timestamps: pd.Series,
    labels: np.ndarray,
    probation_percent: float = PROBATION_PERCENT,
    window_fraction: float = WINDOW_SIZE_FRACTION,
) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Turn point labels into NAB windows, the way NAB's labeler does.

    Each *run* of consecutive labelled rows counts as one anomaly (point labels in
    KPI datasets mark every row of an incident; NAB's labellers mark an incident
    once). Window length = ``int(window_fraction * n_rows / n_anomalies)`` rows,
    centred on the run's middle row and widened to cover the whole run. As in
    NAB, a window starting inside the probation period is dropped and
    overlapping windows are merged.

    Args:
        timestamps: Row timestamps, ascending.
        labels: 0/1 per row.
        probation_percent: NAB probation share.
        window_fraction: Share of the file covered by all windows together.

    Returns:
        Window limits as timestamps.
    """
    labels = np.asarray(labels).astype(bool)
    n = len(labels)
    starts = np.flatnonzero(labels & ~np.r_[False, labels[:-1]])
    ends = np.flatnonzero(labels & ~np.r_[labels[1:], False])
    if len(starts) == 0:
        return []
    length = int(window_fraction * n / len(starts))
    limits = []
    for s, e in zip(starts, ends, strict=True):
        centre = (s + e) // 2
        lo = max(min(centre - length // 2, s), 0)
        hi = min(max(centre + length // 2, e), n - 1)
        limits.append([lo, hi])
    probation = probation_length(n, probation_percent)
    limits = [w for w in limits if w[0] >= probation]
    merged: list[list[int]] = []
    for w in limits:
        if merged and w[0] <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], w[1])
        else:
            merged.append(w)
    ts = pd.to_datetime(pd.Series(timestamps)).reset_index(drop=True)
    return [(ts[lo], ts[hi]) for lo, hi in merged]

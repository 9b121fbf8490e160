"""NAB scorer on hand-made windows; expected values computed by hand in comments.

Conventions (NAB sweeper v1.1): probation = floor(0.15 n) rows; inside a window of
width w with right edge R, a detection at row i earns
tp * S(-(R - i + 1) / w) / S(-1) with S(x) = 2 / (1 + e^{5x}) - 1 and S(-1) = 0.986614;
outside, fp * S(|R_prev - i| / (w_prev - 1)) or -fp without a preceding window.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from models import nab

pytestmark = pytest.mark.unit

STANDARD = nab.STANDARD_PROFILES["standard"]
N = 100  # probation = floor(0.15 * 100) = 15 rows
WINDOW = [(40, 49)]  # width 10


def _score(detected_rows: list[int], profile: nab.CostProfile = STANDARD, windows=WINDOW) -> float:
    scores = np.zeros(N)
    scores[detected_rows] = 1.0
    points = nab.sweep_weights("f", scores, windows, profile)
    return nab.score_file(points, profile, threshold=0.5).score


def test_scaled_sigmoid_matches_published_values() -> None:
    # 2/(1+e^-5)-1 = 0.986614 at the left edge; 2/(1+e^-2.5)-1 = 0.848284 mid-window;
    # 0 at the right edge; -1 from 3 window-lengths past the window on.
    assert nab.scaled_sigmoid(-1.0) == pytest.approx(0.986614, abs=1e-6)
    assert nab.scaled_sigmoid(-0.5) == pytest.approx(0.848284, abs=1e-6)
    assert nab.scaled_sigmoid(0.0) == pytest.approx(0.0, abs=1e-12)
    assert nab.scaled_sigmoid(3.0) == -1.0


def test_probation_is_fifteen_percent_capped_at_750() -> None:
    assert nab.probation_length(100) == 15
    assert nab.probation_length(1624) == 243
    assert nab.probation_length(10_000) == 750


def test_earliest_detection_earns_exactly_tp_weight() -> None:
    # Row 40: position -(49 - 40 + 1)/10 = -1 -> S(-1)/S(-1) = 1.
    assert _score([40]) == pytest.approx(1.0)


def test_detection_at_right_edge_earns_little() -> None:
    # Row 49: position -(1)/10 = -0.1 -> S(-0.1) = 2/(1+e^-0.5)-1 = 0.244919; / 0.986614 = 0.248242.
    assert _score([49]) == pytest.approx(0.248242, abs=1e-5)


def test_only_first_detection_in_window_counts() -> None:
    # Rows 45..49 detected: only row 45 counts: position -(5)/10 = -0.5 -> 0.848284/0.986614 = 0.859794.
    assert _score([45, 46, 47, 48, 49]) == pytest.approx(0.859794, abs=1e-5)


def test_missed_window_costs_fn_weight() -> None:
    assert _score([]) == pytest.approx(-1.0)
    assert _score([], nab.STANDARD_PROFILES["reward_low_FN_rate"]) == pytest.approx(-2.0)


def test_false_positive_before_any_window_costs_full_fp_weight() -> None:
    # Row 20: -0.11; row 40: +1.0 -> 0.89.
    assert _score([20, 40]) == pytest.approx(0.89)
    assert _score([20, 40], nab.STANDARD_PROFILES["reward_low_FP_rate"]) == pytest.approx(0.78)


def test_false_positive_just_after_window_is_discounted() -> None:
    # Row 54: |49 - 54| / (10 - 1) = 0.5556 -> S = 2/(1+e^{2.7778}) - 1 = -0.882926; x 0.11 = -0.097122.
    # Plus the missed window: -1 -> -1.097122.
    expected = -1.0 + 0.11 * (2.0 / (1.0 + math.exp(5 * 5 / 9)) - 1.0)
    assert expected == pytest.approx(-1.097122, abs=1e-6)
    assert _score([54]) == pytest.approx(expected)


def test_detections_in_probation_are_ignored() -> None:
    assert _score([3, 14, 40]) == pytest.approx(1.0)


def test_sweep_picks_threshold_separating_window_from_noise() -> None:
    # Row 42 scores 0.9 (in window, position -0.8 -> S(-0.8)=0.964028 -> 0.977108),
    # row 70 scores 0.6 (FP after the window: |49-70|/9 = 2.33 -> S = -0.99998 -> -0.11).
    # Best: threshold 0.9 -> 0.977108; threshold 0.6 -> 0.867110; none -> -1.
    scores = np.zeros(N)
    scores[42], scores[70] = 0.9, 0.6
    points = nab.sweep_weights("f", scores, WINDOW, STANDARD)
    threshold, best = nab.sweep_corpus([points], STANDARD)
    assert threshold == pytest.approx(0.9)
    assert best == pytest.approx(0.977108, abs=1e-5)


def test_normalisation_null_zero_perfect_hundred() -> None:
    # One window: null detector (best of "never" = -1 and "always") = -1, perfect = +1.
    points = nab.sweep_weights("f", np.zeros(N), WINDOW, STANDARD)
    null, perfect = nab.null_and_perfect([points], STANDARD)
    assert (null, perfect) == (pytest.approx(-1.0), 1.0)
    assert nab.normalised(-1.0, null, perfect) == pytest.approx(0.0)
    assert nab.normalised(1.0, null, perfect) == pytest.approx(100.0)
    assert nab.normalised(0.0, null, perfect) == pytest.approx(50.0)


def test_evaluate_corpus_end_to_end_on_timestamps() -> None:
    ts = pd.Series(pd.date_range("2024-01-01", periods=N, freq="h"))
    scores = np.zeros(N)
    scores[40] = 1.0
    result = nab.evaluate_corpus({"f": (ts, scores, [(ts[40], ts[49])])}, {"standard": STANDARD})["standard"]
    assert result.raw_score == pytest.approx(1.0)
    assert result.score == pytest.approx(100.0)
    assert result.files[0].recall == 1.0 and result.files[0].precision == 1.0


def test_point_labels_become_centred_windows() -> None:
    # 200 rows, one labelled run at rows 100-101 -> window length int(0.1*200/1) = 20,
    # centred on row 100 -> rows 90..110. A run inside probation (rows 5-6) is dropped.
    ts = pd.Series(pd.date_range("2024-01-01", periods=200, freq="h"))
    labels = np.zeros(200, int)
    labels[[100, 101]] = 1
    assert nab.windows_from_point_labels(ts, labels) == [(ts[90], ts[110])]
    labels[[5, 6]] = 1  # two runs -> length 10 each; the first starts in probation (30 rows)
    assert nab.windows_from_point_labels(ts, labels) == [(ts[95], ts[105])]


def test_group_sweep_maximises_the_mean_of_the_groups_normalised_scores() -> None:
    # Brute force: every distinct score as the threshold, each group's files scored at it and
    # normalised with that group's null and perfect detectors, then averaged.
    rng = np.random.default_rng(3)
    groups = [
        [nab.sweep_weights(f"a{i}", rng.random(N) ** 3, WINDOW, STANDARD) for i in range(4)],
        [nab.sweep_weights("b0", rng.random(N), [(30, 39), (70, 79)], STANDARD)],
    ]
    candidates = np.unique(np.concatenate([p.anomaly_scores for g in groups for p in g]))

    def mean_normalised(threshold: float) -> float:
        total = 0.0
        for group in groups:
            null, perfect = nab.null_and_perfect(group, STANDARD)
            raw = sum(nab.score_file(p, STANDARD, threshold).score for p in group)
            total += nab.normalised(raw, null, perfect)
        return total / len(groups)

    brute = [mean_normalised(t) for t in candidates]
    threshold, best = nab.sweep_groups(groups, STANDARD)
    assert best == pytest.approx(max(brute))
    assert mean_normalised(threshold) == pytest.approx(max(brute))
    # one group: the same threshold as NAB's pooled sweep
    assert nab.sweep_groups(groups[:1], STANDARD)[0] == nab.sweep_corpus(groups[0], STANDARD)[0]


def test_a_group_without_windows_does_not_vote() -> None:
    rng = np.random.default_rng(4)
    found = [nab.sweep_weights("a", rng.random(N), WINDOW, STANDARD)]
    nothing = [nab.sweep_weights("b", rng.random(N), [], STANDARD)]
    assert nab.sweep_groups([found, nothing], STANDARD) == nab.sweep_groups([found], STANDARD)
    threshold, score = nab.sweep_groups([nothing], STANDARD)
    assert threshold == 1.1 and math.isnan(score)

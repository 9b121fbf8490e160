"""Count-aware evidence for count KPIs: one-sided Poisson CUSUMs on a window's events.

An additive count KPI (orders, sessions) is a number of events per window. At six or seven
orders a minute a minute without any order happens by chance about once in 700 minutes, so
no test of a single minute can page an outage within an alert budget of two a week; and
after two or three minutes of zeros the ensemble's fast local level has adopted them. The
counts themselves say more: under the expected rate ``lam`` the events of a window are
``Poisson(lam)``, and the log-likelihood ratio of a changed rate ``ratio * lam`` against
``lam`` is ``k * log(ratio) - (ratio - 1) * lam``, which adds up over windows exactly. Its
CUSUM (Page 1954; Lucas 1985 for counts) is the sequential test that decides fastest for a
given false-alarm rate, O(1) per window, vectorised over series — the count-side twin of
the binomial CUSUM of :mod:`models.ratio_test`. Two one-sided tests run side by side:

* **drop** (``drop``, default a tenth of the rate): an outage. A minute of zeros adds
  ``(1 - drop) * lam`` nats (5.9 at 6.6 orders a minute), each event takes ``log(1/drop)``
  (2.3) away, so a clean minute is decisively against it and two minutes of zeros page;
* **rise** (``rise``, default double): a burst (bots on sessions). Each event adds
  ``log(rise)``, the expectation takes ``(rise - 1) * lam`` away.

* **Expected rate** — the caller's forecast of the window (the ensemble's expectation),
  smoothed over about five windows (a fast local level follows the last counts' noise),
  rescaled by a learnt calibration (pooled counts over pooled forecasts of quiet windows,
  forgotten over about a day: a forecast made on a transformed scale is biased, e.g. by
  Jensen's inequality on ``log(x + 1)``). While a test suspects a change (its CUSUM above
  half its ``limit``) the reference rate is held at its last quiet value, until the tests
  are quiet again and the forecast is back within a factor of two of it, for at most
  ``max_hold`` windows: a forecaster that adopts an outage as its new level must not make
  the outage look normal, nor its end look like a burst.
* **Exposure** — a window seen part-way (an open window ``f`` elapsed) holds ``Poisson(f *
  lam)`` events; its log-likelihood ratio is that of the partial count against ``f * lam``,
  so an open window's statistic is the CUSUM as of now (nothing is learnt from it).
* **Overdispersion** — the log-likelihood ratios are divided by the series' dispersion (mean
  Pearson chi-square of complete quiet windows against the reference, at least 1; a
  quasi-likelihood), which also absorbs the forecaster's own error.
* **Evidence** — the larger CUSUM in nats, ``limit`` nats counting as ``band_k`` sigmas
  (anomaly score 0.5), like :mod:`models.ratio_test`. The CUSUMs are capped at ``cap *
  limit`` so that they fall back within minutes of an incident's end; they are not restarted
  by alarms (an ongoing outage stays one firing episode).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CALIBRATION_PRIOR = 5.0  # pseudo-events of the calibration's prior (ratio 1)


@dataclass(frozen=True)
class CountTestParams:
    """Hyper-parameters of the Poisson CUSUMs (general defaults, not per KPI).

    Attributes:
        drop: Rate ratio the drop test is tuned to (0.1: an outage; a halved rate is the
            Gaussian band's and the level CUSUM's business).
        rise: Rate ratio the rise test is tuned to (2: a doubled rate).
        limit: CUSUM (nats) counting as ``band_k`` sigmas of evidence (anomaly score 0.5);
            the series' alert budget sets where it pages.
        cap: The CUSUMs are capped at ``cap * limit`` nats.
        memory: Forgetting per window of the calibration's pooled counts and forecasts.
        dispersion_memory: Forgetting of the mean Pearson chi-square per window.
        dispersion_clip: Cap of one window's chi-square in that mean.
        max_hold: Windows the reference rate is held while a test suspects a change.
        reference_rate: Smoothing of the forecast into the reference rate per window.
        min_windows: Complete windows seen before the tests speak.
    """

    drop: float = 0.1
    rise: float = 2.0
    limit: float = 6.0
    cap: float = 4.0
    memory: float = 1.0 / 1440.0
    dispersion_memory: float = 0.002
    dispersion_clip: float = 9.0
    max_hold: float = 60.0
    min_windows: float = 60.0
    reference_rate: float = 0.2


STATE_DEFAULTS = {
    "count_down": 0.0, "count_up": 0.0, "count_dispersion": 1.0, "count_reference": np.nan, "count_held": 0.0,
    "count_events": 0.0, "count_forecast": 0.0, "count_windows": 0.0,
}  # fmt: skip


@dataclass(frozen=True)
class CountStep:
    """One window of the tests: its evidence and the state columns after it."""

    evidence: np.ndarray  # sigmas, like the ensemble's other evidence
    tested: np.ndarray  # the window was tested (enough history)
    state: dict[str, np.ndarray]  # the STATE_DEFAULTS columns after the window


def poisson_llr(count: np.ndarray, rate: np.ndarray, ratio: float) -> np.ndarray:
    """``log P(count | ratio * rate) - log P(count | rate)`` (Poisson)."""
    return count * np.log(ratio) - (ratio - 1.0) * rate


def count_step(
    params: CountTestParams,
    band_k: float,
    state: dict[str, np.ndarray],
    count: np.ndarray,
    forecast: np.ndarray,
    exposure: np.ndarray,
) -> CountStep:
    """Advance the tests by one window per series (causal: the window is tested against the
    reference before it, then learnt when it is complete).

    Args:
        params: The tests' hyper-parameters.
        band_k: Evidence (sigmas) of an anomaly score of 0.5.
        state: The :data:`STATE_DEFAULTS` columns of the series (not modified).
        count: Events seen in the window so far.
        forecast: The forecast of the complete window's count (before the window).
        exposure: Share of the window ``count`` covers (1: complete; NaN: not a count, the
            state is unchanged).

    Returns:
        The window's evidence and the new state columns (a partial window moves the CUSUMs
        only: what it returns is the statistic as of now, not to be kept).
    """
    k = np.asarray(count, float)
    f = np.asarray(exposure, float)
    mu = np.asarray(forecast, float)
    with np.errstate(invalid="ignore"):
        counted = np.isfinite(k) & np.isfinite(mu) & np.isfinite(f) & (f > 0) & (k >= 0) & (mu >= 0)
    k, f, mu = np.where(counted, k, 0.0), np.where(counted, np.minimum(f, 1.0), 1.0), np.where(counted, mu, 0.0)
    down, up = state["count_down"], state["count_up"]
    quiet = np.maximum(down, up) < params.limit / 2
    held = state["count_held"]
    reference = state["count_reference"]
    # The held reference is let go once the tests are quiet and the forecast is back near it
    # (within a factor of two), or after ``max_hold`` windows (a lasting change is adopted).
    with np.errstate(invalid="ignore"):
        near = np.abs(np.log((mu + 1.0) / (reference + 1.0))) <= np.log(2.0)
    follow = (quiet & near) | (held >= params.max_hold) | ~np.isfinite(reference)
    # The reference is the forecast smoothed over a few windows: a one-step forecast that
    # follows the last counts (a fast local level) would make the tests chase its noise.
    smoothed = np.where(np.isfinite(reference), reference + params.reference_rate * (mu - reference), mu)
    reference_new = np.where(follow, smoothed, reference)
    calibration = (state["count_events"] + CALIBRATION_PRIOR) / (state["count_forecast"] + CALIBRATION_PRIOR)
    lam = np.maximum(reference_new * calibration, 1e-9)
    dispersion = np.maximum(state["count_dispersion"], 1.0)
    lam_f = lam * f
    ready = counted & (state["count_windows"] >= params.min_windows)
    ceiling = params.cap * params.limit
    down_new = np.where(ready, np.clip(down + poisson_llr(k, lam_f, params.drop) / dispersion, 0.0, ceiling), down)
    up_new = np.where(ready, np.clip(up + poisson_llr(k, lam_f, params.rise) / dispersion, 0.0, ceiling), up)
    complete = counted & (f >= 1.0)
    learns = complete & quiet
    chi2 = np.minimum((k - lam) ** 2 / lam, params.dispersion_clip)
    keep = 1.0 - params.memory
    out = {
        "count_down": down_new,
        "count_up": up_new,
        "count_dispersion": np.where(learns & ready, state["count_dispersion"] + params.dispersion_memory * (chi2 - state["count_dispersion"]),
                                     state["count_dispersion"]),
        "count_reference": np.where(complete, reference_new, reference),
        "count_held": np.where(complete, np.where(follow, 0.0, held + 1.0), held),
        "count_events": np.where(learns, keep * state["count_events"] + k, state["count_events"]),
        "count_forecast": np.where(learns, keep * state["count_forecast"] + mu, state["count_forecast"]),
        "count_windows": state["count_windows"] + complete,
    }  # fmt: skip
    evidence = np.where(ready, band_k * np.maximum(down_new, up_new) / params.limit, 0.0)
    return CountStep(evidence, ready, out)


def replay_views(
    params: CountTestParams,
    band_k: float,
    rows: np.ndarray,
    seconds: np.ndarray,
    views: list[tuple[float, np.ndarray]],
    forecast: np.ndarray,
) -> np.ndarray:
    """The tests' evidence of complete history windows replayed as the open windows the detect
    job scores (the budget of the open-window path), vectorised over series.

    Args:
        params: The tests' hyper-parameters.
        band_k: Evidence of an anomaly score of 0.5.
        rows: Series of each point (0..n-1).
        seconds: Epoch seconds of each point.
        views: ``(fraction, counts seen)`` per view of every point (the complete view, 1.0,
            among them; :func:`models.alert_budget.open_views`); NaN counts are not tested.
        forecast: The forecast of each complete window (the scorer's causal ``expected``).

    Returns:
        Per point, the highest evidence of its views, with the state carried by the complete
        windows as the live scorer carries it.
    """
    from models.series import series_rounds

    n_series = int(rows.max()) + 1 if len(rows) else 0
    state = {name: np.full(n_series, value) for name, value in STATE_DEFAULTS.items()}
    complete = next(values for fraction, values in views if fraction >= 1.0)
    partial = [(fraction, values) for fraction, values in views if fraction < 1.0]
    out = np.zeros(len(rows))
    for pos in series_rounds(rows, seconds):
        r = rows[pos]
        mine = {name: column[r] for name, column in state.items()}
        best = np.zeros(len(pos))
        for fraction, values in partial:
            best = np.maximum(best, count_step(params, band_k, mine, values[pos], forecast[pos], np.full(len(pos), fraction)).evidence)
        step = count_step(params, band_k, mine, complete[pos], forecast[pos], np.ones(len(pos)))
        for name, column in step.state.items():
            state[name][r] = column
        out[pos] = np.maximum(best, step.evidence)
    return out


__all__ = ["STATE_DEFAULTS", "CountStep", "CountTestParams", "count_step", "poisson_llr", "replay_views"]

"""Count-aware evidence for ratio KPIs: a one-sided binomial CUSUM on failures given attempts.

A ratio KPI (the payment failure rate) is ``numerator / denominator`` of two counts of the
same window, and ``gold.kpi`` carries both. At 24 attempts a minute and a 5 % base rate a
minute holds about one failure: the rate itself is a coarse, skewed number whose tripling
is 2–3 sigmas in one minute, under any Gaussian band. The counts say more: under the base
rate ``p0`` the failures of a window are ``Binomial(attempts, p0)``, and the log-likelihood
ratio of a risen rate ``rise * p0`` against ``p0`` adds up over windows exactly. Its CUSUM
(Page 1954; the binomial CUSUM of Reynolds & Stoumbos 1999) is the sequential test that
reaches a decision fastest for a given false-alarm rate: O(1) per window, vectorised over
series.

* **Base rate** — pooled counts, exponentially forgotten (``memory`` per window, about a day
  of minutes by default): the maximum-likelihood rate of the recent past, not the mean of
  noisy per-window ratios, and too slow to adopt an incident of minutes as normal.
* **Overdispersion** — real failures cluster (one customer retrying a card five times), so
  counts vary more than a binomial's. The log-likelihood ratio is divided by the series' own
  dispersion (the mean Pearson chi-square per window, at least 1; a quasi-likelihood), so a
  clumpy series does not page on its routine clumps.
* **Evidence** — the CUSUM in nats, reported like the ensemble's level CUSUM: ``limit`` nats
  count as ``band_k`` sigmas (anomaly score 0.5). The caller restarts it after an alarm.

Only windows whose counts can be a binomial draw take part (finite non-negative integers,
``0 <= numerator <= denominator``, ``denominator > 0``); others leave the state unchanged.
Only tumbling windows: a sliding ratio counts each event in several windows, and its
log-likelihood ratios would not add up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binom

# Jeffreys-like prior counts: a cold series starts near a rate of 1/2 with the weight of one
# attempt, so its first windows decide the base rate.
PRIOR_FAILURES = 0.5
PRIOR_ATTEMPTS = 1.0
MAX_RATE = 1.0 - 1e-9


@dataclass(frozen=True)
class RatioTestParams:
    """Hyper-parameters of the binomial CUSUM (general defaults, not per KPI).

    Attributes:
        rise: The rate ratio the test is tuned to (2: a doubled failure rate; a tripled one
            is found faster, a 30 % rise rarely).
        limit: CUSUM (nats) counting as ``band_k`` sigmas of evidence (anomaly score 0.5);
            the series' alert budget sets where it pages.
        memory: Forgetting of the pooled base-rate counts per window.
        dispersion_memory: Forgetting of the mean Pearson chi-square per window.
        dispersion_clip: Cap of one window's chi-square in that mean (an incident must not
            teach the series that it is clumpy).
        min_attempts: Pooled attempts before the test speaks (a base rate worth testing).
    """

    rise: float = 2.0
    limit: float = 6.0
    memory: float = 1.0 / 1440.0
    dispersion_memory: float = 0.002
    dispersion_clip: float = 9.0
    min_attempts: float = 200.0


def binomial_counts(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Whether each window's counts can be a binomial draw (failures of attempts)."""
    k, n = np.asarray(numerator, float), np.asarray(denominator, float)
    with np.errstate(invalid="ignore"):
        return np.isfinite(k) & np.isfinite(n) & (n > 0) & (k >= 0) & (k <= n) & (k == np.round(k)) & (n == np.round(n))


def base_rate(failures: np.ndarray, attempts: np.ndarray) -> np.ndarray:
    """The expected rate from pooled (forgotten) counts, with the prior's weight."""
    return np.clip((failures + PRIOR_FAILURES) / (attempts + PRIOR_ATTEMPTS), 1e-9, MAX_RATE)


def log_likelihood_ratio(failures: np.ndarray, attempts: np.ndarray, rate: np.ndarray, rise: float) -> np.ndarray:
    """``log P(failures | attempts, rise * rate) - log P(failures | attempts, rate)`` (binomial)."""
    risen = np.minimum(rise * rate, MAX_RATE)
    return binom.logpmf(failures, attempts, risen) - binom.logpmf(failures, attempts, rate)


def pearson_chi2(failures: np.ndarray, attempts: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """One window's Pearson chi-square against the base rate (1 on average for a binomial)."""
    return (failures - attempts * rate) ** 2 / (attempts * rate * (1.0 - rate))


@dataclass(frozen=True)
class RatioStep:
    """One window of the test: its evidence and the state columns after it."""

    evidence: np.ndarray  # sigmas, like the ensemble's other evidence
    tested: np.ndarray  # the window's counts were tested (a settled base rate)
    cusum: np.ndarray  # nats, before any restart by the caller
    failures: np.ndarray  # pooled, forgotten
    attempts: np.ndarray
    dispersion: np.ndarray


def ratio_step(
    params: RatioTestParams,
    band_k: float,
    cusum: np.ndarray,
    failures: np.ndarray,
    attempts: np.ndarray,
    dispersion: np.ndarray,
    numerator: np.ndarray,
    denominator: np.ndarray,
) -> RatioStep:
    """Advance the test by one window per series (causal: the window is tested against the
    base rate before it, then pooled).

    Args:
        params: The test's hyper-parameters.
        band_k: Evidence (sigmas) of an anomaly score of 0.5.
        cusum, failures, attempts, dispersion: State columns of the series.
        numerator, denominator: The window's counts (NaN: no counts, state unchanged).

    Returns:
        The window's evidence and the new state columns.
    """
    k, n = np.asarray(numerator, float), np.asarray(denominator, float)
    counted = binomial_counts(k, n)
    k, n = np.where(counted, k, 0.0), np.where(counted, n, 1.0)
    rate = base_rate(failures, attempts)
    ready = counted & (attempts >= params.min_attempts)
    llr = log_likelihood_ratio(k, n, rate, params.rise) / np.maximum(dispersion, 1.0)
    cusum_new = np.where(ready, np.maximum(0.0, cusum + llr), cusum)
    chi2 = np.minimum(pearson_chi2(k, n, rate), params.dispersion_clip)
    # The dispersion of a settled base rate, not learnt while the test suspects a rise.
    learns = ready & (cusum < params.limit / 2)
    dispersion_new = np.where(learns, dispersion + params.dispersion_memory * (chi2 - dispersion), dispersion)
    keep = 1.0 - params.memory
    failures_new = np.where(counted, keep * failures + k, failures)
    attempts_new = np.where(counted, keep * attempts + n, attempts)
    evidence = np.where(ready, band_k * cusum_new / params.limit, 0.0)
    return RatioStep(evidence, ready, cusum_new, failures_new, attempts_new, dispersion_new)


__all__ = [
    "RatioStep",
    "RatioTestParams",
    "base_rate",
    "binomial_counts",
    "log_likelihood_ratio",
    "pearson_chi2",
    "ratio_step",
]

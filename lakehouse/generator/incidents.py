"""Labelled incidents in KPI minute series, and the campaign calendar that explains promotions.

The playground's clean traffic (:mod:`lakehouse.generator.shop`) is untouched: incidents are
asked for explicitly. :func:`kpi_minute_series` draws the minute series of the KPIs detection
watches with the shop's own weekly and diurnal rhythm (counts are Poisson, the payment
failure rate a binomial share of attempts); :func:`inject` turns them into an incident
scenario and returns the labels (kind, KPI, start, end, whether it is expected):

* ``checkout_outage`` — orders drop to zero;
* ``payment_degradation`` — the payment failure rate triples;
* ``bot_burst`` — sessions jump by bot traffic;
* ``promo_spike`` — sessions and orders rise during a campaign of the calendar: expected,
  it must not page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from lakehouse.campaigns import CampaignCalendar
from lakehouse.generator.shop import seasonality

KIND_KPIS = {
    "checkout_outage": ("orders",),
    "payment_degradation": ("payment_failure_rate",),
    "bot_burst": ("sessions",),
    "promo_spike": ("sessions", "orders"),
}
BASE_RATES = {"sessions": 120.0, "orders": 20.0, "payment_attempts": 24.0}
FAILURE_SHARE = 0.05


@dataclass(frozen=True)
class Incident:
    """One labelled incident.

    Attributes:
        kind: One of :data:`KIND_KPIS`.
        start: First affected minute (UTC).
        minutes: Duration.
        expected: A known promotion (on the calendar): must not page.
        factor: Multiplier of the affected KPI (0 for an outage).
    """

    kind: str
    start: datetime
    minutes: int
    expected: bool = False
    factor: float = 1.0

    @property
    def kpis(self) -> tuple[str, ...]:
        """KPIs the incident moves."""
        return KIND_KPIS[self.kind]

    @property
    def end(self) -> datetime:
        """First minute after the incident."""
        return self.start + timedelta(minutes=self.minutes)


def kpi_minute_series(start: datetime, minutes: int, seed: int = 0, rates: dict[str, float] | None = None) -> pd.DataFrame:
    """Clean minute values of sessions, orders, payment attempts and the payment failure rate.

    Returns:
        One row per minute: ``timestamp`` plus one column per KPI, and ``payment_failures``.
    """
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    rates = {**BASE_RATES, **(rates or {})}
    rng = np.random.default_rng(seed)
    ts = pd.date_range(start, periods=minutes, freq="min")
    rhythm = np.array([seasonality(t.to_pydatetime()) for t in ts])
    frame = pd.DataFrame({"timestamp": ts})
    for kpi, rate in rates.items():
        frame[kpi] = rng.poisson(rate * rhythm).astype(float)
    frame["payment_failures"] = rng.binomial(frame["payment_attempts"].astype(int), FAILURE_SHARE).astype(float)
    frame["payment_failure_rate"] = _rate(frame["payment_failures"], frame["payment_attempts"])
    return frame


def _rate(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    return (numerator / denominator.where(denominator > 0)).astype(float)


def inject(series: pd.DataFrame, incidents: list[Incident], seed: int = 0) -> pd.DataFrame:
    """Apply incidents to a copy of :func:`kpi_minute_series` output.

    Args:
        series: Clean minute series.
        incidents: What to inject (overlaps compose).
        seed: Randomness of the injected counts.

    Returns:
        The series with the incidents in.
    """
    rng = np.random.default_rng(seed)
    out = series.copy()
    for incident in incidents:
        during = ((out["timestamp"] >= incident.start) & (out["timestamp"] < incident.end)).to_numpy()
        if incident.kind == "checkout_outage":
            out.loc[during, "orders"] = 0.0
        elif incident.kind == "payment_degradation":
            attempts = out.loc[during, "payment_attempts"].astype(int).to_numpy()
            share = min(FAILURE_SHARE * incident.factor, 1.0)
            out.loc[during, "payment_failures"] = rng.binomial(attempts, share).astype(float)
        elif incident.kind in ("bot_burst", "promo_spike"):
            for kpi in incident.kpis:
                extra = out.loc[during, kpi].to_numpy() * (incident.factor - 1.0)
                out.loc[during, kpi] = out.loc[during, kpi].to_numpy() + rng.poisson(np.maximum(extra, 0.0))
        else:
            raise ValueError(f"unknown incident kind {incident.kind!r}")
    out["payment_failure_rate"] = _rate(out["payment_failures"], out["payment_attempts"])
    return out


def default_factor(kind: str) -> float:
    """The size of each incident kind as the issue describes it."""
    return {"checkout_outage": 0.0, "payment_degradation": 3.0, "bot_burst": 3.0, "promo_spike": 2.5}[kind]


def scheduled_incidents(start: datetime, minutes: int, calendar: CampaignCalendar, seed: int = 0, per_kind: int = 3) -> list[Incident]:
    """Incidents spread over a span: ``per_kind`` of each unexpected kind at random daytime
    minutes, plus one promo spike per calendar campaign occurrence in the span."""
    rng = np.random.default_rng(seed)
    out: list[Incident] = []
    span = pd.date_range(start, periods=minutes, freq="min")
    for kind in ("checkout_outage", "payment_degradation", "bot_burst"):
        for _ in range(per_kind):
            at = span[int(rng.integers(60, max(minutes - 120, 61)))].to_pydatetime()
            out.append(Incident(kind, at, int(rng.integers(15, 40)), factor=default_factor(kind)))
    for campaign in calendar.campaigns:
        active = campaign.active(pd.Series(span))
        starts = np.flatnonzero(active & ~np.r_[False, active[:-1]])
        for s in starts:
            length = int(np.argmin(active[s:]) or len(active) - s)
            out.append(Incident("promo_spike", span[s].to_pydatetime(), length, expected=True, factor=campaign.uplift))
    return sorted(out, key=lambda i: i.start)


def labels(incidents: list[Incident]) -> pd.DataFrame:
    """One row per (incident, KPI): kind, kpi, start, end, expected."""
    return pd.DataFrame(
        [{"kind": i.kind, "kpi": k, "start": i.start, "end": i.end, "expected": i.expected} for i in incidents for k in i.kpis]
    )


def utc_minute(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A zone-aware minute (convenience for tests and benches)."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC)



"""Expected bands from the champion anomaly model, for the tiles and the KPI explorer.

The detect job keeps its scorer's state in its checkpoint and writes a band only where an
alert fires. The app computes the bands it shows itself, the way detect warms a new champion:
a copy of ``models:/<anomaly model>@champion`` learns each KPI's final 1-minute windows of the
last hours in order (causal: each window's band comes before the window is learnt). That costs
seconds, so it runs in a background thread every :data:`REFRESH_SECONDS`; until its first
result a tile says the band is warming up. Nothing is written.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd

from lakehouse.config import Settings

HISTORY = timedelta(hours=6)
REFRESH_SECONDS = 120.0
BAND_COLUMNS = ["kpi", "window_start", "value", "expected", "lower", "upper"]


@dataclass(frozen=True)
class Bands:
    """Bands of every scored window, and the champion version that drew them."""

    frame: pd.DataFrame  # BAND_COLUMNS
    model_version: str
    computed_at: datetime


def score_history(scorer, history: pd.DataFrame) -> pd.DataFrame:  # noqa: ANN001 - models.scorer.KpiScorer
    """Each final window's expected band, scored causally per KPI series (total dimension)."""
    final = history[history["is_final"].astype(bool)].sort_values("window_start") if len(history) else history
    if not len(final):
        return pd.DataFrame(columns=BAND_COLUMNS)
    points = pd.DataFrame({
        "timestamp": pd.to_datetime(final["window_start"], utc=True), "value": final["value"].astype(float),
        "series_key": final["kpi"] + "|" + final["grain"] + "|" + final["dimension"],
    }, index=final.index)  # fmt: skip
    scored = scorer.copy().score(points)
    return final[["kpi", "window_start", "value"]].join(scored[["expected", "lower", "upper"]]).reset_index(drop=True)


def latest_band(bands: Bands | None, kpi: str) -> pd.Series | None:
    """The band of a KPI's newest scored window (None while warming up or without a champion)."""
    if bands is None or not len(bands.frame):
        return None
    rows = bands.frame[bands.frame["kpi"] == kpi].dropna(subset=["lower", "upper"])
    return rows.iloc[-1] if len(rows) else None


class BandCache:
    """The latest :class:`Bands`, recomputed in a background thread when older than the refresh."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bands: Bands | None = None
        self._running = False
        self._started_at = 0.0
        self.error: str | None = None

    def get(self, settings: Settings) -> Bands | None:
        with self._lock:
            stale = time.monotonic() - self._started_at > REFRESH_SECONDS
            if stale and not self._running:
                self._running, self._started_at = True, time.monotonic()
                threading.Thread(target=self._compute, args=(settings,), daemon=True, name="trivas-bands").start()
            return self._bands

    def _compute(self, settings: Settings) -> None:
        try:
            from app.data import TOTAL, kpi_minutes, registry_exists, shown_uri

            name, uri = settings.mlflow.anomaly_model, settings.mlflow.tracking_uri
            if not registry_exists(uri):
                self.error = f"no model registry at {shown_uri(uri)}"
                return
            from models.champion import alias_version, load_anomaly_version
            from models.registry import CHAMPION

            version = alias_version(name, CHAMPION, uri)
            if version is None:
                self.error = f"no champion of {name} registered"
                return
            scorer = load_anomaly_version(name, version, uri)
            now = datetime.now(UTC)
            read, _ = kpi_minutes(settings, now - HISTORY, None, None, TOTAL)
            frame = score_history(scorer, read.frame[read.frame["grain"] == "1m"] if len(read.frame) else read.frame)
            with self._lock:
                self._bands, self.error = Bands(frame, version, now), None
        except Exception as exc:  # noqa: BLE001 - a band is an overlay: its failure must not break a page
            self.error = f"unavailable ({type(exc).__name__}; see the app log)"
            logging.getLogger("trivas.app").exception("expected bands failed")
        finally:
            with self._lock:
                self._running = False

"""Evaluation of anomaly detectors on labelled real series with the NAB scorer."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models import nab
from models.series import TIMESTAMP, VALUE, normalise_points

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TRIVAS_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))

# A detector maps a single-series frame (timestamp, value) to per-row scores,
# computed causally from a cold state (the probation period is its warm-up).
Detector = Callable[[pd.DataFrame], pd.DataFrame]


@dataclass
class LabelledSeries:
    """One benchmark file: points and anomaly windows."""

    name: str
    points: pd.DataFrame
    windows: list[tuple[pd.Timestamp, pd.Timestamp]]


def load_nab_corpus(data_dir: Path = SHARED_DATA / "nab") -> list[LabelledSeries]:
    """Read NAB realAdExchange files and their combined windows."""
    windows = json.loads((data_dir / "combined_windows_realAdExchange.json").read_text())
    corpus = []
    for rel, limits in sorted(windows.items()):
        frame = normalise_points(pd.read_csv(data_dir / rel))
        corpus.append(
            LabelledSeries(
                Path(rel).name,
                frame,
                [(pd.Timestamp(a, tz="UTC"), pd.Timestamp(b, tz="UTC")) for a, b in limits],
            )
        )
    return corpus


def load_msft_corpus(data_dir: Path = SHARED_DATA / "msft-purchase-rate") -> list[LabelledSeries]:
    """Read msft purchase-rate files; point labels become NAB windows.

    See :func:`models.nab.windows_from_point_labels` for the conversion.
    """
    corpus = []
    for path in sorted(data_dir.glob("purchase-*.csv")):
        raw = pd.read_csv(path)
        frame = normalise_points(raw, timestamp_col="TimeStamp", value_col="Value")
        windows = nab.windows_from_point_labels(frame[TIMESTAMP], raw["Label"].to_numpy())
        corpus.append(LabelledSeries(path.name, frame, windows))
    return corpus


def run_detector(detector: Detector, corpus: list[LabelledSeries]) -> dict[str, pd.DataFrame]:
    """Scores of a detector on every file of a corpus."""
    return {s.name: detector(s.points[[TIMESTAMP, VALUE]].reset_index(drop=True)) for s in corpus}


def nab_results(
    corpus: list[LabelledSeries],
    scores: dict[str, pd.DataFrame],
    profiles: dict[str, nab.CostProfile],
    threshold: float | None = None,
) -> dict[str, nab.CorpusResult]:
    """NAB results per profile (threshold swept over the corpus unless given)."""
    payload = {
        s.name: (s.points[TIMESTAMP].reset_index(drop=True), scores[s.name]["anomaly_score"].to_numpy(), s.windows)
        for s in corpus
    }
    return nab.evaluate_corpus(payload, profiles, threshold=threshold)


def results_table(results: dict[str, nab.CorpusResult]) -> pd.DataFrame:
    """One row per profile x file (plus the corpus total) for printing and JSON."""
    rows = []
    for profile, res in results.items():
        rows.append(
            {
                "profile": profile,
                "file": "TOTAL",
                "threshold": res.threshold,
                "raw": res.raw_score,
                "normalised": res.score,
                "windows": sum(f.windows for f in res.files),
                "detected": sum(f.windows_detected for f in res.files),
                "fp_rows": sum(f.fp for f in res.files),
                "precision": _safe_ratio(sum(f.true_alarms for f in res.files), sum(f.alarms for f in res.files)),
                "recall": _safe_ratio(sum(f.windows_detected for f in res.files), sum(f.windows for f in res.files)),
            }
        )
        for f in res.files:
            rows.append(
                {
                    "profile": profile,
                    "file": f.name,
                    "threshold": res.threshold,
                    "raw": f.score,
                    "normalised": np.nan,
                    "windows": f.windows,
                    "detected": f.windows_detected,
                    "fp_rows": f.fp,
                    "precision": f.precision,
                    "recall": f.recall,
                }
            )
    return pd.DataFrame(rows)


def _safe_ratio(num: float, den: float) -> float:
    return num / den if den else float("nan")


def load_synthetic_corpus(data_dir: Path = SHARED_DATA / "nab") -> list[LabelledSeries]:
    """Read NAB's 11 synthetic series (with and without anomalies) and their windows."""
    windows = json.loads((data_dir / "combined_windows_artificial.json").read_text())
    return [
        LabelledSeries(
            Path(rel).name,
            normalise_points(pd.read_csv(data_dir / rel)),
            [(pd.Timestamp(a, tz="UTC"), pd.Timestamp(b, tz="UTC")) for a, b in limits],
        )
        for rel, limits in sorted(windows.items())
    ]

"""The project's NAB scorer reproduces NAB's published per-file scores.

``../shared/data/nab/reference-results`` holds NAB's published result files of two reference
detectors (Numenta HTM and windowed Gaussian): per-row ``anomaly_score`` and the per-file
standard-profile scores NAB computed at its corpus-wide threshold. Each result file is
rescored here with :mod:`models.nab` at that threshold, with the windows of the shared
``combined_windows_*.json``, and must give the published score and row counts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from models import nab

pytestmark = pytest.mark.unit

DETECTORS = ("numenta", "windowedGaussian")


def _windows(nab_dir: Path) -> dict[str, list]:
    windows: dict[str, list] = {}
    for name in ("combined_windows_realAdExchange.json", "combined_windows_artificial.json"):
        windows.update(json.loads((nab_dir / name).read_text()))
    return windows


def _published(nab_dir: Path, detector: str) -> pd.DataFrame:
    path = nab_dir / "reference-results" / detector / f"{detector}_standard_scores.csv"
    if not path.exists():
        pytest.skip(f"NAB reference results not found at {path}")
    table = pd.read_csv(path)
    return table[table["File"].str.endswith(".csv") & (table["Profile"] == "standard")]


def _rescore(nab_dir: Path, detector: str, row: pd.Series, windows: dict[str, list]) -> nab.FileScore:
    folder, name = row["File"].split("/")
    results = pd.read_csv(nab_dir / "reference-results" / detector / folder / f"{detector}_{name}")
    limits = nab.window_index_limits(results["timestamp"], windows[row["File"]])
    profile = nab.STANDARD_PROFILES["standard"]
    points = nab.sweep_weights(name, results["anomaly_score"].to_numpy(float), limits, profile)
    return nab.score_file(points, profile, float(row["Threshold"]))


@pytest.mark.parametrize("detector", DETECTORS)
def test_rescored_reference_results_match_published_scores(shared_data: Path, detector: str) -> None:
    nab_dir = shared_data / "nab"
    windows = _windows(nab_dir)
    published = _published(nab_dir, detector)
    assert len(published) >= 17, f"expected the 6 realAdExchange and 11 synthetic files, got {len(published)}"
    for _, row in published.iterrows():
        mine = _rescore(nab_dir, detector, row, windows)
        assert mine.score == pytest.approx(float(row["Score"]), abs=1e-6), row["File"]
        assert (mine.tp, mine.fp, mine.fn, mine.tn) == (row["TP"], row["FP"], row["FN"], row["TN"]), row["File"]

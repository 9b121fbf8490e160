"""Benchmark of the KPI anomaly models: throughput, training time, NAB scores.

Run: ``.venv/bin/python bench/bench_models.py`` — prints figures and writes
``bench/results/models.json``. Figures, not assertions.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models import seasonal_baseline  # noqa: E402
from models.registry import evaluate_scorer  # noqa: E402
from models.scorer import BASELINE, ETS, KpiScorer  # noqa: E402
from models.series import SERIES_KEY  # noqa: E402

N_SERIES = 10_000
N_STEPS = 200


def batch_throughput(n_series: int = N_SERIES, n_steps: int = N_STEPS) -> dict[str, float]:
    """Points/s of ``score_batch``: every series advanced one minute per call (KPI x segment)."""
    rng = np.random.default_rng(0)
    params = seasonal_baseline.BaselineParams()
    state = seasonal_baseline.BaselineState()
    for i in range(n_series):
        state.add_series(f"kpi-{i}", seasonal_baseline.choose_transform(np.array([100.0])), 60.0)
    rows = np.arange(n_series)
    base = 1_700_000_000.0
    level = rng.uniform(10, 1000, n_series)
    # Warm up (cold-start branches), then time steady state.
    for step in range(50):
        seasonal_baseline.score_batch(state, params, rows, np.full(n_series, base + 60 * step), level * rng.lognormal(0, 0.1, n_series))
    values = level * rng.lognormal(0, 0.1, (n_steps, n_series))
    started = time.perf_counter()
    for step in range(n_steps):
        seasonal_baseline.score_batch(state, params, rows, np.full(n_series, base + 60 * (50 + step)), values[step])
    seconds = time.perf_counter() - started
    return {"series": n_series, "steps": n_steps, "seconds": seconds, "points_per_second": n_series * n_steps / seconds}


def frame_throughput(kind: str, n_series: int = 1_000, n_points: int = 500) -> dict[str, float]:
    """Points/s of the pandas path (``KpiScorer.score``, as pyfunc.predict uses it)."""
    rng = np.random.default_rng(1)
    ts = pd.date_range("2024-01-01", periods=n_points, freq="min", tz="UTC")
    frame = pd.DataFrame(
        {
            "timestamp": np.tile(ts, n_series),
            "value": rng.lognormal(3, 0.2, n_series * n_points),
            SERIES_KEY: np.repeat([f"s{i}" for i in range(n_series)], n_points),
        }
    )
    started = time.perf_counter()
    KpiScorer.new(kind).score(frame)
    seconds = time.perf_counter() - started
    return {"points": len(frame), "seconds": seconds, "points_per_second": len(frame) / seconds}


def training_time(kind: str, n_series: int = 20, hours: int = 24 * 60) -> dict[str, float]:
    """Seconds to fit one hourly KPI series with 60 days of history."""
    rng = np.random.default_rng(2)
    ts = pd.date_range("2024-01-01", periods=hours, freq="h", tz="UTC")
    parts = [
        pd.DataFrame({"timestamp": ts, "value": 100 * (1 + 0.4 * np.sin(2 * np.pi * ts.hour / 24)) * rng.lognormal(0, 0.1, hours), SERIES_KEY: f"s{i}"})
        for i in range(n_series)
    ]
    history = pd.concat(parts, ignore_index=True)
    started = time.perf_counter()
    KpiScorer.new(kind).fit(history)
    seconds = time.perf_counter() - started
    return {"series": n_series, "points_per_series": hours, "seconds_per_series": seconds / n_series}


def nab_summary(kind: str) -> dict[str, float]:
    """NAB normalised scores per corpus and profile, plus swept thresholds."""
    report = evaluate_scorer(KpiScorer.new(kind))
    return {k: round(v, 3) for k, v in report.metrics.items()}


def main() -> None:
    """Run every figure and write the JSON."""
    results: dict = {"machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()}}
    results["score_batch_throughput"] = batch_throughput()
    print(f"score_batch: {results['score_batch_throughput']['points_per_second']:,.0f} points/s "
          f"({N_SERIES} series x {N_STEPS} steps)")  # fmt: skip
    for kind in (BASELINE, ETS):
        results[f"{kind}_frame_throughput"] = frame_throughput(kind)
        results[f"{kind}_training"] = training_time(kind)
        results[f"{kind}_nab"] = nab_summary(kind)
        print(f"{kind}: frame scoring {results[f'{kind}_frame_throughput']['points_per_second']:,.0f} points/s; "
              f"training {results[f'{kind}_training']['seconds_per_series'] * 1000:.1f} ms per series (1440 hourly points)")  # fmt: skip
        nab_scores = results[f"{kind}_nab"]
        for corpus in ("nab", "msft", "all"):
            print(f"  NAB {corpus:5s} standard {nab_scores[f'nab_standard_{corpus}']:6.1f}  "
                  f"low_FP {nab_scores[f'nab_reward_low_FP_rate_{corpus}']:6.1f}  "
                  f"low_FN {nab_scores[f'nab_reward_low_FN_rate_{corpus}']:6.1f}")  # fmt: skip
    out = REPO / "bench" / "results" / "models.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()

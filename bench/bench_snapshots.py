"""Bytes and seconds the detect job spends saving its state after a micro-batch.

    .venv/bin/python bench/bench_snapshots.py [--series 300] [--days 1] [--batches 20]

A champion-family scorer (``cold_start_ensemble``) fitted on ``--days`` of minute history of
``--series`` series, their cursors, and six open windows per series (the carried ``views``).
Each way of saving one batch runs ``--batches`` times through
:class:`spark_jobs.detect.DetectorSnapshots` (Hadoop's file system, a temporary folder), timed
from the state in memory to the renamed file:

* ``whole_state`` — one snapshot of everything, as every batch with rows saved it before the
  scorer was split off;
* ``quiet_batch`` — a batch that learnt nothing (its open windows or alerts moved): the small
  part alone;
* ``learning_batch`` — a batch that learnt final windows: the scorer part, then the small part.

Writes ``bench/results/snapshots.json`` and prints the figures. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.scorer import ENSEMBLE, KpiScorer  # noqa: E402
from spark_jobs import detect  # noqa: E402

T0 = datetime(2026, 3, 2, tzinfo=UTC)
OPEN_WINDOWS = 6


def series_keys(n: int) -> list[str]:
    return [f"kpi_{i % 12}|1m|country={i // 12}" for i in range(n)]


def fitted_scorer(keys: list[str], days: float) -> KpiScorer:
    rng = np.random.default_rng(0)
    minutes = pd.date_range(T0 - timedelta(days=days), T0, freq="min", tz="UTC", inclusive="left")
    wave = 1 + 0.3 * np.sin(2 * np.pi * minutes.hour.to_numpy() / 24)
    parts = [
        pd.DataFrame({"timestamp": minutes, "value": rng.poisson(level * wave).astype(float), "series_key": key})
        for key, level in zip(keys, rng.uniform(5, 200, len(keys)), strict=True)
    ]
    return KpiScorer.new(ENSEMBLE).fit(pd.concat(parts, ignore_index=True))


def open_views(keys: list[str]) -> pd.DataFrame:
    """The latest image of each series' open windows (the state's ``views``)."""
    rows = []
    for key in keys:
        kpi, grain, dimension = key.split("|")
        for m in range(OPEN_WINDOWS):
            start = T0 + timedelta(minutes=m)
            rows.append({"kpi": kpi, "grain": grain, "window_start": start, "window_end": start + timedelta(minutes=1),
                         "dimension": dimension, "value": 12.0, "numerator": np.nan, "denominator": np.nan, "is_final": False,
                         "computed_at": start + timedelta(seconds=30), "watermark": T0 - timedelta(minutes=2),
                         "series_key": key, "t": start.timestamp()})  # fmt: skip
    return pd.DataFrame(rows)


def whole_state_bytes(state: detect.DetectorState) -> bytes:
    """Everything in one compressed archive, as a snapshot held it before the split."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **state.arrays(), **state.scorer_arrays())
    return buffer.getvalue()


def timed_saves(save, batches: int) -> dict[str, float]:  # noqa: ANN001 - batch id -> None
    seconds = []
    for batch in range(batches):
        started = time.perf_counter()
        save(batch)
        seconds.append(time.perf_counter() - started)
    return {"median_ms": 1000 * statistics.median(seconds), "max_ms": 1000 * max(seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=300)
    parser.add_argument("--days", type=float, default=1.0)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()

    from lakehouse.config import load_settings
    from lakehouse.runtime.spark import get_spark

    keys = series_keys(args.series)
    started = time.perf_counter()
    scorer = fitted_scorer(keys, args.days)
    print(f"fitted {args.series} series on {args.days} day(s) of minutes in {time.perf_counter() - started:.1f} s")
    state = detect.DetectorState(cursor={k: (T0 - timedelta(minutes=1)).timestamp() for k in keys}, views=open_views(keys),
                                 watermark=T0 - timedelta(minutes=2))  # fmt: skip
    state.use_scorer(scorer, "7")

    root = Path(tempfile.mkdtemp(prefix="trivas-bench-snapshots-"))
    settings = load_settings("local", environ={"TRIVAS_PATHS__VAR": str(root / "var"), "TRIVAS_TABLES__ROOT": str(root / "lake"),
                                               "TRIVAS_TABLES__CHECKPOINTS": str(root / "checkpoints")})  # fmt: skip
    spark = get_spark(settings, app_name="trivas-bench-snapshots")
    try:
        whole = detect.SnapshotStore(spark, str(root / "whole"), "snapshot")
        split = detect.DetectorSnapshots(spark, str(root / "split"))
        split.save(state, 0)  # the first save writes the scorer part

        def learning(batch: int) -> None:
            state.scorer_changed = True
            split.save(state, 1 + batch)

        figures = {
            "whole_state": {"bytes": len(whole_state_bytes(state)), **timed_saves(lambda b: whole.save(b, whole_state_bytes(state)), args.batches)},
            "quiet_batch": {"bytes": len(state.to_bytes()), **timed_saves(lambda b: split.save(state, 1000 + b), args.batches)},
            "learning_batch": {"bytes": len(state.to_bytes()) + len(state.scorer_bytes()), **timed_saves(lambda b: learning(2000 + b), args.batches)},
        }  # fmt: skip
    finally:
        spark.stop()
    for name, figure in figures.items():
        print(f"{name:>15}: {figure['bytes'] / 1024:8.1f} KiB per batch, save {figure['median_ms']:7.1f} ms median ({figure['max_ms']:.1f} max)")
    results = {
        "snapshot_per_batch": {"series": args.series, "history_days": args.days, "open_windows_per_series": OPEN_WINDOWS,
                               "batches": args.batches, **figures},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg": os.getloadavg()},
    }  # fmt: skip
    out = REPO / "bench" / "results" / "snapshots.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()

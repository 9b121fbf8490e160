"""Benchmark of the KPI anomaly models: throughput, training time, NAB scores.

Run: ``.venv/bin/python bench/bench_models.py`` — prints figures and writes
``bench/results/models.json`` (with ``detection_delay_s`` and ``false_alarms_per_kpi_day`` of
the incident replay); ``--incidents-only`` runs just the incident replay and updates those keys
of ``models.json`` in place (``--incidents-only --seed N``: another draw, printed only); ``--stream-only`` runs just the in-stream figure (the detect
job on a gold.kpi backlog). Figures, not assertions.
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
from models.scorer import BASELINE, ENSEMBLE, ETS, FAMILIES, HST, KpiScorer  # noqa: E402
from models.series import SERIES_KEY  # noqa: E402
from models.validation import validate  # noqa: E402

N_SERIES = 10_000
SHARED_NAB = REPO / ".." / "shared" / "data" / "nab"
N_STEPS = 200


def batch_throughput(
    n_series: int = N_SERIES, n_steps: int = N_STEPS, family: str = ENSEMBLE, counts: bool = False, exposure: bool = False
) -> dict[str, float]:
    """Points/s of a family's ``score_batch``: every series advanced one minute per call (KPI x segment);
    ``counts``: every series a ratio KPI with its counts (the ensemble's binomial test runs too);
    ``exposure``: every series a count KPI given its exposure (the Poisson CUSUMs run too)."""
    module, params_cls, state_cls = FAMILIES[family]
    rng = np.random.default_rng(0)
    params = params_cls()
    state = state_cls()
    for i in range(n_series):
        state.add_series(f"kpi-{i}", seasonal_baseline.choose_transform(np.array([100.0])), 60.0)
    rows = np.arange(n_series)
    base = 1_700_000_000.0
    level = rng.uniform(10, 1000, n_series)
    # Warm up (cold-start branches), then time steady state.
    for step in range(50):
        module.score_batch(state, params, rows, np.full(n_series, base + 60 * step), level * rng.lognormal(0, 0.1, n_series))
    values = level * rng.lognormal(0, 0.1, (n_steps, n_series))
    if exposure:
        values = rng.poisson(values).astype(float)
    attempts = rng.poisson(24.0, (n_steps, n_series)).astype(float)
    failures = rng.binomial(attempts.astype(int), 0.05).astype(float)
    started = time.perf_counter()
    for step in range(n_steps):
        extra = (failures[step], attempts[step]) if counts else ()
        more = {"exposures": np.ones(n_series)} if exposure else {}
        module.score_batch(state, params, rows, np.full(n_series, base + 60 * (50 + step)), values[step], *extra, **more)
    seconds = time.perf_counter() - started
    return {"family": family, "series": n_series, "steps": n_steps, "counts": counts, "exposure": exposure, "seconds": seconds,
            "points_per_second": n_series * n_steps / seconds}  # fmt: skip


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
    """NAB normalised scores in sample and out of sample (leave one file out; leave one group out
    as ``logo``), per group and profile, with the family's default parameters (``trivas model
    evaluate`` runs the search)."""
    report = validate(kind, search=False)
    return {k: round(v, 3) for k, v in report.metrics.items()}


def stream_throughput(n_series: int = 200, n_windows: int = 1_440, workdir: Path | None = None) -> dict[str, float]:
    """Points/s through the detect job (``spark_jobs.detect``) on a backlog of final gold.kpi rows.

    One Delta append of ``n_series`` x ``n_windows`` final 1-minute rows into a gold.kpi with
    its change data feed on, a champion in a sqlite registry, then one ``availableNow`` run of
    ``detect_kpi``: change feed read, newest image per key, scoring, thresholds, alert MERGE and
    the scorer snapshot. Wall time includes query start; ``scoring_seconds`` is the share spent
    in the scorer itself.
    """
    import os
    import shutil
    import tempfile
    from datetime import UTC, datetime, timedelta

    from lakehouse.alerts.lifecycle import ALERTS_TABLE
    from lakehouse.config import load_settings
    from lakehouse.contracts import contracts
    from lakehouse.runtime.spark import get_spark
    from lakehouse.tables import ensure_table
    from models import registry
    from spark_jobs import detect, gold

    root = Path(workdir or tempfile.mkdtemp(prefix="trivas-bench-detect-"))
    env = {
        "TRIVAS_PATHS__VAR": str(root / "var"), "TRIVAS_TABLES__ROOT": str(root / "lake"),
        "TRIVAS_TABLES__CHECKPOINTS": str(root / "checkpoints"), "TRIVAS_MLFLOW__TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
    }  # fmt: skip
    settings = load_settings(os.environ.get("TRIVAS_ENV", "local"), environ=env)
    spark = get_spark(settings, app_name="trivas-bench-detect")
    try:
        kpis = [k for k, c in contracts().kpis.items() if c.kind == "measure"]
        rng = np.random.default_rng(3)
        start = datetime(2026, 3, 2, tzinfo=UTC)
        minutes = np.arange(n_windows)
        keys = [(kpis[i % len(kpis)], f"country=C{i // len(kpis)}" if i >= len(kpis) else "all") for i in range(n_series)]
        history = pd.concat(
            [
                pd.DataFrame({"timestamp": [start - timedelta(minutes=int(m)) for m in range(1, 121)], "value": rng.poisson(30, 120).astype(float),
                              SERIES_KEY: detect.series_key(k, "1m", d)})
                for k, d in keys[:10]
            ]
        )  # fmt: skip
        registry.train_and_register(history, tracking_uri=env["TRIVAS_MLFLOW__TRACKING_URI"], model_name=settings.mlflow.anomaly_model, evaluate=False)
        ensure_table(spark, settings, gold.KPI_TABLE, gold.KPI_SCHEMA)
        detect.ensure_detect_tables(spark, settings)
        rows = [
            (k, "1m", start + timedelta(minutes=int(m)), start + timedelta(minutes=int(m) + 1), d, float(v), None, None, 1, "x",
             None, start + timedelta(minutes=int(m) + 2), {}, True)
            for k, d in keys
            for m, v in zip(minutes, rng.poisson(30, n_windows), strict=True)
        ]  # fmt: skip
        spark.createDataFrame(rows, gold.KPI_SCHEMA).write.format("delta").mode("append").save(gold.table_location(settings, gold.KPI_TABLE))
        last = start + timedelta(minutes=n_windows + 2)
        options = detect.DetectOptions(alias_check_seconds=3600, clock=lambda: last)
        started = time.perf_counter()
        queries = detect.run(spark, settings, None, contracts(), available_now=True, options=options)
        for query in queries:
            query.awaitTermination()
        seconds = time.perf_counter() - started
        points = n_series * n_windows
        scorer_started = time.perf_counter()
        frame = pd.DataFrame(
            {"timestamp": [r[2] for r in rows], "value": [r[5] for r in rows], SERIES_KEY: [detect.series_key(r[0], "1m", r[4]) for r in rows]}
        )
        KpiScorer.new(ENSEMBLE).score(frame)
        scoring = time.perf_counter() - scorer_started
        alerts = gold.read_table(spark, settings, ALERTS_TABLE).count()
        return {"series": n_series, "windows": n_windows, "points": points, "seconds": seconds,
                "points_per_second": points / seconds, "scoring_seconds": scoring, "alerts": alerts}  # fmt: skip
    finally:
        spark.stop()
        if workdir is None:
            shutil.rmtree(root, ignore_errors=True)


FINAL_DELAY_S = 6 * 60  # gold's watermark delay: a final window is scored this long after it ends
# kpi -> additive; payment_failure_rate_5m is a sliding 5-minute ratio (a short sliding grain:
# a minute holds too few payment attempts for a tripled failure rate to stand out).
REPLAY_KPIS = {"sessions": True, "orders": True, "payment_failure_rate": False, "payment_failure_rate_5m": False}


def _partial(frame: pd.DataFrame, fraction: float, rng: np.random.Generator) -> pd.DataFrame:
    """The minute values as seen ``fraction`` into the minute (counts thinned binomially)."""
    out = frame.copy()
    for kpi in ("sessions", "orders", "payment_attempts"):
        out[kpi] = rng.binomial(frame[kpi].astype(int).to_numpy(), fraction).astype(float)
    seen = np.divide(out["payment_attempts"], frame["payment_attempts"].where(frame["payment_attempts"] > 0)).fillna(0.0)
    out["payment_failures"] = rng.binomial(frame["payment_failures"].astype(int).to_numpy(), seen.to_numpy()).astype(float)
    out["payment_failure_rate"] = (out["payment_failures"] / out["payment_attempts"].where(out["payment_attempts"] > 0)).astype(float)
    return out


def _long(frame: pd.DataFrame, run: str) -> pd.DataFrame:
    frame = frame.assign(
        payment_failure_rate_5m=frame["payment_failures"].rolling(5, min_periods=1).sum()
        / frame["payment_attempts"].rolling(5, min_periods=1).sum().where(lambda v: v > 0)
    )
    parts = [
        pd.DataFrame({"timestamp": frame["timestamp"], "value": frame[k].astype(float), "kpi": k, SERIES_KEY: f"{run}|{k}|1m|all", "additive": add,
                      **_counts(frame, k)})
        for k, add in REPLAY_KPIS.items()
    ]  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def _counts(frame: pd.DataFrame, kpi: str) -> dict[str, pd.Series | float]:
    """``numerator``/``denominator`` as gold.kpi carries them for the (tumbling) 1-minute
    failure rate; NaN for counts and for the sliding 5-minute ratio (its counts overlap)."""
    if kpi == "payment_failure_rate":
        return {"numerator": frame["payment_failures"].astype(float), "denominator": frame["payment_attempts"].astype(float)}
    return {"numerator": np.nan, "denominator": np.nan}


def incident_replay(days: float = 2.0, history_days: int = 7, scenarios: int = 3, seed: int = 11, kind: str = ENSEMBLE) -> dict:
    """Detection delay of injected incidents and false alarms on clean traffic.

    Generated KPI minute series (:mod:`lakehouse.generator.incidents`) are replayed through
    :mod:`models.kpi_scoring`, the scoring step of the detect job: each minute's window is
    scored open at 30 s (partial counts) and again when it has ended (complete, not final
    yet), then scored final (and learnt) ``FINAL_DELAY_S`` after its end. ``scenarios`` clean
    runs and as many incident runs (each: three checkout outages, payment degradations and
    bot bursts at random minutes, plus the calendar's Friday flash sale, which must not page)
    advance side by side from one champion trained on 7 days of clean history, paging at
    its alert-budget thresholds.

    Returns:
        ``detection_delay_s`` (p50/p95 and misses per incident kind),
        ``false_alarms_per_kpi_day`` (alert episodes per KPI per day on the clean runs), and
        the number of alarms during the promotion.
    """
    from lakehouse.campaigns import CampaignCalendar
    from lakehouse.generator import incidents as inc
    from models import kpi_scoring
    from models.alert_budget import budget_thresholds, open_window_thresholds
    from models.registry import ALERTS_PER_WEEK

    calendar = CampaignCalendar.load()
    start = inc.utc_minute(2026, 3, 12)  # a Thursday: the span holds the Friday flash sale
    minutes = int(days * 1440)
    history = inc.kpi_minute_series(start - pd.Timedelta(days=history_days), history_days * 1440, seed=seed)
    names = [f"clean{i}" for i in range(scenarios)] + [f"incident{i}" for i in range(scenarios)]
    train = pd.concat([_long(history, run) for run in names], ignore_index=True)
    # complete windows of the (tumbling) counts: exposure 1, as the detect job's final windows
    train["exposure"] = np.where(train["additive"].to_numpy(bool), 1.0, np.nan)
    train = train[["timestamp", "value", SERIES_KEY, "numerator", "denominator", "exposure"]]
    scorer = KpiScorer.new(kind)
    started = time.perf_counter()
    scorer.fit(train)
    replayed = scorer.replay(train)
    scorer.page_thresholds = budget_thresholds(train, replayed, ALERTS_PER_WEEK)
    scorer.open_thresholds = open_window_thresholds(
        train, replayed, ALERTS_PER_WEEK, float(getattr(scorer.params, "band_k", 4.0)), count_params=scorer.count_params()
    )
    train_seconds = time.perf_counter() - started
    runs, planned = {}, {}
    for i in range(scenarios):
        clean = inc.kpi_minute_series(start, minutes, seed=seed + 1 + i)
        planned[f"incident{i}"] = inc.scheduled_incidents(start, minutes, calendar, seed=seed + 100 + i)
        runs[f"clean{i}"] = clean
        runs[f"incident{i}"] = inc.inject(clean, planned[f"incident{i}"], seed=seed + i)
    rng = np.random.default_rng(seed)
    half = {run: _partial(frame, 0.5, rng) for run, frame in runs.items()}
    steps = [
        ("open", pd.concat([_long(f, run) for run, f in half.items()], ignore_index=True).assign(fraction=0.5), 30.0),
        ("open", pd.concat([_long(f, run) for run, f in runs.items()], ignore_index=True).assign(fraction=1.0), 60.0),
        ("final", pd.concat([_long(f, run) for run, f in runs.items()], ignore_index=True), 60.0 + FINAL_DELAY_S),
    ]
    by_minute = [(mode, frame, lag, frame.groupby("timestamp").indices) for mode, frame, lag in steps]
    stamps = sorted(runs[names[0]]["timestamp"])
    alarms = []  # (series_key, kpi, alert time)
    started = time.perf_counter()
    evaluated = 0
    for stamp in stamps:
        for mode, frame, lag, index in by_minute:
            points = frame.iloc[index[stamp]].reset_index(drop=True)
            out = (kpi_scoring.score_open if mode == "open" else kpi_scoring.score_final)(scorer, points, calendar)
            evaluated += len(points)
            at = stamp + pd.Timedelta(seconds=lag)
            alarms += [(points[SERIES_KEY][i], points["kpi"][i], at, mode, stamp) for i in np.flatnonzero(out["is_anomaly"].to_numpy())]
    replay_seconds = time.perf_counter() - started
    found = pd.DataFrame(alarms, columns=["series", "kpi", "at", "path", "window"])
    found["at"] = pd.to_datetime(found["at"], utc=True)
    incident_alarms = {run: found[found["series"].str.startswith(f"{run}|")] for run in planned}
    clean_alarms = found[found["series"].str.startswith("clean")]
    return {
        "days": days,
        "scenarios": scenarios,
        "train_seconds": train_seconds,
        "replay_points_per_second": evaluated / replay_seconds,
        "detection_delay_s": _detection_delays(incident_alarms, planned),
        "false_alarms_per_kpi_day": _false_alarms(clean_alarms, days * scenarios),
        # the same, counting only the alarms of one path (open windows / final windows)
        "false_alarms_per_kpi_day_by_path": {
            path: _false_alarms(clean_alarms[clean_alarms["path"] == path], days * scenarios) for path in ("open", "final")
        },
        "false_alarm_episodes": [
            {"series": r.series, "at": r.at.isoformat(), "path": r.path} for r in _episodes(clean_alarms).itertuples()
        ],
        "promotion_alarms": sum(_promotion_alarms(incident_alarms[run], planned[run]) for run in planned),
        "page_thresholds": {k: v for k, v in scorer.page_thresholds.items() if k.startswith("clean0|")},
        "open_thresholds": {k: v for k, v in scorer.open_thresholds.items() if k.startswith("clean0|")},
    }


def _episodes(alarms: pd.DataFrame, gap: pd.Timedelta = pd.Timedelta(minutes=5)) -> pd.DataFrame:
    """Alarms merged into episodes per series by the windows they flag (a new episode after
    ``gap`` of windows without alarms): the early warning of a window and its final alert
    six minutes later are one episode (two notifications, a warning then an error)."""
    rows = []
    for series, part in alarms.sort_values(["window", "at"]).groupby("series"):
        nanos = pd.to_datetime(part["window"], utc=True).astype("int64").to_numpy()
        starts = np.r_[True, np.diff(nanos) > gap.value]
        rows += [{"series": series, "kpi": part["kpi"].iloc[0], "at": t, "path": path}
                 for t, path in zip(pd.to_datetime(part["at"], utc=True)[starts], part["path"].to_numpy()[starts], strict=True)]  # fmt: skip
    return pd.DataFrame(rows, columns=["series", "kpi", "at", "path"])


def _detection_delays(alarms: dict[str, pd.DataFrame], planned: dict[str, list]) -> dict:
    out: dict[str, dict] = {}
    for kind in ("checkout_outage", "payment_degradation", "bot_burst"):
        delays, missed, each = [], 0, []
        for run, incidents in planned.items():
            found = alarms[run]
            for incident in (i for i in incidents if i.kind == kind):
                window = found["kpi"].str.startswith(incident.kpis) & (found["at"] >= incident.start) & (found["at"] <= incident.end + pd.Timedelta(minutes=10))
                if window.any():
                    delays.append((found["at"][window].min() - incident.start).total_seconds())
                else:
                    missed += 1
                each.append({"run": run, "start": incident.start.isoformat(), "minutes": incident.minutes,
                             "delay_s": delays[-1] if window.any() else None})  # fmt: skip
        out[kind] = {
            "incidents": len(delays) + missed, "missed": missed,
            "p50": float(np.percentile(delays, 50)) if delays else None,
            "p95": float(np.percentile(delays, 95)) if delays else None,
            "each": each,
        }  # fmt: skip
    return out


def _false_alarms(alarms: pd.DataFrame, days: float) -> dict:
    episodes = _episodes(alarms)
    per_kpi = {k: len(episodes[episodes["kpi"] == k]) / days for k in REPLAY_KPIS}
    return {**per_kpi, "mean": float(np.mean(list(per_kpi.values())))}


def _promotion_alarms(alarms: pd.DataFrame, planned: list) -> int:
    """Alarms on the promoted KPIs' windows inside a promotion (by the window flagged: an
    outage's alarm on the minute before the sale, raised as the sale starts, is not one)."""
    pages = 0
    window = pd.to_datetime(alarms["window"], utc=True)
    for incident in (i for i in planned if i.expected):
        pages += int((alarms["kpi"].isin(incident.kpis) & (window >= incident.start) & (window < incident.end)).sum())
    return pages


def _incident_keys(replay: dict) -> dict:
    """The incident figures as ``models.json`` records them: ``detection_delay_s`` (p50/p95 and
    misses per incident kind), ``false_alarms_per_kpi_day`` on clean traffic, and the replay
    itself (thresholds, promotion alarms, replay speed) under ``incident_replay``."""
    return {
        "detection_delay_s": replay["detection_delay_s"],
        "false_alarms_per_kpi_day": replay["false_alarms_per_kpi_day"],
        "incident_replay": replay,
    }


def main() -> None:
    """Run every figure and write the JSON."""
    results: dict = {"machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()}}
    out = REPO / "bench" / "results" / "models.json"
    if "--incidents-only" in sys.argv:
        # --seed N: another draw of history and incidents (development runs; only the default
        # seed's figures are recorded in models.json)
        seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else None
        replay = incident_replay(**({"seed": seed} if seed is not None else {}))
        if seed is not None:
            print(json.dumps({k: v for k, v in replay.items() if k != "incidents"}, indent=2))
            print(f"seed {seed}: not written to {out}")
            return
        print(json.dumps({k: v for k, v in replay.items() if k != "incidents"}, indent=2))
        # Record the incident figures in place (the other figures of models.json are kept).
        recorded = json.loads(out.read_text()) if out.exists() else {}
        recorded.update({"machine": results["machine"], **_incident_keys(replay)})
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(recorded, indent=2))
        print(f"written {out} (incident figures)")
        return
    if "--throughput-only" in sys.argv:
        for name, kwargs in (("", {}), ("_with_counts", {"counts": True}), ("_with_exposure", {"exposure": True})):
            figure = batch_throughput(family=ENSEMBLE, **kwargs)
            print(f"{ENSEMBLE} score_batch{name}: {figure['points_per_second']:,.0f} points/s")
        return
    if "--stream-only" in sys.argv:
        results["detect_stream_throughput"] = stream_throughput()
        print(json.dumps(results, indent=2))
        return
    results[f"{ENSEMBLE}_score_batch_throughput_with_counts"] = batch_throughput(family=ENSEMBLE, counts=True)
    print(f"{ENSEMBLE} score_batch with ratio counts: {results[f'{ENSEMBLE}_score_batch_throughput_with_counts']['points_per_second']:,.0f} points/s")
    results[f"{ENSEMBLE}_score_batch_throughput_with_exposure"] = batch_throughput(family=ENSEMBLE, exposure=True)
    print(f"{ENSEMBLE} score_batch with count exposure: {results[f'{ENSEMBLE}_score_batch_throughput_with_exposure']['points_per_second']:,.0f} points/s")
    for family in (ENSEMBLE, BASELINE):
        results[f"{family}_score_batch_throughput"] = batch_throughput(family=family)
        print(f"{family} score_batch: {results[f'{family}_score_batch_throughput']['points_per_second']:,.0f} points/s "
              f"({N_SERIES} series x {N_STEPS} steps)")  # fmt: skip
    replay = incident_replay()
    results.update(_incident_keys(replay))
    print(f"incident replay: detection_delay_s {json.dumps(replay['detection_delay_s'])}")
    print(f"  false_alarms_per_kpi_day {json.dumps(replay['false_alarms_per_kpi_day'])}; promotion alarms {replay['promotion_alarms']}")
    for kind in (ENSEMBLE, BASELINE, ETS, HST):
        results[f"{kind}_frame_throughput"] = frame_throughput(kind, n_series=100 if kind == HST else 1_000)
        results[f"{kind}_training"] = training_time(kind, n_series=2 if kind == HST else 20)
        print(f"{kind}: frame scoring {results[f'{kind}_frame_throughput']['points_per_second']:,.0f} points/s; "
              f"training {results[f'{kind}_training']['seconds_per_series'] * 1000:.1f} ms per series (1440 hourly points)")  # fmt: skip
        if kind == HST or not (SHARED_NAB).exists():
            continue
        nab_scores = results[f"{kind}_nab"] = nab_summary(kind)
        for group in ("realAdExchange", "synthetic", "purchase_rate", "all"):
            print(f"  NAB {group:15s} standard in {nab_scores[f'nab_standard_in_{group}']:6.1f} "
                  f"out of sample {nab_scores[f'nab_standard_oos_{group}']:6.1f}")  # fmt: skip
    stream = results["detect_stream_throughput"] = stream_throughput()
    print(f"detect job (availableNow over a gold.kpi backlog): {stream['points_per_second']:,.0f} points/s "
          f"({stream['points']:,} points, {stream['series']} series, {stream['seconds']:.1f}s incl. query start; "
          f"scorer alone {stream['scoring_seconds']:.2f}s)")  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()

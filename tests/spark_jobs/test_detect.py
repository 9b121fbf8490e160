"""The detect job on a real stream: gold.kpi (Delta, change data feed) → gold.alerts.

Real Spark + Delta, a real MLflow sqlite registry in ``tmp_path``, champions trained and
registered like ``trivas model train`` does. gold.kpi rows are written the way the gold
job writes them: MERGE by key (open windows restated), then an UPDATE flipping ``is_final``.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from lakehouse.alerts import lifecycle
from lakehouse.config import Settings
from lakehouse.contracts import contracts as load_contracts
from models import registry
from spark_jobs import detect, gold

MINUTE = timedelta(minutes=1)
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # first live window; history ends just before
SERIES = {  # kpi -> (level, noise sd, is a count)
    "orders": (20.0, 0.0, True),
    "revenue": (900.0, 60.0, False),
    "payment_failure_rate": (0.10, 0.012, False),
}


# -- builders ----------------------------------------------------------------------------------


def normal_value(kpi: str, minute: int, rng: np.random.Generator) -> float:
    """A KPI's in-band value at a minute (slow hourly wave plus noise)."""
    level, sd, count = SERIES[kpi]
    base = level * (1 + 0.1 * np.sin(2 * np.pi * minute / 60))
    if count:
        return float(rng.poisson(base))
    return float(max(base + rng.normal(0, sd), 0.0))


def history(days: float = 2.0, seed: int = 0) -> pd.DataFrame:
    """Training history of the three live series (gold.kpi shape → model points); the final
    windows of a count are complete (exposure 1), as detect warms a model on them."""
    rng = np.random.default_rng(seed)
    minutes = np.arange(-int(days * 24 * 60), 0)
    parts = []
    for kpi in SERIES:
        values = [normal_value(kpi, int(m), rng) for m in minutes]
        parts.append(
            pd.DataFrame(
                {
                    "timestamp": [T0 + int(m) * MINUTE for m in minutes],
                    "value": values,
                    "series_key": detect.series_key(kpi, "1m", "all"),
                    "exposure": 1.0 if SERIES[kpi][2] else np.nan,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def kpi_row(
    kpi: str, minute: int, value: float | None, *, final: bool, computed_at: datetime, dimension: str = "all",
    watermark: datetime | None = None,
) -> dict:  # fmt: skip
    """One gold.kpi row (window ``T0 + minute``) in KPI_SCHEMA."""
    start = T0 + minute * MINUTE
    return {
        "kpi": kpi, "grain": "1m", "window_start": start, "window_end": start + MINUTE, "dimension": dimension,
        "value": value, "numerator": None, "denominator": None, "events": 1, "unit": "x",
        "watermark": watermark, "computed_at": computed_at, "source_versions": {}, "is_final": final,
    }  # fmt: skip


def merge_kpi_rows(spark, settings: Settings, rows: list[dict]) -> None:  # noqa: ANN001
    """Upsert rows as the gold writer does (MERGE on kpi, grain, window_start, dimension)."""
    frame = spark.createDataFrame([tuple(r[f] for f in gold.KPI_SCHEMA.fieldNames()) for r in rows], gold.KPI_SCHEMA)
    (
        gold.delta_table(spark, settings, gold.KPI_TABLE).alias("t")
        .merge(frame.alias("s"), "t.kpi = s.kpi AND t.grain = s.grain AND t.window_start = s.window_start AND t.dimension = s.dimension")
        .whenMatchedUpdateAll()
        .whenNotMatchedInsertAll()
        .execute()
    )  # fmt: skip


def finalise(spark, settings: Settings, upto_minute: int) -> None:  # noqa: ANN001
    """Flag windows ending at or before ``T0 + upto_minute`` as final (gold's UPDATE)."""
    from pyspark.sql import functions as F

    gold.delta_table(spark, settings, gold.KPI_TABLE).update(
        condition=(~F.col("is_final")) & (F.col("window_end") <= F.lit(T0 + upto_minute * MINUTE)),
        set={"is_final": F.lit(True)},
    )


def run_detect(spark, settings: Settings, clock: Callable[[], datetime]) -> None:  # noqa: ANN001
    options = detect.DetectOptions(alias_check_seconds=0, clock=clock)
    for query in detect.run(spark, settings, None, load_contracts(), available_now=True, options=options):
        query.awaitTermination(300)
        assert query.exception() is None


def alerts(spark, settings: Settings) -> set[tuple]:  # noqa: ANN001
    """(kpi, dimension, window_start minute, rule, state) of every alert."""
    rows = gold.read_table(spark, settings, lifecycle.ALERTS_TABLE).collect()
    return {
        (r["kpi"], r["dimension"], int((r["window_start"].replace(tzinfo=UTC) - T0) / MINUTE), r["rule"], r["state"])
        for r in rows
        if r["rule"] != lifecycle.RULE_FRESHNESS
    }


def alert_rows(spark, settings: Settings) -> pd.DataFrame:  # noqa: ANN001
    return gold.read_table(spark, settings, lifecycle.ALERTS_TABLE).toPandas()


@pytest.fixture()
def kpi_table(spark, lake: Settings) -> Settings:  # noqa: ANN001
    # gold.kpi exactly as gold.ensure_gold_tables creates it (the other gold tables are not needed).
    gold.ensure_table(spark, lake, gold.KPI_TABLE, gold.KPI_SCHEMA)
    detect.ensure_detect_tables(spark, lake)
    return lake


# -- pure parts ---------------------------------------------------------------------------------


@pytest.mark.unit
def test_alert_ids_are_deterministic_per_episode() -> None:
    a = lifecycle.alert_id("orders", "1m", "all", "anomaly_model", T0)
    assert a == lifecycle.alert_id("orders", "1m", "all", "anomaly_model", T0.astimezone(UTC))
    assert a != lifecycle.alert_id("orders", "1m", "all", "threshold_min", T0)
    assert a != lifecycle.alert_id("orders", "1m", "all", "anomaly_model", T0 + MINUTE)


@pytest.mark.unit
def test_lifecycle_fires_extends_and_resolves() -> None:
    book = lifecycle.AlertBook()
    now = T0 + timedelta(hours=1)

    def point(m: int) -> dict:
        return {"kpi": "orders", "grain": "1m", "dimension": "all", "window_start": T0 + m * MINUTE, "window_end": T0 + (m + 1) * MINUTE}

    book.observe("orders|1m|all", "threshold_min", True, point(3), now, observed=0.0)
    book.observe("orders|1m|all", "threshold_min", True, point(4), now + MINUTE, observed=0.0)
    (fired,) = book.take_changes()
    assert fired.state == "firing" and fired.window_start == T0 + 3 * MINUTE and fired.window_end == T0 + 5 * MINUTE
    assert fired.first_seen_at == now and fired.updated_at == now + MINUTE
    book.observe("orders|1m|all", "threshold_min", False, point(5), now + 2 * MINUTE, observed=4.0)
    (resolved,) = book.take_changes()
    assert (resolved.alert_id, resolved.state) == (fired.alert_id, "resolved")
    assert not book.open
    book.observe("orders|1m|all", "threshold_min", False, point(6), now, observed=4.0)
    assert book.take_changes() == []


@pytest.mark.unit
def test_freshness_transitions() -> None:
    kpis = load_contracts()
    last = {"orders": T0, "payment_failure_rate": T0}
    open_alerts: dict = {}
    fired = detect.freshness_transitions(last, open_alerts, kpis, T0 + timedelta(seconds=90))
    assert [(a.kpi, a.state, a.observed, a.upper) for a in fired] == [("orders", "firing", 90.0, 60.0)]
    assert detect.freshness_transitions(last, open_alerts, kpis, T0 + timedelta(seconds=95)) == []
    last["orders"] = T0 + timedelta(seconds=94)
    (resolved,) = detect.freshness_transitions(last, open_alerts, kpis, T0 + timedelta(seconds=95))
    assert (resolved.alert_id, resolved.state) == (fired[0].alert_id, "resolved")


@pytest.mark.unit
def test_only_final_windows_after_the_cursor_are_scored() -> None:
    rows = pd.DataFrame([kpi_row("orders", m, 1.0, final=m < 3, computed_at=T0) for m in range(5)])
    cursor = {"orders|1m|all": (T0 + MINUTE - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()}
    points = detect.new_points(rows[detect.POINT_COLUMNS], cursor)
    assert [int((pd.Timestamp(t) - T0) / MINUTE) for t in points["window_start"]] == [2]


@pytest.mark.unit
def test_open_windows_after_the_cursor_carry_their_elapsed_share() -> None:
    rows = pd.DataFrame(
        [kpi_row("orders", m, 5.0, final=False, computed_at=T0 + m * MINUTE + timedelta(seconds=15)) for m in range(3)]
        + [kpi_row("conversion_rate", 2, 0.02, final=False, computed_at=T0 + 4 * MINUTE)]
        + [kpi_row("orders", 3, 20.0, final=True, computed_at=T0 + 9 * MINUTE)]
    )
    cursor = {"orders|1m|all": (T0 - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()}
    opened = detect.open_points(rows[detect.POINT_COLUMNS], cursor, load_contracts())
    got = [(k, int((pd.Timestamp(t) - T0) / MINUTE), f, a) for k, t, f, a in opened[["kpi", "window_start", "fraction", "additive"]].values]
    assert got == [("conversion_rate", 2, 1.0, False), ("orders", 1, 0.25, True), ("orders", 2, 0.25, True)]


@pytest.mark.unit
def test_open_window_alert_fires_updates_and_resolves_on_restatement() -> None:
    book = lifecycle.AlertBook()
    opened = pd.DataFrame([kpi_row("orders", 5, 0.0, final=False, computed_at=T0 + 5 * MINUTE + timedelta(seconds=30))])
    opened["series_key"] = "orders|1m|all"

    def scores(flag: bool, score: float) -> pd.DataFrame:
        return pd.DataFrame({"expected": [20.0], "lower": [8.0], "upper": [40.0], "anomaly_score": [score], "is_anomaly": [flag], "confidence": [0.5]})

    detect.apply_open_rule(book, opened, scores(True, 0.97), "3", T0 + 6 * MINUTE)
    (fired,) = book.take_changes()
    assert (fired.rule, fired.state, fired.observed, fired.expected, fired.window_start) == ("anomaly_model_open", "firing", 0.0, 20.0, T0 + 5 * MINUTE)
    restated = opened.assign(value=19.0)
    detect.apply_open_rule(book, restated, scores(False, 0.01), "3", T0 + 7 * MINUTE)
    (resolved,) = book.take_changes()
    assert (resolved.alert_id, resolved.state) == (fired.alert_id, "resolved")
    detect.apply_open_rule(book, restated, scores(False, 0.01), "3", T0 + 8 * MINUTE)
    assert book.take_changes() == []


@pytest.mark.unit
def test_threshold_scope_of_the_contract_decides_which_series_are_held() -> None:
    """orders' min speaks of the whole shop (scope total): a country's empty minute breaks
    nothing; the same bound with scope every_series holds the country too, and a ratio's
    bound (default scope) holds every series."""
    from dataclasses import replace

    points = pd.DataFrame(
        [kpi_row("orders", 3, 0.0, final=True, computed_at=T0), kpi_row("orders", 3, 0.0, final=True, computed_at=T0, dimension="country=DE"),
         kpi_row("payment_failure_rate", 3, 0.5, final=True, computed_at=T0, dimension="country=DE")]
    )  # fmt: skip
    kpis = load_contracts()
    assert kpis["orders"].thresholds.scope == "total" and kpis["payment_failure_rate"].thresholds.scope == "every_series"
    got = detect.threshold_outcomes(points, kpis)
    assert got[lifecycle.RULE_MIN].iloc[0] == 1.0 and np.isnan(got[lifecycle.RULE_MIN].iloc[1])
    assert got[lifecycle.RULE_MAX].tolist()[2] == 1.0 and got["max"].tolist()[2] == 0.35
    every = replace(kpis["orders"], thresholds=replace(kpis["orders"].thresholds, scope="every_series"))
    held = detect.threshold_outcomes(points, replace(kpis, kpis={**kpis.kpis, "orders": every}))
    assert held[lifecycle.RULE_MIN].tolist()[:2] == [1.0, 1.0]


def snapshot_files(folder) -> list[str]:  # noqa: ANN001 - a Path
    """``<batch>.<kind>`` of every snapshot in the folder (batch ids as plain numbers)."""
    names = [p.name for p in folder.iterdir() if not p.name.startswith(".")]
    return sorted(f"{int(n.split('.')[0])}.{n.split('.')[1]}" for n in names)


def scorer_arrays(state: detect.DetectorState) -> dict[str, np.ndarray]:
    return state.scorer.state.to_arrays()


@pytest.mark.unit
def test_a_snapshot_from_before_the_split_restores_its_scorer_and_saves_it_apart_next() -> None:
    from models.scorer import KpiScorer

    state = detect.DetectorState(cursor={"orders|1m|all": 1.0}, batch_id=9)
    state.use_scorer(KpiScorer.new().fit(history(days=0.2)), "4")
    # One archive held everything, the model version in its meta.
    meta = {"model_version": "4", "cursor": state.cursor, "open": [], "batch_id": 9, "watermark": None}
    config = {k: v for k, v in json.loads(state.scorer_arrays()["scorer_config"].tobytes()).items() if k != "model_version"}
    encoded = {"meta": np.frombuffer(json.dumps(meta).encode(), np.uint8), "scorer_config": np.frombuffer(json.dumps(config).encode(), np.uint8)}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{**state.scorer_arrays(), **encoded})
    restored = detect.DetectorState.from_bytes(buffer.getvalue())
    assert (restored.model_version, restored.batch_id, restored.cursor, restored.scorer_batch, restored.scorer_changed) == ("4", 9, state.cursor, -1, True)
    for name, values in scorer_arrays(restored).items():
        np.testing.assert_array_equal(values, scorer_arrays(state)[name])


@pytest.mark.spark
def test_the_scorer_is_saved_when_it_learnt_and_a_crash_between_the_writes_replays_consistently(spark, tmp_path) -> None:  # noqa: ANN001
    from models.scorer import KpiScorer

    folder = tmp_path / "scorer_state"
    snapshots = detect.DetectorSnapshots(spark, str(folder))
    state = detect.DetectorState(cursor={"orders|1m|all": 1.0})
    state.use_scorer(KpiScorer.new().fit(history(days=0.5)), "1")
    learnt = pd.DataFrame({"timestamp": [T0 + m * MINUTE for m in range(5)], "value": 20.0, "series_key": "orders|1m|all"})
    snapshots.save(state, 3)
    as_of_3 = {k: v.copy() for k, v in scorer_arrays(state).items()}

    # Batch 4 scores no final window (gold's watermark and open windows moved): only the
    # small part is written.
    state.watermark = T0
    snapshots.save(state, 4)
    assert snapshot_files(folder) == ["3.scorer", "3.snapshot", "4.snapshot"]

    # Batch 5 learns final windows and crashes between its two writes.
    state.scorer.score(learnt)
    state.scorer_changed = True
    state.cursor["orders|1m|all"] = 2.0

    def crash(batch_id: int, payload: bytes) -> None:
        raise OSError("killed")

    snapshots.states.save = crash
    with pytest.raises(OSError, match="killed"):
        snapshots.save(state, 5)
    assert snapshot_files(folder) == ["3.scorer", "3.snapshot", "4.snapshot", "5.scorer"]
    assert any(not np.array_equal(v, as_of_3[k]) for k, v in scorer_arrays(state).items())  # it did learn

    # The replay of batch 5 starts from batch 4 and the scorer it names (batch 3's), not
    # from the scorer the crashed attempt left behind.
    batch, replay = detect.DetectorSnapshots(spark, str(folder)).restore(5)
    assert (batch, replay.scorer_batch, replay.model_version, replay.cursor, replay.watermark) == (4, 3, "1", {"orders|1m|all": 1.0}, T0)
    for name, values in scorer_arrays(replay).items():
        np.testing.assert_array_equal(values, as_of_3[name])
    replay.scorer.score(learnt)
    replay.scorer_changed = True
    again = detect.DetectorSnapshots(spark, str(folder))
    again.save(replay, 5)
    assert snapshot_files(folder) == ["3.scorer", "4.snapshot", "5.scorer", "5.snapshot"]  # batch 4's replay needs 3.scorer
    _, restored = again.restore(6)
    assert restored.scorer_batch == 5
    for name, values in scorer_arrays(restored).items():
        np.testing.assert_array_equal(values, scorer_arrays(state)[name])  # learnt once, as the crashed attempt did


# -- the job on a stream ------------------------------------------------------------------------


@pytest.mark.spark
@pytest.mark.integration
@pytest.mark.slow
def test_detect_fires_resolves_and_follows_the_champion(spark, kpi_table: Settings) -> None:  # noqa: ANN001
    settings = kpi_table
    uri = settings.mlflow.tracking_uri
    name = settings.mlflow.anomaly_model
    v1 = registry.train_and_register(history(), tracking_uri=uri, model_name=name, evaluate=False)
    rng = np.random.default_rng(42)
    values = {kpi: [normal_value(kpi, m, rng) for m in range(60)] for kpi in SERIES}
    values["orders"][29] = 90.0  # spike, last final window of phase A
    values["payment_failure_rate"][10] = 0.62  # over the static max 0.35, and out of band
    values["orders"][40] = 0.0  # under the static min 1, and a drop
    values["revenue"][50] = 9_000.0  # spike scored by v2
    clock = [T0 + 40 * MINUTE]

    def rows(minutes: range, final: bool, scale: float = 1.0) -> list[dict]:
        # A partial value (scale < 1) is computed that far into its window.
        return [
            kpi_row(k, m, values[k][m] * scale, final=final,
                    computed_at=clock[0] if scale == 1.0 else T0 + m * MINUTE + scale * MINUTE)
            for k in SERIES for m in minutes
        ]  # fmt: skip

    # Phase A: 30 final windows; 3 open windows with partial values (a third of a minute in),
    # which would look like a drop if they were taken as full windows.
    merge_kpi_rows(spark, settings, rows(range(0, 30), final=True) + rows(range(30, 33), final=False, scale=1 / 3))
    run_detect(spark, settings, lambda: clock[0])
    assert alerts(spark, settings) == {
        ("orders", "all", 29, "anomaly_model", "firing"),
        ("payment_failure_rate", "all", 10, "threshold_max", "resolved"),
        ("payment_failure_rate", "all", 10, "anomaly_model", "resolved"),
    }
    spike = alert_rows(spark, settings).set_index("rule").loc["anomaly_model"].query("kpi == 'orders'").iloc[0]
    assert spike["observed"] == 90.0 and spike["upper"] < 90.0
    assert spike["model_version"] == v1.version and 0.5 <= spike["score"] <= 1.0 and spike["confidence"] == 1.0

    # Phase B (a new run: state restored from its snapshot): the open windows are restated
    # with their full values and finalised; the next in-band window resolves the spike.
    clock[0] += 5 * MINUTE
    merge_kpi_rows(spark, settings, rows(range(30, 45), final=False))
    finalise(spark, settings, 45)
    run_detect(spark, settings, lambda: clock[0])
    assert alerts(spark, settings) == {
        ("orders", "all", 29, "anomaly_model", "resolved"),
        ("payment_failure_rate", "all", 10, "threshold_max", "resolved"),
        ("payment_failure_rate", "all", 10, "anomaly_model", "resolved"),
        ("orders", "all", 40, "threshold_min", "resolved"),
        ("orders", "all", 40, "anomaly_model", "resolved"),
    }

    # Phase C: a new version becomes champion; the next batch scores with it.
    v2 = registry.train_and_register(history(seed=1), alias=None, tracking_uri=uri, model_name=name, evaluate=False)
    registry._use(uri).set_registered_model_alias(name, "champion", v2.version)
    clock[0] += 5 * MINUTE
    merge_kpi_rows(spark, settings, rows(range(45, 52), final=True) + rows(range(52, 55), final=False))
    run_detect(spark, settings, lambda: clock[0])
    found = alert_rows(spark, settings)
    revenue = found[(found["kpi"] == "revenue") & (found["rule"] == "anomaly_model")]
    assert len(revenue) == 1 and revenue.iloc[0]["model_version"] == v2.version == "2"
    assert revenue.iloc[0]["state"] == "resolved"  # window 51 is back in band
    assert len(found) == 6 and found["alert_id"].is_unique
    assert (found["rule"] != lifecycle.RULE_FRESHNESS).all()


@pytest.mark.spark
@pytest.mark.integration
@pytest.mark.slow
def test_freshness_watchdog_fires_and_resolves(spark, kpi_table: Settings) -> None:  # noqa: ANN001
    settings = kpi_table
    registry.train_and_register(history(days=0.5), tracking_uri=settings.mlflow.tracking_uri, model_name=settings.mlflow.anomaly_model, evaluate=False)
    now = T0 + timedelta(hours=1)
    merge_kpi_rows(
        spark, settings,
        [kpi_row("orders", m, 20.0, final=True, computed_at=now - timedelta(seconds=10)) for m in range(3)]
        + [kpi_row("refunds", m, 1.0, final=True, computed_at=now - timedelta(minutes=10)) for m in range(3)],
    )  # fmt: skip
    run_detect(spark, settings, lambda: now)
    fresh = alert_rows(spark, settings)
    assert fresh[["kpi", "rule", "state", "observed", "upper"]].values.tolist() == [["refunds", "freshness_sla", "firing", 600.0, 60.0]]
    assert fresh.iloc[0]["window_start"] == pd.Timestamp(now - timedelta(minutes=10)).tz_localize(None)

    later = now + timedelta(seconds=30)
    merge_kpi_rows(spark, settings, [kpi_row("refunds", 3, 1.0, final=True, computed_at=later)])
    run_detect(spark, settings, lambda: later + timedelta(seconds=1))
    fresh = alert_rows(spark, settings)
    assert fresh[["kpi", "rule", "state"]].values.tolist() == [["refunds", "freshness_sla", "resolved"]]

    # Continuous run, nothing new in gold.kpi: the ticker query alone finds both KPIs stale.
    stale = later + timedelta(minutes=10)
    options = detect.DetectOptions(alias_check_seconds=0, freshness_check_seconds=0.5, clock=lambda: stale)
    queries = detect.run(spark, settings, None, load_contracts(), options=options)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            firing = alert_rows(spark, settings).query("state == 'firing'")
            if len(firing) == 2:
                break
            time.sleep(1)
        assert sorted(firing["kpi"]) == ["orders", "refunds"]
        assert all(q.isActive for q in queries)
    finally:
        for query in queries:
            query.stop()


def append_kpi_rows(spark, settings: Settings, rows: list[dict]) -> None:  # noqa: ANN001
    """Append update rows as an append-only gold.kpi does (a key may repeat; the latest wins)."""
    frame = spark.createDataFrame([tuple(r[f] for f in gold.KPI_SCHEMA.fieldNames()) for r in rows], gold.KPI_SCHEMA)
    frame.write.format("delta").mode("append").save(gold.table_location(settings, gold.KPI_TABLE))


@pytest.mark.spark
@pytest.mark.integration
@pytest.mark.slow
def test_open_window_outage_pages_early_on_an_append_only_stream(spark, kpi_table: Settings) -> None:  # noqa: ANN001
    settings = kpi_table
    registry.train_and_register(history(), tracking_uri=settings.mlflow.tracking_uri, model_name=settings.mlflow.anomaly_model, evaluate=False)
    rng = np.random.default_rng(5)
    orders = [normal_value("orders", m, rng) for m in range(12)]
    at = T0 + 11 * MINUTE

    def update(m: int, value: float, seconds: float, final: bool = False) -> dict:
        return kpi_row("orders", m, value, final=final, computed_at=T0 + m * MINUTE + timedelta(seconds=seconds))

    # Ten final windows, then window 10 updated twice in one commit (latest: 40 s in, on pace)
    # and window 11 at 30 s with no order at all: a checkout outage.
    append_kpi_rows(
        spark, settings,
        [update(m, orders[m], 90, final=True) for m in range(10)]
        + [update(10, orders[10] / 4, 15), update(10, orders[10] * 2 / 3, 40), update(11, 0.0, 30)],
    )  # fmt: skip
    run_detect(spark, settings, lambda: at + timedelta(seconds=30))
    early = alert_rows(spark, settings).query("rule == 'anomaly_model_open'")
    assert early[["kpi", "state", "observed"]].values.tolist() == [["orders", "firing", 0.0]]
    assert early.iloc[0]["window_start"] == pd.Timestamp(at).tz_localize(None)
    assert 0 < early.iloc[0]["confidence"] < 1  # half a window seen
    assert alerts(spark, settings) == {("orders", "all", 11, "anomaly_model_open", "firing")}

    # The window is restated (late events: it was on pace after all): the alert resolves.
    append_kpi_rows(spark, settings, [update(11, orders[11], 65)])
    run_detect(spark, settings, lambda: at + timedelta(seconds=70))
    assert alerts(spark, settings) == {("orders", "all", 11, "anomaly_model_open", "resolved")}


@pytest.mark.spark
@pytest.mark.integration
@pytest.mark.slow
def test_a_dead_checkout_pages_from_the_minutes_gold_never_writes(spark, kpi_table: Settings) -> None:  # noqa: ANN001
    """No order at all writes no orders row: the open minutes up to gold's frontier and the
    final ones up to its watermark are read as zeros (the other KPIs carry the watermark)."""
    from lakehouse.catalog import catalog

    settings = kpi_table
    registry.train_and_register(history(), tracking_uri=settings.mlflow.tracking_uri, model_name=settings.mlflow.anomaly_model, evaluate=False)
    delay = gold.finality_delay(catalog(), settings)
    rng = np.random.default_rng(7)
    values = {kpi: [normal_value(kpi, m, rng) for m in range(40)] for kpi in SERIES}
    lag = int(np.ceil(delay / MINUTE))  # windows between gold's watermark and its frontier

    def batch(watermark_minute: float, kpis: tuple[str, ...], upto: int, since: int = 0) -> list[dict]:
        """Gold's rows as of a watermark: final up to it, open after it, up to minute ``upto``."""
        watermark = T0 + watermark_minute * MINUTE
        return [
            kpi_row(k, m, values[k][m], final=(m + 1) * MINUTE <= watermark - T0, computed_at=watermark + delay, watermark=watermark)
            for k in kpis for m in range(since, upto)
        ]  # fmt: skip

    # Ten final minutes of every KPI and the open ones up to the frontier; the checkout dies
    # at minute 10 + lag: from then on only payments write rows.
    outage = 10 + lag
    append_kpi_rows(spark, settings, batch(10, tuple(SERIES), outage))
    run_detect(spark, settings, lambda: T0 + outage * MINUTE)
    assert {a for a in alerts(spark, settings) if a[0] == "orders"} == set()

    # Two and a half minutes on: orders' open minutes outage, outage + 1 (and half of + 2)
    # have no row, and pages as an early warning.
    append_kpi_rows(spark, settings, batch(12.5, ("payment_failure_rate",), outage + 3, since=outage))
    append_kpi_rows(spark, settings, [r for r in batch(12.5, ("orders", "revenue"), outage) if r["is_final"] and r["window_start"] >= T0 + 10 * MINUTE])
    run_detect(spark, settings, lambda: T0 + (outage + 2.5) * MINUTE)
    early = alert_rows(spark, settings).query("rule == 'anomaly_model_open' and kpi == 'orders'")
    assert early[["state", "observed"]].values.tolist() == [["firing", 0.0]]
    assert early.iloc[0]["window_start"] == pd.Timestamp(T0 + outage * MINUTE).tz_localize(None)

    # Once the watermark has passed them, the empty minutes are final zeros: the model pages
    # on them and so does the contract's min (orders >= 1 a minute, the whole shop).
    append_kpi_rows(spark, settings, batch(outage + 2, ("payment_failure_rate",), outage + 2 + lag, since=outage + 3))
    append_kpi_rows(spark, settings, [r for r in batch(outage + 2, ("orders", "revenue"), outage, since=12) if r["is_final"]])
    run_detect(spark, settings, lambda: T0 + (outage + 2 + lag) * MINUTE)
    final = {a for a in alerts(spark, settings) if a[0] == "orders" and a[3] != "anomaly_model_open"}
    assert final == {("orders", "all", outage, "anomaly_model", "firing"), ("orders", "all", outage, "threshold_min", "firing")}
    observed = alert_rows(spark, settings).query("rule == 'threshold_min' and kpi == 'orders'")["observed"].tolist()
    assert observed == [0.0]

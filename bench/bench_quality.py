"""What a validation suite costs per silver micro-batch: inside ``foreachBatch`` or on a schedule.

The suite is the generated one of ``silver.web_events`` (the widest domain, 27 expectations),
on rows of the playground shop read by the contract's reader and PII-protected
(:mod:`lakehouse.generator.silver_rows`). A hot-path micro-batch at ``--rate`` events/s and a
``--trigger`` of seconds holds ``rate × trigger`` rows; per batch size the benchmark times:

- ``gx_spark_ms``: Great Expectations on Spark (``add_spark``, the batch DataFrame as it is in
  ``foreachBatch``), the suite's pandas row conditions translated to Spark SQL;
- ``sampled_pandas_ms``: ``batch.sample(--fraction).toPandas()`` then GX on pandas — the cheap
  way to validate inside ``foreachBatch``;
- ``full_pandas_ms``: ``batch.toPandas()`` then GX on pandas.

And the schedule: ``--window-minutes`` of traffic at ``--rate`` written to ``silver.events``
with delta-rs, validated by :class:`lakehouse.validations.QualityCheck` (every suite: delta-rs
reads + GX on pandas, the pipeline's quality thread); its cost spread over the micro-batches
of one check period (``quality.check_every_seconds / trigger``) is ``scheduled_ms_per_batch``.

Writes ``bench/results/quality.json`` (figures, options, machine load). Run:
``nice -n 19 python bench/bench_quality.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from lakehouse import REPO_ROOT

RESULTS = REPO_ROOT / "bench" / "results" / "quality.json"
TABLE = "silver.web_events"
START = datetime(2026, 11, 27, 20, 0, tzinfo=UTC)
_IN = re.compile(r"^event_type in \[(.*)\]$")


def machine(when: str) -> dict[str, Any]:
    load = os.getloadavg()
    return {f"load_avg_1_5_15_at_{when}": [round(x, 2) for x in load], "cpus": os.cpu_count()}


def shop_rows(rate: float, minutes: float, ingested_at: datetime) -> list[dict[str, Any]]:
    from lakehouse.catalog import catalog
    from lakehouse.generator.shop import Shop, ShopConfig
    from lakehouse.generator.silver_rows import silver_rows

    events = Shop(ShopConfig(seed=7, events_per_second=rate), START).events(START + timedelta(minutes=minutes))
    return silver_rows(events, catalog(), ingested_at, b"bench-quality-key-0123456789abcd")


def spark_suite(suite: dict[str, Any]) -> dict[str, Any]:
    """The suite with its pandas row conditions as Spark SQL (``event_type IN (...)``)."""
    expectations = []
    for e in suite["expectations"]:
        kwargs = dict(e["kwargs"])
        condition = kwargs.get("row_condition")
        if condition:
            kwargs["row_condition"] = f"event_type IN ({_IN.match(condition).group(1)})"
            kwargs["condition_parser"] = "spark"
        expectations.append({**e, "kwargs": kwargs})
    return {**suite, "expectations": expectations}


def timed(fn, repeats: int) -> float:  # noqa: ANN001
    """Median milliseconds of ``repeats`` calls (after one warm-up call)."""
    fn()
    samples = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - began) * 1000)
    return round(statistics.median(samples), 1)


def per_batch_costs(spark, rows: list[dict[str, Any]], sizes: list[int], fraction: float, repeats: int) -> dict[str, Any]:  # noqa: ANN001
    """GX on Spark, sampled pandas and full pandas per batch size (see the module docstring)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    import pandas as pd
    from great_expectations.data_context.types.base import ProgressBarsConfig

    from lakehouse.generator.silver_rows import silver_table
    from lakehouse.registry import view_of
    from lakehouse.suites import FRESH_AFTER, VOLUME_MAX, VOLUME_MIN, load_suites

    suite = load_suites()[TABLE]
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    pandas_batch = context.data_sources.add_pandas("p").add_dataframe_asset("a").add_batch_definition_whole_dataframe("w")
    spark_batch = context.data_sources.add_spark("s", persist=False).add_dataframe_asset("a").add_batch_definition_whole_dataframe("w")
    on_pandas = context.validation_definitions.add(gx.ValidationDefinition(
        name="pandas", data=pandas_batch, suite=context.suites.add(gx.ExpectationSuite(name="p", expectations=suite["expectations"]))))
    on_spark = context.validation_definitions.add(gx.ValidationDefinition(
        name="spark", data=spark_batch, suite=context.suites.add(gx.ExpectationSuite(name="s", expectations=spark_suite(suite)["expectations"]))))  # fmt: skip
    parameters = {FRESH_AFTER: pd.Timestamp(START), VOLUME_MIN: 0, VOLUME_MAX: None}
    web = view_of(TABLE).arrow(silver_table(rows))
    out: dict[str, Any] = {}
    for size in sizes:
        batch = spark.createDataFrame(web.slice(0, size)).persist()  # from Arrow: nested items, nulls as they are
        batch.count()

        def gx_spark(batch=batch) -> None:  # noqa: ANN001
            on_spark.run(batch_parameters={"dataframe": batch}, expectation_parameters=parameters)

        def sampled(batch=batch) -> None:  # noqa: ANN001
            on_pandas.run(batch_parameters={"dataframe": batch.sample(fraction=fraction, seed=1).toPandas()}, expectation_parameters=parameters)

        def full(batch=batch) -> None:  # noqa: ANN001
            on_pandas.run(batch_parameters={"dataframe": batch.toPandas()}, expectation_parameters=parameters)

        out[str(size)] = {"gx_spark_ms": timed(gx_spark, repeats), "sampled_pandas_ms": timed(sampled, repeats), "full_pandas_ms": timed(full, repeats)}
        batch.unpersist()
        print(f"batch of {size:>6,} rows: GX on Spark {out[str(size)]['gx_spark_ms']:8.1f} ms · sampled {fraction:.0%} + pandas "
              f"{out[str(size)]['sampled_pandas_ms']:7.1f} ms · toPandas + pandas {out[str(size)]['full_pandas_ms']:7.1f} ms")  # fmt: skip
    return out


def scheduled_cost(rows: list[dict[str, Any]], minutes: float, ingested_at: datetime, repeats: int) -> dict[str, Any]:
    """One scheduled run of every suite over the window, as the pipeline's quality thread does it."""
    from deltalake import write_deltalake

    from lakehouse.config import load_settings
    from lakehouse.generator.silver_rows import silver_table
    from lakehouse.registry import SILVER_EVENTS
    from lakehouse.tables import table_location
    from lakehouse.validations import QualityCheck, Window

    folder = Path(tempfile.mkdtemp(prefix="bench-quality-"))
    settings = load_settings("local", environ={"TRIVAS_PATHS__VAR": str(folder / "var"), "TRIVAS_TABLES__ROOT": str(folder / "lake")})
    write_deltalake(table_location(settings, SILVER_EVENTS), silver_table(rows), mode="append", partition_by=["domain"])
    check = QualityCheck(settings)
    window = Window(START, START + timedelta(minutes=minutes))
    now = ingested_at + timedelta(seconds=5)
    run_ms = timed(lambda: check.run(window, now=now), repeats)
    read_ms = timed(lambda: check.run(window, ["silver.web_events"], now=now, record=False), repeats)
    return {"rows": len(rows), "window_minutes": minutes, "run_all_suites_ms": run_ms, "web_events_suite_ms": read_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0, help="events/s of the shop")
    parser.add_argument("--trigger", type=float, default=0.5, help="hot-path trigger seconds")
    parser.add_argument("--window-minutes", type=float, default=5.0, help="traffic validated by one scheduled run")
    parser.add_argument("--fraction", type=float, default=0.1, help="sampled share of a batch")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from lakehouse.config import load_settings
    from lakehouse.runtime.spark import get_spark

    results: dict[str, Any] = {"run": vars(args), "machine": machine("start"), "measured_at": datetime.now(UTC).isoformat()}
    ingested_at = START + timedelta(minutes=args.window_minutes, seconds=1)
    rows = shop_rows(args.rate, args.window_minutes, ingested_at)
    batch_rows = int(args.rate * args.trigger)
    sizes = sorted({batch_rows, 1_000, 10_000})
    print(f"{len(rows):,} silver rows of {args.window_minutes:g} min at {args.rate:g} events/s; a micro-batch holds ~{batch_rows} rows")
    settings = load_settings("local", environ={"TRIVAS_PATHS__VAR": tempfile.mkdtemp(prefix="bench-quality-spark-")})
    spark = get_spark(settings, app_name="bench-quality")
    try:
        results["per_batch"] = per_batch_costs(spark, rows, sizes, args.fraction, args.repeats)
    finally:
        spark.stop()
    schedule = scheduled_cost(rows, args.window_minutes, ingested_at, max(1, args.repeats // 2))
    period = settings.quality.check_every_seconds
    batches_per_period = period / args.trigger
    schedule["check_every_seconds"] = period
    schedule["scheduled_ms_per_batch"] = round(schedule["run_all_suites_ms"] / batches_per_period, 2)
    results["scheduled"] = schedule
    inline = results["per_batch"][str(batch_rows)]
    results["summary"] = {
        "batch_rows": batch_rows,
        "inline_gx_spark_ms_per_batch": inline["gx_spark_ms"],
        "inline_sampled_pandas_ms_per_batch": inline["sampled_pandas_ms"],
        "scheduled_ms_per_batch": schedule["scheduled_ms_per_batch"],
    }
    results["machine"].update(machine("end"))
    print(f"scheduled: every suite over {len(rows):,} rows in {schedule['run_all_suites_ms']:.0f} ms every {period:.0f}s "
          f"= {schedule['scheduled_ms_per_batch']} ms per {args.trigger}s batch (vs {inline['gx_spark_ms']} ms GX on Spark, "
          f"{inline['sampled_pandas_ms']} ms sampled, inside every batch)")  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    sys.exit(main())

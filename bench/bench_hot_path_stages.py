"""Where the hot path's per-record work goes, stage by stage, on a static batch.

Generated shop records (the pipeline benchmark's backlog) as a cached DataFrame shaped like
the Kafka source, then each stage of ``silver_gold``'s one Spark job run on its own (best of
three): the raw columns to the driver (what bronze does), the contract check (``classify``: a
Python pass over Arrow batches in Spark's Python workers), + dedup, + the batch's shape to the
driver (the whole job minus Kafka and the state store), and the same contract rules run in the
driver's one Python process. It separates the engine's own costs from the rules' Python.

``python bench/bench_hot_path_stages.py [--records 12000]`` prints records/s per stage and
writes ``bench/results/hot_path_stages.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_pipeline import backlog_share, machine  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from lakehouse import REPO_ROOT  # noqa: E402
from lakehouse.catalog import catalog as load_catalog  # noqa: E402
from lakehouse.config import hash_key, load_settings  # noqa: E402
from lakehouse.contracts import contracts  # noqa: E402
from lakehouse.event_contract import RecordRules, strict_loads  # noqa: E402
from lakehouse.runtime.spark import get_spark  # noqa: E402
from spark_jobs import bronze  # noqa: E402
from spark_jobs.hot_path import BatchShape  # noqa: E402
from spark_jobs.silver import classify  # noqa: E402

RESULTS = REPO_ROOT / "bench" / "results" / "hot_path_stages.json"
SOURCE_SCHEMA = "key binary, value binary, topic string, partition int, offset long, timestamp timestamp"


def best_of(run: Callable[[], object], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - began)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=12_000, help="records in the batch (a 2,000/s batch of ~6 s)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    settings, catalog = load_settings(), load_catalog()
    spark = get_spark(settings, "hot-path-stages")
    records = backlog_share(1, args.records, 2000)
    rows = [
        (r.key, r.value, f"raw.{r.domain}", i % 3, i, datetime.fromtimestamp(r.timestamp_ms / 1000, UTC).replace(tzinfo=None))
        for i, r in enumerate(records)
    ]
    source = spark.createDataFrame(rows, SOURCE_SCHEMA).repartition(2).cache()
    source.count()
    kafka_rows = bronze.kafka_columns(source)
    classified = classify(kafka_rows, catalog, "raw")
    deduplicated = classified.withColumn("dedup_key", F.col("envelope.event_id")).dropDuplicates(["dedup_key"])
    shape = BatchShape(catalog, contracts(), hash_key(settings), settings.privacy.hash_key_id)
    rules = RecordRules(catalog)
    now = datetime.now(UTC)

    def driver_rules() -> None:
        for record in records:
            rules.check(strict_loads(record.value), now, f"raw.{record.domain}", "raw")

    stages = {
        "raw columns to the driver (bronze's work)": lambda: kafka_rows.toArrow(),
        "contract check in Python workers (classify)": lambda: classified.write.format("noop").mode("overwrite").save(),
        "+ dedup": lambda: deduplicated.write.format("noop").mode("overwrite").save(),
        "+ batch shape to the driver (the hot path's job)": lambda: shape.rows(deduplicated).toArrow(),
        "contract rules in the driver's Python (one core)": driver_rules,
    }
    results = {"machine": {"cores": os.cpu_count(), **machine("start")}, "records": args.records, "stages": {}}
    for name, run in stages.items():
        seconds = best_of(run)
        results["stages"][name] = {"seconds": round(seconds, 3), "records_per_s": round(args.records / seconds)}
        print(f"{name:52s} {seconds:6.2f} s  {args.records / seconds:10,.0f} records/s", flush=True)
    results["machine"].update(machine("end"))
    args.output.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

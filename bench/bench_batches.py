"""Where a micro-batch's time goes: every query's batch durations and their parts, live.

Runs the pipeline in this process (one Spark application, like ``trivas pipeline run``) on a
private broker and lake under ``var/bench-batches``, offers generated shop traffic at
``--rate`` events/s for ``--seconds``, and reports, per query, p50/p95 of
``triggerExecution`` and of its parts (``latestOffset``, ``queryPlanning``, ``addBatch``,
``walCommit``, ``commitOffsets``) from Spark's own progress events, plus the Delta commits
per batch. It only uses ``spark_jobs.pipeline.start`` and a progress listener, so the same
script measures another revision of the pipeline (``--jobs`` names its jobs):

    python bench/bench_batches.py --rate 2000 --seconds 60                       # this tree
    git worktree add /tmp/before <rev> && cd /tmp/before && \\
      PYTHONPATH=. python /path/to/bench/bench_batches.py --jobs bronze,silver,gold   # that revision

Prints the figures and writes ``bench/results/batches[-LABEL].json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from pyspark.sql.streaming import StreamingQueryListener

PARTS = ("triggerExecution", "latestOffset", "queryPlanning", "addBatch", "walCommit", "commitOffsets")
HERE = Path(__file__).resolve().parent


class Recorder(StreamingQueryListener):
    """Every progress document of every query."""

    def __init__(self) -> None:
        super().__init__()
        self.progress: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def onQueryStarted(self, event: Any) -> None:  # noqa: N802 - Spark's API
        pass

    def onQueryProgress(self, event: Any) -> None:  # noqa: N802
        with self.lock:
            self.progress.append(json.loads(event.progress.json))

    def onQueryIdle(self, event: Any) -> None:  # noqa: N802
        pass

    def onQueryTerminated(self, event: Any) -> None:  # noqa: N802
        pass


def summarise(progress: list[dict[str, Any]], since_ms: float) -> dict[str, dict[str, Any]]:
    """Per query: batches with input, and p50/p95 of each duration part (ms)."""
    by_query: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for document in progress:
        stamp = datetime.fromisoformat(document["timestamp"].replace("Z", "+00:00")).timestamp() * 1000
        if stamp >= since_ms and document.get("numInputRows", 0) > 0:
            by_query[document.get("name") or document["id"]].append(document)
    summary = {}
    for query, documents in sorted(by_query.items()):
        parts = {}
        for part in PARTS:
            values = [d["durationMs"].get(part, 0) for d in documents]
            parts[part] = {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95))}
        rows = [d["numInputRows"] for d in documents]
        summary[query] = {"batches": len(documents), "rows_per_batch_p50": float(np.percentile(rows, 50)), "ms": parts}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--jobs", default="bronze,silver_gold,gold")
    parser.add_argument("--label", default="")
    args = parser.parse_args()

    from lakehouse.catalog import catalog as load_catalog
    from lakehouse.config import load_settings
    from lakehouse.contracts import contracts
    from lakehouse.generator.faults import FaultConfig, deliveries
    from lakehouse.generator.producer import make_producer
    from lakehouse.generator.shop import Shop, ShopConfig
    from lakehouse.runtime import kafka
    from lakehouse.runtime.processes import free_port
    from lakehouse.runtime.spark import get_spark
    from spark_jobs import pipeline

    root = Path.cwd() / "var" / "bench-batches"
    shutil.rmtree(root, ignore_errors=True)
    env = {
        "TRIVAS_KAFKA__LOCAL_BROKER__PORT": str(free_port()),
        "TRIVAS_KAFKA__LOCAL_BROKER__CONTROLLER_PORT": str(free_port()),
        "TRIVAS_KAFKA__LOCAL_BROKER__DATA_DIR": str(root / "kafka"),
        "TRIVAS_KAFKA__TOPIC_PREFIX": "bb",
        "TRIVAS_PATHS__VAR": str(root / "var"),
        "TRIVAS_PATHS__LOGS": str(root / "logs"),
        "TRIVAS_TABLES__ROOT": str(root / "lake"),
        "TRIVAS_TABLES__CHECKPOINTS": str(root / "checkpoints"),
        "TRIVAS_PRIVACY__HASH_KEY": "bench-only-key",
    }
    os.environ.update(env)
    settings = load_settings("local")
    catalog = load_catalog()
    kafka.up(settings, catalog)
    clean = FaultConfig(duplicate_fraction=0.0, out_of_order_fraction=0.0, late_fraction=0.0, malformed_fraction=0.0)
    began = datetime.now(UTC) + timedelta(seconds=30)
    shop = Shop(ShopConfig(seed=5, events_per_second=args.rate, seasonal=False), began)
    # Pre-serialised before the clock starts: generating must not compete with the pipeline.
    records = [(d.topic, d.key, d.value) for d in deliveries(shop.events(began + timedelta(seconds=args.seconds)), catalog, "bb", clean, 5)]
    spark = get_spark(settings, app_name="trivas-bench-batches")
    recorder = Recorder()
    spark.streams.addListener(recorder)
    queries = pipeline.start(spark, settings, catalog, contracts(), [j for j in args.jobs.split(",") if j])
    producer = make_producer(settings.kafka_bootstrap())
    try:
        time.sleep(10)  # queries up and idle
        started = time.monotonic()
        measured_from = time.time() * 1000 + 10_000  # skip the ramp
        for sent, (topic, key, value) in enumerate(records):
            due = started + sent / args.rate
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            producer.send(topic, key=key, value=value)  # Kafka timestamp = real send time
        producer.flush()
        offered = len(records) / (time.monotonic() - started)
        time.sleep(10)
    finally:
        for query in queries:
            query.stop()
        producer.close()
        kafka.down(settings)
    with recorder.lock:
        summary = summarise(recorder.progress, measured_from)
    result = {"rate_target": args.rate, "rate_offered": round(offered), "seconds": args.seconds, "jobs": args.jobs,
              "load_avg": os.getloadavg(), "queries": summary, "measured_at": datetime.now(UTC).isoformat()}  # fmt: skip
    print(f"offered {offered:,.0f} events/s for {args.seconds:.0f}s; load average {os.getloadavg()[0]:.1f}")
    for query, figures in summary.items():
        parts = "  ".join(f"{p} {v['p50']:.0f}/{v['p95']:.0f}" for p, v in figures["ms"].items())
        print(f"{query:24s} {figures['batches']:4d} batches  ms p50/p95: {parts}")
    out = HERE / "results" / f"batches{'-' + args.label if args.label else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

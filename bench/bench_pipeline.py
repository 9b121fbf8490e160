"""Pipeline benchmark: engine limit, sustained rate, end-to-end latency, peak memory.

One run, one machine, a private broker and lake under ``var/bench``:

(a) ``raw_copy_events_per_s`` — Spark's own Kafka → Delta copy of a backlog (availableNow,
    no parsing): the ceiling of this engine on this machine;
(b) ``pipeline_events_per_s`` — ``trivas pipeline run`` (every query together) working off a
    backlog of generated shop traffic until gold has counted all of it;
(c) latency at an offered 2,000 events/s: send time (the Kafka record timestamp) → the Delta
    commit that made the event visible in ``bronze.events`` and in ``gold.kpi``;
(d) ``peak_rss_mb`` — the pipeline process tree (Python driver + JVM), sampled every 0.5 s.

Prints the figures and writes ``bench/results/pipeline.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from deltalake import DeltaTable

from lakehouse import REPO_ROOT
from lakehouse.catalog import catalog as load_catalog
from lakehouse.config import Settings, load_settings
from lakehouse.generator.faults import FaultConfig, deliveries
from lakehouse.generator.producer import make_producer, send
from lakehouse.generator.shop import Shop, ShopConfig
from lakehouse.runtime import kafka
from lakehouse.runtime.processes import free_port
from lakehouse.tables import table_location

RESULTS = REPO_ROOT / "bench" / "results" / "pipeline.json"
CLEAN = FaultConfig(duplicate_fraction=0.0, out_of_order_fraction=0.0, late_fraction=0.0, malformed_fraction=0.0)
# Measures whose per-window event counts let us date each event's arrival in gold.
TRACKED = {
    "sessions": ("web_events", lambda f: (f["event_type"] == "page_view") & (f["page_seq"] == 1)),
    "ad_clicks": ("ad_events", lambda f: f["event_type"] == "ad_click"),
    "orders": ("orders", lambda f: f["event_type"] == "order_placed"),
    "payment_attempts": ("payments", lambda f: f["event_type"].isin(["payment_authorized", "payment_failed"])),
}


def bench_env(root: Path) -> dict[str, str]:
    return {
        "TRIVAS_ENV": "local",
        "TRIVAS_KAFKA__LOCAL_BROKER__PORT": str(free_port()),
        "TRIVAS_KAFKA__LOCAL_BROKER__CONTROLLER_PORT": str(free_port()),
        "TRIVAS_KAFKA__LOCAL_BROKER__DATA_DIR": str(root / "kafka"),
        "TRIVAS_KAFKA__TOPIC_PREFIX": "bench",
        "TRIVAS_PATHS__VAR": str(root / "var"),
        "TRIVAS_PATHS__LOGS": str(root / "logs"),
        "TRIVAS_TABLES__ROOT": str(root / "lake"),
        "TRIVAS_TABLES__CHECKPOINTS": str(root / "checkpoints"),
    }


def percentiles(values: list[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=float)
    if not len(array):
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "n": 0}
    return {
        "p50": round(float(np.percentile(array, 50)), 1),
        "p95": round(float(np.percentile(array, 95)), 1),
        "p99": round(float(np.percentile(array, 99)), 1),
        "n": int(len(array)),
    }


# -- (a) the engine's own limit -------------------------------------------------------------


def raw_copy_rate(settings: Settings, env: dict[str, str], records: int) -> float:
    """Kafka → Delta copy of ``records`` events with no transformation, in a fresh JVM."""
    topic = "bench.rawcopy"
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap())
    admin.create_topics([NewTopic(topic, settings.kafka.partitions, 1)])
    admin.close()
    shop = Shop(ShopConfig(seed=1, events_per_second=2000, seasonal=False), datetime.now(UTC) - timedelta(hours=1))
    stream = deliveries(shop.events(datetime.now(UTC)), load_catalog(), "bench", CLEAN, 1)
    producer = make_producer(settings.kafka_bootstrap())
    sent = 0
    for delivery in stream:
        producer.send(topic, key=delivery.key, value=delivery.value)
        sent += 1
        if sent >= records:
            break
    producer.flush()
    producer.close()
    script = f"""
import time
from lakehouse.config import load_settings
from lakehouse.runtime.spark import get_spark
s = load_settings()
spark = get_spark(s)
spark.range(1).write.format("delta").mode("overwrite").save({str(Path(env['TRIVAS_TABLES__ROOT']) / 'warmup')!r})
source = (spark.readStream.format("kafka").option("kafka.bootstrap.servers", s.kafka_bootstrap())
          .option("subscribe", {topic!r}).option("startingOffsets", "earliest").load())
started = time.monotonic()
query = (source.selectExpr("CAST(key AS STRING) key", "CAST(value AS STRING) value", "topic", "partition", "offset", "timestamp")
         .writeStream.format("delta").option("checkpointLocation", {str(Path(env['TRIVAS_TABLES__CHECKPOINTS']) / 'rawcopy')!r})
         .trigger(availableNow=True).start({str(Path(env['TRIVAS_TABLES__ROOT']) / 'rawcopy')!r}))
query.awaitTermination()
print("SECONDS", time.monotonic() - started)
"""
    result = subprocess.run([sys.executable, "-c", script], env={**os.environ, **env}, capture_output=True, text=True, check=True)
    seconds = float(next(line for line in result.stdout.splitlines() if line.startswith("SECONDS")).split()[1])
    return records / seconds


# -- the pipeline process and its memory -------------------------------------------------------


class RssSampler(threading.Thread):
    """Peak resident memory of a process tree."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_mb = 0.0
        self.stop = threading.Event()

    def tree(self) -> list[int]:
        pids, frontier = [self.pid], [self.pid]
        while frontier:
            parent = frontier.pop()
            children = Path(f"/proc/{parent}/task/{parent}/children")
            if children.exists():
                kids = [int(p) for p in children.read_text().split()]
                pids += kids
                frontier += kids
        return pids

    def run(self) -> None:
        while not self.stop.is_set():
            total = 0
            for pid in self.tree():
                try:
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
                except OSError:
                    continue
            self.peak_mb = max(self.peak_mb, total / 1024)
            self.stop.wait(0.5)


def count_rows(settings: Settings, logical: str) -> int:
    try:
        return len(DeltaTable(table_location(settings, logical)).to_pyarrow_dataset().to_table(columns=[]))
    except Exception:  # noqa: BLE001 - not created yet
        return 0


def gold_events(settings: Settings, kpi: str) -> int:
    try:
        frame = DeltaTable(table_location(settings, "gold.kpi")).to_pandas(columns=["kpi", "grain", "dimension", "events"])
    except Exception:  # noqa: BLE001
        return 0
    rows = frame[(frame.kpi == kpi) & (frame.grain == "1m") & (frame.dimension == "all")]
    return int(rows.events.sum())


def silver_sessions(settings: Settings) -> int:
    frame = DeltaTable(table_location(settings, "silver.web_events")).to_pandas(columns=["event_type", "page_seq"])
    return int(((frame.event_type == "page_view") & (frame.page_seq == 1)).sum())


# -- (c) latency from the Delta logs ------------------------------------------------------------


def commits(location: str) -> list[tuple[int, float, list[str]]]:
    """(version, commit time in epoch seconds, data files added) of every commit."""
    result = []
    for log in sorted(Path(location, "_delta_log").glob("*.json")):
        added, stamp = [], None
        for line in log.read_text().splitlines():
            action = json.loads(line)
            if "commitInfo" in action:
                stamp = action["commitInfo"]["timestamp"] / 1000.0
            if "add" in action:
                added.append(str(Path(location) / action["add"]["path"]))
        if stamp is not None:
            result.append((int(log.stem), stamp, added))
    return result


def bronze_latencies(settings: Settings, since: float) -> list[float]:
    latencies = []
    for _, stamp, files in commits(table_location(settings, "bronze.events")):
        for file in files:
            sent = pq.read_table(file, columns=["kafka_timestamp"]).column(0).to_numpy().astype("datetime64[us]").astype("int64") / 1e6
            latencies += [(stamp - s) * 1000 for s in sent if s >= since]
    return latencies


def gold_latencies(settings: Settings, since: float) -> list[float]:
    """Event → gold: the k-th event of a (measure, window) in arrival order is visible from
    the first gold commit whose count for that window reaches k."""
    visible: dict[tuple[str, pd.Timestamp], list[tuple[int, float]]] = {}
    for _, stamp, files in commits(table_location(settings, "gold.kpi")):
        for file in files:
            frame = pq.read_table(file, columns=["kpi", "grain", "dimension", "window_start", "events"]).to_pandas()
            frame = frame[(frame.grain == "1m") & (frame.dimension == "all") & frame.kpi.isin(list(TRACKED))]
            for row in frame.itertuples():
                start = pd.Timestamp(row.window_start)  # Spark's parquet timestamps are naive UTC
                start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
                visible.setdefault((row.kpi, start), []).append((int(row.events), stamp))
    latencies = []
    for kpi, (table, selected) in TRACKED.items():
        silver = DeltaTable(table_location(settings, f"silver.{table}")).to_pandas()
        silver = silver[selected(silver)]
        silver["window_start"] = silver.event_time.dt.floor("1min")
        for window, group in silver.groupby("window_start"):
            history = sorted(visible.get((kpi, window), []))
            epoch = pd.Timestamp(0, tz="UTC")
            sent_times = sorted((group.ingested_at - epoch).dt.total_seconds())  # Kafka timestamps
            for k, sent in enumerate(sent_times, start=1):
                if sent < since:
                    continue
                seen = [stamp for count, stamp in history if count >= k]
                if seen:
                    latencies.append((min(seen) - sent) * 1000)
    return latencies


# -- the run ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw-records", type=int, default=300_000)
    parser.add_argument("--backlog-seconds", type=float, default=120, help="event-time span of the backlog at 1,000 events/s")
    parser.add_argument("--offered-rate", type=float, default=2000)
    parser.add_argument("--live-seconds", type=float, default=90)
    args = parser.parse_args()

    root = REPO_ROOT / "var" / "bench"
    shutil.rmtree(root, ignore_errors=True)
    env = bench_env(root)
    settings = load_settings("local", environ=env)
    catalog = load_catalog()
    kafka.up(settings, catalog)
    results: dict[str, object] = {"machine": {"cores": os.cpu_count(), "load_avg_at_start": os.getloadavg()[0]}}
    try:
        raw_rate = raw_copy_rate(settings, env, args.raw_records)
        results["raw_copy_events_per_s"] = round(raw_rate)
        print(f"(a) raw Spark Kafka→Delta copy: {raw_rate:,.0f} events/s")

        # (b) backlog of realistic traffic, worked off by every query together
        start = datetime.now(UTC) - timedelta(seconds=args.backlog_seconds + 30)
        shop = Shop(ShopConfig(seed=2, events_per_second=1000, seasonal=False), start)
        backlog = list(deliveries(shop.events(start + timedelta(seconds=args.backlog_seconds)), catalog, "bench", CLEAN, 2))
        producer = make_producer(settings.kafka_bootstrap())
        send(backlog, producer)
        log = (root / "pipeline.log").open("ab")
        pipeline = subprocess.Popen(
            [sys.executable, "-m", "lakehouse.cli", "pipeline", "run"], env={**os.environ, **env},
            cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        sampler = RssSampler(pipeline.pid)
        sampler.start()
        while count_rows(settings, "bronze.events") == 0:
            time.sleep(0.2)
        began = time.monotonic()
        expected_bronze = len(backlog)
        while True:
            if pipeline.poll() is not None:
                raise RuntimeError(f"pipeline exited {pipeline.returncode}; see {root / 'pipeline.log'}")
            if count_rows(settings, "bronze.events") >= expected_bronze:
                sessions = silver_sessions(settings)
                if sessions and gold_events(settings, "sessions") >= sessions and count_rows(settings, "silver.web_events") + count_rows(settings, "silver.ad_events") > 0.6 * expected_bronze:
                    break
            time.sleep(0.5)
        elapsed = time.monotonic() - began
        results["pipeline_events_per_s"] = round(len(backlog) / elapsed)
        results["pipeline_backlog_events"] = len(backlog)
        print(f"(b) full pipeline on a backlog of {len(backlog):,}: {len(backlog) / elapsed:,.0f} events/s ({elapsed:.1f}s)")

        # (c) live traffic at the offered rate
        # The live stream is generated up front, so that the offered rate is paced by the wall
        # clock only and generating it does not compete with the pipeline for the two cores.
        live_begin = datetime.now(UTC) + timedelta(seconds=args.live_seconds / 4 + 5)
        shop = Shop(ShopConfig(seed=3, events_per_second=args.offered_rate, seasonal=False), live_begin)
        live = list(deliveries(shop.events(live_begin + timedelta(seconds=args.live_seconds)), catalog, "bench", CLEAN, 3))
        live_start = live_begin.timestamp()
        stats = send(live, producer, live=True)
        offered = stats.sent / args.live_seconds  # sent over the live window, wall-clock paced
        time.sleep(20)
        measured_from = live_start + 10  # skip the first seconds of the ramp
        results["offered_events_per_s"] = round(offered)
        results["bronze_latency_ms"] = percentiles(bronze_latencies(settings, measured_from))
        results["gold_latency_ms"] = percentiles(gold_latencies(settings, measured_from))
        print(f"(c) offered {offered:,.0f} events/s for {stats.seconds:.0f}s")
        print(f"    event → bronze.events  {results['bronze_latency_ms']}")
        print(f"    event → gold.kpi       {results['gold_latency_ms']}")
        os.killpg(pipeline.pid, signal.SIGTERM)
        pipeline.wait(timeout=120)
        sampler.stop.set()
        results["peak_rss_mb"] = round(sampler.peak_mb)
        print(f"(d) peak RSS of the pipeline (driver + JVM): {sampler.peak_mb:,.0f} MB")
        producer.close()
    finally:
        kafka.down(settings)
    results["pipeline_vs_raw_copy"] = round(results["pipeline_events_per_s"] / results["raw_copy_events_per_s"], 3)  # type: ignore[operator]
    results["measured_at"] = datetime.now(UTC).isoformat()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()

"""Pipeline benchmark: the engine's ceiling, backlog cost, latency by offered rate, memory.

One run on one machine, with a private broker and lake under ``var/bench``. Every phase has its
own topics, tables, checkpoints and logs (``var/bench/<phase>``), so one phase's state never
slows the next. The figures in ``bench/results/pipeline.json``:

``raw_copy_events_per_s``
    Spark's own Kafka → Delta copy of a backlog (availableNow, no parsing, one query): the
    ceiling of this engine on this machine (``raw_copy_batch_ms``: its micro-batch parts).
``jobs``
    the jobs of ``trivas demo`` the pipeline ran with (``--jobs``), and any that could not run
    here with the reason; detect and refund risk get their champions as ``trivas demo`` does,
    CDC gets a private PostgreSQL + Debezium (``trivas cdc up``), and during the latency levels
    the shop database receives the level's orders, payments and stock changes as they are
    offered (``shop_database_writes``), as ``trivas generate --shop-db`` does in the demo.
``cost_per_event_by_backlog``
    ``trivas pipeline run`` with those jobs, started on a Kafka backlog of 10k, 100k and 1M
    generated shop events (a fresh lake each), timed from its first micro-batch to the later of
    the bronze.events commit that holds the last record and the gold.kpi commit that counted the
    last session: µs per event and events/s per size, the marginal cost between sizes, and
    whether the cost is flat (largest / smallest µs per event ≤ 1.25).
``pipeline_events_per_s``, ``pipeline_backlog_events``, ``pipeline_vs_raw_copy``
    the largest backlog worked off completely, its rate, and that rate over the raw copy's.
``latency_by_rate``
    for each offered rate (500, 1,000, 2,000, 5,000 events/s by default, each held 70 s): the
    achieved rate (``valid`` when ≥ 95 % of the target), and event → bronze.events and event →
    gold.kpi latency p50/p95/p99 in ms over the level after its first seconds. The records of a
    level are generated and serialised before it starts, paced by the wall clock from one or more
    producer processes (acks=all), and each carries its actual send time as its Kafka timestamp,
    so a producer falling behind shows as latency, never hides it. An event is visible in bronze
    at the Delta commit that added its row, and in gold at the first gold.kpi commit whose count
    for its 1-minute window reaches its rank in arrival order (sessions, ad clicks, orders,
    payment attempts); ``bronze_unseen`` / ``gold_unseen`` count the events sent in the measured
    span that the table had not shown by the end; they rank above every measured latency, so a
    percentile that falls among them is null (not measured, and a missed target).
``offered_events_per_s``, ``bronze_latency_ms``, ``gold_latency_ms``
    the 2,000 events/s level, as before.
``batch_ms_by_query``
    per streaming query over the latency levels: p50/p95 of its micro-batch duration
    (``triggerExecution``) and of the parts (latestOffset, addBatch, walCommit, commitOffsets,
    queryPlanning), from the StreamingQueryProgress lines the pipeline appends to
    ``<logs>/progress.jsonl``. Batches without input rows are counted, not in the percentiles.
    Each level and backlog size carries its own ``batch_ms_by_query`` too.
``state_by_operator`` (per backlog size)
    each stateful operator at its largest state: keys, RocksDB memory and SST size, per million
    keys (the sizing table of docs/deploy.md).
``peak_rss_mb``
    peak resident memory of the pipeline's process tree (Python driver + JVM), sampled every
    0.5 s, over every phase (``peak_rss_mb_by_phase`` per phase).
``machine``, ``bench_seconds``, ``run``
    cores and load average at start and end (figures from a busy machine mean little), how long
    the whole run took, and its options (a shortened run is no measurement).
``targets``
    the issue's targets next to the figures (printed, never asserted).

It also draws ``pipeline_latency.png`` (latency against offered rate) next to the JSON.
Full run: ``make bench`` (≈ 15–25 minutes on 2 cores). Smoke run: see ``--help``.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import math
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable

from lakehouse import REPO_ROOT
from lakehouse.catalog import Catalog, topic_for
from lakehouse.catalog import catalog as load_catalog
from lakehouse.config import Settings, load_settings
from lakehouse.generator.faults import FaultConfig, deliveries, encode
from lakehouse.generator.producer import make_producer
from lakehouse.generator.shop import Shop, ShopConfig, iso
from lakehouse.runtime import cluster, kafka
from lakehouse.runtime.processes import free_port, free_port_block
from lakehouse.tables import table_location

RESULTS = REPO_ROOT / "bench" / "results" / "pipeline.json"
ROOT = REPO_ROOT / "var" / "bench"
CLEAN = FaultConfig(duplicate_fraction=0.0, out_of_order_fraction=0.0, late_fraction=0.0, malformed_fraction=0.0)
DURATION_PARTS = ("triggerExecution", "latestOffset", "addBatch", "walCommit", "commitOffsets", "queryPlanning")
REFERENCE_RATE = 2000  # the level whose figures also fill today's keys
BACKLOG_DENSITY = 2000  # events per second of event time in the generated backlogs
FAR_FUTURE = datetime.max.replace(tzinfo=UTC)
STARTED_LINE = re.compile(r"trivas\.pipeline: started")
WHEEL = "BENCH_WHEEL"  # the key of the wheel to ship in a phase's environment (not a setting)


@dataclass(frozen=True)
class Tracked:
    """A gold measure whose per-window event count dates each event's arrival in gold."""

    domain: str
    columns: tuple[str, ...]
    selects: Callable[[pd.DataFrame], pd.Series]


TRACKED = {
    "sessions": Tracked("web", ("page_seq",), lambda f: (f["event_type"] == "page_view") & (f["page_seq"] == 1)),
    "ad_clicks": Tracked("ads", (), lambda f: f["event_type"] == "ad_click"),
    "orders": Tracked("orders", (), lambda f: f["event_type"] == "order_placed"),
    "payment_attempts": Tracked("payments", (), lambda f: f["event_type"].isin(["payment_authorized", "payment_failed"])),
}
TRACKED_TYPES = {"ad_click", "order_placed", "payment_authorized", "payment_failed"}  # besides session starts


def percentiles(
    values: Sequence[float] | np.ndarray, quantiles: Sequence[int] = (50, 95, 99), unseen: int = 0
) -> dict[str, float | int | None]:
    """Percentiles of ``values``; ``unseen`` more values are known to be larger than any measured
    (events never shown): a percentile that falls among them is None."""
    array = np.concatenate([np.asarray(values, dtype=float), np.full(unseen, np.inf)])
    figures: dict[str, float | int | None] = {f"p{q}": None for q in quantiles}
    if len(array):
        with np.errstate(invalid="ignore"):  # inf - inf between two unseen values
            figures = {f"p{q}": _finite(np.percentile(array, q)) for q in quantiles}
    figures["n"] = int(len(array) - unseen)
    return figures


def _finite(value: float) -> float | None:
    return round(float(value), 1) if math.isfinite(value) else None


# -- where each phase lives ---------------------------------------------------------------------


@dataclass
class Phase:
    """One phase's environment: its own topics, tables, checkpoints and logs."""

    name: str
    env: dict[str, str]
    settings: Settings
    wheel: str | None = None  # on a cluster: the trivas wheel spark-submit ships

    @property
    def logs(self) -> Path:
        return Path(self.env["TRIVAS_PATHS__LOGS"])

    @property
    def progress_file(self) -> Path:
        return self.logs / "progress.jsonl"

    def progress(self) -> list[dict[str, Any]]:
        """The progress documents of every application (``progress*.jsonl``)."""
        return [entry for path in sorted(self.logs.glob("progress*.jsonl")) for entry in read_progress(path)]


def machine_env(root: Path, on_cluster: bool = False) -> dict[str, str]:
    """Settings every phase shares: the private broker (or cluster), the CDC services, the
    MLflow registry."""
    return {
        "TRIVAS_ENV": "local",
        **(cluster_env(root) if on_cluster else {}),
        "TRIVAS_KAFKA__LOCAL_BROKER__PORT": str(free_port()),
        "TRIVAS_KAFKA__LOCAL_BROKER__CONTROLLER_PORT": str(free_port()),
        "TRIVAS_KAFKA__LOCAL_BROKER__DATA_DIR": str(root / "kafka"),
        "TRIVAS_KAFKA__TOPIC_PREFIX": "bench",
        "TRIVAS_PATHS__VAR": str(root / "var"),
        "TRIVAS_PATHS__LOGS": str(root / "logs"),
        "TRIVAS_TABLES__ROOT": str(root / "lake"),
        "TRIVAS_TABLES__CHECKPOINTS": str(root / "checkpoints"),
        # The demo's registry (champions are trained once, then reused by every run).
        "TRIVAS_MLFLOW__TRACKING_URI": f"sqlite:///{REPO_ROOT / 'var' / 'mlflow' / 'mlflow.db'}",
        "TRIVAS_CDC__PG_PORT": str(free_port()),
        "TRIVAS_CDC__CONNECT_PORT": str(free_port()),
        "TRIVAS_CDC__PG_DATA_DIR": str(root / "cdc" / "postgres"),
        "TRIVAS_CDC__CONNECT_DIR": str(root / "cdc" / "connect"),
    }


def cluster_env(root: Path) -> dict[str, str]:
    """``--env cluster`` on free ports: three brokers, a master and its workers
    (:mod:`lakehouse.runtime.cluster`), started by :func:`main`."""
    first = free_port_block(8)
    env = {
        "TRIVAS_ENV": "cluster",
        "TRIVAS_CLUSTER__DIR": str(root / "cluster"),
        "TRIVAS_CLUSTER__KAFKA__FIRST_PORT": str(first),
        "TRIVAS_CLUSTER__KAFKA__FIRST_CONTROLLER_PORT": str(first + 3),
        "TRIVAS_CLUSTER__SPARK__MASTER_PORT": str(first + 6),
        "TRIVAS_CLUSTER__SPARK__MASTER_WEBUI_PORT": str(first + 7),
    }
    settings = load_settings("cluster", environ={**os.environ, **env})
    return {**env, "TRIVAS_KAFKA__BOOTSTRAP": cluster.bootstrap(settings), "TRIVAS_SPARK__MASTER": cluster.master_url(settings)}


def phase(base: dict[str, str], root: Path, name: str) -> Phase:
    folder = root / name
    env = {
        **base,
        "TRIVAS_KAFKA__TOPIC_PREFIX": f"bench_{name}",
        "TRIVAS_PATHS__LOGS": str(folder / "logs"),
        "TRIVAS_TABLES__ROOT": str(folder / "lake"),
        "TRIVAS_TABLES__CHECKPOINTS": str(folder / "checkpoints"),
    }
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    # The phase's settings see what its pipeline processes see: the caller's TRIVAS_*
    # overrides (e.g. TRIVAS_PIPELINE__APPLICATIONS) under the phase's own.
    return Phase(name, env, load_settings(env["TRIVAS_ENV"], environ={**os.environ, **env}), base.get(WHEEL))


# -- traffic: generated and serialised before it is sent -------------------------------------------


class Record(NamedTuple):
    """One serialised Kafka record of generated shop traffic."""

    domain: str
    key: bytes | None
    value: bytes
    timestamp_ms: int  # planned arrival (backlogs); live levels stamp the actual send time
    opens_session: bool  # counted by gold's ``sessions`` measure
    tracked: bool  # counted by one of the TRACKED measures (dates its arrival in gold)


def opens_session(event: dict[str, Any]) -> bool:
    return event["event_type"] == "page_view" and event["payload"].get("page_seq") == 1


def tracked(event: dict[str, Any]) -> bool:
    return opens_session(event) or event["event_type"] in TRACKED_TYPES


def record_of(event: dict[str, Any], catalog: Catalog, timestamp_ms: int) -> Record:
    contract = catalog.event(event["event_type"])
    key = event["payload"].get(contract.key)
    key_bytes = None if key is None else str(key).encode()
    return Record(contract.domain, key_bytes, encode(event), timestamp_ms, opens_session(event), tracked(event))


def backlog_share(seed: int, count: int, events_per_s: float) -> list[Record]:
    """``count`` clean deliveries of one shop, timestamped with their planned arrival."""
    catalog = load_catalog()
    start = datetime.now(UTC) - timedelta(seconds=2 * count / events_per_s)
    shop = Shop(ShopConfig(seed=seed, events_per_second=events_per_s, seasonal=False), start)
    stream = deliveries(shop.events(FAR_FUTURE), catalog, "bench", CLEAN, seed)
    return [
        Record(
            d.topic.rsplit(".", 1)[1], d.key, d.value, d.timestamp_ms,
            d.event is not None and opens_session(d.event), d.event is not None and tracked(d.event),
        )  # fmt: skip
        for d in islice(stream, count)
    ]


def generate_backlog(count: int, processes: int) -> list[Record]:
    """A backlog of ``count`` events from ``processes`` shops generated side by side, merged in
    arrival order (any prefix of it is realistic traffic too)."""
    shares = [count // processes + (1 if i < count % processes else 0) for i in range(processes)]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        parts = pool.starmap(backlog_share, [(100 + i, n, BACKLOG_DENSITY / processes) for i, n in enumerate(shares)])
    return list(heapq.merge(*parts, key=lambda r: r.timestamp_ms))


def live_traffic(rate: float, seconds: float, seed: int, first_event_at: float) -> list[Record]:
    """``rate × seconds`` clean events whose event times follow the paced schedule exactly
    (record i is due ``i / rate`` seconds after ``first_event_at``)."""
    catalog = load_catalog()
    count = int(rate * seconds)
    shop = Shop(ShopConfig(seed=seed, events_per_second=rate, seasonal=False), datetime.now(UTC))
    records = []
    for i, event in enumerate(islice(shop.events(FAR_FUTURE), count)):
        at = iso(datetime.fromtimestamp(first_event_at + i / rate, UTC))
        records.append(record_of({**event, "event_time": at, "sent_at": at}, catalog, 0))
    return records


# -- producers: several processes, each pacing its share by the wall clock ------------------------


@dataclass
class Offer:
    """What the producers delivered."""

    target_per_s: float | None
    sent: int = 0
    first_send: float = math.inf
    last_send: float = -math.inf
    flushed: float = -math.inf
    max_behind_ms: float = 0.0
    processes: int = 1
    sessions: int = 0
    sent_at: np.ndarray = field(default_factory=lambda: np.empty(0))  # every record's send time
    tracked_sent_at: np.ndarray = field(default_factory=lambda: np.empty(0))  # of tracked records

    def sent_between(self, since: float, until: float) -> tuple[int, int]:
        """Records, and tracked records, sent in the span."""
        def inside(stamps: np.ndarray) -> int:
            return int(((stamps >= since) & (stamps <= until)).sum())

        return inside(self.sent_at), inside(self.tracked_sent_at)

    @property
    def achieved_per_s(self) -> float:
        span = self.last_send - self.first_send
        if self.target_per_s:
            span += 1 / self.target_per_s  # n records paced at r/s span (n - 1) / r seconds
        return self.sent / span if span > 0 else 0.0

    @property
    def valid(self) -> bool:
        return self.target_per_s is None or bool(self.achieved_per_s >= 0.95 * self.target_per_s)


def producer_process(
    bootstrap: str, topic: Callable[[str], str] | str, records: list[Record], rate: float | None,
    offset: int, stride: int, channel: Any,
) -> None:  # fmt: skip
    """Send ``records`` (global positions ``offset + k·stride``). Paced: record k is due at
    ``start + (offset + k·stride) / rate`` and stamped with the wall clock when it is handed to
    the producer; unpaced (backlogs): as fast as possible, stamped with its planned arrival."""
    producer = make_producer(bootstrap)
    channel.send("ready")
    start = channel.recv()
    behind, sent_at = 0.0, np.empty(len(records))
    for k, record in enumerate(records):
        if rate:
            wait = start + (offset + k * stride) / rate - time.time()
            if wait > 0:
                time.sleep(wait)
            else:
                behind = max(behind, -wait)
        now = time.time()
        stamp = int(now * 1000) if rate else record.timestamp_ms
        name = topic if isinstance(topic, str) else topic(record.domain)
        producer.send(name, key=record.key, value=record.value, timestamp_ms=stamp)
        sent_at[k] = now
    producer.flush()
    flushed = time.time()
    producer.close()
    tracked = np.array([r.tracked for r in records], dtype=bool)
    channel.send({"sent_at": sent_at, "tracked_sent_at": sent_at[tracked], "flushed": flushed, "behind_ms": behind * 1000})


class TopicOf:
    """Picklable ``domain → topic`` of one phase."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, domain: str) -> str:
        return topic_for(self.prefix, domain)


def produce(
    records: list[Record], bootstrap: str, topic: Callable[[str], str] | str, processes: int,
    rate: float | None = None, not_before: float = 0.0,
) -> Offer:  # fmt: skip
    """Send ``records`` from ``processes`` producer processes (record i from process i mod n),
    starting together once every producer is connected (and not before ``not_before``)."""
    context = multiprocessing.get_context("spawn")
    workers, channels = [], []
    for offset in range(processes):
        ours, theirs = context.Pipe()
        share = records[offset::processes]
        worker = context.Process(target=producer_process, args=(bootstrap, topic, share, rate, offset, processes, theirs), daemon=True)
        worker.start()
        workers.append(worker)
        channels.append(ours)
    for channel in channels:
        if channel.recv() != "ready":
            raise RuntimeError("a producer process did not start")
    start = max(time.time() + 0.2, not_before)
    for channel in channels:
        channel.send(start)
    offer = Offer(rate, processes=processes, sessions=sum(r.opens_session for r in records))
    for channel, worker in zip(channels, workers, strict=True):
        report = channel.recv()
        worker.join()
        offer.sent += len(report["sent_at"])
        offer.sent_at = np.concatenate([offer.sent_at, report["sent_at"]])
        offer.tracked_sent_at = np.concatenate([offer.tracked_sent_at, report["tracked_sent_at"]])
        offer.first_send = min(offer.first_send, report["sent_at"].min(initial=math.inf))
        offer.last_send = max(offer.last_send, report["sent_at"].max(initial=-math.inf))
        offer.flushed = max(offer.flushed, report["flushed"])
        offer.max_behind_ms = max(offer.max_behind_ms, report["behind_ms"])
    return offer


# -- the pipeline process -------------------------------------------------------------------------


class RssSampler(threading.Thread):
    """Peak resident memory of a process tree."""

    def __init__(self, *pids: int) -> None:
        super().__init__(daemon=True)
        self.pids = list(pids)
        self.peak_mb = 0.0
        self.stop = threading.Event()

    def tree(self) -> list[int]:
        pids, frontier = list(self.pids), list(self.pids)
        while frontier:
            parent = frontier.pop()
            children = Path(f"/proc/{parent}/task/{parent}/children")
            try:
                kids = [int(p) for p in children.read_text().split()]
            except OSError:
                continue
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


class PipelineRun:
    """The pipeline as ``trivas demo`` runs it: one ``trivas pipeline run --app NAME`` process
    group per application of ``settings.pipeline.applications`` that has a job to run, with
    the memory of all of them sampled together."""

    def __init__(self, phase: Phase, jobs: Sequence[str]) -> None:
        self.phase = phase
        self.jobs = list(jobs)
        self.apps = [
            (app.name, [j for j in app.jobs if j in self.jobs])
            for app in phase.settings.pipeline.applications
            if any(j in self.jobs for j in app.jobs)
        ]
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def log_path(self, app: str) -> Path:
        return self.phase.logs / f"{self.phase.settings.pipeline.log_name(app)}.log"

    def __enter__(self) -> PipelineRun:
        for app, jobs in self.apps:
            args = ["pipeline", "run", "--app", app, "--jobs", ",".join(jobs)]
            command = [sys.executable, "-m", "lakehouse.cli", *args]
            if self.phase.wheel:  # the driver in client mode here, the executors on the workers
                command = cluster.submit_command(self.phase.settings, Path(self.phase.wheel), args)
            with self.log_path(app).open("ab") as log:
                self.processes[app] = subprocess.Popen(
                    command, env={**os.environ, **self.phase.env}, cwd=REPO_ROOT, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
        self.sampler = RssSampler(*(p.pid for p in self.processes.values()))
        self.sampler.start()
        return self

    def check_alive(self) -> None:
        for app, process in self.processes.items():
            if process.poll() is not None:
                tail = self.log_path(app).read_text(errors="replace")[-3000:]
                raise RuntimeError(f"pipeline {app} exited {process.returncode}; see {self.log_path(app)}\n{tail}")

    def wait_started(self, timeout_s: float = 600) -> float:
        """Wall-clock time at which every application logged that its queries started."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            if all(STARTED_LINE.search(self.log_path(app).read_text(errors="replace")) for app in self.processes):
                return time.time()
            time.sleep(0.1)
        raise TimeoutError(f"the pipeline did not start its queries in {timeout_s:.0f}s; see {self.phase.logs}")

    @property
    def peak_rss_mb(self) -> float:
        return self.sampler.peak_mb

    def __exit__(self, *_: object) -> None:
        """Stop gracefully: SIGTERM to each driver, which stops its queries and then its JVM."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            deadline = time.monotonic() + 15  # the JVM exits after its driver
            while _group_alive(process.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # anything the driver left behind
        self.sampler.stop.set()
        self.sampler.join()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


# -- what the tables hold -------------------------------------------------------------------------


def delta_table(settings: Settings, logical: str) -> DeltaTable | None:
    try:
        return DeltaTable(table_location(settings, logical))
    except Exception:  # noqa: BLE001 - not created yet
        return None


def count_rows(settings: Settings, logical: str) -> int:
    table = delta_table(settings, logical)
    return table.to_pyarrow_dataset().count_rows() if table is not None else 0


def gold_count(settings: Settings, kpi: str) -> int:
    """Events gold has counted for ``kpi`` over all 1-minute windows (dimension ``all``). The
    largest count of a window is its current one, with a MERGE table (one row per key) and with
    an append-only table of updates alike: counts only grow."""
    table = delta_table(settings, "gold.kpi")
    if table is None:
        return 0
    wanted = (pc.field("kpi") == kpi) & (pc.field("grain") == "1m") & (pc.field("dimension") == "all")
    frame = table.to_pyarrow_dataset().to_table(columns=["window_start", "events"], filter=wanted).to_pandas()
    return int(frame.groupby("window_start").events.max().sum()) if len(frame) else 0


def silver_rows(settings: Settings, catalog: Catalog, domain: str, columns: Sequence[str]) -> pd.DataFrame:
    """One domain's silver rows: ``silver.events`` filtered by domain (one table for all domains,
    the per-domain names being views), else the domain's own ``silver.<table>``."""
    shared = delta_table(settings, "silver.events")
    if shared is not None:
        dataset = shared.to_pyarrow_dataset()
        if "domain" in dataset.schema.names:
            return dataset.to_table(columns=list(columns), filter=pc.field("domain") == domain).to_pandas()
    table = delta_table(settings, f"silver.{catalog.domains[domain].table}")
    if table is None:
        return pd.DataFrame(columns=list(columns))
    return table.to_pyarrow_dataset().to_table(columns=list(columns)).to_pandas()


def wait_until_counted(settings: Settings, run: PipelineRun, records: int, sessions: int, timeout_s: float) -> bool:
    """Until bronze holds ``records`` rows and gold has counted ``sessions`` sessions (True),
    or ``timeout_s`` passes (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run.check_alive()
        if count_rows(settings, "bronze.events") >= records and gold_count(settings, "sessions") >= sessions:
            return True
        time.sleep(1.0)
    return False


# -- latency from the Delta logs --------------------------------------------------------------------


class Commit(NamedTuple):
    version: int
    stamp: float  # epoch seconds
    added: list[str]  # data files added (dataChange)


def commits(location: str) -> list[Commit]:
    """Every commit of a Delta table with the data files it added."""
    result = []
    for log in sorted(Path(location, "_delta_log").glob("*.json")):
        added, stamp = [], None
        for line in log.read_text().splitlines():
            action = json.loads(line)
            if "commitInfo" in action:
                stamp = action["commitInfo"]["timestamp"] / 1000.0
            if "add" in action and action["add"].get("dataChange", True):
                added.append(str(Path(location) / unquote(action["add"]["path"])))
        if stamp is not None:
            result.append(Commit(int(log.stem), stamp, added))
    return result


def data_file(path: str, columns: Sequence[str]) -> pa.Table:
    """Columns of a data file a commit added; empty if the file is gone (vacuumed)."""
    try:
        return pq.read_table(path, columns=list(columns))
    except FileNotFoundError:
        print(f"    warning: {path} was removed (vacuum?): its rows are left out")
        return pa.table({c: pa.array([], type=pa.null()) for c in columns})


def bronze_reached_at(settings: Settings, rows: int) -> float | None:
    """Time of the bronze.events commit that brought the table to ``rows`` rows."""
    total = 0
    for commit in commits(table_location(settings, "bronze.events")):
        total += sum(len(data_file(file, [])) for file in commit.added)
        if total >= rows:
            return commit.stamp
    return None


def gold_reached_at(settings: Settings, kpi: str, events: int) -> float | None:
    """Time of the gold.kpi commit at which ``kpi`` had counted ``events`` over its windows."""
    latest: dict[int, int] = {}
    for commit in commits(table_location(settings, "gold.kpi")):
        for file in commit.added:
            for _, start, count in window_counts(file, [kpi]):
                latest[start] = max(latest.get(start, 0), count)
        if sum(latest.values()) >= events:
            return commit.stamp
    return None


def epoch_seconds(values: Any) -> np.ndarray:
    """Timestamps (naive = UTC, as Spark writes them; any unit) as float epoch seconds."""
    stamps = pd.to_datetime(pd.Series(values), utc=True)
    return ((stamps - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(dtype=float)


class Arrivals(NamedTuple):
    """Per event: when it was sent (its Kafka timestamp) and when it became visible (NaN: never)."""

    sent: np.ndarray
    visible: np.ndarray

    def latency_ms(self, since: float, until: float) -> np.ndarray:
        """Latencies of the events sent in the span that became visible."""
        chosen = (self.sent >= since) & (self.sent <= until)
        latency = (self.visible[chosen] - self.sent[chosen]) * 1000
        return latency[~np.isnan(latency)]


def bronze_arrivals(settings: Settings) -> Arrivals:
    sent, visible = [], []
    for commit in commits(table_location(settings, "bronze.events")):
        for file in commit.added:
            stamps = epoch_seconds(data_file(file, ["kafka_timestamp"]).column(0).to_pandas())
            sent.append(stamps)
            visible.append(np.full(len(stamps), commit.stamp))
    if not sent:
        return Arrivals(np.empty(0), np.empty(0))
    return Arrivals(np.concatenate(sent), np.concatenate(visible))


def window_counts(file: str, kpis: Sequence[str]) -> Iterator[tuple[str, int, int]]:
    """(measure, window start in epoch s, events) of the 1-minute, dimension ``all`` rows of a
    gold.kpi data file."""
    frame = data_file(file, ["kpi", "grain", "dimension", "window_start", "events"]).to_pandas()
    frame = frame[(frame.grain == "1m") & (frame.dimension == "all") & frame.kpi.isin(list(kpis))]
    starts = epoch_seconds(frame.window_start).astype(np.int64)
    for kpi, start, events in zip(frame.kpi, starts, frame.events, strict=True):
        yield kpi, int(start), int(events)


def gold_history(settings: Settings) -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]:
    """Per (measure, window start): commit times and the running largest count gold showed."""
    rows: dict[tuple[str, int], list[tuple[float, int]]] = {}
    for commit in commits(table_location(settings, "gold.kpi")):
        for file in commit.added:
            for kpi, start, events in window_counts(file, list(TRACKED)):
                rows.setdefault((kpi, start), []).append((commit.stamp, events))
    history = {}
    for key, points in rows.items():
        points.sort()
        stamps = np.array([s for s, _ in points])
        counts = np.maximum.accumulate(np.array([c for _, c in points]))
        history[key] = (stamps, counts)
    return history


def gold_arrivals(settings: Settings, catalog: Catalog) -> Arrivals:
    """The k-th event of a (measure, window) in arrival order is visible in gold from the first
    gold.kpi commit whose count for that window reaches k."""
    history = gold_history(settings)
    sent, visible = [], []
    for kpi, tracked in TRACKED.items():
        silver = silver_rows(settings, catalog, tracked.domain, ["event_type", "event_time", "ingested_at", *tracked.columns])
        silver = silver[tracked.selects(silver)] if len(silver) else silver
        if not len(silver):
            continue
        windows = (epoch_seconds(silver.event_time) // 60 * 60).astype(np.int64)
        arrivals = epoch_seconds(silver.ingested_at)  # the Kafka timestamps
        for window in np.unique(windows):
            ranked = np.sort(arrivals[windows == window])
            stamps, counts = history.get((kpi, int(window)), (np.empty(0), np.empty(0, dtype=int)))
            position = np.searchsorted(counts, np.arange(1, len(ranked) + 1), side="left")
            seen = np.full(len(ranked), np.nan)
            known = position < len(stamps)
            seen[known] = stamps[position[known]]
            sent.append(ranked)
            visible.append(seen)
    if not sent:
        return Arrivals(np.empty(0), np.empty(0))
    return Arrivals(np.concatenate(sent), np.concatenate(visible))


# -- micro-batch durations from progress.jsonl ------------------------------------------------------


def read_progress(path: Path) -> list[dict[str, Any]]:
    """Every StreamingQueryProgress the pipeline appended, the rotated file's first (a torn last
    line is skipped)."""
    if not path.exists():
        print(f"    warning: {path} does not exist (this pipeline does not write progress.jsonl): no batch figures")
        return []
    rotated = path.with_suffix(".jsonl.1")
    lines = (rotated.read_text(errors="replace") if rotated.exists() else "") + path.read_text(errors="replace")
    progress = []
    for line in lines.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and "durationMs" in entry:
            entry["_at"] = datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")).timestamp()
            progress.append(entry)
    return progress


def batch_ms_by_query(progress: list[dict[str, Any]], since: float = -math.inf, until: float = math.inf) -> dict[str, Any]:
    """Per query: p50/p95 of each part of the micro-batches with input that started in the span."""
    by_query: dict[str, list[dict[str, Any]]] = {}
    for entry in progress:
        if since <= entry["_at"] <= until:
            by_query.setdefault(entry.get("name") or entry.get("id", "?"), []).append(entry)
    figures = {}
    for name, entries in sorted(by_query.items()):
        busy = [e for e in entries if (e.get("numInputRows") or 0) > 0]
        parts = {
            part: percentiles([e["durationMs"][part] for e in busy if part in e["durationMs"]], (50, 95))
            for part in DURATION_PARTS
        }
        figures[name] = {"batches": len(entries), "batches_with_input": len(busy), **parts}
    return figures


def state_by_operator(progress: list[dict[str, Any]]) -> dict[str, Any]:
    """Per stateful operator of each query, at its largest state: keys held, RocksDB memory
    (memtables + block cache) and SST files on disk, and both per million keys (for sizing:
    with few keys the fixed part of the memory dominates the per-key figure)."""
    largest: dict[str, dict[str, Any]] = {}
    for entry in progress:
        for operator in entry.get("stateOperators") or []:
            name = f"{entry.get('name')}/{operator.get('operatorName')}"
            if operator.get("numRowsTotal", 0) >= largest.get(name, {}).get("numRowsTotal", -1):
                largest[name] = operator
    figures = {}
    for name, operator in sorted(largest.items()):
        keys = operator.get("numRowsTotal", 0)
        memory = operator.get("memoryUsedBytes", 0)
        sst = (operator.get("customMetrics") or {}).get("rocksdbSstFileSize", 0)
        figures[name] = {
            "keys": keys,
            "memory_mb": round(memory / 2**20, 1),
            "sst_mb": round(sst / 2**20, 1),
            "memory_mb_per_million_keys": round(memory / 2**20 / keys * 1e6, 1) if keys else None,
            "sst_mb_per_million_keys": round(sst / 2**20 / keys * 1e6, 1) if keys else None,
            "state_partitions": operator.get("numShufflePartitions"),
        }
    return figures


def first_batch_at(progress: list[dict[str, Any]]) -> float | None:
    return min((e["_at"] for e in progress), default=None)


def tables_prepared_at(settings: Settings) -> float | None:
    """When the pipeline created the last of its tables (it starts its queries right after):
    the start of a backlog's work when there is no progress.jsonl to tell the first batch."""
    root = Path(table_location(settings, "bronze.events")).parents[1]
    stamps = []
    for first_commit in root.glob("*/*/_delta_log/00000000000000000000.json"):
        for line in first_commit.read_text().splitlines():
            action = json.loads(line)
            if "commitInfo" in action:
                stamps.append(action["commitInfo"]["timestamp"] / 1000.0)
    return max(stamps, default=None)


# -- (a) the engine's own limit ---------------------------------------------------------------------


RAW_COPY_SCRIPT = """
import json, sys, time
from lakehouse.config import load_settings
from lakehouse.runtime.spark import get_spark
topic, table, checkpoint, warmup, progress_file = sys.argv[1:6]
s = load_settings()
spark = get_spark(s)
spark.range(1).write.format("delta").mode("overwrite").save(warmup)
source = (spark.readStream.format("kafka").option("kafka.bootstrap.servers", s.kafka_bootstrap())
          .option("subscribe", topic).option("startingOffsets", "earliest").load())
started = time.monotonic()
query = (source.selectExpr("CAST(key AS STRING) key", "CAST(value AS STRING) value", "topic", "partition", "offset", "timestamp")
         .writeStream.queryName("raw_copy").format("delta").option("checkpointLocation", checkpoint)
         .trigger(availableNow=True).start(table))
query.awaitTermination()
print("SECONDS", time.monotonic() - started)
with open(progress_file, "w") as out:
    out.writelines(p.json + "\\n" for p in query.recentProgress)
"""


def raw_copy(phase: Phase, records: list[Record], producers: int) -> tuple[float, dict[str, Any]]:
    """Kafka → Delta copy of ``records`` with no transformation, in a fresh JVM: events/s and
    the copy's own micro-batch figures."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    topic = "bench.rawcopy"
    admin = KafkaAdminClient(bootstrap_servers=phase.settings.kafka_bootstrap())
    admin.create_topics([NewTopic(topic, phase.settings.kafka.partitions, 1)])
    admin.close()
    produce(records, phase.settings.kafka_bootstrap(), topic, producers)
    lake = Path(phase.env["TRIVAS_TABLES__ROOT"])
    arguments = [topic, str(lake / "rawcopy"), str(Path(phase.env["TRIVAS_TABLES__CHECKPOINTS"]) / "rawcopy"), str(lake / "warmup"), str(phase.progress_file)]
    result = subprocess.run(
        [sys.executable, "-c", RAW_COPY_SCRIPT, *arguments], env={**os.environ, **phase.env}, cwd=REPO_ROOT,
        capture_output=True, text=True,
    )  # fmt: skip
    if result.returncode:
        raise RuntimeError(f"raw copy failed:\n{result.stderr[-3000:]}")
    seconds = float(next(line for line in result.stdout.splitlines() if line.startswith("SECONDS")).split()[1])
    return len(records) / seconds, batch_ms_by_query(read_progress(phase.progress_file))


# -- which jobs of the demo can run here ----------------------------------------------------------


@dataclass
class Jobs:
    """The jobs the pipeline runs with, and those that could not run here (with the reason)."""

    ran: list[str]
    skipped: dict[str, str] = field(default_factory=dict)
    cdc_env: dict[str, str] | None = None  # set once PostgreSQL + Debezium are up

    @property
    def cdc_up(self) -> bool:
        return self.cdc_env is not None

    def as_json(self) -> dict[str, Any]:
        return {"ran": self.ran, "skipped": self.skipped}


def prepare_jobs(requested: Sequence[str], settings: Settings, env: dict[str, str]) -> Jobs:
    """Set up what each job needs the way ``trivas demo`` does: champions for detect and refund
    risk, PostgreSQL + Debezium for CDC; a job whose setup fails is skipped and recorded.
    ``all`` is every job of ``settings.pipeline.applications`` (what ``trivas demo`` runs)."""
    from spark_jobs.pipeline import STARTERS

    if list(requested) == ["all"]:  # what trivas demo runs: every application's jobs
        requested = [job for app in settings.pipeline.applications for job in app.jobs]
    jobs = Jobs([j for j in requested if j in STARTERS])
    jobs.skipped.update({j: "not a job of this pipeline (spark_jobs.pipeline.STARTERS)" for j in requested if j not in STARTERS})
    if {"detect", "refund_risk"} & set(jobs.ran):
        from models.champion import ensure_champions

        uri = env["TRIVAS_MLFLOW__TRACKING_URI"]
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        print("    registering the anomaly and refund-risk champions if missing (as trivas demo does)…")
        try:
            champions = ensure_champions(uri, settings.mlflow.anomaly_model, settings.mlflow.refund_model)
            if champions.get(settings.mlflow.refund_model) is None and "refund_risk" in jobs.ran:
                jobs.skipped["refund_risk"] = "no refund-risk champion and no training data"
        except Exception as error:  # noqa: BLE001 - recorded, never silent
            for job in ("detect", "refund_risk"):
                if job in jobs.ran:
                    jobs.skipped[job] = f"champions could not be registered: {error!r}"[:300]
    if "cdc" in jobs.ran:
        from lakehouse.ingest import cdc

        print("    starting the shop's PostgreSQL and Debezium (as trivas demo does)…")
        try:
            cdc.up(settings, cdc.load_cdc_settings(environ=env))
            jobs.cdc_env = env
        except Exception as error:  # noqa: BLE001 - recorded, never silent
            jobs.skipped["cdc"] = f"PostgreSQL/Debezium could not start: {error!r}"[:300]
    jobs.ran = [j for j in jobs.ran if j not in jobs.skipped]
    return jobs


# -- (b) cost per event as the backlog grows ------------------------------------------------------


def work_off_backlog(stage: Phase, records: list[Record], jobs: Jobs, producers: int, timeout_s: float) -> dict[str, Any]:
    """Fill the phase's topics with ``records``, start the pipeline and time it from its first
    micro-batch to the gold.kpi commit that counted the last session."""
    kafka.ensure_topics(stage.settings, load_catalog())
    produce(records, stage.settings.kafka_bootstrap(), TopicOf(stage.settings.kafka.topic_prefix), producers)
    sessions = sum(r.opens_session for r in records)
    with PipelineRun(stage, jobs.ran) as run:
        started = run.wait_started()
        completed = wait_until_counted(stage.settings, run, len(records), sessions, timeout_s)
        detected = time.time()
        rss = run.peak_rss_mb
    progress = stage.progress()
    began, timed_from = first_batch_at(progress), "first micro-batch (progress.jsonl)"
    if began is None:
        began, timed_from = tables_prepared_at(stage.settings), "tables prepared (first Delta commits)"
    if began is None:
        began, timed_from = started, "queries started (pipeline log)"
    finished = detected
    if completed:
        done = [bronze_reached_at(stage.settings, len(records)), gold_reached_at(stage.settings, "sessions", sessions)]
        finished = max((t for t in done if t is not None), default=detected)
    seconds = max(finished - began, 1e-3)
    counted = len(records) if completed else count_rows(stage.settings, "bronze.events")
    return {
        "events": len(records),
        "completed": completed,
        "seconds": round(seconds, 2),
        "us_per_event": round(seconds / len(records) * 1e6, 1) if completed else None,
        "events_per_s": round(counted / seconds),
        "timed_from": timed_from,
        "peak_rss_mb": round(rss),
        "batch_ms_by_query": batch_ms_by_query(progress),
        "state_by_operator": state_by_operator(progress),
    }


def flatness(by_size: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Whether µs per event stays flat as the backlog grows, and the marginal cost per step."""
    done = sorted((size, r) for size, r in by_size.items() if r["completed"])
    marginal = {
        f"{a}->{b}": round((rb["seconds"] - ra["seconds"]) / (b - a) * 1e6, 1) for (a, ra), (b, rb) in zip(done, done[1:], strict=False)
    }
    costs = [r["us_per_event"] for _, r in done]
    ratio = round(max(costs) / min(costs), 2) if len(costs) > 1 else None
    return {
        "marginal_us_per_event": marginal,
        "max_over_min_us_per_event": ratio,
        "flat": None if ratio is None else ratio <= 1.25,
        "flat_means": "largest / smallest µs per event ≤ 1.25 over the completed sizes",
    }


# -- (c) latency at offered rates -------------------------------------------------------------------


SHOP_DATABASE_DOMAINS = {"orders", "payments", "inventory"}


class ShopDatabaseFeed(threading.Thread):
    """The shop's own database writes of a level (orders, payment and refund states, stock), each
    at its record's due time: the source CDC mirrors, as ``trivas generate --shop-db`` feeds it
    in the demo."""

    def __init__(self, settings: Settings, env: dict[str, str], records: list[Record], rate: float, start: float) -> None:
        super().__init__(daemon=True)
        self.settings, self.env, self.start_at = settings, env, start
        self.due = [
            (start + i / rate, json.loads(r.value)) for i, r in enumerate(records) if r.domain in SHOP_DATABASE_DOMAINS
        ]
        self.applied = 0
        self.error: str | None = None

    def run(self) -> None:
        from lakehouse.ingest.cdc import ShopDatabase, load_cdc_settings

        try:
            with ShopDatabase.connect(self.settings, load_cdc_settings(environ=self.env)) as database:
                for due, event in self.due:
                    time.sleep(max(0.0, due - time.time()))
                    self.applied += bool(database.apply_event(event))
        except Exception as error:  # noqa: BLE001 - reported with the level
            self.error = repr(error)[:300]


@dataclass
class Level:
    """One offered rate, held for a while."""

    rate: float
    offer: Offer
    settled: bool
    measured_from: float
    generated_in_s: float
    shop_database_writes: int | None = None  # CDC's source traffic (None: CDC not running)
    shop_database_error: str | None = None


def offer_level(stage: Phase, jobs: Jobs, rate: float, seconds: float, seed: int, per_process: float) -> Level:
    """Generate the level's records, then offer them at ``rate`` from enough producer processes
    (and write the shop database's share to PostgreSQL when CDC runs)."""
    processes = max(1, math.ceil(rate / per_process))
    began = time.time()
    first_event_at = began + rate * seconds / 10_000 + 4  # generation runs at ~12k events/s here
    records = live_traffic(rate, seconds, seed, first_event_at)
    generated_in = time.time() - began
    feed = None
    if jobs.cdc_env is not None:
        feed = ShopDatabaseFeed(stage.settings, jobs.cdc_env, records, rate, first_event_at)
        feed.start()
    topic = TopicOf(stage.settings.kafka.topic_prefix)
    offer = produce(records, stage.settings.kafka_bootstrap(), topic, processes, rate, first_event_at)
    level = Level(rate, offer, False, offer.first_send, generated_in)
    if feed is not None:
        feed.join(timeout=30)
        level.shop_database_writes = feed.applied
        level.shop_database_error = feed.error
    return level


def run_levels(stage: Phase, jobs: Jobs, rates: Sequence[float], args: argparse.Namespace) -> tuple[list[Level], float]:
    """Offer each rate in turn to one running pipeline; wait for gold to catch up in between."""
    kafka.ensure_topics(stage.settings, load_catalog())
    levels: list[Level] = []
    sent, sessions = 0, 0
    with PipelineRun(stage, jobs.ran) as run:
        run.wait_started()
        time.sleep(args.level_warmup)  # the queries' first (empty) batches
        for i, rate in enumerate(rates):
            level = offer_level(stage, jobs, rate, args.level_seconds, 10 + i, args.producer_rate)
            offer = level.offer
            sent, sessions = sent + offer.sent, sessions + offer.sessions
            level.settled = wait_until_counted(stage.settings, run, sent, sessions, args.settle_timeout)
            level.measured_from = offer.first_send + args.level_warmup
            levels.append(level)
            print(
                f"    {rate:>6,.0f}/s offered: achieved {offer.achieved_per_s:,.0f}/s from {offer.processes} producer(s)"
                f" (max {offer.max_behind_ms:,.0f} ms behind schedule)"
                f"{'' if level.settled else ', gold had not caught up'}"
            )
        rss = run.peak_rss_mb
    return levels, rss


def latency_by_rate(stage: Phase, levels: list[Level], progress: list[dict[str, Any]]) -> dict[str, Any]:
    bronze = bronze_arrivals(stage.settings)
    gold = gold_arrivals(stage.settings, load_catalog())
    figures = {}
    for level in levels:
        offer = level.offer
        bronze_ms = bronze.latency_ms(level.measured_from, offer.last_send)
        gold_ms = gold.latency_ms(level.measured_from, offer.last_send)
        sent, tracked_sent = offer.sent_between(level.measured_from, offer.last_send)
        figures[str(int(level.rate))] = {
            "target_events_per_s": level.rate,
            "achieved_events_per_s": round(offer.achieved_per_s),
            "valid": offer.valid,
            "sent": offer.sent,
            "held_s": round(offer.last_send - offer.first_send, 1),
            "measured_s": round(offer.last_send - level.measured_from, 1),
            "producer_processes": offer.processes,
            "max_behind_schedule_ms": round(offer.max_behind_ms),
            "generated_in_s": round(level.generated_in_s, 1),
            "settled": level.settled,
            "shop_database_writes": level.shop_database_writes,
            "shop_database_error": level.shop_database_error,
            "bronze_latency_ms": percentiles(bronze_ms, unseen=max(0, sent - len(bronze_ms))),
            "bronze_unseen": max(0, sent - len(bronze_ms)),
            "gold_latency_ms": percentiles(gold_ms, unseen=max(0, tracked_sent - len(gold_ms))),
            "gold_unseen": max(0, tracked_sent - len(gold_ms)),
            "batch_ms_by_query": batch_ms_by_query(progress, offer.first_send, offer.last_send),
        }
    return figures


# -- targets and the picture ------------------------------------------------------------------------


def level_figure(results: dict[str, Any], rate: int, layer: str, quantile: str) -> float | None:
    """A latency percentile of one level; infinite when the level ran but the percentile falls
    among events never shown."""
    level = results.get("latency_by_rate", {}).get(str(rate))
    if level is None:
        return None
    value = level[f"{layer}_latency_ms"][quantile]
    return math.inf if value is None else value


def target_checks(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The issue's targets, each with the measured value (None: not measured) and whether it is met."""
    ratio = results.get("pipeline_vs_raw_copy")
    rss = results.get("peak_rss_mb")
    checks = {
        "backlog rate >= 0.5 x raw copy": (ratio, 0.5, ">="),
        "2,000/s event -> bronze p95 <= 1,500 ms": (level_figure(results, 2000, "bronze", "p95"), 1500, "<="),
        "2,000/s event -> gold p95 <= 3,000 ms": (level_figure(results, 2000, "gold", "p95"), 3000, "<="),
        "2,000/s event -> gold p99 <= 5,000 ms": (level_figure(results, 2000, "gold", "p99"), 5000, "<="),
        "5,000/s event -> gold p95 <= 60,000 ms": (level_figure(results, 5000, "gold", "p95"), 60000, "<="),
        "peak RSS <= 6,144 MB": (rss, 6144, "<="),
    }
    return {
        name: {
            "value": "never shown" if value == math.inf else value,
            "target": f"{op} {bound}",
            "met": None if value is None else (value >= bound if op == ">=" else value <= bound),
        }
        for name, (value, bound, op) in checks.items()
    }


def print_targets(targets: dict[str, dict[str, Any]]) -> None:
    print("targets (not asserted):")
    for name, check in targets.items():
        verdict = {True: "met", False: "MISSED", None: "not measured"}[check["met"]]
        print(f"    {name:42} {check['value']!s:>10}  {verdict}")


def plot_latency(levels: dict[str, Any], path: Path) -> None:
    """Latency (p50/p95/p99, bronze and gold) against the achieved offered rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    chosen = sorted(levels.values(), key=lambda level: level["target_events_per_s"])
    rates = [level["achieved_events_per_s"] for level in chosen]
    figure, axes = plt.subplots(figsize=(8, 5))
    for layer, colour in (("bronze", "tab:blue"), ("gold", "tab:orange")):
        for quantile, style in (("p50", ":"), ("p95", "-"), ("p99", "--")):
            values = [np.nan if level[f"{layer}_latency_ms"][quantile] is None else level[f"{layer}_latency_ms"][quantile] / 1000 for level in chosen]
            axes.plot(rates, values, style, color=colour, marker="o", label=f"event → {layer} {quantile}")
    labels = [
        f"{level['target_events_per_s']:,.0f}\n{rate:,} achieved" + ("" if level["valid"] else "\nINVALID (< 95 %)")
        for level, rate in zip(chosen, rates, strict=True)
    ]
    axes.set_xscale("log")
    axes.set_xticks(rates, labels, fontsize=7)
    axes.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes.set_yscale("log")
    plain = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}")
    axes.yaxis.set_major_formatter(plain)
    axes.yaxis.set_minor_formatter(plain)
    axes.axhline(3, color="grey", linewidth=0.8, linestyle="-.", label="gold p95 target at 2,000/s (3 s)")
    axes.axhline(60, color="red", linewidth=0.8, linestyle="-.", label="freshness SLA (60 s)")
    axes.set_xlabel("offered events/s: target and achieved")
    axes.set_ylabel("latency (s)")
    axes.set_title("trivas pipeline: event → visible, by offered rate")
    axes.legend(fontsize=7)
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# -- the run --------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="smoke run (every phase end to end, ~5 minutes on a quiet machine, figures meaningless): "
        "--raw-records 20000 --backlogs 2000,5000 --rates 200,500 --level-seconds 8 --level-warmup 2 "
        "--settle-timeout 90 --producer-rate 300 --output var/bench-smoke/pipeline.json",
    )
    parser.add_argument("--raw-records", type=int, default=300_000, help="events in the raw copy's backlog (0: skip)")
    parser.add_argument("--backlogs", default="10000,100000,1000000", help="backlog sizes, comma-separated ('': skip)")
    parser.add_argument("--backlog-timeout", type=float, default=600, help="seconds to wait for a backlog to be counted")
    parser.add_argument("--rates", default="500,1000,2000,5000", help="offered events/s, comma-separated ('': skip)")
    parser.add_argument("--level-seconds", type=float, default=70, help="how long each rate is offered")
    parser.add_argument("--level-warmup", type=float, default=10, help="first seconds of a level left out of the latency")
    parser.add_argument("--settle-timeout", type=float, default=120, help="seconds to wait for gold after a level")
    parser.add_argument("--producer-rate", type=float, default=2000, help="events/s one producer process is asked for")
    parser.add_argument(
        "--jobs", default="all", help="the pipeline's --jobs; 'all' (default): the jobs of settings.pipeline.applications, as trivas demo runs them"
    )
    parser.add_argument(
        "--cluster", action="store_true",
        help="run on `trivas cluster`'s topology (3 KRaft brokers RF 3, a standalone master and its workers, jobs "
        "through spark-submit) instead of the local broker and local Spark; peak_rss_mb is then the driver's only",
    )  # fmt: skip
    parser.add_argument("--output", type=Path, default=RESULTS, help="the JSON (the PNG goes next to it)")
    return parser.parse_args()


def numbers(text: str) -> list[int]:
    return [int(float(part)) for part in text.split(",") if part.strip()]


def machine(when: str) -> dict[str, Any]:
    load = os.getloadavg()
    return {f"load_avg_at_{when}": round(load[0], 2), f"load_avg_1_5_15_at_{when}": [round(x, 2) for x in load]}


def measure_raw_copy(results: dict[str, Any], base: dict[str, str], backlog: list[Record], records: int) -> None:
    rate, copy_batches = raw_copy(phase(base, ROOT, "raw_copy"), backlog[:records], producers=2)
    results["raw_copy_events_per_s"] = round(rate)
    results["raw_copy_batch_ms"] = copy_batches
    print(f"(a) raw Spark Kafka→Delta copy of {records:,}: {rate:,.0f} events/s")


def measure_backlogs(
    results: dict[str, Any], base: dict[str, str], backlog: list[Record], sizes: Sequence[int], jobs: Jobs,
    timeout_s: float, peaks: dict[str, float],
) -> None:  # fmt: skip
    by_size = {}
    for size in sizes:
        result = work_off_backlog(phase(base, ROOT, f"backlog_{size}"), backlog[:size], jobs, 2, timeout_s)
        by_size[size] = result
        peaks[f"backlog_{size}"] = result["peak_rss_mb"]
        state = f"{result['us_per_event']} µs/event" if result["completed"] else f"NOT counted within {timeout_s:.0f}s"
        print(f"(b) backlog of {size:>9,}: {result['events_per_s']:,} events/s, {state}")
        for operator, held in result["state_by_operator"].items():
            print(f"    state {operator}: {held['keys']:,} keys, {held['memory_mb']} MB memory, {held['sst_mb']} MB SST files")
    results["cost_per_event_by_backlog"] = {**{str(s): r for s, r in by_size.items()}, **flatness(by_size)}
    completed = [s for s in sizes if by_size[s]["completed"]]
    if completed:
        largest = max(completed)
        results["pipeline_events_per_s"] = by_size[largest]["events_per_s"]
        results["pipeline_backlog_events"] = largest
        print(f"    full pipeline: {results['pipeline_events_per_s']:,} events/s on {largest:,} events")
    if completed and results.get("raw_copy_events_per_s"):
        results["pipeline_vs_raw_copy"] = round(results["pipeline_events_per_s"] / results["raw_copy_events_per_s"], 3)
        print(f"    = {results['pipeline_vs_raw_copy']} × the raw copy")


def measure_latency(
    results: dict[str, Any], base: dict[str, str], rates: Sequence[int], jobs: Jobs, args: argparse.Namespace,
    peaks: dict[str, float],
) -> None:  # fmt: skip
    live = phase(base, ROOT, "live")
    print("(c) latency by offered rate")
    levels, peaks["live"] = run_levels(live, jobs, rates, args)
    progress = live.progress()
    results["latency_by_rate"] = latency_by_rate(live, levels, progress)
    results["batch_ms_by_query"] = batch_ms_by_query(progress)
    for key, level in results["latency_by_rate"].items():
        print(f"    {key:>5}/s  valid={level['valid']}  bronze {level['bronze_latency_ms']}  gold {level['gold_latency_ms']}")
    reference = results["latency_by_rate"].get(str(REFERENCE_RATE))
    if reference is not None:
        results["offered_events_per_s"] = reference["achieved_events_per_s"]
        results["bronze_latency_ms"] = reference["bronze_latency_ms"]
        results["gold_latency_ms"] = reference["gold_latency_ms"]
    for name, figures in results["batch_ms_by_query"].items():
        trigger = figures["triggerExecution"]
        print(f"    batches of {name:24} p50 {trigger['p50']} ms, p95 {trigger['p95']} ms ({figures['batches_with_input']} with input)")


def plain_number(value: Any) -> Any:
    """numpy scalars as Python numbers in the JSON."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_results(results: dict[str, Any], output: Path) -> None:
    results["targets"] = target_checks(results)
    print_targets(results["targets"])
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2, default=plain_number) + "\n")
    print(f"wrote {output}")
    if results.get("latency_by_rate"):
        picture = output.with_name(f"{output.stem}_latency.png")
        plot_latency(results["latency_by_rate"], picture)
        print(f"drew {picture}")


def main() -> None:
    args = parse_args()
    sizes, rates = numbers(args.backlogs), numbers(args.rates)
    shutil.rmtree(ROOT, ignore_errors=True)
    base = machine_env(ROOT, args.cluster)
    setup = phase(base, ROOT, "setup")
    results: dict[str, Any] = {"machine": {"cores": os.cpu_count(), **machine("start")}}
    results["run"] = {name: str(value) if isinstance(value, Path) else value for name, value in vars(args).items()}
    peaks: dict[str, float] = {}
    began = time.monotonic()
    if args.cluster:
        results["cluster"] = setup.settings.cluster.model_dump()
        cluster.up(setup.settings, load_catalog())
        base[WHEEL] = str(cluster.build_wheel(ROOT / "dist"))
    else:
        kafka.up(setup.settings, load_catalog())
    jobs = Jobs([])
    try:
        jobs = prepare_jobs([j.strip() for j in args.jobs.split(",") if j.strip()], setup.settings, base)
        results["jobs"] = jobs.as_json()
        print(f"jobs: {', '.join(jobs.ran)}" + (f"; skipped {jobs.skipped}" if jobs.skipped else ""))
        if args.raw_records or sizes:
            generated = time.monotonic()
            backlog = generate_backlog(max([*sizes, args.raw_records]), processes=os.cpu_count() or 2)
            print(f"generated a backlog of {len(backlog):,} events in {time.monotonic() - generated:.0f}s")
            if args.raw_records:
                measure_raw_copy(results, base, backlog, args.raw_records)
            measure_backlogs(results, base, backlog, sizes, jobs, args.backlog_timeout, peaks)
            del backlog
        if rates:
            measure_latency(results, base, rates, jobs, args, peaks)
    finally:
        if jobs.cdc_env is not None:
            from lakehouse.ingest import cdc

            cdc.down(setup.settings, cdc.load_cdc_settings(environ=jobs.cdc_env))
        if args.cluster:
            cluster.down(setup.settings)
        else:
            kafka.down(setup.settings)
    results["peak_rss_mb"] = round(max(peaks.values(), default=0))
    results["peak_rss_mb_by_phase"] = {name: round(mb) for name, mb in peaks.items()}
    print(f"(d) peak RSS of the pipeline (driver + JVM): {results['peak_rss_mb']:,} MB")
    results["machine"].update(machine("end"))
    results["bench_seconds"] = round(time.monotonic() - began)
    results["measured_at"] = datetime.now(UTC).isoformat()
    write_results(results, args.output)


if __name__ == "__main__":
    main()

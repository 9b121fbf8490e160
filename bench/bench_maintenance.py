"""Delta upkeep over a long run: do the tables degrade as the pipeline commits every second?

The pipeline (every job of ``trivas demo``, as ``bench_pipeline.py`` starts it) runs on live
generated traffic at a steady rate for ``--minutes``. Every ``--sample-seconds`` the benchmark
reads each table the pipeline writes the way any reader does (delta-rs): its version, its
active data files, the data files on disk and the commits since its last log checkpoint. The
upkeep is the pipeline's own (``spark_jobs/maintenance.py``, ``settings.maintenance``);
``--compact-every`` shortens its compaction period so that a run of minutes sees several
cycles (the run's settings are in the JSON). Commit times come from the hot path's own log
lines (``gold_commit``: the delta-rs append of a batch's KPI rows; ``silver_commit``: the
wait for silver's append), first minutes against last minutes; the maintenance actions and
their durations from the maintenance thread's log lines.

``bench/results/maintenance.json``: ``run`` (options, settings), ``offer`` (the rate actually
delivered), ``timeline`` (per table, per sample), ``tables`` (first → last sample per table),
``commit_ms`` (p50/p95 per part, first vs last ``--window`` minutes), ``maintenance_actions``
(count and p50/max seconds per table and kind), ``machine`` (cores, load) and ``peak_rss_mb``.

Run: ``python bench/bench_maintenance.py`` (30 minutes at 500 events/s by default).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from deltalake import DeltaTable

sys.path.insert(0, str(Path(__file__).parent))
from bench_pipeline import (  # noqa: E402 - the pipeline benchmark's harness, shared
    PipelineRun,
    TopicOf,
    live_traffic,
    machine,
    machine_env,
    percentiles,
    phase,
    prepare_jobs,
    produce,
)

from lakehouse import REPO_ROOT  # noqa: E402
from lakehouse.catalog import catalog as load_catalog  # noqa: E402
from lakehouse.runtime import kafka  # noqa: E402

RESULTS = REPO_ROOT / "bench" / "results" / "maintenance.json"
ROOT = REPO_ROOT / "var" / "bench-maintenance"
HOT_PATH_LINE = re.compile(r"^(\S+ \S+) INFO trivas\.hot_path: hot path batch \d+: .*; (.*)$")
MAINTENANCE_LINE = re.compile(r"trivas\.maintenance: (checkpoint|compact|vacuum) (\S+) at v(\d+) in ([\d.]+)s")
CHUNK_SECONDS = 60  # traffic is generated and offered a minute at a time


def lake_tables(lake: Path) -> list[Path]:
    """Every Delta table under the lake folder."""
    return sorted(p.parent for p in lake.rglob("_delta_log") if p.is_dir())


def table_sample(location: Path) -> dict[str, Any]:
    """What a reader of the table meets now."""
    table = DeltaTable(str(location))
    log = location / "_delta_log"
    last = log / "_last_checkpoint"
    checkpointed = json.loads(last.read_text())["version"] if last.exists() else -1
    return {
        "version": table.version(),
        "active_files": len(table.file_uris()),
        "files_on_disk": sum(1 for _ in location.rglob("*.parquet")),
        "commits_since_checkpoint": table.version() - checkpointed,
    }


class Sampler(threading.Thread):
    """Samples every table every ``every`` seconds until stopped."""

    def __init__(self, lake: Path, every: float) -> None:
        super().__init__(daemon=True)
        self.lake, self.every = lake, every
        self.began = time.monotonic()
        self.timeline: dict[str, list[dict[str, Any]]] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.every):
            at = round(time.monotonic() - self.began)
            for location in lake_tables(self.lake):
                try:
                    sample = table_sample(location)
                except Exception as error:  # noqa: BLE001 - a table mid-creation: next sample
                    sample = {"error": repr(error)[:200]}
                self.timeline.setdefault(str(location.relative_to(self.lake)), []).append({"at_s": at, **sample})


def hot_path_commits(log_text: str) -> list[tuple[float, dict[str, float]]]:
    """(epoch seconds, {part: seconds}) of every hot-path batch in the pipeline log."""
    batches = []
    for line in log_text.splitlines():
        match = HOT_PATH_LINE.match(line)
        if not match:
            continue
        # logging's asctime is local time: only the spacing between lines is used
        at = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC).timestamp()
        parts = {}
        for part in match.group(2).split(", "):
            name, _, seconds = part.rpartition(" ")
            parts[name] = float(seconds.rstrip("s"))
        batches.append((at, parts))
    return batches


def commit_ms(batches: list[tuple[float, dict[str, float]]], window_s: float) -> dict[str, Any]:
    """p50/p95 (ms) of each commit part over the run's first and last ``window_s``."""
    if not batches:
        return {}
    first, last = batches[0][0], batches[-1][0]
    spans = {"first": (first, first + window_s), "last": (last - window_s, last)}
    figures: dict[str, Any] = {}
    for part in ("silver_commit", "gold_commit"):
        figures[part] = {}
        for name, (since, until) in spans.items():
            values = [p[part] * 1000 for at, p in batches if since <= at <= until and part in p]
            figures[part][name] = percentiles(np.array(values), (50, 95))
    return figures


def maintenance_actions(log_text: str) -> dict[str, Any]:
    actions: dict[tuple[str, str], list[float]] = {}
    for match in MAINTENANCE_LINE.finditer(log_text):
        actions.setdefault((match.group(2), match.group(1)), []).append(float(match.group(4)))
    return {
        f"{table} {kind}": {"count": len(s), "p50_s": round(float(np.median(s)), 2), "max_s": round(max(s), 2)}
        for (table, kind), s in sorted(actions.items())
    }


def first_and_last(timeline: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    summary = {}
    for table, samples in timeline.items():
        good = [s for s in samples if "error" not in s]
        if good:
            summary[table] = {"first": good[0], "last": good[-1], "max_active_files": max(s["active_files"] for s in good)}
    return summary


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30, help="how long the traffic runs")
    parser.add_argument("--rate", type=float, default=500, help="offered events/s")
    parser.add_argument("--sample-seconds", type=float, default=30, help="how often the tables are read")
    parser.add_argument("--compact-every", type=float, default=300, help="the pipeline's compaction period (s)")
    parser.add_argument("--window", type=float, default=5, help="minutes compared at the start and the end")
    parser.add_argument("--jobs", default="all", help="the pipeline's jobs ('all': as trivas demo runs them)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    shutil.rmtree(ROOT, ignore_errors=True)
    base = {**machine_env(ROOT), "TRIVAS_MAINTENANCE__COMPACT_EVERY_SECONDS": str(args.compact_every)}
    stage = phase(base, ROOT, "long_run")
    results: dict[str, Any] = {"machine": {"cores": os.cpu_count(), **machine("start")}}
    results["run"] = {**{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                      "maintenance": stage.settings.maintenance.model_dump()}  # fmt: skip
    kafka.up(stage.settings, load_catalog())
    jobs = prepare_jobs([j.strip() for j in args.jobs.split(",") if j.strip()], stage.settings, base)
    results["jobs"] = jobs.as_json()
    sent, first_send, last_send = 0, None, None
    try:
        kafka.ensure_topics(stage.settings, load_catalog())
        with PipelineRun(stage, jobs.ran) as run:
            run.wait_started()
            sampler = Sampler(Path(stage.env["TRIVAS_TABLES__ROOT"]), args.sample_seconds)
            sampler.start()
            deadline = time.time() + args.minutes * 60
            chunk = 0
            while time.time() < deadline:
                run.check_alive()
                seconds = min(CHUNK_SECONDS, deadline - time.time())
                begins = time.time() + args.rate * seconds / 10_000 + 1  # generation ~12k events/s
                records = live_traffic(args.rate, seconds, 100 + chunk, begins)
                offer = produce(records, stage.settings.kafka_bootstrap(), TopicOf(stage.settings.kafka.topic_prefix), 1, args.rate, begins)
                sent += offer.sent
                first_send = offer.first_send if first_send is None else first_send
                last_send = offer.last_send
                chunk += 1
                print(f"    minute {chunk}: {offer.achieved_per_s:,.0f}/s offered; load {os.getloadavg()[0]:.1f}", flush=True)
            time.sleep(args.sample_seconds + 5)  # one more sample after the last traffic
            sampler.stop.set()
            sampler.join()
            results["peak_rss_mb"] = round(run.peak_rss_mb)
    finally:
        if jobs.cdc_env is not None:
            from lakehouse.ingest import cdc

            cdc.down(stage.settings, cdc.load_cdc_settings(environ=jobs.cdc_env))
        kafka.down(stage.settings)
    log_text = "".join(p.read_text(errors="replace") for p in sorted(stage.logs.glob("pipeline*.log")))
    results["offer"] = {"sent": sent, "achieved_events_per_s": round(sent / (last_send - first_send)) if sent else 0}
    results["timeline"] = sampler.timeline
    results["tables"] = first_and_last(sampler.timeline)
    results["commit_ms"] = commit_ms(hot_path_commits(log_text), args.window * 60)
    results["maintenance_actions"] = maintenance_actions(log_text)
    results["machine"].update(machine("end"))
    results["measured_at"] = datetime.now(UTC).isoformat()
    for table, summary in results["tables"].items():
        print(f"{table:28s} v{summary['last']['version']:>6}  active files {summary['first']['active_files']:>5} → "
              f"{summary['last']['active_files']:>5} (max {summary['max_active_files']}), on disk {summary['last']['files_on_disk']}, "
              f"commits since checkpoint {summary['last']['commits_since_checkpoint']}")  # fmt: skip
    print(json.dumps({"commit_ms": results["commit_ms"], "maintenance_actions": results["maintenance_actions"]}, indent=1))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=1, default=float) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

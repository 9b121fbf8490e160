"""Backfill benchmark: its throughput, and live gold freshness with and without it running.

One live pipeline (``trivas pipeline run``, the KPI path's jobs by default) on a private broker
and lake under ``var/bench-backfill``, offered the live rate (500 events/s) twice by
:mod:`bench_pipeline`'s paced producers:

1. without a backfill: the baseline;
2. while ``trivas backfill online-retail`` loads the whole Online Retail year into the same
   lake, as the product runs it: its own Spark application at ``backfill.nice`` on
   ``backfill.cores`` cores within ``backfill.events_per_second`` (conf/base.yaml).

Gold freshness is :mod:`bench_pipeline`'s event → ``gold.kpi`` latency (the first gold commit
whose count for an event's window reaches its rank), over the part of each level after its
warm-up (and, for the second, while the backfill process was alive). The figures in
``bench/results/backfill.json``:

``backfill_events_per_s``
    raw records the backfill judged per second of its process's life (JVM start and the
    file's read included), ``backfill_chunk_events_per_s`` per second of chunk work;
``live_gold_p95_ms_without_backfill``, ``live_gold_p95_ms_during_backfill``
    p95 event → gold latency of the live traffic (plus p50/p99 and what gold had not shown);
``targets``
    the issue's: live p95 during the backfill ≤ 2 × without, and within the KPI's freshness
    SLA (``orders``: conf/kpis.yaml); printed, never asserted;
``machine``
    cores and load average at start and end (the machine is shared: figures from a busy one
    mean little), and the options of the run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import bench_pipeline as live  # noqa: E402
from deltalake import DeltaTable  # noqa: E402

from lakehouse import REPO_ROOT  # noqa: E402
from lakehouse.catalog import catalog as load_catalog  # noqa: E402
from lakehouse.contracts import contracts  # noqa: E402
from lakehouse.registry import BACKFILLS  # noqa: E402
from lakehouse.runtime import kafka  # noqa: E402
from lakehouse.tables import has_commits, table_location  # noqa: E402
from models.evaluation import SHARED_DATA  # noqa: E402

ROOT = REPO_ROOT / "var" / "bench-backfill"
RESULTS = REPO_ROOT / "bench" / "results" / "backfill.json"
FRESHNESS_KPI = "orders"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--retail", type=Path, default=SHARED_DATA / "online-retail" / "online_retail.csv.gz")
    parser.add_argument("--since", help="backfill only invoices from (ISO date; smoke runs); default: the whole year")
    parser.add_argument("--until", help="backfill only invoices until, excluded")
    parser.add_argument("--rate", type=float, default=500, help="live events/s offered in both levels")
    parser.add_argument("--level-seconds", type=float, default=90, help="how long each level is offered")
    parser.add_argument("--level-warmup", type=float, default=10, help="first seconds of a level left out")
    parser.add_argument("--settle-timeout", type=float, default=120, help="seconds to wait for gold after a level")
    parser.add_argument("--producer-rate", type=float, default=2000, help="events/s one producer process is asked for")
    parser.add_argument("--jobs", default="bronze,silver_gold", help="the live pipeline's --jobs (the KPI path by default)")
    parser.add_argument("--backfill-timeout", type=float, default=900, help="seconds to wait for the backfill to end (then it is stopped; its ledger says what it did)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    return parser.parse_args()


def ledger(settings) -> list[dict[str, Any]]:  # noqa: ANN001
    location = table_location(settings, BACKFILLS)
    return DeltaTable(location).to_pyarrow_table().to_pylist() if has_commits(location) else []


def latency(stage: live.Phase, offer: live.Offer, since: float, until: float) -> dict[str, Any]:
    """Event → gold latency percentiles of the live records sent in ``[since, until]``."""
    gold = live.gold_arrivals(stage.settings, load_catalog())
    measured = gold.latency_ms(since, until)
    _, tracked = offer.sent_between(since, until)
    unseen = max(0, tracked - len(measured))
    return {
        "achieved_events_per_s": round(offer.achieved_per_s), "valid": offer.valid,
        "measured_s": round(until - since, 1), "gold_latency_ms": live.percentiles(measured, unseen=unseen),
        "gold_unseen": unseen,
    }  # fmt: skip


class BackfillProcess:
    """``trivas backfill online-retail`` in its own process group, as an operator starts it."""

    def __init__(self, stage: live.Phase, retail: Path, since: str | None, until: str | None) -> None:
        self.command = [sys.executable, "-m", "lakehouse.cli", "backfill", "online-retail", str(retail)]
        self.command += [*(["--since", since] if since else []), *(["--until", until] if until else [])]
        self.log = stage.logs / "backfill.log"
        with self.log.open("ab") as out:
            self.started = time.time()
            self.process = subprocess.Popen(
                self.command, env={**os.environ, **stage.env}, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.ended: float | None = None

    def alive(self) -> bool:
        if self.process.poll() is None:
            return True
        self.ended = self.ended or time.time()
        return False

    def wait(self, timeout_s: float) -> int | None:
        """Its exit code; None when it had not finished within ``timeout_s`` and was stopped
        (its ledger still says what it completed)."""
        try:
            code: int | None = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            code = None
        self.ended = self.ended or time.time()
        return code


def main() -> None:
    args = parse_args()
    if not args.retail.exists():
        raise SystemExit(f"the Online Retail file is not at {args.retail}: give --retail PATH")
    shutil.rmtree(ROOT, ignore_errors=True)
    base = live.machine_env(ROOT)
    stage = live.phase(base, ROOT, "live")
    results: dict[str, Any] = {"machine": {"cores": os.cpu_count(), **live.machine("start")}}
    results["run"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    results["backfill_settings"] = stage.settings.backfill.model_dump()
    # The live pipeline runs at this process's nice; the backfill lowers its own and its
    # session's autogroup (lakehouse.cli.lower_priority), which is what ranks it below the
    # pipeline when the whole benchmark runs under `nice -n 19` on a shared machine.
    results["machine"]["nice"] = {"bench_and_pipeline": os.nice(0), "backfill": stage.settings.backfill.nice,
                                  "autogroup_scheduling": Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip()
                                  if Path("/proc/sys/kernel/sched_autogroup_enabled").exists() else None}  # fmt: skip
    began = time.monotonic()
    kafka.up(stage.settings, load_catalog())
    jobs = live.Jobs([j.strip() for j in args.jobs.split(",") if j.strip()])
    try:
        kafka.ensure_topics(stage.settings, load_catalog())
        with live.PipelineRun(stage, jobs.ran) as run:
            run.wait_started()
            time.sleep(args.level_warmup)
            print(f"(a) {args.rate:,.0f} events/s live, no backfill")
            quiet = live.offer_level(stage, jobs, args.rate, args.level_seconds, 10, args.producer_rate)
            sent, sessions = quiet.offer.sent, quiet.offer.sessions
            live.wait_until_counted(stage.settings, run, sent, sessions, args.settle_timeout)

            print(f"(b) {args.rate:,.0f} events/s live while the Online Retail year is backfilled")
            backfill = BackfillProcess(stage, args.retail, args.since, args.until)
            busy = live.offer_level(stage, jobs, args.rate, args.level_seconds, 11, args.producer_rate)
            live.wait_until_counted(stage.settings, run, sent + busy.offer.sent, sessions + busy.offer.sessions, args.settle_timeout)
            backfill_alive_until = time.time() if backfill.alive() else backfill.ended
            code = backfill.wait(args.backfill_timeout)
            results["without_backfill"] = latency(stage, quiet.offer, quiet.offer.first_send + args.level_warmup, quiet.offer.last_send)
            overlap = (max(busy.offer.first_send + args.level_warmup, backfill.started), min(busy.offer.last_send, backfill_alive_until or busy.offer.last_send))
            results["during_backfill"] = latency(stage, busy.offer, *overlap)
    finally:
        kafka.down(stage.settings)
    chunks = ledger(stage.settings)
    records = sum(c["records"] for c in chunks)
    lifetime = (backfill.ended or time.time()) - backfill.started
    first_done = min((c["completed_at"] for c in chunks), default=None)
    last_done = max((c["completed_at"] for c in chunks), default=None)
    results["backfill"] = {
        "exit_code": code, "command": " ".join(backfill.command[1:]), "records": records, "chunks": len(chunks),
        "silver_added": sum(c["silver_added"] for c in chunks), "quarantined_added": sum(c["quarantined_added"] for c in chunks),
        "gold_restated": sum(c["gold_restated"] for c in chunks), "process_seconds": round(lifetime, 1),
        "first_to_last_chunk_s": round((last_done - first_done).total_seconds(), 1) if first_done and last_done else None,
    }  # fmt: skip
    results["backfill"]["completed"] = code == 0
    results["backfill_events_per_s"] = round(records / lifetime, 1) if lifetime > 0 else None
    quiet_p95 = results["without_backfill"]["gold_latency_ms"]["p95"]
    busy_p95 = results["during_backfill"]["gold_latency_ms"]["p95"]
    results["live_gold_p95_ms_without_backfill"] = quiet_p95
    results["live_gold_p95_ms_during_backfill"] = busy_p95
    sla_ms = contracts()[FRESHNESS_KPI].freshness_sla.total_seconds() * 1000
    results["targets"] = {
        "during_within_2x_without": {"target": "≤ 2 ×", "met": None if quiet_p95 is None or busy_p95 is None else busy_p95 <= 2 * quiet_p95},
        "during_within_sla": {"target_ms": sla_ms, "kpi": FRESHNESS_KPI, "met": None if busy_p95 is None else busy_p95 <= sla_ms},
    }  # fmt: skip
    results["machine"].update(live.machine("end"))
    results["bench_seconds"] = round(time.monotonic() - began)
    results["measured_at"] = datetime.now(UTC).isoformat()
    print(f"backfill: {records:,} records in {lifetime:.0f}s = {results['backfill_events_per_s']} events/s (exit {code})")
    print(f"live gold p95: {quiet_p95} ms without, {busy_p95} ms during the backfill; targets {results['targets']}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=live.plain_number) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

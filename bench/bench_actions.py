"""Trigger → proposal latency (the act job in Spark) and approval → execution latency (the worker).

    .venv/bin/python bench/bench_actions.py [--rounds 10] [--poll 1.0] [--trigger 1.0]

A fresh deployment in a temporary folder. Trigger → proposal: the real ``act`` query runs on
a local Spark session (trigger ``--trigger`` seconds) over ``silver.events``; each round
appends one commit of ad-cost rows of a new campaign that spends without any order (the
``idle_campaign_spend`` rule fires for it), and the figure is the time from that Delta commit
to the proposal's row in ``ops.action_requests`` (read with delta-rs, polled every 50 ms).
Approval → execution: the worker polls every ``--poll`` seconds against the sandbox platform
(a real HTTP service); each proposal is approved at a random phase of the poll, and the figure
is the time from the approval's commit to the ``executed`` row of ``ops.audit_log`` (which is
written after the platform answered); the platform's own HTTP call time is reported beside it.

Writes ``bench/results/actions.json`` and prints the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

POLICY = """
platform: {{timeout: 3s, attempts: 3, backoff: 100ms}}
worker: {{poll: {poll}s}}
evaluation: {{trigger: {trigger}s}}
policies:
  - name: pause-idle-campaign
    trigger: {{kind: rule, rule: idle_campaign_spend, min_spend: 5, window: 30m}}
    action: pause_campaign
    target: {{match: "cmp-*"}}
    approval: required
    approval_expiry: 1h
    cooldown: 0s
    limits: {{max_per_hour: 10000, max_share_per_day: 1.0}}
"""


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50": round(statistics.median(ordered), 1), "p95": round(pick(0.95), 1), "max": round(ordered[-1], 1), "n": len(ordered)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--poll", type=float, default=1.0)
    parser.add_argument("--trigger", type=float, default=1.0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "actions.json"))
    args = parser.parse_args()

    from lakehouse.actions.config import parse_actions_config
    from lakehouse.actions.sandbox import PlatformState, SandboxServer
    from lakehouse.actions.store import APPROVE, CommandLog, audit_log, requests_log
    from lakehouse.actions.worker import ActionWorker
    from lakehouse.catalog import catalog as load_catalog
    from lakehouse.config import load_settings
    from lakehouse.registry import SILVER_EVENTS, silver_events_schema
    from lakehouse.runtime.spark import get_spark
    from lakehouse.tables import ensure_declared
    from spark_jobs import act
    from spark_jobs.io import append_idempotent

    rng = random.Random(5)
    base = Path(tempfile.mkdtemp(prefix="trivas-bench-actions-"))
    accounts = base / "accounts.yaml"
    accounts.write_text(yaml.safe_dump({"accounts": {"april": {"role": "approver"}}}))
    raw = yaml.safe_load(POLICY.format(poll=args.poll, trigger=args.trigger))
    config = parse_actions_config({**raw, "accounts_file": str(accounts)})
    settings = load_settings("test", environ={"TRIVAS_PATHS__VAR": str(base / "var"), "TRIVAS_TABLES__ROOT": str(base / "lake"),
                                              "TRIVAS_TABLES__CHECKPOINTS": str(base / "checkpoints")})  # fmt: skip
    catalog = load_catalog()
    spark = get_spark(settings, app_name="trivas-bench-actions")
    ensure_declared(spark, settings, SILVER_EVENTS)
    schema = silver_events_schema(catalog)
    names = schema.fieldNames()
    campaigns = [f"cmp-{100 + i}" for i in range(args.rounds)]

    def commit_idle_spend(round_: int) -> float:
        at = datetime.now(UTC).replace(tzinfo=None)  # Spark takes naive datetimes in the session zone (UTC)
        row = {"event_id": str(uuid.uuid4()), "event_type": "ad_cost", "schema_version": 1, "event_time": at, "source": "bench",
               "sent_at": at, "domain": "ads", "campaign_id": campaigns[round_], "channel": "search", "amount": 50.0,
               "currency": "EUR", "impressions": 1000, "kafka_topic": "raw.ads", "kafka_partition": 0,
               "kafka_offset": round_, "ingested_at": at}  # fmt: skip
        frame = spark.createDataFrame([tuple(row.get(n) for n in names)], schema)
        append_idempotent(frame, settings, SILVER_EVENTS, "bench_silver", round_)
        return time.time()

    trigger_ms: list[float] = []
    query = act.run(spark, settings, catalog, config=config)[0]
    proposals = requests_log(settings)
    try:
        for round_ in range(args.rounds):
            committed = commit_idle_spend(round_)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                frame = proposals.read()
                if campaigns[round_] in set(frame["target"]):
                    trigger_ms.append((time.time() - committed) * 1000)
                    break
                time.sleep(0.05)
            time.sleep(rng.uniform(0.1, args.trigger))
    finally:
        query.stop()

    with SandboxServer(state=PlatformState(campaigns={c: {"campaign_id": c, "status": "active", "bid": 1.0, "channel": "search"} for c in campaigns})) as sandbox:
        worker = ActionWorker(settings, config, platform_url=sandbox.url)
        stop = threading.Event()
        loop = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        loop.start()
        commands, audit = CommandLog(settings), audit_log(settings)
        execution_ms: list[float] = []
        for request_id in proposals.read()["request_id"]:
            time.sleep(rng.uniform(0, args.poll))
            commands.add(APPROVE, "april", "approver", request_id, "bench")
            approved = time.time()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                rows = audit.read()
                done = rows[(rows["request_id"] == request_id) & (rows["event"] == "executed")]
                if len(done):
                    execution_ms.append((time.time() - approved) * 1000)
                    break
                time.sleep(0.02)
        stop.set()
        loop.join()
        worker.close()
        http_ms = []
        rows = audit.read()
        for request_id in rows["request_id"].dropna().unique():
            steps = rows[rows["request_id"] == request_id].set_index("event")["recorded_at"]
            if {"executing", "executed"} <= set(steps.index):
                http_ms.append((steps["executed"] - steps["executing"]) / timedelta(milliseconds=1))
    spark.stop()
    result = {
        "trigger_to_proposal_ms": percentiles(trigger_ms),
        "approval_to_executed_ms": percentiles(execution_ms),
        "executing_to_executed_ms": percentiles(http_ms),
        "rounds": args.rounds,
        "act_trigger_s": args.trigger,
        "worker_poll_s": args.poll,
        "note": "trigger: silver.events commit -> proposal row (act query on local Spark); execution: approval commit -> executed audit row "
                "(worker poll + decision commit + state read + executing commit + HTTP call to the sandbox + executed commit)",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg": os.getloadavg()},
        "measured_at": datetime.now(UTC).isoformat(),
    }  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""Time from an alert row in ``gold.alerts`` to its delivery, per receiver.

    .venv/bin/python bench/bench_alerts.py [--alerts 40] [--poll 1.0]

A fresh deployment in a temporary folder, the playground's local receivers (a real aiosmtpd
SMTP server and the webhook inbox standing in for Slack, PagerDuty and a signed webhook) and
the router in its own thread, polling every ``--poll`` seconds (``poll_interval`` of
``conf/alerts.yaml``, 1 s). Each alert is one new Delta version of ``gold.alerts`` (as a
detect MERGE commits it), written at a random phase of the poll; its delivery time is when
the receiver's answer came back (HTTP 2xx, SMTP 250). Grouping waits are set to 0 here: the
figure is the router's own latency (poll + read + route + the ``sending`` commit + send), to
which a route adds its ``group_wait`` (30 s by default, as Alertmanager).

Writes ``bench/results/alerts.json`` (key ``alert_delivery_ms``) and prints the figures.
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
from datetime import UTC, datetime
from pathlib import Path

import yaml

BENCH_CONFIG = """
receivers:
  email: {type: email, smtp_host_env: TRIVAS_ALERTS_SMTP_HOST, smtp_port_env: TRIVAS_ALERTS_SMTP_PORT, to: [oncall@trivas.example]}
  slack: {type: slack, url_env: TRIVAS_ALERTS_SLACK_URL}
  pagerduty: {type: pagerduty, url_env: TRIVAS_ALERTS_PAGERDUTY_URL, routing_key_env: TRIVAS_ALERTS_PAGERDUTY_ROUTING_KEY}
  webhook: {type: webhook, url_env: TRIVAS_ALERTS_WEBHOOK_URL, secret_env: TRIVAS_ALERTS_WEBHOOK_SECRET}
route:
  receivers: [email, slack, pagerduty, webhook]
  group_by: [dimension]
  group_wait: 0s
"""


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)  # noqa: E731
    return {"p50": pick(0.5), "p95": pick(0.95), "max": round(ordered[-1], 1), "mean": round(statistics.fmean(ordered), 1), "n": len(ordered)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alerts", type=int, default=40)
    parser.add_argument("--poll", type=float, default=1.0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "alerts.json"))
    args = parser.parse_args()

    from deltalake import write_deltalake

    from lakehouse.alerts.config import parse_config
    from lakehouse.alerts.lifecycle import ALERTS_SCHEMA, ALERTS_TABLE, FIRING, Alert, alert_id
    from lakehouse.alerts.local_receivers import apply_environment, start_local_receivers
    from lakehouse.alerts.router import AlertRouter
    from lakehouse.alerts.store import arrow_schema
    from lakehouse.config import load_settings
    from lakehouse.contracts import contracts
    from lakehouse.tables import table_location

    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings("local", environ={"TRIVAS_PATHS__VAR": f"{folder}/var", "TRIVAS_TABLES__ROOT": f"{folder}/lake",
                                                   "TRIVAS_TABLES__CHECKPOINTS": f"{folder}/checkpoints"})  # fmt: skip
        receivers = start_local_receivers(Path(folder) / "inbox.jsonl")
        apply_environment(receivers)
        committed: dict[str, float] = {}
        latencies: dict[str, list[float]] = {}
        lock = threading.Lock()

        def delivered(notification, at: float) -> None:  # noqa: ANN001
            with lock:
                for item in notification.items:
                    latencies.setdefault(notification.receiver, []).append((at - committed[item.alert_id]) * 1000)

        router = AlertRouter(settings, contracts(), parse_config(yaml.safe_load(BENCH_CONFIG)), on_delivered=delivered)
        stop = threading.Event()
        loop = threading.Thread(target=router.run, args=(stop, args.poll), daemon=True)
        loop.start()
        rows = []
        rng = random.Random(7)
        location = table_location(settings, ALERTS_TABLE)
        for i in range(args.alerts):
            now = datetime.now(UTC)
            alert = Alert(alert_id("orders", "1m", f"bench={i}", "anomaly_model", now), "orders", "1m", now, now, f"bench={i}",
                          3.0, 41.5, 30.2, 52.8, 7.9, 0.97, "1", "anomaly_model", FIRING, now, now)  # fmt: skip
            rows.append(dict(zip(ALERTS_SCHEMA.fieldNames(), alert.as_row(), strict=True)))
            import pyarrow as pa

            write_deltalake(location, pa.Table.from_pylist(rows, schema=arrow_schema(ALERTS_SCHEMA)), mode="overwrite")
            with lock:
                committed[alert.alert_id] = time.time()
            time.sleep(rng.uniform(0.2, 1.2))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sum(len(v) for v in latencies.values()) < 4 * args.alerts:
            time.sleep(0.2)
        stop.set()
        loop.join()
        router.close()
        receivers.stop()
    everything = [ms for values in latencies.values() for ms in values]
    result = {
        "alert_delivery_ms": percentiles(everything),
        "per_receiver_ms": {name: percentiles(values) for name, values in sorted(latencies.items())},
        "alerts": args.alerts,
        "poll_interval_s": args.poll,
        "group_wait_s": 0,
        "note": "alert row committed to gold.alerts -> receiver's answer (local SMTP and HTTP receivers); a route's group_wait comes on top",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg": os.getloadavg()},
        "measured_at": datetime.now(UTC).isoformat(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

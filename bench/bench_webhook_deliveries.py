"""Size and latency of the webhook delivery store (``lakehouse.ingest.webhook_deliveries``).

    .venv/bin/python bench/bench_webhook_deliveries.py [--rows 400000]

Fills a fresh store with ``--rows`` delivered event ids (claim + mark done, one SQLite
transaction each, as the collector does), then measures on the full store: a new delivery's
claim + mark, a duplicate's claim (the redelivery answer), and the file size per row. The
default, 400,000 rows, is four days of Stripe retention at 100,000 webhook events a day.

Writes ``bench/results/webhook_deliveries.json`` and prints the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from lakehouse.ingest.webhook_deliveries import WebhookDeliveries

RETENTION_S = 4 * 86400.0


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6, 1)  # noqa: E731
    return {"p50_us": pick(0.5), "p95_us": pick(0.95), "p99_us": pick(0.99), "mean_us": round(statistics.fmean(ordered) * 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--samples", type=int, default=5_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = WebhookDeliveries(Path(folder) / "deliveries.sqlite")
        started = time.perf_counter()
        for _ in range(args.rows):
            event_id = str(uuid.uuid4())
            claim = store.claim(event_id, "stripe", RETENTION_S)
            store.mark_done(event_id, claim.token or "", "accepted")
        fill_s = time.perf_counter() - started
        new, duplicate = [], []
        known = []
        for _ in range(args.samples):
            event_id = str(uuid.uuid4())
            t0 = time.perf_counter()
            claim = store.claim(event_id, "stripe", RETENTION_S)
            store.mark_done(event_id, claim.token or "", "accepted")
            new.append(time.perf_counter() - t0)
            known.append(event_id)
        for event_id in known:
            t0 = time.perf_counter()
            store.claim(event_id, "stripe", RETENTION_S)
            duplicate.append(time.perf_counter() - t0)
        store.close()
        files = [p for p in Path(folder).iterdir() if p.name.startswith("deliveries.sqlite")]
        size = sum(p.stat().st_size for p in files)
        rows = args.rows + args.samples
    result = {
        "rows": rows,
        "store_bytes": size,
        "bytes_per_row": round(size / rows, 1),
        "fill_rows_per_s": round(args.rows / fill_s),
        "new_delivery_claim_and_mark": percentiles(new),
        "duplicate_claim": percentiles(duplicate),
        "machine": {"cpus": os.cpu_count(), "load_1m": os.getloadavg()[0], "python": platform.python_version()},
    }
    out = Path(__file__).parent / "results" / "webhook_deliveries.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

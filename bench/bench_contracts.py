"""What a transition window costs the record rules, and what a contract diff costs.

    .venv/bin/python bench/bench_contracts.py [--records 20000] [--repeats 5]

The rules (:class:`lakehouse.event_contract.RecordRules`: ``check`` then ``canonical``, what the
collector runs per event and silver's judge runs per record) on ``order_placed`` records:

1. ``rules_us_per_record.single_version``: the project's catalog (version 1 only);
2. ``…window_current``: a catalog in transition (version 3, versions 2..3 accepted, a field
   renamed with an alias, a field required since 3), records of version 3;
3. ``…window_previous``: the same catalog, records of version 2 (the old field name, resolved
   through the alias and rewritten by ``canonical``; the field required since 3 absent).

And ``diff_ms``: ``diff_catalogs`` between the project's catalog and the transition one (both
already loaded), and ``load_git_revision_ms``: loading the catalog at ``HEAD`` through
``git archive``. Medians of ``--repeats`` runs. Writes ``bench/results/contracts.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from lakehouse import REPO_ROOT
from lakehouse.catalog import CATALOG_DIR, Catalog, load_catalog
from lakehouse.contract_diff import diff_catalogs, load_catalog_at
from lakehouse.event_contract import RecordRules

ARRIVAL = datetime(2026, 11, 30, 12, 0, 5, tzinfo=UTC)


def transition_catalog(folder: Path) -> Catalog:
    """order_placed at version 3, accepting 2..3: session_id renamed visit_id, channel since 3."""
    shutil.copytree(CATALOG_DIR, folder)
    path = folder / "order_placed.yaml"
    doc = yaml.safe_load(path.read_text())
    fields = [{**f, "name": "visit_id", "aliases": ["session_id"]} if f["name"] == "session_id" else f for f in doc["fields"]]
    fields.append({"name": "channel", "type": "string", "required": True, "since": 3, "allowed": ["web", "app"]})
    path.write_text(yaml.safe_dump({**doc, "version": 3, "oldest_accepted_version": 2, "fields": fields}, sort_keys=False))
    return load_catalog(folder)


def orders(n: int, version: int, **extra: object) -> list[dict]:
    at = (ARRIVAL - timedelta(seconds=3)).isoformat()
    return [
        {"event_id": str(uuid.uuid4()), "event_type": "order_placed", "schema_version": version, "event_time": at,
         "source": "bench", "payload": {"order_id": f"o-{i}", "customer_id": "c-1", "amount": 12.5, "currency": "EUR",
                                        "country": "DE", "items": [{"sku": "s", "quantity": 1, "unit_price": 12.5}], **extra}}
        for i in range(n)
    ]  # fmt: skip


def rules_cost_us(catalog: Catalog, records: list[dict], repeats: int) -> float:
    """Median µs per record of check + canonical (every record must pass)."""
    rules = RecordRules(catalog)
    runs = []
    for _ in range(repeats):
        batch = copy.deepcopy(records)
        start = time.perf_counter()
        for record in batch:
            if rules.check(record, ARRIVAL) is not None:
                raise AssertionError(f"refused: {rules.check(record, ARRIVAL)}")
            rules.canonical(record)
        runs.append((time.perf_counter() - start) / len(batch) * 1e6)
    return round(statistics.median(runs), 2)


def median_ms(fn, repeats: int) -> float:  # noqa: ANN001
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(runs), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "contracts.json")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="trivas-bench-contracts-"))
    try:
        current = load_catalog(CATALOG_DIR)
        proposed = transition_catalog(folder / "events")
        costs = {
            "single_version": rules_cost_us(current, orders(args.records, 1, session_id="s"), args.repeats),
            "window_current": rules_cost_us(proposed, orders(args.records, 3, visit_id="s", channel="web"), args.repeats),
            "window_previous": rules_cost_us(proposed, orders(args.records, 2, session_id="s"), args.repeats),
        }
        result = {
            "rules_us_per_record": costs,
            "rules_records_per_s": {k: round(1e6 / v) for k, v in costs.items()},
            "diff_ms": median_ms(lambda: diff_catalogs(current, proposed), args.repeats),
            "load_git_revision_ms": median_ms(lambda: load_catalog_at("HEAD"), args.repeats),
            "records": args.records,
            "repeats": args.repeats,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "load_average_1m_at_end": round(os.getloadavg()[0], 2)},
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

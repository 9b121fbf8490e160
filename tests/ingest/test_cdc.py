"""CDC end to end with the real tools: PostgreSQL → Debezium on Kafka Connect → Kafka → silver.

One stack per module (a broker, a private PostgreSQL cluster and a Connect worker on free ports,
everything under a temporary folder); the tests run in file order and share the shop database.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from lakehouse.catalog import load_catalog
from lakehouse.config import Settings, hash_key, load_settings
from lakehouse.ingest import cdc
from lakehouse.privacy import apply_pii_policy, pseudonymise
from lakehouse.runtime.processes import free_port, wait_until

ORDERS = "public.orders"
INVENTORY = "public.inventory"


@dataclass
class Stack:
    settings: Settings
    cdc: cdc.CdcSettings
    env: dict[str, str]
    base: Path


def _settings_env(base: Path, broker_env: dict[str, str]) -> dict[str, str]:
    return {
        **broker_env,
        "TRIVAS_PATHS__LOGS": str(base / "logs"),
        "TRIVAS_PATHS__VAR": str(base / "var"),
        "TRIVAS_TABLES__ROOT": str(base / "lake"),
        "TRIVAS_TABLES__CHECKPOINTS": str(base / "checkpoints"),
        "TRIVAS_KAFKA__PARTITIONS": "2",
    }


@pytest.fixture(scope="module")
def stack(broker_env: dict[str, str]) -> Iterator[Stack]:
    """The shop database and Connect worker, on the session's broker."""
    # Not tmp_path: pytest's folder is 0700 root, and PostgreSQL runs as its own OS user.
    base = Path(tempfile.mkdtemp(prefix="trivas-cdc-test-"))
    base.chmod(0o755)
    env = _settings_env(base, broker_env)
    settings = load_settings("test", environ=env)
    config = cdc.load_cdc_settings(
        environ={
            "TRIVAS_CDC__PG_PORT": str(free_port()),
            "TRIVAS_CDC__CONNECT_PORT": str(free_port()),
            "TRIVAS_CDC__PG_DATA_DIR": str(base / "postgres"),
            "TRIVAS_CDC__CONNECT_DIR": str(base / "connect"),
        }
    )
    try:
        cdc.start_postgres(settings, config)
        cdc.provision(settings, config)
        yield Stack(settings, config, env, base)
    finally:
        cdc.down(settings, config)
        if os.environ.get("TRIVAS_KEEP_TEST_DIRS") != "1":
            shutil.rmtree(base, ignore_errors=True)


def _shop(stack: Stack) -> cdc.ShopDatabase:
    return cdc.ShopDatabase.connect(stack.settings, stack.cdc)


def _consume_all(stack: Stack) -> list[tuple[str, bytes | None, bytes | None]]:
    """Every record on the CDC topics, from the beginning."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        *stack.cdc.topics(),
        bootstrap_servers=stack.settings.kafka_bootstrap(),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1500,
    )
    try:
        return [(m.topic, m.key, m.value) for m in consumer]
    finally:
        consumer.close()


def _wait_for_cdc(stack: Stack, lsn_floor: int, timeout_s: float = 60) -> None:
    """Wait until a change at or past ``lsn_floor`` is on the topics."""

    def arrived() -> bool:
        lsns = [json.loads(v)["source"]["lsn"] for _, _, v in _consume_all(stack) if v]
        return bool(lsns) and max(lsns) >= lsn_floor

    wait_until(arrived, timeout_s, f"CDC changes up to LSN {lsn_floor}")


def _mirror_equals_source(spark, stack: Stack, settings: Settings | None = None) -> None:  # noqa: ANN001
    from pyspark.testing import assertDataFrameEqual

    from lakehouse.tables import read_table
    from spark_jobs import cdc as job

    settings = settings or stack.settings
    with _shop(stack) as shop:
        for name in stack.cdc.tables:
            table = cdc.MIRRORED_TABLES[name]
            # The mirror holds the source under the catalog's PII policy, nothing in clear.
            expected = apply_pii_policy(
                spark.createDataFrame(shop.rows(name), job.row_schema(table)),
                table.pii_classes(load_catalog()), hash_key(settings), settings.privacy.hash_key_id,
            )  # fmt: skip
            actual = job.current_rows(read_table(spark, settings, table.silver), table)
            assertDataFrameEqual(actual, expected)


def _run_job(spark, settings: Settings, config: cdc.CdcSettings) -> None:  # noqa: ANN001
    from spark_jobs import cdc as job

    query = job.run(spark, settings, available_now=True, cdc=config)
    query.awaitTermination(timeout=240)
    assert query.exception() is None


@pytest.mark.integration
@pytest.mark.slow
def test_snapshot_then_inserts_updates_deletes_mirror_the_source(spark, stack: Stack) -> None:
    with _shop(stack) as shop:
        # Rows that exist before the connector starts: they arrive as a snapshot (op=r).
        for i in range(20):
            shop.set_stock(f"sku-{i}", "main", 100 + i)
            shop.set_stock(f"sku-{i}", "east", 50)
        for i in range(10):
            shop.place_order(f"o-{i}", f"c-{i % 3}", Decimal("10.25") * (i + 1), "EUR",
                             items={f"sku-{i}": 1})  # fmt: skip
        shop.delete_order("o-9")  # gone before the snapshot: never mirrored

    started = time.monotonic()
    cdc.start_connect(stack.settings, stack.cdc)
    with _shop(stack) as shop:
        snapshot_lsn = shop.current_lsn()
    expected_snapshot = 40 + 9

    def snapshot_done() -> bool:
        ops = [json.loads(v)["op"] for _, _, v in _consume_all(stack) if v]
        return ops.count("r") >= expected_snapshot

    wait_until(snapshot_done, 60, "the initial snapshot on the topics")
    print(f"\nconnect start → snapshot of {expected_snapshot} rows on Kafka: "
          f"{time.monotonic() - started:.1f}s")  # fmt: skip
    assert snapshot_lsn > 0

    with _shop(stack) as shop:
        shop.place_order("o-20", "c-1", "99.90", "USD", items={"sku-1": 2, "sku-2": 1})
        shop.set_order_status("o-1", "paid")
        shop.set_order_status("o-1", "shipped")
        shop.cancel_order("o-2", items={"sku-2": 1})
        shop.delete_order("o-3")
        shop.place_order("o-3", "c-9", "1.00", "GBP")  # same key again after its delete
        shop.delete_order("o-4")
        shop.remove_stock_item("sku-5", "east")
        shop.adjust_stock("sku-new", "main", 7)  # insert through the upsert
        # The playground's hook: catalog events written as the shop's database would.
        placed = {"event_type": "order_placed", "event_time": "2026-11-28T04:00:00.000001+00:00",
                  "payload": {"order_id": "o-gen", "customer_id": "c-7", "amount": 12.3,
                              "currency": "EUR"}}  # fmt: skip
        assert shop.apply_event(placed) and shop.apply_event(placed)  # a duplicate is harmless
        assert shop.apply_event({"event_type": "payment_authorized",
                                 "payload": {"order_id": "o-gen"}})  # fmt: skip
        assert shop.apply_event({"event_type": "inventory_adjusted",
                                 "payload": {"sku": "sku-3", "warehouse": "main", "delta": -1,
                                             "stock_after": 42, "reason": "sale"}})  # fmt: skip
        assert not shop.apply_event({"event_type": "page_view", "payload": {}})
        with shop.transaction() as cur:  # several changes of one row in one transaction
            for _ in range(3):
                cur.execute("UPDATE inventory SET quantity = quantity - 1, updated_at = now() "
                            "WHERE sku = 'sku-7' AND warehouse = 'main'")  # fmt: skip
        with shop.transaction() as cur:  # a multi-row update
            cur.execute("UPDATE orders SET status = 'archived', updated_at = now() "
                        "WHERE customer_id = 'c-0' AND status = 'placed'")  # fmt: skip
        last = shop.current_lsn()
        shop.set_stock("sku-0", "main", 1)
    _wait_for_cdc(stack, last)

    _run_job(spark, stack.settings, stack.cdc)
    _mirror_equals_source(spark, stack)

    from lakehouse.tables import read_table

    orders = read_table(spark, stack.settings, "silver.shop_orders")
    # Issue 10 #5: customer_id is tokenized as in silver.orders (so the two join), never clear.
    key, key_id = hash_key(stack.settings), stack.settings.privacy.hash_key_id
    customers = {r.order_id: r.customer_id for r in orders.collect()}
    assert customers["o-gen"] == pseudonymise("c-7", "tokenize", key, key_id)
    assert not {c for c in customers.values() if c is not None and not c.startswith("tok_")}
    deleted = {r.order_id for r in orders.where("_deleted").collect()}
    assert deleted == {"o-4"}  # o-3 came back; o-9 was deleted before the snapshot
    assert orders.where("order_id = 'o-gen'").first().status == "paid"
    ops = {r._op for r in orders.collect()}
    assert {"r", "c", "u", "d"} <= ops


def _write_traffic(stack: Stack, stop: threading.Event, seed: int) -> int:
    """Random orders and stock moves until ``stop``; returns the number of transactions."""
    rng = random.Random(seed)
    done = 0
    with _shop(stack) as shop:
        while not stop.is_set():
            choice = rng.random()
            sku = f"sku-{rng.randrange(12)}"
            if choice < 0.35:
                shop.adjust_stock(sku, rng.choice(["main", "east"]), rng.randint(-3, 5))
            elif choice < 0.6:
                order_id = f"t{seed}-{done}"
                shop.place_order(order_id, f"c-{rng.randrange(5)}", f"{rng.uniform(1, 500):.2f}",
                                 "EUR", items={sku: rng.randint(1, 3)})  # fmt: skip
            elif choice < 0.85:
                shop.set_order_status(f"t{seed}-{rng.randrange(max(done, 1))}",
                                      rng.choice(["paid", "shipped", "refunded"]))  # fmt: skip
            elif choice < 0.95:
                shop.delete_order(f"t{seed}-{rng.randrange(max(done, 1))}")
            else:
                shop.remove_stock_item(sku, rng.choice(["main", "east"]))
            done += 1
            time.sleep(0.004)
    return done


@pytest.mark.integration
@pytest.mark.slow
def test_sigkilled_connect_worker_redelivers_and_silver_still_equals_source(
    spark, stack: Stack
) -> None:
    assert cdc.connect_service(stack.settings, stack.cdc).pid() is not None
    before = Counter((t, k, json.loads(v)["source"]["lsn"]) for t, k, v in _consume_all(stack) if v)
    assert max(before.values()) == 1  # no duplicates yet

    stop = threading.Event()
    result: list[int] = []
    writer = threading.Thread(target=lambda: result.append(_write_traffic(stack, stop, 1)))
    writer.start()
    try:
        time.sleep(1.5)
        # Crash mid-traffic, half an offset-flush interval after the last flush, so that about
        # half a second of changes is delivered but not yet acknowledged.
        offsets = Path(stack.settings.path(stack.cdc.connect_dir)) / "offsets.dat"
        flushed = offsets.stat().st_mtime_ns
        wait_until(lambda: offsets.stat().st_mtime_ns != flushed, 10, "an offset flush")
        time.sleep(stack.cdc.offset_flush_interval_ms / 2000)
        assert cdc.kill_connect(stack.settings, stack.cdc)
        time.sleep(0.5)
        cdc.start_connect(stack.settings, stack.cdc)
        time.sleep(1.0)
    finally:
        stop.set()
        writer.join()
    with _shop(stack) as shop:
        last = shop.current_lsn()
        shop.adjust_stock("sku-0", "main", 1)
    _wait_for_cdc(stack, last)

    records = [(t, k, v) for t, k, v in _consume_all(stack) if v]
    copies = Counter((t, k, json.loads(v)["source"]["lsn"]) for t, k, v in records)
    redelivered = sum(n - 1 for n in copies.values() if n > 1)
    print(f"\n{result[0]} transactions, {len(records)} change records, "
          f"{redelivered} delivered twice after SIGKILL")  # fmt: skip
    assert redelivered > 0, "the crash drill must really redeliver changes"

    # Small micro-batches: duplicates land in other batches than their originals.
    small = load_settings(
        "test", environ={**stack.env, "TRIVAS_STREAMING__MAX_OFFSETS_PER_TRIGGER": "400"}
    )
    _run_job(spark, small, stack.cdc)
    _mirror_equals_source(spark, stack, small)


def _record(table: str, op: str, lsn: int, row: dict, before: dict | None = None) -> dict:
    return {
        "topic": f"cdc.{table}",
        "value": json.dumps(
            {
                "before": before,
                "after": None if op == "d" else row,
                "op": op,
                "source": {
                    "lsn": lsn,
                    "txId": lsn // 10,
                    "sequence": f'[null,"{lsn}"]',
                    "ts_ms": 1795840676007,
                    "schema": "public",
                    "table": table,
                },
            }  # fmt: skip
        ).encode(),
    }


def _order(order_id: str, status: str, amount: str = "5.00") -> dict:
    ts = datetime(2026, 11, 28, 4, 0, tzinfo=UTC).isoformat().replace("+00:00", "Z")
    return {"order_id": order_id, "customer_id": "c", "status": status, "amount": amount,
            "currency": "EUR", "created_at": ts, "updated_at": ts}  # fmt: skip


@pytest.mark.spark
def test_merge_is_ordered_by_lsn_and_a_replayed_batch_is_a_no_op(spark, tmp_path: Path, broker_env: dict[str, str]) -> None:
    from lakehouse.tables import ensure_table, read_table, table_version
    from spark_jobs import cdc as job

    settings = load_settings("test", environ=_settings_env(tmp_path, broker_env))
    config = cdc.load_cdc_settings(environ={"TRIVAS_CDC__TABLES": "[public.orders]"})
    table = cdc.MIRRORED_TABLES[ORDERS]
    ensure_table(spark, settings, table.silver, job.silver_schema(table))
    apply = job.apply_batch_fn(settings, [table], config, query_id="test")

    def batch(*records: dict):  # noqa: ANN202
        rows = [*records, {"topic": f"cdc.{ORDERS}", "value": None}]  # a tombstone
        return spark.createDataFrame(rows, "topic string, value binary")

    def state() -> dict[str, tuple[str, bool]]:
        rows = read_table(spark, settings, table.silver).collect()
        return {r.order_id: (r.status, r._deleted) for r in rows}

    apply(batch(_record(ORDERS, "r", 100, _order("a", "placed")),
                _record(ORDERS, "r", 100, _order("b", "placed"))), 0)  # fmt: skip
    # Same LSN as the snapshot: the streamed change wins; two changes in one batch: the later.
    apply(batch(_record(ORDERS, "u", 100, _order("a", "paid")),
                _record(ORDERS, "u", 130, _order("b", "shipped")),
                _record(ORDERS, "u", 120, _order("b", "paid")),
                _record(ORDERS, "c", 140, _order("c", "placed"))), 1)  # fmt: skip
    assert state() == {"a": ("paid", False), "b": ("shipped", False), "c": ("placed", False)}

    version = table_version(spark, settings, table.silver)
    apply(batch(_record(ORDERS, "d", 999, {}, before=_order("a", "paid"))), 1)  # replayed id
    assert table_version(spark, settings, table.silver) == version
    assert state()["a"] == ("paid", False)

    apply(batch(_record(ORDERS, "d", 150, {}, before=_order("c", "placed"))), 2)
    # Redelivered older changes: never overwrite, never resurrect a deleted row.
    apply(batch(_record(ORDERS, "u", 120, _order("b", "paid")),
                _record(ORDERS, "c", 140, _order("c", "placed"))), 3)  # fmt: skip
    assert state() == {"a": ("paid", False), "b": ("shipped", False), "c": ("placed", True)}
    current = job.current_rows(read_table(spark, settings, table.silver), table)
    assert sorted(r.order_id for r in current.collect()) == ["a", "b"]
    amounts = {r.amount for r in current.collect()}
    assert amounts == {Decimal("5.00")}
    tokens = {r.customer_id for r in current.collect()}
    assert tokens == {pseudonymise("c", "tokenize", hash_key(settings), settings.privacy.hash_key_id)}

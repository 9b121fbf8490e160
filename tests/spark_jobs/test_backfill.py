"""Replay and backfill (spark_jobs.backfill): the Online Retail history against a pandas
recomputation from the CSV, a replay from bronze against the live path's ground truth, a
second run that changes nothing, and a backfill killed mid-way that resumes without
duplicates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from lakehouse.contracts import contracts
from lakehouse.registry import BACKFILLS, KPI, LATE, QUARANTINE, SILVER_EVENTS
from lakehouse.tables import table_location
from spark_jobs import pipeline
from spark_jobs.backfill import Backfill, Pacer, plan_chunks
from spark_jobs.backfill_sources import BronzeRange, OffsetRange, RetailFile, retail_events
from tests.conftest import SHARED_DATA, TEST_HASH_KEY
from tests.ground_truth import counted_events, expected_kpis, late_event_ids, quarantined
from tests.spark_jobs.stream_fixtures import (
    START,
    assert_silver_holds_exactly,
    kpi_differences,
    kpi_rows,
    produce,
    seeded_stream,
)

RETAIL = SHARED_DATA / "online-retail" / "online_retail.csv.gz"


@pytest.fixture()
def needs_retail() -> None:
    """The real Online Retail orders of the shared evaluation data: a test that needs them
    fails, naming the file, where they are missing (no silent skip)."""
    if not RETAIL.exists():
        pytest.fail(f"the UCI Online Retail file is missing ({RETAIL}): the shared evaluation data must sit beside the checkout")


REPO = Path(__file__).resolve().parents[2]
H = timedelta(hours=1)
T0 = datetime(2011, 1, 3, tzinfo=UTC)


# -- pure parts ---------------------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(
    ("hourly", "limit", "expected"),
    [
        ([], 10, []),
        ([(T0, 4), (T0 + H, 5), (T0 + 5 * H, 3)], 10, [(T0, T0 + 5 * H, 9), (T0 + 5 * H, T0 + 6 * H, 3)]),
        ([(T0, 25), (T0 + H, 1)], 10, [(T0, T0 + H, 25), (T0 + H, T0 + 2 * H, 1)]),  # a big hour alone
        ([(T0, 10), (T0 + H, 10)], 20, [(T0, T0 + 2 * H, 20)]),
    ],
)
def test_chunks_pack_whole_hours_up_to_the_limit(hourly, limit, expected) -> None:  # noqa: ANN001
    chunks = plan_chunks(hourly, limit)
    assert [(c.start, c.end, c.records) for c in chunks] == expected
    assert [c.number for c in chunks] == list(range(len(expected)))


@pytest.mark.unit
def test_pacer_keeps_the_average_within_the_budget() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = Pacer(100.0, clock=lambda: now[0], sleep=sleep)
    now[0] += 2.0  # 500 records took 2 s: 5 s allowed, wait 3
    assert pacer.wait(500) == pytest.approx(3.0)
    now[0] += 10.0  # 500 more took 10 s: behind the budget, no wait
    assert pacer.wait(500) == 0.0
    assert Pacer(0, clock=lambda: 0.0, sleep=sleep).wait(10**6) == 0.0  # no budget
    assert slept == [pytest.approx(3.0)]


@pytest.mark.unit
@pytest.mark.parametrize("text", ["raw.orders:0:5", "raw.orders:x:1-2", "raw.orders:0:9-3", "nothing"])
def test_bad_offset_ranges_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="TOPIC:PARTITION:FROM-TO|offset range"):
        OffsetRange.parse(text)
    assert OffsetRange.parse("raw.orders:2:10-20") == OffsetRange("raw.orders", 2, 10, 20)


@pytest.mark.unit
def test_an_invoice_is_one_event_and_nothing_is_repaired() -> None:
    when = pd.Timestamp("2011-01-03 09:15", tz="UTC")
    lines = pd.DataFrame({
        "InvoiceNo": ["536365", "536365", "C536366", "536367"],
        "StockCode": ["85123A", "71053", "22633", "22632"],
        "Quantity": [6.0, 2.0, -3.0, 0.0],
        "UnitPrice": [2.55, 3.39, 1.85, 2.10],
        "Country": ["United Kingdom"] * 4,
        "customer_id": pd.array(["17850", "17850", "17850", None], dtype="string"),
        "event_time": [when, when + timedelta(minutes=1), when, when],
    })  # fmt: skip
    events = retail_events(lines, eur_per_gbp=2.0).set_index("event_type", drop=False)
    import json

    placed, cancelled, broken = (json.loads(v) for v in events["value"])
    assert placed["event_type"] == "order_placed" and placed["event_time"] == when.isoformat()
    assert placed["payload"]["amount"] == pytest.approx((6 * 2.55 + 2 * 3.39) * 2)
    assert placed["payload"]["items"] == [
        {"sku": "85123A", "quantity": 6, "unit_price": 5.1}, {"sku": "71053", "quantity": 2, "unit_price": 6.78}
    ]
    assert cancelled["event_type"] == "order_cancelled" and cancelled["payload"]["amount"] == pytest.approx(3 * 1.85 * 2)
    assert cancelled["payload"]["reason"] == "customer_request" and "items" not in cancelled["payload"]
    assert "customer_id" not in broken["payload"] and broken["payload"]["items"][0]["quantity"] == 0
    assert list(events["offset"]) == [0, 2, 3]  # the invoice's first line in the file
    assert list(retail_events(lines, 2.0)["event_id"]) == list(events["event_id"])  # stable ids


# -- the Online Retail history ---------------------------------------------------------------


def retail_truth(since: datetime, until: datetime, eur_per_gbp: float) -> pd.DataFrame:
    """Per UTC day, straight from the CSV: orders and revenue of the invoices the contracts
    accept (a customer, every quantity ≥ 1, every price ≥ 0; not a ``C`` cancellation)."""
    raw = pd.read_csv(RETAIL, dtype={"InvoiceNo": str, "StockCode": str})
    raw["time"] = pd.to_datetime(raw["InvoiceDate"]).dt.tz_localize("UTC")
    raw["line_amount"] = raw["Quantity"] * raw["UnitPrice"]
    invoices = raw.groupby("InvoiceNo").agg(
        time=("time", "min"), customers=("CustomerID", "count"), lines=("CustomerID", "size"),
        min_quantity=("Quantity", "min"), min_price=("UnitPrice", "min"), amount=("line_amount", "sum"),
    )  # fmt: skip
    invoices = invoices[(invoices["time"] >= since) & (invoices["time"] < until)]
    accepted = invoices[
        ~invoices.index.str.startswith("C") & (invoices["customers"] == invoices["lines"])
        & (invoices["min_quantity"] >= 1) & (invoices["min_price"] >= 0)
    ]  # fmt: skip
    per_day = accepted.groupby(accepted["time"].dt.floor("D")).agg(orders=("amount", "size"), revenue=("amount", "sum"))
    per_day["revenue"] *= eur_per_gbp
    return per_day


def gold_per_day(settings, table_reader) -> pd.DataFrame:  # noqa: ANN001
    current = table_reader(settings, "gold.kpi_current")
    minutes = current[(current["grain"] == "1m") & (current["dimension"] == "all") & current["kpi"].isin(["orders", "revenue"])]
    day = pd.to_datetime(minutes["window_start"], utc=True).dt.floor("D")
    table = minutes.assign(day=day).pivot_table(index="day", columns="kpi", values="value", aggfunc="sum")
    return table[["orders", "revenue"]].rename_axis(index="time", columns=None)


def versions(settings, *tables: str) -> dict[str, int]:  # noqa: ANN001
    from deltalake import DeltaTable

    return {t: DeltaTable(table_location(settings, t)).version() for t in tables}


@pytest.mark.usefixtures("needs_retail")
@pytest.mark.spark
@pytest.mark.slow
def test_online_retail_gold_per_day_equals_the_csv(spark, lake, catalog, table_reader) -> None:
    """December 2010 (the test's slice: ~1,600 invoices; the command takes the whole year)."""
    since, until = datetime(2010, 12, 1, tzinfo=UTC), datetime(2011, 1, 1, tzinfo=UTC)
    source = RetailFile(lake, RETAIL, since, until)
    job = Backfill(spark, lake, catalog, contracts(), source, chunk_events=5000, events_per_second=0)
    reports = job.run()

    truth = retail_truth(since, until, lake.backfill.eur_per_gbp)
    gold = gold_per_day(lake, table_reader)
    assert list(gold.index) == list(truth.index)
    assert gold["orders"].tolist() == truth["orders"].astype(float).tolist()
    assert gold["revenue"].to_numpy() == pytest.approx(truth["revenue"].to_numpy(), rel=1e-9)

    # Every invoice has one fate: an event in silver, or a reason in the quarantine.
    orders = table_reader(lake, "silver.orders")
    refused = table_reader(lake, "silver.quarantine")
    assert orders["event_id"].is_unique and refused["quarantine_id"].is_unique
    assert len(orders) + len(refused) == source.table.num_rows == sum(r.chunk.records for r in reports)
    assert set(refused["reason"].str.split(":").str[0]) <= {"missing_required", "out_of_range"}
    assert (orders["event_type"] == "order_placed").sum() == truth["orders"].sum()
    assert gold["revenue"].sum() == pytest.approx(orders.loc[orders["event_type"] == "order_placed", "amount"].sum())

    # The restated rows name the backfill in their lineage; a second run changes nothing.
    minutes = table_reader(lake, "gold.kpi")
    assert minutes["source_versions"].map(lambda m: any(k == f"backfill:{job.run_id}" for k, _ in m)).all()
    before = versions(lake, SILVER_EVENTS, QUARANTINE, KPI, BACKFILLS)
    again = Backfill(spark, lake, catalog, contracts(), RetailFile(lake, RETAIL, since, until), chunk_events=5000, events_per_second=0)
    assert all(r.skipped for r in again.run())
    assert versions(lake, SILVER_EVENTS, QUARANTINE, KPI, BACKFILLS) == before


@pytest.mark.usefixtures("needs_retail")
@pytest.mark.integration
@pytest.mark.slow
def test_a_killed_backfill_resumes_without_duplicates(lake, table_reader, tmp_path) -> None:
    """SIGKILL the CLI mid-way (once a chunk is in the ledger), run it again to the end."""
    since, until = "2010-12-01", "2010-12-04"
    env = {
        **os.environ, "PYTHONPATH": str(REPO), "TRIVAS_ENV": "test", "TRIVAS_PRIVACY__HASH_KEY": TEST_HASH_KEY,
        "TRIVAS_PATHS__VAR": str(tmp_path / "var"), "TRIVAS_TABLES__ROOT": str(tmp_path / "lake"),
        "TRIVAS_TABLES__CHECKPOINTS": str(tmp_path / "checkpoints"),
    }  # fmt: skip
    command = [sys.executable, "-m", "lakehouse.cli", "backfill", "online-retail", str(RETAIL), "--since", since,
               "--until", until, "--chunk-events", "100", "--events-per-second", "0", "--nice", "0"]  # fmt: skip
    first = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not ledger_rows(lake) and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.2)
        assert ledger_rows(lake), "the backfill never completed a chunk"
        time.sleep(1.5)  # into the next chunk
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    killed_after = ledger_rows(lake)
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]

    ledger = table_reader(lake, BACKFILLS)
    assert ledger["chunk"].is_unique and len(ledger) > killed_after > 0
    orders = table_reader(lake, "silver.orders")
    refused = table_reader(lake, "silver.quarantine")
    assert orders["event_id"].is_unique and refused["quarantine_id"].is_unique
    assert len(orders) + len(refused) == ledger["records"].sum()
    start, end = datetime.fromisoformat(since).replace(tzinfo=UTC), datetime.fromisoformat(until).replace(tzinfo=UTC)
    truth = retail_truth(start, end, lake.backfill.eur_per_gbp)
    gold = gold_per_day(lake, table_reader)
    assert gold["orders"].tolist() == truth["orders"].astype(float).tolist()
    assert gold["revenue"].to_numpy() == pytest.approx(truth["revenue"].to_numpy(), rel=1e-9)


def ledger_rows(settings) -> int:  # noqa: ANN001
    from deltalake import DeltaTable

    from lakehouse.tables import has_commits

    location = table_location(settings, BACKFILLS)
    return len(DeltaTable(location).to_pyarrow_table(columns=["chunk"])) if has_commits(location) else 0


# -- replay from bronze ------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.slow
def test_a_replay_from_bronze_rederives_silver_and_gold_and_twice_changes_nothing(
    deployment, spark, catalog, table_reader
) -> None:
    stream = seeded_stream(catalog, deployment, seed=23, minutes=6, rate=16.0)
    produce(deployment, stream)
    pipeline.drain(spark, deployment, catalog, contracts(), jobs=("bronze",))  # only the archive
    assert len(table_reader(deployment, "bronze.events")) == len(stream)

    def replay(since: datetime) -> tuple[Backfill, list]:
        source = BronzeRange(deployment, since, START + H)
        job = Backfill(spark, deployment, catalog, contracts(), source, events_per_second=0)
        return job, job.run()

    first, _ = replay(START - H)
    counted = counted_events(stream, catalog)
    assert_silver_holds_exactly(counted, deployment, catalog, table_reader)
    refused = table_reader(deployment, "silver.quarantine")
    assert sorted(refused["event_id"].dropna()) == sorted(d.event_id for d in quarantined(stream, catalog) if d.event_id)
    assert len(refused) == len(quarantined(stream, catalog))
    assert sorted(table_reader(deployment, "silver.late")["event_id"]) == sorted(late_event_ids(stream, catalog))
    differences = kpi_differences(kpi_rows(table_reader(deployment, "gold.kpi_current")), expected_kpis(counted))
    assert not differences, "\n".join(differences[:40])

    tables = (SILVER_EVENTS, QUARANTINE, LATE, KPI, BACKFILLS)
    before = versions(deployment, *tables)
    again, reports = replay(START - H)  # the same run: every chunk is in the ledger
    assert again.run_id == first.run_id and all(r.skipped for r in reports)
    assert versions(deployment, *tables) == before
    other, reports = replay(START - 2 * H)  # another run over the same records: it finds nothing to add
    assert other.run_id != first.run_id and not any(r.skipped for r in reports)
    assert sum(r.valid for r in reports) == len(counted) and sum(r.silver_added + r.gold_restated for r in reports) == 0
    after = versions(deployment, *tables)
    assert {t: after[t] for t in tables if t != BACKFILLS} == {t: before[t] for t in tables if t != BACKFILLS}


@pytest.mark.spark
def test_a_replay_of_windows_the_live_path_owns_is_refused(lake, spark, catalog) -> None:
    class Recent:
        identity = "recent"

        def hourly_counts(self, spark):  # noqa: ANN001, ANN202
            return [(datetime.now(UTC).replace(minute=0, second=0, microsecond=0), 10)]

    with pytest.raises(ValueError, match="live hot path still owns"):
        Backfill(spark, lake, catalog, contracts(), Recent()).plan()


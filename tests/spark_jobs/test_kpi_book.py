"""The KPI book: the driver-side current values behind gold.kpi (pure Python, no Spark)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lakehouse.contracts import TOTAL, contracts
from spark_jobs.gold import KpiBook

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
DELAY = timedelta(minutes=6)


def by_key(rows) -> dict:  # noqa: ANN001
    return {(r.kpi, r.grain, r.window_start, r.dimension): r for r in rows}


def test_increments_add_up_and_feed_rollups_and_ratios() -> None:
    book = KpiBook(contracts(), DELAY)
    book.apply([("revenue", T0, TOTAL, 10.0, 1), ("orders", T0, TOTAL, 1.0, 1)], T0 + MINUTE)
    rows = by_key(book.apply([("revenue", T0, TOTAL, 5.0, 1), ("orders", T0, TOTAL, 1.0, 1)], T0 + MINUTE))
    assert (rows[("revenue", "1m", T0, TOTAL)].value, rows[("revenue", "1m", T0, TOTAL)].events) == (15.0, 2)
    five_minutes = [r for k, r in rows.items() if k[0] == "revenue_5m"]
    assert five_minutes and all(r.value == 15.0 for r in five_minutes)
    ratio = rows[("average_order_value", "1m", T0, TOTAL)]
    assert ratio.inputs["revenue"] == 15.0 and ratio.inputs["orders"] == 2.0


def test_windows_turn_final_once_arrivals_pass_them_by_the_delay_and_nothing_is_dropped() -> None:
    book = KpiBook(contracts(), DELAY)
    book.apply([("orders", T0, TOTAL, 1.0, 1)], T0 + MINUTE)
    assert book.watermark == T0 + MINUTE - DELAY
    later = T0 + DELAY + 2 * MINUTE
    rows = by_key(book.apply([("orders", later, TOTAL, 1.0, 1)], later))
    final = rows[("orders", "1m", T0, TOTAL)]  # re-emitted because it just turned final
    assert (final.value, final.events) == (1.0, 1)
    assert final.window_end <= book.watermark
    # A straggler for the final window (partitions far out of step) still counts: restated.
    rows = by_key(book.apply([("orders", T0, TOTAL, 1.0, 1)], later))
    assert rows[("orders", "1m", T0, TOTAL)].events == 2


def test_a_restored_book_continues_where_gold_left_off() -> None:
    book = KpiBook(contracts(), DELAY)
    book.restore([(("orders", T0, TOTAL), 3.0, 3, False)], T0 - DELAY)
    rows = by_key(book.apply([("orders", T0, TOTAL, 1.0, 1)], T0 + 30 * timedelta(seconds=1)))
    assert (rows[("orders", "1m", T0, TOTAL)].value, rows[("orders", "1m", T0, TOTAL)].events) == (4.0, 4)


def test_evicted_minutes_are_reported_missing_before_they_are_touched_again() -> None:
    book = KpiBook(contracts(), DELAY, keep=timedelta(minutes=10))
    book.apply([("orders", T0, TOTAL, 1.0, 1)], T0 + MINUTE)
    far = T0 + 3 * DELAY + 10 * MINUTE
    book.apply([("orders", far, TOTAL, 1.0, 1)], far + MINUTE)
    assert ("orders", T0, TOTAL) not in book.recent.values
    assert book.missing([("orders", T0, TOTAL, 1.0, 1)])
    assert not book.missing([("orders", far, TOTAL, 1.0, 1)])


def test_evicted_minutes_come_back_by_exact_range_however_many_ranges() -> None:
    """The hot path reads gold once with a coarse predicate and keeps the minutes inside the
    missing ranges (a backfill can miss thousands: one filter clause each overflowed the JVM)."""
    from spark_jobs.hot_path import within_ranges

    ranges = [("orders", f"country=C{i}", T0, T0 + 2 * MINUTE) for i in range(3000)] + [("revenue", TOTAL, T0 + MINUTE, T0 + 3 * MINUTE)]
    rows = [
        (("orders", T0, "country=C7"), 1.0, 1),  # inside
        (("orders", T0 + 2 * MINUTE, "country=C7"), 1.0, 1),  # at its range's end: outside
        (("orders", T0, TOTAL), 1.0, 1),  # another dimension
        (("revenue", T0, TOTAL), 5.0, 1),  # before its range
        (("revenue", T0 + 2 * MINUTE, TOTAL), 5.0, 1),  # inside
    ]
    assert within_ranges(rows, ranges) == [rows[0], rows[4]]


def test_gold_rows_carry_ratio_values_finality_and_lineage() -> None:
    from spark_jobs.gold import KpiRow, kpi_table

    watermark = T0 + 2 * MINUTE
    rows = [
        KpiRow("orders", "1m", T0, T0 + MINUTE, TOTAL, 3.0, 3),
        KpiRow("conversion_rate", "1m", T0 + 2 * MINUTE, T0 + 3 * MINUTE, TOTAL, None, 40, {"orders": 2.0, "sessions": 40.0}),
        KpiRow("conversion_rate", "1m", T0, T0 + MINUTE, "country=DE", None, 3, {"orders": 3.0, "sessions": 0.0}),
    ]
    table = kpi_table(rows, contracts(), watermark, T0 + 3 * MINUTE, {"silver.events": 7}).to_pylist()
    assert [(r["kpi"], r["value"], r["numerator"], r["denominator"], r["is_final"]) for r in table] == [
        ("orders", 3.0, None, None, True),
        ("conversion_rate", 0.05, 2.0, 40.0, False),
        ("conversion_rate", None, 3.0, 0.0, True),  # no sessions: no rate
    ]
    assert {r["unit"] for r in table} == {contracts()["orders"].unit, contracts()["conversion_rate"].unit}
    assert all(r["source_versions"] == [("silver.events", 7)] and r["watermark"] == watermark for r in table)

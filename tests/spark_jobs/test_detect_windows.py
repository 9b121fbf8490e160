"""The windows detect scores when gold.kpi is silent: empty minutes and windows that ended
after their last update (pure functions, no Spark)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from spark_jobs import detect_windows as windows

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
ORDERS = "orders|1m|all"


def at(minute: float) -> float:
    return (T0 + minute * MINUTE).timestamp()


def view(minute: int, value: float, *, seconds: float, final: bool = False, key: str = ORDERS) -> dict:
    kpi, grain, dimension = key.split("|", 2)
    start = T0 + minute * MINUTE
    return {
        "kpi": kpi, "grain": grain, "dimension": dimension, "window_start": pd.Timestamp(start),
        "window_end": pd.Timestamp(start + MINUTE), "value": value, "is_final": final,
        "computed_at": pd.Timestamp(start + timedelta(seconds=seconds)), "series_key": key, "t": start.timestamp(),
    }  # fmt: skip


def minutes(frame: pd.DataFrame) -> list[tuple[str, int]]:
    return [(k, int(round((t - T0.timestamp()) / 60))) for k, t in frame[["series_key", "t"]].to_numpy()]


@pytest.mark.unit
def test_final_empty_minutes_run_from_the_cursor_to_the_watermark() -> None:
    seen = pd.DataFrame({"series_key": [ORDERS], "t": [at(2)]})
    # watermark 5.5 min: windows ending by then are final (starts 1..4); minute 2 has a row
    zeros = windows.empty_windows({ORDERS: at(0), "orders|1m|country=DE": at(3)}, at(5.5), np.inf, seen)
    assert minutes(zeros) == [(ORDERS, 1), (ORDERS, 3), (ORDERS, 4), ("orders|1m|country=DE", 4)]
    assert zeros["value"].tolist() == [0.0] * 4
    assert zeros[["kpi", "grain", "dimension"]].iloc[-1].tolist() == ["orders", "1m", "country=DE"]
    assert (zeros["window_end"] - zeros["window_start"]).eq(pd.Timedelta(minutes=1)).all()


@pytest.mark.unit
def test_open_empty_minutes_lie_between_the_watermark_and_the_frontier() -> None:
    watermark, frontier = T0 + 5.5 * MINUTE, T0 + 7.5 * MINUTE
    views = pd.DataFrame([view(5, 3.0, seconds=20)])
    filled = windows.with_empty_open_windows(views, {ORDERS: at(4)}, watermark, frontier, T0 + 8 * MINUTE)
    # minute 5 has a row; 6 and 7 started before the frontier without one; 8 has not started
    assert minutes(filled) == [(ORDERS, 5), (ORDERS, 6), (ORDERS, 7)]
    assert filled["value"].tolist() == [3.0, 0.0, 0.0]
    assert filled["filled"].eq(True).tolist() == [False, True, True]


@pytest.mark.unit
def test_empty_minutes_go_back_at_most_the_gap() -> None:
    zeros = windows.empty_windows({ORDERS: at(-100_000)}, at(10), np.inf, pd.DataFrame(), max_gap=timedelta(minutes=5))
    assert minutes(zeros) == [(ORDERS, m) for m in range(5, 10)]


@pytest.mark.unit
def test_only_followed_tumbling_counts_are_filled() -> None:
    cursor = {ORDERS: 1.0, "orders|5m|all": 2.0, "conversion_rate|1m|all": 3.0, "sessions|1m|country=FR": 4.0}
    assert windows.followed_counts(cursor, {"orders", "sessions"}) == {ORDERS: 1.0, "sessions|1m|country=FR": 4.0}


@pytest.mark.unit
def test_open_views_keep_the_latest_image_of_windows_not_final_yet() -> None:
    views = pd.DataFrame([view(3, 1.0, seconds=10), view(4, 2.0, seconds=10), view(5, 1.0, seconds=10)])
    rows = pd.DataFrame([view(4, 5.0, seconds=40), view(5, 9.0, seconds=70, final=True), view(6, 1.0, seconds=5)])
    # minute 3 is at the cursor (scored final); 5 is final now; 4 is updated; 6 is new
    carried = windows.carry_open_views(views, rows, {ORDERS: at(3)}, None)
    assert list(zip(minutes(carried), carried["value"], strict=True)) == [((ORDERS, 4), 5.0), ((ORDERS, 6), 1.0)]
    # a watermark past minute 4's end drops it too (its final row is on its way)
    assert minutes(windows.carry_open_views(views, rows, {ORDERS: at(3)}, T0 + 5 * MINUTE)) == [(ORDERS, 6)]


@pytest.mark.unit
def test_final_points_and_empty_minutes_come_in_event_time_order() -> None:
    points = pd.DataFrame([view(1, 4.0, seconds=90, final=True), view(3, 2.0, seconds=90, final=True)])
    both = windows.with_empty_final_windows(points, {ORDERS: at(0)}, T0 + 4 * MINUTE, T0 + 9 * MINUTE)
    assert minutes(both) == [(ORDERS, 1), (ORDERS, 2), (ORDERS, 3)]
    assert both["value"].tolist() == [4.0, 0.0, 2.0]
    assert both["is_final"].tolist() == [True, True, True]
    # a window seen open is not empty, even if its final row is missing
    seen_open = windows.with_empty_final_windows(points, {ORDERS: at(0)}, T0 + 4 * MINUTE, T0, pd.DataFrame([view(2, 1.0, seconds=9)]))
    assert minutes(seen_open) == [(ORDERS, 1), (ORDERS, 3)]


@pytest.mark.unit
def test_no_watermark_no_filling() -> None:
    points = pd.DataFrame([view(1, 4.0, seconds=90, final=True)])
    assert windows.with_empty_final_windows(points, {ORDERS: at(0)}, None, T0).equals(points)
    assert windows.newest_watermark(pd.DataFrame({"watermark": [None, None]})) is None
    newest = windows.newest_watermark(pd.DataFrame({"watermark": [pd.Timestamp(T0), pd.Timestamp(T0 + MINUTE)]}))
    assert newest == T0 + MINUTE

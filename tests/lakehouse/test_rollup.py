"""The KPI rollup: hourly/daily arithmetic, and the job's incremental runs on a real Delta table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from lakehouse.config import Settings
from lakehouse.contracts import contracts
from lakehouse.rollup import aggregate, period_value, read_rollup, roll_up
from tests.kpi_rows import kpi_row, write_kpi_rows

START = datetime(2026, 11, 2, 22, 58, tzinfo=UTC)


def minute_rows() -> list[dict]:
    """Orders and conversion over 4 minutes across midnight (two hours, two days)."""
    rows = []
    for i, (orders, sessions) in enumerate([(2, 40), (3, 60), (5, 50), (1, 10)]):
        start = START + timedelta(minutes=60 * i if i > 1 else i)  # 22:58, 22:59, 00:58, 01:58
        rows.append(kpi_row("orders", start, orders))
        rows.append(kpi_row("conversion_rate", start, orders / sessions, unit="ratio", numerator=orders, denominator=sessions))
    return rows


@pytest.mark.unit
def test_hours_sum_measures_and_recompute_ratios() -> None:
    frame = pd.DataFrame(minute_rows())
    hourly = aggregate(frame, contracts(), "1h")
    orders = hourly[hourly.kpi == "orders"].set_index("window_start")["value"]
    assert orders.to_dict() == {pd.Timestamp("2026-11-02 22:00", tz=UTC): 5, pd.Timestamp("2026-11-03 00:00", tz=UTC): 5, pd.Timestamp("2026-11-03 01:00", tz=UTC): 1}
    rate = hourly[(hourly.kpi == "conversion_rate")].iloc[0]
    assert rate["value"] == pytest.approx(5 / 100)  # (2+3)/(40+60), not the mean of 2/40 and 3/60
    daily = aggregate(hourly, contracts(), "1d")
    second_day = daily[daily.window_start == pd.Timestamp("2026-11-03", tz=UTC)].set_index("kpi")
    assert second_day.loc["orders", "value"] == 6 and second_day.loc["orders", "minutes"] == 2
    assert second_day.loc["conversion_rate", "value"] == pytest.approx(6 / 60)
    assert period_value(daily, "conversion_rate", contracts()) == pytest.approx(11 / 160)


@pytest.mark.unit
def test_the_job_replaces_only_what_changed(lake: Settings) -> None:
    write_kpi_rows(lake, minute_rows())
    first = roll_up(lake, contracts())
    assert (first.hours, first.days) == (6, 4)  # 3 hours x 2 KPIs, 2 days x 2 KPIs
    assert roll_up(lake, contracts()).hours == 0  # nothing new
    # A restatement of 00:58 (6 orders instead of 5), written later.
    restated = kpi_row("orders", START + timedelta(minutes=120), 6, computed_at=START + timedelta(hours=4))
    write_kpi_rows(lake, [restated])
    second = roll_up(lake, contracts())
    assert second.first_hour == datetime(2026, 11, 3, 0, tzinfo=UTC) and second.hours == 2  # that hour, both KPIs
    everything = datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
    days = read_rollup(lake, "1d", *everything, kpis=["orders"]).set_index("window_start")["value"].to_dict()
    assert days == {pd.Timestamp("2026-11-02", tz=UTC): 5, pd.Timestamp("2026-11-03", tz=UTC): 7}
    hours = read_rollup(lake, "1h", *everything)
    assert len(hours) == 6 and hours.duplicated(["kpi", "window_start", "dimension"]).sum() == 0

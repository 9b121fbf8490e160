"""The history ``trivas demo`` sends before live traffic: last week's hours, then today's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lakehouse.cli import history_runs


@pytest.mark.unit
def test_history_is_last_week_then_the_last_hours_up_to_now() -> None:
    now = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)
    assert history_runs(now, 1.5) == [
        (now - timedelta(days=7, hours=1.5), 5400.0),
        (now - timedelta(hours=1.5), 5400.0),
    ]
    assert history_runs(now, 0) == []

"""Ground truth, computed in plain Python from the generator's deliveries.

Deliberately independent of the Spark code and of the SQL in ``conf/kpis.yaml``: every KPI
is written out again by hand here, so a wrong filter, window or dedup in the pipeline shows
up as a difference. A KPI added to the contracts needs its twin here (a test checks that).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from lakehouse.catalog import Catalog
from lakehouse.generator.faults import (
    FATE_COUNTED,
    FATE_LATE,
    FATE_QUARANTINED,
    Delivery,
    expected_fates,
)

MINUTE = timedelta(minutes=1)
Event = dict[str, Any]
KpiKey = tuple[str, str, datetime, str]  # (kpi, grain, window_start, dimension)


def when(event: Event) -> datetime:
    return datetime.fromisoformat(event["event_time"]).astimezone(UTC)


def minute_of(event: Event) -> datetime:
    return when(event).replace(second=0, microsecond=0)


def counted_events(deliveries: Iterable[Delivery], catalog: Catalog) -> list[Event]:
    """The events silver must count: on time, first copy of each event_id."""
    return [d.event for d, fate in expected_fates(deliveries, catalog) if fate == FATE_COUNTED]


def late_event_ids(deliveries: Iterable[Delivery], catalog: Catalog) -> list[str]:
    return [d.event_id for d, fate in expected_fates(deliveries, catalog) if fate == FATE_LATE]


def quarantined(deliveries: Iterable[Delivery], catalog: Catalog) -> list[Delivery]:
    return [d for d, fate in expected_fates(deliveries, catalog) if fate == FATE_QUARANTINED]


# -- measures: (event filter, value, dimension columns) --------------------------------------

def _is(*types: str) -> Callable[[Event], bool]:
    return lambda e: e["event_type"] in types


MEASURES: dict[str, tuple[Callable[[Event], bool], Callable[[Event], float], tuple[str, ...]]] = {
    "sessions": (lambda e: e["event_type"] == "page_view" and e["payload"]["page_seq"] == 1, lambda e: 1.0, ("country",)),
    "checkouts_started": (_is("checkout_started"), lambda e: 1.0, ("country",)),
    "orders": (_is("order_placed"), lambda e: 1.0, ("country",)),
    "revenue": (_is("order_placed"), lambda e: float(e["payload"]["amount"]), ("country",)),
    "payment_attempts": (_is("payment_authorized", "payment_failed"), lambda e: 1.0, ("method",)),
    "payments_failed": (_is("payment_failed"), lambda e: 1.0, ("method",)),
    "refunds": (_is("refund_issued"), lambda e: 1.0, ()),
    "refund_amount": (_is("refund_issued"), lambda e: float(e["payload"]["amount"]), ()),
    "ad_spend": (_is("ad_cost"), lambda e: float(e["payload"]["amount"]), ("channel",)),
    "ad_clicks": (_is("ad_click"), lambda e: 1.0, ("channel",)),
    "stockouts": (
        lambda e: e["event_type"] == "inventory_adjusted" and e["payload"]["stock_after"] == 0 and e["payload"]["delta"] < 0,
        lambda e: 1.0,
        ("warehouse",),
    ),
    "ticket_volume": (_is("ticket_opened"), lambda e: 1.0, ("topic",)),
}

# name: (numerator(values), denominator(values), inputs, dimension columns)
RATIOS: dict[str, tuple[Callable[[dict[str, float]], float], Callable[[dict[str, float]], float], tuple[str, ...], tuple[str, ...]]] = {
    "average_order_value": (lambda v: v["revenue"], lambda v: v["orders"], ("revenue", "orders"), ("country",)),
    "conversion_rate": (lambda v: v["orders"], lambda v: v["sessions"], ("orders", "sessions"), ("country",)),
    "cart_abandonment_rate": (
        lambda v: max(v["checkouts_started"] - v["orders"], 0.0),
        lambda v: v["checkouts_started"],
        ("checkouts_started", "orders"),
        ("country",),
    ),
    "payment_failure_rate": (lambda v: v["payments_failed"], lambda v: v["payment_attempts"], ("payments_failed", "payment_attempts"), ("method",)),
    "refund_rate": (lambda v: v["refunds"], lambda v: v["orders"], ("refunds", "orders"), ()),
    "cost_per_click": (lambda v: v["ad_spend"], lambda v: v["ad_clicks"], ("ad_spend", "ad_clicks"), ("channel",)),
    "roas": (lambda v: v["revenue"], lambda v: v["ad_spend"], ("revenue", "ad_spend"), ()),
}

# name: (measure, window minutes, slide minutes, dimension columns)
ROLLUPS: dict[str, tuple[str, int, int, tuple[str, ...]]] = {
    "revenue_5m": ("revenue", 5, 1, ("country",)),
    "orders_5m": ("orders", 5, 1, ("country",)),
}


def _dimension(event: Event, column: str) -> str:
    value = event["payload"].get(column)
    return f"{column}={value if value is not None else 'unknown'}"


def expected_kpis(events: Iterable[Event]) -> dict[KpiKey, tuple[float | None, int]]:
    """Every ``gold.kpi`` row the events must produce: key → (value, contributing events)."""
    base: dict[tuple[str, datetime, str], list[float]] = defaultdict(lambda: [0.0, 0])
    for event in events:
        for name, (selected, value, dimensions) in MEASURES.items():
            if not selected(event):
                continue
            for dim in ("all", *[_dimension(event, c) for c in dimensions]):
                cell = base[(name, minute_of(event), dim)]
                cell[0] += value(event)
                cell[1] += 1
    rows: dict[KpiKey, tuple[float | None, int]] = {
        (name, "1m", start, dim): (v, int(n)) for (name, start, dim), (v, n) in base.items()
    }
    for name, (numerator, denominator, inputs, dimensions) in RATIOS.items():
        cells = {(s, d) for (m, s, d) in base if m in inputs and (d == "all" or d.split("=")[0] in dimensions)}
        for start, dim in cells:
            values = {m: base.get((m, start, dim), [0.0, 0])[0] for m in inputs}
            count = sum(int(base.get((m, start, dim), [0.0, 0])[1]) for m in inputs)
            den = denominator(values)
            rows[(name, "1m", start, dim)] = (numerator(values) / den if den else None, count)
    for name, (measure, window, slide, dimensions) in ROLLUPS.items():
        starts: set[tuple[datetime, str]] = set()
        for (m, minute, dim) in base:
            if m != measure or (dim != "all" and dim.split("=")[0] not in dimensions):
                continue
            for k in range(window):
                start = minute - timedelta(minutes=k)
                if start.minute % slide == 0:
                    starts.add((start, dim))
        for start, dim in starts:
            cells = [base.get((measure, start + timedelta(minutes=j), dim), [0.0, 0]) for j in range(window)]
            rows[(name, f"{window}m/{slide}m", start, dim)] = (sum(c[0] for c in cells), int(sum(c[1] for c in cells)))
    return rows


def expected_order_payments(events: Iterable[Event], within: timedelta = timedelta(minutes=15)) -> set[tuple[str, str]]:
    """(order_id, payment_id) of every payment attempt within ``within`` after its order."""
    events = list(events)
    orders = {e["payload"]["order_id"]: when(e) for e in events if e["event_type"] == "order_placed"}
    pairs = set()
    for e in events:
        if e["event_type"] in ("payment_authorized", "payment_failed"):
            placed = orders.get(e["payload"]["order_id"])
            if placed is not None and placed <= when(e) <= placed + within:
                pairs.add((e["payload"]["order_id"], e["payload"]["payment_id"]))
    return pairs


def expected_sessions(events: Iterable[Event], gap: timedelta, watermark: datetime) -> dict[tuple[str, datetime], int]:
    """Closed sessions (end ≤ watermark) per (anonymous_id, start) → number of web events."""
    web = sorted(
        (e for e in events if e["event_type"] in ("page_view", "product_view", "add_to_cart", "checkout_started")),
        key=lambda e: (e["payload"]["anonymous_id"], when(e)),
    )
    sessions: dict[tuple[str, datetime], int] = {}
    current: tuple[str, datetime, datetime, int] | None = None

    def close(session: tuple[str, datetime, datetime, int] | None) -> None:
        if session and session[2] + gap <= watermark:
            sessions[(session[0], session[1])] = session[3]

    for event in web:
        visitor, at = event["payload"]["anonymous_id"], when(event)
        if current and current[0] == visitor and at < current[2] + gap:
            current = (visitor, current[1], at, current[3] + 1)
        else:
            close(current)
            current = (visitor, at, at, 1)
    close(current)
    return sessions

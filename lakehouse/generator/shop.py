"""A simulated online shop that emits catalog events.

Sessions arrive as a Poisson process whose rate follows a diurnal and weekly rhythm; each
session walks the funnel page_view → product_view → add_to_cart → checkout_started →
order_placed → payment (sometimes failing, sometimes retried) → stock movements, with
refunds, cancellations and support tickets afterwards. Refunds are not pure chance: 15 % of
the customers are serial returners and a tenth of the products are troubled (both fixed by a stable
hash of the id, so live traffic and generated history agree), which gives the refund-risk
model something real to learn on the playground. Campaigns bring clicks and report
spend every minute; stock depletes with sales and is restocked. Everything is drawn from
one seeded ``random.Random``: the same seed yields the same events.
"""

from __future__ import annotations

import heapq
import math
import random
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

COUNTRIES = ("DE", "FR", "GB", "NL", "ES", "IT")
COUNTRY_WEIGHTS = (0.35, 0.2, 0.15, 0.1, 0.1, 0.1)
DEVICES = ("desktop", "mobile", "tablet")
CHANNELS = ("search", "social", "display", "email")
WAREHOUSES = ("BER", "AMS")
PAYMENT_METHODS = ("card", "paypal", "klarna", "apple_pay")
FAILURE_CODES = ("card_declined", "insufficient_funds", "expired_card", "processing_error")
REFUND_REASONS = ("damaged", "not_as_described", "late_delivery", "changed_mind")
TICKET_TOPICS = ("delivery", "refund", "payment", "product", "account")

BASE_REFUND_RATE = 0.08
SERIAL_RETURNER_SHARE, SERIAL_RETURNER_FACTOR = 0.15, 5.0
TROUBLED_PRODUCT_SHARE, TROUBLED_PRODUCT_EXTRA = 0.10, 0.30

# Weekday (Mon..Sun) and hour-of-day multipliers of the session arrival rate.
WEEKLY = (1.0, 0.95, 0.95, 1.0, 1.1, 1.25, 1.2)


def diurnal(hour: float) -> float:
    """Traffic multiplier by hour of day: a night trough, a lunch bump, an evening peak."""
    evening = math.exp(-((hour - 20.5) ** 2) / 8.0)
    lunch = 0.5 * math.exp(-((hour - 12.5) ** 2) / 3.0)
    return 0.25 + 1.2 * evening + lunch


def stable_share(key: str) -> float:
    """A key's fixed position in [0, 1): the same in every run and every process."""
    return zlib.crc32(key.encode()) / 2**32


def refund_probability(customer: str, skus: list[str]) -> float:
    """Chance that a paid order is refunded: serial returners and troubled products raise it."""
    rate = BASE_REFUND_RATE
    if stable_share(customer) < SERIAL_RETURNER_SHARE:
        rate *= SERIAL_RETURNER_FACTOR
    if any(stable_share(sku) < TROUBLED_PRODUCT_SHARE for sku in skus):
        rate += TROUBLED_PRODUCT_EXTRA
    return min(rate, 0.9)


def seasonality(at: datetime) -> float:
    """Combined weekly × diurnal multiplier at ``at`` (mean ≈ 1 over a week)."""
    return WEEKLY[at.weekday()] * diurnal(at.hour + at.minute / 60.0) / 0.8


def iso(at: datetime) -> str:
    """ISO-8601 with zone, microseconds kept."""
    return at.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass
class Product:
    sku: str
    price: float
    stock: dict[str, int]


@dataclass
class Campaign:
    campaign_id: str
    channel: str
    cost_per_click: float
    clicks_since_report: int = 0


@dataclass(order=True)
class _Scheduled:
    at: datetime
    seq: int
    event: dict[str, Any] = field(compare=False)


@dataclass
class ShopConfig:
    """Knobs of the simulated shop."""

    seed: int = 7
    events_per_second: float = 200.0
    products: int = 60
    campaigns: int = 6
    initial_stock: int = 40
    restock_every: timedelta = timedelta(minutes=3)
    seasonal: bool = True
    payment_failure_share: float = 0.12  # chance that a payment attempt fails
    # A payment-provider incident (event-time start, end) during which attempts fail at
    # ``incident_failure_share``: the playground's way to show an alert end to end.
    payment_incident: tuple[datetime, datetime] | None = None
    incident_failure_share: float = 0.6
    # A campaign that keeps spending while none of its visitors buys (campaign id, event-time
    # start, end): the incident the action policies pause a campaign for.
    idle_campaign: tuple[str, datetime, datetime] | None = None


class Shop:
    """A deterministic shop simulation; iterate :meth:`events` for clean events."""

    # Mean events per session, measured from the funnel below; converts the requested
    # events/s into a session arrival rate.
    EVENTS_PER_SESSION = 5.0

    def __init__(self, config: ShopConfig, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self.config = config
        self.rng = random.Random(config.seed)
        self.start = start
        self._seq = 0
        self._queue: list[_Scheduled] = []
        self.products = [
            Product(
                sku=f"SKU-{i:04d}",
                price=round(self.rng.lognormvariate(3.3, 0.6), 2),
                stock={w: config.initial_stock for w in WAREHOUSES},
            )
            for i in range(config.products)
        ]
        self.campaigns = [
            Campaign(
                f"cmp-{i:02d}", self.rng.choice(CHANNELS), round(self.rng.uniform(0.2, 1.5), 2)
            )
            for i in range(config.campaigns)
        ]
        self.customers = [f"cust-{i:05d}" for i in range(2000)]

    # -- identifiers --------------------------------------------------------------------
    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _envelope(self, event_type: str, at: datetime, payload: dict[str, Any]) -> dict[str, Any]:
        return {
            "event_id": self._uuid(),
            "event_type": event_type,
            "schema_version": 1,
            "event_time": iso(at),
            "source": "generator",
            "sent_at": iso(at),
            "payload": payload,
        }

    def _schedule(self, at: datetime, event_type: str, payload: dict[str, Any]) -> None:
        self._seq += 1
        heapq.heappush(
            self._queue, _Scheduled(at, self._seq, self._envelope(event_type, at, payload))
        )

    # -- the funnel -----------------------------------------------------------------------
    def _session(self, at: datetime) -> None:
        rng = self.rng
        session_id = f"s-{self._uuid()[:12]}"
        anonymous_id = f"a-{self._uuid()[:12]}"
        customer = rng.choice(self.customers) if rng.random() < 0.45 else None
        country = rng.choices(COUNTRIES, COUNTRY_WEIGHTS)[0]
        device = rng.choices(DEVICES, (0.45, 0.48, 0.07))[0]
        campaign = rng.choice(self.campaigns) if rng.random() < 0.3 else None
        common = {
            "session_id": session_id,
            "anonymous_id": anonymous_id,
            "customer_id": customer,
            "country": country,
        }
        t = at
        if campaign is not None:
            campaign.clicks_since_report += 1
            self._schedule(t, "ad_click", {
                "click_id": f"clk-{self._uuid()[:12]}", "campaign_id": campaign.campaign_id,
                "channel": campaign.channel, "anonymous_id": anonymous_id, "country": country,
            })  # fmt: skip
            t += timedelta(milliseconds=rng.randint(300, 2000))
        pages = 1 + min(int(rng.expovariate(0.45)), 12)
        ip = f"203.0.113.{rng.randint(1, 254)}"
        cart: list[tuple[Product, int]] = []
        for seq in range(1, pages + 1):
            self._schedule(t, "page_view", {
                "session_id": session_id, "anonymous_id": anonymous_id, "customer_id": customer,
                "page_url": f"/p/{seq}", "referrer": "ad" if campaign else None, "page_seq": seq,
                "device": device, "country": country, "ip_address": ip,
            })  # fmt: skip
            t += timedelta(seconds=rng.uniform(2, 25))
            if rng.random() < 0.55:
                product = rng.choice(self.products)
                self._schedule(
                    t, "product_view", {**common, "sku": product.sku, "price": product.price}
                )
                t += timedelta(seconds=rng.uniform(2, 20))
                if rng.random() < 0.22:
                    quantity = rng.choice((1, 1, 1, 2, 3))
                    cart.append((product, quantity))
                    self._schedule(
                        t,
                        "add_to_cart",
                        {
                            **common,
                            "sku": product.sku,
                            "quantity": quantity,
                            "price": product.price,
                        },
                    )
                    t += timedelta(seconds=rng.uniform(1, 10))
        if not cart or rng.random() > 0.6:
            return
        cart_value = round(sum(p.price * q for p, q in cart), 2)
        self._schedule(
            t, "checkout_started", {**common, "cart_value": cart_value, "currency": "EUR"}
        )
        t += timedelta(seconds=rng.uniform(10, 60))
        if rng.random() > 0.7 or self._converts_not(campaign, t):
            return
        self._order(t, session_id, customer or f"guest-{anonymous_id}", country, cart, campaign)

    def _order(
        self,
        t: datetime,
        session_id: str,
        customer: str,
        country: str,
        cart: list[tuple[Product, int]],
        campaign: Campaign | None,
    ) -> None:
        rng = self.rng
        order_id = f"o-{self._uuid()[:12]}"
        amount = round(sum(p.price * q for p, q in cart), 2)
        local = customer.split("-")[-1]
        self._schedule(t, "order_placed", {
            "order_id": order_id, "session_id": session_id, "customer_id": customer,
            "email": f"{local}@example.com", "phone": f"+49 30 {rng.randint(1000000, 9999999)}",
            "amount": amount, "currency": "EUR", "country": country,
            "campaign_id": campaign.campaign_id if campaign else None,
            "items": [{"sku": p.sku, "quantity": q, "unit_price": p.price} for p, q in cart],
        })  # fmt: skip
        method = rng.choice(PAYMENT_METHODS)
        t += timedelta(seconds=rng.uniform(1, 8))
        attempts = 1
        failure_share = self._payment_failure_share(t)
        while rng.random() < failure_share and attempts < 3:
            self._schedule(t, "payment_failed", {
                "payment_id": f"pay-{self._uuid()[:12]}", "order_id": order_id, "amount": amount,
                "currency": "EUR", "method": method, "provider": "stripe",
                "failure_code": rng.choice(FAILURE_CODES),
            })  # fmt: skip
            attempts += 1
            t += timedelta(seconds=rng.uniform(5, 40))
        if rng.random() < 0.05:
            self._schedule(t, "order_cancelled", {
                "order_id": order_id, "customer_id": customer, "amount": amount, "currency": "EUR",
                "country": country, "reason": "payment_failed",
            })  # fmt: skip
            return
        payment_id = f"pay-{self._uuid()[:12]}"
        self._schedule(t, "payment_authorized", {
            "payment_id": payment_id, "order_id": order_id, "amount": amount,
            "currency": "EUR", "method": method, "provider": "stripe",
        })  # fmt: skip
        for product, quantity in cart:
            warehouse = max(product.stock, key=product.stock.get)
            taken = min(quantity, product.stock[warehouse])
            product.stock[warehouse] -= taken
            t += timedelta(milliseconds=rng.randint(50, 500))
            self._schedule(t, "inventory_adjusted", {
                "sku": product.sku, "warehouse": warehouse, "delta": -taken,
                "stock_after": product.stock[warehouse], "reason": "sale",
            })  # fmt: skip
        after = t + timedelta(seconds=rng.uniform(30, 240))
        if rng.random() < 0.04:
            self._schedule(after, "order_cancelled", {
                "order_id": order_id, "customer_id": customer, "amount": amount, "currency": "EUR",
                "country": country, "reason": rng.choice(("customer_request", "fraud", "out_of_stock")),
            })  # fmt: skip
        elif rng.random() < refund_probability(customer, [p.sku for p, _ in cart]):
            self._schedule(after, "refund_issued", {
                "refund_id": f"re-{self._uuid()[:12]}", "order_id": order_id, "payment_id": payment_id,
                "amount": round(amount * rng.choice((1.0, 1.0, 0.5)), 2), "currency": "EUR",
                "reason": rng.choice(REFUND_REASONS),
            })  # fmt: skip
        if rng.random() < 0.06:
            ticket_id = f"tk-{self._uuid()[:12]}"
            opened = after + timedelta(seconds=rng.uniform(5, 120))
            self._schedule(opened, "ticket_opened", {
                "ticket_id": ticket_id, "customer_id": customer, "email": f"{local}@example.com",
                "order_id": order_id, "channel": rng.choice(("email", "chat", "phone")),
                "topic": rng.choice(TICKET_TOPICS), "priority": rng.choice(("low", "normal", "normal", "high")),
                "message": f"Hi, this is {local}, call me on +49 30 {rng.randint(1000000, 9999999)}",
            })  # fmt: skip
            if rng.random() < 0.8:
                self._schedule(opened + timedelta(seconds=rng.uniform(60, 600)), "ticket_resolved", {
                    "ticket_id": ticket_id, "resolution": rng.choice(("solved", "refunded", "no_response")),
                    "satisfaction": rng.randint(1, 5),
                })  # fmt: skip

    def _converts_not(self, campaign: Campaign | None, at: datetime) -> bool:
        """Whether the session's campaign is in its idle-campaign incident (nobody buys)."""
        idle = self.config.idle_campaign
        return campaign is not None and idle is not None and campaign.campaign_id == idle[0] and idle[1] <= at < idle[2]

    def _payment_failure_share(self, at: datetime) -> float:
        incident = self.config.payment_incident
        if incident is not None and incident[0] <= at < incident[1]:
            return self.config.incident_failure_share
        return self.config.payment_failure_share

    def _ad_costs(self, at: datetime) -> None:
        for campaign in self.campaigns:
            spend = round(
                campaign.clicks_since_report * campaign.cost_per_click * self.rng.uniform(0.8, 1.2),
                2,
            )
            campaign.clicks_since_report = 0
            self._schedule(at, "ad_cost", {
                "campaign_id": campaign.campaign_id, "channel": campaign.channel, "amount": spend,
                "currency": "EUR", "impressions": self.rng.randint(100, 5000),
            })  # fmt: skip

    def _restock(self, at: datetime) -> None:
        for product in self.products:
            for warehouse, stock in product.stock.items():
                if stock < self.config.initial_stock // 4:
                    added = self.config.initial_stock - stock
                    product.stock[warehouse] = self.config.initial_stock
                    self._schedule(at, "inventory_adjusted", {
                        "sku": product.sku, "warehouse": warehouse, "delta": added,
                        "stock_after": self.config.initial_stock, "reason": "restock",
                    })  # fmt: skip

    # -- the clock ------------------------------------------------------------------------
    def events(self, until: datetime) -> Iterator[dict[str, Any]]:
        """Clean events with ``event_time`` < ``until``, in event-time order."""
        base_rate = self.config.events_per_second / self.EVENTS_PER_SESSION
        now = self.start
        next_minute = self.start + timedelta(minutes=1)
        next_restock = self.start + self.config.restock_every
        while True:
            factor = seasonality(now) if self.config.seasonal else 1.0
            now += timedelta(seconds=self.rng.expovariate(base_rate * factor))
            # Periodic reports are scheduled before the queue is drained, so they come out
            # in event-time order with everything else.
            while now >= next_minute and next_minute < until:
                self._ad_costs(next_minute)
                next_minute += timedelta(minutes=1)
            while now >= next_restock and next_restock < until:
                self._restock(next_restock)
                next_restock += self.config.restock_every
            while self._queue and self._queue[0].at <= now:
                item = heapq.heappop(self._queue)
                if item.at >= until:
                    return
                yield item.event
            if now >= until:
                if not self._queue:
                    return
                continue  # drain what is already scheduled before `until`
            self._session(now)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A UTC datetime (tests and the CLI use it for seeded start times)."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC)

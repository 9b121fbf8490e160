"""Refund-risk classifier: will an order be (partly) cancelled later?

Trained on the UCI Online Retail invoices when they are there, else on the playground shop's
own generated order history (:func:`generated_orders`). Retail: an order (invoice not starting with
``C``) is labelled 1 when the same customer later cancels (``C`` invoice) a
product of that order within ``LABEL_HORIZON_DAYS``; each cancellation line is
matched to the customer's latest earlier order containing that product.

Every feature is known at order time: the basket itself, calendar, country,
the customer's *past* orders/cancellations and the *past* cancellation rates of
the basket's products (as-of joins strictly before the order's timestamp), so a
time-based split has no leakage. The same pure function builds features for
training and for scoring playground orders.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from models.evaluation import SHARED_DATA

MODEL_NAME = "trivas-refund-risk"
LABEL_HORIZON_DAYS = 30
REVIEW_BUDGET = 0.05
RETAIL_PATH = SHARED_DATA / "online-retail" / "online_retail.csv.gz"
FEATURES = [
    "n_lines", "n_skus", "total_quantity", "amount", "log_amount", "mean_unit_price", "max_unit_price",
    "min_quantity", "hour", "weekday", "country_code", "customer_past_orders", "customer_past_cancellations",
    "customer_cancel_rate", "customer_past_amount_mean", "days_since_last_order", "customer_age_days",
    "sku_cancel_rate_mean", "sku_cancel_rate_max", "sku_past_orders_min",
]  # fmt: skip
ITEM_COLUMNS = ["order_id", "sku", "quantity", "unit_price"]
# Why an order is risky, in the review queue's words: the group of features that, blanked out
# (missing, as the classifier treats an unknown value), lowers the order's risk the most.
REASON_GROUPS = {
    "customer_history": ["customer_past_orders", "customer_past_cancellations", "customer_cancel_rate",
                         "customer_past_amount_mean", "days_since_last_order", "customer_age_days"],
    "product_return_rate": ["sku_cancel_rate_mean", "sku_cancel_rate_max", "sku_past_orders_min"],
    "amount_anomaly": ["n_lines", "n_skus", "total_quantity", "amount", "log_amount", "mean_unit_price",
                       "max_unit_price", "min_quantity"],
}  # fmt: skip


def top_reasons(classifier: HistGradientBoostingClassifier, features: pd.DataFrame) -> np.ndarray:
    """Each order's reason from :data:`REASON_GROUPS` (pure: a fitted classifier and features)."""
    risk = classifier.predict_proba(features[FEATURES])[:, 1]
    drops = []
    for columns in REASON_GROUPS.values():
        blanked = features[FEATURES].copy()
        blanked[columns] = np.nan
        drops.append(risk - classifier.predict_proba(blanked)[:, 1])
    return np.array(list(REASON_GROUPS))[np.argmax(np.vstack(drops), axis=0)]


@dataclass
class RefundHistory:
    """Aggregates of the past used as priors when scoring new orders.

    Attributes:
        customers: ``customer_id`` -> past orders, cancellations, amount sum, first/last time.
        skus: ``sku`` -> past order lines and cancellation lines.
        countries: Country name -> integer code (unknown = -1).
    """

    customers: pd.DataFrame
    skus: pd.DataFrame
    countries: dict[str, int]

    @classmethod
    def empty(cls) -> RefundHistory:
        """No prior knowledge."""
        customers = pd.DataFrame(
            columns=["orders", "cancellations", "amount_sum", "first_time", "last_time"]
        ).rename_axis("customer_id")
        skus = pd.DataFrame(columns=["lines", "cancel_lines"]).rename_axis("sku")
        return cls(customers, skus, {})


def explode_items(orders: pd.DataFrame) -> pd.DataFrame:
    """One row per basket item: ``order_id, sku, quantity, unit_price``.

    ``items`` may be a list of dicts or its JSON string.
    """
    rows = []
    for order_id, items in zip(orders["order_id"], orders["items"], strict=True):
        parsed = (
            json.loads(items) if isinstance(items, str) else (items if items is not None else [])
        )
        for item in parsed:
            rows.append(
                (order_id, str(item["sku"]), float(item["quantity"]), float(item["unit_price"]))
            )
    return pd.DataFrame(rows, columns=ITEM_COLUMNS)


def build_order_features(
    orders: pd.DataFrame,
    cancellations: pd.DataFrame | None = None,
    history: RefundHistory | None = None,
) -> pd.DataFrame:
    """Order-time features of orders (pure: no I/O, no model).

    Args:
        orders: One row per order with columns
            ``order_id`` (str), ``customer_id`` (str, may be null for guests),
            ``event_time`` (timestamp; naive = UTC), ``amount`` (float, order total),
            ``items`` (list of ``{"sku": str, "quantity": float, "unit_price": float}``
            or its JSON string) and ``country`` (str).
        cancellations: Optional past/parallel cancellations with ``customer_id``,
            ``event_time`` and ``items`` (same item shape); they count only for
            orders strictly later than them.
        history: Priors from before ``orders`` (e.g. the training data's aggregates
            saved with the model); customer and product counts add to them.

    Returns:
        A frame indexed like ``orders`` with the :data:`FEATURES` columns. Customer
        and product statistics use only events strictly before each order.
    """
    history = history or RefundHistory.empty()
    orders = orders.copy()
    # One resolution for every as-of join (Arrow gives microseconds, pandas nanoseconds).
    orders["event_time"] = pd.to_datetime(orders["event_time"], utc=True).astype(
        "datetime64[ns, UTC]"
    )
    orders["customer_id"] = orders["customer_id"].astype("string")
    orders["_row"] = np.arange(len(orders))
    items = explode_items(orders)
    basket = _basket_features(orders, items)
    customer = _customer_features(orders, cancellations, history)
    sku = _sku_features(orders, items, cancellations, history)
    features = pd.concat([basket, customer, sku], axis=1)
    features["hour"] = orders["event_time"].dt.hour.to_numpy()
    features["weekday"] = orders["event_time"].dt.weekday.to_numpy()
    features["country_code"] = orders["country"].map(history.countries).fillna(-1).to_numpy()
    features.index = orders.index
    return features[FEATURES].astype(float)


def _basket_features(orders: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    g = items.groupby("order_id")
    per_order = pd.DataFrame(
        {
            "n_lines": g.size(),
            "n_skus": g["sku"].nunique(),
            "total_quantity": g["quantity"].sum(),
            "mean_unit_price": g["unit_price"].mean(),
            "max_unit_price": g["unit_price"].max(),
            "min_quantity": g["quantity"].min(),
        }
    )
    out = per_order.reindex(orders["order_id"].to_numpy()).fillna(0.0).reset_index(drop=True)
    out["amount"] = orders["amount"].astype(float).to_numpy()
    out["log_amount"] = np.log1p(np.maximum(out["amount"], 0.0))
    return out


def _events(frame: pd.DataFrame | None, kind: str) -> pd.DataFrame:
    if frame is None or len(frame) == 0:
        return pd.DataFrame(
            {
                "customer_id": pd.Series(dtype="string"),
                "event_time": pd.Series(dtype="datetime64[ns, UTC]"),
                "kind": kind,
            }
        )
    return pd.DataFrame(
        {
            "customer_id": frame["customer_id"].astype("string").reset_index(drop=True),
            "event_time": pd.to_datetime(frame["event_time"], utc=True)
            .astype("datetime64[ns, UTC]")
            .reset_index(drop=True),
            "kind": kind,
        }
    )


def _with_prior(in_frame: pd.Series, prior: pd.Series) -> np.ndarray:
    """Counts seen in the scored frame plus the training priors (a missing one counts 0)."""
    return in_frame.fillna(0).to_numpy(float) + pd.to_numeric(prior, errors="coerce").fillna(0).to_numpy(float)


def _customer_features(
    orders: pd.DataFrame, cancellations: pd.DataFrame | None, history: RefundHistory
) -> pd.DataFrame:
    past_orders = orders[["customer_id", "event_time", "amount"]].dropna(subset=["customer_id"])
    past_orders = past_orders.sort_values("event_time")
    g = past_orders.groupby("customer_id")
    past_orders = past_orders.assign(
        c_orders=g.cumcount() + 1,
        c_amount=g["amount"].cumsum(),
        c_first=g["event_time"].transform("min"),
    )
    cancel = (
        _events(cancellations, "cancel").dropna(subset=["customer_id"]).sort_values("event_time")
    )
    cancel = cancel.assign(c_cancels=cancel.groupby("customer_id").cumcount() + 1)

    query = orders[["customer_id", "event_time", "_row"]].sort_values("event_time")
    known = query.dropna(subset=["customer_id"])
    asof = pd.merge_asof(
        known, past_orders[["customer_id", "event_time", "c_orders", "c_amount"]].rename(columns={"event_time": "last_time"}),
        left_on="event_time", right_on="last_time", by="customer_id", allow_exact_matches=False,
    )  # fmt: skip
    asof = pd.merge_asof(
        asof.sort_values("event_time"), cancel[["customer_id", "event_time", "c_cancels"]],
        on="event_time", by="customer_id", allow_exact_matches=False,
    )  # fmt: skip
    prior = history.customers.reindex(asof["customer_id"].to_numpy())
    n_orders = _with_prior(asof["c_orders"], prior["orders"])
    n_cancels = _with_prior(asof["c_cancels"], prior["cancellations"])
    amount_sum = _with_prior(asof["c_amount"], prior["amount_sum"])
    last_time = asof["last_time"].where(
        asof["last_time"].notna(), pd.to_datetime(prior["last_time"].to_numpy(), utc=True)
    )
    first_time = pd.to_datetime(prior["first_time"].to_numpy(), utc=True)
    first_in_frame = asof["customer_id"].map(past_orders.groupby("customer_id")["event_time"].min())
    first_time = pd.Series(first_time, index=asof.index).fillna(first_in_frame)
    now = asof["event_time"]
    out = pd.DataFrame(index=asof["_row"].to_numpy())
    out["customer_past_orders"] = n_orders
    out["customer_past_cancellations"] = n_cancels
    out["customer_cancel_rate"] = (n_cancels + 0.1) / (n_orders + 1.0)  # smoothed towards ~10 %
    out["customer_past_amount_mean"] = np.where(
        n_orders > 0, amount_sum / np.maximum(n_orders, 1), np.nan
    )
    out["days_since_last_order"] = ((now - last_time).dt.total_seconds() / 86400).to_numpy()
    age = ((now - first_time).dt.total_seconds() / 86400).to_numpy()
    out["customer_age_days"] = np.where(age > 0, age, 0.0)
    full = pd.DataFrame(index=np.arange(len(orders)), columns=out.columns, dtype=float)
    full.loc[out.index, out.columns] = out.to_numpy()
    full.loc[~full.index.isin(out.index), "customer_cancel_rate"] = np.nan  # guests: unknown
    return full.reset_index(drop=True)


def _sku_features(
    orders: pd.DataFrame,
    items: pd.DataFrame,
    cancellations: pd.DataFrame | None,
    history: RefundHistory,
) -> pd.DataFrame:
    times = orders.set_index("order_id")["event_time"]
    lines = items.assign(
        event_time=pd.to_datetime(times.reindex(items["order_id"]).to_numpy(), utc=True)
    )
    lines = lines.sort_values("event_time")
    lines = lines.assign(c_lines=lines.groupby("sku").cumcount() + 1)
    if cancellations is not None and len(cancellations):
        cancel_items = explode_items(cancellations.assign(order_id=np.arange(len(cancellations))))
        ctimes = (
            pd.to_datetime(cancellations["event_time"], utc=True)
            .astype("datetime64[ns, UTC]")
            .reset_index(drop=True)
        )
        cancel_items["event_time"] = ctimes.iloc[cancel_items["order_id"].to_numpy()].to_numpy()
        cancel_items["event_time"] = pd.to_datetime(cancel_items["event_time"], utc=True)
        cancel_items = cancel_items.sort_values("event_time")
        cancel_items = cancel_items.assign(c_cancel=cancel_items.groupby("sku").cumcount() + 1)
    else:
        cancel_items = pd.DataFrame(
            {
                "sku": pd.Series(dtype=str),
                "event_time": pd.Series(dtype="datetime64[ns, UTC]"),
                "c_cancel": pd.Series(dtype=float),
            }
        )
    query = lines[["order_id", "sku", "event_time"]]
    asof = pd.merge_asof(
        query,
        lines[["sku", "event_time", "c_lines"]],
        on="event_time",
        by="sku",
        allow_exact_matches=False,
    )
    asof = pd.merge_asof(
        asof,
        cancel_items[["sku", "event_time", "c_cancel"]],
        on="event_time",
        by="sku",
        allow_exact_matches=False,
    )
    prior = history.skus.reindex(asof["sku"].to_numpy())
    past_lines = _with_prior(asof["c_lines"], prior["lines"])
    past_cancels = _with_prior(asof["c_cancel"], prior["cancel_lines"])
    asof["rate"] = (past_cancels + 0.2) / (
        past_lines + 10.0
    )  # shrunk towards 2 % for rare products
    asof["past_lines"] = past_lines
    g = asof.groupby("order_id")
    per_order = pd.DataFrame(
        {
            "sku_cancel_rate_mean": g["rate"].mean(),
            "sku_cancel_rate_max": g["rate"].max(),
            "sku_past_orders_min": g["past_lines"].min(),
        }
    )
    return per_order.reindex(orders["order_id"].to_numpy()).reset_index(drop=True)


def history_from(
    orders: pd.DataFrame, cancellations: pd.DataFrame, countries: dict[str, int]
) -> RefundHistory:
    """Aggregates of past orders/cancellations, to score later orders with."""
    o = orders.dropna(subset=["customer_id"]).assign(
        event_time=lambda d: pd.to_datetime(d["event_time"], utc=True)
    )
    customers = o.groupby("customer_id").agg(
        orders=("order_id", "size"),
        amount_sum=("amount", "sum"),
        first_time=("event_time", "min"),
        last_time=("event_time", "max"),
    )
    c = cancellations.dropna(subset=["customer_id"])
    customers["cancellations"] = c.groupby("customer_id").size().reindex(customers.index).fillna(0)
    skus = explode_items(orders).groupby("sku").size().rename("lines").to_frame()
    citems = explode_items(cancellations.assign(order_id=np.arange(len(cancellations))))
    skus["cancel_lines"] = citems.groupby("sku").size().reindex(skus.index).fillna(0)
    return RefundHistory(customers, skus, countries)


@dataclass
class RetailOrders:
    """Online Retail invoices in the playground's order shape, with labels."""

    orders: pd.DataFrame
    cancellations: pd.DataFrame
    labels: pd.Series


def read_retail_lines(path: Path = RETAIL_PATH) -> pd.DataFrame:
    """The UCI file's invoice lines as they are, plus ``event_time`` (``InvoiceDate`` read as
    UTC), ``customer_id`` (text, missing when the line has none) and ``is_cancel`` (an
    ``InvoiceNo`` starting with ``C``): the one reader of the file (training, backfill)."""
    raw = pd.read_csv(path, dtype={"InvoiceNo": str, "StockCode": str})
    raw["event_time"] = pd.to_datetime(raw["InvoiceDate"], utc=True)
    raw["customer_id"] = (
        raw["CustomerID"].map(lambda v: None if pd.isna(v) else str(int(v))).astype("string")
    )
    raw["is_cancel"] = raw["InvoiceNo"].str.startswith("C")
    return raw


def load_retail_orders(
    path: Path = RETAIL_PATH, horizon_days: int = LABEL_HORIZON_DAYS
) -> RetailOrders:
    """Read the UCI file and label orders later cancelled by their customer.

    Each cancellation line (customer, sku) is matched to the customer's latest
    order of that sku before the cancellation; that order is positive if the
    cancellation comes within ``horizon_days``.
    """
    raw = read_retail_lines(path)
    raw = raw[raw["StockCode"].notna()]
    sales = raw[~raw["is_cancel"] & (raw["Quantity"] > 0)]
    cancels = raw[raw["is_cancel"]]

    orders = _invoices(sales)
    cancellations = _invoices(cancels.assign(Quantity=cancels["Quantity"].abs()))

    lines = sales[["InvoiceNo", "customer_id", "StockCode", "event_time"]].dropna(
        subset=["customer_id"]
    )
    lines = lines.drop_duplicates(["InvoiceNo", "StockCode"]).sort_values("event_time")
    cl = (
        cancels[["customer_id", "StockCode", "event_time"]]
        .dropna(subset=["customer_id"])
        .sort_values("event_time")
    )
    matched = pd.merge_asof(
        cl, lines.rename(columns={"event_time": "order_time"}),
        left_on="event_time", right_on="order_time", by=["customer_id", "StockCode"], direction="backward",
    )  # fmt: skip
    within = matched["InvoiceNo"].notna() & (
        matched["event_time"] - matched["order_time"] <= pd.Timedelta(days=horizon_days)
    )
    positive = set(matched.loc[within, "InvoiceNo"])
    labels = orders["order_id"].isin(positive).astype(int)
    return RetailOrders(orders, cancellations, labels)


GENERATED_HISTORY_DAYS = 14


def generated_orders(
    days: int = GENERATED_HISTORY_DAYS,
    end: datetime | None = None,
    seed: int = 11,
    events_per_second: float = 1.0,
) -> RetailOrders:
    """The playground shop's own order history: ``days`` of simulated traffic ending at ``end``.

    Labelled like the retail data: an order is positive when a refund or cancellation of it
    follows within :data:`LABEL_HORIZON_DAYS`; a reversal is a "cancellation" of that order's
    items by its customer. The simulated shop uses the live generator's customer and product
    ids, so the priors learned here apply to the playground's live orders.
    """
    from lakehouse.generator.shop import Shop, ShopConfig

    end = end or datetime.now(UTC).replace(microsecond=0)
    shop = Shop(
        ShopConfig(seed=seed, events_per_second=events_per_second), end - timedelta(days=days)
    )
    placed, reversed_at = [], {}
    for event in shop.events(end):
        payload = event["payload"]
        if event["event_type"] == "order_placed":
            placed.append(
                {
                    key: payload[key]
                    for key in ("order_id", "customer_id", "amount", "items", "country")
                }
                | {"event_time": event["event_time"]}
            )
        elif event["event_type"] in ("refund_issued", "order_cancelled"):
            reversed_at.setdefault(payload["order_id"], event["event_time"])
    orders = pd.DataFrame(
        placed, columns=["order_id", "customer_id", "event_time", "amount", "items", "country"]
    )
    orders["event_time"] = pd.to_datetime(orders["event_time"], utc=True)
    orders = orders.sort_values("event_time").reset_index(drop=True)
    reversal_time = pd.to_datetime(orders["order_id"].map(reversed_at), utc=True)
    within = reversal_time.notna() & (
        reversal_time - orders["event_time"] <= pd.Timedelta(days=LABEL_HORIZON_DAYS)
    )
    cancellations = orders.loc[reversal_time.notna(), ["customer_id", "items"]].assign(
        event_time=reversal_time[reversal_time.notna()]
    )
    cancellations = cancellations.sort_values("event_time").reset_index(drop=True)
    return RetailOrders(orders, cancellations, within.astype(int))


def generated_split(data: RetailOrders) -> dict[str, str]:
    """Time split of generated history: the first two thirds train, a day's gap, the rest is
    the holdout (generated reversals come within minutes, so a day keeps labels apart)."""
    t = pd.to_datetime(data.orders["event_time"], utc=True)
    train_end = t.min() + (t.max() - t.min()) * 2 / 3
    return {
        "train_end": train_end.isoformat(),
        "holdout_start": (train_end + pd.Timedelta(days=1)).isoformat(),
        "holdout_end": t.max().isoformat(),
    }


def _invoices(lines: pd.DataFrame) -> pd.DataFrame:
    lines = lines.assign(line_amount=lines["Quantity"] * lines["UnitPrice"])
    g = lines.groupby("InvoiceNo", sort=False)
    items = g[["StockCode", "Quantity", "UnitPrice"]].apply(
        lambda d: [
            {"sku": s, "quantity": float(q), "unit_price": float(p)}
            for s, q, p in d.itertuples(index=False)
        ]
    )
    out = pd.DataFrame(
        {
            "order_id": g.size().index.astype(str),
            "customer_id": g["customer_id"].first().to_numpy(),
            "event_time": g["event_time"].min().to_numpy(),
            "amount": g["line_amount"].sum().to_numpy(),
            "items": items.reindex(g.size().index).to_numpy(),
            "country": g["Country"].first().to_numpy(),
        }
    )
    return out.sort_values("event_time").reset_index(drop=True)


def precision_at_budget(
    labels: np.ndarray, scores: np.ndarray, budget: float = REVIEW_BUDGET
) -> float:
    """Share of true positives among the top ``budget`` fraction of orders by score."""
    k = max(1, int(round(budget * len(scores))))
    top = np.argsort(-np.asarray(scores), kind="stable")[:k]
    return float(np.asarray(labels)[top].mean())


@dataclass
class RefundModel:
    """Fitted classifier plus the priors needed to score new orders."""

    classifier: HistGradientBoostingClassifier
    history: RefundHistory
    review_threshold: float

    def score(
        self, orders: pd.DataFrame, cancellations: pd.DataFrame | None = None, with_reasons: bool = False
    ) -> pd.DataFrame:
        """Refund risk of orders (see :func:`build_order_features` for the input).

        Returns:
            ``order_id, refund_risk, review`` (review = risk in the top-5 % budget seen in
            training), and ``reason`` (:func:`top_reasons`) when asked for.
        """
        features = build_order_features(orders, cancellations, self.history)
        risk = self.classifier.predict_proba(features[FEATURES])[:, 1]
        scored = pd.DataFrame(
            {
                "order_id": orders["order_id"].astype(str).to_numpy(),
                "refund_risk": risk,
                "review": risk >= self.review_threshold,
            }
        )
        if with_reasons:
            scored["reason"] = top_reasons(self.classifier, features)
        return scored


@dataclass
class RefundTraining:
    """Fitted model and holdout metrics."""

    model: RefundModel
    metrics: dict[str, float]


def train_refund_model(
    data: RetailOrders,
    train_end: str = "2011-08-01",
    holdout_start: str = "2011-09-01",
    holdout_end: str = "2011-11-09",
    seed: int = 0,
) -> RefundTraining:
    """Fit on orders before ``train_end``; evaluate on ``[holdout_start, holdout_end)``.

    The month between train end and holdout start keeps the training labels
    (cancellations up to 30 days later) from overlapping the holdout; the holdout
    ends 30 days before the data so its labels are not censored.
    """
    features = build_order_features(data.orders, data.cancellations, RefundHistory(
        RefundHistory.empty().customers, RefundHistory.empty().skus, _country_codes(data.orders, train_end)))  # fmt: skip
    t = pd.to_datetime(data.orders["event_time"], utc=True)
    train = (t < pd.Timestamp(train_end, tz="UTC")).to_numpy()
    hold = (
        (t >= pd.Timestamp(holdout_start, tz="UTC")) & (t < pd.Timestamp(holdout_end, tz="UTC"))
    ).to_numpy()
    y = data.labels.to_numpy()
    clf = HistGradientBoostingClassifier(
        max_iter=300, learning_rate=0.05, max_leaf_nodes=31, min_samples_leaf=40, l2_regularization=1.0,
        categorical_features=[FEATURES.index("country_code")], random_state=seed,
    )  # fmt: skip
    x = features[FEATURES].to_numpy()
    x_cat = x.copy()
    x_cat[:, FEATURES.index("country_code")] = np.where(
        x_cat[:, FEATURES.index("country_code")] < 0,
        np.nan,
        x_cat[:, FEATURES.index("country_code")],
    )
    started = time.perf_counter()
    clf.fit(x_cat[train], y[train])
    fit_seconds = time.perf_counter() - started
    risk = clf.predict_proba(x_cat[hold])[:, 1]
    baseline = (
        features["customer_cancel_rate"]
        .fillna(features["customer_cancel_rate"].median())
        .to_numpy()[hold]
    )
    train_risk = clf.predict_proba(x_cat[train])[:, 1]
    metrics = {
        "holdout_roc_auc": float(roc_auc_score(y[hold], risk)),
        "holdout_precision_at_5pct": precision_at_budget(y[hold], risk),
        "holdout_positive_rate": float(y[hold].mean()),
        "baseline_customer_rate_roc_auc": float(roc_auc_score(y[hold], baseline)),
        "baseline_customer_rate_precision_at_5pct": precision_at_budget(y[hold], baseline),
        "train_orders": float(train.sum()),
        "holdout_orders": float(hold.sum()),
        "fit_seconds": fit_seconds,
    }
    threshold = float(np.quantile(train_risk, 1 - REVIEW_BUDGET))
    history = history_from(data.orders, data.cancellations, _country_codes(data.orders, train_end))
    return RefundTraining(RefundModel(_NanCountry(clf), history, threshold), metrics)


def _country_codes(orders: pd.DataFrame, before: str) -> dict[str, int]:
    seen = orders.loc[
        pd.to_datetime(orders["event_time"], utc=True) < pd.Timestamp(before, tz="UTC"), "country"
    ]
    return {c: i for i, c in enumerate(sorted(seen.dropna().unique()))}


class _NanCountry:
    """Maps unknown countries (-1) to NaN, HistGradientBoosting's missing category."""

    def __init__(self, clf: HistGradientBoostingClassifier) -> None:
        self.clf = clf

    def predict_proba(self, x: pd.DataFrame | np.ndarray) -> np.ndarray:
        arr = np.asarray(x, float).copy()
        col = FEATURES.index("country_code")
        arr[:, col] = np.where(arr[:, col] < 0, np.nan, arr[:, col])
        return self.clf.predict_proba(arr)


class RefundRiskPyfunc(mlflow.pyfunc.PythonModel):
    """pyfunc: orders in (``items`` as JSON string), ``order_id, refund_risk, review`` out."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        """Load the pickled :class:`RefundModel`."""
        import pickle

        with open(context.artifacts["model"], "rb") as fh:
            self.model = pickle.load(fh)  # noqa: S301 - our own artifact

    def predict(
        self, context, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:  # noqa: ANN001
        """Score orders."""
        return self.model.score(pd.DataFrame(model_input))


def register_refund_model(
    training: RefundTraining,
    *,
    tracking_uri: str | None = None,
    model_name: str = MODEL_NAME,
    alias: str = "champion",
    training_data: str = "online_retail",
) -> str:
    """Log the model with metrics and register it under ``alias``; returns the version.

    ``training_data`` names what it was fitted on (``online_retail`` or ``generated``).
    """
    import pickle

    from models.registry import _use

    client = _use(tracking_uri)
    mlflow.set_experiment("trivas-refund-risk")
    signature = ModelSignature(
        inputs=Schema([
            ColSpec("string", "order_id"), ColSpec("string", "customer_id", required=False), ColSpec("datetime", "event_time"),
            ColSpec("double", "amount"), ColSpec("string", "items"), ColSpec("string", "country"),
        ]),
        outputs=Schema([ColSpec("string", "order_id"), ColSpec("double", "refund_risk"), ColSpec("boolean", "review")]),
    )  # fmt: skip
    example = pd.DataFrame(
        {
            "order_id": ["o-1"], "customer_id": ["12345"], "event_time": [pd.Timestamp("2011-10-01 10:00")],
            "amount": [35.5], "items": [json.dumps([{"sku": "85123A", "quantity": 6, "unit_price": 2.55}])],
            "country": ["United Kingdom"],
        }
    )  # fmt: skip
    with (
        mlflow.start_run(run_name=f"refund-risk-{time.strftime('%Y%m%d-%H%M%S')}"),
        tempfile.TemporaryDirectory() as tmp,
    ):
        mlflow.log_params({
            "label_horizon_days": LABEL_HORIZON_DAYS, "review_budget": REVIEW_BUDGET, "features": ",".join(FEATURES),
            "training_data": training_data,
        })  # fmt: skip
        mlflow.log_metrics(training.metrics)
        path = Path(tmp) / "refund_model.pkl"
        path.write_bytes(pickle.dumps(training.model))
        info = mlflow.pyfunc.log_model(
            name="model", python_model=RefundRiskPyfunc(), artifacts={"model": str(path)},
            code_paths=[str(Path(__file__).resolve().parent)], signature=signature, input_example=example,
            registered_model_name=model_name,
        )  # fmt: skip
    version = str(info.registered_model_version)
    client.set_model_version_tag(model_name, version, "training_data", training_data)
    client.set_registered_model_alias(model_name, alias, version)
    return version


def load_refund_model(
    alias: str = "champion", *, tracking_uri: str | None = None, model_name: str = MODEL_NAME
) -> RefundModel:
    """The registered :class:`RefundModel` behind an alias."""
    from models.registry import _use

    _use(tracking_uri)
    return mlflow.pyfunc.load_model(f"models:/{model_name}@{alias}").unwrap_python_model().model

"""Refund-risk features are causal; the classifier beats trivial baselines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models import refund_risk as rr


def playground_orders() -> pd.DataFrame:
    """Orders in the playground's shape (one customer ordering twice, one guest)."""
    return pd.DataFrame(
        {
            "order_id": ["o1", "o2", "o3"],
            "customer_id": ["c1", "c1", None],
            "event_time": pd.to_datetime(
                ["2024-05-01 10:00", "2024-05-03 18:30", "2024-05-02 09:00"], utc=True
            ),
            "amount": [30.0, 12.0, 99.0],
            "items": [
                [
                    {"sku": "A", "quantity": 2, "unit_price": 10.0},
                    {"sku": "B", "quantity": 1, "unit_price": 10.0},
                ],
                [{"sku": "A", "quantity": 1, "unit_price": 12.0}],
                '[{"sku": "C", "quantity": 3, "unit_price": 33.0}]',
            ],
            "country": ["France", "France", "Germany"],
        }
    )


@pytest.mark.unit
def test_features_use_only_the_past() -> None:
    cancellations = pd.DataFrame(
        {"customer_id": ["c1"], "event_time": pd.to_datetime(["2024-05-02 12:00"], utc=True),
         "items": [[{"sku": "A", "quantity": 2, "unit_price": 10.0}]]}
    )  # fmt: skip
    f = rr.build_order_features(playground_orders(), cancellations)
    assert list(f.columns) == rr.FEATURES
    assert f.loc[0, "customer_past_orders"] == 0 and f.loc[1, "customer_past_orders"] == 1
    assert (
        f.loc[0, "customer_past_cancellations"] == 0
        and f.loc[1, "customer_past_cancellations"] == 1
    )
    assert f.loc[1, "days_since_last_order"] == pytest.approx(2.3541, abs=1e-3)
    # Product A: no past line for o1; for o2 one past line (o1) and one past cancellation.
    assert f.loc[1, "sku_cancel_rate_max"] > f.loc[0, "sku_cancel_rate_max"]
    assert f.loc[0, "n_lines"] == 2 and f.loc[2, "total_quantity"] == 3
    assert np.isnan(f.loc[2, "customer_cancel_rate"])  # guest


@pytest.mark.unit
def test_precision_at_budget() -> None:
    labels = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 1] * 10)
    scores = np.linspace(1, 0, 100)
    assert rr.precision_at_budget(labels, scores, 0.05) == pytest.approx(1 / 5)


@pytest.mark.slow
def test_classifier_beats_trivial_baselines_on_a_time_split(shared_data, tracking_uri: str) -> None:
    data = rr.load_retail_orders(shared_data / "online-retail" / "online_retail.csv.gz")
    # A sample: ~60 % of customers (stable hash of the id), all their orders.
    keep = (
        pd.util.hash_pandas_object(data.orders["customer_id"].fillna("guest"), index=False) % 5 < 3
    )
    sample = rr.RetailOrders(
        data.orders[keep].reset_index(drop=True),
        data.cancellations,
        data.labels[keep].reset_index(drop=True),
    )
    training = rr.train_refund_model(sample)
    m = training.metrics
    assert m["holdout_roc_auc"] > 0.65
    assert m["holdout_precision_at_5pct"] > 1.5 * m["holdout_positive_rate"]
    assert m["holdout_roc_auc"] > m["baseline_customer_rate_roc_auc"]
    version = rr.register_refund_model(training, tracking_uri=tracking_uri)
    loaded = rr.load_refund_model(tracking_uri=tracking_uri)
    scored = loaded.score(playground_orders())
    assert version == "1" and scored["refund_risk"].between(0, 1).all() and len(scored) == 3


@pytest.mark.unit
def test_without_retail_data_the_model_learns_from_generated_history() -> None:
    """The playground's fallback: the simulated shop's own orders, split in time."""
    from datetime import UTC, datetime

    from lakehouse.generator.shop import refund_probability

    data = rr.generated_orders(days=10, end=datetime(2026, 11, 2, tzinfo=UTC))
    assert len(data.orders) == len(data.labels) > 10_000
    assert data.orders["event_time"].is_monotonic_increasing
    # Labels are the generator's refunds/cancellations: serial returners and troubled products
    # carry more of them, and the base rate stays near the simulated one.
    risk = [
        refund_probability(c, [i["sku"] for i in items])
        for c, items in zip(data.orders["customer_id"], data.orders["items"], strict=True)
    ]
    high = np.asarray(risk) > 0.1
    assert data.labels[high].mean() > 2 * data.labels[~high].mean()
    training = rr.train_refund_model(data, **rr.generated_split(data))
    m = training.metrics
    # Out of sample (the last third, a day after training ends): the review queue it fills
    # holds clearly more refunds than a random pick of the same size.
    assert m["holdout_orders"] > 2_000
    assert m["holdout_precision_at_5pct"] > 1.5 * m["holdout_positive_rate"]
    assert m["holdout_roc_auc"] > 0.52


@pytest.mark.unit
@pytest.mark.parametrize(("driver", "reason"), [("customer_cancel_rate", "customer_history"), ("sku_cancel_rate_max", "product_return_rate"), ("amount", "amount_anomaly")])
def test_the_review_reason_is_the_feature_group_that_drives_the_risk(driver: str, reason: str) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(3)
    features = pd.DataFrame(rng.uniform(0, 1, size=(2_000, len(rr.FEATURES))), columns=rr.FEATURES)
    labels = (features[driver] > 0.8).astype(int)
    classifier = HistGradientBoostingClassifier(random_state=0).fit(features, labels)
    risky = features[features[driver] > 0.9].head(20)
    assert set(rr.top_reasons(classifier, risky)) == {reason}

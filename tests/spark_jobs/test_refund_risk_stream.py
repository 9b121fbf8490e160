"""The refund-risk job on a real stream: silver.orders (Delta) → gold.refund_risk.

The champion is trained on a sample of the real Online Retail invoices and registered in a
real MLflow sqlite registry in ``tmp_path``; silver rows are appended in silver's schema.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from lakehouse.catalog import Catalog
from lakehouse.config import Settings
from lakehouse.registry import SILVER_EVENTS, silver_events_schema
from lakehouse.tables import ensure_declared, read_table
from models import champion
from models import refund_risk as rr
from spark_jobs import refund_risk
from spark_jobs.io import append_idempotent

pytestmark = [pytest.mark.spark, pytest.mark.integration, pytest.mark.slow]
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture()
def lake(lake: Settings) -> Settings:
    # The real data is part of the workspace (../shared/data); without it this must fail, not
    # pass silently.
    assert rr.RETAIL_PATH.exists(), f"Online Retail data not found at {rr.RETAIL_PATH}"
    return lake


def order_event(order_id: str, minute: int, *, event_type: str = "order_placed", customer: str = "tok-c1", offset: int = 0, **payload) -> dict:  # noqa: ANN003
    """One silver.orders row (envelope + payload + lineage) with keyword overrides."""
    at = T0 + timedelta(minutes=minute)
    row = {
        "event_id": str(uuid.uuid4()), "event_type": event_type, "schema_version": 1, "event_time": at,
        "source": "shop", "sent_at": at, "order_id": order_id, "customer_id": customer, "amount": 42.0,
        "currency": "EUR", "country": "DE",
        "items": [{"sku": "SKU-1", "quantity": 2, "unit_price": 12.5}, {"sku": "SKU-7", "quantity": 1, "unit_price": 17.0}],
        "kafka_topic": "raw.orders", "kafka_partition": 0, "kafka_offset": offset, "ingested_at": at,
    }  # fmt: skip
    row.update(payload)
    return row


def append_orders(spark, settings: Settings, catalog: Catalog, rows: list[dict], version: int) -> None:  # noqa: ANN001
    """Append order rows to ``silver.events`` (``silver.orders`` is its view of the orders)."""
    schema = silver_events_schema(catalog)
    rows = [{**r, "domain": "orders"} for r in rows]
    frame = spark.createDataFrame([tuple(r.get(f) for f in schema.fieldNames()) for r in rows], schema)
    append_idempotent(frame, settings, SILVER_EVENTS, "test_silver", version)


def run_job(spark, settings: Settings, catalog: Catalog) -> None:  # noqa: ANN001
    options = refund_risk.RefundRiskOptions(alias_check_seconds=0)
    for query in refund_risk.run(spark, settings, catalog, available_now=True, options=options):
        query.awaitTermination(300)
        assert query.exception() is None


def test_orders_are_scored_once_by_the_current_champion(spark, lake: Settings, catalog: Catalog) -> None:  # noqa: ANN001
    uri = lake.mlflow.tracking_uri
    name = lake.mlflow.refund_model
    with pytest.raises(LookupError, match="trivas model bootstrap"):
        refund_risk.run(spark, lake, catalog, available_now=True)
    assert champion.ensure_refund_champion(uri, name, sample_share=0.15) == "1"
    assert champion.ensure_refund_champion(uri, name) == "1"  # idempotent: no retraining

    ensure_declared(spark, lake, SILVER_EVENTS)
    first = [
        order_event("o-1", 0, offset=0),
        order_event("o-2", 1, customer="tok-c2", amount=980.0, country="FR", offset=1,
                    items=[{"sku": "SKU-9", "quantity": 40, "unit_price": 24.5}]),
        order_event("o-1", 1, offset=2),  # a second copy of o-1 under another event id
        order_event("o-1", 3, event_type="order_cancelled", offset=3, items=None, reason="customer_request"),
        order_event("o-3", 4, customer=None, offset=4),  # guest
    ]  # fmt: skip
    append_orders(spark, lake, catalog, first, 0)
    run_job(spark, lake, catalog)
    scored = read_table(spark, lake, refund_risk.REFUND_RISK_TABLE).toPandas().sort_values("order_id")
    assert scored["order_id"].tolist() == ["o-1", "o-2", "o-3"]
    assert scored["model_version"].tolist() == ["1", "1", "1"]
    assert scored["refund_risk"].between(0, 1).all() and scored["review"].dtype == bool
    assert scored["refund_risk"].nunique() > 1  # the basket matters
    assert scored["reason"].isin(list(rr.REASON_GROUPS)).all()  # the review queue's reason

    # The same input again scores nothing new (checkpointed; a replayed batch is skipped).
    run_job(spark, lake, catalog)
    assert read_table(spark, lake, refund_risk.REFUND_RISK_TABLE).count() == 3

    # A new champion (re-registered) scores the next orders without a new query definition.
    model = champion.load_refund_version(name, "1", uri)
    training = rr.RefundTraining(model, {"holdout_roc_auc": 0.0})
    assert rr.register_refund_model(training, tracking_uri=uri, model_name=name) == "2"
    append_orders(spark, lake, catalog, [order_event("o-4", 6, offset=5)], 1)
    run_job(spark, lake, catalog)
    scored = read_table(spark, lake, refund_risk.REFUND_RISK_TABLE).toPandas().set_index("order_id")
    assert scored.loc["o-4", "model_version"] == "2" and len(scored) == 4
    assert pd.Timestamp(scored.loc["o-4", "event_time"]) == pd.Timestamp(T0 + timedelta(minutes=6)).tz_localize(None)


def test_a_refund_risk_table_of_an_earlier_version_gains_the_reason_column(spark, lake: Settings) -> None:  # noqa: ANN001
    from pyspark.sql import types as T

    from lakehouse.tables import ensure_table

    earlier = T.StructType([f for f in refund_risk.REFUND_RISK_SCHEMA.fields if f.name != "reason"])
    ensure_table(spark, lake, refund_risk.REFUND_RISK_TABLE, earlier)
    refund_risk.ensure_refund_risk_table(spark, lake)
    refund_risk.ensure_refund_risk_table(spark, lake)  # idempotent
    columns = read_table(spark, lake, refund_risk.REFUND_RISK_TABLE).columns
    assert columns == refund_risk.REFUND_RISK_SCHEMA.fieldNames()

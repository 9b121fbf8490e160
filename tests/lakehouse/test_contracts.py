"""Metric contracts: loading and cross-validation against the catalog."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lakehouse.contracts import KPI_FILE, compile_arithmetic, load_contracts, referenced_measures

pytestmark = pytest.mark.unit

REQUIRED = {
    "orders", "revenue", "average_order_value", "conversion_rate", "cart_abandonment_rate",
    "payment_failure_rate", "refund_rate", "ad_spend", "cost_per_click", "roas", "stockouts", "ticket_volume",
}  # fmt: skip


def test_contracts_define_the_required_kpis(catalog) -> None:
    contracts = load_contracts(catalog=catalog)
    assert set(contracts.kpis) >= REQUIRED
    assert contracts["roas"].inputs == ("revenue", "ad_spend")
    assert contracts["revenue_5m"].window_label == "5m/1m"
    assert contracts["payment_failure_rate"].freshness_sla.total_seconds() == 120
    assert contracts["orders"].thresholds.min == 1
    assert contracts["orders"].thresholds.scope == "total"  # a bound on the whole shop
    assert contracts["payment_failure_rate"].thresholds.scope == "every_series"  # the default
    assert all(k.runbook and k.owner for k in contracts.kpis.values())


def _write(tmp_path: Path, change) -> Path:  # noqa: ANN001
    raw = yaml.safe_load(KPI_FILE.read_text())
    change(raw["kpis"])
    path = tmp_path / "kpis.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda k: k["orders"].update(source="warehouse"), "unknown source domain"),
        (lambda k: k["stockouts"].update(dimensions=["planet"]), "not in inventory"),
        (lambda k: k["roas"].update(numerator="revenue_typo"), "is not a measure"),
        (lambda k: k["conversion_rate"].update(dimensions=["device"]), "lacks dimensions"),
        (lambda k: k["revenue_5m"].update(slide="30s"), "whole minutes"),
        (lambda k: k["roas"].update(numerator="sum(revenue) over ()"), "not an arithmetic expression"),
        (lambda k: k["roas"].update(denominator="upper(ad_spend)"), "use measures, numbers"),
        (lambda k: k["orders"].update(thresholds={"min": 1, "scope": "countries"}), "orders: thresholds: threshold scope"),
        (lambda k: k["orders"].update(thresholds={"minimum": 1}), "orders: thresholds"),
    ],
)
def test_inconsistent_contracts_are_rejected(tmp_path: Path, catalog, change, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_contracts(_write(tmp_path, change), catalog=catalog)


def test_ratio_inputs_are_read_from_sql_expressions() -> None:
    assert referenced_measures("greatest(checkouts_started - orders, 0)") == ("checkouts_started", "orders")


@pytest.mark.parametrize(
    ("expression", "values", "expected"),
    [
        ("greatest(checkouts_started - orders, 0)", {"checkouts_started": 9.0, "orders": 7.0}, 2.0),
        ("greatest(checkouts_started - orders, 0)", {"checkouts_started": 5.0, "orders": 7.0}, 0.0),
        ("greatest(checkouts_started - orders, 0)", {"orders": 7.0}, 0.0),  # SQL: greatest skips nulls
        ("revenue - refunds * 2", {"revenue": 10.0, "refunds": None}, None),  # nulls propagate
        ("(revenue + 1) / orders", {"revenue": 9.0, "orders": 0.0}, None),  # x / 0 is null
        ("coalesce(refunds, 0) + -1", {"revenue": 1.0}, -1.0),
    ],
)
def test_ratio_arithmetic_follows_sql(expression: str, values: dict, expected: float | None) -> None:
    assert compile_arithmetic(expression)(values) == expected

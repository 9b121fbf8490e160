"""Suites generated from the contracts: up to date in git, deterministic, extensible."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lakehouse.contracts import contracts
from lakehouse.suites import (
    GENERATED,
    SUITES_DIR,
    counted_event_types,
    generated_suites,
    load_suites,
    write_suites,
)

pytestmark = [pytest.mark.unit]


def test_the_suites_in_git_are_what_the_contracts_generate(catalog, tmp_path: Path) -> None:  # noqa: ANN001
    for path in SUITES_DIR.glob("*.json"):
        shutil.copy(path, tmp_path)
    assert write_suites(catalog, contracts(), tmp_path) == {name: False for name in generated_suites(catalog, contracts())}
    assert sorted(p.name for p in tmp_path.glob("*.json")) == sorted(p.name for p in SUITES_DIR.glob("*.json"))


def test_regenerating_twice_changes_no_byte(catalog, tmp_path: Path) -> None:  # noqa: ANN001
    first = write_suites(catalog, contracts(), tmp_path)
    texts = {p.name: p.read_bytes() for p in tmp_path.glob("*.json")}
    second = write_suites(catalog, contracts(), tmp_path)
    assert all(first.values()) and not any(second.values())
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.json")} == texts


def test_one_suite_per_silver_table_and_one_for_gold_kpi(catalog) -> None:  # noqa: ANN001
    expected = {f"silver.{d.table}" for d in catalog.domains.values()} | {"gold.kpi"}
    assert set(load_suites()) == expected


def test_a_teams_own_expectation_survives_regeneration(catalog, tmp_path: Path) -> None:  # noqa: ANN001
    write_suites(catalog, contracts(), tmp_path)
    path = tmp_path / "silver.orders.json"
    suite = json.loads(path.read_text())
    own = {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "order_id", "regex": "^o-"}, "meta": {"owner": "commerce"}}
    suite["expectations"].append(own)
    path.write_text(json.dumps(suite))

    changed = write_suites(catalog, contracts(), tmp_path)

    kept = json.loads(path.read_text())["expectations"]
    assert changed["silver.orders"] and kept[-1] == own
    assert [e for e in kept if GENERATED in e["meta"]] == generated_suites(catalog, contracts())["silver.orders"]["expectations"]
    assert not write_suites(catalog, contracts(), tmp_path)["silver.orders"]  # stable from then on


def test_every_contract_rule_of_order_placed_is_an_expectation(catalog) -> None:  # noqa: ANN001
    suite = generated_suites(catalog, contracts())["silver.orders"]
    pairs = {(e["type"], e["kwargs"].get("column")) for e in suite["expectations"]}
    placed = catalog.event("order_placed")
    for spec in placed.stored_fields:
        if spec.required:
            assert ("expect_column_values_to_not_be_null", spec.name) in pairs
        if spec.allowed is not None and spec.pii == "none":
            assert ("expect_column_values_to_be_in_set", spec.name) in pairs
        if spec.min is not None and spec.pii == "none" and spec.type != "array":
            assert ("expect_column_values_to_be_between", spec.name) in pairs
    assert ("expect_column_values_to_be_unique", "event_id") in pairs
    assert "card_number" not in {c for _, c in pairs}  # forbidden fields never reach silver


@pytest.mark.parametrize(
    ("filter_", "counted"),
    [
        ("event_type = 'order_placed'", ("order_placed",)),
        ("event_type IN ('payment_failed', 'payment_authorized')", ("payment_authorized", "payment_failed")),
        ("event_type = 'page_view' AND page_seq = 1", None),
    ],
)
def test_only_a_count_on_event_types_alone_is_a_volume_baseline(filter_: str, counted) -> None:  # noqa: ANN001
    from dataclasses import replace

    orders = contracts().kpis["orders"]
    assert counted_event_types(replace(orders, filter=filter_)) == counted
    assert counted_event_types(contracts().kpis["revenue"]) is None  # a sum, not a count


def test_a_suite_naming_an_unknown_expectation_is_refused_with_its_file(tmp_path: Path) -> None:
    from lakehouse.validations import SuiteRunner

    suite = json.loads((SUITES_DIR / "silver.orders.json").read_text())
    suite["expectations"].append({"type": "expect_orders_to_be_lovely", "kwargs": {}, "meta": {}})
    with pytest.raises(ValueError, match=r"silver\.orders.*expect_orders_to_be_lovely"):
        SuiteRunner({"silver.orders": suite}, tmp_path / "docs")


def test_a_suite_file_must_be_named_after_its_table(tmp_path: Path) -> None:
    (tmp_path / "silver.orders.json").write_text(json.dumps({"name": "silver.payments", "expectations": [], "meta": {}}))
    with pytest.raises(ValueError, match="must match the file name"):
        load_suites(tmp_path)


def test_cli_suites_check_passes_on_the_repository(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lakehouse.cli import app

    assert CliRunner().invoke(app, ["quality", "suites", "--check"]).exit_code == 0
    result = CliRunner().invoke(app, ["quality", "suites", "--directory", str(tmp_path)])
    assert result.exit_code == 0 and sorted(p.name for p in tmp_path.glob("*.json")) == sorted(p.name for p in SUITES_DIR.glob("*.json"))
    (tmp_path / "gold.kpi.json").unlink()
    stale = CliRunner().invoke(app, ["quality", "suites", "--check", "--directory", str(tmp_path)])
    assert stale.exit_code == 1 and "gold.kpi" in stale.output


@pytest.mark.parametrize("command", [["quality"], ["quality", "suites"], ["quality", "run"]])
def test_every_quality_command_has_help(command: list[str]) -> None:
    from typer.testing import CliRunner

    from lakehouse.cli import app

    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_data_docs_keep_only_the_newest_runs_of_a_table(tmp_path: Path) -> None:
    import pandas as pd

    from lakehouse.validations import SuiteRunner

    suite = {"name": "silver.orders", "meta": {"trivas": {"table": "silver.orders", "window_column": "event_time", "keys": ["event_id"]}},
             "expectations": [{"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "currency", "value_set": ["EUR"]}, "meta": {}}]}  # fmt: skip
    runner = SuiteRunner({"silver.orders": suite}, tmp_path / "docs")
    rows = pd.DataFrame({"event_id": ["e1"], "currency": ["EUR"]})
    for _ in range(4):
        runner.validate("silver.orders", rows, {})
    runner.prune("silver.orders", keep=2)
    pages = sorted((tmp_path / "docs" / "validations").rglob("*.html"))
    assert len(pages) == 2 and len(runner.context.validation_results_store.list_keys()) == 2


def test_a_suite_without_its_reading_instructions_is_refused(tmp_path: Path) -> None:
    from lakehouse.validations import SuiteRunner

    with pytest.raises(ValueError, match=r"silver\.orders.*meta\.trivas lacks \['keys', 'table', 'window_column'\]"):
        SuiteRunner({"silver.orders": {"name": "silver.orders", "meta": {}, "expectations": []}}, tmp_path / "docs")

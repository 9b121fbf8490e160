"""``trivas contracts new`` (issue 13 #2): the scaffolded event type loads with the catalog, and
its generated contract test passes as generated."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lakehouse import REPO_ROOT
from lakehouse.catalog import CATALOG_DIR, load_catalog
from lakehouse.contract_diff import diff_catalogs
from lakehouse.contracts_cli import contracts_app
from lakehouse.event_contract import RecordRules

pytestmark = pytest.mark.unit


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    events = tmp_path / "conf" / "events"
    shutil.copytree(CATALOG_DIR, events)
    return events, tmp_path / "tests" / "contracts"


def new(events: Path, tests: Path, *args: str):  # noqa: ANN201 - click Result
    return CliRunner().invoke(contracts_app, ["new", *args, "--catalog-dir", str(events), "--tests-dir", str(tests)])


def test_the_scaffold_loads_and_its_test_passes_as_generated(folders: tuple[Path, Path]) -> None:
    events, tests = folders
    result = new(events, tests, "wishlist_added", "--domain", "web", "--owner", "growth")
    assert result.exit_code == 0, result.output

    catalog = load_catalog(events)
    event = catalog.event("wishlist_added")
    assert (event.domain, event.owner, event.key, event.version) == ("web", "growth", "wishlist_added_id", 1)
    assert [(f.name, f.required) for f in event.fields] == [("wishlist_added_id", True), ("note", False)]
    change = diff_catalogs(load_catalog(CATALOG_DIR), catalog).changes
    assert [(c.kind.value, c.producers, c.consumers) for c in change] == [("added_event_type", "compatible", "compatible")]

    test_file = tests / "test_wishlist_added_contract.py"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", str(test_file), "-q", "-p", "no:cacheprovider"],
        cwd=test_file.parent, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 passed" in run.stdout


def test_the_generated_sample_is_what_the_rules_accept(folders: tuple[Path, Path]) -> None:
    """The sample in the generated test is a record the collector's rules accept."""
    events, tests = folders
    assert new(events, tests, "gift_card_redeemed", "--domain", "payments", "--key", "card_id").exit_code == 0
    spec = importlib.util.spec_from_file_location("generated_contract_test", tests / "test_gift_card_redeemed_contract.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]

    assert events.resolve() == module.CATALOG_DIR
    assert RecordRules(load_catalog(events)).check(module.SAMPLE, module.ARRIVAL) is None
    assert module.SAMPLE["payload"] == {"card_id": "example-card-id", "note": "example-note"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["order_placed", "--domain", "orders"], "exists already"),
        (["wishlist_added", "--domain", "nowhere"], "unknown domain"),
        (["Wishlist-Added", "--domain", "web"], "use snake_case"),
        # A key that clashes with another type's column of the domain: the catalog refuses it,
        # and the scaffold leaves no file behind.
        (["wishlist_added", "--domain", "web", "--key", "page_seq"], "page_seq"),
    ],
)
def test_a_scaffold_that_cannot_be_made_is_refused_and_writes_nothing(folders: tuple[Path, Path], args: list[str], message: str) -> None:
    events, tests = folders
    before = sorted(p.name for p in events.iterdir())
    result = new(events, tests, *args)
    assert result.exit_code != 0
    assert message in (result.output + str(result.exception))
    assert sorted(p.name for p in events.iterdir()) == before
    assert not tests.exists() or not any(tests.glob("test_*.py"))

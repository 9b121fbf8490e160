"""Contract diffs on a table of compatible and breaking changes (issue 13 #2).

Each case edits a copy of the project's catalog (``conf/events``) the way a contract owner
would, loads both versions with the catalog loader, and expects exactly its changes, each with
its producer and consumer verdicts and the silver migration it needs."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lakehouse.catalog import CATALOG_DIR, load_catalog
from lakehouse.contract_diff import BREAKING, COMPATIBLE, diff_catalogs, load_catalog_at
from lakehouse.contracts import load_contracts
from lakehouse.contracts_cli import contracts_app

pytestmark = pytest.mark.unit
C, B = COMPATIBLE, BREAKING
Edit = Callable[[dict], dict | None]


def field_of(doc: dict, name: str) -> dict:
    return next(f for f in doc["fields"] if f["name"] == name)


def edited(**changes: object) -> Edit:
    """Set top-level keys of an event type's file."""
    return lambda doc: {**doc, **changes}


def add_field(**spec: object) -> Edit:
    return lambda doc: {**doc, "fields": [*doc["fields"], spec]}


def drop_field(name: str) -> Edit:
    return lambda doc: {**doc, "fields": [f for f in doc["fields"] if f["name"] != name]}


def set_field(name: str, **changes: object) -> Edit:
    def edit(doc: dict) -> dict:
        return {**doc, "fields": [({**f, **changes} if f["name"] == name else f) for f in doc["fields"]]}

    return edit


def set_item(array: str, name: str, **changes: object) -> Edit:
    def edit(doc: dict) -> dict:
        spec = field_of(doc, array)
        items = [({**i, **changes} if i["name"] == name else i) for i in spec["items"]]
        return set_field(array, items=items)(doc)

    return edit


def both(*edits: Edit) -> Edit:
    def edit(doc: dict) -> dict:
        for one in edits:
            doc = one(doc)
        return doc

    return edit


def catalog_copy(folder: Path, edits: dict[str, Edit | None]) -> Path:
    """The project's catalog copied into ``folder`` with ``edits`` per event type (None
    deletes the type; an unknown name creates it from the edit applied to ``{}``)."""
    shutil.copytree(CATALOG_DIR, folder)
    for event_type, edit in edits.items():
        path = folder / f"{event_type}.yaml"
        if edit is None:
            path.unlink()
            continue
        doc = yaml.safe_load(path.read_text()) if path.exists() else {}
        path.write_text(yaml.safe_dump(edit(doc), sort_keys=False))
    return folder


NEW_TYPE = {
    "event_type": "wishlist_added", "version": 1, "domain": "web", "owner": "growth", "description": "d",
    "key": "wishlist_id", "allowed_lateness": "2m", "dedup_horizon": "10m",
    "fields": [{"name": "wishlist_id", "type": "string", "required": True}, {"name": "sku", "type": "string"}],
}  # fmt: skip

# (case, event type, edit, expected {(kind, field, producers, consumers)}, expected silver migrations)
CASES = [
    ("added optional field", "order_placed", add_field(name="gift_wrap", type="boolean"),
     {("added_optional_field", "gift_wrap", C, C)}, {("add_column", "gift_wrap")}),
    ("added required field", "order_placed", add_field(name="loyalty_tier", type="string", required=True),
     {("added_required_field", "loyalty_tier", B, C)}, {("add_column", "loyalty_tier")}),
    ("added required field, old version in the window", "order_placed",
     both(edited(version=2, oldest_accepted_version=1), add_field(name="loyalty_tier", type="string", required=True, since=2)),
     {("bumped_version", None, C, C), ("added_required_field", "loyalty_tier", C, C)}, {("add_column", "loyalty_tier")}),
    ("version bumped without a window", "order_placed", edited(version=2),
     {("bumped_version", None, C, C), ("retired_version", None, B, C)}, set()),
    ("removed optional field", "order_placed", drop_field("campaign_id"),
     {("removed_field", "campaign_id", C, C)}, {("keep_column", "campaign_id")}),
    ("removed required field", "page_view", drop_field("page_url"),
     {("removed_field", "page_url", C, B)}, {("keep_column", "page_url")}),
    ("renamed field with alias", "page_view", both(drop_field("referrer"), add_field(name="referrer_url", type="string", aliases=["referrer"])),
     {("renamed_field", "referrer_url", C, B)}, {("add_column", "referrer_url"), ("keep_column", "referrer")}),
    ("renamed field without alias", "page_view", both(drop_field("referrer"), add_field(name="referrer_url", type="string")),
     {("removed_field", "referrer", C, C), ("added_optional_field", "referrer_url", C, C)},
     {("add_column", "referrer_url"), ("keep_column", "referrer")}),
    ("widened type", "page_view", set_field("page_seq", type="number"),
     {("widened_type", "page_seq", C, B)}, {("widen_column", "page_seq")}),
    ("widened type of an array item", "order_placed", set_item("items", "quantity", type="number"),
     {("widened_type", "items.quantity", C, B)}, {("widen_column", "items.quantity")}),
    ("narrowed type", "order_placed", set_item("items", "unit_price", type="integer"),
     {("narrowed_type", "items.unit_price", B, C)}, {("none", "items.unit_price")}),
    ("changed type", "page_view", set_field("page_url", type="integer"),
     {("changed_type", "page_url", B, B)}, {("restate", "page_url")}),
    ("made optional", "page_view", set_field("page_url", required=False),
     {("made_optional", "page_url", C, B)}, set()),
    ("made required", "page_view", set_field("referrer", required=True),
     {("made_required", "referrer", B, C)}, set()),
    ("added allowed value", "page_view", set_field("device", allowed=["desktop", "mobile", "tablet", "tv"]),
     {("added_allowed_values", "device", C, B)}, set()),
    ("removed allowed value", "page_view", set_field("device", allowed=["desktop", "mobile"]),
     {("removed_allowed_values", "device", B, C)}, set()),
    ("allowed list dropped", "page_view", set_field("device", allowed=None),
     {("added_allowed_values", "device", C, B)}, set()),
    ("widened range", "page_view", set_field("page_seq", min=0),
     {("widened_range", "page_seq", C, B)}, set()),
    ("narrowed range", "page_view", set_field("page_seq", max=500),
     {("narrowed_range", "page_seq", B, C)}, set()),
    ("longer lateness", "page_view", edited(allowed_lateness="10m"),
     {("longer_lateness", None, C, C)}, set()),
    ("shorter lateness", "page_view", edited(allowed_lateness="30s"),
     {("shorter_lateness", None, B, C)}, set()),
    ("PII class changed", "order_placed", set_field("email", pii="tokenize"),
     {("changed_pii_class", "email", C, B)}, {("restate", "email")}),
    ("PII class made forbidden", "page_view", set_field("ip_address", pii="forbidden"),
     {("changed_pii_class", "ip_address", B, B)}, {("keep_column", "ip_address")}),
    ("added event type", "wishlist_added", lambda _: NEW_TYPE,
     {("added_event_type", None, C, C)}, {("add_column", "wishlist_id")}),
    ("removed event type", "ticket_resolved", None,
     {("removed_event_type", None, B, B)}, set()),
]  # fmt: skip


@pytest.mark.parametrize(("case", "event_type", "edit", "expected", "migrations"), CASES, ids=[c[0] for c in CASES])
def test_each_change_is_classified_for_producers_and_consumers(
    tmp_path: Path, case: str, event_type: str, edit: Edit | None, expected: set, migrations: set
) -> None:
    old = load_catalog(CATALOG_DIR)
    new = load_catalog(catalog_copy(tmp_path / "new", {event_type: edit}))
    diff = diff_catalogs(old, new, load_contracts(catalog=old))

    assert {(c.kind.value, c.field, c.producers, c.consumers) for c in diff.changes} == expected
    assert all(c.event_type == event_type for c in diff.changes)
    silver = {(t.action, t.column) for c in diff.changes for t in c.tables if t.table == "silver.events"}
    assert migrations <= silver
    breaking = any(B in (p, q) for _, _, p, q in expected)
    assert bool(diff.breaking_for("any")) is breaking
    whole_type = {"added_event_type", "removed_event_type"}
    unversioned = breaking and not any(k == "bumped_version" for k, *_ in expected) and not {k for k, *_ in expected} & whole_type
    assert diff.unversioned() == ([event_type] if unversioned else [])


def test_a_removed_field_a_kpi_reads_names_the_kpi(tmp_path: Path) -> None:
    old = load_catalog(CATALOG_DIR)
    new = load_catalog(catalog_copy(tmp_path / "new", {"order_placed": drop_field("country")}))
    diff = diff_catalogs(old, new, load_contracts(catalog=old))
    reviews = {t.detail.split()[1] for c in diff.changes for t in c.tables if t.action == "review_kpi"}
    kpis = load_contracts(catalog=old).kpis.values()
    expected = {k.name for k in kpis if k.kind == "measure" and k.source == "orders" and "country" in k.dimensions}
    assert reviews == expected and expected


def test_identical_catalogs_have_no_changes() -> None:
    assert diff_catalogs(load_catalog(CATALOG_DIR), load_catalog(CATALOG_DIR)).changes == ()


def test_the_cli_gates_ci_with_its_exit_code_and_json(tmp_path: Path) -> None:
    runner = CliRunner()
    compatible = catalog_copy(tmp_path / "compatible", {"order_placed": add_field(name="gift_wrap", type="boolean")})
    breaking = catalog_copy(tmp_path / "breaking", {"page_view": set_field("device", allowed=["desktop"])})

    ok = runner.invoke(contracts_app, ["diff", str(CATALOG_DIR), str(compatible), "--json"])
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.output)
    assert report["breaking"] == {"producers": False, "consumers": False, "any": False}
    assert [(c["kind"], c["field"]) for c in report["changes"]] == [("added_optional_field", "gift_wrap")]

    broken = runner.invoke(contracts_app, ["diff", str(CATALOG_DIR), str(breaking), "--json"])
    assert broken.exit_code == 1
    assert json.loads(broken.output)["breaking"] == {"producers": True, "consumers": False, "any": True}
    assert json.loads(broken.output)["unversioned_breaking_changes"] == ["page_view"]
    # Gating on consumers only lets a producer-breaking change through.
    assert runner.invoke(contracts_app, ["diff", str(CATALOG_DIR), str(breaking), "--fail-on", "consumers"]).exit_code == 0
    table = runner.invoke(contracts_app, ["diff", str(CATALOG_DIR), str(breaking)], terminal_width=200)
    assert "removed_allowed_values" in table.output and "breaking" in table.output


def test_a_git_revision_is_a_catalog_version() -> None:
    """``HEAD`` read through ``git archive`` is the catalog committed at HEAD."""
    committed = load_catalog_at("HEAD")
    assert set(committed.event_types) >= {"order_placed", "page_view"}
    assert committed.event("order_placed").version >= 1
    with pytest.raises(ValueError, match="neither a catalog folder nor a git revision"):
        load_catalog_at("no-such-revision-xyz")

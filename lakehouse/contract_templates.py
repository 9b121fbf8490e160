"""Schema templates: scaffold a new event type in the catalog, with a test of its contract.

``trivas contracts new EVENT_TYPE`` writes ``conf/events/<event_type>.yaml`` in the catalog's
own format (the only place the schema is declared) and ``tests/contracts/test_<event_type>.py``,
which checks a sample event against the contract the way the collector and silver do
(:class:`lakehouse.event_contract.RecordRules`) and against the producers' JSON Schema
(:meth:`lakehouse.catalog.Catalog.json_schema`). Both pass as generated; owners then edit the
fields and the sample together.
"""

from __future__ import annotations

import os
import pprint
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lakehouse import REPO_ROOT
from lakehouse.catalog import CATALOG_DIR, ENVELOPE_FILE, EventType, FieldSpec, load_catalog

TESTS_DIR = REPO_ROOT / "tests" / "contracts"
EVENT_TYPE_NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
SAMPLE_TIME = "2026-01-15T12:00:00Z"


@dataclass(frozen=True)
class Scaffold:
    """The files a scaffold wrote."""

    catalog_file: Path
    test_file: Path


def sample_value(spec: FieldSpec) -> Any:
    """A value the contract of ``spec`` accepts (the first allowed one, the minimum, …)."""
    if spec.allowed:
        return spec.allowed[0]
    if spec.type == "integer":
        return int(spec.min) if spec.min is not None else 1
    if spec.type == "number":
        return float(spec.min) if spec.min is not None else 1.0
    if spec.type == "boolean":
        return True
    if spec.type == "timestamp":
        return SAMPLE_TIME
    if spec.type == "array":
        return [{item.name: sample_value(item) for item in spec.items if item.required}]
    if spec.format == "uuid":
        return "00000000-0000-4000-8000-000000000001"
    return f"example-{spec.name.replace('_', '-')}"


def sample_event(event: EventType) -> dict[str, Any]:
    """A valid record of ``event``: every required and non-forbidden field filled."""
    payload = {f.name: sample_value(f) for f in event.fields if f.pii == "none" or f.required}
    return {
        "event_id": "6f1c1f4e-0d7f-4bd1-9a59-3c2d7e9b0c11",
        "event_type": event.event_type,
        "schema_version": event.version,
        "event_time": SAMPLE_TIME,
        "source": "sdk:example",
        "payload": payload,
    }


def catalog_yaml(event_type: str, domain: str, owner: str, key: str) -> str:
    """The catalog file of a new event type: the key field and one optional example field."""
    body = {
        "event_type": event_type,
        "version": 1,
        "domain": domain,
        "owner": owner,
        "description": f"TODO: what a {event_type.replace('_', ' ')} event records.",
        "key": key,
        "allowed_lateness": "2m",
        "dedup_horizon": "10m",
        "fields": [
            {"name": key, "type": "string", "required": True},
            {"name": "note", "type": "string", "description": "example optional field: replace it"},
        ],
    }
    header = (
        f"# {event_type}: scaffolded by `trivas contracts new`. Field keys: name, type (string | integer |\n"
        "# number | boolean | timestamp | array), required, pii (none | hash | tokenize | redact |\n"
        "# forbidden), allowed, min, max, format, description, items (array), since (the version that\n"
        "# added it), aliases (former names). Bump version on a change; keep older producers within\n"
        "# oldest_accepted_version during a transition (see docs/contracts.md).\n"
    )
    return header + yaml.safe_dump(body, sort_keys=False, width=100)


def contract_test_source(event: EventType, catalog_dir: Path, test_file: Path) -> str:
    """The test file of ``event``: its sample passes the rules and the JSON Schema, and
    losing its key field is refused."""
    folder = os.path.relpath(catalog_dir, test_file.parent)
    sample = pprint.pformat(sample_event(event), indent=4, width=100, sort_dicts=False)
    return f'''"""Contract test of {event.event_type} (scaffolded by `trivas contracts new`; edit with the contract)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest

from lakehouse.catalog import load_catalog
from lakehouse.event_contract import RecordRules

pytestmark = pytest.mark.unit

CATALOG_DIR = (Path(__file__).parent / {folder!r}).resolve()
ARRIVAL = datetime(2026, 1, 15, 12, 0, 5, tzinfo=UTC)
SAMPLE = {sample}


def test_the_sample_satisfies_the_contract() -> None:
    catalog = load_catalog(CATALOG_DIR)
    assert RecordRules(catalog).check(copy.deepcopy(SAMPLE), ARRIVAL) is None
    jsonschema.validate(SAMPLE, catalog.json_schema({event.event_type!r}))


def test_a_sample_without_its_key_is_refused() -> None:
    catalog = load_catalog(CATALOG_DIR)
    broken = copy.deepcopy(SAMPLE)
    del broken["payload"][{event.key!r}]
    verdict = RecordRules(catalog).check(broken, ARRIVAL)
    assert verdict is not None and verdict.qualified == "missing_required:{event.key}"
'''


def scaffold(event_type: str, domain: str, owner: str, key: str | None = None,
             catalog_dir: Path = CATALOG_DIR, tests_dir: Path = TESTS_DIR) -> Scaffold:  # fmt: skip
    """Write a new event type's catalog file and contract test, then load the catalog with it.

    Raises:
        ValueError: a bad or taken name, an unknown domain, or files that exist already
            (nothing is overwritten; a catalog that no longer loads is rolled back).
    """
    if not EVENT_TYPE_NAME.match(event_type):
        raise ValueError(f"event type {event_type!r}: use snake_case (e.g. wishlist_added)")
    domains = yaml.safe_load((catalog_dir / ENVELOPE_FILE).read_text())["domains"]
    if domain not in domains:
        raise ValueError(f"unknown domain {domain!r}; domains: {sorted(domains)}")
    catalog_file = catalog_dir / f"{event_type}.yaml"
    test_file = tests_dir / f"test_{event_type}_contract.py"
    for path in (catalog_file, test_file):
        if path.exists():
            raise ValueError(f"{path} exists already")
    catalog_file.write_text(catalog_yaml(event_type, domain, owner, key or f"{event_type}_id"))
    try:
        event = load_catalog(catalog_dir).event(event_type)
    except Exception:
        catalog_file.unlink()
        raise
    tests_dir.mkdir(parents=True, exist_ok=True)
    init = tests_dir / "__init__.py"
    if not init.exists() and (tests_dir.parent / "__init__.py").exists():
        init.write_text("")
    test_file.write_text(contract_test_source(event, catalog_dir, test_file))
    return Scaffold(catalog_file, test_file)

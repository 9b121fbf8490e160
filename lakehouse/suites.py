"""Great Expectations suites generated from the contracts: one per silver table and one for gold.kpi.

The event catalog (``conf/events/``) and the KPI contracts (``conf/kpis.yaml``) already say
what valid data is; this module turns that into expectation suites that teams can read and
extend, stored as JSON in ``gx/expectations/<table>.json`` (Great Expectations' own suite
format, without the random ids GX would add, so regenerating with no contract change leaves
git clean).

Per silver table (a domain view of ``silver.events``):

- required envelope and payload fields not null (a payload field required by some of the
  domain's event types only is checked on those types' rows, with a ``row_condition``);
- allowed values and ranges of every field that declares them (not of PII-protected fields:
  silver holds their hash or token);
- ``event_id`` unique (silver deduplicates by it) and ``event_type`` one of the domain's;
- freshness: the newest ``ingested_at`` within the tightest freshness SLA of the KPIs the
  domain feeds (parameter ``fresh_after``, set per run to now − SLA);
- volume: the rows of the event types the domain's volume KPI counts (a count KPI filtered on
  ``event_type`` only), between ``volume_min`` and ``volume_max``, set per run from the
  seasonal baseline of that KPI in ``gold.kpi`` (:mod:`lakehouse.validations`).

For ``gold.kpi``: its non-nullable columns not null, KPI names, grains and units from the
contracts, non-negative values where the contract's inputs cannot be negative, one row per
(kpi, grain, window, dimension, computed_at), ``window_end`` after ``window_start`` and
freshness of ``computed_at`` against the tightest KPI SLA.

Every generated expectation carries ``meta.generated_from`` (the contract file it comes from).
Expectations without it are a team's own: :func:`merged_suite` keeps them, in their order,
when the suites are regenerated.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lakehouse import REPO_ROOT
from lakehouse.catalog import Catalog, FieldSpec
from lakehouse.contracts import KpiContract, KpiContracts

SUITES_DIR = REPO_ROOT / "gx" / "expectations"
GENERATED = "generated_from"
EVENTS_DIR = "conf/events"
ENVELOPE_SOURCE = f"{EVENTS_DIR}/_envelope.yaml"
KPIS_SOURCE = "conf/kpis.yaml"
REGISTRY_SOURCE = "lakehouse/registry.py"
KPI_TABLE = "gold.kpi"
# Parameters a run fills in (Great Expectations "suite parameters": ``{"$PARAMETER": name}``).
FRESH_AFTER, VOLUME_MIN, VOLUME_MAX = "fresh_after", "volume_min", "volume_max"
KPI_KEY = ["kpi", "grain", "window_start", "dimension"]
_EVENT_TYPE_IS = re.compile(r"^\s*event_type\s*=\s*'(\w+)'\s*$", re.IGNORECASE)
_EVENT_TYPE_IN = re.compile(r"^\s*event_type\s+IN\s*\(([^)]*)\)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Volume:
    """The KPI whose history is a table's seasonal volume baseline, and the rows it counts."""

    kpi: str
    event_types: tuple[str, ...]


def counted_event_types(contract: KpiContract) -> tuple[str, ...] | None:
    """The event types a count KPI counts when its filter is on ``event_type`` alone
    (``event_type = 'x'`` or ``event_type IN ('x', 'y')``); None for any other KPI, whose
    rows a row count of the table cannot reproduce."""
    if contract.kind != "measure" or contract.value != "1" or not contract.filter:
        return None
    single = _EVENT_TYPE_IS.match(contract.filter)
    if single:
        return (single.group(1),)
    listed = _EVENT_TYPE_IN.match(contract.filter)
    if listed:
        return tuple(sorted(part.strip().strip("'") for part in listed.group(1).split(",")))
    return None


def volume_of(contracts: KpiContracts, domain: str) -> Volume | None:
    """The domain's volume KPI: of its count KPIs on event types alone, the one covering the
    most event types (then the first by name); None when it has none."""
    candidates = []
    for name, contract in sorted(contracts.kpis.items()):
        types = counted_event_types(contract)
        if contract.source == domain and types:
            candidates.append(Volume(name, types))
    return max(candidates, key=lambda v: len(v.event_types), default=None)


def freshness_seconds(contracts: KpiContracts, domain: str | None = None) -> int | None:
    """The tightest freshness SLA of the KPIs fed by ``domain`` (of every KPI when None)."""
    slas = [
        c.freshness_sla.total_seconds()
        for c in contracts.kpis.values()
        if domain is None or c.source == domain
    ]
    return int(min(slas)) if slas else None


def expectation(kind: str, source: str, **kwargs: Any) -> dict[str, Any]:
    """One expectation in Great Expectations' JSON form, marked as generated from ``source``."""
    return {"type": kind, "kwargs": kwargs, "meta": {GENERATED: source}}


def on_types(types: list[str], all_types: list[str]) -> dict[str, Any]:
    """A pandas ``row_condition`` restricting an expectation to some event types (none when
    they are all of the domain's)."""
    if sorted(types) == sorted(all_types):
        return {}
    listed = ", ".join(f"'{t}'" for t in sorted(types))
    return {"row_condition": f"event_type in [{listed}]", "condition_parser": "pandas"}


def field_expectations(spec: FieldSpec, source: str, condition: Mapping[str, Any], checks_required: bool) -> list[dict[str, Any]]:
    """Not null (when required), allowed values and range of one field."""
    out = []
    if checks_required:
        out.append(expectation("expect_column_values_to_not_be_null", source, column=spec.name, **condition))
    if spec.pii != "none" or spec.type == "array":
        return out  # silver holds a hash or token, not the value the contract constrains
    if spec.allowed is not None:
        out.append(expectation("expect_column_values_to_be_in_set", source, column=spec.name, value_set=list(spec.allowed), **condition))
    if spec.min is not None or spec.max is not None:
        out.append(expectation("expect_column_values_to_be_between", source, column=spec.name, min_value=spec.min, max_value=spec.max, **condition))
    return out


def silver_suite(catalog: Catalog, contracts: KpiContracts, domain: str) -> dict[str, Any]:
    """The suite of ``silver.<table>`` of ``domain`` (see the module docstring)."""
    table = f"silver.{catalog.domains[domain].table}"
    events = catalog.events_of(domain)
    all_types = [e.event_type for e in events]
    expectations = []
    for spec in catalog.envelope:
        expectations += field_expectations(spec, ENVELOPE_SOURCE, {}, spec.required)
    expectations.append(expectation("expect_column_values_to_be_in_set", ENVELOPE_SOURCE, column="event_type", value_set=all_types))
    expectations.append(expectation("expect_column_values_to_be_unique", ENVELOPE_SOURCE, column="event_id"))
    for spec in catalog.domain_fields(domain):
        declaring = [e for e in events if any(f.name == spec.name for f in e.stored_fields)]
        requiring = [e.event_type for e in declaring if e.field(spec.name).required]
        source = f"{EVENTS_DIR}/{declaring[0].event_type}.yaml"
        if requiring:
            expectations += field_expectations(spec, f"{EVENTS_DIR}/{requiring[0]}.yaml", on_types(requiring, all_types), True)[:1]
        expectations += field_expectations(spec, source, on_types([e.event_type for e in declaring], all_types), False)
    sla = freshness_seconds(contracts, domain)
    if sla is not None:
        expectations.append(expectation("expect_column_max_to_be_between", KPIS_SOURCE, column="ingested_at", min_value={"$PARAMETER": FRESH_AFTER}))
    volume = volume_of(contracts, domain)
    if volume is not None:
        expectations.append(
            expectation(
                "expect_table_row_count_to_be_between", KPIS_SOURCE,
                min_value={"$PARAMETER": VOLUME_MIN}, max_value={"$PARAMETER": VOLUME_MAX},
                **on_types(list(volume.event_types), all_types),
            )
        )  # fmt: skip
    meta = {
        "table": table,
        "domain": domain,
        "window_column": "event_time",
        "freshness_column": "ingested_at",
        "freshness_sla_seconds": sla,
        "keys": ["event_id"],
        "volume": None if volume is None else {"kpi": volume.kpi, "event_types": list(volume.event_types)},
    }
    return {"name": table, "meta": {"trivas": meta}, "expectations": expectations}


def non_negative_kpis(contracts: KpiContracts, catalog: Catalog) -> list[str]:
    """KPIs whose value cannot be negative: counts, sums of fields with ``min >= 0``, and
    ratios and rollups of those (a ratio's arithmetic may subtract: only plain quotients)."""
    safe: set[str] = set()
    for name, c in contracts.kpis.items():
        if c.kind != "measure" or c.source is None:
            continue
        if c.value == "1":
            safe.add(name)
            continue
        fields = {f.name: f for e in catalog.events_of(c.source) for f in e.fields}
        spec = fields.get(c.value or "")
        if spec is not None and spec.min is not None and spec.min >= 0:
            safe.add(name)
    for name, c in contracts.kpis.items():
        if c.kind == "ratio" and c.numerator in safe and c.denominator in safe:
            safe.add(name)
        if c.kind == "rollup" and c.of in safe:
            safe.add(name)
    return sorted(safe)


def kpi_suite(catalog: Catalog, contracts: KpiContracts, kpi_schema: Any) -> dict[str, Any]:
    """The suite of ``gold.kpi`` (see the module docstring); ``kpi_schema`` is the table's
    declared Spark schema (its non-nullable columns are checked)."""
    expectations = [
        expectation("expect_column_values_to_not_be_null", REGISTRY_SOURCE, column=f.name)
        for f in kpi_schema.fields
        if not f.nullable
    ]
    kpis = sorted(contracts.kpis)
    expectations += [
        expectation("expect_column_values_to_be_in_set", KPIS_SOURCE, column="kpi", value_set=kpis),
        expectation("expect_column_values_to_be_in_set", KPIS_SOURCE, column="grain", value_set=sorted({c.window_label for c in contracts.kpis.values()})),
        expectation("expect_column_values_to_be_in_set", KPIS_SOURCE, column="unit", value_set=sorted({c.unit for c in contracts.kpis.values()})),
        expectation("expect_column_values_to_be_between", REGISTRY_SOURCE, column="events", min_value=0),
    ]
    listed = ", ".join(f"'{k}'" for k in non_negative_kpis(contracts, catalog))
    expectations += [
        expectation("expect_column_values_to_be_between", KPIS_SOURCE, column="value", min_value=0,
                    row_condition=f"kpi in [{listed}]", condition_parser="pandas"),
        expectation("expect_column_pair_values_a_to_be_greater_than_b", REGISTRY_SOURCE, column_A="window_end", column_B="window_start"),
        expectation("expect_compound_columns_to_be_unique", REGISTRY_SOURCE, column_list=[*KPI_KEY, "computed_at"]),
        expectation("expect_column_max_to_be_between", KPIS_SOURCE, column="computed_at", min_value={"$PARAMETER": FRESH_AFTER}),
    ]  # fmt: skip
    meta = {
        "table": KPI_TABLE,
        "domain": None,
        "window_column": "window_start",
        "freshness_column": "computed_at",
        "freshness_sla_seconds": freshness_seconds(contracts),
        "keys": KPI_KEY,
        "volume": None,
    }
    return {"name": KPI_TABLE, "meta": {"trivas": meta}, "expectations": expectations}


def generated_suites(catalog: Catalog, contracts: KpiContracts) -> dict[str, dict[str, Any]]:
    """Every generated suite by table name (silver tables in domain order, then gold.kpi)."""
    from lakehouse.registry import KPI_SCHEMA

    suites = {s["name"]: s for s in (silver_suite(catalog, contracts, d) for d in catalog.domains)}
    suites[KPI_TABLE] = kpi_suite(catalog, contracts, KPI_SCHEMA)
    return suites


def merged_suite(generated: dict[str, Any], existing: dict[str, Any] | None) -> dict[str, Any]:
    """The generated suite plus the team's own expectations of the existing file (those
    without ``meta.generated_from``), after the generated ones, in their order."""
    if existing is None:
        return generated
    own = [e for e in existing.get("expectations", []) if GENERATED not in (e.get("meta") or {})]
    return {**generated, "expectations": [*generated["expectations"], *own]}


def suite_path(directory: Path, table: str) -> Path:
    """``gx/expectations/silver.orders.json``."""
    return directory / f"{table}.json"


def suite_text(suite: dict[str, Any]) -> str:
    """The suite as stable JSON (sorted keys, two-space indent, final newline)."""
    return json.dumps(suite, indent=2, sort_keys=True) + "\n"


def write_suites(catalog: Catalog, contracts: KpiContracts, directory: Path = SUITES_DIR) -> dict[str, bool]:
    """(Re)generate every suite file; returns table → whether its file changed."""
    directory.mkdir(parents=True, exist_ok=True)
    changed = {}
    for table, generated in generated_suites(catalog, contracts).items():
        path = suite_path(directory, table)
        before = path.read_text() if path.exists() else None
        text = suite_text(merged_suite(generated, json.loads(before) if before else None))
        changed[table] = text != before
        if changed[table]:
            path.write_text(text)
    return changed


def load_suites(directory: Path = SUITES_DIR) -> dict[str, dict[str, Any]]:
    """Every suite file of ``directory`` by table name (the name inside the file)."""
    suites = {}
    for path in sorted(directory.glob("*.json")):
        suite = json.loads(path.read_text())
        if suite.get("name") != path.stem:
            raise ValueError(f"{path}: suite name {suite.get('name')!r} must match the file name")
        suites[suite["name"]] = suite
    return suites

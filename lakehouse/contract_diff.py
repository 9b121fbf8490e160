"""Contract diffs: what changed between two versions of the event catalog, and who it breaks.

Both versions are loaded by :func:`lakehouse.catalog.load_catalog` — the one schema source —
from a folder or from a git revision (:func:`load_catalog_at`). Every change is classified
twice, in the schema-registry sense:

- **producers**: does every record a producer sends under the old contract still pass the new
  one (the collector's and silver's rules)? A change that makes such a record land in
  ``silver.quarantine`` (or ``silver.late``) is breaking for producers.
- **consumers**: can every reader of the silver/gold tables written under the old contract
  read what the new one writes, unchanged? A change that empties, renames, re-types or
  re-encodes a column they read, or shows them values they never saw, is breaking for them.

A transition window softens exactly one case: a required field added with ``since: <new
version>`` while the old version stays accepted (``oldest_accepted_version``) does not refuse
old producers' records. Each change also names the tables it touches and the migration they
need (:class:`TableImpact`); ``trivas contracts migrate`` applies the safe ones.
"""

from __future__ import annotations

import io
import re
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from lakehouse import REPO_ROOT
from lakehouse.catalog import (
    CATALOG_IN_REPO,
    ENVELOPE_FILE,
    Catalog,
    EventType,
    FieldSpec,
    load_catalog,
)
from lakehouse.contracts import KpiContracts

COMPATIBLE, BREAKING = "compatible", "breaking"
SILVER_TABLE = "silver.events"  # the one Delta table silver writes per event (domain views over it)
BRONZE_NOTE = "bronze.events stores each record's raw JSON: no catalog change needs a bronze migration"
COLUMN_ACTIONS = ("add_column", "widen_column", "keep_column")
# Catalog type changes where every old value is a valid new value.
WIDENINGS = {("integer", "number")}


class ChangeKind(StrEnum):
    """The kinds of contract change, as ``--json`` names them."""

    ADDED_EVENT_TYPE = "added_event_type"
    REMOVED_EVENT_TYPE = "removed_event_type"
    ADDED_OPTIONAL_FIELD = "added_optional_field"
    ADDED_REQUIRED_FIELD = "added_required_field"
    REMOVED_FIELD = "removed_field"
    RENAMED_FIELD = "renamed_field"
    WIDENED_TYPE = "widened_type"
    NARROWED_TYPE = "narrowed_type"
    CHANGED_TYPE = "changed_type"
    MADE_OPTIONAL = "made_optional"
    MADE_REQUIRED = "made_required"
    ADDED_ALLOWED_VALUES = "added_allowed_values"
    REMOVED_ALLOWED_VALUES = "removed_allowed_values"
    WIDENED_RANGE = "widened_range"
    NARROWED_RANGE = "narrowed_range"
    LONGER_LATENESS = "longer_lateness"
    SHORTER_LATENESS = "shorter_lateness"
    CHANGED_PII_CLASS = "changed_pii_class"
    CHANGED_DEDUP_HORIZON = "changed_dedup_horizon"
    BUMPED_VERSION = "bumped_version"
    RETIRED_VERSION = "retired_version"


# (producers, consumers) of the kinds whose verdict does not depend on the change's details.
FIXED_VERDICTS: dict[ChangeKind, tuple[str, str]] = {
    ChangeKind.ADDED_EVENT_TYPE: (COMPATIBLE, COMPATIBLE),
    ChangeKind.REMOVED_EVENT_TYPE: (BREAKING, BREAKING),
    ChangeKind.ADDED_OPTIONAL_FIELD: (COMPATIBLE, COMPATIBLE),
    ChangeKind.RENAMED_FIELD: (COMPATIBLE, BREAKING),
    ChangeKind.WIDENED_TYPE: (COMPATIBLE, BREAKING),
    ChangeKind.NARROWED_TYPE: (BREAKING, COMPATIBLE),
    ChangeKind.CHANGED_TYPE: (BREAKING, BREAKING),
    ChangeKind.MADE_OPTIONAL: (COMPATIBLE, BREAKING),
    ChangeKind.MADE_REQUIRED: (BREAKING, COMPATIBLE),
    ChangeKind.ADDED_ALLOWED_VALUES: (COMPATIBLE, BREAKING),
    ChangeKind.REMOVED_ALLOWED_VALUES: (BREAKING, COMPATIBLE),
    ChangeKind.WIDENED_RANGE: (COMPATIBLE, BREAKING),
    ChangeKind.NARROWED_RANGE: (BREAKING, COMPATIBLE),
    ChangeKind.LONGER_LATENESS: (COMPATIBLE, COMPATIBLE),
    ChangeKind.SHORTER_LATENESS: (BREAKING, COMPATIBLE),
    ChangeKind.CHANGED_DEDUP_HORIZON: (COMPATIBLE, COMPATIBLE),
    ChangeKind.BUMPED_VERSION: (COMPATIBLE, COMPATIBLE),
    ChangeKind.RETIRED_VERSION: (BREAKING, COMPATIBLE),
}


@dataclass(frozen=True)
class TableImpact:
    """What one table needs because of one change.

    ``action``: ``add_column`` / ``widen_column`` (applied by ``trivas contracts migrate``),
    ``keep_column`` (no longer written; dropping it is left to the owner), ``restate`` (old
    rows keep the old meaning), ``review_kpi`` (a KPI contract reads the field), ``restart``
    (a streaming query picks the change up at its next start), ``none``.
    """

    table: str
    action: str
    detail: str
    column: str | None = None


@dataclass(frozen=True)
class Change:
    """One classified difference between two catalogs."""

    kind: ChangeKind
    event_type: str
    field: str | None
    producers: str
    consumers: str
    detail: str
    tables: tuple[TableImpact, ...] = ()

    @property
    def breaking(self) -> bool:
        return BREAKING in (self.producers, self.consumers)


@dataclass(frozen=True)
class CatalogDiff:
    """Every change from ``old`` to ``new``."""

    old: str
    new: str
    changes: tuple[Change, ...] = field(default=())

    def breaking_for(self, side: str) -> list[Change]:
        """Changes breaking ``producers``, ``consumers`` or ``any`` side."""
        if side == "any":
            return [c for c in self.changes if c.breaking]
        return [c for c in self.changes if getattr(c, side) == BREAKING]

    def unversioned(self) -> list[str]:
        """Event types changed in a breaking way without a version bump: their producers
        cannot say which contract they follow, so no transition window can cover them."""
        bumped = {c.event_type for c in self.changes if c.kind == ChangeKind.BUMPED_VERSION}
        whole = (ChangeKind.ADDED_EVENT_TYPE, ChangeKind.REMOVED_EVENT_TYPE)
        return sorted({c.event_type for c in self.changes if c.breaking and c.kind not in whole} - bumped)

    def as_json(self) -> dict[str, Any]:
        """The diff as CI reads it (``trivas contracts diff --json``)."""
        return {
            "old": self.old,
            "new": self.new,
            "breaking": {side: bool(self.breaking_for(side)) for side in ("producers", "consumers", "any")},
            "changes": [{**asdict(c), "kind": c.kind.value, "tables": [asdict(t) for t in c.tables]} for c in self.changes],
            "unversioned_breaking_changes": self.unversioned(),
            "notes": [BRONZE_NOTE],
        }


# -- loading a catalog version ---------------------------------------------------------------


def catalog_folder(path: Path) -> Path | None:
    """The catalog folder a path names: the folder itself, or its ``conf/events``."""
    for candidate in (path, path / "conf" / "events"):
        if (candidate / ENVELOPE_FILE).is_file():
            return candidate
    return None


def load_catalog_at(ref: str, repo: Path = REPO_ROOT) -> Catalog:
    """The catalog in a folder (``conf/events``-style, or a checkout holding one) or at a git
    revision of ``repo`` (``HEAD~3``, ``main``, a tag).

    Raises:
        ValueError: ``ref`` is neither a catalog folder nor a revision holding one.
    """
    folder = catalog_folder(Path(ref))
    if folder is not None:
        return load_catalog(folder)
    relative = CATALOG_IN_REPO
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", "--format=tar", ref, relative], capture_output=True, check=False
    )
    if archive.returncode != 0:
        message = archive.stderr.decode(errors="replace").strip()
        raise ValueError(f"{ref!r} is neither a catalog folder nor a git revision with {relative}/ ({message})")
    with tempfile.TemporaryDirectory(prefix="trivas-catalog-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(tmp, filter="data")
        return load_catalog(Path(tmp, relative))


# -- the diff ----------------------------------------------------------------------------------


def diff_catalogs(old: Catalog, new: Catalog, kpis: KpiContracts | None = None, old_name: str = "old", new_name: str = "new") -> CatalogDiff:
    """Every classified change from ``old`` to ``new`` (event types in name order).

    Args:
        old: the catalog producers and tables follow today.
        new: the proposed catalog.
        kpis: the KPI contracts, to name the gold KPIs a field change touches (optional).
    """
    changes: list[Change] = []
    for name in sorted(set(old.event_types) | set(new.event_types)):
        before, after = old.event_types.get(name), new.event_types.get(name)
        if before is None:
            changes.append(_added_event_type(after, old, new))  # type: ignore[arg-type]
        elif after is None:
            changes.append(_change(ChangeKind.REMOVED_EVENT_TYPE, name, None, "no longer accepted: its records are quarantined as unknown_event_type",
                                   (TableImpact(SILVER_TABLE, "none", "rows stop arriving; existing rows stay"),
                                    *_kpi_impacts(kpis, before, None))))  # fmt: skip
        else:
            view = f"silver.{new.domains[after.domain].table}"
            changes.extend(_with_view(c, view) for c in _event_changes(before, after, old, new, kpis))
    return CatalogDiff(old_name, new_name, tuple(changes))


def _with_view(change: Change, view: str) -> Change:
    """``change`` naming the domain view too when it changes a ``silver.events`` column."""
    if not any(t.table == SILVER_TABLE and t.action in COLUMN_ACTIONS for t in change.tables):
        return change
    note = TableImpact(view, "none", f"a view of {SILVER_TABLE}: its columns follow the catalog")
    return replace(change, tables=(*change.tables, note))


def _change(kind: ChangeKind, event_type: str, field_name: str | None, detail: str, tables: tuple[TableImpact, ...] = (),
            verdict: tuple[str, str] | None = None) -> Change:  # fmt: skip
    producers, consumers = verdict or FIXED_VERDICTS[kind]
    return Change(kind, event_type, field_name, producers, consumers, detail, tables)


def _added_event_type(event: EventType, old: Catalog, new: Catalog) -> Change:
    columns = {f.name for d in old.domains for f in old.domain_fields(d)}
    added = tuple(
        TableImpact(SILVER_TABLE, "add_column", f"nullable {spec.spark_type().simpleString()}", spec.name)
        for spec in event.stored_fields
        if spec.name not in columns
    )
    view = f"silver.{new.domains[event.domain].table}"
    return _change(ChangeKind.ADDED_EVENT_TYPE, event.event_type, None, f"new type in domain {event.domain} ({view})",
                   added or (TableImpact(SILVER_TABLE, "none", "its fields are columns already"),))  # fmt: skip


def _event_changes(old: EventType, new: EventType, old_catalog: Catalog, new_catalog: Catalog, kpis: KpiContracts | None) -> Iterator[Change]:
    name = new.event_type
    if new.version != old.version:
        yield _change(ChangeKind.BUMPED_VERSION, name, None, f"version {old.version} → {new.version}")
    if old.version not in new.accepted_versions and old.version <= new.version:
        yield _change(ChangeKind.RETIRED_VERSION, name, None,
                      f"records of version {old.version} are quarantined as retired_schema_version "
                      f"(accepted: {new.accepted_versions.start}..{new.version}); keep it with oldest_accepted_version")  # fmt: skip
    if new.allowed_lateness != old.allowed_lateness:
        longer = new.allowed_lateness > old.allowed_lateness
        detail = f"allowed lateness {_duration(old.allowed_lateness)} → {_duration(new.allowed_lateness)}"
        restart = TableImpact("gold.kpi", "restart", "the hot path sizes its watermark from the catalog at start")
        late = () if longer else (TableImpact("silver.late", "none", "events later than the new lateness land here"),)
        yield _change(ChangeKind.LONGER_LATENESS if longer else ChangeKind.SHORTER_LATENESS, name, None, detail, (restart, *late))
    if new.dedup_horizon != old.dedup_horizon:
        yield _change(ChangeKind.CHANGED_DEDUP_HORIZON, name, None, f"dedup horizon {_duration(old.dedup_horizon)} → {_duration(new.dedup_horizon)}",
                      (TableImpact(SILVER_TABLE, "restart", "silver's dedup state follows at the next start"),))  # fmt: skip
    yield from _field_changes(old, new, old_catalog, new_catalog, kpis)


def _duration(span: timedelta) -> str:
    """``2m``, ``90s``, ``1h``: as catalog files spell durations."""
    seconds = int(span.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _field_changes(old: EventType, new: EventType, old_catalog: Catalog, new_catalog: Catalog, kpis: KpiContracts | None) -> Iterator[Change]:
    before = {f.name: f for f in old.fields}
    after = {f.name: f for f in new.fields}
    renamed_from = {alias: spec for spec in new.fields for alias in spec.aliases if alias in before and alias not in after}
    columns = {f.name: f for d in old_catalog.domains for f in old_catalog.domain_fields(d)}
    event_type = new.event_type
    for name, spec in after.items():
        origin = before.get(name)
        if origin is None:
            old_name = next((a for a in spec.aliases if a in renamed_from), None)
            if old_name is not None:
                yield _renamed(old, new, before[old_name], spec, columns, kpis)
                origin = before[old_name]
            else:
                yield _added_field(old, new, spec, columns)
                continue
        yield from _compare_field(event_type, origin, spec, columns, new_catalog, new, kpis)
    for name, spec in before.items():
        if name not in after and name not in renamed_from:
            impacts = (TableImpact(SILVER_TABLE, "keep_column", "no longer written; drop it once no reader needs it", name),
                       *_kpi_impacts(kpis, old, name))  # fmt: skip
            verdict = (COMPATIBLE, BREAKING if spec.required else COMPATIBLE)
            yield _change(ChangeKind.REMOVED_FIELD, event_type, name, "removed" + (" (was required)" if spec.required else ""), impacts, verdict)


def _added_field(old: EventType, new: EventType, spec: FieldSpec, columns: dict[str, FieldSpec]) -> Change:
    impact = _column_impact(spec, columns)
    if not spec.required:
        return _change(ChangeKind.ADDED_OPTIONAL_FIELD, new.event_type, spec.name, "optional", impact)
    windowed = old.version in new.accepted_versions and spec.since > old.version
    detail = (f"required from version {spec.since}; version {old.version} records without it are accepted during the transition window"
              if windowed else "required: records without it are quarantined as missing_required")  # fmt: skip
    return _change(ChangeKind.ADDED_REQUIRED_FIELD, new.event_type, spec.name, detail, impact,
                   (COMPATIBLE if windowed else BREAKING, COMPATIBLE))  # fmt: skip


def _column_impact(spec: FieldSpec, columns: dict[str, FieldSpec]) -> tuple[TableImpact, ...]:
    """The silver column a (newly) stored field needs."""
    if spec.pii == "forbidden":
        return (TableImpact(SILVER_TABLE, "none", "forbidden fields are never stored"),)
    existing = columns.get(spec.name)
    if existing is None or existing.pii == "forbidden":
        return (TableImpact(SILVER_TABLE, "add_column", f"nullable {spec.spark_type().simpleString()}", spec.name),)
    if existing.spark_type() != spec.spark_type():
        return (_retype(spec.name, existing, spec),)
    return (TableImpact(SILVER_TABLE, "none", "column exists (another event type of the domain)", spec.name),)


def _retype(column: str, old: FieldSpec, new: FieldSpec) -> TableImpact:
    return TableImpact(SILVER_TABLE, "widen_column",
                       f"{old.spark_type().simpleString()} → {new.spark_type().simpleString()}", column)  # fmt: skip


def _renamed(old: EventType, new: EventType, before: FieldSpec, after: FieldSpec, columns: dict[str, FieldSpec], kpis: KpiContracts | None) -> Change:
    impacts = (*_column_impact(after, columns),
               TableImpact(SILVER_TABLE, "keep_column", f"old rows keep {before.name}; new rows fill {after.name}", before.name),
               *_kpi_impacts(kpis, old, before.name))  # fmt: skip
    return _change(ChangeKind.RENAMED_FIELD, new.event_type, after.name,
                   f"{before.name} → {after.name}; records sending {before.name} are read through the alias", impacts)  # fmt: skip


def _compare_field(event_type: str, old: FieldSpec, new: FieldSpec, columns: dict[str, FieldSpec], new_catalog: Catalog,
                   new_event: EventType, kpis: KpiContracts | None, prefix: str = "") -> Iterator[Change]:  # fmt: skip
    label = prefix + new.name
    kpi = tuple(_kpi_impacts(kpis, new_event, new.name)) if not prefix else ()
    if old.type != new.type:
        kind = (ChangeKind.WIDENED_TYPE if (old.type, new.type) in WIDENINGS
                else ChangeKind.NARROWED_TYPE if (new.type, old.type) in WIDENINGS else ChangeKind.CHANGED_TYPE)  # fmt: skip
        impact = _retype(label, old, new) if kind == ChangeKind.WIDENED_TYPE else (
            TableImpact(SILVER_TABLE, "none", f"the {old.spark_type().simpleString()} column holds the new values", label)
            if kind == ChangeKind.NARROWED_TYPE else TableImpact(SILVER_TABLE, "restate", "incompatible column type: a rewrite", label))  # fmt: skip
        yield _change(kind, event_type, label, f"{old.type} → {new.type}", (impact, *kpi))
    if old.required != new.required:
        kind = ChangeKind.MADE_REQUIRED if new.required else ChangeKind.MADE_OPTIONAL
        yield _change(kind, event_type, label, "required" if new.required else "optional: nulls appear", kpi)
    yield from _allowed_changes(event_type, label, old, new, kpi)
    yield from _range_changes(event_type, label, old, new, kpi)
    if old.pii != new.pii:
        yield _pii_change(event_type, label, old, new, columns)
    for item in new.items:
        before = next((i for i in old.items if i.name == item.name), None)
        if before is None:
            kind = ChangeKind.ADDED_REQUIRED_FIELD if item.required else ChangeKind.ADDED_OPTIONAL_FIELD
            verdict = (BREAKING if item.required else COMPATIBLE, COMPATIBLE)
            yield _change(kind, event_type, f"{label}.{item.name}", "array item field",
                          (TableImpact(SILVER_TABLE, "add_column", f"nullable {item.spark_type().simpleString()}", f"{label}.element.{item.name}"),), verdict)  # fmt: skip
        else:
            yield from _compare_field(event_type, before, item, {}, new_catalog, new_event, None, f"{label}.")
    for item in old.items:
        if all(i.name != item.name for i in new.items):
            yield _change(ChangeKind.REMOVED_FIELD, event_type, f"{label}.{item.name}", "array item field",
                          (TableImpact(SILVER_TABLE, "keep_column", "no longer written", f"{label}.element.{item.name}"),),
                          (COMPATIBLE, BREAKING if item.required else COMPATIBLE))  # fmt: skip


def _allowed_changes(event_type: str, label: str, old: FieldSpec, new: FieldSpec, kpi: tuple[TableImpact, ...]) -> Iterator[Change]:
    if old.allowed == new.allowed:
        return
    before = set(old.allowed) if old.allowed is not None else None
    after = set(new.allowed) if new.allowed is not None else None
    added = after - before if before is not None and after is not None else None
    removed = before - after if before is not None and after is not None else None
    if after is None or added:
        shown = "any value" if after is None else ", ".join(map(str, sorted(added, key=str)))  # type: ignore[arg-type]
        yield _change(ChangeKind.ADDED_ALLOWED_VALUES, event_type, label, f"now allowed: {shown}", kpi)
    if before is None or removed:
        shown = f"only {sorted(after, key=str)}" if before is None else ", ".join(map(str, sorted(removed, key=str)))  # type: ignore[arg-type]
        yield _change(ChangeKind.REMOVED_ALLOWED_VALUES, event_type, label, f"no longer allowed: {shown}",
                      (TableImpact("silver.quarantine", "none", "records with those values land here as not_allowed"),))  # fmt: skip


def _range_changes(event_type: str, label: str, old: FieldSpec, new: FieldSpec, kpi: tuple[TableImpact, ...]) -> Iterator[Change]:
    def loosened(a: float | None, b: float | None, lower: bool) -> bool | None:
        """True when bound b admits more than a, False when less, None when equal."""
        if a == b:
            return None
        if a is None or b is None:
            return b is None
        return b < a if lower else b > a

    moves = [m for m in (loosened(old.min, new.min, True), loosened(old.max, new.max, False)) if m is not None]
    if not moves:
        return
    detail = f"range [{old.min}, {old.max}] → [{new.min}, {new.max}]"
    if any(moves):
        yield _change(ChangeKind.WIDENED_RANGE, event_type, label, detail, kpi)
    if not all(moves):
        yield _change(ChangeKind.NARROWED_RANGE, event_type, label, detail,
                      (TableImpact("silver.quarantine", "none", "records outside the range land here as out_of_range"),))  # fmt: skip


def _pii_change(event_type: str, label: str, old: FieldSpec, new: FieldSpec, columns: dict[str, FieldSpec]) -> Change:
    detail = f"PII class {old.pii} → {new.pii}"
    if new.pii == "forbidden":
        return _change(ChangeKind.CHANGED_PII_CLASS, event_type, label, detail + ": records carrying it are quarantined as forbidden_pii",
                       (TableImpact(SILVER_TABLE, "keep_column", "no longer written", label),), (BREAKING, BREAKING))  # fmt: skip
    if old.pii == "forbidden":
        return _change(ChangeKind.CHANGED_PII_CLASS, event_type, label, detail + ": now stored",
                       _column_impact(new, {k: v for k, v in columns.items() if k != new.name}), (COMPATIBLE, COMPATIBLE))  # fmt: skip
    return _change(ChangeKind.CHANGED_PII_CLASS, event_type, label, detail + ": the stored representation changes",
                   (TableImpact(SILVER_TABLE, "restate", f"rows written before keep the {old.pii} form", label),), (COMPATIBLE, BREAKING))  # fmt: skip


def _kpi_impacts(kpis: KpiContracts | None, event: EventType, field_name: str | None) -> Iterator[TableImpact]:
    """``gold.kpi`` impacts: the measures over ``event``'s domain whose contract names the
    field (or, for a whole event type, the type)."""
    if kpis is None:
        return
    needle = re.compile(rf"\b{re.escape(field_name or event.event_type)}\b")
    for kpi in kpis.kpis.values():
        if kpi.kind != "measure" or kpi.source != event.domain:
            continue
        text = " ".join([kpi.filter or "", kpi.value or "", *kpi.dimensions])
        if needle.search(text):
            yield TableImpact("gold.kpi", "review_kpi", f"KPI {kpi.name} reads {field_name or event.event_type}: check conf/kpis.yaml")

"""Contract migrations: bring a live Delta table to the schema its declaration derives today.

``trivas contracts migrate`` compares each table's live schema with its declaration in
:mod:`lakehouse.registry` (for ``silver.events``: derived from the event catalog) and plans
(:func:`plan_migration`, pure) what reconciles them:

- a column the declaration has and the table lacks → ``ALTER TABLE … ADD COLUMNS`` (nullable;
  nested fields of arrays of structs too). Delta appends with fewer columns fill it with null,
  so writers still running an older catalog keep working;
- a column whose type Delta can widen in place (type widening: ``INT → BIGINT``,
  ``FLOAT → DOUBLE``, ``INT → DOUBLE``, …) → ``ALTER COLUMN … TYPE``, after enabling
  ``delta.enableTypeWidening`` unless the table's properties turn it off;
- anything else is **refused** with the reason (a type Delta cannot widen, e.g. ``BIGINT →
  DOUBLE``, needs a rewrite that breaks readers; a NOT NULL column cannot be added to rows
  that exist);
- a column the table has and the declaration dropped is kept (readers may still use it).

When nothing is refused, the contract versions the table now matches are recorded in its
properties (``trivas.contract.versions``, JSON, and ``trivas.contract.revision``, bumped by one
per change). Every step is skipped when already done, so a second run changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from pyspark.sql import SparkSession
from pyspark.sql import types as T

from lakehouse.catalog import Catalog
from lakehouse.config import Settings
from lakehouse.registry import SILVER_EVENTS, table_spec
from lakehouse.tables import qualified, read_table, table_exists

VERSIONS_PROPERTY = "trivas.contract.versions"
REVISION_PROPERTY = "trivas.contract.revision"
TYPE_WIDENING_PROPERTY = "delta.enableTypeWidening"
# In-place type changes Delta's type widening supports (Delta 4.x docs); BIGINT → DOUBLE is
# not one (it would lose precision above 2^53).
DELTA_WIDENINGS = {
    ("tinyint", "smallint"), ("tinyint", "int"), ("tinyint", "bigint"), ("smallint", "int"),
    ("smallint", "bigint"), ("int", "bigint"), ("float", "double"), ("tinyint", "double"),
    ("smallint", "double"), ("int", "double"), ("date", "timestamp_ntz"),
}  # fmt: skip


@dataclass(frozen=True)
class Step:
    """One statement the migration runs (``action``: add_column, widen_column,
    enable_type_widening, record_versions)."""

    action: str
    column: str | None
    detail: str
    sql: str


@dataclass(frozen=True)
class Refusal:
    """A difference the migration will not reconcile, and why."""

    column: str
    reason: str


@dataclass
class MigrationPlan:
    """What reconciles one table with its declaration."""

    table: str
    steps: list[Step] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    exists: bool = True

    @property
    def up_to_date(self) -> bool:
        return not self.steps and not self.refused


def contract_versions(catalog: Catalog) -> dict[str, int]:
    """The contract version of every event type (what a migrated table records)."""
    return {name: event.version for name, event in sorted(catalog.event_types.items())}


def _path(parts: list[str]) -> str:
    return ".".join(f"`{p}`" for p in parts)


def _schema_steps(table: str, live: T.DataType, target: T.DataType, parts: list[str], properties: Mapping[str, str]) -> Iterator[Step | Refusal]:
    """Steps and refusals that turn ``live`` into ``target`` at column path ``parts``."""
    name = ".".join(parts)
    if isinstance(live, T.StructType) and isinstance(target, T.StructType):
        have = {f.name: f for f in live.fields}
        for wanted in target.fields:
            current = have.get(wanted.name)
            if current is not None:
                yield from _schema_steps(table, current.dataType, wanted.dataType, [*parts, wanted.name], properties)
            elif not wanted.nullable:
                yield Refusal(".".join([*parts, wanted.name]), "a NOT NULL column cannot be added to rows that exist (declare it nullable)")
            else:
                column = [*parts, wanted.name]
                yield Step("add_column", ".".join(column), f"nullable {wanted.dataType.simpleString()}",
                           f"ALTER TABLE {table} ADD COLUMNS ({_path(column)} {wanted.dataType.simpleString()})")  # fmt: skip
        return
    if isinstance(live, T.ArrayType) and isinstance(target, T.ArrayType):
        yield from _schema_steps(table, live.elementType, target.elementType, [*parts, "element"], properties)
        return
    if live == target:
        return
    change = (live.simpleString(), target.simpleString())
    if change not in DELTA_WIDENINGS:
        yield Refusal(name, f"Delta cannot change {change[0]} to {change[1]} in place; a rewrite would break "
                            "readers and streams of the table (breaking: migrate by hand, e.g. a new column)")  # fmt: skip
    elif properties.get(TYPE_WIDENING_PROPERTY, "").lower() == "false":
        yield Refusal(name, f"widening {change[0]} → {change[1]} needs type widening, which the table's {TYPE_WIDENING_PROPERTY}=false turns off")
    else:
        yield Step("widen_column", name, f"{change[0]} → {change[1]}", f"ALTER TABLE {table} ALTER COLUMN {_path(parts)} TYPE {change[1]}")


def plan_migration(table: str, sql_name: str, live: T.StructType, target: T.StructType, properties: Mapping[str, str],
                   versions: Mapping[str, int] | None) -> MigrationPlan:  # fmt: skip
    """The plan that reconciles a table's ``live`` schema and ``properties`` with its
    declared ``target`` schema (pure: nothing runs).

    Args:
        table: the table's logical name.
        sql_name: how Spark SQL names it (:func:`lakehouse.tables.qualified`).
        versions: the contract versions to record once the table matches (None: none).
    """
    plan = MigrationPlan(table)
    for item in _schema_steps(sql_name, live, target, [], properties):
        (plan.refused if isinstance(item, Refusal) else plan.steps).append(item)
    if any(s.action == "widen_column" for s in plan.steps) and properties.get(TYPE_WIDENING_PROPERTY, "").lower() != "true":
        plan.steps.insert(0, Step("enable_type_widening", None, f"{TYPE_WIDENING_PROPERTY}=true",
                                  f"ALTER TABLE {sql_name} SET TBLPROPERTIES ('{TYPE_WIDENING_PROPERTY}' = 'true')"))  # fmt: skip
    declared = {f.name for f in target.fields}
    plan.kept = [f.name for f in live.fields if f.name not in declared]
    recorded = json.loads(properties.get(VERSIONS_PROPERTY, "{}"))
    if versions is not None and not plan.refused and recorded != dict(versions):
        revision = int(properties.get(REVISION_PROPERTY, "0")) + 1
        text = json.dumps(dict(versions), sort_keys=True, separators=(",", ":"))
        changed = sorted(k for k in set(versions) | set(recorded) if versions.get(k) != recorded.get(k))
        plan.steps.append(Step("record_versions", None, f"revision {revision}: {', '.join(f'{k} v{versions.get(k)}' for k in changed)}",
                               f"ALTER TABLE {sql_name} SET TBLPROPERTIES ('{VERSIONS_PROPERTY}' = '{text}', "
                               f"'{REVISION_PROPERTY}' = '{revision}')"))  # fmt: skip
    return plan


def table_properties(spark: SparkSession, settings: Settings, logical: str) -> dict[str, str]:
    """The Delta table properties of a table."""
    return dict(spark.sql(f"DESCRIBE DETAIL {qualified(settings, logical)}").collect()[0]["properties"])


def plan_table(spark: SparkSession, settings: Settings, catalog: Catalog, logical: str = SILVER_EVENTS) -> MigrationPlan:
    """The plan of one declared table in a deployment (its versions are recorded only on the
    table the catalog derives, ``silver.events``)."""
    if not table_exists(spark, settings, logical):
        return MigrationPlan(logical, exists=False)
    spec = table_spec(logical)
    target = _declared_schema(catalog, logical, spec.schema)
    versions = contract_versions(catalog) if logical == SILVER_EVENTS else None
    live = read_table(spark, settings, logical).schema
    return plan_migration(logical, qualified(settings, logical), live, target, table_properties(spark, settings, logical), versions)


def _declared_schema(catalog: Catalog, logical: str, declared: T.StructType) -> T.StructType:
    from lakehouse.registry import silver_events_schema

    return silver_events_schema(catalog) if logical == SILVER_EVENTS else declared


def apply_plan(spark: SparkSession, plan: MigrationPlan) -> list[Step]:
    """Run the plan's steps in order (each one Delta commit); the steps run."""
    for step in plan.steps:
        spark.sql(step.sql)
    return list(plan.steps)

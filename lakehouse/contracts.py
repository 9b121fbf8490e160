"""Metric contracts (``conf/kpis.yaml``): one definition of every KPI for every tool.

The gold job derives its aggregation from the ``measure`` contracts, its derived rows
from ``ratio`` and ``rollup`` contracts; the dashboard its tiles; the detector its static
thresholds and freshness SLAs.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml

from lakehouse import conf_dir
from lakehouse.catalog import Catalog, parse_duration

KPI_FILE = conf_dir() / "kpis.yaml"
TOTAL = "all"  # the dimension value of a KPI's overall (undimensioned) row


EVERY_SERIES = "every_series"  # threshold scope: the total and each dimension's series
TOTAL_ONLY = "total"  # threshold scope: the total's series alone (dimension ``all``)


@dataclass(frozen=True)
class Thresholds:
    """Static bounds; a value outside them fires a threshold alert.

    ``scope`` says which series of the KPI the bounds speak of: ``every_series`` (the
    default) holds the total and every dimension's series to them, a minute without events
    (a zero) included; ``total`` only the total, as for a bound on the whole shop (a country
    without an order in a minute breaks no shop-wide minimum).
    """

    min: float | None = None
    max: float | None = None
    scope: Literal["every_series", "total"] = EVERY_SERIES

    def __post_init__(self) -> None:
        if self.scope not in (EVERY_SERIES, TOTAL_ONLY):
            raise ValueError(f"threshold scope {self.scope!r}: expected {EVERY_SERIES!r} or {TOTAL_ONLY!r}")


@dataclass(frozen=True)
class KpiContract:
    """One KPI's contract."""

    name: str
    kind: Literal["measure", "ratio", "rollup"]
    description: str
    unit: str
    grain: str
    dimensions: tuple[str, ...]
    freshness_sla: timedelta
    owner: str
    runbook: str
    alert_route: str
    anomaly_detection: bool
    thresholds: Thresholds
    source: str | None = None
    filter: str | None = None
    value: str | None = None
    numerator: str | None = None
    denominator: str | None = None
    of: str | None = None
    window: timedelta | None = None
    slide: timedelta | None = None
    inputs: tuple[str, ...] = field(default=())

    @property
    def window_label(self) -> str:
        """The grain as stored in ``gold.kpi.grain``: ``1m`` or ``5m/1m`` (sliding)."""
        if self.kind == "rollup":
            assert self.window is not None and self.slide is not None
            return f"{_label(self.window)}/{_label(self.slide)}"
        return self.grain


def _label(duration: timedelta) -> str:
    seconds = int(duration.total_seconds())
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


def referenced_measures(expression: str) -> tuple[str, ...]:
    """Measure names used by a ratio's arithmetic (:func:`compile_arithmetic`), in order."""
    tree = ast.parse(expression.strip(), mode="eval")
    functions = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    names = [n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in functions]
    return tuple(dict.fromkeys(names))


# -- ratio arithmetic ----------------------------------------------------------------------------
#
# A ratio's numerator and denominator are evaluated on the driver for every KPI row a
# micro-batch changes (no Spark job for a few hundred rows), so they are written in a small,
# SQL-compatible subset: measure names, numbers, + - * /, parentheses and the functions
# below. Nulls propagate as in SQL; greatest/least skip them; x / 0 is null.

MeasureValues = Mapping[str, float | None]
Evaluation = Callable[[MeasureValues], float | None]
_FUNCTIONS: dict[str, Callable[..., float | None]] = {
    "greatest": lambda *v: max((x for x in v if x is not None), default=None),
    "least": lambda *v: min((x for x in v if x is not None), default=None),
    "coalesce": lambda *v: next((x for x in v if x is not None), None),
    "abs": lambda x: None if x is None else abs(x),
    "nullif": lambda x, y: None if x == y else x,
}
_OPERATORS: dict[type, Callable[[float, float], float | None]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b if b else None,
}


@cache
def compile_arithmetic(expression: str) -> Evaluation:
    """``"greatest(checkouts_started - orders, 0)"`` → a function of the measures' values.
    Refuses anything outside the subset above with the reason."""
    try:
        tree = ast.parse(expression.strip(), mode="eval").body
    except SyntaxError as error:
        raise ValueError(f"not an arithmetic expression over measures: {expression!r}") from error

    def build(node: ast.expr) -> Evaluation:
        if isinstance(node, ast.Name):
            return lambda values, name=node.id: values.get(name)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
            return lambda values, number=float(node.value): number
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            operand = build(node.operand)
            return lambda values: None if (v := operand(values)) is None else -v
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            left, right, apply = build(node.left), build(node.right), _OPERATORS[type(node.op)]
            return lambda values: (
                None if (a := left(values)) is None or (b := right(values)) is None else apply(a, b)
            )
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id.lower() in _FUNCTIONS and not node.keywords:
            function, arguments = _FUNCTIONS[node.func.id.lower()], [build(a) for a in node.args]
            return lambda values: function(*(argument(values) for argument in arguments))
        raise ValueError(f"{ast.unparse(node)!r} in {expression!r}: use measures, numbers, + - * /, "
                         f"parentheses and {', '.join(_FUNCTIONS)}")  # fmt: skip

    return build(tree)


@dataclass(frozen=True)
class KpiContracts:
    """All contracts, validated against each other and the event catalog."""

    kpis: dict[str, KpiContract]

    def of_kind(self, kind: str) -> list[KpiContract]:
        return [k for k in self.kpis.values() if k.kind == kind]

    def measures_of(self, domain: str) -> list[KpiContract]:
        """Measures aggregated from one silver domain."""
        return [k for k in self.of_kind("measure") if k.source == domain]

    def __getitem__(self, name: str) -> KpiContract:
        return self.kpis[name]


def _contract(name: str, raw: dict[str, Any], defaults: dict[str, Any]) -> KpiContract:
    merged = {**defaults, **raw}
    kind = merged["kind"]
    try:
        thresholds = Thresholds(**(merged.get("thresholds") or {}))
    except (TypeError, ValueError) as error:
        raise ValueError(f"kpi {name}: thresholds: {error}") from error
    inputs: tuple[str, ...] = ()
    if kind == "ratio":
        compile_arithmetic(merged["numerator"]), compile_arithmetic(merged["denominator"])  # refuse early
        inputs = tuple(
            dict.fromkeys(
                referenced_measures(merged["numerator"]) + referenced_measures(merged["denominator"])
            )
        )
    elif kind == "rollup":
        inputs = (merged["of"],)
    return KpiContract(
        name=name,
        kind=kind,
        description=merged["description"],
        unit=merged["unit"],
        grain=merged["grain"],
        dimensions=tuple(merged.get("dimensions") or ()),
        freshness_sla=parse_duration(merged["freshness_sla"]),
        owner=merged["owner"],
        runbook=merged["runbook"],
        alert_route=merged["alert_route"],
        anomaly_detection=bool(merged["anomaly_detection"]),
        thresholds=thresholds,
        source=merged.get("source"),
        filter=merged.get("filter"),
        value=str(merged["value"]) if merged.get("value") is not None else None,
        numerator=merged.get("numerator"),
        denominator=merged.get("denominator"),
        of=merged.get("of"),
        window=parse_duration(merged["window"]) if merged.get("window") else None,
        slide=parse_duration(merged["slide"]) if merged.get("slide") else None,
        inputs=inputs,
    )


def validate(contracts: KpiContracts, catalog: Catalog) -> None:
    """Cross-checks: sources exist, inputs are measures with the needed dimensions."""
    for kpi in contracts.kpis.values():
        if kpi.kind == "measure":
            if kpi.source not in catalog.domains:
                raise ValueError(f"kpi {kpi.name}: unknown source domain {kpi.source!r}")
            if not kpi.filter or not kpi.value:
                raise ValueError(f"kpi {kpi.name}: a measure needs filter and value")
            columns = {f.name for f in catalog.domain_fields(kpi.source)} | {"event_type"}
            missing = set(kpi.dimensions) - columns
            if missing:
                raise ValueError(f"kpi {kpi.name}: dimensions {sorted(missing)} not in {kpi.source}")
            if kpi.grain != "1m":
                raise ValueError(f"kpi {kpi.name}: measures are computed per 1m (use a rollup)")
            continue
        for name in kpi.inputs:
            base = contracts.kpis.get(name)
            if base is None or base.kind != "measure":
                raise ValueError(f"kpi {kpi.name}: input {name!r} is not a measure")
            missing = set(kpi.dimensions) - set(base.dimensions)
            if missing:
                raise ValueError(f"kpi {kpi.name}: input {name} lacks dimensions {sorted(missing)}")
        if kpi.kind == "rollup":
            assert kpi.window and kpi.slide
            if kpi.window % timedelta(minutes=1) or kpi.slide % timedelta(minutes=1):
                raise ValueError(f"kpi {kpi.name}: window and slide must be whole minutes")


def load_contracts(path: Path = KPI_FILE, catalog: Catalog | None = None) -> KpiContracts:
    """Load ``conf/kpis.yaml`` and validate it (against ``catalog`` when given)."""
    raw = yaml.safe_load(path.read_text())
    defaults = raw.get("defaults", {})
    contracts = KpiContracts({name: _contract(name, spec, defaults) for name, spec in raw["kpis"].items()})
    if catalog is not None:
        validate(contracts, catalog)
    return contracts


@lru_cache(maxsize=1)
def contracts() -> KpiContracts:
    """The project's KPI contracts, validated against the event catalog."""
    from lakehouse.catalog import catalog

    return load_contracts(catalog=catalog())

"""Validation runs: the suites of ``gx/expectations/`` over a recent window of each table.

A run reads each table's rows of the window with delta-rs (no JVM, no Spark job), validates
them with Great Expectations on pandas (one checkpoint per table: about 0.05 s for a few
thousand rows, where GX on Spark costs 0.5–2 s per call; ``bench/bench_quality.py``), and
gives one :class:`Outcome` per expectation. Suite parameters are set per run:

- ``fresh_after`` = now − the suite's freshness SLA (its newest row must be younger);
- ``volume_min``/``volume_max`` = the seasonal band of the table's volume KPI: the same window
  one week (and one day) earlier in ``gold.kpi``'s history (:func:`seasonal_band`). With no
  history at those lags the bounds stay open and the outcome says so.

:class:`QualityCheck` runs every suite (or one), appends the outcomes to ``ops.validations``
(one writer: the pipeline's quality schedule or ``trivas quality run``, one per deployment),
builds the Data Docs under ``<var>/quality/data_docs`` and opens or resolves one
``data_quality`` alert per table in ``gold.alerts`` (kpi ``data_quality``, dimension = the
table), which the alert router delivers like every other alert.
"""

from __future__ import annotations

import json
import logging
import math
import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import types as T

from lakehouse.config import Settings
from lakehouse.suites import FRESH_AFTER, SUITES_DIR, VOLUME_MAX, VOLUME_MIN, load_suites

log = logging.getLogger("trivas.quality")

VALIDATIONS = "ops.validations"
QUALITY_WRITER = "quality"  # the pipeline's quality schedule or `trivas quality run`
SAMPLE_KEYS = 10  # failing keys kept per expectation
DOCS_RUNS_KEPT = 24  # Data Docs pages kept per table (two hours of the default schedule)
OBSERVED_CHARS = 500

VALIDATIONS_SCHEMA = T.StructType(
    [
        T.StructField("run_id", T.StringType(), False),
        T.StructField("table", T.StringType(), False),
        T.StructField("suite", T.StringType(), False),
        T.StructField("expectation", T.StringType(), False),
        T.StructField("success", T.BooleanType(), False),
        T.StructField("observed_value", T.StringType(), True),
        T.StructField("unexpected_count", T.LongType(), True),
        T.StructField("failing_keys", T.StringType(), True),  # JSON list, PII-scrubbed
        T.StructField("rows", T.LongType(), False),
        T.StructField("window_start", T.TimestampType(), False),
        T.StructField("window_end", T.TimestampType(), False),
        T.StructField("run_at", T.TimestampType(), False),
    ]
)


def data_docs_dir(settings: Settings) -> Path:
    """Where the Data Docs are built: ``<var>/quality/data_docs`` (open ``index.html``)."""
    return settings.path(settings.paths.var) / "quality" / "data_docs"


@dataclass(frozen=True)
class Window:
    """The rows a run validates: ``since <= window column < until``."""

    since: datetime
    until: datetime

    @classmethod
    def recent(cls, now: datetime, minutes: float) -> Window:
        return cls(now - timedelta(minutes=minutes), now)

    def shifted(self, lag: timedelta) -> Window:
        return Window(self.since - lag, self.until - lag)


@dataclass(frozen=True)
class Band:
    """The expected row count of a window and the bounds a run accepts."""

    expected: float
    low: int
    high: int


@dataclass(frozen=True)
class Outcome:
    """The result of one expectation on one table's window."""

    table: str
    expectation: str
    success: bool
    observed_value: Any = None
    unexpected_count: int | None = None
    failing_keys: list[dict[str, Any]] = field(default_factory=list)
    rows: int = 0

    def as_row(self, run_id: str, window: Window, run_at: datetime) -> dict[str, Any]:
        observed = None if self.observed_value is None else json.dumps(self.observed_value, default=str)[:OBSERVED_CHARS]
        return {
            "run_id": run_id, "table": self.table, "suite": self.table, "expectation": self.expectation,
            "success": self.success, "observed_value": observed,
            "unexpected_count": None if self.unexpected_count is None else int(self.unexpected_count),
            "failing_keys": json.dumps(self.failing_keys, default=str) if self.failing_keys else None,
            "rows": self.rows, "window_start": window.since, "window_end": window.until, "run_at": run_at,
        }  # fmt: skip


def _ts(moment: datetime) -> pa.Scalar:
    return pa.scalar(moment.astimezone(UTC), type=pa.timestamp("us", "UTC"))


def window_rows(settings: Settings, meta: dict[str, Any], window: Window) -> pd.DataFrame:
    """The table's rows in ``window`` (by the suite's window column), read with delta-rs; an
    empty frame with the table's columns while the table does not exist yet."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError
    from pyspark.sql.pandas.types import to_arrow_schema

    from lakehouse.registry import table_spec, view_of
    from lakehouse.tables import table_path

    table = meta["table"]
    view = view_of(table)
    base = view.base if view is not None else table
    column = meta["window_column"]
    condition = (pc.field(column) >= _ts(window.since)) & (pc.field(column) < _ts(window.until))
    if meta.get("domain"):  # silver.events is partitioned by domain: read one partition
        condition = (pc.field("domain") == meta["domain"]) & condition
    try:
        rows = DeltaTable(table_path(settings, base)).to_pyarrow_dataset().to_table(filter=condition)
    except TableNotFoundError:
        rows = to_arrow_schema(table_spec(base).schema).empty_table()
    return (view.arrow(rows) if view is not None else rows).to_pandas()


def seasonal_band(
    settings: Settings, kpi: str, window: Window, lags: Iterable[timedelta], tolerance: float
) -> Band | None:
    """The expected count of ``kpi``'s events in ``window`` from ``gold.kpi``'s history.

    The KPI's total (dimension ``all``) one-minute values in the same window shifted by each
    seasonal lag are summed per lag; the median of the lags that have any row is the
    expectation. The band is ± ``tolerance`` of it, never narrower than three Poisson
    standard deviations (a small count is noisy). None when no lag has history.
    """
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    from lakehouse.registry import KPI
    from lakehouse.tables import table_path

    try:
        dataset = DeltaTable(table_path(settings, KPI)).to_pyarrow_dataset()
    except TableNotFoundError:
        return None
    totals = []
    for lag in lags:
        past = window.shifted(lag)
        condition = (
            (pc.field("kpi") == kpi) & (pc.field("grain") == "1m") & (pc.field("dimension") == "all")
            & (pc.field("window_start") >= _ts(past.since)) & (pc.field("window_start") < _ts(past.until))
        )  # fmt: skip
        rows = dataset.to_table(filter=condition, columns=["window_start", "value", "computed_at"]).to_pandas()
        if rows.empty:
            continue
        current = rows.sort_values("computed_at", kind="stable").drop_duplicates("window_start", keep="last")
        totals.append(float(current["value"].fillna(0).sum()))
    if not totals:
        return None
    expected = float(pd.Series(totals).median())
    slack = max(tolerance * expected, 3 * math.sqrt(expected))
    return Band(expected, max(0, math.floor(expected - slack)), math.ceil(expected + slack))


def expectation_label(config: dict[str, Any]) -> str:
    """``expect_column_values_to_not_be_null(order_id) where event_type in ['order_placed']``."""
    kwargs = config.get("kwargs", {})
    target = kwargs.get("column") or kwargs.get("column_list") or (
        f"{kwargs['column_A']} > {kwargs['column_B']}" if "column_A" in kwargs else ""
    )
    if isinstance(target, list):
        target = ", ".join(target)
    condition = kwargs.get("row_condition")
    if isinstance(condition, dict):  # GX echoes a pandas condition as a pass-through filter
        condition = condition.get("pass_through_filter")
    return f"{config['type']}({target})" + (f" where {condition}" if condition else "")


def scrub_keys(samples: Iterable[dict[str, Any]], pii: dict[str, str]) -> list[dict[str, Any]]:
    """Failing keys with every PII-classed column replaced by its class and PII patterns
    masked in the rest (silver holds protected values already: this is the last defence)."""
    from lakehouse.ingest.scrub import mask_any

    scrubbed = []
    for sample in samples:
        row = {}
        for name, value in sample.items():
            if name in pii:
                row[name] = f"[{pii[name]}]"
            elif isinstance(value, float) and math.isnan(value):
                row[name] = None
            else:
                row[name] = mask_any(_plain(value), name)
        scrubbed.append(row)
    return scrubbed


def _plain(value: Any) -> Any:
    """A JSON-friendly scalar (numpy and pandas scalars, timestamps as ISO text)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp | datetime):
        return None if pd.isna(value) else pd.Timestamp(value).isoformat()
    if hasattr(value, "item"):
        return value.item()
    return value


def outcomes_of(table: str, result: Any, rows: int, pii: dict[str, str]) -> list[Outcome]:
    """One :class:`Outcome` per expectation of a GX validation result."""
    outcomes = []
    for item in result.results:
        config = item.expectation_config.to_json_dict()
        details = item.result or {}
        error = (item.exception_info or {}).get("exception_message") if (item.exception_info or {}).get("raised_exception") else None
        observed = details.get("observed_value", details.get("unexpected_percent"))
        outcomes.append(
            Outcome(
                table=table,
                expectation=expectation_label(config),
                success=bool(item.success) and error is None,
                observed_value=error or _plain(observed),
                unexpected_count=details.get("unexpected_count"),
                failing_keys=scrub_keys(details.get("partial_unexpected_index_list") or [], pii)[:SAMPLE_KEYS],
                rows=rows,
            )
        )
    return outcomes


def _quiet_gx() -> None:
    # No usage statistics (no network here) and no progress bars in logs.
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


class SuiteRunner:
    """The suites of a folder in one ephemeral GX context (pandas), built once per process.

    Suites are loaded from JSON; one that names an unknown expectation type is refused with its
    file in the error (GX itself would log and drop it, and the suite would check less). Each table gets a checkpoint whose action
    rebuilds the Data Docs site under ``docs_dir``.
    """

    def __init__(self, suites: dict[str, dict[str, Any]], docs_dir: Path) -> None:
        _quiet_gx()
        import great_expectations as gx
        from great_expectations.checkpoint import UpdateDataDocsAction
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.suites = suites
        self.docs_dir = docs_dir
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        docs_dir.mkdir(parents=True, exist_ok=True)
        self.context.add_data_docs_site(
            site_name="trivas",
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        source = self.context.data_sources.add_pandas("trivas")
        self.checkpoints = {}
        for table, raw in suites.items():
            missing = {"table", "window_column", "keys"} - set((raw.get("meta") or {}).get("trivas") or {})
            if missing:
                raise ValueError(f"suite {table} ({SUITES_DIR.name}/{table}.json): meta.trivas lacks {sorted(missing)}; start from a generated suite")
            suite = gx.ExpectationSuite(name=table, expectations=raw["expectations"], meta=raw.get("meta", {}))
            loaded = {e.expectation_type for e in suite.expectations}
            dropped = sorted({e["type"] for e in raw["expectations"]} - loaded)
            if len(suite.expectations) != len(raw["expectations"]):  # GX logs and drops unknown types
                raise ValueError(f"suite {table} ({SUITES_DIR.name}/{table}.json): GX could not load {dropped or 'some expectations'}")
            suite = self.context.suites.add(suite)
            batch = source.add_dataframe_asset(table).add_batch_definition_whole_dataframe("window")
            definition = self.context.validation_definitions.add(gx.ValidationDefinition(name=table, data=batch, suite=suite))
            self.checkpoints[table] = self.context.checkpoints.add(
                gx.Checkpoint(
                    name=table,
                    validation_definitions=[definition],
                    actions=[UpdateDataDocsAction(name="data_docs", site_names=["trivas"])],
                    result_format={"result_format": "COMPLETE", "unexpected_index_column_names": raw["meta"]["trivas"]["keys"]},
                )
            )

    def validate(self, table: str, rows: pd.DataFrame, parameters: dict[str, Any]) -> Any:
        """The GX validation result of ``table``'s suite on ``rows``."""
        result = self.checkpoints[table].run(batch_parameters={"dataframe": rows}, expectation_parameters=parameters)
        self.prune(table)
        return next(iter(result.run_results.values()))

    def prune(self, table: str, keep: int = DOCS_RUNS_KEPT) -> None:
        """Forget all but ``table``'s newest ``keep`` results: a scheduled run every few
        minutes must not grow the context's in-memory store, nor the Data Docs folder (a page
        per run and table), without bound."""
        import shutil

        store = self.context.validation_results_store
        keys = sorted((k for k in store.list_keys() if k.expectation_suite_identifier.name == table), key=lambda k: k.run_id.run_time)
        for old in keys[:-keep]:
            store.remove_key(old)
            shutil.rmtree(self.docs_dir.joinpath("validations", *old.to_tuple()[:-1]), ignore_errors=True)


@dataclass
class TableRun:
    """One table's outcomes in a run."""

    table: str
    outcomes: list[Outcome]

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success]


@dataclass
class QualityRun:
    """A run over every suite (or one): its id, window and per-table outcomes."""

    run_id: str
    window: Window
    run_at: datetime
    tables: list[TableRun]

    def rows(self) -> list[dict[str, Any]]:
        return [o.as_row(self.run_id, self.window, self.run_at) for t in self.tables for o in t.outcomes]

    @property
    def success(self) -> bool:
        return all(not t.failed for t in self.tables)


def run_parameters(settings: Settings, meta: dict[str, Any], window: Window, now: datetime) -> tuple[dict[str, Any], Band | None]:
    """The suite parameters of one table's run (freshness bound, volume band)."""
    policy = settings.quality
    parameters: dict[str, Any] = {}
    if meta.get("freshness_sla_seconds") is not None:
        parameters[FRESH_AFTER] = pd.Timestamp(now - timedelta(seconds=meta["freshness_sla_seconds"]))
    band = None
    if meta.get("volume"):
        lags = [timedelta(days=d) for d in policy.seasonal_lags_days]
        band = seasonal_band(settings, meta["volume"]["kpi"], window, lags, policy.volume_tolerance)
        parameters[VOLUME_MIN] = band.low if band else 0
        parameters[VOLUME_MAX] = band.high if band else None
    return parameters, band


def pii_columns(table: str) -> dict[str, str]:
    """PII class of every protected column of a silver table (none for gold)."""
    from lakehouse.catalog import catalog

    cat = catalog()
    for domain, spec in cat.domains.items():
        if f"silver.{spec.table}" == table:
            return cat.pii_classes(domain)
    return {}


class QualityCheck:
    """Validates tables, records the outcomes, builds Data Docs and raises alerts.

    Args:
        settings: The deployment.
        alerts: Called with each run to open/resolve the ``data_quality`` alerts (see
            :class:`QualityAlerts`); None records and documents only.
        suites_dir: The suites folder (``gx/expectations``).
    """

    def __init__(self, settings: Settings, alerts: Callable[[QualityRun], None] | None = None, suites_dir: Path = SUITES_DIR) -> None:
        from lakehouse.alerts.store import DeltaLog

        self.settings = settings
        self.alerts = alerts
        self.runner = SuiteRunner(load_suites(suites_dir), data_docs_dir(settings))
        self.log = DeltaLog(settings, VALIDATIONS, VALIDATIONS_SCHEMA)

    @property
    def tables(self) -> list[str]:
        return list(self.runner.suites)

    def validate_table(self, table: str, window: Window, now: datetime) -> TableRun:
        """One table's outcomes (the volume outcome names its band, or that it has none)."""
        meta = self.runner.suites[table]["meta"]["trivas"]
        rows = window_rows(self.settings, meta, window)
        parameters, band = run_parameters(self.settings, meta, window, now)
        outcomes = outcomes_of(table, self.runner.validate(table, rows, parameters), len(rows), pii_columns(table))
        if meta.get("volume"):
            outcomes = [_with_band(o, band, meta["volume"]["kpi"]) for o in outcomes]
        return TableRun(table, outcomes)

    def run(self, window: Window, tables: Iterable[str] | None = None, now: datetime | None = None, record: bool = True) -> QualityRun:
        """Validate ``tables`` (default: every suite) over ``window``; record and alert.

        ``now`` is the moment freshness is judged against (default: the run's own time, which
        is always its ``run_at``)."""
        ran_at = datetime.now(UTC)
        now = now or ran_at
        chosen = list(tables) if tables is not None else self.tables
        unknown = sorted(set(chosen) - set(self.tables))
        if unknown:
            raise KeyError(f"no suite for {unknown}; suites: {self.tables}")
        run = QualityRun(f"{ran_at:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}", window, ran_at, [self.validate_table(t, window, now) for t in chosen])
        if record:
            self.log.append(run.rows())
            if self.alerts is not None:
                self.alerts(run)
        return run


def _with_band(outcome: Outcome, band: Band | None, kpi: str) -> Outcome:
    if not outcome.expectation.startswith("expect_table_row_count_to_be_between"):
        return outcome
    seasonal = {"rows": outcome.observed_value, "kpi": kpi}
    seasonal.update({"expected": band.expected, "band": [band.low, band.high]} if band else {"band": "no seasonal history"})
    return Outcome(outcome.table, outcome.expectation, outcome.success, seasonal, outcome.unexpected_count, outcome.failing_keys, outcome.rows)


def latest_outcomes(settings: Settings) -> pd.DataFrame:
    """The outcomes of the newest run of each table (the app's and the router's view)."""
    from deltalake.exceptions import TableNotFoundError

    from lakehouse.tables import read_pandas

    try:
        frame = read_pandas(settings, VALIDATIONS)
    except TableNotFoundError:
        return pd.DataFrame(columns=VALIDATIONS_SCHEMA.fieldNames())
    if frame.empty:
        return frame
    newest = frame.groupby("table")["run_at"].transform("max")
    return frame[frame["run_at"] == newest].reset_index(drop=True)


def failure_summary(outcomes: pd.DataFrame, table: str, limit: int = 5) -> str:
    """The failed expectations of ``table`` in a few lines (an alert's details)."""
    failed = outcomes[(outcomes["table"] == table) & (~outcomes["success"].astype(bool))]
    lines = [f"{r.expectation}: observed {r.observed_value}, unexpected {r.unexpected_count}" for r in failed.head(limit).itertuples()]
    more = len(failed) - limit
    return "\n".join(lines + ([f"… and {more} more"] if more > 0 else []))

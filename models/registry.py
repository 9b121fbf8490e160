"""MLflow packaging of KPI anomaly models: train, register, alias, gate, load.

Models are MLflow pyfunc models (``name=`` logging, MLflow 3) registered under
one name with the aliases ``champion`` and ``challenger`` (no stages). The
tracking/registry URI is a parameter everywhere; by default it is the settings'
``mlflow.tracking_uri`` (``TRIVAS_MLFLOW__TRACKING_URI``, MLflow's own ``MLFLOW_TRACKING_URI``
as a fallback, else ``sqlite:///<home>/var/mlflow/mlflow.db``).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema

from models import nab
from models.alert_budget import budget_thresholds, open_window_thresholds
from models.evaluation import (
    SHARED_DATA,
    load_msft_corpus,
    load_nab_corpus,
    nab_results,
    run_detector,
)
from models.scorer import ENSEMBLE, ETS, KpiScorer, score_with_probation
from models.series import OUTPUT_COLUMNS, SERIES_KEY, TIMESTAMP, VALUE, normalise_points
from models.validation import PromotionGate, report_table, validate

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL_NAME = "trivas-kpi-anomaly"
CHAMPION = "champion"
CHALLENGER = "challenger"
GATE_METRIC = "nab_standard_oos_all"  # out of sample only (models.validation)
ALERTS_PER_WEEK = 2.0  # paging budget per KPI series on its own clean history
EXPERIMENT = "trivas-kpi-anomaly"


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """Tracking URI: the argument, else the settings' ``mlflow.tracking_uri`` (environment from
    ``$TRIVAS_ENV``); a sqlite file's folder is created."""
    from lakehouse.config import load_settings

    uri = tracking_uri or load_settings().mlflow.tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return uri


# A Databricks workspace's models live in Unity Catalog's registry (three-level names such as
# trivas.ml.kpi_anomaly), not in the workspace registry that the tracking URI would imply.
REGISTRY_OF_TRACKING = {"databricks": "databricks-uc"}


def _use(tracking_uri: str | None) -> MlflowClient:
    uri = resolve_tracking_uri(tracking_uri)
    registry_uri = REGISTRY_OF_TRACKING.get(uri, uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(registry_uri)
    return MlflowClient(tracking_uri=uri, registry_uri=registry_uri)


class KpiAnomalyModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: input ``timestamp, value[, series_key]``, output the score columns.

    Each ``predict`` call starts from the trained states (a copy), so REST
    calls are independent; rows of one series are scored causally in time order.
    """

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        """Load the scorer saved next to the model."""
        self.scorer = KpiScorer.load(context.artifacts["scorer"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:  # noqa: ANN001
        """Score a batch of KPI points (see class docstring)."""
        frame = pd.DataFrame(model_input)
        scored = self.scorer.copy().score(frame)
        return scored[OUTPUT_COLUMNS].reset_index(drop=True)


def model_signature() -> ModelSignature:
    """Input: timestamp, value, optional series_key. Output: the six score columns."""
    inputs = Schema(
        [
            ColSpec("datetime", TIMESTAMP),
            ColSpec("double", VALUE),
            ColSpec("string", SERIES_KEY, required=False),
        ]
    )
    outputs = Schema(
        [
            ColSpec("double", "expected"),
            ColSpec("double", "lower"),
            ColSpec("double", "upper"),
            ColSpec("double", "anomaly_score"),
            ColSpec("boolean", "is_anomaly"),
            ColSpec("double", "confidence"),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


def load_history(source: str | Path | pd.DataFrame, timestamp_col: str = TIMESTAMP, value_col: str = VALUE) -> pd.DataFrame:
    """History as points: a pandas frame (e.g. gold.kpi rows) or a CSV path."""
    frame = source if isinstance(source, pd.DataFrame) else pd.read_csv(source)
    return normalise_points(frame, timestamp_col=timestamp_col, value_col=value_col)


def default_history(data_dir: Path = SHARED_DATA) -> pd.DataFrame:
    """Training default: the shared real series, one series_key per file."""
    parts = []
    for series in load_nab_corpus(data_dir / "nab") + load_msft_corpus(data_dir / "msft-purchase-rate"):
        part = series.points.copy()
        part[SERIES_KEY] = series.name.removesuffix(".csv")
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


@dataclass
class EvaluationReport:
    """NAB scores of one scorer family on the evaluation corpora."""

    metrics: dict[str, float]
    results: dict[str, dict[str, nab.CorpusResult]]


def evaluate_scorer(scorer: KpiScorer, data_dir: Path = SHARED_DATA) -> EvaluationReport:
    """NAB evaluation (probation learning, corpus-wide threshold sweep) of a scorer's family.

    Corpora: ``nab`` (realAdExchange), ``msft`` (purchase-rate), ``all`` (both as one
    NAB corpus, the promotion gate's metric).
    """
    profiles = nab.load_profiles(data_dir / "nab" / "profiles.json") if (data_dir / "nab").exists() else nab.STANDARD_PROFILES
    corpora = {"nab": load_nab_corpus(data_dir / "nab"), "msft": load_msft_corpus(data_dir / "msft-purchase-rate")}
    corpora["all"] = corpora["nab"] + corpora["msft"]
    results, metrics = {}, {}
    cache: dict[str, pd.DataFrame] = {}
    for name, corpus in corpora.items():
        missing = [s for s in corpus if s.name not in cache]
        cache.update(run_detector(lambda df: score_with_probation(scorer, df, nab.probation_length(len(df))), missing))
        results[name] = nab_results(corpus, {s.name: cache[s.name] for s in corpus}, profiles)
        for profile, res in results[name].items():
            metrics[f"nab_{profile}_{name}"] = res.score
            metrics[f"nab_{profile}_{name}_threshold"] = res.threshold
    return EvaluationReport(metrics, results)


@dataclass
class TrainResult:
    """Outcome of :func:`train_and_register`."""

    run_id: str
    model_uri: str
    version: str
    alias: str | None
    metrics: dict[str, float]


def train_and_register(
    history: str | Path | pd.DataFrame | None = None,
    kind: str = ENSEMBLE,
    alias: str | None = CHAMPION,
    *,
    tracking_uri: str | None = None,
    model_name: str = DEFAULT_MODEL_NAME,
    params: dict | None = None,
    evaluate: bool = True,
    calibrate_threshold: bool = True,
    timestamp_col: str = TIMESTAMP,
    value_col: str = VALUE,
    alerts_per_week: float = ALERTS_PER_WEEK,
) -> TrainResult:
    """Fit a scorer on history, log it to MLflow, register it and set an alias.

    Args:
        history: gold.kpi-like pandas frame (``timestamp, value[, series_key]``) or a
            CSV path; ``None`` uses the shared real series.
        kind: ``"cold_start_ensemble"`` (default), ``"seasonal_baseline"`` or ``"ets"``.
        alias: Alias to point at the new version (``None`` for none).
        tracking_uri: MLflow tracking/registry URI (see :func:`resolve_tracking_uri`).
        model_name: Registered model name.
        params: Hyper-parameter overrides.
        evaluate: Run the leave-one-file-out NAB validation (needs the shared data) and
            log its in-sample and out-of-sample metrics.
        calibrate_threshold: Set the fallback threshold (series without history) to the
            NAB-swept standard-profile threshold over all labelled files.
        timestamp_col: Timestamp column of a CSV/frame history.
        value_col: Value column of a CSV/frame history.
        alerts_per_week: Paging budget: each trained series pages at the lowest threshold
            that keeps its own history within this many alert episodes per week.

    Returns:
        Run id, model URI, registered version, alias and logged metrics.
    """
    client = _use(tracking_uri)
    mlflow.set_experiment(EXPERIMENT)
    points = default_history() if history is None else load_history(history, timestamp_col, value_col)
    scorer = KpiScorer.new(kind, **(params or {}))
    metrics: dict[str, float] = {}
    report = None
    if evaluate and (SHARED_DATA / "nab").exists():
        report = validate(kind, scorer.params.to_dict(), search=False)
        metrics.update(report.metrics)
        if calibrate_threshold:
            threshold = report.deploy_thresholds["standard"]
            if threshold <= 1.0:
                scorer = KpiScorer.new(kind, **{**scorer.params.to_dict(), "threshold": threshold})
    started = time.perf_counter()
    scorer.fit(points)
    n_series = points[SERIES_KEY].nunique()
    metrics["train_seconds"] = time.perf_counter() - started
    metrics["train_seconds_per_series"] = metrics["train_seconds"] / max(n_series, 1)
    metrics["train_points"] = float(len(points))
    metrics["train_series"] = float(n_series)
    in_sample = scorer.replay(points)  # the fitted transforms, from a cold state
    scorer.page_thresholds = budget_thresholds(points, in_sample, alerts_per_week, floor=min(scorer.params.threshold, 0.5))
    band_k = float(getattr(scorer.params, "band_k", 4.0))
    scorer.open_thresholds = open_window_thresholds(
        points, in_sample, alerts_per_week, band_k, floor=min(scorer.params.threshold, 0.5), count_params=scorer.count_params()
    )
    metrics["open_threshold_median"] = float(np.median(list(scorer.open_thresholds.values())))
    metrics["page_threshold_median"] = float(np.median(list(scorer.page_thresholds.values())))
    metrics["train_alarm_rate"] = float(in_sample["is_anomaly"].mean())
    ok = np.isfinite(in_sample["expected"]) & np.isfinite(points[VALUE])
    metrics["train_mae"] = float(np.abs(in_sample["expected"][ok] - points[VALUE][ok]).mean())

    with mlflow.start_run(run_name=f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}") as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.log_params({"kind": kind, **scorer.params.to_dict(), "series": n_series, "alerts_per_week": alerts_per_week})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
        mlflow.log_figure(_training_figure(points, in_sample), "plots/training_series.png")
        if report is not None:
            table = report_table(report)
            mlflow.log_dict({"rows": table.replace({np.nan: None}).to_dict(orient="records")}, "evaluation/nab_in_vs_out_of_sample.json")
        scorer_dir = scorer.save(Path(tmp) / "scorer")
        example = points.head(24).assign(**{TIMESTAMP: points[TIMESTAMP].head(24).dt.tz_localize(None)})
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=KpiAnomalyModel(),
            artifacts={"scorer": str(scorer_dir)},
            code_paths=[str(Path(__file__).resolve().parent)],
            signature=model_signature(),
            input_example=example[[TIMESTAMP, VALUE, SERIES_KEY]],
            registered_model_name=model_name,
        )
    version = str(info.registered_model_version)
    if alias:
        client.set_registered_model_alias(model_name, alias, version)
    return TrainResult(run.info.run_id, info.model_uri, version, alias, metrics)


def _training_figure(points: pd.DataFrame, scored: pd.DataFrame):  # noqa: ANN202 - matplotlib figure
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = points[SERIES_KEY].unique()[:4]
    fig, axes = plt.subplots(len(keys), 1, figsize=(14, 3 * len(keys)), squeeze=False)
    for ax, key in zip(axes[:, 0], keys, strict=False):
        m = (points[SERIES_KEY] == key).to_numpy()
        ts, s = points[TIMESTAMP][m], scored[m]
        ax.plot(ts, points[VALUE][m], lw=0.6, color="black", label="value")
        ax.plot(ts, s["expected"], lw=0.6, color="tab:blue", label="expected")
        ax.fill_between(ts, s["lower"], s["upper"], alpha=0.2, color="tab:blue", label="band")
        flagged = s["is_anomaly"].to_numpy(bool)
        ax.scatter(ts[flagged], points[VALUE][m][flagged], color="red", s=12, label="anomaly")
        ax.set_title(str(key))
    axes[0, 0].legend(loc="upper right")
    fig.tight_layout()
    return fig


def _report_json(report: EvaluationReport) -> dict:
    from models.evaluation import results_table

    return {
        corpus: results_table(res).replace({np.nan: None}).to_dict(orient="records")
        for corpus, res in report.results.items()
    }


def load_scorer(
    alias: str = CHAMPION, *, model_name: str = DEFAULT_MODEL_NAME, tracking_uri: str | None = None
) -> KpiScorer:
    """Load the registered model behind an alias as a stateful :class:`KpiScorer`.

    Raises:
        LookupError: No version carries the alias (run ``trivas model train``).
    """
    _use(tracking_uri)
    model = load_pyfunc(alias, model_name=model_name, tracking_uri=tracking_uri)
    return model.unwrap_python_model().scorer.copy()


def load_pyfunc(alias: str = CHAMPION, *, model_name: str = DEFAULT_MODEL_NAME, tracking_uri: str | None = None):  # noqa: ANN201
    """``mlflow.pyfunc.load_model('models:/<name>@<alias>')`` with a clear error."""
    client = _use(tracking_uri)
    try:
        client.get_model_version_by_alias(model_name, alias)
    except mlflow.exceptions.MlflowException as exc:
        raise LookupError(
            f"no model version of {model_name!r} has alias {alias!r} in {resolve_tracking_uri(tracking_uri)}; "
            "run `trivas model train` first"
        ) from exc
    return mlflow.pyfunc.load_model(f"models:/{model_name}@{alias}")


@dataclass
class PromotionDecision:
    """Outcome of the promotion gate."""

    promoted: bool
    champion_version: str | None
    challenger_version: str | None
    champion_score: float
    challenger_score: float
    metric: str
    reason: str


def promote_if_better(
    *,
    model_name: str = DEFAULT_MODEL_NAME,
    tracking_uri: str | None = None,
    metric: str = GATE_METRIC,
    min_improvement: float = 0.0,
    gate: PromotionGate | None = None,
) -> PromotionDecision:
    """Promotion gate: the challenger becomes champion only if it scores better out of sample.

    Both aliased versions are re-validated now, leave-one-file-out
    (:func:`models.validation.validate`: each file scored with a threshold chosen on all the
    others), and compared by the gate's metric (default: NAB standard, out of sample, all
    groups), so the comparison neither trusts numbers logged at different times nor in-sample
    figures.

    Returns:
        The decision; on promotion ``champion`` moves to the challenger's version and
        the ``challenger`` alias is removed.
    """
    gate = gate or PromotionGate(metric=metric, min_improvement=min_improvement)
    client = _use(tracking_uri)
    versions = {}
    for alias in (CHAMPION, CHALLENGER):
        try:
            versions[alias] = str(client.get_model_version_by_alias(model_name, alias).version)
        except mlflow.exceptions.MlflowException:
            versions[alias] = None
    if versions[CHALLENGER] is None:
        return PromotionDecision(False, versions[CHAMPION], None, float("nan"), float("nan"), metric, "no challenger")
    challenger = load_scorer(CHALLENGER, model_name=model_name, tracking_uri=tracking_uri)
    challenger_metrics = validate(challenger.kind, challenger.params.to_dict(), search=False).metrics
    champion_metrics: dict[str, float] = {}
    if versions[CHAMPION] is not None:
        champion = load_scorer(CHAMPION, model_name=model_name, tracking_uri=tracking_uri)
        champion_metrics = validate(champion.kind, champion.params.to_dict(), search=False).metrics
    promoted, reason = gate.passes(champion_metrics, challenger_metrics)
    if promoted:
        client.set_registered_model_alias(model_name, CHAMPION, versions[CHALLENGER])
        client.delete_registered_model_alias(model_name, CHALLENGER)
    return PromotionDecision(
        promoted, versions[CHAMPION], versions[CHALLENGER], champion_metrics.get(gate.metric, float("-inf")),
        challenger_metrics.get(gate.metric, float("nan")), gate.metric, reason,
    )  # fmt: skip


def should_promote(champion_score: float, challenger_score: float, min_improvement: float = 0.0) -> bool:
    """The gate as a pure rule: strictly better than the champion by ``min_improvement``."""
    if not np.isfinite(challenger_score):
        return False
    return challenger_score > champion_score + min_improvement


__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "DEFAULT_MODEL_NAME",
    "ETS",
    "KpiAnomalyModel",
    "OUTPUT_COLUMNS",
    "evaluate_scorer",
    "load_pyfunc",
    "load_scorer",
    "promote_if_better",
    "resolve_tracking_uri",
    "should_promote",
    "train_and_register",
]

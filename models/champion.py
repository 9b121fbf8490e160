"""Champions for the streaming jobs: follow an alias, and bootstrap one when there is none.

``ChampionWatcher`` is what an in-stream scorer holds: it asks the registry which version
carries the alias at most every ``check_seconds`` and loads that exact version
(``models:/<name>/<version>``, not the alias, so a move between the check and the load
cannot mix versions). The query keeps running; the next micro-batch uses the new model.

``ensure_champions`` registers a champion for each model that has none (the demo, a fresh
laptop, tests), so ``trivas demo`` works before anyone has run ``trivas model train``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import mlflow
import numpy as np
import pandas as pd

from models import registry
from models.scorer import KpiScorer

log = logging.getLogger("trivas.models.champion")
Model = TypeVar("Model")


def resolve_settings_uri(uri: str, repo_root: Path = registry.REPO_ROOT) -> str:
    """``sqlite:///var/mlflow/mlflow.db`` (relative) → an absolute sqlite URI under the repo.

    Other URIs (absolute sqlite, ``http://…``, ``databricks-uc``) are returned unchanged.
    """
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        path = repo_root / uri[len(prefix) :]
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"{prefix}{path}"
    return uri


def alias_version(model_name: str, alias: str, tracking_uri: str) -> str | None:
    """The version behind ``alias`` or ``None`` when no version carries it."""
    client = registry._use(tracking_uri)
    try:
        return str(client.get_model_version_by_alias(model_name, alias).version)
    except mlflow.exceptions.MlflowException:
        return None


def load_anomaly_version(model_name: str, version: str, tracking_uri: str) -> KpiScorer:
    """One registered version of the KPI anomaly model as a fresh stateful scorer."""
    registry._use(tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{model_name}/{version}")
    return model.unwrap_python_model().scorer.copy()


def load_refund_version(model_name: str, version: str, tracking_uri: str):  # noqa: ANN201 - RefundModel
    """One registered version of the refund-risk model (:class:`models.refund_risk.RefundModel`)."""
    registry._use(tracking_uri)
    return mlflow.pyfunc.load_model(f"models:/{model_name}/{version}").unwrap_python_model().model


@dataclass
class ChampionWatcher(Generic[Model]):
    """Follows ``models:/<model_name>@<alias>`` for a long-running query.

    Attributes:
        model_name: Registered model name.
        tracking_uri: MLflow tracking/registry URI.
        loader: ``(model_name, version, tracking_uri) -> model``.
        alias: The alias followed (``champion``).
        check_seconds: Minimum time between two registry look-ups (0 = every call).
        clock: Monotonic seconds (injectable for tests).
    """

    model_name: str
    tracking_uri: str
    loader: Callable[[str, str, str], Model]
    alias: str = registry.CHAMPION
    check_seconds: float = 30.0
    clock: Callable[[], float] = time.monotonic
    _checked_at: float | None = None
    _version: str | None = None

    def version(self, force: bool = False) -> str | None:
        """The alias's version, looked up again when ``check_seconds`` have passed."""
        now = self.clock()
        if force or self._checked_at is None or now - self._checked_at >= self.check_seconds:
            self._version = alias_version(self.model_name, self.alias, self.tracking_uri)
            self._checked_at = now
        return self._version

    def load(self, version: str) -> Model:
        """Load one version (the caller decides when the version it holds is stale)."""
        started = time.perf_counter()
        model = self.loader(self.model_name, version, self.tracking_uri)
        log.info(
            "loaded %s version %s in %.1fs", self.model_name, version, time.perf_counter() - started
        )
        return model


# -- bootstrap ---------------------------------------------------------------------------------


def synthetic_kpi_history(days: int = 14, seed: int = 0) -> pd.DataFrame:
    """A fallback training history when the shared real series are absent: an hourly
    order count with a daily and weekly rhythm (the detector's family and calibration are
    what a champion brings; live series warm up on ``gold.kpi`` history)."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2024-01-01", periods=24 * days, freq="h", tz="UTC")
    rhythm = (1 + 0.6 * np.sin(2 * np.pi * (ts.hour - 6) / 24)) * np.where(
        ts.weekday >= 5, 1.2, 1.0
    )
    return pd.DataFrame(
        {
            "timestamp": ts,
            "value": rng.poisson(40 * rhythm).astype(float),
            "series_key": "synthetic|orders",
        }
    )


def ensure_anomaly_champion(
    tracking_uri: str,
    model_name: str = registry.DEFAULT_MODEL_NAME,
    history: pd.DataFrame | None = None,
    evaluate: bool = True,
) -> str:
    """Register a KPI anomaly champion if none exists; returns the champion's version.

    Trained on ``history`` when given, else on the shared real series (NAB-calibrated
    threshold), else on :func:`synthetic_kpi_history`.
    """
    version = alias_version(model_name, registry.CHAMPION, tracking_uri)
    if version is not None:
        return version
    from models.evaluation import SHARED_DATA

    shared = (SHARED_DATA / "nab").exists()
    if history is None and not shared:
        history = synthetic_kpi_history()
    result = registry.train_and_register(
        history,
        alias=registry.CHAMPION,
        tracking_uri=tracking_uri,
        model_name=model_name,
        evaluate=evaluate and shared,
    )
    log.info("bootstrapped %s champion version %s", model_name, result.version)
    return result.version


def ensure_refund_champion(
    tracking_uri: str, model_name: str | None = None, sample_share: float = 1.0
) -> str:
    """Register a refund-risk champion if none exists; returns the champion's version.

    Trained on the Online Retail invoices when they are there, else on the playground
    shop's own generated order history (:func:`models.refund_risk.generated_orders`);
    the training source is logged with the model (``training_data``).

    Args:
        tracking_uri: MLflow URI.
        model_name: Registered name (default :data:`models.refund_risk.MODEL_NAME`).
        sample_share: Share of retail customers (stable hash) to train on; < 1 for quick tests.
    """
    from models import refund_risk as rr

    model_name = model_name or rr.MODEL_NAME
    version = alias_version(model_name, registry.CHAMPION, tracking_uri)
    if version is not None:
        return version
    if rr.RETAIL_PATH.exists():
        source, data = "online_retail", rr.load_retail_orders()
        if sample_share < 1.0:
            bucket = (
                pd.util.hash_pandas_object(data.orders["customer_id"].fillna("guest"), index=False)
                % 1000
            )
            keep = (bucket < int(sample_share * 1000)).to_numpy()
            data = rr.RetailOrders(
                data.orders[keep].reset_index(drop=True),
                data.cancellations,
                data.labels[keep].reset_index(drop=True),
            )
        training = rr.train_refund_model(data)
    else:
        log.warning(
            "no Online Retail data at %s: training %s on the playground's generated order history",
            rr.RETAIL_PATH,
            model_name,
        )
        source, data = "generated", rr.generated_orders()
        training = rr.train_refund_model(data, **rr.generated_split(data))
    version = rr.register_refund_model(
        training, tracking_uri=tracking_uri, model_name=model_name, training_data=source
    )
    log.info(
        "bootstrapped %s champion version %s on %s data (holdout ROC-AUC %.3f, precision at 5%% %.2f)",
        model_name, version, source, training.metrics["holdout_roc_auc"], training.metrics["holdout_precision_at_5pct"],
    )  # fmt: skip
    return version


def ensure_champions(
    tracking_uri: str, anomaly_model: str, refund_model: str, evaluate: bool = True
) -> dict[str, str]:
    """Both champions the streaming jobs need (see :func:`ensure_anomaly_champion`)."""
    return {
        anomaly_model: ensure_anomaly_champion(tracking_uri, anomaly_model, evaluate=evaluate),
        refund_model: ensure_refund_champion(tracking_uri, refund_model),
    }


__all__ = [
    "ChampionWatcher",
    "alias_version",
    "ensure_anomaly_champion",
    "ensure_champions",
    "ensure_refund_champion",
    "load_anomaly_version",
    "load_refund_version",
    "resolve_settings_uri",
    "synthetic_kpi_history",
]

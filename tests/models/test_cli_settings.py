"""``trivas model …`` takes its registry and model name from the environment's settings."""

from __future__ import annotations

import pytest

from lakehouse.config import load_settings
from models.cli import registry_target

pytestmark = pytest.mark.unit


def test_the_environment_names_the_registry_and_the_model_the_detect_job_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFLOW_TRACKING_URI", "TRIVAS_MLFLOW__TRACKING_URI", "TRIVAS_MLFLOW__ANOMALY_MODEL"):
        monkeypatch.delenv(name, raising=False)
    databricks = load_settings("databricks", environ={}).mlflow
    assert registry_target("databricks", None, None) == (databricks.tracking_uri, databricks.anomaly_model)
    assert registry_target("databricks", None, None) == ("databricks", "trivas.ml.kpi_anomaly")
    local = load_settings("local", environ={}).mlflow
    assert registry_target("local", None, None) == (local.tracking_uri, "trivas-kpi-anomaly")
    # The options still win, and MLflow's own variable is the fallback of the settings.
    assert registry_target("databricks", "sqlite:////tmp/x.db", "other") == ("sqlite:////tmp/x.db", "other")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert registry_target("local", None, None)[0] == "http://mlflow.internal:5000"

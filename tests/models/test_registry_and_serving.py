"""MLflow round trip on a tmp sqlite store, the promotion gate, and real REST serving."""

from __future__ import annotations

import json
import subprocess
import time

import httpx
import numpy as np
import pandas as pd
import pytest

from lakehouse.runtime.processes import free_port
from models import registry
from models.cli import serve_command, serve_environment

pytestmark = pytest.mark.slow


def kpi_history(n_hours: int = 24 * 21, keys: tuple[str, ...] = ("orders|web", "orders|app")) -> pd.DataFrame:
    """gold.kpi-like rows: two segments of an hourly KPI."""
    rng = np.random.default_rng(0)
    ts = pd.date_range("2024-03-01", periods=n_hours, freq="h", tz="UTC")
    parts = []
    for i, key in enumerate(keys):
        value = (50 + 10 * i) * (1 + 0.4 * np.sin(2 * np.pi * ts.hour / 24)) * np.exp(rng.normal(0, 0.05, n_hours))
        parts.append(pd.DataFrame({"timestamp": ts, "value": value, "series_key": key}))
    return pd.concat(parts, ignore_index=True)


def test_train_register_alias_load_predict(tracking_uri: str) -> None:
    history = kpi_history()
    result = registry.train_and_register(history, tracking_uri=tracking_uri, evaluate=False)
    assert result.alias == "champion" and result.version == "1"
    model = registry.load_pyfunc("champion", tracking_uri=tracking_uri)
    batch = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(["2024-03-22 00:00", "2024-03-22 00:00", "2024-03-22 01:00"]),
            "value": [50.0, 400.0, 51.0],
            "series_key": ["orders|web", "orders|app", "orders|web"],
        }
    )
    out = model.predict(batch)
    assert list(out.columns) == ["expected", "lower", "upper", "anomaly_score", "is_anomaly", "confidence"]
    assert out["is_anomaly"].tolist() == [False, True, False]
    assert out.loc[0, "confidence"] == 1.0  # a trained series is warm from its first new point
    scorer = registry.load_scorer("champion", tracking_uri=tracking_uri)
    assert set(scorer.state.keys) == {"orders|web", "orders|app"}


def test_missing_champion_is_a_clear_error(tracking_uri: str) -> None:
    with pytest.raises(LookupError, match="trivas model train"):
        registry.load_scorer("champion", tracking_uri=tracking_uri)


def test_gate_rule_is_strict() -> None:
    assert registry.should_promote(70.0, 70.5)
    assert not registry.should_promote(70.0, 70.0)
    assert not registry.should_promote(70.0, 71.0, min_improvement=2.0)
    assert not registry.should_promote(70.0, float("nan"))


def test_promotion_gate_keeps_the_better_champion(tracking_uri: str, shared_data) -> None:
    history = kpi_history(24 * 7, keys=("k",))
    champion = registry.train_and_register(history, "cold_start_ensemble", "champion", tracking_uri=tracking_uri, evaluate=False)
    # Paging at one sigma: NAB's sweep on the other files keeps it silent, the null detector's score.
    weak = registry.train_and_register(
        history, "seasonal_baseline", "challenger", tracking_uri=tracking_uri, evaluate=False,
        params={"band_k": 1.0, "refractory_decay": 0.0},
    )  # fmt: skip
    decision = registry.promote_if_better(tracking_uri=tracking_uri)
    assert not decision.promoted
    assert decision.champion_score > decision.challenger_score
    assert str(registry._use(tracking_uri).get_model_version_by_alias(registry.DEFAULT_MODEL_NAME, "champion").version) == champion.version
    assert weak.version != champion.version


@pytest.mark.integration
def test_mlflow_serve_answers_invocations(tracking_uri: str) -> None:
    registry.train_and_register(kpi_history(24 * 7, keys=("k",)), tracking_uri=tracking_uri, evaluate=False)
    port = free_port()
    proc = subprocess.Popen(
        serve_command(registry.DEFAULT_MODEL_NAME, port), env=serve_environment(tracking_uri),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read().decode(errors="replace")[-2000:]
            try:
                if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow models serve did not become ready in 90 s")
        payload = {
            "dataframe_split": {
                "columns": ["timestamp", "value", "series_key"],
                "data": [["2024-03-08T00:00:00", 50.0, "k"], ["2024-03-08T01:00:00", 900.0, "k"]],
            }
        }
        response = httpx.post(f"{url}/invocations", json=payload, timeout=30)
        assert response.status_code == 200, response.text
        rows = json.loads(response.text)["predictions"]
        assert [r["is_anomaly"] for r in rows] == [False, True]
        assert all(0.0 <= r["anomaly_score"] <= 1.0 for r in rows)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()

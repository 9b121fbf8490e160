"""Shared fixtures of the model tests."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real data folder, or a skip when it is absent."""
    if not (SHARED_DATA / "nab").exists():
        pytest.skip(f"shared real data not found at {SHARED_DATA} (only present in the project workspace)")
    return SHARED_DATA


@pytest.fixture()
def tracking_uri(tmp_path: Path) -> str:
    """A fresh sqlite MLflow store per test."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}"

"""Fixtures shared by every test: a real KRaft broker, one local SparkSession, and
per-test settings (own topic prefix, own tables and checkpoints under ``tmp_path``)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lakehouse.catalog import Catalog
from lakehouse.catalog import catalog as load_catalog
from lakehouse.config import Settings, load_settings
from lakehouse.runtime.processes import free_port

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TEST_HASH_KEY = "tests-only-hash-key-0123456789abcdef"


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="session")
def broker_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real single-node KRaft broker on free ports for the whole session."""
    from lakehouse.runtime import kafka

    root = tmp_path_factory.mktemp("broker")
    env = {
        "TRIVAS_KAFKA__LOCAL_BROKER__PORT": str(free_port()),
        "TRIVAS_KAFKA__LOCAL_BROKER__CONTROLLER_PORT": str(free_port()),
        "TRIVAS_KAFKA__LOCAL_BROKER__DATA_DIR": str(root / "kafka"),
        "TRIVAS_PATHS__LOGS": str(root / "logs"),
        "TRIVAS_PRIVACY__HASH_KEY": TEST_HASH_KEY,
    }
    settings = load_settings("test", environ=env)
    kafka.up(settings, load_catalog())
    try:
        yield env
    finally:
        kafka.down(settings)


@pytest.fixture()
def deployment_env(broker_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """Environment of one isolated deployment: own topics, tables and checkpoints."""
    return {
        **broker_env,
        "TRIVAS_ENV": "test",
        "TRIVAS_KAFKA__TOPIC_PREFIX": f"t{uuid.uuid4().hex[:8]}",
        "TRIVAS_KAFKA__DLQ_TOPIC": f"dlq{uuid.uuid4().hex[:8]}",
        "TRIVAS_PATHS__VAR": str(tmp_path / "var"),
        "TRIVAS_TABLES__ROOT": str(tmp_path / "lake"),
        "TRIVAS_TABLES__CHECKPOINTS": str(tmp_path / "checkpoints"),
    }


@pytest.fixture()
def deployment(deployment_env: dict[str, str], catalog: Catalog) -> Settings:
    """Settings of an isolated deployment whose topics exist on the session broker."""
    from lakehouse.runtime import kafka

    settings = load_settings("test", environ=deployment_env)
    kafka.ensure_topics(settings, catalog)
    return settings


@pytest.fixture()
def lake(tmp_path: Path) -> Settings:
    """An isolated deployment without Kafka: own tables, checkpoints and MLflow registry."""
    return load_settings(
        "test",
        environ={
            "TRIVAS_PATHS__VAR": str(tmp_path / "var"),
            "TRIVAS_TABLES__ROOT": str(tmp_path / "lake"),
            "TRIVAS_TABLES__CHECKPOINTS": str(tmp_path / "checkpoints"),
            "TRIVAS_MLFLOW__TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        },
    )


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """One local SparkSession with Delta and Kafka for the whole test session."""
    from lakehouse.runtime.spark import get_spark

    var = tmp_path_factory.mktemp("spark")
    settings = load_settings("test", environ={"TRIVAS_PATHS__VAR": str(var)})
    session = get_spark(settings, app_name="trivas-tests")
    yield session
    session.stop()


@pytest.fixture()
def table_reader() -> Callable[[Settings, str], object]:
    """Read a Delta table or a registered view into pandas with delta-rs (no JVM), as the app does."""
    from lakehouse.tables import read_pandas

    return read_pandas

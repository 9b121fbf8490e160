"""Settings: files per environment, TRIVAS_* overrides, secrets never printed."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lakehouse.config import deep_merge, env_overrides, load_settings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("env", ["local", "test", "databricks"])
def test_every_environment_loads_and_validates(env: str) -> None:
    settings = load_settings(env, environ={})
    assert settings.env == env
    assert settings.streaming.max_offsets_per_trigger > 0


def test_environment_files_override_base_and_variables_override_files() -> None:
    settings = load_settings("test", environ={"TRIVAS_STREAMING__HOT_PATH_TRIGGER_SECONDS": "3.5", "TRIVAS_SPARK__MASTER": "local[4]"})
    assert settings.streaming.max_offsets_per_trigger == 2000  # conf/test.yaml over conf/base.yaml
    assert settings.streaming.hot_path_trigger_seconds == 3.5
    assert settings.spark.master == "local[4]"


def test_kafka_bootstrap_shortcut_selects_an_external_cluster() -> None:
    local = load_settings("local", environ={})
    assert local.uses_local_broker() and local.kafka_bootstrap() == "localhost:19092"
    external = load_settings("local", environ={"TRIVAS_KAFKA_BOOTSTRAP": "kafka-1:9092,kafka-2:9092"})
    assert not external.uses_local_broker()
    assert external.kafka_bootstrap() == "kafka-1:9092,kafka-2:9092"


def test_databricks_binds_catalog_tables_and_requires_an_external_cluster() -> None:
    settings = load_settings("databricks", environ={})
    assert settings.tables.binding == "catalog"
    with pytest.raises(RuntimeError, match="TRIVAS_KAFKA_BOOTSTRAP"):
        settings.kafka_bootstrap()


def test_secrets_are_masked_when_printed() -> None:
    settings = load_settings("local", environ={"TRIVAS_PRIVACY__HASH_KEY": "super-secret-value"})
    assert "super-secret-value" not in repr(settings)
    assert "super-secret-value" not in settings.model_dump_json()
    assert settings.privacy.hash_key.get_secret_value() == "super-secret-value"


def test_settings_are_frozen_and_unknown_keys_rejected() -> None:
    settings = load_settings("local", environ={})
    with pytest.raises(ValidationError):
        settings.spark.master = "yarn"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="extra"):
        load_settings("local", environ={"TRIVAS_SPARK__MASTR": "local[1]"})
    with pytest.raises(ValidationError, match="within"):
        load_settings("local", environ={"TRIVAS_GENERATOR__LATE_FRACTION": "1.5"})


def test_unknown_environment_is_a_clear_error() -> None:
    with pytest.raises(FileNotFoundError, match="unknown environment 'prod'"):
        load_settings("prod", environ={})


def test_merge_and_override_helpers() -> None:
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}) == {"a": {"b": 1, "c": 3}}
    assert env_overrides({"TRIVAS_A__B": "7", "OTHER": "x", "TRIVAS_ENV": "local"}) == {"a": {"b": 7}}

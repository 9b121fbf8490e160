"""Settings: files per environment, TRIVAS_* overrides, secrets never printed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from lakehouse.config import (
    CONF_DIR,
    MissingSecretError,
    deep_merge,
    env_overrides,
    hash_key,
    leaves,
    load_settings,
    provenance,
)

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


# -- one tree: sections, layers, provenance, secrets ------------------------------------------------


def test_component_sections_come_from_their_files_and_the_same_overrides() -> None:
    """collector.yaml and cdc.yaml are sections of the tree: <env>.yaml-style overlays and
    TRIVAS_<SECTION>__<KEY> variables override them like any other key."""
    shipped = yaml.safe_load((CONF_DIR / "cdc.yaml").read_text())
    settings = load_settings("test", environ={"TRIVAS_CDC__PG_PORT": "25432", "TRIVAS_COLLECTOR__LIMITS__BURST": "7",
                                              "TRIVAS_CDC__TABLES": "[public.orders]"})  # fmt: skip
    assert settings.cdc.pg_port == 25432 and settings.cdc.tables == ("public.orders",)
    assert settings.cdc.connect_port == shipped["connect_port"]
    assert settings.collector.limits.burst == 7
    assert settings.collector.port == yaml.safe_load((CONF_DIR / "collector.yaml").read_text())["port"]


def test_overlay_files_sit_between_the_environment_file_and_variables(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("collector: {port: 9100, limits: {burst: 3}}\nstreaming: {max_offsets_per_trigger: 10}\n")
    settings = load_settings("test", environ={"TRIVAS_CONF_OVERLAY": str(overlay), "TRIVAS_COLLECTOR__LIMITS__BURST": "4"})
    assert settings.collector.port == 9100  # overlay over collector.yaml
    assert settings.streaming.max_offsets_per_trigger == 10  # overlay over test.yaml
    assert settings.collector.limits.burst == 4  # a variable over the overlay


def test_mlflow_tracking_uri_is_a_fallback_the_trivas_name_beats() -> None:
    assert load_settings("local", environ={"MLFLOW_TRACKING_URI": "http://mlflow:5000"}).mlflow.tracking_uri == "http://mlflow:5000"
    both = {"MLFLOW_TRACKING_URI": "http://mlflow:5000", "TRIVAS_MLFLOW__TRACKING_URI": "databricks-uc"}
    assert load_settings("local", environ=both).mlflow.tracking_uri == "databricks-uc"


def test_conf_dir_override_reads_another_folder(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    (conf / "staging.yaml").write_text("spark: {master: 'spark://10.0.0.1:7077'}\ncdc: {replication_user: staging_cdc}\n")
    settings = load_settings("staging", environ={"TRIVAS_CONF_DIR": str(conf)})
    assert settings.spark.master == "spark://10.0.0.1:7077" and settings.cdc.replication_user == "staging_cdc"
    assert settings.alerts_file() == conf / "alerts.yaml" and settings.conf_dir == str(conf)
    with pytest.raises(FileNotFoundError, match="staging"):
        load_settings("staging", environ={})


def test_provenance_names_every_layer_and_masks_secrets(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("app: {port: 9501}\n")
    environ = {"TRIVAS_PRIVACY__HASH_KEY": "s3cret-value", "TRIVAS_CONF_OVERLAY": str(overlay), "MLFLOW_TRACKING_URI": "http://m:5000"}
    rows = {key: (value, origin) for key, value, origin in provenance("local", environ)}
    assert rows["privacy.hash_key"] == ("**********", "environment variable TRIVAS_PRIVACY__HASH_KEY")
    assert rows["mlflow.tracking_uri"] == ("http://m:5000", "environment variable MLFLOW_TRACKING_URI")
    assert rows["spark.shuffle_partitions"] == ("1", "local.yaml")
    assert rows["spark.driver_memory"] == ("3g", "base.yaml")
    assert rows["collector.port"][1] == "collector.yaml" and rows["cdc.pg_port"][1] == "cdc.yaml"
    assert rows["app.port"] == ("9501", f"overlay {overlay}")
    assert rows["alerts.file"] == ("alerts.yaml", "default")
    assert rows["env"][0] == "local"
    assert all("s3cret-value" not in value for value, _ in rows.values())
    # Every key of the effective settings has a row, and nothing else has one.
    assert set(rows) == {key for key, _ in leaves(load_settings("local", environ).model_dump(mode="json"))}


def test_without_development_fallbacks_a_missing_hash_key_stops_naming_its_variable(tmp_path: Path) -> None:
    environ = {"TRIVAS_PATHS__VAR": str(tmp_path / "var")}
    with pytest.raises(MissingSecretError, match="TRIVAS_PRIVACY__HASH_KEY"):
        hash_key(load_settings("databricks", environ=environ))
    assert not (tmp_path / "var").exists()  # no random key was made up
    given = load_settings("databricks", environ={**environ, "TRIVAS_PRIVACY__HASH_KEY": "0123"})
    assert hash_key(given) == b"0123"  # a secret is never parsed as a YAML number


def test_development_fallbacks_generate_one_key_per_checkout(tmp_path: Path) -> None:
    settings = load_settings("local", environ={"TRIVAS_PATHS__VAR": str(tmp_path / "var")})
    first = hash_key(settings)
    assert len(first) == 64 and hash_key(settings) == first
    assert (tmp_path / "var" / "secrets" / "pii_hash_key").stat().st_mode & 0o777 == 0o600


def test_without_development_fallbacks_a_missing_cdc_password_stops(tmp_path: Path) -> None:
    from lakehouse.ingest.cdc import password

    settings = load_settings("databricks", environ={"TRIVAS_PATHS__VAR": str(tmp_path)})
    with pytest.raises(MissingSecretError, match="TRIVAS_CDC__REPLICATION_PASSWORD"):
        password(settings, settings.cdc, "replication")
    given = load_settings("databricks", environ={"TRIVAS_PATHS__VAR": str(tmp_path), "TRIVAS_CDC__REPLICATION_PASSWORD": "123"})
    assert password(given, given.cdc, "replication") == "123"

"""On a provided runtime (Databricks) trivas uses the runtime's own session: no jar is resolved,
no application setting is touched, only its SQL session settings are applied."""

from __future__ import annotations

import pytest

from lakehouse.config import load_settings
from lakehouse.runtime.spark import APPLICATION_DEFAULTS, get_spark, session_conf

pytestmark = pytest.mark.spark


def test_the_databricks_environment_uses_the_clusters_session() -> None:
    environ = {"TRIVAS_PRIVACY__HASH_KEY": "k" * 32, "TRIVAS_PRIVACY__VAULT_KEY": "v" * 44}
    settings = load_settings("databricks", environ=environ)
    assert settings.spark.runtime == "provided"
    assert not set(session_conf(settings)) & set(APPLICATION_DEFAULTS)


def test_a_provided_session_gets_the_session_settings_and_no_jars(spark, tmp_path) -> None:  # noqa: ANN001
    before = spark.conf.get("spark.sql.shuffle.partitions")
    settings = load_settings(
        "test",
        environ={
            "TRIVAS_SPARK__RUNTIME": "provided",
            "TRIVAS_SPARK__SHUFFLE_PARTITIONS": "7",
            "TRIVAS_PATHS__JAR_CACHE": str(tmp_path / "no-jars-here"),  # resolving would fill it
        },
    )
    try:
        provided = get_spark(settings)
        assert provided.sparkContext is spark.sparkContext  # the running application, not a new one
        assert provided.conf.get("spark.sql.shuffle.partitions") == "7"
        assert provided.conf.get("spark.sql.streaming.stateStore.providerClass").endswith("RocksDBStateStoreProvider")
        assert not (tmp_path / "no-jars-here").exists()
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", before)

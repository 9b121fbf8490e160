"""Where tables are: Spark's address depends on the binding; the storage path does not."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from lakehouse.config import load_settings
from lakehouse.tables import has_commits, table_location, table_path

pytestmark = pytest.mark.unit


def test_the_path_is_the_same_under_both_bindings_and_spark_names_the_table_by_catalog(tmp_path: Path) -> None:
    path_bound = load_settings("test", environ={"TRIVAS_TABLES__ROOT": str(tmp_path / "lake")})
    catalog_bound = load_settings("test", environ={"TRIVAS_TABLES__ROOT": str(tmp_path / "lake"), "TRIVAS_TABLES__BINDING": "catalog", "TRIVAS_TABLES__CATALOG": "shop"})
    assert table_path(path_bound, "gold.kpi") == table_path(catalog_bound, "gold.kpi") == f"{tmp_path}/lake/gold/kpi"
    assert table_location(path_bound, "gold.kpi") == f"{tmp_path}/lake/gold/kpi"
    assert table_location(catalog_bound, "gold.kpi") == "shop.gold.kpi"
    in_the_cloud = load_settings("test", environ={"TRIVAS_TABLES__ROOT": "abfss://lake@acct.dfs.core.windows.net/tables"})
    assert table_path(in_the_cloud, "silver.orders") == "abfss://lake@acct.dfs.core.windows.net/tables/silver/orders"


def test_has_commits_needs_a_commit_not_just_the_log_folder(tmp_path: Path) -> None:
    table = tmp_path / "t"
    (table / "_delta_log").mkdir(parents=True)
    assert not has_commits(table)  # the folder appears before the first commit
    write_deltalake(str(table), pa.table({"x": [1]}), mode="overwrite")
    assert has_commits(table) and has_commits(f"file://{table}")
    assert not has_commits("memory:///no-table-here")  # a URI: delta-rs looks

"""The wheel carries its configuration: installed outside the repository, ``trivas`` finds
its settings and event catalog in the package, and ``TRIVAS_CONF_DIR`` still overrides them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lakehouse import REPO_ROOT
from lakehouse.runtime.cluster import build_wheel
from tests.venvs import dependencies_venv

pytestmark = pytest.mark.slow


def fresh_venv(workdir: Path, wheel: Path) -> Path:
    """A new virtualenv with only the wheel installed; its dependencies are seen through a
    .pth onto this interpreter's site-packages (nothing is downloaded)."""
    venv = workdir / "venv"
    python = dependencies_venv(venv)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)], check=True)
    return venv


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("wheel")
    return fresh_venv(workdir, build_wheel(workdir / "dist"))


def outside_env(**extra: str) -> dict[str, str]:
    """The caller's environment without anything that points back into the checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRIVAS_", "PYTHON", "MLFLOW_"))}
    return {**env, **extra}


def run(venv: Path, args: list[str], cwd: Path, **extra: str) -> str:
    done = subprocess.run(args, cwd=cwd, env=outside_env(**extra), capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_installed_trivas_reads_the_packaged_configuration(installed: Path, tmp_path: Path) -> None:
    site = Path(run(installed, [str(installed / "bin" / "python"), "-c", "import lakehouse; print(lakehouse.__file__)"], tmp_path).strip()).parent
    assert installed in site.parents, f"lakehouse imported from {site}, not from the fresh venv"
    rows = {
        row["key"]: row
        for row in map(json.loads, run(installed, [str(installed / "bin" / "trivas"), "config", "show", "--env", "local", "--json"], tmp_path).splitlines())
    }
    assert rows["conf_dir"]["value"] == str(site / "conf")
    assert rows["spark.shuffle_partitions"] == {"key": "spark.shuffle_partitions", "value": "1", "origin": "local.yaml"}
    assert rows["collector.port"]["origin"] == "collector.yaml"
    # The catalog and the KPI contracts load from the package: every event file of the repository.
    probe = (
        "import json, lakehouse; from lakehouse.catalog import catalog; from lakehouse.contracts import contracts;"
        "print(json.dumps({'events': sorted(catalog().event_types), 'kpis': len(contracts().kpis), 'home': str(lakehouse.home())}))"
    )
    loaded = json.loads(run(installed, [str(installed / "bin" / "python"), "-c", probe], tmp_path))
    assert loaded["events"] == sorted(p.stem for p in (REPO_ROOT / "conf" / "events").glob("*.yaml") if not p.stem.startswith("_"))
    assert loaded["kpis"] > 0
    assert loaded["home"] == str(tmp_path)  # relative paths (var/, the lake) land where trivas runs


def test_conf_dir_variable_overrides_the_packaged_configuration(installed: Path, tmp_path: Path) -> None:
    conf = tmp_path / "my-conf"
    shutil.copytree(REPO_ROOT / "conf", conf)
    (conf / "prod.yaml").write_text("spark: {master: 'spark://spark-master:7077'}\nsecrets: {development_fallbacks: false}\n")
    out = run(installed, [str(installed / "bin" / "trivas"), "config", "show", "--env", "prod", "--json"], tmp_path, TRIVAS_CONF_DIR=str(conf))
    rows = {row["key"]: row for row in map(json.loads, out.splitlines())}
    assert rows["conf_dir"]["value"] == str(conf)
    assert (rows["spark.master"]["value"], rows["spark.master"]["origin"]) == ("spark://spark-master:7077", "prod.yaml")


@pytest.mark.integration
def test_installed_wheel_runs_the_pipeline_on_a_small_stream(installed: Path, deployment_env: dict[str, str], tmp_path: Path) -> None:
    """Outside the repository, the installed ``trivas`` sends a seeded stream and drains it
    into bronze and silver: every delivered record is archived once, every clean event is in
    silver once (the generator's ledger is the ground truth)."""
    from deltalake import DeltaTable

    from lakehouse.config import load_settings
    from lakehouse.tables import table_location

    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {**deployment_env, "TRIVAS_PATHS__JAR_CACHE": str(REPO_ROOT / ".cache" / "jars")}
    trivas = str(installed / "bin" / "trivas")
    ledger = tmp_path / "ledger.jsonl"
    run(installed, [trivas, "kafka", "up"], workdir, **env)
    run(installed, [trivas, "generate", "--fast", "--rate", "20", "--duration", "60", "--seed", "5",
                    "--start", "2026-11-30T10:00:00+00:00", "--ledger", str(ledger)], workdir, **env)  # fmt: skip
    run(installed, [trivas, "pipeline", "run", "--available-now", "--jobs", "bronze,silver_gold"], workdir, **env)
    deliveries = [json.loads(line) for line in ledger.read_text().splitlines()]
    settings = load_settings("test", environ=env)
    bronze = DeltaTable(table_location(settings, "bronze.events")).to_pyarrow_table()
    assert bronze.num_rows == len(deliveries) > 0
    silver_ids = DeltaTable(table_location(settings, "silver.events")).to_pyarrow_table(columns=["event_id"]).column("event_id").to_pylist()
    late_ids = DeltaTable(table_location(settings, "silver.late")).to_pyarrow_table(columns=["event_id"]).column("event_id").to_pylist()
    clean = {d["event_id"] for d in deliveries if d["expected_reason"] is None}
    assert len(silver_ids) == len(set(silver_ids))  # each event once, duplicates dropped
    assert set(silver_ids) | set(late_ids) == clean

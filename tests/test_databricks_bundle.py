"""The Databricks Asset Bundle (``databricks.yml`` + ``resources/*.yml``), checked as the
Databricks CLI would for every target: the official bundle JSON Schema for the whole
configuration and for each resource, every task's entry point and parameters against the real
``trivas`` command tree, and the settings each job would load against the bundle's Unity
Catalog names, storage and secret scope."""

from __future__ import annotations

import configparser
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import typer

from lakehouse import REPO_ROOT
from lakehouse.config import load_settings
from tests.bundle_resolution import (
    BundleError,
    load_bundle,
    resolve_target,
    resolved_path,
    without_origins,
)

pytestmark = pytest.mark.unit

SCHEMA_FILE = (
    Path(os.environ.get("TRIVAS_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    / "databricks-bundle-schema" / "jsonschema.json"
)  # fmt: skip
BUNDLE = load_bundle(REPO_ROOT)
TARGETS = sorted(BUNDLE["targets"])
SECRET_REFERENCE = re.compile(r"^\{\{secrets/(?P<scope>[^/]+)/(?P<key>[^/}]+)\}\}$")
CLOUD_STORAGE = ("abfss://", "s3://", "gs://")
RESOURCE_DEFINITIONS = {  # resources.<kind> → its definition in the bundle schema
    "jobs": "resources.Job", "apps": "resources.App", "schemas": "resources.Schema",
    "volumes": "resources.Volume", "registered_models": "resources.RegisteredModel",
    "secret_scopes": "resources.SecretScope",
}  # fmt: skip


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    if not SCHEMA_FILE.exists():
        pytest.skip(f"the Databricks bundle JSON Schema is not here ({SCHEMA_FILE}): shared data absent")
    return json.loads(SCHEMA_FILE.read_text())


def schema_errors(schema: dict[str, Any], instance: Any, definition: str | None = None) -> list[str]:
    """Errors of ``instance`` against the bundle schema, or one definition of it."""
    import jsonschema_rs  # the schema's patterns use \\p{L}: Rust's regex engine has it, Python's re not

    target = schema if definition is None else {
        "$ref": f"#/$defs/github.com/databricks/cli/bundle/config/{definition}", "$defs": schema["$defs"],
    }  # fmt: skip
    return [f"{'/'.join(map(str, e.instance_path))}: {e.message}" for e in jsonschema_rs.validator_for(target).iter_errors(instance)]


def tasks(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(name, task) for name, job in document["resources"]["jobs"].items() for task in job["tasks"]]


def placeholders(environment: dict[str, str]) -> dict[str, str]:
    """The cluster's variables with each secret reference standing for its secret's value."""
    return {k: (f"secret-{m['key']}" if (m := SECRET_REFERENCE.match(v)) else v) for k, v in environment.items()}


def parse_task(parameters: list[str]) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The command a ``python_wheel_task`` runs and its parsed options, by the real command tree
    (typer/click parsing: an unknown command, option or bad value raises)."""
    from lakehouse.cli import command_tree

    command = typer.main.get_command(command_tree())
    words, path = list(parameters), []
    while getattr(command, "commands", None) and words and words[0] in command.commands:
        path.append(words[0])
        command = command.commands[words.pop(0)]
    if getattr(command, "commands", None) and not getattr(command, "invoke_without_command", False):
        raise BundleError(f"{' '.join(path)!r} is a group, not a command")
    context = command.make_context(" ".join(["trivas", *path]), words)
    return tuple(path), context.params


@pytest.fixture(autouse=True)
def _own_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRIVAS_ENV", raising=False)  # an added --env sets it while parsing


def test_the_bundle_as_written_matches_the_schema(schema: dict[str, Any]) -> None:
    assert schema_errors(schema, without_origins(BUNDLE)) == []
    assert TARGETS == ["dev", "prod", "staging"]
    assert [t for t in TARGETS if BUNDLE["targets"][t].get("default")] == ["dev"]


@pytest.mark.parametrize("target", TARGETS)
def test_each_target_resolves_and_every_resource_matches_its_schema(schema: dict[str, Any], target: str) -> None:
    document = without_origins(resolve_target(BUNDLE, target))
    assert "${var." not in json.dumps(document), "an unresolved variable"
    assert schema_errors(schema, document) == []
    for kind, resources in document["resources"].items():
        for name, resource in resources.items():
            assert schema_errors(schema, resource, RESOURCE_DEFINITIONS[kind]) == [], f"resources.{kind}.{name}"


@pytest.mark.parametrize("target", TARGETS)
def test_streaming_jobs_are_continuous_wheel_tasks_of_the_trivas_entry_point(target: str) -> None:
    document = resolve_target(BUNDLE, target)
    metadata = configparser.ConfigParser()
    metadata.read(REPO_ROOT / "setup.cfg")
    scripts = dict(line.split(" = ") for line in metadata["options.entry_points"]["console_scripts"].strip().splitlines())
    streamed = set()
    for name, task in tasks(document):
        wheel_task = task["python_wheel_task"]
        assert wheel_task["package_name"] == metadata["metadata"]["name"]
        assert scripts[wheel_task["entry_point"]] == "lakehouse.cli:main"
        assert [lib["whl"] for lib in task["libraries"]] == ["../dist/*.whl"]
        path, options = parse_task(wheel_task["parameters"])
        assert options["env"] == "databricks" and (REPO_ROOT / "conf" / f"{options['env']}.yaml").exists()
        if path == ("pipeline", "run"):
            assert document["resources"]["jobs"][name]["continuous"]["pause_status"] == "UNPAUSED", name
            streamed.update(options["jobs"].split(","))
    from spark_jobs.pipeline import STARTERS

    # Every streaming job of the pipeline runs as a continuous job, except notify: the router
    # job (`trivas alerts run`) delivers notifications outside Spark.
    assert streamed == set(STARTERS) - {"notify"}
    assert resolved_path(BUNDLE["resources"]["apps"]["trivas_app"], BUNDLE["resources"]["apps"]["trivas_app"]["source_code_path"]) == REPO_ROOT
    app = document["resources"]["apps"]["trivas_app"]
    assert (REPO_ROOT / app["config"]["command"][2]).exists()


def test_task_parameters_the_cli_does_not_know_are_caught() -> None:
    # typer's own click raises its UsageError (not exported by typer): match the message.
    with pytest.raises(Exception, match="No such option: --jbos"):
        parse_task(["pipeline", "run", "--jbos", "bronze"])
    for words in (["pipeline"], ["pipeline", "nowhere"]):
        with pytest.raises(BundleError, match="'pipeline' is a group"):
            parse_task(words)
    with pytest.raises(typer.BadParameter, match="valid number"):
        parse_task(["rollup", "--every", "often"])


@pytest.mark.parametrize("target", TARGETS)
def test_the_jobs_settings_match_the_bundles_catalog_storage_and_secrets(target: str) -> None:
    document = resolve_target(BUNDLE, target)
    resources = document["resources"]
    catalog = document["resources"]["schemas"]["gold"]["catalog_name"]
    scope = resources["secret_scopes"]["trivas_secrets"]["name"]
    environments = [
        cluster["new_cluster"]["spark_env_vars"] for job in resources["jobs"].values() for cluster in job["job_clusters"]
    ]
    assert all(env == environments[0] for env in environments)
    settings = load_settings(environments[0]["TRIVAS_ENV"], environ=placeholders(environments[0]))
    # Unity Catalog: every layer of the table registry is a schema of the bundle's catalog.
    from lakehouse.registry import registry

    assert settings.tables.binding == "catalog" and settings.tables.catalog == catalog
    assert {name.split(".")[0] for name in registry()} <= {s["name"] for s in resources["schemas"].values() if s["catalog_name"] == catalog}
    # MLflow: the detect and refund-risk jobs load the models the bundle registers in Unity Catalog.
    registered = {key: f"{m['catalog_name']}.{m['schema_name']}.{m['name']}" for key, m in resources["registered_models"].items()}
    assert (settings.mlflow.anomaly_model, settings.mlflow.refund_model) == (registered["kpi_anomaly"], registered["refund_risk"])
    # The lake and the checkpoints on cloud storage; working files on the bundle's volume.
    assert settings.tables.root.startswith(CLOUD_STORAGE) and settings.tables.checkpoints.startswith(CLOUD_STORAGE)
    volume = resources["volumes"]["ops_var"]
    assert settings.paths.var == f"/Volumes/{volume['catalog_name']}/{volume['schema_name']}/{volume['name']}"
    # Secrets: references into the bundle's scope, never values; the ones a process stops without are all there.
    secret_variables = {k for k, v in environments[0].items() if SECRET_REFERENCE.match(v)}
    assert {SECRET_REFERENCE.match(environments[0][k])["scope"] for k in secret_variables} == {scope}
    assert {"TRIVAS_PRIVACY__HASH_KEY", "TRIVAS_PRIVACY__VAULT_KEY", "TRIVAS_KAFKA_BOOTSTRAP"} <= secret_variables
    assert not settings.secrets.development_fallbacks and settings.kafka.require_external
    from lakehouse.alerts.config import SECRET_FIELDS, load_alerts_config

    alerts = load_alerts_config(settings=settings)
    needed = {
        spec.options[f"{field}_env"]
        for spec in alerts.receivers.values() if spec.type != "email"  # SMTP login is optional
        for field in SECRET_FIELDS[spec.type] if f"{field}_env" in spec.options
    }  # fmt: skip
    assert needed <= secret_variables, f"the alert router would stop: {sorted(needed - secret_variables)}"
    # The app reads the same tables and models.
    app_env = {e["name"]: e.get("value") for e in resources["apps"]["trivas_app"]["config"]["env"]}
    for name in ("TRIVAS_TABLES__CATALOG", "TRIVAS_TABLES__ROOT", "TRIVAS_MLFLOW__ANOMALY_MODEL"):
        assert app_env[name] == environments[0][name]
    assert {r["secret"]["scope"] for r in resources["apps"]["trivas_app"]["resources"]} == {scope}
    # delta-rs reaches the lake's storage with its own credentials, in the jobs and in the app.
    storage_credentials = {"AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID"}
    assert storage_credentials <= secret_variables
    granted = {r["name"] for r in resources["apps"]["trivas_app"]["resources"]}
    app_secrets = {e["name"]: e["value_from"] for e in resources["apps"]["trivas_app"]["config"]["env"] if "value_from" in e}
    assert storage_credentials <= set(app_secrets) and set(app_secrets.values()) <= granted


def test_prod_uses_the_names_of_conf_databricks_yaml_and_targets_are_apart() -> None:
    conf = load_settings("databricks", environ={})
    prod = resolve_target(BUNDLE, "prod")["resources"]["jobs"]["trivas_hot_path"]["job_clusters"][0]["new_cluster"]["spark_env_vars"]
    assert prod["TRIVAS_TABLES__CATALOG"] == conf.tables.catalog
    assert prod["TRIVAS_TABLES__ROOT"] == conf.tables.root and prod["TRIVAS_TABLES__CHECKPOINTS"] == conf.tables.checkpoints
    assert (prod["TRIVAS_MLFLOW__ANOMALY_MODEL"], prod["TRIVAS_MLFLOW__REFUND_MODEL"]) == (conf.mlflow.anomaly_model, conf.mlflow.refund_model)
    per_target = {
        t: resolve_target(BUNDLE, t)["resources"]["jobs"]["trivas_hot_path"]["job_clusters"][0]["new_cluster"]["spark_env_vars"]
        for t in TARGETS
    }
    for key in ("TRIVAS_TABLES__CATALOG", "TRIVAS_TABLES__CHECKPOINTS", "TRIVAS_PRIVACY__HASH_KEY"):
        assert len({env[key] for env in per_target.values()}) == len(TARGETS), f"{key} shared between targets"


def test_development_mode_renames_jobs_and_pauses_schedules_like_the_cli() -> None:
    dev = resolve_target(BUNDLE, "dev")["resources"]["jobs"]
    assert dev["trivas_rollup"]["name"] == "[dev someone] trivas-dev-rollup"
    assert dev["trivas_rollup"]["schedule"]["pause_status"] == "PAUSED"
    assert resolve_target(BUNDLE, "prod")["resources"]["jobs"]["trivas_rollup"]["schedule"]["pause_status"] == "UNPAUSED"


def test_bundle_mistakes_are_refused() -> None:
    broken = {**BUNDLE, "variables": {**BUNDLE["variables"], "cluster_policy": {"description": "no default"}}}
    with pytest.raises(BundleError, match="cluster_policy has no value in target dev"):
        resolve_target(broken, "dev")
    typo = {**BUNDLE, "targets": {"dev": {"variables": {"catalgo": "x"}}}}
    with pytest.raises(BundleError, match="undefined variables"):
        resolve_target(typo, "dev")
    unknown = {**BUNDLE, "resources": {"jobs": {"j": {"name": "${var.nope}"}}}}
    with pytest.raises(BundleError, match=r"unknown reference \$\{var.nope\}"):
        resolve_target(unknown, "dev")

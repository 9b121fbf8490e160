"""One settings tree for every trivas component, as pydantic-settings.

Layers (last wins): model defaults; ``base.yaml`` and the section files (``collector.yaml`` →
``collector``, ``cdc.yaml`` → ``cdc``); ``<env>.yaml``; the files named by
``$TRIVAS_CONF_OVERLAY`` (``:``-separated, whole-tree YAML: a deployment's or a test's own
overrides); ``TRIVAS_*`` variables, nested keys joined with ``__``
(``TRIVAS_SPARK__MASTER=local[4]``, values read as YAML scalars). Aliases exist only where a
standard or documented name does: ``TRIVAS_KAFKA_BOOTSTRAP`` for ``kafka.bootstrap`` and
MLflow's own ``MLFLOW_TRACKING_URI`` for ``mlflow.tracking_uri`` (the ``TRIVAS_`` name wins).

The folder is :func:`lakehouse.conf_dir` (``$TRIVAS_CONF_DIR``, the copy inside the wheel, or the
checkout's ``conf/``); ``$TRIVAS_ENV`` picks the environment. Secrets are ``SecretStr``
(masked whenever printed); :func:`provenance` says which layer gave each value.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from lakehouse import conf_dir, home
from lakehouse.ingest.settings import CdcSettings, CollectorSettings

CONF_DIR = conf_dir()
ENV_PREFIX = "TRIVAS_"
OVERLAY_ENV = "TRIVAS_CONF_OVERLAY"
# Variables that are not TRIVAS_A__B but set one key: a documented shortcut and standard names.
ALIASES = {
    "TRIVAS_KAFKA_BOOTSTRAP": ("kafka", "bootstrap"),
    "MLFLOW_TRACKING_URI": ("mlflow", "tracking_uri"),
}
# Keys whose variables are taken as text, never parsed as YAML (a secret may look like a number
# or a mapping).
SECRET_SUFFIXES = ("password", "key", "keys", "secret", "token")
# Files whose whole content is one section of the tree.
SECTION_FILES = {"collector": "collector.yaml", "cdc": "cdc.yaml"}


class MissingSecretError(RuntimeError):
    """A secret the deployment needs is not set (outside development fallbacks)."""

    def __init__(self, variable: str, env: str) -> None:
        super().__init__(
            f"missing secret: set {variable} (environment {env!r} has no development fallback; "
            "see secrets.development_fallbacks)"
        )
        self.variable = variable


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Paths(_Frozen):
    var: str
    jar_cache: str
    logs: str


class Tables(_Frozen):
    binding: Literal["path", "catalog"]
    root: str
    catalog: str
    checkpoints: str


class BrokerTls(_Frozen):
    """A SASL_SSL listener of the local broker, next to its PLAINTEXT one (tests, trials of an
    external cluster's security): PEM files of the broker's certificate chain and private key.
    Its SCRAM credential is ``kafka.security``'s user, created when the storage is formatted."""

    port: int
    certificate_chain: str
    key: str


class LocalBroker(_Frozen):
    version: str
    port: int
    controller_port: int
    heap: str
    data_dir: str
    sasl_ssl: BrokerTls | None = None


class KafkaSecurity(_Frozen):
    """How clients authenticate to Kafka; derived per client kind in :mod:`lakehouse.kafka_security`.

    The password comes only from ``TRIVAS_KAFKA__SECURITY__PASSWORD`` or the file named by
    ``password_file``; ``ca_file`` is the PEM of the CA that signed the brokers' certificates
    (empty: the system's trust store)."""

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    username: str = ""
    password: SecretStr | None = None
    password_file: str | None = None
    ca_file: str = ""


class Kafka(_Frozen):
    bootstrap: str = ""
    require_external: bool = False
    topic_prefix: str
    dlq_topic: str
    partitions: int
    retention_ms: int
    local_broker: LocalBroker
    security: KafkaSecurity = KafkaSecurity()
    # Copies of each topic partition, and how many must have a write before an acks=all
    # send succeeds: a multi-broker cluster survives one broker lost with 3 and 2.
    replication_factor: int = 1
    min_insync_replicas: int = 1


class Spark(_Frozen):
    master: str
    app_name: str
    shuffle_partitions: int
    driver_memory: str
    ui_enabled: bool
    extra_conf: dict[str, str] = {}
    # "own": trivas starts the Spark application (jars resolved, Delta configured);
    # "provided": the runtime has one (Databricks), trivas only sets SQL session settings.
    runtime: Literal["own", "provided"] = "own"


class ClusterSpark(_Frozen):
    """The standalone Spark master and its workers of ``trivas cluster up``."""

    master_port: int = 7177
    master_webui_port: int = 8180
    workers: int = 2
    worker_cores: int = 1
    worker_memory: str = "1500m"
    executor_memory: str = "1g"


class ClusterKafka(_Frozen):
    """The KRaft brokers of ``trivas cluster up``: node i (from 1) listens on
    ``first_port + i - 1`` and its controller on ``first_controller_port + i - 1``."""

    brokers: int = 3
    first_port: int = 19192
    first_controller_port: int = 19292
    heap: str = "384m"


class Cluster(_Frozen):
    """A real multi-process topology on one machine (:mod:`lakehouse.runtime.cluster`)."""

    dir: str = "var/cluster"
    host: str = "127.0.0.1"
    spark: ClusterSpark = ClusterSpark()
    kafka: ClusterKafka = ClusterKafka()


class Streaming(_Frozen):
    max_offsets_per_trigger: int
    bronze_trigger_seconds: float
    hot_path_trigger_seconds: float
    hot_path_read_tasks: int = 0
    side_trigger_seconds: float
    # "turns": the side jobs of spark_jobs.pipeline.TURN_JOBS drain what is there one at a time
    # (availableNow), each at most once per side_trigger_seconds; "continuous": each side job
    # is always on.
    side_schedule: Literal["turns", "continuous"] = "turns"
    watermark_margin_seconds: int
    session_gap_seconds: int
    starting_offsets: Literal["earliest", "latest"]


class Maintenance(_Frozen):
    """Delta table upkeep done by the pipeline off the hot path (spark_jobs.maintenance)."""

    enabled: bool = True
    check_every_seconds: float = 30.0
    checkpoint_every_commits: int = 50
    compact_every_seconds: float = 600.0
    compact_min_files: int = 50
    vacuum_every_seconds: float = 3600.0
    vacuum_retain_hours: float = 168.0


class Quality(_Frozen):
    """Validation suites run by the pipeline over recent data, off the hot path
    (lakehouse.validations, spark_jobs.quality)."""

    enabled: bool = True
    check_every_seconds: float = 300.0
    window_minutes: float = 15.0
    seasonal_lags_days: list[float] = [7.0, 1.0]
    volume_tolerance: float = 0.5


class Application(_Frozen):
    """One Spark application of the pipeline: its jobs and its OS scheduling priority."""

    name: str
    jobs: list[str]
    nice: int = 0


class Pipeline(_Frozen):
    """How ``trivas demo`` (and the benchmark) lay the pipeline's jobs out over applications."""

    applications: list[Application] = [
        Application(name="pipeline", jobs=["bronze", "silver_gold", "gold"])
    ]

    def log_name(self, application: str) -> str:
        """The log of an application: ``pipeline`` when there is one, ``pipeline-<name>`` else."""
        return "pipeline" if len(self.applications) == 1 else f"pipeline-{application}"

    def application(self, name: str) -> Application:
        for app in self.applications:
            if app.name == name:
                return app
        raise ValueError(
            f"no pipeline application {name!r}; configured: {[a.name for a in self.applications]}"
        )


class MLflow(_Frozen):
    tracking_uri: str
    anomaly_model: str
    refund_model: str


class Privacy(_Frozen):
    hash_key_id: str
    hash_key: SecretStr | None = None
    hash_key_file: str | None = None
    # Retired hash keys, kept so that hashes written before a rotation still verify:
    # "k1:<secret>,…" here, or a file of "<key id>=<secret>" lines.
    retired_keys: SecretStr | None = None
    retired_keys_file: str | None = None
    # The PII vault's key (64 hex characters), distinct from every hash key; or the collector's
    # vault.key_file.
    vault_key: SecretStr | None = None


class RulesFile(_Frozen):
    """A component whose rules are a document of their own (alert routes, action policies):
    the tree names the file, relative to the configuration folder unless absolute."""

    file: str


class SecretsPolicy(_Frozen):
    """What a missing secret means. With development fallbacks (``local``, ``test``) a missing
    hash key or CDC password is generated once under ``<paths.var>/secrets`` and a missing
    vault key or webhook secret leaves that feature off; everywhere else a missing secret stops
    the process with :class:`MissingSecretError` naming its variable."""

    development_fallbacks: bool = False


class App(_Frozen):
    port: int
    refresh_seconds: float
    # Local accounts (hashed passwords, roles); OIDC through st.login when .streamlit/secrets.toml has [auth].
    accounts_file: str = ""  # empty: <paths.var>/app/accounts.yaml


class Generator(_Frozen):
    seed: int
    events_per_second: float
    # `trivas demo` on an empty lakehouse first sends this many hours of history (and the same
    # hours a week earlier), at full speed, before live traffic: the first screen has data.
    history_hours: float = 1.0
    duplicate_fraction: float
    out_of_order_fraction: float
    late_fraction: float
    malformed_fraction: float

    @field_validator(
        "duplicate_fraction", "out_of_order_fraction", "late_fraction", "malformed_fraction"
    )
    @classmethod
    def _is_fraction(cls, value: float) -> float:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"must be within [0, 1], got {value}")
        return value


class Backfill(_Frozen):
    """Replays and backfills (``trivas replay`` / ``trivas backfill``): their throughput budget,
    so the live KPI path keeps its freshness SLAs while one runs."""

    # At most this many raw records per second, on average over the run (0: no limit).
    events_per_second: float = 2000.0
    # Raw records per chunk: the unit of work, of progress and of resumption (whole hours of
    # arrival time are packed into a chunk up to this many records).
    chunk_events: int = 5000
    # OS priority of the backfill's process and its JVM (lakehouse.cli.lower_priority).
    nice: int = 19
    # Cores its Spark application may use (local[N]); the live pipeline keeps the rest.
    cores: int = 1
    # Replays restate only windows the live hot path has let go of: older than this before now
    # (its KPI book keeps 2 h of final minutes, plus the longest rollup and the finality delay).
    settled_after_seconds: float = 9000.0
    # Online Retail prices are in pounds sterling; the shop's contracts take EUR.
    eur_per_gbp: float = 1.1522


class Settings(BaseSettings):
    """Everything a trivas process needs to know about its deployment: one tree, one section
    per component."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    env: str
    conf_dir: str
    project: str
    paths: Paths
    tables: Tables
    kafka: Kafka
    spark: Spark
    streaming: Streaming
    maintenance: Maintenance = Maintenance()
    quality: Quality = Quality()
    pipeline: Pipeline = Pipeline()
    mlflow: MLflow
    privacy: Privacy
    secrets: SecretsPolicy = SecretsPolicy()
    app: App
    generator: Generator
    collector: CollectorSettings
    cdc: CdcSettings
    alerts: RulesFile = RulesFile(file="alerts.yaml")
    actions: RulesFile = RulesFile(file="actions.yaml")
    backfill: Backfill = Backfill()
    cluster: Cluster = Cluster()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Highest priority first: the call's own values, then the layers of :func:`layers`."""
        chosen = _LAYERS.get()
        if chosen is None:  # Settings() built directly: the process's environment
            chosen = layers(None, os.environ, conf_dir())
        return (
            init_settings,
            *(LayerSource(settings_cls, layer) for layer in reversed(chosen)),
        )

    @field_validator("mlflow")
    @classmethod
    def _absolute_registry(cls, mlflow: MLflow) -> MLflow:
        return mlflow.model_copy(update={"tracking_uri": absolute_sqlite_uri(mlflow.tracking_uri)})

    def path(self, relative_or_absolute: str) -> Path:
        """Resolve a configured path against the project's home (:func:`lakehouse.home`)."""
        path = Path(relative_or_absolute)
        return path if path.is_absolute() else home() / path

    def conf_file(self, relative_or_absolute: str) -> Path:
        """Resolve a file named by the settings against the configuration folder."""
        path = Path(relative_or_absolute)
        return path if path.is_absolute() else Path(self.conf_dir) / path

    def alerts_file(self) -> Path:
        """The alert routes, receivers and on-call schedules (``conf/alerts.yaml``)."""
        return self.conf_file(self.alerts.file)

    def actions_file(self) -> Path:
        """The action policies and guardrails (``conf/actions.yaml``)."""
        return self.conf_file(self.actions.file)

    def uses_local_broker(self) -> bool:
        """True when no external Kafka cluster is configured."""
        return not self.kafka.bootstrap

    def kafka_bootstrap(self) -> str:
        """Bootstrap servers of the external cluster or of the project's local broker."""
        if self.kafka.bootstrap:
            return self.kafka.bootstrap
        if self.kafka.require_external:
            raise RuntimeError(
                f"environment {self.env!r} needs an external Kafka cluster: set TRIVAS_KAFKA_BOOTSTRAP"
            )
        broker = self.kafka.local_broker
        if broker.sasl_ssl is not None and self.kafka.security.protocol != "PLAINTEXT":
            return f"localhost:{broker.sasl_ssl.port}"
        return f"localhost:{broker.port}"


@dataclass(frozen=True)
class Layer:
    """One source of settings: its name (as ``trivas config show`` reports it) and its values."""

    origin: str
    values: dict[str, Any]
    # Per dotted key, the variable that set it (variables only).
    variables: dict[str, str] | None = None


class LayerSource(PydanticBaseSettingsSource):
    """A :class:`Layer` as a pydantic-settings source."""

    def __init__(self, settings_cls: type[BaseSettings], layer: Layer) -> None:
        super().__init__(settings_cls)
        self.layer = layer

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self.layer.values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self.layer.values


_LAYERS: ContextVar[list[Layer] | None] = ContextVar("trivas_settings_layers", default=None)


def _read_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def layers(env: str | None, environ: Mapping[str, str], conf: Path) -> list[Layer]:
    """The layers of one environment's settings, lowest priority first."""
    env = env or environ.get("TRIVAS_ENV", "local")
    env_file = conf / f"{env}.yaml"
    if not env_file.exists():
        raise FileNotFoundError(f"unknown environment {env!r}: {env_file} does not exist")
    found = [Layer("base.yaml", _read_yaml(conf / "base.yaml"))]
    for section, name in SECTION_FILES.items():
        if (conf / name).exists():
            found.append(Layer(name, {section: _read_yaml(conf / name)}))
    found.append(Layer(f"{env}.yaml", _read_yaml(env_file)))
    for overlay in filter(None, environ.get(OVERLAY_ENV, "").split(os.pathsep)):
        found.append(Layer(f"overlay {overlay}", _read_yaml(Path(overlay))))
    values, variables = variable_overrides(environ)
    found.append(Layer("environment variable", values, variables))
    found.append(Layer("loader (TRIVAS_ENV, --env, TRIVAS_CONF_DIR)", {"env": env, "conf_dir": str(conf)}))
    return found


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge two nested mappings; values of ``override`` win, nested mappings merge."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def variable_overrides(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Nested overrides from ``TRIVAS_A__B`` variables and :data:`ALIASES` (values parsed as
    YAML scalars), and the variable behind each dotted key. A ``TRIVAS_`` name beats an alias."""
    overrides: dict[str, Any] = {}
    variables: dict[str, str] = {}
    ordered = sorted(environ.items(), key=lambda item: item[0].startswith(ENV_PREFIX) and "__" in item[0])
    for name, raw in ordered:
        if name in ALIASES:
            keys: tuple[str, ...] = ALIASES[name]
        elif name.startswith(ENV_PREFIX) and "__" in name:
            keys = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        else:
            continue
        value = yaml.safe_load(raw) if raw != "" and not keys[-1].endswith(SECRET_SUFFIXES) else raw
        node = overrides
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
        variables[".".join(keys)] = name
    return overrides, variables


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Nested overrides from ``TRIVAS_*`` variables (see :func:`variable_overrides`)."""
    return variable_overrides(environ)[0]


def load_settings(
    env: str | None = None,
    environ: Mapping[str, str] | None = None,
    conf_dir: Path | None = None,
) -> Settings:
    """Load and validate the settings of one environment.

    Args:
        env: environment name (``<conf>/<env>.yaml``); defaults to ``$TRIVAS_ENV`` or ``local``.
        environ: variables to read overrides from; defaults to ``os.environ``.
        conf_dir: the configuration folder; defaults to :func:`lakehouse.conf_dir`.
    """
    environ = os.environ if environ is None else environ
    chosen = layers(env, environ, conf_dir or _conf_dir_from(environ))
    token = _LAYERS.set(chosen)
    try:
        return Settings()  # type: ignore[call-arg] - every field comes from the layers
    finally:
        _LAYERS.reset(token)


def _conf_dir_from(environ: Mapping[str, str]) -> Path:
    return Path(environ["TRIVAS_CONF_DIR"]) if environ.get("TRIVAS_CONF_DIR") else conf_dir()


def absolute_sqlite_uri(uri: str) -> str:
    """``sqlite:///var/x.db`` (relative) → an absolute path under the project's home, so
    every process finds the same registry whatever its working directory."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        return f"{prefix}{home() / uri[len(prefix) :]}"
    return uri


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings (environment from ``$TRIVAS_ENV``)."""
    return load_settings()


# -- where each value came from ------------------------------------------------------------------


def leaves(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted.key, value)`` for every leaf of a nested mapping (lists are leaves)."""
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from leaves(value, f"{dotted}.")
        else:
            yield dotted, value


def provenance(env: str | None = None, environ: Mapping[str, str] | None = None) -> list[tuple[str, str, str]]:
    """``(key, value, origin)`` of every effective setting, secrets masked. The origin is the
    highest layer that sets the key (or a parent of it): ``default``, ``base.yaml``, a section
    file, ``<env>.yaml``, an overlay, or ``environment variable NAME``."""
    environ = os.environ if environ is None else environ
    chosen = layers(env, environ, _conf_dir_from(environ))
    effective = load_settings(env, environ).model_dump(mode="json")
    set_by: dict[str, str] = {}
    for layer in chosen:
        for key, _ in leaves(layer.values):
            set_by[key] = (
                f"environment variable {layer.variables[key]}" if layer.variables else layer.origin
            )
    rows = []
    for key, value in leaves(effective):
        origin = next(
            (set_by[k] for k in _self_and_parents(key) if k in set_by), "default"
        )
        rows.append((key, _shown(value), origin))
    return rows


def _self_and_parents(key: str) -> list[str]:
    parts = key.split(".")
    return [".".join(parts[:n]) for n in range(len(parts), 0, -1)]


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


# -- secrets ------------------------------------------------------------------------------------


def hash_key(config: Settings) -> bytes:
    """The PII hashing key, from the environment or a secret file; never from git.

    Without one, development environments (``secrets.development_fallbacks``) derive a key per
    checkout; any other environment stops: hashes written by two hosts with different keys
    would never join.
    """
    if config.privacy.hash_key is not None:
        return config.privacy.hash_key.get_secret_value().encode()
    if config.privacy.hash_key_file:
        return config.path(config.privacy.hash_key_file).read_bytes().strip()
    if not config.secrets.development_fallbacks:
        raise MissingSecretError("TRIVAS_PRIVACY__HASH_KEY (or TRIVAS_PRIVACY__HASH_KEY_FILE)", config.env)
    key_file = config.path(config.paths.var) / "secrets" / "pii_hash_key"
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_bytes(os.urandom(32).hex().encode())
        key_file.chmod(0o600)
    return key_file.read_bytes().strip()

"""Typed, frozen settings from ``conf/base.yaml`` + ``conf/<env>.yaml`` + ``TRIVAS_*`` variables.

Precedence (last wins): base file, environment file, environment variables. Nested keys in
variables are joined with ``__`` (``TRIVAS_SPARK__MASTER=local[4]``); the documented shortcut
``TRIVAS_KAFKA_BOOTSTRAP`` sets ``kafka.bootstrap``. Secrets are ``SecretStr`` so they are
masked whenever settings are printed or logged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

from lakehouse import REPO_ROOT

CONF_DIR = REPO_ROOT / "conf"
ENV_PREFIX = "TRIVAS_"
SHORTCUTS = {"TRIVAS_KAFKA_BOOTSTRAP": ("kafka", "bootstrap")}


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


class LocalBroker(_Frozen):
    version: str
    port: int
    controller_port: int
    heap: str
    data_dir: str


class Kafka(_Frozen):
    bootstrap: str = ""
    require_external: bool = False
    topic_prefix: str
    dlq_topic: str
    partitions: int
    retention_ms: int
    local_broker: LocalBroker


class Spark(_Frozen):
    master: str
    app_name: str
    shuffle_partitions: int
    driver_memory: str
    ui_enabled: bool
    extra_conf: dict[str, str] = {}


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


class Settings(_Frozen):
    """Everything a trivas process needs to know about its deployment."""

    env: str
    project: str
    paths: Paths
    tables: Tables
    kafka: Kafka
    spark: Spark
    streaming: Streaming
    maintenance: Maintenance = Maintenance()
    pipeline: Pipeline = Pipeline()
    mlflow: MLflow
    privacy: Privacy
    app: App
    generator: Generator
    backfill: Backfill = Backfill()

    def path(self, relative_or_absolute: str) -> Path:
        """Resolve a configured path against the repository root."""
        path = Path(relative_or_absolute)
        return path if path.is_absolute() else REPO_ROOT / path

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
        return f"localhost:{self.kafka.local_broker.port}"


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge two nested mappings; values of ``override`` win, nested mappings merge."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Nested overrides from ``TRIVAS_*`` variables (values parsed as YAML scalars)."""
    overrides: dict[str, Any] = {}
    for name, raw in environ.items():
        if name in SHORTCUTS:
            keys: tuple[str, ...] = SHORTCUTS[name]
        elif name.startswith(ENV_PREFIX) and "__" in name:
            keys = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        else:
            continue
        value = yaml.safe_load(raw) if raw != "" else ""
        node = overrides
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return overrides


def load_settings(
    env: str | None = None,
    environ: Mapping[str, str] | None = None,
    conf_dir: Path = CONF_DIR,
) -> Settings:
    """Load and validate the settings of one environment.

    Args:
        env: environment name (``conf/<env>.yaml``); defaults to ``$TRIVAS_ENV`` or ``local``.
        environ: variables to read overrides from; defaults to ``os.environ``.
        conf_dir: folder holding ``base.yaml`` and the environment files.
    """
    environ = os.environ if environ is None else environ
    env = env or environ.get("TRIVAS_ENV", "local")
    env_file = conf_dir / f"{env}.yaml"
    if not env_file.exists():
        raise FileNotFoundError(f"unknown environment {env!r}: {env_file} does not exist")
    data = yaml.safe_load((conf_dir / "base.yaml").read_text())
    data = deep_merge(data, yaml.safe_load(env_file.read_text()) or {})
    data = deep_merge(data, env_overrides(environ))
    data["env"] = env
    data["mlflow"]["tracking_uri"] = absolute_sqlite_uri(data["mlflow"]["tracking_uri"])
    return Settings.model_validate(data)


def absolute_sqlite_uri(uri: str) -> str:
    """``sqlite:///var/x.db`` (relative) → an absolute path under the repository root, so
    every process finds the same registry whatever its working directory."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        return f"{prefix}{REPO_ROOT / uri[len(prefix) :]}"
    return uri


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings (environment from ``$TRIVAS_ENV``)."""
    return load_settings()


def hash_key(config: Settings) -> bytes:
    """The PII hashing key, from the environment or a secret file; never from git."""
    if config.privacy.hash_key is not None:
        return config.privacy.hash_key.get_secret_value().encode()
    if config.privacy.hash_key_file:
        return config.path(config.privacy.hash_key_file).read_bytes().strip()
    # A development key, derived per checkout so that no shared key lives in the repo.
    key_file = config.path(config.paths.var) / "secrets" / "pii_hash_key"
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_bytes(os.urandom(32).hex().encode())
        key_file.chmod(0o600)
    return key_file.read_bytes().strip()

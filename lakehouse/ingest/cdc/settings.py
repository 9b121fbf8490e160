"""Settings of the CDC path (``conf/cdc.yaml`` + ``TRIVAS_CDC_<KEY>``) and its passwords."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, SecretStr

from lakehouse import REPO_ROOT
from lakehouse.config import Settings

CDC_CONF = REPO_ROOT / "conf" / "cdc.yaml"
ENV_PREFIX = "TRIVAS_CDC_"




class CdcSettings(BaseModel):
    """``conf/cdc.yaml`` with ``TRIVAS_CDC_<KEY>`` overrides (flat keys, no ``__``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pg_managed: bool
    pg_host: str
    pg_port: int
    pg_database: str
    pg_data_dir: str
    pg_os_user: str
    shop_user: str
    replication_user: str
    shop_password: SecretStr | None = None
    replication_password: SecretStr | None = None
    connect_port: int
    connect_heap: str
    connect_dir: str
    connector_name: str
    topic_prefix: str
    slot_name: str
    publication: str
    tables: tuple[str, ...]
    snapshot_mode: str
    poll_interval_ms: int
    offset_flush_interval_ms: int

    def topic(self, table: str) -> str:
        """Debezium's topic for ``schema.table``."""
        return f"{self.topic_prefix}.{table}"

    def topics(self) -> list[str]:
        """Every topic the connector writes to."""
        return [self.topic(t) for t in self.tables]


def load_cdc_settings(
    environ: Mapping[str, str] | None = None, conf_file: Path = CDC_CONF
) -> CdcSettings:
    """Load ``conf/cdc.yaml``; ``TRIVAS_CDC_<KEY>`` variables override single keys."""
    environ = os.environ if environ is None else environ
    data = yaml.safe_load(conf_file.read_text()) or {}
    for name, raw in environ.items():
        if name.startswith(ENV_PREFIX) and "__" not in name:
            key = name[len(ENV_PREFIX) :].lower()
            data[key] = yaml.safe_load(raw) if raw != "" and not key.endswith("password") else raw
    return CdcSettings.model_validate(data)


def password(settings: Settings, cdc: CdcSettings, role: str) -> str:
    """The password of ``role`` ("shop" or "replication"): from config/env, else a secret file.

    A missing secret file is generated (random, mode 0600) under ``<paths.var>/secrets``: only
    the private demo cluster may rely on that; a real shop database passes its passwords in.
    """
    configured: SecretStr | None = getattr(cdc, f"{role}_password")
    if configured is not None:
        return configured.get_secret_value()
    secret_file = secrets_dir(settings) / f"cdc_{role}_password"
    if not secret_file.exists():
        secret_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(24))
    return secret_file.read_text().strip()


def secrets_dir(settings: Settings) -> Path:
    """Where generated secrets live (never in git: ``var/`` is ignored)."""
    return settings.path(settings.paths.var) / "secrets"

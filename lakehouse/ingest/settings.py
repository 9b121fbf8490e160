"""Typed, frozen settings of the ingestion relays: the collector and CDC.

Both are sections of the one settings tree (:mod:`lakehouse.config`): ``conf/collector.yaml``
is its ``collector`` section and ``conf/cdc.yaml`` its ``cdc`` section, overridden like every
other key by ``conf/<env>.yaml`` and ``TRIVAS_COLLECTOR__…`` / ``TRIVAS_CDC__…`` variables.
This module imports nothing of :mod:`lakehouse.config` at import time: the tree imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from lakehouse import home


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Limits(_Frozen):
    max_body_bytes: int = Field(gt=0)
    max_batch_events: int = Field(gt=0)
    events_per_s: float = Field(gt=0)
    burst: int = Field(gt=0)
    # Request line + headers, read before authentication (h11's limit on an incomplete event).
    max_header_bytes: int = Field(default=16_384, gt=0)
    # Longest wait for the next piece of a request body before answering 408.
    body_read_timeout_seconds: float = Field(default=10.0, gt=0)


class ProviderSecrets(_Frozen):
    secrets_env: str
    secrets_file: str
    tolerance_seconds: int = 300
    # How long a delivered dedup key is remembered; default: the provider's retry window + 1 day.
    dedup_retention_hours: float | None = Field(default=None, gt=0)


class Webhooks(_Frozen):
    # One entry per provider module of lakehouse.ingest.webhooks, by name.
    providers: dict[str, ProviderSecrets]
    # The persistent store of delivered dedup keys (sqlite; shared by the collector's workers).
    dedup_store: str = "var/collector/webhook_deliveries.sqlite"


class Producer(_Frozen):
    linger_ms: int = 5
    batch_size: int = 262_144
    max_in_flight_requests_per_connection: int = 5
    ack_timeout_seconds: float = 30.0


class Vault(_Frozen):
    path: str
    # The key itself is a privacy secret: TRIVAS_PRIVACY__VAULT_KEY, or this file.
    key_file: str


class CollectorSettings(_Frozen):
    """What ``trivas collect`` needs on top of the project settings."""

    host: str
    port: int
    limits: Limits
    api_keys_file: str
    webhooks: Webhooks
    producer: Producer
    vault: Vault

    def path(self, relative_or_absolute: str) -> Path:
        """Resolve a configured path against the project's home (:func:`lakehouse.home`)."""
        path = Path(relative_or_absolute)
        return path if path.is_absolute() else home() / path


class CdcSettings(_Frozen):
    """The ``cdc`` section (``conf/cdc.yaml``): the shop database, Connect and Debezium."""

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


def load_collector_settings(environ: Mapping[str, str] | None = None) -> CollectorSettings:
    """The ``collector`` section of the settings tree (environment from ``$TRIVAS_ENV``)."""
    from lakehouse.config import load_settings

    return load_settings(environ=environ).collector


def read_secrets(env_value: str | None, file: Path | None) -> list[str]:
    """Secrets from a comma-separated variable and/or a file (one per line, ``#`` comments)."""
    secrets = [s.strip() for s in (env_value or "").split(",") if s.strip()]
    if file is not None and file.exists():
        for line in file.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                secrets.append(line)
    return secrets

"""Typed, frozen settings of the collector from ``conf/collector.yaml``.

``TRIVAS_COLLECTOR_CONF=<file>`` overlays another YAML file on the base one (tests, deployments).
The collector's variables deliberately avoid ``__`` so that ``lakehouse.config`` (which maps
``TRIVAS_A__B`` onto its own settings) never sees them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from lakehouse import REPO_ROOT
from lakehouse.config import deep_merge

COLLECTOR_CONF = REPO_ROOT / "conf" / "collector.yaml"
OVERLAY_ENV = "TRIVAS_COLLECTOR_CONF"


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
    key_env: str
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
        """Resolve a configured path against the repository root."""
        path = Path(relative_or_absolute)
        return path if path.is_absolute() else REPO_ROOT / path


def load_collector_settings(
    environ: Mapping[str, str] | None = None, conf_file: Path = COLLECTOR_CONF
) -> CollectorSettings:
    """Load ``conf/collector.yaml`` plus the optional ``$TRIVAS_COLLECTOR_CONF`` overlay."""
    environ = os.environ if environ is None else environ
    data = yaml.safe_load(conf_file.read_text())
    overlay = environ.get(OVERLAY_ENV)
    if overlay:
        data = deep_merge(data, yaml.safe_load(Path(overlay).read_text()) or {})
    return CollectorSettings.model_validate(data)


def read_secrets(env_value: str | None, file: Path | None) -> list[str]:
    """Secrets from a comma-separated variable and/or a file (one per line, ``#`` comments)."""
    secrets = [s.strip() for s in (env_value or "").split(",") if s.strip()]
    if file is not None and file.exists():
        for line in file.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                secrets.append(line)
    return secrets

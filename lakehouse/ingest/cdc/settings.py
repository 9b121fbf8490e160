"""Settings of the CDC path (the ``cdc`` section of the settings tree) and its passwords."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from lakehouse.config import MissingSecretError, Settings
from lakehouse.ingest.settings import CdcSettings

CDC_CONF = "cdc.yaml"  # the section's file in the configuration folder
ENV_PREFIX = "TRIVAS_CDC__"


def load_cdc_settings(environ: Mapping[str, str] | None = None) -> CdcSettings:
    """The ``cdc`` section: ``conf/cdc.yaml``, ``conf/<env>.yaml``'s ``cdc:``, ``TRIVAS_CDC__<KEY>``."""
    from lakehouse.config import load_settings

    return load_settings(environ=environ).cdc


def password(settings: Settings, cdc: CdcSettings, role: str) -> str:
    """The password of ``role`` ("shop" or "replication"): from the settings, else a secret file.

    A missing secret file is generated (random, mode 0600) under ``<paths.var>/secrets`` only
    where the settings allow development fallbacks (the private demo cluster); elsewhere a
    real shop database's passwords must be given, and a missing one stops the process.
    """
    configured = getattr(cdc, f"{role}_password")
    if configured is not None:
        return configured.get_secret_value()
    secret_file = secrets_dir(settings) / f"cdc_{role}_password"
    if not secret_file.exists():
        if not settings.secrets.development_fallbacks:
            raise MissingSecretError(f"TRIVAS_CDC__{role.upper()}_PASSWORD", settings.env)
        secret_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(24))
    return secret_file.read_text().strip()


def secrets_dir(settings: Settings) -> Path:
    """Where generated secrets live (never in git: ``var/`` is ignored)."""
    return settings.path(settings.paths.var) / "secrets"

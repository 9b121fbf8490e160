"""Serving the collector with uvicorn (``trivas collect``), with the request limits applied at
the HTTP protocol (:class:`lakehouse.ingest.request_limits.LimitedHttpProtocol`)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from lakehouse.config import Settings, load_settings
from lakehouse.ingest.collector import create_app
from lakehouse.ingest.collector_logging import configure_logging
from lakehouse.ingest.settings import CollectorSettings


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (several workers): everything from the environment."""
    settings = load_settings()
    configure_logging(settings.path(settings.paths.logs) / "collector.log")
    return create_app(settings=settings)


def serve(
    settings: Settings,
    config: CollectorSettings,
    host: str | None = None,
    port: int | None = None,
    workers: int = 1,
) -> None:
    """Run the collector with uvicorn until interrupted."""
    import uvicorn

    configure_logging(settings.path(settings.paths.logs) / "collector.log")
    options: dict[str, Any] = {
        "host": host or config.host,
        "port": port or config.port,
        # Access logs would record client IP addresses (PII): the app logs its own lines.
        "access_log": False,
        "log_config": None,
        "timeout_graceful_shutdown": 10,
        "http": "lakehouse.ingest.request_limits:LimitedHttpProtocol",
    }
    if workers > 1:
        uvicorn.run("lakehouse.ingest.serving:create_app_from_env", factory=True, workers=workers, **options)
    else:
        uvicorn.run(create_app(settings=settings, config=config), **options)

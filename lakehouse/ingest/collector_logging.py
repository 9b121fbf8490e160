"""The collector's logs: JSON lines, every line (and its structured fields) passed through the
PII filter; uvicorn's access log stays off (it would record client IP addresses)."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson

from lakehouse.ingest.scrub import PiiLogFilter


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(log_file: Path | None, level: int = logging.INFO) -> None:
    """JSON lines to stderr (and ``log_file``), every line passed through the PII filter."""
    formatter = JsonLineFormatter()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(PiiLogFilter())
        handler.addFilter(_FieldsFilter())
        root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "kafka"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    logging.getLogger("kafka").setLevel(logging.WARNING)


class _FieldsFilter(logging.Filter):
    """Masks PII patterns inside the structured ``fields`` of a record too."""

    def filter(self, record: logging.LogRecord) -> bool:
        from lakehouse.privacy import mask_pii_patterns

        fields = getattr(record, "fields", None)
        if fields:
            record.fields = {
                k: mask_pii_patterns(v) if isinstance(v, str) else v for k, v in fields.items()
            }
        return True



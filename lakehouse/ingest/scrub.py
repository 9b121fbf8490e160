"""What the collector may write outside the raw topics: scrubbed records and log lines.

The raw topics carry what the source sent minus forbidden fields (bronze is the replay log and
silver applies the policy). Everything else the collector writes — the dead-letter topic and
its logs — goes through here: payload fields are protected by their catalog PII class
(:func:`lakehouse.privacy.protect_record`); for a record whose type is unknown, every field
name the catalog classes anywhere is protected with its strictest class; free text is masked
by pattern (:func:`lakehouse.privacy.mask_pii_patterns`) as a last line of defence.
"""

from __future__ import annotations

import logging
from typing import Any

from lakehouse.catalog import Catalog
from lakehouse.privacy import mask_pii_patterns, protect_record

_STRICTNESS = {"none": 0, "tokenize": 1, "hash": 2, "redact": 3, "forbidden": 4}


class RecordScrubber:
    """Applies the catalog PII policy to records the collector dead-letters or logs."""

    def __init__(self, catalog: Catalog, master_key: bytes, key_id: str) -> None:
        self.catalog = catalog
        self._key = master_key
        self._key_id = key_id
        self._by_type = {
            t: {f.name: f.pii for f in e.fields if f.pii != "none"}
            for t, e in catalog.event_types.items()
        }
        strictest: dict[str, str] = {}
        for classes in self._by_type.values():
            for name, pii in classes.items():
                if _STRICTNESS[pii] > _STRICTNESS[strictest.get(name, "none")]:
                    strictest[name] = pii
        self._strictest = strictest

    def classes_for(self, event_type: Any) -> dict[str, str]:
        """PII classes of a record's payload fields (strictest known ones if unknown type)."""
        if isinstance(event_type, str) and event_type in self._by_type:
            return self._by_type[event_type]
        return self._strictest

    def scrub_record(self, record: Any) -> Any:
        """A copy of ``record`` that is safe to dead-letter and to log."""
        if not isinstance(record, dict):
            return mask_pii_patterns(str(record))[:4096]
        classes = self.classes_for(record.get("event_type"))
        scrubbed: dict[str, Any] = {}
        for name, value in record.items():
            if name == "payload" and isinstance(value, dict):
                scrubbed[name] = self._scrub_payload(value, classes)
            else:
                scrubbed[name] = _mask_any(value)
        return scrubbed

    def _scrub_payload(self, payload: dict[str, Any], classes: dict[str, str]) -> dict[str, Any]:
        protected = protect_record(payload, classes, self._key, self._key_id)
        # Unclassed fields may still hold PII a source put where it does not belong.
        return {
            name: value if name in classes else _mask_any(value)
            for name, value in protected.items()
        }


def _mask_any(value: Any) -> Any:
    if isinstance(value, str):
        return mask_pii_patterns(value)
    if isinstance(value, dict):
        return {str(k): _mask_any(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_any(v) for v in value]
    return value


class PiiLogFilter(logging.Filter):
    """Masks PII patterns in every log record's final message (defence in depth)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_pii_patterns(message)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        return True

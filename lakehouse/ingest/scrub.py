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
import uuid
from typing import Any

from lakehouse.catalog import Catalog
from lakehouse.event_contract import clip_depth
from lakehouse.privacy import looks_like_card, mask_pii_patterns, protect_record, pseudonymise

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

    def safe_event_id(self, value: Any) -> str | None:
        """An event id fit for a dead letter and a Kafka key: a UUID as it is (it cannot carry
        PII), anything else hashed under the current key (still correlatable, never clear)."""
        if value is None:
            return None
        if isinstance(value, str):
            try:
                return str(uuid.UUID(value)) if len(value) == 36 else self._hash(value)
            except ValueError:
                pass
        return self._hash(str(value))

    def _hash(self, value: str) -> str:
        return pseudonymise(value, "hash", self._key, self._key_id) or ""

    def scrub_record(self, record: Any) -> Any:
        """A copy of ``record`` that is safe to dead-letter and to log (and to serialise:
        anything nested deeper than the contract allows is cut)."""
        record = clip_depth(record)
        if not isinstance(record, dict):
            return mask_any(record)
        classes = self.classes_for(record.get("event_type"))
        scrubbed: dict[str, Any] = {}
        for name, value in record.items():
            if name == "payload" and isinstance(value, dict):
                scrubbed[name] = self._scrub_payload(value, classes)
            elif name == "event_id":
                scrubbed[name] = self.safe_event_id(value)
            else:
                scrubbed[mask_any(name)] = mask_any(value, name)
        return scrubbed

    def _scrub_payload(self, payload: dict[str, Any], classes: dict[str, str]) -> dict[str, Any]:
        protected = protect_record(payload, classes, self._key, self._key_id)
        # Unclassed fields may still hold PII a source put where it does not belong.
        return {
            (name if name in classes else mask_any(name)): value if name in classes else mask_any(value, name)
            for name, value in protected.items()
        }


def _identifier(name: str | None) -> bool:
    """Whether a field name says its value is an identifier (``id``, ``order_id``, ``sku``…)."""
    if not name:
        return False
    lowered = name.lower()
    return lowered in ("id", "sku") or lowered.endswith(("_id", "_ref", "_key")) or name.endswith("Id")


def mask_any(value: Any, name: str | None = None) -> Any:
    """``value`` with PII patterns masked in every string, object key and number.

    Card numbers are recognised as text (with or without separators), as JSON numbers and as
    object keys; a field named like an identifier keeps a 13-digit number (see
    :func:`lakehouse.privacy.looks_like_card`).
    """
    if isinstance(value, str):
        if value.isdigit():
            return "[card]" if looks_like_card(value, _identifier(name)) else value
        return mask_pii_patterns(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        whole = value if isinstance(value, int) else (int(value) if value == value and abs(value) < 1e20 and float(value).is_integer() else None)
        if whole is not None and looks_like_card(str(abs(whole)), _identifier(name)):
            return "[card]"
        return value
    if isinstance(value, dict):
        return {mask_any(str(k)): mask_any(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_any(v, name) for v in value]
    return mask_pii_patterns(str(value))[:4096]


class PiiLogFilter(logging.Filter):
    """Masks PII patterns in every log record's final message (defence in depth)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_pii_patterns(message)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        return True

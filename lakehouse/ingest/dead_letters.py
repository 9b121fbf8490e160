"""Dead letters of the collector: refused records, PII-scrubbed, for the dlq topic.

An entry carries the columns of ``silver.quarantine`` that apply at the edge. Nothing in it is
in clear: the record goes through the catalog PII policy and the pattern masks
(:class:`lakehouse.ingest.scrub.RecordScrubber`), and the event id — which is also the Kafka
key — is kept only if it is a UUID (anything else is hashed: a client may put an e-mail or a
card number there).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from lakehouse.catalog import Catalog
from lakehouse.event_contract import RecordRules, Verdict
from lakehouse.ingest.scrub import RecordScrubber


class DeadLetters:
    """Builds scrubbed dead-letter entries."""

    def __init__(self, catalog: Catalog, scrubber: RecordScrubber) -> None:
        self.rules = RecordRules(catalog)
        self.scrubber = scrubber

    def entry(self, record: Any, verdict: Verdict, source: str) -> dict[str, Any]:
        """The dead-letter entry of a refused ``record``."""
        event_type = record.get("event_type") if isinstance(record, dict) else None
        event = self.rules.event(event_type)
        raw = record.get("event_id") if isinstance(record, dict) else None
        return {
            "quarantine_id": str(uuid.uuid4()),
            "reason": verdict.qualified,
            "detail": verdict.detail,
            "event_type": event_type if event is not None else None,
            "event_id": self.scrubber.safe_event_id(raw),
            "contract_version": event.version if event is not None else None,
            "source": source,
            "raw_value": orjson.dumps(self.scrubber.scrub_record(record)).decode(),
            "stage": "collector",
            "quarantined_at": datetime.now(UTC).isoformat(),
        }

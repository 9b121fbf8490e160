"""Edge validation of event records: the shared rule set (:mod:`lakehouse.event_contract`)
with the collector's clock as arrival time.

Silver runs the very same rules (:func:`lakehouse.quality.rejection_reason`), so a record the
collector accepts is never quarantined by silver for a contract reason, and the reason codes
(:class:`lakehouse.event_contract.Reason`) are the same in the HTTP answer, the dead-letter
topic and ``silver.quarantine``. A rejection's detail names the field and the rule, never the
value, so that it can be logged and dead-lettered without leaking PII.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from lakehouse.catalog import Catalog, EventType
from lakehouse.event_contract import RecordRules, Verdict

Rejection = Verdict  # the collector's name for a refusal


class EventValidator:
    """Validates envelope records against the catalog contracts at the edge."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.rules = RecordRules(catalog)

    def event(self, event_type: Any) -> EventType | None:
        """The contract of ``event_type`` if it is a known type."""
        return self.rules.event(event_type)

    def check(self, record: Any, arrival: datetime | None = None) -> Rejection | None:
        """None if ``record`` is a valid envelope record, else the rejection."""
        return self.rules.check(record, arrival or datetime.now(UTC))

    def canonical(self, record: dict[str, Any]) -> dict[str, Any]:
        """The accepted record in the spelling every reader parses (see RecordRules.canonical)."""
        return self.rules.canonical(record)

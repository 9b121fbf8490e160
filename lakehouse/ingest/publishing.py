"""Publishing accepted records and dead letters, and answering only once Kafka acknowledged.

Accepted records are serialised before anything is sent (a record that cannot be serialised is
refused on its own, never failing the batch); tokenized values of accepted records go to the
PII vault alongside; the caller gets a 503 ``kafka_unavailable`` when the broker did not
acknowledge everything within ``producer.ack_timeout_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from lakehouse.catalog import Catalog
from lakehouse.config import Settings
from lakehouse.ingest.http_errors import HttpError
from lakehouse.ingest.producer import EventProducer
from lakehouse.ingest.settings import CollectorSettings
from lakehouse.privacy import PiiVault, pseudonymise

log = logging.getLogger("trivas.collector")


class _RecentTokens:
    """Tokens already written to the vault by this process (bounded; saves vault writes)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._tokens: dict[str, None] = {}

    def __contains__(self, token: str) -> bool:
        return token in self._tokens

    def add(self, token: str) -> None:
        self._tokens[token] = None
        if len(self._tokens) > self.capacity:
            self._tokens.pop(next(iter(self._tokens)))


class Publisher:
    """The producer, the vault and the acknowledgement wait of the collector."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        config: CollectorSettings,
        master_key: bytes,
        vault: PiiVault | None,
        on_errors: Any,
    ) -> None:
        self.settings, self.catalog, self.config = settings, catalog, config
        self.master_key, self.key_id = master_key, settings.privacy.hash_key_id
        self.vault = vault
        self.on_errors = on_errors
        self.tokenized = {
            t: tuple(f.name for f in e.fields if f.pii == "tokenize")
            for t, e in catalog.event_types.items()
        }
        self._vaulted = _RecentTokens(200_000)
        self.producer: EventProducer | None = None

    def start(self) -> None:
        """Connect the producer (at application start-up)."""
        self.producer = EventProducer(
            self.settings, self.catalog, self.config.producer, client_id="trivas-collector"
        )

    def stop(self) -> None:
        """Flush and close (at shutdown)."""
        if self.producer is not None:
            self.producer.close()
            self.producer = None
        if self.vault is not None:
            self.vault.close()

    def vault_tokens(self, records: list[dict[str, Any]]) -> None:
        """Store the clear value behind every new token of the accepted records."""
        if self.vault is None:
            return
        entries = []
        for record in records:
            payload = record["payload"]
            for name in self.tokenized[record["event_type"]]:
                value = payload.get(name)
                if value is None:
                    continue
                value = str(value)
                token = pseudonymise(value, "tokenize", self.master_key, self.key_id)
                if token is not None and token not in self._vaulted:
                    entries.append((token, value, self.key_id))
                    self._vaulted.add(token)
        if entries:
            self.vault.store(entries)

    async def publish(
        self, records: list[tuple[dict[str, Any], bytes]], dead_letters: list[dict[str, Any]]
    ) -> None:
        """Produce ``(record, serialised record)`` pairs and dead letters; return once the broker
        acknowledged all of them, else raise a 503 :class:`HttpError`."""
        if self.producer is None:
            raise HttpError(503, "kafka_unavailable", "the collector is not connected to Kafka")
        waiter = self.producer.send_batch(records, dead_letters)
        plain = [record for record, _ in records]
        vaulting = asyncio.to_thread(self.vault_tokens, plain) if self.vault and plain else None
        try:
            errors = await asyncio.wait_for(
                waiter.future, timeout=self.config.producer.ack_timeout_seconds
            )
        except TimeoutError:
            errors = [(-1, TimeoutError("no acknowledgement in time"))]
        if vaulting is not None:
            await vaulting
        if errors:
            self.on_errors(len(errors))
            log.error(
                "produce failed",
                extra={"fields": {"failed": len(errors), "error": type(errors[0][1]).__name__}},
            )
            raise HttpError(503, "kafka_unavailable", "Kafka did not acknowledge; retry", {"Retry-After": "1"})

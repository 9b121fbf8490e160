"""Ingestion relays into the raw Kafka topics: the HTTP collector (SDK batches and signed
webhooks), the tracking SDK, CDC (Debezium on Kafka Connect), and the dead-letter/quarantine
replay tooling.

Modules: ``settings`` (conf/collector.yaml), ``keys`` (hashed API keys), ``validation`` (the
shared record rules of :mod:`lakehouse.event_contract` at the edge), ``scrub`` and
``dead_letters`` (PII scrubbing of logs and dead letters), ``ratelimit`` (token buckets),
``request_limits`` (header, body and time limits), ``producer`` and ``publishing`` (idempotent
Kafka producer, acknowledgement waits, the PII vault), ``webhooks`` (the provider table: one
module per provider), ``webhook_deliveries`` (the persistent dedup store), ``event_intake`` and
``webhook_intake`` (the two handlers), ``collector`` (the FastAPI app), ``collector_metrics``,
``collector_logging``, ``api_models``, ``http_errors``, ``serving`` (uvicorn), ``sdk``
(``TrivasClient``), ``cdc`` (a package), ``quarantine`` (list/replay), ``cli`` and ``cdc_cli``.
"""

"""Ingestion relays into the raw Kafka topics: the HTTP collector (SDK batches and signed
webhooks), the tracking SDK, and the dead-letter/quarantine replay tooling.

Modules: ``settings`` (conf/collector.yaml), ``keys`` (hashed API keys), ``validation`` (edge
contract checks from the catalog), ``scrub`` (PII scrubbing of logs and dead letters),
``ratelimit`` (token buckets), ``producer`` (idempotent Kafka producer), ``webhooks`` (Shopify
and Stripe), ``collector`` (the FastAPI app), ``sdk`` (``TrivasClient``), ``quarantine``
(list/replay), ``cli`` (``trivas collect`` / ``trivas quarantine``).
"""

"""The collector's edge and silver give every contract case the same verdict (issue 10 #12).

Each case of ``contract_cases.CASES`` goes through the edge validator (the rules the collector
applies, with the case's arrival as the collector's clock) and, as a bronze row on its domain's
raw topic, through ``spark_jobs.silver.classify``. Silver sees what the collector would have
put on the topic: the canonical spelling of an accepted record. A producer writing the raw
spellings to Kafka directly gets the same verdicts from silver, and the same values.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pyspark.sql import Row
from pyspark.sql import functions as F

from lakehouse.catalog import topic_for
from lakehouse.event_contract import RecordRules, strict_loads
from lakehouse.quality import Judge
from spark_jobs import silver

from .contract_cases import ARRIVAL, CASES, order, text

pytestmark = pytest.mark.spark
PREFIX = "raw"


def _edge(rules: RecordRules, raw: str) -> tuple[str | None, str]:
    verdict = rules.check_text(raw, ARRIVAL)
    if verdict is not None:
        return verdict.qualified, raw
    return None, json.dumps(rules.canonical(strict_loads(raw)))


def test_edge_and_silver_agree_on_every_case(spark, catalog) -> None:  # noqa: ANN001
    rules = RecordRules(catalog)
    edge = {case.name: _edge(rules, case.raw) for case in CASES}
    rows = [
        Row(key="k", value=edge[case.name][1], topic=topic_for(PREFIX, case.domain), partition=0,
            offset=i, kafka_timestamp=ARRIVAL, ingested_at=ARRIVAL)
        for i, case in enumerate(CASES)
    ]  # fmt: skip
    judged = silver.classify(spark.createDataFrame(rows), catalog, PREFIX).select("offset", "reason", "route")
    in_silver = {CASES[r.offset].name: (r.reason, r.route) for r in judged.collect()}

    expected = {case.name: case.reason for case in CASES}
    assert {name: verdict for name, (verdict, _) in edge.items()} == expected
    assert {name: reason for name, (reason, _) in in_silver.items()} == expected
    assert all(route == ("valid" if expected[name] is None else "quarantine") for name, (_, route) in in_silver.items())


def test_a_producer_writing_to_kafka_directly_gets_the_same_verdicts_and_values(spark, catalog) -> None:  # noqa: ANN001
    """Every case, as written (not canonicalised by a collector), straight onto its topic:
    silver gives the edge's verdict, and an accepted raw spelling (``10:00Z``, ``t``/``z``,
    ``1.0`` for an integer) keeps its value in the typed row — no null where a value was."""
    rules = RecordRules(catalog)
    rows = [
        Row(key="k", value=c.raw, topic=topic_for(PREFIX, c.domain), partition=0, offset=i,
            kafka_timestamp=ARRIVAL, ingested_at=ARRIVAL)
        for i, c in enumerate(CASES)
    ]  # fmt: skip
    judged = silver.classify(spark.createDataFrame(rows), catalog, PREFIX)
    verdicts = {CASES[r.offset].name: r.reason for r in judged.select("offset", "reason").collect()}
    assert verdicts == {c.name: _edge(rules, c.raw)[0] for c in CASES}
    assert judged.select("value").collect() == [Row(value=c.raw) for c in CASES]  # stored as read

    # An accepted raw spelling is read to the value its canonical spelling names.
    respelled = [(i, c) for i, c in enumerate(CASES) if c.canonical_differs]
    canonical = [
        Row(key="k", value=_edge(rules, c.raw)[1], topic=topic_for(PREFIX, c.domain), partition=0, offset=i,
            kafka_timestamp=ARRIVAL, ingested_at=ARRIVAL)
        for i, c in respelled
    ]  # fmt: skip
    as_read = silver.classify(spark.createDataFrame(canonical), catalog, PREFIX)
    columns = ["offset", "envelope", *[f"payload_{d}" for d in catalog.domains]]
    wanted = judged.where(F.col("offset").isin([i for i, _ in respelled])).select(*columns)
    assert sorted(wanted.collect()) == sorted(as_read.select(*columns).collect())
    times = {CASES[r.offset].name: str(r.envelope.event_time) for r in wanted.collect()}
    assert times["time without seconds"] == times["lower-case t and z"] == "2026-11-28 10:00:00"
    web = silver.domain_rows(judged.where(F.col("offset") == _offset("integral float for an integer")), catalog, "web", b"k" * 32, "k1")
    assert [r.page_seq for r in web.collect()] == [1]
    orders = silver.domain_rows(judged.where(F.col("offset") == _offset("integral float item quantity")), catalog, "orders", b"k" * 32, "k1")
    assert [[i.quantity for i in r.items] for r in orders.collect()] == [[2]]


def _offset(name: str) -> int:
    return next(i for i, c in enumerate(CASES) if c.name == name)


def test_the_judge_reads_typed_values_and_what_a_refused_record_claims(catalog) -> None:  # noqa: ANN001
    """One parse per record (no Spark): a valid record's values come out typed (zone-aware
    times, integers from ``2.0``); a refused one keeps the envelope it claimed, for its
    quarantine row — even when strict JSON refuses it (duplicate keys)."""
    judge = Judge(catalog, PREFIX)
    topic = topic_for(PREFIX, "orders")
    spelled = order(event_time="2026-11-28T10:00Z", payload_items=[{"sku": "S", "quantity": 2.0, "unit_price": 1}])
    reason, envelope, domain, payload = judge.judge(text(spelled), topic, ARRIVAL)
    assert (reason, domain) == (None, "orders")
    assert envelope["event_time"] == datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    assert envelope["schema_version"] == 1 and payload["amount"] == 42.5
    assert payload["items"] == [{"sku": "S", "quantity": 2, "unit_price": 1.0}]
    assert isinstance(payload["items"][0]["quantity"], int)

    reason, envelope, _, payload = judge.judge(text(order(payload_country=49)), topic, ARRIVAL)
    assert reason == "type_mismatch:country" and payload is None
    assert (envelope["event_type"], envelope["source"]) == ("order_placed", "sdk:test")

    duplicated = text(order()).replace('"source"', '"event_type": "order_placed", "source"', 1)
    reason, envelope, _, _ = judge.judge(duplicated, topic, ARRIVAL)
    assert reason == "duplicate_key:event_type" and envelope["event_type"] == "order_placed"
    assert judge.judge("not json", topic, ARRIVAL)[:2] == ("malformed_json", None)

"""The collector's edge and silver give every contract case the same verdict (issue 10 #12).

Each case of ``contract_cases.CASES`` goes through the edge validator (the rules the collector
applies, with the case's arrival as the collector's clock) and, as a bronze row on its domain's
raw topic, through ``spark_jobs.silver.classify``. Silver sees what the collector would have
put on the topic: the canonical spelling of an accepted record. Silver also judges the raw
spellings the collector canonicalises, when a producer writes them to Kafka directly.
"""

from __future__ import annotations

import json

import pytest
from pyspark.sql import Row

from lakehouse.catalog import topic_for
from lakehouse.event_contract import RecordRules, strict_loads
from spark_jobs import silver

from .contract_cases import ARRIVAL, CASES

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


def test_silver_never_loses_a_value_of_a_raw_spelling_it_cannot_parse(spark, catalog) -> None:  # noqa: ANN001
    """A producer writing straight to Kafka in a spelling only the collector rewrites gets a
    reason in silver instead of a row with a null where its value was."""
    cases = [c for c in CASES if c.canonical_differs]
    rows = [
        Row(key="k", value=c.raw, topic=topic_for(PREFIX, c.domain), partition=0, offset=i,
            kafka_timestamp=ARRIVAL, ingested_at=ARRIVAL)
        for i, c in enumerate(cases)
    ]  # fmt: skip
    judged = silver.classify(spark.createDataFrame(rows), catalog, PREFIX).select("offset", "reason").collect()
    assert {cases[r.offset].name: r.reason for r in judged} == {
        "integral float for an integer": "type_mismatch:page_seq",
        "integral float item quantity": "invalid_item:items.quantity",
        "time without seconds": "invalid_event_time",
        "lower-case t and z": "invalid_event_time",
    }


def test_silver_accepts_every_spelling_the_edge_accepts_once_it_parses_the_canonical_text(spark, catalog) -> None:  # noqa: ANN001
    """What ``lakehouse.quality.canonical_record_text`` offers silver: parsing the canonical
    text instead of ``value`` makes the raw spellings above valid rows with their values."""
    from lakehouse.quality import canonical_record_text

    cases = [c for c in CASES if c.canonical_differs]
    rows = [
        Row(key="k", value=c.raw, topic=topic_for(PREFIX, c.domain), partition=0, offset=i,
            kafka_timestamp=ARRIVAL, ingested_at=ARRIVAL)
        for i, c in enumerate(cases)
    ]  # fmt: skip
    bronze = spark.createDataFrame(rows).withColumn("value", canonical_record_text(catalog))
    judged = silver.classify(bronze, catalog, PREFIX)
    assert {cases[r.offset].name: r.reason for r in judged.select("offset", "reason").collect()} == {c.name: None for c in cases}
    web = silver.domain_rows(judged, catalog, "web", b"k" * 32, "k1").collect()
    assert [r.page_seq for r in web] == [1]

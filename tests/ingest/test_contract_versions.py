"""Contract versions in transition (issue 13 #2): during the window set in the catalog
(``oldest_accepted_version``) the collector and silver accept the current and the older
versions; a version older than the window is refused as ``retired_schema_version`` (and one
newer than the catalog as ``unsupported_schema_version``).

The catalog under test is the project's with ``order_placed`` at version 3: ``channel`` became
required in version 3 (``since: 3``), ``session_id`` was renamed ``visit_id`` (alias
``session_id``), and versions 2..3 are accepted. A real collector (uvicorn subprocess, pointed
at that catalog by ``TRIVAS_CATALOG_DIR``) answers over HTTP and writes to the real broker;
silver's judge (``spark_jobs.silver.classify``) reads what the collector wrote and what a
producer wrote to Kafka directly."""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from pyspark.sql import Row

from lakehouse.catalog import CATALOG_DIR, load_catalog, topic_for
from spark_jobs import silver

from .conftest import CollectorProcess, Deployment, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.spark]


def catalog_in_transition(folder: Path) -> Path:
    """The project's catalog with order_placed at version 3, accepting versions 2..3."""
    shutil.copytree(CATALOG_DIR, folder)
    path = folder / "order_placed.yaml"
    doc = yaml.safe_load(path.read_text())
    fields = [
        {**f, "name": "visit_id", "aliases": ["session_id"]} if f["name"] == "session_id" else f for f in doc["fields"]
    ]
    fields.append({"name": "channel", "type": "string", "required": True, "since": 3, "allowed": ["web", "app"]})
    path.write_text(yaml.safe_dump({**doc, "version": 3, "oldest_accepted_version": 2, "fields": fields}, sort_keys=False))
    return folder


def order(version: int, **payload: object) -> dict:
    body = {
        "order_id": f"o-{uuid.uuid4().hex[:10]}", "customer_id": "c-1", "amount": 12.5, "currency": "EUR",
        "country": "DE", "items": [{"sku": "sku-1", "quantity": 1, "unit_price": 12.5}], **payload,
    }  # fmt: skip
    at = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    return {"event_id": str(uuid.uuid4()), "event_type": "order_placed", "schema_version": version, "event_time": at,
            "source": "sdk:direct", "payload": body}


@pytest.fixture(scope="module")
def transition(deployment: Deployment, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    folder = catalog_in_transition(tmp_path_factory.mktemp("catalog") / "events")
    moved = Deployment(deployment.settings, {**deployment.env, "TRIVAS_CATALOG_DIR": str(folder)}, deployment.root)
    process = CollectorProcess(moved, "versions", {"limits": {"events_per_s": 1000, "burst": 1000}}).start()
    yield process, load_catalog(folder)
    process.stop()


def test_both_versions_accepted_in_the_window_and_older_ones_quarantined(transition, auth, spark) -> None:  # noqa: ANN001
    collector, catalog = transition
    current = order(3, channel="web", visit_id="v-current")
    previous = order(2, session_id="v-previous")  # no channel (since 3), the field's former name
    retired = order(1, session_id="v-retired")
    future = order(4, channel="web")
    broken_previous = order(2, session_id="v-x")
    del broken_previous["payload"]["order_id"]  # required since version 1: still refused
    sent = [current, previous, retired, future, broken_previous]

    response = httpx.post(collector.url + "/v1/events", json={"events": sent}, headers=auth, timeout=30)
    assert response.status_code == 200, response.text
    verdicts = {r["event_id"]: (r["status"], r.get("reason"), r.get("field")) for r in response.json()["results"]}
    assert verdicts == {
        current["event_id"]: ("accepted", None, None),
        previous["event_id"]: ("accepted", None, None),
        retired["event_id"]: ("rejected", "retired_schema_version", None),
        future["event_id"]: ("rejected", "unsupported_schema_version", None),
        broken_previous["event_id"]: ("rejected", "missing_required", "order_id"),
    }

    settings = collector.deployment.settings
    topic = topic_for(settings.kafka.topic_prefix, "orders")
    on_kafka = {r["value"]["event_id"]: r for r in read_topic(settings, topic) if r["value"].get("event_id") in verdicts}
    assert set(on_kafka) == {current["event_id"], previous["event_id"]}
    # The collector writes the current field name: the alias is resolved at the edge.
    written = on_kafka[previous["event_id"]]["value"]
    assert written["schema_version"] == 2 and written["payload"]["visit_id"] == "v-previous"
    assert "session_id" not in written["payload"]

    # Silver judges what the collector wrote and what a producer wrote to Kafka directly.
    arrival = datetime.now(UTC)
    direct = {"previous (direct)": order(2, session_id="v-direct"), "retired (direct)": retired, "future (direct)": future}
    values = [(name, json.dumps(r["value"])) for name, r in on_kafka.items()]
    values += [(name, json.dumps(event)) for name, event in direct.items()]
    rows = [Row(key="k", value=value, topic=topic, partition=0, offset=i, kafka_timestamp=arrival, ingested_at=arrival)
            for i, (_, value) in enumerate(values)]  # fmt: skip
    judged = silver.classify(spark.createDataFrame(rows), catalog, settings.kafka.topic_prefix)
    out = {values[r.offset][0]: r for r in judged.select("offset", "reason", "route", "payload_orders", "envelope").collect()}

    assert {name: (r.route, r.reason) for name, r in out.items()} == {
        current["event_id"]: ("valid", None),
        previous["event_id"]: ("valid", None),
        "previous (direct)": ("valid", None),
        "retired (direct)": ("quarantine", "retired_schema_version"),
        "future (direct)": ("quarantine", "unsupported_schema_version"),
    }
    assert out[current["event_id"]].payload_orders.visit_id == "v-current"
    assert out[current["event_id"]].payload_orders.channel == "web"
    assert out[previous["event_id"]].payload_orders.visit_id == "v-previous"
    assert out[previous["event_id"]].payload_orders.channel is None
    assert out["previous (direct)"].payload_orders.visit_id == "v-direct"  # read through the alias
    quarantined = silver.quarantine_rows(judged, catalog).collect()
    assert {(q.event_id, q.reason, q.contract_version) for q in quarantined} == {
        (retired["event_id"], "retired_schema_version", 1),
        (future["event_id"], "unsupported_schema_version", 4),
    }

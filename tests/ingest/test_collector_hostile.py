"""The collector against hostile or sloppy clients, over real HTTP with a real broker
(issue 10 #1, #2, #6, #7, #8): client input always gets a 4xx or a per-event verdict with a
reason, never a 5xx; dead letters never carry PII; headers and slow bodies are bounded."""

from __future__ import annotations

import json
import socket
import uuid
from typing import Any

import httpx
import orjson
import pytest

from lakehouse.event_contract import MalformedJson, strict_loads
from lakehouse.ingest.webhooks import shopify_signature, stripe_header

from .conftest import (
    API_KEY,
    SHOPIFY_SECRETS,
    STRIPE_SECRETS,
    CollectorProcess,
    Deployment,
    read_all_raw,
    read_topic,
)
from .contract_cases import CASES, nested
from .test_collector import post_shopify, post_stripe, sdk_event
from .test_edge_unit import payment_intent, shopify_order, stripe_event

pytestmark = pytest.mark.integration
CARD = "4111111111111111"
EMAIL = "leak.canary@example.org"
TIME_RELATIVE = {"in the future", "inside the future tolerance"}  # judged against ARRIVAL, not now


def post_text(collector: CollectorProcess, text: str) -> httpx.Response:
    return httpx.post(
        collector.url + "/v1/events",
        content=text.encode(),
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
    )


def _fresh(raw: str) -> str:
    """The case's record with its own event id (cases share one), in its raw spelling."""
    return raw.replace("0b8f8a52-5f5a-4b8e-9d1e-2a7b0c3d4e5f", str(uuid.uuid4()))


def test_every_contract_case_gets_its_reason_over_http(deployment: Deployment, collector: CollectorProcess) -> None:
    """The decided cases, sent as one batch in their raw spelling: each event's verdict is its
    reason's code; accepted ones are on Kafka in the canonical spelling."""
    objects, malformed = [], []
    for case in CASES:
        if case.name in TIME_RELATIVE:
            continue
        try:
            strict_loads(case.raw)
            objects.append(case)
        except MalformedJson:
            malformed.append(case)
    raws = [_fresh(case.raw) for case in objects]
    response = post_text(collector, '{"events": [' + ", ".join(raws) + "]}")
    assert response.status_code == 200, response.text
    verdicts = {case.name: r.get("reason") for case, r in zip(objects, response.json()["results"], strict=True)}
    assert verdicts == {case.name: case.reason and case.reason.split(":")[0] for case in objects}
    for case in malformed:  # not JSON: the whole body is refused with the reason
        answer = post_text(collector, '{"events": [' + case.raw + "]}")
        assert (answer.status_code, answer.json()["error"]) == (400, "malformed_json"), case.name

    accepted = {json.loads(raw)["event_id"]: case.name for raw, case in zip(raws, objects, strict=True) if case.reason is None}
    on_kafka = {r["value"]["event_id"]: r["value"] for r in read_all_raw(deployment.settings) if r["value"]["event_id"] in accepted}
    assert set(on_kafka) == set(accepted)
    by_case = {accepted[event_id]: record for event_id, record in on_kafka.items()}
    assert by_case["time without seconds"]["event_time"] == "2026-11-28T10:00:00+00:00"
    assert by_case["lower-case t and z"]["event_time"] == "2026-11-28T10:00:00+00:00"
    assert by_case["integral float for an integer"]["payload"]["page_seq"] == 1
    assert '"page_seq":1,' in next(r["raw"] for r in read_all_raw(deployment.settings)
                                   if r["value"]["event_id"] == next(e for e, n in accepted.items() if n == "integral float for an integer")).decode()  # fmt: skip


def test_deeply_nested_input_gets_a_4xx_or_a_verdict_never_a_5xx(collector: CollectorProcess) -> None:
    """Issue 10 #1: a record nested a few hundred levels (deeper than a serialiser writes)."""
    valid_but_deep = sdk_event(extra=nested(300))
    invalid_and_deep = sdk_event(extra=nested(300), page_seq=0)
    response = post_text(collector, json.dumps({"events": [valid_but_deep, invalid_and_deep, sdk_event()]}))
    assert response.status_code == 200, response.text
    assert [(r["status"], r.get("reason")) for r in response.json()["results"]] == [
        ("rejected", "too_deeply_nested"), ("rejected", "too_deeply_nested"), ("accepted", None),
    ]  # fmt: skip
    body = '{"events": [' + "[" * 5000 + "]" * 5000 + "]}"
    answer = post_text(collector, body)
    assert (answer.status_code, answer.json()["error"]) == (400, "too_deeply_nested")

    document = shopify_order()
    document["customer"] = {"id": nested(300)}
    raw = json.dumps(document).encode()
    hook = post_shopify(collector, raw, **{"X-Shopify-Hmac-Sha256": shopify_signature(raw, SHOPIFY_SECRETS[0]),
                                           "X-Shopify-Event-Id": str(uuid.uuid4())})  # fmt: skip
    assert hook.status_code == 200 and (hook.json()["status"], hook.json()["reason"]) == ("rejected", "too_deeply_nested")


def test_dead_letters_carry_no_pii_in_ids_keys_numbers_or_object_keys(
    deployment: Deployment, collector: CollectorProcess
) -> None:
    """Issue 10 #2: an event id holding a card number or an e-mail, a card number as a JSON
    number and as an object key; a Luhn-valid 13-digit order id stays readable."""
    card_id = {**sdk_event(page_seq=0), "event_id": CARD}
    email_id = {**sdk_event(page_seq=0), "event_id": EMAIL}
    numbers = sdk_event(page_seq=0, note=int(CARD), lookup={CARD: "x", EMAIL: 1}, floaty=float(CARD))
    order_id = "4222222222222"  # Luhn-valid, Visa range, 13 digits: an order id here, not a card
    order = {"event_id": str(uuid.uuid4()), "event_type": "order_placed", "event_time": sdk_event()["event_time"],
             "payload": {"order_id": order_id, "customer_id": "c", "amount": 1.0, "currency": "USD", "country": "DE",
                         "items": [{"sku": "s", "quantity": 1, "unit_price": 1.0}]}}  # fmt: skip
    response = post_text(collector, orjson.dumps({"events": [card_id, email_id, numbers, order]}).decode())
    assert response.status_code == 200 and response.json()["rejected"] == 4
    answer_ids = [r["event_id"] for r in response.json()["results"]]
    assert CARD not in response.text and EMAIL not in response.text

    letters = read_topic(deployment.settings, "dlq")
    mine = [d for d in letters if d["value"]["event_id"] in answer_ids]
    assert len(mine) == 4
    leaked = b"".join(d["raw"] + (d["key"] or b"") + b"".join(d["headers"].values()) for d in mine)
    assert CARD.encode() not in leaked and EMAIL.encode() not in leaked
    assert str(int(CARD)).encode() not in leaked
    order_letter = next(d for d in mine if d["value"]["event_id"] == order["event_id"])
    assert json.loads(order_letter["value"]["raw_value"])["payload"]["order_id"] == order_id
    assert order_letter["key"] == order["event_id"].encode()


def _raw_exchange(port: int, chunks: list[bytes], read_timeout_s: float = 60.0) -> bytes:
    """Send ``chunks`` on one connection (stopping if the server closes it) and read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout_s) as conn:
        for chunk in chunks:
            try:
                conn.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        answer = b""
        try:
            while data := conn.recv(65536):
                answer += data
        except (ConnectionResetError, TimeoutError):
            pass
        return answer


@pytest.fixture(scope="module")
def strict_collector(deployment: Deployment) -> Any:
    process = CollectorProcess(
        deployment, "strict", {"limits": {"max_header_bytes": 8192, "body_read_timeout_seconds": 2}}
    ).start()
    yield process
    process.stop()


def test_oversized_headers_are_refused_before_authentication(strict_collector: CollectorProcess) -> None:
    """Issue 10 #6: a 40 MiB header is not read to its end: 431 once past the limit."""
    start = b"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Pad: "
    chunks = [start] + [b"a" * 65536] * 640  # 40 MiB, never finished
    answer = _raw_exchange(strict_collector.port, chunks)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert httpx.get(strict_collector.url + "/healthz").status_code == 200


def test_a_stalled_body_is_answered_408_and_the_connection_closed(strict_collector: CollectorProcess) -> None:
    """Issue 10 #6: 10 of 100 declared bytes, then silence: 408 ``body_timeout``."""
    head = (f"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n").encode()  # fmt: skip
    answer = _raw_exchange(strict_collector.port, [head + b'{"events":'])
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 408 Request Timeout"
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["error"] == "body_timeout"


def test_stalled_headers_are_answered_408(strict_collector: CollectorProcess) -> None:
    answer = _raw_exchange(strict_collector.port, [b"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Slow: "])
    assert answer.startswith(b"HTTP/1.1 408 ")


def test_signed_payloads_of_an_unexpected_shape_get_a_4xx_not_a_5xx(collector: CollectorProcess) -> None:
    """A provider payload unlike its documented shape (a number where a list belongs, an
    object where a name belongs) is a 422 with a reason, not an unhandled 500."""
    document = {**shopify_order(), "line_items": 5}
    raw = json.dumps(document).encode()
    shopify = post_shopify(collector, raw, **{"X-Shopify-Hmac-Sha256": shopify_signature(raw, SHOPIFY_SECRETS[0]),
                                              "X-Shopify-Event-Id": str(uuid.uuid4())})  # fmt: skip
    event = stripe_event("payment_intent.succeeded", {**payment_intent(), "payment_method_types": [{"a": 1}]},
                         f"evt_{uuid.uuid4().hex}")  # fmt: skip
    body = json.dumps(event).encode()
    stripe = post_stripe(collector, body, stripe_header(body, STRIPE_SECRETS))
    assert [(r.status_code, r.json()["error"]) for r in (shopify, stripe)] == [(422, "unmappable_payload")] * 2

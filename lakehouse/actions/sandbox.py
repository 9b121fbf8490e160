"""The sandbox commerce platform: a real HTTP service the executors act on (playground, tests).

It keeps what a shop's ads, storefront and support tools keep — campaigns (status, bid),
product visibility, the refund-review queue — plus PagerDuty-style incidents (Events API v2 at
``/v2/enqueue``), so every action and every rollback is observable over HTTP.

Idempotency, as Stripe defines it: every mutating request needs an ``Idempotency-Key``; the
first answer is stored and replayed for a repeated key; the same key with another body is
refused (422). ``GET /_sandbox/calls`` says how many requests each key got and how many times
it changed state (at most once). ``POST /_sandbox/faults`` makes the next requests fail
(``fail``: count, ``status``) or answer late (``delay``: count, ``delay_s``: seconds after the
change is made, as a slow API that did the work).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse

CHANNELS = ("search", "social", "display", "email")


@dataclass
class Faults:
    fail: int = 0
    status: int = 503
    delay: int = 0
    delay_s: float = 0.0


@dataclass
class PlatformState:
    """Everything the sandbox keeps (one lock: requests are tiny)."""

    campaigns: dict[str, dict[str, Any]] = field(default_factory=dict)
    products: dict[str, dict[str, Any]] = field(default_factory=dict)
    review_queue: dict[str, dict[str, Any]] = field(default_factory=dict)
    incidents: dict[str, dict[str, Any]] = field(default_factory=dict)
    answers: dict[str, tuple[str, int, dict[str, Any]]] = field(default_factory=dict)  # key -> (fingerprint, status, body)
    calls: Counter = field(default_factory=Counter)
    applied: Counter = field(default_factory=Counter)
    faults: Faults = field(default_factory=Faults)
    lock: threading.Lock = field(default_factory=threading.Lock)


def seeded_state(campaigns: int = 6, products: int = 60) -> PlatformState:
    """The playground shop's campaigns (``cmp-00``…) and products (``SKU-0000``…)."""
    state = PlatformState()
    for i in range(campaigns):
        state.campaigns[f"cmp-{i:02d}"] = {"campaign_id": f"cmp-{i:02d}", "status": "active", "bid": 1.0,
                                           "channel": CHANNELS[i % len(CHANNELS)]}  # fmt: skip
    for i in range(products):
        state.products[f"SKU-{i:04d}"] = {"sku": f"SKU-{i:04d}", "visible": True}
    return state


def _fingerprint(method: str, path: str, body: dict[str, Any]) -> str:
    return hashlib.sha256(f"{method} {path} {json.dumps(body, sort_keys=True)}".encode()).hexdigest()


def create_sandbox(state: PlatformState | None = None) -> FastAPI:
    """The sandbox's HTTP API over ``state`` (a fresh seeded state by default)."""
    state = state or seeded_state()
    api = FastAPI(title="trivas sandbox commerce platform")

    async def mutate(request_key: str | None, method: str, path: str, body: dict[str, Any], change) -> JSONResponse:  # noqa: ANN001
        if not request_key:
            return JSONResponse({"error": "Idempotency-Key header required"}, status_code=400)
        if len(request_key) > 255:
            return JSONResponse({"error": "Idempotency-Key longer than 255 characters"}, status_code=400)
        with state.lock:
            state.calls[request_key] += 1
            if state.faults.fail > 0:
                state.faults.fail -= 1
                return JSONResponse({"error": "injected failure"}, status_code=state.faults.status)
            fingerprint = _fingerprint(method, path, body)
            stored = state.answers.get(request_key)
            if stored is not None:
                if stored[0] != fingerprint:
                    return JSONResponse({"error": "Idempotency-Key reused with other parameters"}, status_code=422)
                return JSONResponse(stored[2], status_code=stored[1], headers={"Idempotent-Replayed": "true"})
            status, answer = change()
            state.answers[request_key] = (fingerprint, status, answer)
            if status < 300:
                state.applied[request_key] += 1
            delay = state.faults.delay > 0
            if delay:
                state.faults.delay -= 1
                delay_s = state.faults.delay_s
        if delay:
            await asyncio.sleep(delay_s)  # the work is done; the answer is late
        return JSONResponse(answer, status_code=status)

    def campaign_change(campaign_id: str, **values: Any):  # noqa: ANN202
        def change() -> tuple[int, dict[str, Any]]:
            campaign = state.campaigns.get(campaign_id)
            if campaign is None:
                return 404, {"error": f"no campaign {campaign_id}"}
            campaign.update(values)
            return 200, dict(campaign)

        return change

    @api.get("/campaigns")
    def campaigns() -> list[dict[str, Any]]:
        with state.lock:
            return [dict(c) for c in state.campaigns.values()]

    @api.get("/campaigns/{campaign_id}")
    def campaign(campaign_id: str) -> JSONResponse:
        with state.lock:
            found = state.campaigns.get(campaign_id)
        return JSONResponse(found or {"error": f"no campaign {campaign_id}"}, status_code=200 if found else 404)

    @api.post("/campaigns/{campaign_id}/status")
    async def set_status(campaign_id: str, request: Request, idempotency_key: str | None = Header(None)) -> JSONResponse:
        body = await request.json()
        if body.get("status") not in ("active", "paused"):
            return JSONResponse({"error": "status must be active or paused"}, status_code=400)
        change = campaign_change(campaign_id, status=body["status"])
        return await mutate(idempotency_key, "POST", request.url.path, body, change)

    @api.post("/campaigns/{campaign_id}/bid")
    async def set_bid(campaign_id: str, request: Request, idempotency_key: str | None = Header(None)) -> JSONResponse:
        body = await request.json()
        bid = body.get("bid")
        if not isinstance(bid, int | float) or bid <= 0:
            return JSONResponse({"error": "bid must be a positive number"}, status_code=400)
        return await mutate(idempotency_key, "POST", request.url.path, body, campaign_change(campaign_id, bid=float(bid)))

    @api.get("/storefront/products/{sku}")
    def product(sku: str) -> JSONResponse:
        with state.lock:
            found = state.products.get(sku)
        return JSONResponse(found or {"error": f"no product {sku}"}, status_code=200 if found else 404)

    @api.post("/storefront/products/{sku}/visibility")
    async def set_visibility(sku: str, request: Request, idempotency_key: str | None = Header(None)) -> JSONResponse:
        body = await request.json()
        if not isinstance(body.get("visible"), bool):
            return JSONResponse({"error": "visible must be true or false"}, status_code=400)

        def change() -> tuple[int, dict[str, Any]]:
            found = state.products.setdefault(sku, {"sku": sku, "visible": False})
            found["visible"] = body["visible"]
            return 200, dict(found)

        return await mutate(idempotency_key, "POST", request.url.path, body, change)

    @api.get("/review-queue")
    def review_queue() -> list[dict[str, Any]]:
        with state.lock:
            return [dict(r) for r in state.review_queue.values()]

    @api.get("/review-queue/{order_id}")
    def review_entry(order_id: str) -> dict[str, Any]:
        with state.lock:
            entry = state.review_queue.get(order_id)
        return {"order_id": order_id, "queued": entry is not None, **({"reason": entry["reason"]} if entry else {})}

    @api.post("/review-queue")
    async def enqueue(request: Request, idempotency_key: str | None = Header(None)) -> JSONResponse:
        body = await request.json()
        if not body.get("order_id") or not body.get("reason"):
            return JSONResponse({"error": "order_id and reason required"}, status_code=400)

        def change() -> tuple[int, dict[str, Any]]:
            state.review_queue[body["order_id"]] = {"order_id": body["order_id"], "reason": body["reason"]}
            return 201, {"order_id": body["order_id"], "queued": True, "reason": body["reason"]}

        return await mutate(idempotency_key, "POST", request.url.path, body, change)

    @api.post("/review-queue/{order_id}/remove")
    async def dequeue(order_id: str, request: Request, idempotency_key: str | None = Header(None)) -> JSONResponse:
        def change() -> tuple[int, dict[str, Any]]:
            state.review_queue.pop(order_id, None)
            return 200, {"order_id": order_id, "queued": False}

        return await mutate(idempotency_key, "POST", request.url.path, {}, change)

    @api.post("/v2/enqueue")
    async def pagerduty(request: Request) -> JSONResponse:
        """PagerDuty Events API v2: the dedup_key is the idempotency key of an incident."""
        event = await request.json()
        key, action = event.get("dedup_key"), event.get("event_action")
        if not key or action not in ("trigger", "acknowledge", "resolve") or not event.get("routing_key"):
            return JSONResponse({"status": "invalid event", "message": "Event object is invalid"}, status_code=400)

        def change() -> tuple[int, dict[str, Any]]:
            incident = state.incidents.setdefault(key, {"dedup_key": key, "status": "none", "summary": None})
            incident["status"] = {"trigger": "triggered", "acknowledge": "acknowledged", "resolve": "resolved"}[action]
            if action == "trigger":
                incident["summary"] = event.get("payload", {}).get("summary")
                incident["custom_details"] = event.get("payload", {}).get("custom_details")
            return 202, {"status": "success", "message": "Event processed", "dedup_key": key}

        body = {k: v for k, v in event.items() if k != "routing_key"}
        return await mutate(f"pd:{key}:{action}", "POST", request.url.path, body, change)

    @api.get("/incidents/{dedup_key}")
    def incident(dedup_key: str) -> dict[str, Any]:
        with state.lock:
            return dict(state.incidents.get(dedup_key, {"dedup_key": dedup_key, "status": "none"}))

    @api.get("/_sandbox/calls")
    def calls() -> dict[str, Any]:
        with state.lock:
            return {"calls": dict(state.calls), "applied": dict(state.applied)}

    @api.post("/_sandbox/faults")
    async def faults(request: Request) -> dict[str, Any]:
        body = await request.json()
        with state.lock:
            state.faults = Faults(int(body.get("fail", 0)), int(body.get("status", 503)),
                                  int(body.get("delay", 0)), float(body.get("delay_s", 0.0)))  # fmt: skip
            return {"faults": vars(state.faults)}

    api.state.platform = state
    return api


class SandboxServer:
    """The sandbox served by uvicorn in a background thread (tests, the playground)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, state: PlatformState | None = None) -> None:
        import uvicorn

        from lakehouse.runtime.processes import free_port

        self.port = port or free_port()
        self.state = state or seeded_state()
        config = uvicorn.Config(create_sandbox(self.state), host=host, port=self.port, log_level="warning",
                                access_log=False, log_config=None, timeout_graceful_shutdown=1)  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="sandbox", daemon=True)
        self.url = f"http://{host}:{self.port}"

    def __enter__(self) -> SandboxServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the sandbox platform did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def main(argv: list[str] | None = None) -> None:
    """``python -m lakehouse.actions.sandbox --port 8766`` (``trivas actions sandbox``)."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args(argv)
    uvicorn.run(create_sandbox(), host=args.host, port=args.port, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()

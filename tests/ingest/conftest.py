"""Fixtures of the ingestion tests: the session's real KRaft broker, real collectors.

The broker runs on free ports in a temporary folder; each collector is a real uvicorn server
(``python -m lakehouse.ingest.cli collect``) in a subprocess, configured only through the
environment and a collector overlay file, as an operator would run it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from lakehouse import REPO_ROOT
from lakehouse.catalog import catalog as load_catalog
from lakehouse.config import Settings, load_settings
from lakehouse.ingest.keys import key_hash
from lakehouse.runtime.processes import free_port

API_KEY = "trk_test_" + "a" * 40
OTHER_KEY = "trk_burst_" + "b" * 40
SHOPIFY_SECRETS = ("shpss_old_secret", "shpss_new_secret")
STRIPE_SECRETS = ("whsec_test_one", "whsec_test_two")
VAULT_KEY = "11" * 32
HASH_KEY = "test-master-key-0123456789abcdef"


@dataclass
class Deployment:
    """A test deployment: settings, the environment that produced them, its folder."""

    settings: Settings
    env: dict[str, str]
    root: Path


@pytest.fixture(scope="session")
def deployment(broker_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    """The ingestion deployment, on the session's one broker (``tests/conftest.py``)."""
    from lakehouse.runtime import kafka

    root = tmp_path_factory.mktemp("ingest")
    env = {
        **broker_env,
        "TRIVAS_ENV": "test",
        "TRIVAS_PATHS__LOGS": str(root / "logs"),
        "TRIVAS_PATHS__VAR": str(root / "var"),
        "TRIVAS_TABLES__ROOT": str(root / "lake"),
        "TRIVAS_TABLES__CHECKPOINTS": str(root / "checkpoints"),
        "TRIVAS_PRIVACY__HASH_KEY": HASH_KEY,
        "TRIVAS_COLLECTOR_API_KEYS": f"test:{key_hash(API_KEY)},burst:{key_hash(OTHER_KEY)}",
        "TRIVAS_SHOPIFY_WEBHOOK_SECRETS": ",".join(SHOPIFY_SECRETS),
        "TRIVAS_STRIPE_WEBHOOK_SECRETS": ",".join(STRIPE_SECRETS),
        "TRIVAS_PRIVACY__VAULT_KEY": VAULT_KEY,
    }
    settings = load_settings("test", environ=env)
    kafka.ensure_topics(settings, load_catalog())
    return Deployment(settings, env, root)


class CollectorProcess:
    """A real collector (uvicorn) in a subprocess."""

    def __init__(self, deployment: Deployment, name: str, overrides: dict[str, Any]) -> None:
        self.deployment = deployment
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        folder = deployment.root / f"collector-{name}"
        folder.mkdir(exist_ok=True)
        conf = {
            "api_keys_file": str(folder / "api_keys.json"),
            "webhooks": {
                "providers": {
                    "shopify": {"secrets_file": str(folder / "none")},
                    "stripe": {"secrets_file": str(folder / "none")},
                },
                "dedup_store": str(folder / "webhook_deliveries.sqlite"),
            },
            "vault": {"path": str(folder / "vault.sqlite"), "key_file": str(folder / "none")},
            **overrides,
        }
        self.conf_file = folder / "collector.yaml"
        self.conf_file.write_text(yaml.safe_dump({"collector": conf}))
        self.output = folder / "stderr.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log_file(self) -> Path:
        return Path(self.deployment.env["TRIVAS_PATHS__LOGS"]) / "collector.log"

    def start(self) -> CollectorProcess:
        env = {**os.environ, **self.deployment.env, "TRIVAS_CONF_OVERLAY": str(self.conf_file)}
        with self.output.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "lakehouse.ingest.cli", "collect", "--port", str(self.port)],
                cwd=REPO_ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"collector exited: {self.output.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"collector not ready: {self.output.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def logs(self) -> str:
        text = self.output.read_text(errors="replace") if self.output.exists() else ""
        if self.log_file.exists():
            text += self.log_file.read_text(errors="replace")
        return text


@pytest.fixture(scope="session")
def collector(deployment: Deployment) -> Iterator[CollectorProcess]:
    """The main collector: generous rate limit, 64 KiB bodies, 200 events per batch."""
    process = CollectorProcess(
        deployment,
        "main",
        {"limits": {"max_body_bytes": 65536, "max_batch_events": 200, "events_per_s": 5000, "burst": 5000}},
    ).start()
    yield process
    process.stop()


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}"}


def read_topic(settings: Settings, topic: str, timeout_s: float = 20.0) -> list[dict[str, Any]]:
    """Every record of ``topic`` from the beginning to its current end."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap(), enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in tps):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for records in consumer.poll(timeout_ms=300).values():
                for m in records:
                    out.append(
                        {
                            "key": m.key,
                            "raw": m.value,
                            "value": orjson.loads(m.value),
                            "partition": m.partition,
                            "offset": m.offset,
                            "timestamp": m.timestamp,
                            "headers": dict(m.headers or []),
                        }
                    )
        return out
    finally:
        consumer.close()


def raw_topics(settings: Settings) -> list[str]:
    from lakehouse.catalog import topic_for

    return [topic_for(settings.kafka.topic_prefix, d) for d in load_catalog().domains]


def read_all_raw(settings: Settings) -> list[dict[str, Any]]:
    return [r for t in raw_topics(settings) for r in read_topic(settings, t)]


@contextlib.contextmanager
def collect_thread_exceptions() -> Iterator[list[threading.ExceptHookArgs]]:
    """Collect every exception that escapes a thread while the block runs."""
    caught: list[threading.ExceptHookArgs] = []
    previous = threading.excepthook
    threading.excepthook = caught.append
    try:
        yield caught
    finally:
        threading.excepthook = previous


@pytest.fixture(autouse=True)
def fail_on_thread_exceptions() -> Iterator[None]:
    """An exception escaping any thread a test started fails the test (it would otherwise
    only be printed, and an assertion inside a worker thread could never fail anything)."""
    with collect_thread_exceptions() as caught:
        yield
    if caught:
        first = caught[0]
        raise AssertionError(
            f"{len(caught)} exception(s) in threads, first in {first.thread.name if first.thread else '?'}: "
            f"{first.exc_type.__name__}: {first.exc_value}"
        ) from first.exc_value

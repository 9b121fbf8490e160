"""Kafka for trivas: a local single-node KRaft broker, or an external cluster.

The local broker runs from the official Apache Kafka Maven artifacts (no tarball, no Docker):
``trivas kafka up`` formats its storage once, starts it detached, waits for it to answer and
creates the configured topics; ``down`` stops it cleanly. With ``TRIVAS_KAFKA_BOOTSTRAP`` set,
the same commands only manage topics on that cluster.
"""

from __future__ import annotations

import base64
import contextlib
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from lakehouse.catalog import Catalog, topic_for
from lakehouse.config import Settings
from lakehouse.kafka_security import LOGIN_MODULES, kafka_password, python_client_config
from lakehouse.runtime.jars import java_executable, resolve_bundle
from lakehouse.runtime.processes import Service, log4j2_properties, port_open

LOGGER_LEVELS = {"kafka": "WARN", "org.apache.kafka": "WARN"}
# Logs each failed SASL authentication ("invalid credentials with SASL mechanism …") at INFO.
AUTH_FAILURE_LOGGER = "org.apache.kafka.common.network.Selector"


@dataclass(frozen=True)
class BrokerStatus:
    """What ``trivas kafka status`` reports."""

    bootstrap: str
    local: bool
    pid: int | None
    reachable: bool
    topics: tuple[str, ...]


def topics_for(settings: Settings, catalog: Catalog) -> list[str]:
    """Every topic trivas uses: one raw topic per catalog domain, plus the dead-letter topic."""
    raw = [topic_for(settings.kafka.topic_prefix, domain) for domain in catalog.domains]
    return [*raw, settings.kafka.dlq_topic]


def broker_service(settings: Settings) -> Service:
    """The supervised local broker process."""
    data_dir = settings.path(settings.kafka.local_broker.data_dir)
    return Service("kafka", data_dir, settings.path(settings.paths.logs) / "kafka.out")


def server_properties(settings: Settings, log_dir: Path) -> str:
    """``server.properties`` of a single-node broker that is also its own KRaft controller,
    with a SASL_SSL listener next to PLAINTEXT when ``local_broker.sasl_ssl`` is set."""
    broker = settings.kafka.local_broker
    listeners = [f"PLAINTEXT://localhost:{broker.port}"]
    protocols = ["CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT"]
    if broker.sasl_ssl is not None:
        listeners.append(f"SASL_SSL://localhost:{broker.sasl_ssl.port}")
        protocols.append("SASL_SSL:SASL_SSL")
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers=localhost:{broker.controller_port}",
            f"listeners={','.join(listeners)},CONTROLLER://localhost:{broker.controller_port}",
            f"advertised.listeners={','.join(listeners)}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            f"listener.security.protocol.map={','.join(protocols)}",
            *sasl_ssl_listener_properties(settings),
            f"log.dirs={log_dir}",
            *internal_topic_replication(1, 1),
            *shared_broker_properties(settings),
            "",
        ]
    )


def internal_topic_replication(replicas: int, min_insync: int) -> list[str]:
    """Replication of Kafka's own topics (consumer offsets, transactions, share state)."""
    return [
        f"offsets.topic.replication.factor={replicas}",
        f"share.coordinator.state.topic.replication.factor={replicas}",
        f"transaction.state.log.replication.factor={replicas}",
        f"transaction.state.log.min.isr={min_insync}",
    ]


def shared_broker_properties(settings: Settings) -> list[str]:
    """What every broker trivas starts has in common, one node or a cluster."""
    return [
        f"num.partitions={settings.kafka.partitions}",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=false",
        f"log.retention.ms={settings.kafka.retention_ms}",
        # 2 cores: few threads are faster than Kafka's server-sized defaults.
        "num.network.threads=2",
        "num.io.threads=2",
    ]


def broker_java(settings: Settings, heap: str, log4j: Path) -> list[str]:
    """The JVM command line (without main class) of a broker or of its storage tool."""
    jars = resolve_bundle("kafka", settings.path(settings.paths.jar_cache))
    return [
        java_executable(),
        f"-Xmx{heap}",
        f"-Xms{heap}",
        f"-Dlog4j2.configurationFile={log4j}",
        "-cp",
        ":".join(str(j) for j in jars),
    ]


def sasl_ssl_listener_properties(settings: Settings) -> list[str]:
    """The SASL_SSL listener's TLS identity (PEM files) and SCRAM mechanism; none without one.

    The broker's own traffic stays on PLAINTEXT (inter-broker and controller), so only clients
    meet TLS and SCRAM; the SCRAM credential itself is stored when the storage is formatted."""
    tls = settings.kafka.local_broker.sasl_ssl
    if tls is None:
        return []
    mechanism = settings.kafka.security.mechanism
    if not mechanism.startswith("SCRAM-"):
        raise ValueError(f"the local broker's SASL_SSL listener speaks SCRAM only, not {mechanism}")
    return [
        f"sasl.enabled.mechanisms={mechanism}",
        # The broker side of SCRAM needs a JAAS entry, without credentials of its own.
        f"listener.name.sasl_ssl.{mechanism.lower()}.sasl.jaas.config={LOGIN_MODULES[mechanism]} required;",
        "ssl.keystore.type=PEM",
        f"ssl.keystore.certificate.chain={_pem_property(settings.path(tls.certificate_chain))}",
        f"ssl.keystore.key={_pem_property(settings.path(tls.key))}",
    ]


def _pem_property(pem_file: Path) -> str:
    """A PEM file as one ``.properties`` value (Java's loader turns ``\\n`` back into newlines)."""
    return pem_file.read_text().strip().replace("\n", "\\n")


def scram_credentials(settings: Settings) -> list[str]:
    """``kafka-storage format`` arguments storing the client user's SCRAM credential (the
    listener has no other user store); none without a SASL_SSL listener."""
    if settings.kafka.local_broker.sasl_ssl is None:
        return []
    security = settings.kafka.security
    user = f"name={security.username},password={kafka_password(settings)}"
    return ["--add-scram", f"{security.mechanism}=[{user}]"]


def start_local_broker(settings: Settings, catalog: Catalog) -> int:
    """Start (or reuse) the local broker and create the topics; returns its pid."""
    broker = settings.kafka.local_broker
    data_dir = settings.path(broker.data_dir)
    log_dir = data_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    properties = data_dir / "server.properties"
    properties.touch(mode=0o600)  # with a SASL_SSL listener it holds the broker's private key
    properties.write_text(server_properties(settings, log_dir))
    log4j = data_dir / "log4j2.properties"
    levels = {**LOGGER_LEVELS, AUTH_FAILURE_LOGGER: "INFO"} if broker.sasl_ssl else LOGGER_LEVELS
    log4j.write_text(log4j2_properties(settings.path(settings.paths.logs) / "kafka.log", levels))
    java = broker_java(settings, broker.heap, log4j)
    service = broker_service(settings)
    if service.pid() is None and not (log_dir / "meta.properties").exists():
        format_storage(java, properties, new_cluster_id(), ["--standalone", *scram_credentials(settings)])
    pid = service.start(
        [*java, "kafka.Kafka", str(properties)],
        ready=lambda: port_open("localhost", broker.port) and admin_answers(settings),
        timeout_s=90,
    )
    ensure_topics(settings, catalog)
    return pid


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def format_storage(java: Sequence[str], properties: Path, cluster_id: str, options: Sequence[str]) -> None:
    """Format a node's log directory for KRaft (once, before its first start)."""
    command = [*java, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(properties), *options]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        # Not CalledProcessError: its message would quote the command, SCRAM password included.
        raise RuntimeError(f"kafka-storage format failed: {done.stderr.strip()[-2000:]}")


def admin_answers(settings: Settings, bootstrap: str | None = None) -> bool:
    """True when the brokers at ``bootstrap`` (default: the configured Kafka) list topics."""
    return reachable_topics(settings, bootstrap) is not None


def reachable_topics(settings: Settings, bootstrap: str | None = None) -> tuple[str, ...] | None:
    """The topics on the brokers at ``bootstrap`` (default: the configured Kafka), Kafka's own
    internal topics left out; None when the brokers do not answer."""
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap or settings.kafka_bootstrap(),
            request_timeout_ms=3000,
            bootstrap_timeout_ms=3000,  # else 30 s before `kafka status` says nobody answers
            **python_client_config(settings),
        )
    except KafkaError:
        return None
    try:
        return tuple(sorted(t for t in admin.list_topics() if not t.startswith("__")))
    except KafkaError:
        return None
    finally:
        admin.close()


def ensure_topics(settings: Settings, catalog: Catalog) -> list[str]:
    """Create every configured topic that does not exist yet; returns the topics created."""
    return create_missing_topics(settings, topics_for(settings, catalog))


def create_missing_topics(settings: Settings, names: Sequence[str]) -> list[str]:
    """Create those of ``names`` that do not exist yet (the deployment's partitions and
    retention); returns the topics created. Also used for the CDC connector's topics."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap(), **python_client_config(settings))
    try:
        existing = set(admin.list_topics())
        wanted = [t for t in names if t not in existing]
        if wanted:
            new = [
                NewTopic(
                    name,
                    num_partitions=settings.kafka.partitions,
                    replication_factor=settings.kafka.replication_factor,
                    topic_configs={
                        "retention.ms": str(settings.kafka.retention_ms),
                        "min.insync.replicas": str(settings.kafka.min_insync_replicas),
                    },
                )
                for name in wanted
            ]
            # Another process may create them at the same moment: that is fine.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new)
        return wanted
    finally:
        admin.close()


def up(settings: Settings, catalog: Catalog) -> BrokerStatus:
    """Make Kafka available: the external cluster's topics, or the local broker and topics."""
    if settings.uses_local_broker():
        start_local_broker(settings, catalog)
    else:
        ensure_topics(settings, catalog)
    return status(settings)


def down(settings: Settings) -> bool:
    """Stop the local broker (never an external cluster); False if it was not running."""
    if not settings.uses_local_broker():
        return False
    return broker_service(settings).stop()


def status(settings: Settings) -> BrokerStatus:
    """Reachability and topics of the configured Kafka."""
    local = settings.uses_local_broker()
    pid = broker_service(settings).pid() if local else None
    topics = reachable_topics(settings)
    return BrokerStatus(settings.kafka_bootstrap(), local, pid, topics is not None, topics or ())

"""Kafka over SASL/SCRAM and TLS: the client settings derived from ``kafka.security``, and a real
broker with a SASL_SSL listener (a CA made by the test) that kafka-python and the pipeline use."""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
import uuid
from collections import Counter
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lakehouse.config import MissingSecretError, Settings, load_settings, provenance
from lakehouse.kafka_security import (
    connect_worker_properties,
    python_client_config,
    spark_kafka_options,
)
from lakehouse.runtime.processes import free_port
from tests.conftest import TEST_HASH_KEY

PASSWORD = "pa ss\"word-" + "x" * 8  # a quote and a space: the JAAS line must escape them


def _secured(tmp_path: Path, **extra: str) -> Settings:
    return load_settings(
        "test",
        environ={
            "TRIVAS_KAFKA__SECURITY__PROTOCOL": "SASL_SSL",
            "TRIVAS_KAFKA__SECURITY__USERNAME": "trivas",
            "TRIVAS_KAFKA__SECURITY__PASSWORD": PASSWORD,
            "TRIVAS_KAFKA__SECURITY__CA_FILE": str(tmp_path / "ca.pem"),
            "TRIVAS_KAFKA__BOOTSTRAP": "broker-1:9093,broker-2:9093",
            **extra,
        },
    )


@pytest.mark.unit
def test_plaintext_default_adds_nothing_to_any_client(tmp_path: Path) -> None:
    settings = load_settings("test", environ={})
    assert settings.kafka.security.protocol == "PLAINTEXT"
    assert python_client_config(settings) == {}
    assert spark_kafka_options(settings) == {}
    assert connect_worker_properties(settings, "${file:/x:kafka.password}") == []


@pytest.mark.unit
def test_sasl_ssl_settings_derive_every_client_kind(tmp_path: Path) -> None:
    settings = _secured(tmp_path)
    ca = str(tmp_path / "ca.pem")
    assert python_client_config(settings) == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "trivas",
        "sasl_plain_password": PASSWORD,
        "ssl_cafile": ca,
    }
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="trivas" password="pa ss\\"word-xxxxxxxx";'
    )
    assert spark_kafka_options(settings) == {
        "kafka.security.protocol": "SASL_SSL",
        "kafka.sasl.mechanism": "SCRAM-SHA-512",
        "kafka.sasl.jaas.config": jaas,
        "kafka.ssl.truststore.type": "PEM",
        "kafka.ssl.truststore.location": ca,
    }
    lines = connect_worker_properties(settings, "${file:/s:kafka.password}")
    for prefix in ("", "producer.", "consumer.", "admin."):
        assert f"{prefix}security.protocol=SASL_SSL" in lines
        assert f"{prefix}ssl.truststore.location={ca}" in lines
        assert (
            f"{prefix}sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule "
            'required username="trivas" password="${file:/s:kafka.password}";'
        ) in lines
    # The worker's properties file refers to the secret, never holds it.
    assert not any(PASSWORD in line for line in lines)


@pytest.mark.unit
def test_plain_mechanism_uses_plain_login_module(tmp_path: Path) -> None:
    settings = _secured(tmp_path, TRIVAS_KAFKA__SECURITY__MECHANISM="PLAIN")
    assert spark_kafka_options(settings)["kafka.sasl.jaas.config"].startswith(
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
    )


@pytest.mark.unit
def test_password_from_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "kafka-password"
    secret.write_text(PASSWORD + "\n")
    settings = _secured(tmp_path, TRIVAS_KAFKA__SECURITY__PASSWORD_FILE=str(secret))
    settings = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"security": settings.kafka.security.model_copy(update={"password": None})})}
    )
    assert python_client_config(settings)["sasl_plain_password"] == PASSWORD


@pytest.mark.unit
@pytest.mark.parametrize("env", ["test", "databricks"])
def test_missing_password_stops_with_the_variable_named(env: str) -> None:
    settings = load_settings(
        env,
        environ={
            "TRIVAS_KAFKA__SECURITY__PROTOCOL": "SASL_SSL",
            "TRIVAS_KAFKA__SECURITY__USERNAME": "trivas",
            "TRIVAS_KAFKA__BOOTSTRAP": "broker-1:9093",
            "TRIVAS_PRIVACY__HASH_KEY": TEST_HASH_KEY,
        },
    )
    with pytest.raises(MissingSecretError, match="TRIVAS_KAFKA__SECURITY__PASSWORD"):
        python_client_config(settings)
    with pytest.raises(MissingSecretError):
        spark_kafka_options(settings)


@pytest.mark.unit
def test_missing_username_is_refused(tmp_path: Path) -> None:
    settings = _secured(tmp_path, TRIVAS_KAFKA__SECURITY__USERNAME="")
    with pytest.raises(ValueError, match="TRIVAS_KAFKA__SECURITY__USERNAME"):
        python_client_config(settings)


@pytest.mark.unit
def test_config_show_masks_the_kafka_password() -> None:
    environ = {"TRIVAS_KAFKA__SECURITY__PASSWORD": PASSWORD, "TRIVAS_KAFKA__SECURITY__PROTOCOL": "SASL_SSL"}
    rows = {key: (value, origin) for key, value, origin in provenance("local", environ)}
    assert rows["kafka.security.password"] == ("**********", "environment variable TRIVAS_KAFKA__SECURITY__PASSWORD")
    assert rows["kafka.security.protocol"][0] == "SASL_SSL"
    assert all(PASSWORD not in value for value, _ in rows.values())


# -- a real broker with a SASL_SSL listener ------------------------------------------------------


def _write_pem_identity(folder: Path) -> tuple[Path, Path, Path]:
    """A self-signed CA and a ``localhost`` broker certificate it signed: (ca, chain, key)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "trivas test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    broker_key = ec.generate_private_key(ec.SECP256R1())
    broker_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(broker_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, chain_file, key_file = folder / "ca.pem", folder / "broker-chain.pem", folder / "broker-key.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    chain_file.write_bytes(
        broker_cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM)
    )
    key_file.write_bytes(
        broker_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return ca_file, chain_file, key_file


@pytest.fixture(scope="module")
def sasl_broker_env(tmp_path_factory: pytest.TempPathFactory, catalog):  # noqa: ANN201
    """A broker of its own (free ports, own data dir) whose clients must use SASL_SSL + SCRAM."""
    from lakehouse.runtime import kafka

    root = tmp_path_factory.mktemp("sasl-broker")
    ca_file, chain_file, key_file = _write_pem_identity(root)
    env = {
        "TRIVAS_KAFKA__LOCAL_BROKER__PORT": str(free_port()),
        "TRIVAS_KAFKA__LOCAL_BROKER__CONTROLLER_PORT": str(free_port()),
        "TRIVAS_KAFKA__LOCAL_BROKER__DATA_DIR": str(root / "kafka"),
        "TRIVAS_KAFKA__LOCAL_BROKER__SASL_SSL__PORT": str(free_port()),
        "TRIVAS_KAFKA__LOCAL_BROKER__SASL_SSL__CERTIFICATE_CHAIN": str(chain_file),
        "TRIVAS_KAFKA__LOCAL_BROKER__SASL_SSL__KEY": str(key_file),
        "TRIVAS_KAFKA__SECURITY__PROTOCOL": "SASL_SSL",
        "TRIVAS_KAFKA__SECURITY__USERNAME": "trivas",
        "TRIVAS_KAFKA__SECURITY__PASSWORD": secrets.token_urlsafe(16),
        "TRIVAS_KAFKA__SECURITY__CA_FILE": str(ca_file),
        "TRIVAS_PATHS__LOGS": str(root / "logs"),
        "TRIVAS_PRIVACY__HASH_KEY": TEST_HASH_KEY,
    }
    settings = load_settings("test", environ=env)
    kafka.up(settings, catalog)
    try:
        yield env
    finally:
        kafka.down(settings)


@pytest.fixture()
def sasl_deployment(sasl_broker_env: dict[str, str], tmp_path: Path, catalog) -> Settings:  # noqa: ANN001
    from lakehouse.runtime import kafka

    settings = load_settings(
        "test",
        environ={
            **sasl_broker_env,
            "TRIVAS_KAFKA__TOPIC_PREFIX": f"t{uuid.uuid4().hex[:8]}",
            "TRIVAS_KAFKA__DLQ_TOPIC": f"dlq{uuid.uuid4().hex[:8]}",
            "TRIVAS_PATHS__VAR": str(tmp_path / "var"),
            "TRIVAS_TABLES__ROOT": str(tmp_path / "lake"),
            "TRIVAS_TABLES__CHECKPOINTS": str(tmp_path / "checkpoints"),
        },
    )
    kafka.ensure_topics(settings, catalog)
    return settings


@pytest.mark.integration
def test_kafka_python_round_trip_over_sasl_ssl(sasl_deployment: Settings) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    settings = sasl_deployment
    assert settings.kafka_bootstrap() == f"localhost:{settings.kafka.local_broker.sasl_ssl.port}"
    topic = settings.kafka.dlq_topic
    sent = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(50)]
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap(), acks="all", **python_client_config(settings))
    try:
        for key, value in sent:
            producer.send(topic, key=key, value=value, partition=0)
        producer.flush()
    finally:
        producer.close()
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap(),
        group_id=None,
        enable_auto_commit=False,
        consumer_timeout_ms=10_000,
        **python_client_config(settings),
    )
    try:
        consumer.assign([TopicPartition(topic, 0)])
        consumer.seek_to_beginning()
        received = []
        for record in consumer:
            received.append((record.key, record.value))
            if len(received) == len(sent):
                break
    finally:
        consumer.close()
    assert received == sent


@pytest.mark.integration
def test_wrong_password_is_refused(sasl_deployment: Settings) -> None:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    # kafka-python sees only the closed connection; the broker's log says why.
    config = {**python_client_config(sasl_deployment), "sasl_plain_password": "not-the-password"}
    with pytest.raises(KafkaError, match="Unable to bootstrap"):
        KafkaAdminClient(bootstrap_servers=sasl_deployment.kafka_bootstrap(), bootstrap_timeout_ms=4000, **config)
    broker_log = Path(sasl_deployment.path(sasl_deployment.paths.logs)) / "kafka.log"
    assert "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512" in broker_log.read_text()


@pytest.mark.integration
def test_plaintext_client_is_refused_by_the_sasl_listener(sasl_deployment: Settings) -> None:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    with pytest.raises(KafkaError, match="Unable to bootstrap"):
        KafkaAdminClient(bootstrap_servers=sasl_deployment.kafka_bootstrap(), bootstrap_timeout_ms=4000)


@pytest.mark.integration
@pytest.mark.spark
def test_pipeline_reads_the_sasl_ssl_broker_into_bronze(sasl_deployment: Settings, spark, catalog, table_reader) -> None:  # noqa: ANN001
    from lakehouse.contracts import contracts
    from spark_jobs import pipeline
    from tests.spark_jobs.stream_fixtures import produce, seeded_stream

    stream = seeded_stream(catalog, sasl_deployment, seed=5, minutes=2, rate=8.0)
    produce(sasl_deployment, stream)
    pipeline.drain(spark, sasl_deployment, catalog, contracts(), jobs=("bronze", "silver_gold"))
    bronze = table_reader(sasl_deployment, "bronze.events")
    assert len(bronze) == len(stream)
    assert Counter(bronze["topic"]) == Counter(d.topic for d in stream)


@pytest.mark.unit
def test_default_broker_and_connect_worker_have_no_security_lines(tmp_path: Path) -> None:
    from lakehouse.ingest.cdc.connect import worker_properties
    from lakehouse.runtime.kafka import server_properties

    settings = load_settings("test", environ={})
    broker = server_properties(settings, tmp_path)
    assert "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT" in broker.splitlines()
    worker = worker_properties(settings, settings.cdc, tmp_path / "plugins", tmp_path / "secrets")
    for properties in (broker, worker):
        keys = [line.partition("=")[0] for line in properties.splitlines()]
        assert not [key for key in keys if "sasl" in key or "ssl" in key or key.endswith("security.protocol")]

"""How each kind of Kafka client authenticates: derived from ``kafka.security``, in one place.

Three client kinds talk to Kafka: kafka-python (collector, generator, admin, quarantine), Spark's
Kafka source and sink (``kafka.``-prefixed options) and the Kafka Connect worker (its own
properties plus the ``producer.``, ``consumer.`` and ``admin.`` clients it creates). Each gets
its settings from one function here, and with the default ``PLAINTEXT`` protocol every function
returns nothing, so a deployment without security sends exactly what it sent before.
"""

from __future__ import annotations

from typing import Any

from lakehouse.config import KafkaSecurity, MissingSecretError, Settings

PASSWORD_VARIABLE = "TRIVAS_KAFKA__SECURITY__PASSWORD (or TRIVAS_KAFKA__SECURITY__PASSWORD_FILE)"
LOGIN_MODULES = {
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
}
CONNECT_CLIENT_PREFIXES = ("", "producer.", "consumer.", "admin.")


def uses_sasl(security: KafkaSecurity) -> bool:
    """True when clients authenticate with a user name and password."""
    return security.protocol.startswith("SASL_")


def uses_tls(security: KafkaSecurity) -> bool:
    """True when connections are encrypted."""
    return security.protocol in ("SSL", "SASL_SSL")


def kafka_password(settings: Settings) -> str:
    """The SASL password, from the environment or a secret file. There is no development
    fallback (an external broker's credential cannot be generated), so a missing password
    stops the process whatever the environment."""
    security = settings.kafka.security
    if security.password is not None:
        return security.password.get_secret_value()
    if security.password_file:
        return settings.path(security.password_file).read_text().strip()
    raise MissingSecretError(PASSWORD_VARIABLE, settings.env)


def _username(settings: Settings) -> str:
    if not settings.kafka.security.username:
        raise ValueError(
            f"kafka.security.protocol={settings.kafka.security.protocol} needs "
            "kafka.security.username (TRIVAS_KAFKA__SECURITY__USERNAME)"
        )
    return settings.kafka.security.username


def jaas_config(settings: Settings, password: str) -> str:
    """The ``sasl.jaas.config`` line of the Java clients, with ``password`` as given (the
    secret itself, or a Connect config-provider reference to it)."""
    security = settings.kafka.security
    quoted = password.replace("\\", "\\\\").replace('"', '\\"')
    user = _username(settings).replace("\\", "\\\\").replace('"', '\\"')
    return f'{LOGIN_MODULES[security.mechanism]} required username="{user}" password="{quoted}";'


def java_client_properties(settings: Settings, password: str | None = None) -> dict[str, str]:
    """Kafka's own client properties (unprefixed): protocol, SASL mechanism and JAAS line, the
    PEM trust store. ``password`` overrides the secret (Connect passes a file reference)."""
    security = settings.kafka.security
    if security.protocol == "PLAINTEXT":
        return {}
    props = {"security.protocol": security.protocol}
    if uses_sasl(security):
        props["sasl.mechanism"] = security.mechanism
        props["sasl.jaas.config"] = jaas_config(
            settings, kafka_password(settings) if password is None else password
        )
    if uses_tls(security) and security.ca_file:
        props["ssl.truststore.type"] = "PEM"
        props["ssl.truststore.location"] = str(settings.path(security.ca_file))
    return props


def python_client_config(settings: Settings) -> dict[str, Any]:
    """kafka-python keyword arguments (``KafkaProducer``, ``KafkaConsumer``, ``KafkaAdminClient``)."""
    security = settings.kafka.security
    if security.protocol == "PLAINTEXT":
        return {}
    config: dict[str, Any] = {"security_protocol": security.protocol}
    if uses_sasl(security):
        config["sasl_mechanism"] = security.mechanism
        config["sasl_plain_username"] = _username(settings)
        config["sasl_plain_password"] = kafka_password(settings)
    if uses_tls(security) and security.ca_file:
        config["ssl_cafile"] = str(settings.path(security.ca_file))
    return config


def spark_kafka_options(settings: Settings) -> dict[str, str]:
    """Options of Spark's Kafka source and sink: the client properties prefixed ``kafka.``
    (Spark redacts ``sasl.jaas.config`` in its logs and UI)."""
    return {f"kafka.{key}": value for key, value in java_client_properties(settings).items()}


def connect_worker_properties(settings: Settings, password_reference: str | None = None) -> list[str]:
    """``key=value`` lines for a Kafka Connect worker: the worker's own clients and the
    producers, consumers and admin clients it creates for connectors. ``password_reference``
    (e.g. ``${file:/path:kafka.password}``) keeps the secret out of the properties file."""
    props = java_client_properties(settings, password_reference)
    return [f"{prefix}{key}={value}" for prefix in CONNECT_CLIENT_PREFIXES for key, value in props.items()]

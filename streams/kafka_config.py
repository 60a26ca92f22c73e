"""The ``[kafka]`` settings: which client library, where the cluster is, how to authenticate
(SSL/SASL passed through to every client harstream makes), the workers' consumer group and topic
creation."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal
from urllib.parse import urlparse

from streams.exceptions import ConfigError

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI"]
KafkaClient = Literal["kafka-python", "confluent"]


@dataclass(frozen=True)
class KafkaConfig:
    """Where the cluster is and how to authenticate; SSL/SASL settings pass straight through.

    >>> KafkaConfig("127.0.0.1:9092").client_kwargs()["bootstrap_servers"]
    '127.0.0.1:9092'
    >>> KafkaConfig("127.0.0.1:9092").librdkafka_config()["bootstrap.servers"]
    '127.0.0.1:9092'
    """

    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "harstream"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: str | None = None
    ssl_check_hostname: bool = True
    sasl_mechanism: SaslMechanism | None = None
    sasl_plain_username: str | None = None
    sasl_plain_password: str | None = None
    request_timeout_ms: int = 30_000
    group_id: str = "harstream-workers"
    """the workers' consumer group (they share the input topic's partitions)"""
    session_timeout_ms: int = 10_000
    """how long a consumer group waits for a silent member (a killed worker) before it
    rebalances; members heartbeat at a third of it"""
    partitions: int = 6
    """partitions of the topics harstream creates when they are missing"""
    connect_timeout_s: float = 120.0
    """how long a starting worker or trainer retries an unreachable cluster before it gives up"""
    client: KafkaClient = "kafka-python"
    """the client library: kafka-python, or confluent-kafka (librdkafka, faster; install the
    extra: pip install 'harstream[fast]'); both partition keys alike (murmur2)"""

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's clients (unset options left out)."""
        given = ((f.name, getattr(self, f.name)) for f in fields(self) if f.name not in _NOT_CLIENT)
        return {name: value for name, value in given if value is not None}

    def librdkafka_config(self) -> dict[str, Any]:
        """The same connection settings as librdkafka properties, for confluent-kafka's clients
        (unset options left out).

        >>> conf = KafkaConfig("b:9093", security_protocol="SASL_SSL", sasl_mechanism="PLAIN",
        ...                    sasl_plain_username="u", sasl_plain_password="p").librdkafka_config()
        >>> conf["security.protocol"], conf["sasl.mechanism"], conf["sasl.username"]
        ('SASL_SSL', 'PLAIN', 'u')
        """
        given = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "security.protocol": self.security_protocol,
            "ssl.ca.location": self.ssl_cafile,
            "ssl.certificate.location": self.ssl_certfile,
            "ssl.key.location": self.ssl_keyfile,
            "ssl.key.password": self.ssl_password,
            "ssl.endpoint.identification.algorithm": "https" if self.ssl_check_hostname else "none",
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_plain_username,
            "sasl.password": self.sasl_plain_password,
            "socket.timeout.ms": self.request_timeout_ms,
        }
        return {name: value for name, value in given.items() if value is not None}


_NOT_CLIENT = frozenset(
    {"client", "group_id", "session_timeout_ms", "partitions", "connect_timeout_s"}
)
"""harstream's own settings in [kafka]: applied where consumers and topics are made"""


def parse_kafka_url(url: str) -> tuple[str, str]:
    """``kafka://host:port[,host:port]/topic`` as ``(bootstrap_servers, topic)``.

    >>> parse_kafka_url("kafka://127.0.0.1:9092/sensor.raw")
    ('127.0.0.1:9092', 'sensor.raw')
    """
    parsed = urlparse(url)
    topic = parsed.path.lstrip("/")
    if parsed.scheme != "kafka" or not parsed.netloc or not topic or "/" in topic:
        raise ConfigError(f"expected kafka://HOST:PORT/TOPIC, got {url!r}")
    return parsed.netloc, topic

"""Connection settings shared by every Kafka client harstream makes."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal
from urllib.parse import urlparse

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI"]


@dataclass(frozen=True)
class KafkaConfig:
    """Where the cluster is and how to authenticate; SSL/SASL settings pass straight through.

    >>> KafkaConfig("127.0.0.1:9092").client_kwargs()["bootstrap_servers"]
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

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's clients (unset options left out)."""
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None}


def parse_kafka_url(url: str) -> tuple[str, str]:
    """``kafka://host:port[,host:port]/topic`` as ``(bootstrap_servers, topic)``.

    >>> parse_kafka_url("kafka://127.0.0.1:9092/sensor.raw")
    ('127.0.0.1:9092', 'sensor.raw')
    """
    parsed = urlparse(url)
    topic = parsed.path.lstrip("/")
    if parsed.scheme != "kafka" or not parsed.netloc or not topic or "/" in topic:
        raise ValueError(f"expected kafka://HOST:PORT/TOPIC, got {url!r}")
    return parsed.netloc, topic

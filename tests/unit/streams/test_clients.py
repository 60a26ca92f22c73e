"""The client factory: the library ``[kafka] client`` names, and a clear error when it is not
installed; the ``[kafka]`` settings as each library's options."""

from __future__ import annotations

import sys

import pytest

from streams import clients
from streams.admin import TopicSpec, ensure_topics, partition_count
from streams.exceptions import ConfigError
from streams.kafka_config import KafkaConfig
from streams.protocols import Sink

SECURE = KafkaConfig(
    "b1:9093,b2:9093",
    client_id="w",
    security_protocol="SASL_SSL",
    ssl_cafile="/ca.pem",
    ssl_certfile="/cert.pem",
    ssl_keyfile="/key.pem",
    ssl_password="kp",
    ssl_check_hostname=False,
    sasl_mechanism="SCRAM-SHA-512",
    sasl_plain_username="u",
    sasl_plain_password="p",
    request_timeout_ms=20_000,
    client="confluent",
)
MISSING = r"needs confluent-kafka.*install the extra: pip install 'harstream\[fast\]'"


def test_kafka_python_is_the_default_and_client_is_no_kafka_python_option():
    assert clients.chosen(KafkaConfig()) == "kafka-python"
    assert "client" not in SECURE.client_kwargs()
    assert SECURE.client_kwargs()["sasl_plain_username"] == "u"


def test_ssl_and_sasl_pass_through_under_librdkafka_names():
    assert SECURE.librdkafka_config() == {
        "bootstrap.servers": "b1:9093,b2:9093",
        "client.id": "w",
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": "/ca.pem",
        "ssl.certificate.location": "/cert.pem",
        "ssl.key.location": "/key.pem",
        "ssl.key.password": "kp",
        "ssl.endpoint.identification.algorithm": "none",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "u",
        "sasl.password": "p",
        "socket.timeout.ms": 20_000,
    }
    plain = KafkaConfig().librdkafka_config()
    assert not any(k.startswith(("ssl.ca", "ssl.key", "sasl.")) for k in plain)


def test_confluent_without_the_extra_is_a_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)  # as if it were not installed
    kafka = KafkaConfig("127.0.0.1:9", client="confluent")
    makers = [
        lambda: clients.source(kafka, ["t"]),
        lambda: clients.sink(kafka),
        lambda: clients.table(kafka, "t"),
        lambda: clients.admin(kafka),
        lambda: ensure_topics(kafka, [TopicSpec("t")]),
        lambda: partition_count(kafka, "t"),
    ]
    for make in makers:
        with pytest.raises(ConfigError, match=MISSING):
            make()


def test_an_unknown_client_is_a_config_error():
    with pytest.raises(ConfigError, match="'kafka-python' or 'confluent', not 'librdkafka'"):
        clients.sink(KafkaConfig(client="librdkafka"))


def test_the_factory_makes_the_chosen_librarys_client():
    pytest.importorskip("confluent_kafka")
    sink = clients.sink(KafkaConfig("127.0.0.1:9", client="confluent"))  # connects lazily
    assert isinstance(sink, Sink) and type(sink).__name__ == "ConfluentSink"
    sink.flush(1)
    sink.close()

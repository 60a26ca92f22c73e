"""The confluent-kafka clients' options: librdkafka accepts them, with kafka-python's meaning."""

from __future__ import annotations

import logging

import pytest

pytest.importorskip("confluent_kafka")

from confluent_kafka import Consumer, Producer  # noqa: E402

from streams.confluent.common import Repeats, fetch  # noqa: E402
from streams.confluent.sink import producer_config  # noqa: E402
from streams.confluent.source import consumer_config  # noqa: E402
from streams.kafka_config import KafkaConfig  # noqa: E402
from streams.kafka_sink import SinkConfig  # noqa: E402
from streams.kafka_source import SourceConfig  # noqa: E402

KAFKA = KafkaConfig("127.0.0.1:9", security_protocol="SASL_PLAINTEXT",
                    sasl_mechanism="SCRAM-SHA-256", sasl_plain_username="u",
                    sasl_plain_password="p", ssl_check_hostname=False)  # fmt: skip


def test_librdkafka_accepts_the_producer_and_consumer_options():
    for sink in (SinkConfig(), SinkConfig(acks=1, compression_type="zstd", linger_ms=0)):
        conf = producer_config(KAFKA, sink)
        assert conf["partitioner"] == "murmur2_random"  # the Java client's, as kafka-python's
        assert conf["acks"] == str(sink.acks)
        Producer(conf).flush(0)
    source = SourceConfig(group_id="g", auto_offset_reset="latest", session_timeout_ms=6000,
                          heartbeat_interval_ms=2000)  # fmt: skip
    conf = consumer_config(KAFKA, source)
    assert (conf["enable.auto.commit"], conf["enable.auto.offset.store"]) == (False, False)
    assert (conf["group.id"], conf["auto.offset.reset"]) == ("g", "latest")
    Consumer(conf).close()


class _Queue:
    """A consumer's local queue: ``ready`` now, ``later`` arriving while ``poll`` waits."""

    def __init__(self, ready: list, later: list) -> None:
        self.ready, self.later, self.calls = list(ready), list(later), []

    def consume(self, n: int, timeout: float) -> list:
        self.calls.append(("consume", n, timeout))
        out, self.ready = self.ready[:n], self.ready[n:]
        return out

    def poll(self, timeout: float):
        self.calls.append(("poll", timeout))
        self.ready += self.later
        self.later = []
        return self.ready.pop(0) if self.ready else None


def test_a_fetch_waits_only_for_its_first_message():
    queue = _Queue([1, 2, 3], [4])
    assert fetch(queue, 2, 0.5) == [1, 2] and queue.calls == [("consume", 2, 0)]
    queue = _Queue([], [4, 5, 6])
    assert fetch(queue, 10, 0.5) == [4, 5, 6]
    assert queue.calls == [("consume", 10, 0), ("poll", 0.5), ("consume", 9, 0)]
    assert fetch(_Queue([], []), 10, 0.5) == []
    assert fetch(_Queue([], [7]), 1, 0.5) == [7]
    assert fetch(_Queue([], [7]), 10, 0) == []  # no waiting at all


def test_librdkafka_repeating_itself_is_logged_once_in_a_while(caplog):
    logger = logging.getLogger("test-repeats")
    logger.addFilter(Repeats(every_s=60))
    with caplog.at_level(logging.INFO, logger="test-repeats"):
        for _ in range(100):
            logger.error("Connect to ipv4#127.0.0.1:9 failed: Connection refused")
        logger.warning("1/1 brokers are down")
    assert [r.getMessage() for r in caplog.records] == [
        "Connect to ipv4#127.0.0.1:9 failed: Connection refused",
        "1/1 brokers are down",
    ]

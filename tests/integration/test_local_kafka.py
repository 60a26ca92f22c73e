"""The local broker is a real Kafka: metadata, topics, produce/consume, restart keeps data."""

from __future__ import annotations

import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from streams.local_kafka import LocalKafka

pytestmark = pytest.mark.kafka


def _produce(bootstrap: str, topic: str, count: int) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        for i in range(count):
            producer.send(topic, key=f"device-{i % 7}".encode(), value=str(i).encode())
        producer.flush(timeout=30)
    finally:
        producer.close()


def _consume(
    bootstrap: str, topic: str, group: str, count: int, timeout_s: float = 30
) -> list[int]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    values: list[int] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(values) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                values.extend(int(record.value) for record in records)
            consumer.commit()
    finally:
        consumer.close()
    return values


def test_broker_serves_metadata(kafka_bootstrap: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        cluster = admin.describe_cluster()
    finally:
        admin.close()
    assert cluster["brokers"], cluster
    assert cluster["controller_id"] is not None


def test_produce_and_consume_100_messages_over_3_partitions(kafka_bootstrap, unique_topic) -> None:
    topic = unique_topic()
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics(
            {topic: {"num_partitions": 3, "replication_factor": 1}}, wait_for_metadata=True
        )
        [described] = admin.describe_topics([topic])
    finally:
        admin.close()
    assert len(described["partitions"]) == 3

    _produce(kafka_bootstrap, topic, 100)
    values = _consume(kafka_bootstrap, topic, f"g-{topic}", 100)

    assert sorted(values) == list(range(100))
    assert _consume(kafka_bootstrap, topic, f"g-{topic}", 1, timeout_s=3) == []  # committed


def test_restart_keeps_ports_and_data(kafka_broker: LocalKafka, unique_topic) -> None:
    topic = unique_topic()
    bootstrap = kafka_broker.bootstrap
    _produce(bootstrap, topic, 50)  # auto-created topic

    kafka_broker.restart()

    assert kafka_broker.bootstrap == bootstrap
    assert kafka_broker.running
    assert sorted(_consume(bootstrap, topic, f"g-{topic}", 50)) == list(range(50))

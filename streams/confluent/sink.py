"""Kafka sink on confluent-kafka: a librdkafka producer, batched with linger, keyed by device id."""

from __future__ import annotations

import time

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from streams.confluent.common import base_config, failure
from streams.exceptions import TransportError
from streams.kafka_config import KafkaConfig
from streams.kafka_sink import SinkConfig

PARTITIONER = "murmur2_random"
"""the Java client's (and kafka-python's) partitioner: murmur2 of the key, so that a device lands
on the same partition whichever client sent it; unkeyed messages go to a random partition"""


def producer_config(kafka: KafkaConfig, config: SinkConfig) -> dict:
    """librdkafka properties of a producer with ``config``'s settings (errors-only reports)."""
    return {
        **base_config(kafka),
        "partitioner": PARTITIONER,
        "acks": str(config.acks),
        "linger.ms": config.linger_ms,
        "batch.size": config.batch_size,
        "compression.type": config.compression_type or "none",
        "message.max.bytes": config.max_request_size,
        "delivery.timeout.ms": config.delivery_timeout_ms,
        "delivery.report.only.error": True,  # successes need no callback
    }


class ConfluentSink:
    """A :class:`~streams.protocols.Sink`; ``flush`` raises if any send failed since the last,
    like :class:`~streams.kafka_sink.KafkaSink`."""

    def __init__(self, kafka: KafkaConfig, config: SinkConfig | None = None) -> None:
        self.config = cfg = config or SinkConfig()
        self._errors: list[str] = []
        try:
            self._producer = Producer({**producer_config(kafka, cfg), "on_delivery": self._failed})
        except KafkaException as exc:
            raise failure(f"cannot make a producer for {kafka.bootstrap_servers}", exc) from exc

    def _failed(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._errors.append(f"{message.topic()}: {error.name()}: {error.str()}")

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        produce(self._producer, self.config.delivery_timeout_ms, topic, key, value)

    def flush(self, timeout_s: float | None = None) -> None:
        waiting = self._producer.flush() if timeout_s is None else self._producer.flush(timeout_s)
        if waiting:
            raise TransportError(f"flush timed out after {timeout_s} s: {waiting} sends pending")
        if self._errors:
            errors, self._errors = self._errors, []
            raise TransportError(f"{len(errors)} sends failed, first: {errors[0]}")

    def close(self) -> None:
        """Deliver what is pending, then release the producer."""
        self._producer.flush()
        close = getattr(self._producer, "close", None)  # in newer confluent-kafka releases only
        if close is not None:
            close()


def produce(
    producer: Producer,
    block_ms: int,
    topic: str,
    key: bytes | None,
    value: bytes | None,
    partition: int | None = None,
) -> None:
    """Queue one message; while librdkafka's queue is full, serve deliveries until there is room
    (for up to ``block_ms``), then serve the delivery reports due (without waiting)."""
    where = {} if partition is None else {"partition": partition}
    deadline = None
    while True:
        try:
            producer.produce(topic, value, key, **where)
            break
        except BufferError:  # the local queue is full: deliveries make room
            deadline = deadline or time.monotonic() + block_ms / 1000
            if time.monotonic() > deadline:
                raise TransportError(f"send to {topic}: queue full for {block_ms} ms") from None
            producer.poll(0.05)
        except KafkaException as exc:
            raise failure(f"send to {topic} failed", exc) from exc
    producer.poll(0)

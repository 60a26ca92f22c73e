"""A compacted Kafka topic as a key-value table on confluent-kafka (see
:mod:`streams.kafka_table` for the kafka-python one and the contract)."""

from __future__ import annotations

import time
from collections.abc import Collection

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
)
from confluent_kafka import TopicPartition as KafkaTopicPartition

from streams.confluent.common import base_config, failure, fetch
from streams.confluent.sink import produce
from streams.exceptions import TransportError
from streams.kafka_config import KafkaConfig
from streams.kafka_table import TableConfig


class ConfluentTable:
    """A :class:`~streams.protocols.Table` over ``topic`` (create it with ``compact=True``)."""

    def __init__(self, kafka: KafkaConfig, topic: str, config: TableConfig | None = None) -> None:
        self.kafka, self.topic = kafka, topic
        self.config = cfg = config or TableConfig()
        self._errors: list[str] = []
        try:
            self._producer = Producer({
                **base_config(kafka), "acks": "all", "linger.ms": cfg.linger_ms,
                "batch.size": 512 * 1024, "message.max.bytes": 8 * 1024 * 1024,
                "delivery.timeout.ms": cfg.delivery_timeout_ms,
                "enable.idempotence": True,  # a retried older state never lands after a newer one
                "delivery.report.only.error": True, "on_delivery": self._failed,
            })  # fmt: skip
        except KafkaException as exc:
            raise failure(f"cannot make a producer for {kafka.bootstrap_servers}", exc) from exc

    def _failed(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._errors.append(f"{error.name()}: {error.str()}")

    def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        produce(self._producer, self.config.delivery_timeout_ms, self.topic, key, value, partition)

    def flush(self) -> None:
        self._producer.flush()
        if self._errors:
            errors, self._errors = self._errors, []
            raise TransportError(f"{len(errors)} puts to {self.topic} failed: {errors[0]}")

    def read(self, partitions: Collection[int]) -> dict[bytes, bytes]:
        if not partitions:
            return {}
        cfg = self.config
        consumer = Consumer({
            **base_config(self.kafka),
            "group.id": f"{self.kafka.client_id}-table",  # librdkafka wants one; never joined
            "enable.auto.commit": False, "enable.auto.offset.store": False,
            "enable.partition.eof": True,  # the end of a partition, even after compacted tails
            "fetch.max.bytes": cfg.fetch_max_bytes,
            "max.partition.fetch.bytes": cfg.fetch_max_bytes,
        })  # fmt: skip
        try:
            ends = {}
            for p in sorted(set(partitions)):
                tp = KafkaTopicPartition(self.topic, p)
                low, high = consumer.get_watermark_offsets(tp, timeout=cfg.read_timeout_s)
                if high > low:
                    ends[p] = high
            consumer.assign([KafkaTopicPartition(self.topic, p, OFFSET_BEGINNING) for p in ends])
            table: dict[bytes, bytes] = {}
            behind = set(ends)
            deadline = time.monotonic() + cfg.read_timeout_s
            while behind:
                if time.monotonic() > deadline:
                    raise TransportError(f"{self.topic}: not read to its end in "
                                         f"{cfg.read_timeout_s} s")  # fmt: skip
                for m in fetch(consumer, 100_000, 0.2):
                    error = m.error()
                    if error is not None and error.code() != KafkaError._PARTITION_EOF:
                        raise failure(f"reading {self.topic} failed", error)
                    if error is None:
                        if m.value() is None:
                            table.pop(m.key(), None)
                        else:
                            table[m.key()] = m.value()
                    if m.offset() + (error is None) >= ends[m.partition()]:
                        behind.discard(m.partition())
            return table
        except KafkaException as exc:
            raise failure(f"reading {self.topic} failed", exc) from exc
        finally:
            consumer.close()

    def close(self) -> None:
        self._producer.flush()
        close = getattr(self._producer, "close", None)  # in newer confluent-kafka releases only
        if close is not None:
            close()

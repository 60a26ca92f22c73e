"""A compacted Kafka topic as a key-value table: written per partition, read back to its end.

Writes go through a producer of their own (so that flushing the table waits for the table's
messages only); reads use a consumer outside any group, assigned the partitions asked for and
read from their beginning to the end offsets they had when the read began.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass

from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError
from kafka.structs import TopicPartition as KafkaTopicPartition

from streams.exceptions import TransportError
from streams.kafka_config import KafkaConfig


@dataclass(frozen=True)
class TableConfig:
    read_timeout_s: float = 60.0
    """a read that has not reached the end by then fails"""
    fetch_max_bytes: int = 64 * 1024 * 1024
    linger_ms: int = 20
    delivery_timeout_ms: int = 120_000
    """how long a put may wait for the broker (a restart) before flush fails"""


class KafkaTable:
    """A :class:`~streams.protocols.Table` over ``topic`` (create it with ``compact=True``)."""

    def __init__(self, kafka: KafkaConfig, topic: str, config: TableConfig | None = None) -> None:
        self.kafka, self.topic = kafka, topic
        self.config = cfg = config or TableConfig()
        try:
            self._producer = KafkaProducer(
                **kafka.client_kwargs(), acks="all", linger_ms=cfg.linger_ms,
                batch_size=512 * 1024, max_request_size=8 * 1024 * 1024,
                delivery_timeout_ms=cfg.delivery_timeout_ms,
                enable_idempotence=True,  # a retried older state never lands after a newer one
            )  # fmt: skip
        except KafkaError as exc:
            raise TransportError(f"cannot connect to {kafka.bootstrap_servers}: {exc}") from exc
        self._errors: list[BaseException] = []

    def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        try:
            future = self._producer.send(self.topic, key=key, value=value, partition=partition)
        except KafkaError as exc:
            raise TransportError(f"put to {self.topic}[{partition}] failed: {exc}") from exc
        future.add_errback(self._errors.append)

    def flush(self) -> None:
        try:
            self._producer.flush()
        except KafkaError as exc:
            raise TransportError(f"flush of {self.topic} failed: {exc}") from exc
        if self._errors:
            errors, self._errors = self._errors, []
            raise TransportError(f"{len(errors)} puts to {self.topic} failed: {errors[0]}")

    def read(self, partitions: Collection[int]) -> dict[bytes, bytes]:
        if not partitions:
            return {}
        cfg = self.config
        tps = [KafkaTopicPartition(self.topic, p) for p in sorted(set(partitions))]
        consumer = KafkaConsumer(
            **self.kafka.client_kwargs(), group_id=None, enable_auto_commit=False,
            fetch_max_bytes=cfg.fetch_max_bytes, max_partition_fetch_bytes=cfg.fetch_max_bytes,
        )  # fmt: skip
        try:
            consumer.assign(tps)
            ends = consumer.end_offsets(tps, timeout_ms=int(cfg.read_timeout_s * 1000))
            consumer.seek_to_beginning(*tps)
            table: dict[bytes, bytes] = {}
            behind = {tp for tp in tps if ends[tp] > 0}
            deadline = time.monotonic() + cfg.read_timeout_s
            while behind:
                if time.monotonic() > deadline:
                    raise TransportError(f"{self.topic}: not read to its end in "
                                         f"{cfg.read_timeout_s} s")  # fmt: skip
                for tp, records in consumer.poll(timeout_ms=200, max_records=100_000).items():
                    for r in records:
                        if r.value is None:
                            table.pop(r.key, None)
                        else:
                            table[r.key] = r.value
                    if records and records[-1].offset + 1 >= ends[tp]:
                        behind.discard(tp)
                behind = {tp for tp in behind if consumer.position(tp) < ends[tp]}
            return table
        except KafkaError as exc:
            raise TransportError(f"reading {self.topic} failed: {exc}") from exc
        finally:
            consumer.close(autocommit=False)

    def close(self) -> None:
        self._producer.close()

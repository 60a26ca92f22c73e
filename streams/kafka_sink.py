"""Kafka sink: a kafka-python producer, batched with linger, keyed by device id."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.partitioner import DefaultPartitioner

from streams.exceptions import TransportError
from streams.kafka_config import KafkaConfig


@dataclass(frozen=True)
class SinkConfig:
    """Producer settings: durable (``acks="all"``) and batched by default.

    A send is retried until ``delivery_timeout_ms`` has passed, so that a broker restart or a
    network blip shorter than that loses nothing (``flush`` waits for it). No compression by
    default: in ``harstream bench e2e``'s output-ceiling rows every codec (gzip, lz4, zstd) cost
    the producer throughput on both clients; it pays only where the network is the limit.
    """

    acks: Literal[0, 1, "all"] = "all"
    linger_ms: int = 5
    batch_size: int = 256 * 1024
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = None
    max_request_size: int = 4 * 1024 * 1024
    delivery_timeout_ms: int = 120_000


class CachedPartitioner(DefaultPartitioner):
    """kafka-python's default partitioner (the Java client's murmur2 of the key), remembered per
    key and partition count: murmur2 in pure Python costs more than the rest of a send, and a
    worker sends to the same devices batch after batch. Unkeyed messages are spread as before."""

    def __init__(self, max_keys: int = 1_000_000) -> None:
        self._known: dict[tuple[str, int, bytes], int] = {}
        self._max_keys = max_keys

    def partition(self, topic, key, serialized_key, value, serialized_value, cluster):
        partitions = cluster.partitions_for_topic(topic)
        if serialized_key is None or not partitions:
            return super().partition(topic, key, serialized_key, value, serialized_value, cluster)
        known = (topic, len(partitions), serialized_key)  # a topic only ever gains partitions
        chosen = self._known.get(known)
        if chosen is None:
            if len(self._known) >= self._max_keys:
                self._known.clear()
            chosen = super().partition(topic, key, serialized_key, value, serialized_value,
                                       cluster)  # fmt: skip
            self._known[known] = chosen
        return chosen


class KafkaSink:
    """A :class:`~streams.protocols.Sink`; ``flush`` raises if any send failed since the last."""

    def __init__(self, kafka: KafkaConfig, config: SinkConfig | None = None) -> None:
        cfg = config or SinkConfig()
        try:
            self._producer = KafkaProducer(
                **kafka.client_kwargs(),
                acks=cfg.acks,
                linger_ms=cfg.linger_ms,
                batch_size=cfg.batch_size,
                compression_type=cfg.compression_type,
                max_request_size=cfg.max_request_size,
                delivery_timeout_ms=cfg.delivery_timeout_ms,
                partitioner=CachedPartitioner(),
            )
        except KafkaError as exc:
            raise TransportError(f"cannot connect to {kafka.bootstrap_servers}: {exc}") from exc
        self._errors: list[BaseException] = []

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        try:
            self._producer.send(topic, value=value, key=key).add_errback(self._errors.append)
        except KafkaError as exc:
            raise TransportError(f"send to {topic} failed: {exc}") from exc

    def flush(self, timeout_s: float | None = None) -> None:
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaError as exc:
            raise TransportError(f"flush failed: {exc}") from exc
        if self._errors:
            errors, self._errors = self._errors, []
            raise TransportError(f"{len(errors)} sends failed, first: {errors[0]}")

    def close(self) -> None:
        self._producer.close()

"""Topic admin through kafka-python's admin client (see :mod:`streams.admin` for the API)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from streams.exceptions import TransportError
from streams.kafka_config import KafkaConfig

if TYPE_CHECKING:
    from streams.admin import TopicSpec


class KafkaAdmin:
    """A :class:`~streams.protocols.TopicAdmin` on one kafka-python admin client."""

    def __init__(self, kafka: KafkaConfig) -> None:
        try:
            self._admin = KafkaAdminClient(**kafka.client_kwargs())
        except KafkaError as exc:
            raise TransportError(f"cannot reach {kafka.bootstrap_servers}: {exc}") from exc

    def create_missing(self, specs: Sequence[TopicSpec]) -> list[str]:
        try:
            existing = set(self._admin.list_topics())
            created: list[str] = []
            for spec in specs:
                if spec.name in existing:
                    continue
                topic = NewTopic(spec.name, spec.partitions, spec.replication, None,
                                 dict(spec.configs))  # fmt: skip
                try:
                    self._admin.create_topics([topic], wait_for_metadata=True)
                    created.append(spec.name)
                except TopicAlreadyExistsError:
                    pass  # created concurrently by another process
            return created
        except KafkaError as exc:
            raise TransportError(f"creating topics failed: {exc}") from exc

    def partition_count(self, topic: str) -> int:
        try:
            described = self._admin.describe_topics([topic])
        except KafkaError as exc:
            raise TransportError(f"describing {topic} failed: {exc}") from exc
        return len(described[0]["partitions"]) if described else 0

    def close(self) -> None:
        self._admin.close()
